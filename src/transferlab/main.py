"""Dispatch a composed config to its task and turn the project's errors into one line."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

import transferlab
from transferlab.errors import TransferLabError

# Each task is a module with run(cfg, output_dir), imported only when chosen.
TASKS = {
    "stylize": "transferlab.style.task",
    "finetune": "transferlab.classify.finetune",
    "predict": "transferlab.classify.predict",
    "export": "transferlab.classify.export",
    "extract": "transferlab.classify.extract",
    "train_fast": "transferlab.fast.train",
    "apply_fast": "transferlab.fast.apply",
    "export_fast": "transferlab.fast.export",
    "video": "transferlab.video.task",
}


def run_task(cfg: DictConfig, output_dir: Path) -> float | None:
    """Run ``cfg.task.name`` writing into ``output_dir``; returns the task's objective (for sweepers)."""
    name = cfg.task.name
    if name not in TASKS:
        raise TransferLabError(f"task.name={name!r} is unknown; choose one of {', '.join(TASKS)}")
    return importlib.import_module(TASKS[name]).run(cfg, output_dir)


def main(cfg: DictConfig) -> float | None:
    """The body of ``run.py``: run the task in Hydra's output directory; errors exit 2 with one line."""
    try:
        return run_task(cfg, Path(HydraConfig.get().runtime.output_dir))
    except MissingMandatoryValue:
        missing = sorted(OmegaConf.missing_keys(cfg))
        print(
            f"error: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required but not set; "
            f"pass {' '.join(f'{k}=...' for k in missing)} (or pick an experiment=...)",
            file=sys.stderr,
        )
    except TransferLabError as exc:
        print(f"error: {exc}", file=sys.stderr)
    sys.exit(2)


# A file path, not a package: configs/ is a plain folder shipped as package data.
CONFIGS = str(transferlab.CONFIGS)


@hydra.main(version_base="1.3", config_path=CONFIGS, config_name="config")
def cli(cfg: DictConfig) -> float | None:
    """The ``transferlab`` console command (and ``python run.py`` in a checkout)."""
    return main(cfg)
