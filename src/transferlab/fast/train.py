"""The training loop of every feed-forward stylizer (per-style and arbitrary-style): samples by step (exact
resume), validation and checkpoints on a step schedule, the final checkpoint written atomically; the
task's result (the entry writes metrics.json from it); and the temporal term both families can train with."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from transferlab import checkpoints, motion, scalars
from transferlab.errors import ConfigError
from transferlab.fast.settings import Training
from transferlab.groups import Steadiness
from transferlab.result import TaskResult
from transferlab.trainer import ResumeRecord, TaskBar, make_trainer

log = logging.getLogger(__name__)

# The unweighted loss terms: their curves compare across a sweep of the weights (the weighted total, ``loss``,
# does not); each is also logged as ``<term>_log10`` (scalars.with_log10: they are often under 1e-4, which
# TensorBoard's tables show as 0).
UNWEIGHTED = ("content", "style", "tv", "temporal", "distill")


def with_log10(terms: dict[str, Tensor]) -> dict[str, Tensor]:
    """``terms`` and the base-10 logarithm of each ``UNWEIGHTED`` one among them, as ``<term>_log10``."""
    return scalars.with_log10(terms, UNWEIGHTED)


class TemporalTerm:
    """Steadiness learnt without a flow dataset (the synthetic motion fast-artistic-videos' author recommends,
    ReReVST's noise): each photo is moved by a random shift, zoom and rotation whose flow is exact
    (``motion.random_flow``), given Gaussian noise of std ``noise`` (pixels in [0, 1]; 0: none), and
    stylized; the term is the mean squared difference, per channel value, between that and the photo's own
    stylization moved by the same flow, over the pixels the motion keeps in the frame (``motion.inside``).
    The draws depend on ``seed`` and the caller's ``key`` only (the step in training): a resumed run
    draws what an unbroken one would."""

    def __init__(self, weight: float, limits: motion.Motion, noise: float, seed: int) -> None:
        self.weight, self.limits, self.noise, self.seed = weight, limits, noise, seed

    def __call__(self, stylize: Callable[[Tensor], Tensor], photos: Tensor, output: Tensor, key: int) -> Tensor:
        """The unweighted term for ``photos`` ``[B, 3, H, W]`` whose stylization ``stylize(photos)`` is ``output``."""
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + key) % 2**63)
        b, _, h, w = photos.shape
        flow = motion.random_flow(b, h, w, self.limits, generator).to(photos)
        moved = motion.warp(photos, flow)
        if self.noise > 0:
            moved = (moved + self.noise * torch.randn(moved.shape, generator=generator).to(moved)).clamp(0, 1)
        mask = motion.inside(flow)
        error = (stylize(moved).float() - motion.warp(output.float(), flow)).pow(2) * mask
        return error.sum() / (mask.sum() * output.shape[1]).clamp(min=1)


def temporal_term(weight: float, steadiness: Steadiness, seed: int) -> TemporalTerm | None:
    """The run's temporal term from its settings; None at weight 0 (no term, no extra forward)."""
    return TemporalTerm(weight, steadiness.motion, steadiness.noise, seed) if weight > 0 else None


class ValidatedModule(pl.LightningModule):
    """A stylizer's LightningModule: its ``validation_step`` appends the batch's loss terms to ``val_terms``;
    at the end of each validation their means are logged as ``val/<term>`` (``val/loss`` on the progress bar)
    and ``end_validation`` gets the TensorBoard writer for its images (None without one, or in the sanity
    check)."""

    def __init__(self) -> None:
        super().__init__()
        self.val_terms: list[dict[str, Tensor]] = []
        self.validated_at: int | None = None  # the step of the last validation (not a sanity check)

    def draw_key(self) -> int:
        """The temporal term's draws at this training step: one per step and process (the step alone on one)."""
        return self.global_step * self.trainer.world_size + self.global_rank

    def end_validation(self, writer: Any | None) -> None:
        """Log this validation's images to ``writer`` (when not None) and drop what the steps kept."""

    def on_validation_epoch_end(self) -> None:
        if not self.val_terms:
            return
        n = len(self.val_terms)
        means = with_log10({key: sum(t[key] for t in self.val_terms) / n for key in self.val_terms[0]})
        for key, value in means.items():
            # every process validated the same photos: the mean over them is any one's
            self.log(f"val/{key}", value, prog_bar=key == "loss", sync_dist=True)
        logger = self.logger
        live = logger is not None and hasattr(logger, "experiment") and not self.trainer.sanity_checking
        self.end_validation(logger.experiment if live else None)
        self.val_terms.clear()
        if not self.trainer.sanity_checking:
            self.validated_at = self.trainer.global_step


class StepData(pl.LightningDataModule):
    """Training samples from the step the trainer is at (0, or the resumed step) to the last one, and a
    fixed validation set. ``train`` is indexable by sample (``data.ContentCrops``: sample i depends on
    the seed and i only), so that a resumed run sees the batches an uninterrupted run would.

    Under DDP the stream is global: step k's batch is samples ``[k, k + 1) x batch_size x world_size``,
    and process r takes those with ``i % world_size == r``, ``batch_size`` each; every process validates
    the whole (small) validation set."""

    def __init__(self, train: Dataset, val: Dataset, batch_size: int, num_workers: int) -> None:
        super().__init__()
        self.train, self.val, self.batch_size, self.num_workers = train, val, batch_size, num_workers

    def train_dataloader(self) -> DataLoader:
        world, rank = self.trainer.world_size, self.trainer.global_rank
        per_step = self.batch_size * world
        # global_step is restored before the loaders are built
        indices = rank_indices(self.trainer.global_step * per_step, self.trainer.max_steps * per_step, rank, world)
        return DataLoader(
            Subset(self.train, indices),
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            self.val, batch_size=self.batch_size, collate_fn=lambda items: torch.stack([i[0] for i in items])
        )


def rank_indices(start: int, end: int, rank: int, world: int) -> range:
    """The samples of the global stream ``[start, end)`` that process ``rank`` of ``world`` trains on
    (``start`` a multiple of ``world``): ``i % world == rank``."""
    return range(start + rank, end, world)


def fit(
    module: pl.LightningModule,
    datamodule: StepData,
    training: Training,
    hparams: dict[str, Any],
    output_dir: Path,
    task: str,
    fingerprint: dict[str, Any],
    rebuilt: tuple[str, ...] = (),
) -> TaskResult:
    """Train ``module`` for ``training.steps`` steps (validation every ``val_every``, checkpoints every
    ``checkpoint_every``, resumed from ``ckpt_path``) through the one Trainer factory; then write
    checkpoints/last.ckpt atomically and validate the final network, unless the schedule's last validation
    was at the last step. The result (without images: the task adds its own) holds that validation's
    metrics, captioned by the loss and its content and style terms. ``fingerprint``: what the run depends
    on (``checkpoints.check_resume``); ``rebuilt``: the prefixes of the module's tensors its checkpoints
    leave out."""
    trainer = stepped_trainer(training, output_dir, task, fingerprint)
    check_resume(module, training, task, fingerprint, rebuilt, trainer.world_size)
    trainer.fit(
        module,
        datamodule=datamodule,
        ckpt_path=str(training.ckpt_path) if training.ckpt_path else None,
        weights_only=True,
    )
    last = output_dir / "checkpoints" / "last.ckpt"
    trainer.save_checkpoint(last, weights_only=False)  # the full state: resume from it is exact; atomic
    if module.validated_at != trainer.global_step:  # else the schedule validated the final network already
        trainer.validate(module, datamodule=datamodule, verbose=False)
    final = {
        k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/") and not k.endswith("_log10")
    }
    return result(task, final, trainer.global_step, last, hparams)


def check_resume(
    module: pl.LightningModule,
    training: Training,
    task: str,
    fingerprint: dict[str, Any],
    rebuilt: tuple[str, ...],
    world_size: int,
) -> None:
    """Refuse, before Lightning loads it, a ``ckpt_path`` of another task, inputs or settings, whose
    tensors do not fit ``module`` (besides the ``rebuilt`` ones), or trained by another number of processes
    than ``world_size`` (the sample stream is split by it: another would train on other batches)."""
    if training.ckpt_path:
        expected = f"a checkpoint of a task={task} run (checkpoints/*.ckpt)"
        saved = checkpoints.check_resume(training.ckpt_path, task, fingerprint, expected)
        checkpoints.check_state(training.ckpt_path, saved["state_dict"], module.state_dict(), expected, rebuilt)
        trained_by = saved[task].get("world_size", 1)  # checkpoints from before DDP training: one process
        if trained_by != world_size:
            raise ConfigError(
                f"ckpt_path={training.ckpt_path} was trained by {trained_by} processes and this run has {world_size} "
                f"(trainer.devices x trainer.num_nodes); resume with {trained_by} to continue its exact sample "
                "stream, or start afresh without ckpt_path"
            )


def stepped_trainer(training: Training, output_dir: Path, task: str, fingerprint: dict[str, Any]) -> pl.Trainer:
    """The one Trainer factory's Trainer on a step schedule: validation every ``val_every``, checkpoints
    every ``checkpoint_every`` (each recording ``task`` and its ``fingerprint``)."""
    checkpoint = ModelCheckpoint(
        dirpath=output_dir / "checkpoints",
        filename="step{step}",
        auto_insert_metric_name=False,
        every_n_train_steps=training.checkpoint_every or training.steps,
        save_top_k=-1,
        save_last=False,
    )
    return make_trainer(
        training.trainer,
        output_dir,
        max_steps=training.steps,
        max_epochs=-1,
        val_check_interval=training.val_every,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        log_every_n_steps=training.log_every,
        use_distributed_sampler=False,  # StepData splits the sample stream by rank itself
        callbacks=[ResumeRecord(task, fingerprint), checkpoint, TaskBar(task)],
        enable_model_summary=False,
    )


def result(task: str, metrics: dict[str, float], steps: int, last: Path, hparams: dict[str, Any]) -> TaskResult:
    """The final validation's ``metrics`` as the result, captioned by the loss (the weighted total: what training
    minimized) and its unweighted content and style terms; HParams' metrics: the unweighted terms first, which
    compare across a sweep of the loss weights, the weighted total after them."""
    unweighted = [f"val/{k}" for k in UNWEIGHTED if f"val/{k}" in metrics]
    return TaskResult(
        metrics={"task": task, "steps": steps, "checkpoint": str(last), **metrics},
        objective=metrics["val/loss"],
        caption=(
            f"val loss {metrics['val/loss']:.4g}",
            f"content {metrics['val/content']:.3g}  style {metrics['val/style']:.3g}",
        ),
        hparams=hparams,
        summary={k: metrics[k] for k in [*unweighted, *sorted(set(metrics) - set(unweighted))]},
        step=steps,
    )
