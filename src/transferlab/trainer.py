"""The Lightning Trainer as every task builds it: device, precision, TensorBoard logger in the run directory."""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import TQDMProgressBar
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.plugins.io import TorchCheckpointIO
from pytorch_lightning.utilities import rank_zero_only
from tensorboard.compat.proto.summary_pb2 import Summary
from torch import Tensor

from transferlab.errors import DivergedError
from transferlab.files import atomic_write

PRECISIONS = ("32", "bf16-mixed", "16-mixed")
TENSORBOARD = "tensorboard"  # the run's events, in the run directory
# The group of every task's images in TensorBoard (Trainer tasks and video; stylize keeps its stylized/): the
# Time Series tab sorts groups by name and opens the first two, and this name sorts after every scalar
# group (train, val, video), so a run opens on its losses.
VISUALS = "visuals"


@dataclass(frozen=True)
class TrainerSettings:
    """Where and how a task trains: built once at the task's door (``groups.trainer``)."""

    accelerator: str  # resolved: cpu | cuda | mps, never auto
    devices: int | str
    strategy: str
    precision: str
    num_nodes: int = 1  # machines of a multi-node DDP run (SLURM: docs/scale.md)

    @property
    def device(self) -> torch.device:
        return torch.device(self.accelerator)


def available_accelerators() -> dict[str, bool]:
    return {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}


class RunLogger(TensorBoardLogger):
    """TensorBoard in the run directory, without Lightning's ``epoch`` chart: every task here logs
    by step, and a flat line of epoch 0 is the first chart a user would otherwise see."""

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float | Tensor], step: int | None = None) -> None:
        """Every scalar of a step in one event: ``add_scalar`` writes an event per value, 0.09 ms each (1 ms
        a step for the stylize task's 12 terms, 2.5% of a step at 64 px); TensorBoard reads both alike."""
        values = [Summary.Value(tag=k, simple_value=float(v)) for k, v in metrics.items() if k != "epoch"]
        if values:
            self.experiment.file_writer.add_summary(Summary(value=values), step)


def run_logger(output_dir: Path) -> RunLogger:
    """The run's TensorBoard events, in ``output_dir/tensorboard``: the Trainer's logger, and the one a
    task without a Trainer (video) writes its curves and images with."""
    return RunLogger(save_dir=str(output_dir), name=TENSORBOARD, version="", default_hp_metric=False)


def log_summary(output_dir: Path, hparams: dict[str, Any], metrics: dict[str, float], step: int) -> None:
    """The run's HParams session, in the sub-run ``hparams`` beside the run's own events: its settings
    and final metrics. Name the metrics as their curves, so that each adds one point to its chart
    instead of a single-point chart of its own."""
    summary = RunLogger(save_dir=str(output_dir / TENSORBOARD), name="", version="hparams", default_hp_metric=False)
    summary.log_hyperparams(hparams, metrics, step=step)
    summary.finalize("success")


class TaskBar(TQDMProgressBar):
    """Lightning's progress bar, named by the task: a run on a step schedule (stylize, train_fast, train_adain)
    is one epoch, and its "Epoch 0" said nothing."""

    def __init__(self, task: str) -> None:
        super().__init__()
        self.task = task

    def on_train_epoch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        super().on_train_epoch_start(trainer, *args)
        self.train_progress_bar.set_description(self.task)


class ValidationStep(pl.Callback):
    """Each validation's scalars at the step its weights reached (``global_step``): Lightning logs them at its
    count of batches before the last one, a step early (a validation after step 2 drawn at 1), and a
    validation's images at ``global_step``. Lightning takes a logged ``step`` as the point's step."""

    def on_validation_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            module.log("step", float(trainer.global_step), sync_dist=True)  # equal on every process: no warning


class ResumeRecord(pl.Callback):
    """Writes into every full checkpoint the task that made it, its resume fingerprint (what the run
    depends on), which ``checkpoints.check_resume`` compares before a run resumes from it, and the number
    of processes that trained it (``world_size``: a step-trained network's sample stream is split by it)."""

    def __init__(self, task: str, fingerprint: dict[str, Any]) -> None:
        self.task, self.fingerprint = task, fingerprint

    def on_save_checkpoint(self, trainer: pl.Trainer, module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint[self.task] = {"fingerprint": self.fingerprint, "world_size": trainer.world_size}


class FiniteLoss(pl.Callback):
    """Stops a run whose training loss is no longer finite (a learning rate far too high), in one line and
    before any checkpoint of that step is written (Lightning runs checkpoint callbacks last): its weights
    would be NaN, and a run that diverged must not end as if it had finished."""

    def on_train_batch_end(
        self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if isinstance(loss, Tensor) and not bool(torch.isfinite(loss.detach()).all()):
            raise DivergedError(
                f"the training loss became {float(loss.detach().float().mean())} at step {trainer.global_step}: "
                "training diverged; lower the learning rate (task.lr) or the loss weights, and start afresh or "
                "resume from an earlier checkpoint (none of this step was saved)"
            )


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written through ``files.atomic_write``: Lightning's own writer stages them in the system's
    temporary folder and moves them across file systems, which on a full disk left a truncated checkpoint
    under its final name and named the temporary path in the error."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise ValueError("storage_options are not supported")
        # Serialized in memory first: torch's zip writer turns a full disk into an opaque RuntimeError.
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        with atomic_write(path) as f:
            f.write(buffer.getbuffer())


def make_trainer(settings: TrainerSettings, output_dir: Path, **kwargs: Any) -> pl.Trainer:
    """The Trainer of every task: TensorBoard in ``output_dir``, checkpoints written atomically
    (``AtomicCheckpointIO``), ``FiniteLoss`` and ``ValidationStep`` among the callbacks."""
    kwargs["callbacks"] = [FiniteLoss(), ValidationStep(), *(kwargs.get("callbacks") or [])]
    kwargs["plugins"] = [AtomicCheckpointIO(), *(kwargs.get("plugins") or [])]
    kwargs.setdefault("logger", run_logger(output_dir))
    return pl.Trainer(
        accelerator=settings.accelerator,
        devices=settings.devices,
        strategy=settings.strategy,
        num_nodes=settings.num_nodes,
        precision=settings.precision,
        default_root_dir=str(output_dir),
        **kwargs,
    )
