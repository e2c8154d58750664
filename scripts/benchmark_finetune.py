"""``python scripts/benchmark_finetune.py --help``: the finetune benchmark (``scripts/bench/finetune``)."""

import sys
from pathlib import Path

# The entry puts this checkout's sources first (not an installed copy); scripts/ is already on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bench.finetune import main_  # noqa: E402

if __name__ == "__main__":
    main_()
