"""``python scripts/benchmark_attention.py --help``: the attention benchmark (``scripts/bench/attention``)."""

import sys
from pathlib import Path

# The entry puts this checkout's sources first (not an installed copy); scripts/ is already on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bench.attention import main  # noqa: E402

if __name__ == "__main__":
    main()
