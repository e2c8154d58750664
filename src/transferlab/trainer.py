"""The Lightning Trainer as every task builds it: device, precision, TensorBoard logger in the run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from pytorch_lightning.loggers import TensorBoardLogger

from transferlab.checks import choice
from transferlab.errors import ConfigError

PRECISIONS = ("32", "bf16-mixed", "16-mixed")


def accelerator(requested: str) -> str:
    """The accelerator ``auto`` resolves to here, or the requested one if this machine has it."""
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if requested == "auto":
        return "cuda" if available["cuda"] else "mps" if available["mps"] else "cpu"
    choice(requested, ["auto", *available], "trainer.accelerator")
    if not available[requested]:
        raise ConfigError(
            f"trainer.accelerator={requested}: no {requested} device on this machine; use trainer.accelerator=auto"
        )
    return requested


def precision(cfg: DictConfig, device: str) -> str:
    value = choice(str(cfg.precision), PRECISIONS, "precision")
    if value == "16-mixed" and device != "cuda":
        raise ConfigError(
            f"precision=16-mixed needs a CUDA GPU (this run is on {device}); use precision=bf16-mixed or 32"
        )
    return value


def make_trainer(cfg: DictConfig, output_dir: Path, **kwargs: Any) -> pl.Trainer:
    device = accelerator(cfg.trainer.accelerator)
    kwargs.setdefault(
        "logger", TensorBoardLogger(save_dir=str(output_dir), name="tensorboard", version="", default_hp_metric=False)
    )
    return pl.Trainer(
        accelerator=device,
        devices=cfg.trainer.devices,
        strategy=cfg.trainer.strategy,
        precision=precision(cfg, device),
        default_root_dir=str(output_dir),
        **kwargs,
    )
