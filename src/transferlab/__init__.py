"""transferlab: configuration-driven transfer-learning experiments with pretrained CNNs."""

from pathlib import Path

from transferlab import schema

# Before any composition (the entry, tests, benchmarks): the task configs extend these schemas.
CONFIGS = Path(__file__).resolve().parent / "configs"
schema.register(CONFIGS)
