"""Dispatch a composed config to its task and turn the project's errors into one line."""

from __future__ import annotations

import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue

from transferlab.errors import TransferLabError

TASKS = ("stylize", "finetune", "predict", "export", "extract")


def run_task(cfg: DictConfig, output_dir: Path) -> float | None:
    """Run ``cfg.task.name`` writing into ``output_dir``; returns the task's objective (for sweepers)."""
    name = cfg.task.name
    if name == "stylize":
        from transferlab import stylize

        return stylize.run(cfg, output_dir)
    if name == "finetune":
        from transferlab import finetune

        return finetune.run(cfg, output_dir)
    if name == "predict":
        from transferlab import predict

        return predict.run(cfg, output_dir)
    if name == "export":
        from transferlab import export

        return export.run(cfg, output_dir)
    if name == "extract":
        from transferlab import extract

        return extract.run(cfg, output_dir)
    raise TransferLabError(f"task={name!r} is unknown; choose one of {', '.join(TASKS)}")


def main(cfg: DictConfig) -> float | None:
    """The body of ``run.py``: run the task in Hydra's output directory; errors exit 2 with one line."""
    try:
        return run_task(cfg, Path(HydraConfig.get().runtime.output_dir))
    except MissingMandatoryValue as exc:
        print(f"error: {exc.full_key} is required but not set; pass {exc.full_key}=... (or pick an experiment=...)", file=sys.stderr)
    except TransferLabError as exc:
        print(f"error: {exc}", file=sys.stderr)
    sys.exit(2)
