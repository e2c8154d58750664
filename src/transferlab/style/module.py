"""The StyleTransfer LightningModule: Gatys et al.'s optimization of an image, whose only
parameter is the image, over one or more scales (coarse to fine)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from torch import Tensor, nn
from torch.utils.data import DataLoader

from transferlab import color, images
from transferlab.errors import TransferLabError
from transferlab.features import Encoder
from transferlab.groups import OptimizerSettings
from transferlab.perceptual import PerceptualLoss, style_grams
from transferlab.scalars import with_log10
from transferlab.style import quality, scene
from transferlab.style.settings import Convergence
from transferlab.textloss import TextLoss
from transferlab.trainer import TaskBar

log = logging.getLogger(__name__)

LINE_SEARCH_EVALS = 25  # torch's own bound on a strong-Wolfe line search
# TensorBoard's Time Series tab orders its groups by tag prefix and expands the first two: "loss"
# and "style" (the per-layer losses); the images ("stylized") and the quality figures of the HParams
# table ("to_content", "to_style": quality.figures' keys) sort after them.
PREVIEW_TAG, FINAL_TAG = "stylized/preview", "stylized/final"
QUALITY_TAGS = {"ssim": "to_content/ssim", "gram_mean": "to_style/gram_mean"}
# Figures often under 1e-4 (the Gram distance; the content term near the start, or always with random weights):
# also as <tag>_log10, which TensorBoard's tables show (scalars.with_log10).
SMALL_TAGS = ("loss/content", "to_style/gram_mean")


# Why a scale's optimization converged. L-BFGS: torch's own criteria (torch.optim.LBFGS), checked
# after every step, since with one iteration per step torch leaves the last two unchecked. Adam: the
# loss no longer falls (Convergence).
GRADIENT = "gradient tolerance"  # no gradient value above optimizer.tolerance_grad: torch took no step
NO_PROGRESS = "no progress"  # L-BFGS: no descent direction, the step left the image as it was; Adam: see Convergence
NO_CHANGE = "no change"  # L-BFGS: the last step moved no pixel, or changed the loss, by more than tolerance_change


class NonFiniteLossError(TransferLabError):
    """The loss became nan or inf during the optimization."""


@dataclass(frozen=True)
class Converged:
    """Where a scale converged: ``step``: the steps the run had taken, the one that found it included."""

    scale: int
    size: int  # the scale's long side in pixels
    step: int
    evaluations: int
    reason: str

    def describe(self) -> str:
        return f"converged at step {self.step} ({self.reason}, {self.evaluations} evaluations) at {self.size} px"


def lbfgs_reason(optimizer: torch.optim.LBFGS, iterations: int, loss: float, previous: float | None) -> str | None:
    """Which of torch's L-BFGS criteria holds after a step that started with ``iterations`` iterations done
    and at a loss of ``loss``; ``previous``: the loss where the step before started. With max_iter=1 torch
    checks the first two itself (and returns without evaluating again) and leaves the others unchecked."""
    group = optimizer.param_groups[0]
    state = optimizer.state[group["params"][0]]
    tolerance = group["tolerance_change"]
    if state["n_iter"] == iterations:
        return GRADIENT  # torch's optimality test at the start of the step: it took no step
    direction, step = state["d"], state["t"]
    if state["prev_flat_grad"].dot(direction) > -tolerance:
        return NO_PROGRESS  # torch found no descent direction and broke off before its line search
    if direction.abs().max() * step <= tolerance or (previous is not None and abs(loss - previous) < tolerance):
        return NO_CHANGE
    return None


class StyleTransfer(pl.LightningModule):
    """Optimizes ``image`` against the perceptual loss ``perceptual``: its features match the
    content's and its Gram matrices the styles'. ``schedule`` is ``[(scale, steps), ...]``: the image
    is optimized at each scale of the scene in turn (coarse to fine), upsampled in between; the
    loss's targets are set once per scale."""

    def __init__(
        self,
        perceptual: PerceptualLoss,
        scene: scene.Scene,
        optimizer: OptimizerSettings,
        schedule: list[tuple[float, int]] | tuple[tuple[float, int], ...],
        gram_targets: list[dict[str, Tensor]] | None = None,
        convergence: Convergence | None = None,
        text: TextLoss | None = None,
    ) -> None:
        """``perceptual``: a composition of its own (its targets are set here); ``gram_targets``:
        ``transferlab.perceptual.style_grams`` of the scene's styles at full scale, computed once by a caller that
        optimizes many images against the same styles (video frames); None: computed here. ``convergence``:
        when a scale counts as converged (``converged`` lists where) and, under Lightning, whether it then
        ends; None: never checked. ``text``: a prompt's terms, among ``perceptual``'s extra terms; its
        content is set here with the loss's."""
        super().__init__()
        # The styles' targets at full scale: given, or kept once computed (every tile matches them).
        self.full_grams = gram_targets
        # L-BFGS evaluates the loss several times per step; manual optimization lets us
        # count those evaluations and log each step exactly once.
        self.automatic_optimization = False
        self.strict_loading = False  # checkpoints leave out the frozen VGG and the targets
        self.perceptual = perceptual
        self.text = text
        self.scene = scene
        self.optimizer_settings = optimizer
        self.schedule = list(schedule)
        self.ends = list(accumulate(steps for _, steps in schedule))
        self.scale = 0
        # L-BFGS flattens the gradient with view(-1): the image must be contiguous.
        self.image = nn.Parameter(
            images.resize(scene.init, self.hw(0)).unsqueeze(0).clone(memory_format=torch.contiguous_format)
        )
        self.evaluations = 0
        self.last_losses: dict[str, Tensor] = {}
        self.last_point: Tensor | None = None
        self.last_grad: Tensor | None = None
        self.convergence = convergence
        self.converged: list[Converged] = []  # the first convergence of each scale that converged
        # Steps of the schedule left out because their scale converged: the schedule's position is
        # global_step + skipped (Lightning's global_step counts only the steps taken).
        self.skipped = 0
        self.start_losses: list[float] = []  # the loss where each step of this scale started

    def tile(self, box: tuple[int, int, int, int], start: Tensor, steps: int) -> StyleTransfer:
        """A module that optimizes the part of the output under ``box``, from ``start``, at full scale."""
        scene = self.scene.crop(box, start)
        return StyleTransfer(
            self.perceptual.like(self.perceptual.extra),
            scene,
            self.optimizer_settings,
            [(1.0, steps)],
            gram_targets=self.full_grams,
            convergence=self.convergence,
            text=self.text,
        )

    @property
    def encoder(self) -> Encoder:
        return self.perceptual.encoder

    def count_tile(self, tile: StyleTransfer) -> None:
        """Add a finished tile's evaluations, keep its losses as the latest and its style targets for the next tiles."""
        self.evaluations += tile.evaluations
        self.last_losses = tile.last_losses
        self.converged += tile.converged
        self.full_grams = tile.full_grams

    def hw(self, scale: int) -> tuple[int, int]:
        h, w = self.scene.content.shape[-2:]
        factor = self.schedule[scale][0]
        return max(1, round(h * factor)), max(1, round(w * factor))

    def scale_at(self, step: int) -> int:
        return next((i for i, end in enumerate(self.ends) if step < end), len(self.ends) - 1)

    def prepare_scale(self) -> None:
        """The loss's content features, Gram targets and masks at the current scale, computed once."""
        hw, factor = self.hw(self.scale), self.schedule[self.scale][0]
        s, perceptual = self.scene, self.perceptual
        self.content = images.resize(s.content, hw).unsqueeze(0)
        self.strength = None if s.strength is None else images.resize(s.strength, hw).unsqueeze(0)
        given = self.full_grams is not None and factor == 1.0
        grams = self.full_grams if given else style_grams(self.encoder, s.styles, perceptual.style_layers, factor)
        if factor == 1.0:
            self.full_grams = grams
        perceptual.set_styles(grams, s.style_weights)
        masks = s.masks
        if s.strength is not None:
            # Style statistics are taken where the style applies, in proportion to its strength.
            masks = [s.strength if m is None else m * s.strength for m in masks or [None] * len(s.styles)]
        perceptual.set_content(self.content, masks)
        if self.text is not None:
            self.text.set_content(self.content)

    def rendered(self) -> Tensor:
        """The image VGG sees: where a strength map is given, ``content + strength * (image - content)``,
        so zero-strength regions are exactly the content."""
        return self.image if self.strength is None else self.content + self.strength * (self.image - self.content)

    def output(self) -> Tensor:
        """The current result as a displayable ``[3, H, W]`` image in [0, 1] (colour restored in luminance mode)."""
        image = self.rendered().detach()[0].float().clamp(0, 1)
        return image if self.scene.original is None else color.recombine(image, self.scene.original)

    def on_fit_start(self) -> None:
        self.scene = self.scene.to(self.device)
        self.prepare_scale()

    def losses(self) -> dict[str, Tensor]:
        """Every loss term of the current image, weighted, keyed by its metric name."""
        return self.perceptual(self.rendered())

    def upsampled(self, hw: tuple[int, int]) -> Tensor:
        """The image at the finer size ``hw``: its own low frequencies plus the detail the initial
        image has at ``hw`` and lacks at the current size. Upsampled alone, it would start the finer
        scale blurred, further from the optimum than the initial image itself in fine texture and
        content, and the evaluations saved at the coarse scale would go to restoring that detail."""
        init = self.scene.init.unsqueeze(0)
        detail = images.resize(init, hw) - images.resize(images.resize(init, tuple(self.image.shape[-2:])), hw)
        return (images.resize(self.image.detach(), hw) + detail).clamp_(0, 1)

    def next_scale(self) -> None:
        """Move the image to the next scale and start a fresh optimizer (its curvature history
        and moments belong to the old resolution)."""
        self.scale += 1
        self.image = nn.Parameter(self.upsampled(self.hw(self.scale)).contiguous())
        self.prepare_scale()
        self.trainer.strategy.optimizers = [self.configure_optimizers()]
        self.last_point = self.last_grad = None
        self.start_losses = []

    @property
    def position(self) -> int:
        """Steps of the schedule behind us: those taken and those of converged scales left out."""
        return self.global_step + self.skipped

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Here, not in training_step: Lightning hooks its step counting into the optimizers
        # between the two, so a new optimizer must exist before then.
        if self.scale_at(self.position) > self.scale:
            self.next_scale()

    def step(self, optimizer: torch.optim.Optimizer, backward: Callable[[Tensor], None]) -> str | None:
        """One optimizer step on the image, with ``backward`` for the gradient: ``manual_backward``
        under Lightning, ``Tensor.backward`` in a plain loop (the video wing's frames). Returns why the
        scale has converged (``GRADIENT``, ``NO_PROGRESS``, ``NO_CHANGE``), or None."""

        def closure() -> Tensor:
            # L-BFGS re-evaluates, at the start of each step, the point its line search just
            # accepted; answering from the last evaluation saves one VGG pass per step.
            if self.last_point is not None and torch.equal(self.last_point, self.image):
                self.image.grad = self.last_grad.clone()
                return self.last_losses["loss/total"]
            self.image.grad = None
            terms = self.losses()
            if not torch.isfinite(terms["loss/total"]):
                self.stop_non_finite(terms["loss/total"])
            backward(terms["loss/total"])
            self.evaluations += 1
            self.last_losses = {k: v.detach() for k, v in terms.items()}
            self.last_point, self.last_grad = self.image.detach().clone(), self.image.grad.detach().clone()
            return terms["loss/total"]

        iterations = optimizer.state[self.image].get("n_iter", 0)
        loss = float(optimizer.step(closure=closure).detach())  # where the step started
        if self.optimizer_settings.name != "lbfgs":
            # L-BFGS is left unclamped: clamping moves the iterate away from its curvature pairs
            # (the loss then explodes); its images are clamped when they are saved or logged.
            with torch.no_grad():
                self.image.clamp_(0, 1)
        previous = self.start_losses[-1] if self.start_losses else None
        self.start_losses.append(loss)
        if self.convergence is None:
            return None
        if self.optimizer_settings.name == "lbfgs":
            return lbfgs_reason(optimizer, iterations, loss, previous)
        return self.first_order_reason()

    def first_order_reason(self) -> str | None:
        """``NO_PROGRESS`` where the best loss fell by less than the tolerance over the window (``Convergence``)."""
        window, losses = self.convergence.window, self.start_losses
        if len(losses) <= window:
            return None
        before, now = min(losses[:-window]), min(losses)
        return NO_PROGRESS if before - now <= self.convergence.tolerance * abs(before) else None

    def training_step(self, batch: Any, batch_idx: int) -> None:
        reason = self.step(self.optimizers(), self.manual_backward)
        if reason is not None:
            self.converge(reason)
        if self.position >= self.ends[-1]:
            self.trainer.should_stop = True  # a converged coarse scale left steps out: the schedule is done
        # No self.log: each call costs about 0.4 ms of bookkeeping (epoch aggregation this task does
        # not use), 1% of a step at 64 px. The terms go straight to the logger in one host sync, and
        # the progress bar reads the loss and the evaluation count from the module (ProgressBar).
        if self.logger is not None:
            values = torch.stack(list(self.last_losses.values())).tolist()
            scalars = with_log10(dict(zip(self.last_losses, values)), SMALL_TAGS)
            scalars["train/evaluations"] = self.evaluations
            if len(self.schedule) > 1:
                scalars["train/scale"] = self.scale  # a flat line at 0 on a single scale
            self.logger.log_metrics(scalars, step=self.global_step)

    def converge(self, reason: str) -> None:
        """Record the first convergence of this scale and, where the run stops at convergence, end the
        scale: the next one starts at the next step, or the run ends."""
        if not self.converged or self.converged[-1].scale != self.scale:
            size = max(self.hw(self.scale))
            self.converged.append(Converged(self.scale, size, self.global_step, self.evaluations, reason))
            log.info("scale %d/%d %s", self.scale + 1, len(self.schedule), self.converged[-1].describe())
        if self.convergence.stop:
            self.skipped += self.ends[self.scale] - self.position

    def stop_non_finite(self, loss: Tensor) -> None:
        """Go back to the last image whose loss was finite and stop the run with one line."""
        if self.last_point is not None and self.last_point.shape == self.image.shape:
            with torch.no_grad():
                self.image.copy_(self.last_point)
        raise NonFiniteLossError(
            f"the loss became {loss.item()} at step {self.global_step} (evaluation {self.evaluations + 1}); "
            "the last image with a finite loss is kept; lower loss.style_weight / loss.tv_weight or "
            + ("optimizer.lr" if self.optimizer_settings.name == "lbfgs" else "task.lr")
        )

    def configure_optimizers(self) -> torch.optim.Optimizer:
        opt = self.optimizer_settings
        if opt.name == "lbfgs":
            # One iteration per step, so that the step budget counts iterations. max_eval must be
            # explicit: torch's default (max_iter * 5 // 4 = 1) leaves the line search no evaluation.
            return torch.optim.LBFGS(
                [self.image],
                lr=opt.lr,
                max_iter=1,
                max_eval=LINE_SEARCH_EVALS,
                history_size=opt.history_size,
                line_search_fn=opt.line_search,
                tolerance_grad=opt.tolerance_grad,
                tolerance_change=opt.tolerance_change,
            )
        return torch.optim.Adam([self.image], lr=opt.lr, betas=opt.betas, weight_decay=opt.weight_decay)

    def train_dataloader(self) -> DataLoader:
        # Nothing to load: each "batch" is one optimizer step on the image.
        return DataLoader(range(self.ends[-1]), batch_size=None)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith(("perceptual.", "text."))]:
            del state[key]  # VGG, CLIP and the targets, rebuilt from the config and inputs; saves 80 MB per checkpoint
        checkpoint["evaluations"] = self.evaluations
        checkpoint["skipped"] = self.skipped
        checkpoint["converged"] = [[c.scale, c.size, c.step, c.evaluations, c.reason] for c in self.converged]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The image was saved after step `global_step`, i.e. at the scale of the step before it.
        # Its inputs and settings were checked against this run's before fitting (style.settings).
        self.skipped = checkpoint.get("skipped", 0)
        self.scale = self.scale_at(max(checkpoint["global_step"] + self.skipped - 1, 0))
        self.image = nn.Parameter(torch.empty(1, 3, *self.hw(self.scale)))
        self.evaluations = checkpoint.get("evaluations", 0)
        self.converged = [Converged(*c) for c in checkpoint.get("converged", [])]


