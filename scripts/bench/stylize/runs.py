"""The stylize runs the studies share: the config ``python run.py`` would get, the project's module built
from it, its evaluation as the L-BFGS closure runs it, a Lightning fit with a trace, the plain baseline."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from torch import Tensor
from torchvision.models import vgg19

from bench import common
from transferlab import backbone
from transferlab.style import estimate
from transferlab.style import task as stylize
from transferlab.style.module import StyleTransfer
from transferlab.style.settings import StyleSettings

ROOT = common.ROOT
COMMAND = ROOT / "scripts" / "benchmark_stylize.py"  # answers ``_child`` (``run_child``)
CONTENT = common.SHARED / "content" / "tubingen.jpg"
STYLE = common.SHARED / "styles" / "starry_night.jpg"


def use_inputs(content: Path, style: Path) -> None:
    """The content and style images of every later ``make_cfg`` (the shared photos by default)."""
    global CONTENT, STYLE
    CONTENT, STYLE = content, style


def run_child(section: str, env: dict[str, str] | None = None, **kwargs: Any) -> dict[str, Any]:
    """Run the stylize study's ``section`` in a fresh process (``common.run_child``)."""
    return common.run_child(COMMAND, section, env, **kwargs)


def weights() -> str:
    """model.weights of every run (``--weights``; children inherit it)."""
    return os.environ.get("BENCH_WEIGHTS", "null")


def make_cfg(size: int, layers: str = "gatys", *overrides: str) -> DictConfig:
    """The config ``python run.py`` would get for this stylize run."""
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose(
            "config",
            overrides=[
                f"task.content={CONTENT}",
                f"task.style={STYLE}",
                f"task.size={size}",
                f"model.weights={weights()}",
                f"layers={layers}",
                *overrides,
            ],
        )


def build(cfg: DictConfig, targets: bool = True) -> StyleTransfer:
    """The project's module for ``cfg`` (its coarse-to-fine plan included), with its targets
    computed as at the start of fitting when ``targets``."""
    torch.manual_seed(cfg.seed)  # random weights: the same for every build of one architecture
    module, _ = stylize.build(StyleSettings.from_cfg(cfg))
    if targets:
        module.on_fit_start()
    return module


def estimate_for(
    cfg: DictConfig, size: tuple[int, int], style_size: tuple[int, int], heap_block_limit: float, fast_convs: bool
) -> estimate.Estimate:
    """``estimate.estimate`` for the run ``cfg`` describes (its layers, optimizer and history)."""
    s = StyleSettings.from_cfg(cfg)
    return estimate.estimate(
        s.model.arch,
        s.content_layers,
        s.style_layers,
        size,
        style_size,
        s.optimizer.name,
        s.optimizer.history_size,
        heap_block_limit=heap_block_limit,
        fast_convs=fast_convs,
    )


def style_hw(module: StyleTransfer) -> tuple[int, int]:
    return tuple(module.scene.styles[0].shape[-2:])


def evaluation(module: StyleTransfer) -> Callable[[], float]:
    """One function evaluation as the L-BFGS closure runs it (without its cache)."""

    def evaluate() -> float:
        module.image.grad = None
        loss = module.losses()["loss/total"]
        loss.backward()
        return float(loss.detach())

    return evaluate


def layer_sets(cfg: DictConfig) -> tuple[list[str], list[str]]:
    return list(cfg.layers.content), list(cfg.layers.style)


class PlainGatys:
    """Style transfer as it is usually written: the whole ``vgg19().features``, forward hooks on
    the named layers, autograd's Gram matrix, NCHW, and the style features re-extracted in every
    closure. It loads our encoder's weights, so both compute the same loss."""

    def __init__(self, module: StyleTransfer) -> None:
        self.module = module
        self.normalize = module.encoder.normalize  # kept: the switches section frees the encoder
        self.vgg = vgg19().features.eval().requires_grad_(False)
        self.vgg.load_state_dict(module.encoder.stack.state_dict(), strict=False)
        self.outputs: dict[str, Tensor] = {}
        wanted = {*module.perceptual.content_layers, *module.perceptual.style_layers}
        for name, layer in zip(backbone.layer_names("vgg19"), self.vgg):
            if name in wanted:
                layer.register_forward_hook(lambda _m, _i, out, name=name: self.outputs.__setitem__(name, out))
        with torch.no_grad():
            self.content_targets = {k: v.clone() for k, v in self.features(module.scene.content.unsqueeze(0)).items()}

    def features(self, image: Tensor) -> dict[str, Tensor]:
        self.outputs = {}
        self.vgg(self.normalize(image))
        return self.outputs

    @staticmethod
    def gram(x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        flat = x.reshape(b, c, h * w)
        return flat @ flat.transpose(1, 2) / (h * w)

    def evaluate(self) -> float:
        m, p = self.module, self.module.perceptual
        image = m.image
        image.grad = None
        with torch.no_grad():
            style = self.features(m.scene.styles[0].unsqueeze(0))
            style_grams = {ly: self.gram(style[ly]) for ly in p.style_layers}
        features = self.features(image)
        content = sum(w * F.mse_loss(features[ly], self.content_targets[ly]) for ly, w in p.content_layers.items())
        style_loss = sum(w * F.mse_loss(self.gram(features[ly]), style_grams[ly]) for ly, w in p.style_layers.items())
        loss = (
            p.content_weight * content
            + p.style_weight * style_loss
            + p.tv_weight
            * (
                (image[..., 1:, :] - image[..., :-1, :]).pow(2).mean()
                + (image[..., 1:] - image[..., :-1]).pow(2).mean()
            )
        )
        loss.backward()
        return float(loss.detach())


class Trace(pl.Callback):
    """Records (seconds, evaluations, loss, scale) after every step; at the last scale, stops at a
    loss or after an evaluation budget."""

    def __init__(self, target: float | None, max_evals: int) -> None:
        self.target, self.max_evals = target, max_evals
        self.points: list[tuple[float, int, float, int]] = []
        self.start = time.perf_counter()
        self.final_start = 0  # evaluations when the last scale began

    def on_train_batch_end(self, trainer: pl.Trainer, module: StyleTransfer, *args: Any) -> None:
        loss = float(module.last_losses["loss/total"])
        self.points.append((time.perf_counter() - self.start, module.evaluations, loss, module.scale))
        if len(self.points) % 25 == 0:  # progress, for long runs
            print(
                f"  {module.image.shape[-1]}px step {len(self.points)}: {module.evaluations} evaluations,"
                f" loss {loss:.5g}, {self.points[-1][0]:.0f}s",
                file=sys.stderr,
                flush=True,
            )
        if module.scale < len(module.schedule) - 1:
            self.final_start = module.evaluations
        elif module.evaluations - self.final_start >= self.max_evals or (
            self.target is not None and loss <= self.target
        ):
            trainer.should_stop = True


def fit(
    module: StyleTransfer,
    target: float | None,
    max_evals: int,
    max_steps: int | None = None,
    precision: str = "32",
    logger: pl.loggers.Logger | bool = False,
) -> Trace:
    """Fit ``module`` with the project's training step (L-BFGS closure, cache) through Lightning."""
    trace = Trace(target, max_evals)
    trainer = pl.Trainer(
        accelerator="auto",
        devices=1,
        precision=precision,
        max_steps=max_steps or -1,
        logger=logger,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        callbacks=[trace],
    )
    trainer.fit(module)
    return trace
