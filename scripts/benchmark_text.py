"""``python scripts/benchmark_text.py --help``: time per stylize step with a prompt through a random-init CLIP
beside the VGG-only step of an image style (``scripts/bench/text``; issue 25)."""

import sys
from pathlib import Path

# The entry puts this checkout's sources first (not an installed copy); scripts/ is already on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bench.text import main  # noqa: E402

if __name__ == "__main__":
    main()