class ImageLogger(pl.Callback):
    """Every ``every`` steps: a downscaled preview of the image and, with a ``reference`` encoder,
    the two quality figures of the HParams table as curves, so that their final values (logged with
    the run's HParams session) end a curve instead of standing alone on a chart of one point."""

    def __init__(self, every: int, size: int, reference: Encoder | None = None) -> None:
        self.every, self.size, self.reference = every, size, reference
        self.grams: list[dict[str, Tensor]] | None = None  # the styles' reference Grams: fixed for the run

    def on_train_batch_end(self, trainer: pl.Trainer, module: StyleTransfer, *args: Any) -> None:
        if not (self.every and trainer.global_step % self.every == 0 and isinstance(trainer.logger, TensorBoardLogger)):
            return
        image = module.output()
        trainer.logger.experiment.add_image(PREVIEW_TAG, images.fits_in(image.cpu(), self.size), trainer.global_step)
        if self.reference is not None:
            if self.grams is None:
                self.reference = self.reference.to(module.device)
                self.grams = [
                    quality.style_grams(self.reference, style, self.reference.layers) for style in module.scene.styles
                ]
            figures = quality.figures(self.reference, image, module.scene, self.grams)
            quality_figures = {tag: figures[key] for key, tag in QUALITY_TAGS.items()}
            trainer.logger.log_metrics(with_log10(quality_figures, SMALL_TAGS), trainer.global_step)


class ProgressBar(TaskBar):
    """The task's progress bar (``stylize``), with the latest loss and the evaluation count read from the module
    when the bar redraws."""

    def __init__(self) -> None:
        super().__init__("stylize")

    def get_metrics(self, trainer: pl.Trainer, module: StyleTransfer) -> dict[str, int | str | float]:
        metrics = super().get_metrics(trainer, module)
        if module.last_losses:
            metrics["loss"] = f"{float(module.last_losses['loss/total']):.4g}"
        return metrics | {"evaluations": module.evaluations}
