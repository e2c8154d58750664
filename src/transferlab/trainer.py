"""The Lightning Trainer as every task builds it: device, precision, TensorBoard logger in the run directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger

PRECISIONS = ("32", "bf16-mixed", "16-mixed")


@dataclass(frozen=True)
class TrainerSettings:
    """Where and how a task trains: built once at the task's door (``checks.trainer_settings``)."""

    accelerator: str  # resolved: cpu | cuda | mps, never auto
    devices: int | str
    strategy: str
    precision: str

    @property
    def device(self) -> torch.device:
        return torch.device(self.accelerator)


def available_accelerators() -> dict[str, bool]:
    return {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}


def make_trainer(settings: TrainerSettings, output_dir: Path, **kwargs: Any) -> pl.Trainer:
    kwargs.setdefault(
        "logger", TensorBoardLogger(save_dir=str(output_dir), name="tensorboard", version="", default_hp_metric=False)
    )
    return pl.Trainer(
        accelerator=settings.accelerator,
        devices=settings.devices,
        strategy=settings.strategy,
        precision=settings.precision,
        default_root_dir=str(output_dir),
        **kwargs,
    )
