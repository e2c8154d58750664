"""``python scripts/benchmark_web.py --help``: the export_web page's speed in headless Chromium (``scripts/bench/web``)."""

import sys
from pathlib import Path

# The entry puts this checkout's sources first (not an installed copy); scripts/ is already on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bench.web import main  # noqa: E402

if __name__ == "__main__":
    main()
