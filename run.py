"""Entry point: ``python run.py [task=...] [experiment=...] [group=option ...] [key=value ...]``."""

import hydra
from omegaconf import DictConfig

from transferlab.main import main


@hydra.main(version_base="1.3", config_path="configs", config_name="config")
def run(cfg: DictConfig) -> float | None:
    return main(cfg)


if __name__ == "__main__":
    run()
