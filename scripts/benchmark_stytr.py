"""``python scripts/benchmark_stytr.py --help``: the stytr benchmark (``scripts/bench/stytr``)."""

import sys
from pathlib import Path

# The entry puts this checkout's sources first (not an installed copy); scripts/ is already on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bench.stytr import main  # noqa: E402

if __name__ == "__main__":
    main()
