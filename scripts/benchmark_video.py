"""``python scripts/benchmark_video.py --help``: the video benchmark (``scripts/bench/video``)."""

import os
import sys
from pathlib import Path

# The task's progress bar, one per run, would bury the tables (tqdm reads it when imported).
os.environ.setdefault("TQDM_DISABLE", "1")

# The entry puts this checkout's sources first (not an installed copy); scripts/ is already on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bench.video import main  # noqa: E402

if __name__ == "__main__":
    main()
