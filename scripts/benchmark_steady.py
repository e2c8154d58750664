"""``python scripts/benchmark_steady.py --help``: per-style networks trained with and without the temporal term
(``scripts/bench/steady``; issue 24, figure a)."""

import sys
from pathlib import Path

# The entry puts this checkout's sources first (not an installed copy); scripts/ is already on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bench.steady import main  # noqa: E402

if __name__ == "__main__":
    main()
