"""transferlab: configuration-driven transfer-learning experiments with pretrained CNNs."""

from pathlib import Path

CONFIGS = Path(__file__).resolve().parent / "configs"
