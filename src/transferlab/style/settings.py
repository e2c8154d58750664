"""The stylize task's door: the composed config checked and turned into plain, frozen values once.

Every check of a stylize run lives here, and so does every derived value (the output size for
``task.size=auto``, the device, the normalized layer weights, the coarse-to-fine schedule, the
memory estimate against the device). Below this module nothing reads the config.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from transferlab import backbone, checkpoints, checks, color, features, fetch, groups, images, saliency, text, winograd
from transferlab import memory as device_memory
from transferlab.backbone import ModelSettings
from transferlab.errors import ConfigError, WeightsError
from transferlab.groups import LossWeights, OptimizerSettings
from transferlab.runtime import RuntimeSettings
from transferlab.style import estimate
from transferlab.text import TextSettings
from transferlab.trainer import TrainerSettings

log = logging.getLogger(__name__)

OPTIMIZERS = ("lbfgs", "adam")
INITS = ("content", "noise", "style")
COLORS = ("none", "luminance", "histogram")
LOSS_TERMS = ("content", "style", "tv")
MIN_SIZE = 32
ARCHS = (*backbone.ARCHS, *features.ARCHS)  # VGG by its paper's layer names, the others by node names
PREVIEWS = 10  # task.image_every=auto: about this many preview images over a run


@dataclass(frozen=True)
class Inputs:
    """The files of a run (local paths, pinned URLs already fetched) and how they are combined."""

    content: Path
    styles: tuple[Path, ...]  # empty with a prompt alone (StyleSettings.text)
    style_weights: tuple[float, ...]  # sum to 1
    style_masks: tuple[Path, ...]  # empty, or one per style
    strength_map: Path | str | None  # a file, or saliency.AUTO (computed from the content)
    style_scale: float
    init: str
    color: str
    histogram_method: str

    @property
    def style_keys(self) -> list[str]:
        return [f"task.style[{i}]" for i in range(len(self.styles))] if len(self.styles) > 1 else ["task.style"]


@dataclass(frozen=True)
class Tiling:
    """``task.steps``, ``task.tile`` and ``task.tile_overlap`` checked against each other."""

    steps: int
    tile: int
    overlap: int

    @classmethod
    def from_task(cls, task: DictConfig) -> Tiling:
        steps = checks.at_least(task.steps, 1, "task.steps")
        tile = checks.at_least(task.tile, 0, "task.tile")
        overlap = checks.at_least(task.tile_overlap, 0, "task.tile_overlap")
        if tile:
            checks.at_least(tile, 64, "task.tile")
            if overlap >= tile // 2:
                raise ConfigError(f"task.tile_overlap={overlap} must be below half of task.tile={tile}")
        return cls(steps, tile, overlap)


@dataclass(frozen=True)
class Convergence:
    """When a scale counts as converged and what then happens. L-BFGS uses torch's own tolerances
    (optimizer.tolerance_grad, optimizer.tolerance_change). A first-order optimizer (Adam) has converged
    at step n when its best loss so far fell by less than ``tolerance`` (relative) over the last
    ``window`` steps: ``best[n - window] - best[n] <= tolerance * |best[n - window]|``, ``best`` being
    the running minimum of the loss, so that its step-to-step wobble neither stops nor delays it.
    ``stop``: a converged scale ends (the next scale starts; the last ends the run); False runs every step."""

    stop: bool
    tolerance: float
    window: int


@dataclass(frozen=True)
class StyleSettings:
    model: ModelSettings
    trainer: TrainerSettings
    runtime: RuntimeSettings
    memory: MemoryModel
    inputs: Inputs
    content_layers: dict[str, float]  # normalized to sum to 1
    style_layers: dict[str, float]
    loss: LossWeights
    optimizer: OptimizerSettings
    size: int  # output long side, task.size=auto resolved
    schedule: tuple[tuple[float, int], ...]  # (scale factor, steps), ending at (1.0, task.steps)
    steps: int
    tile: int
    tile_overlap: int
    image_every: int
    image_log_size: int
    checkpoint_every: int
    convergence: Convergence
    seed: int
    ckpt_path: Path | None
    fingerprint: dict[str, Any]  # what a checkpoint must have been made with to resume this run
    text: TextSettings | None = None  # task.style_text: the prompt, its CLIP model and loss

    @property
    def tiled(self) -> bool:
        return bool(self.tile) and self.size > self.tile

    @property
    def whole_schedule(self) -> tuple[tuple[float, int], ...]:
        """The scales optimized on the whole image: a tiled run optimizes its last scale in tiles."""
        return self.schedule[:-1] if self.tiled and len(self.schedule) > 1 else self.schedule

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> StyleSettings:
        """The shared groups (groups.py), then the task's own checks, in phases: the tiling, the inputs,
        the output size and schedule (checked against the network's depth and the device's memory), the resume."""
        task = cfg.task
        model = loss_network(cfg)
        optimizer = groups.optimizer(cfg, OPTIMIZERS)
        trainer = groups.trainer(cfg, optimizer.name)
        runtime = groups.runtime(cfg)
        layers = groups.layers(cfg, model.arch)
        loss = groups.loss(cfg, LOSS_TERMS, groups.TEXT_LOSS_KEYS)
        prompt = text_settings(cfg, optimizer.name)
        tiling = Tiling.from_task(task)
        if task.size != "auto":
            checks.at_least(task.size, MIN_SIZE, "task.size")
        seed = groups.seed(cfg)
        problems = checks.Problems()  # every input file and the weights, reported at once
        inputs = input_settings(task, problems, prompt is not None)
        if not inputs.styles:
            layers = groups.Layers(layers.content, {})  # a prompt alone: VGG runs only to the content layers
        checkpoint = problems.run(stylize_checkpoint, cfg.ckpt_path)
        problems.run(backbone.check_weights, model.arch, model.weights, bool(problems.errors))
        problems.raise_all()
        # After the input checks: a network of another family is measured here (seconds).
        memory = MemoryModel(
            model.arch,
            layers.content,
            layers.style,
            optimizer.name,
            optimizer.history_size or 0,
            runtime.heap_block_limit(trainer.device),
            False if features.is_node_arch(model.arch) else runtime.fast_convs(trainer.device),
            model.feature_transform,
            measured_network(model, layers),
        )
        size, plan = output_plan(task, memory, inputs, trainer.accelerator, tiling)
        ckpt_path = resume_path(checkpoint, bool(tiling.tile) and size > tiling.tile and len(plan) == 1)
        values = {"model": model, "layers": layers, "loss": loss, "optimizer": optimizer, "seed": seed}
        fingerprint = resume_fingerprint(inputs, size, plan, **values) | (prompt.fingerprint() if prompt else {})
        settings = cls(
            model=model,
            trainer=trainer,
            runtime=runtime,
            memory=memory,
            inputs=inputs,
            content_layers=layers.content,
            style_layers=layers.style,
            loss=loss,
            optimizer=optimizer,
            size=size,
            schedule=tuple(plan),
            steps=tiling.steps,
            tile=tiling.tile,
            tile_overlap=tiling.overlap,
            image_every=image_cadence(task.image_every, sum(n for _, n in plan)),
            image_log_size=checks.at_least(task.image_log_size, MIN_SIZE, "task.image_log_size"),
            checkpoint_every=checks.at_least(task.checkpoint_every, 0, "task.checkpoint_every"),
            convergence=Convergence(
                checks.choice(task.stop_at_convergence, [True, False], "task.stop_at_convergence"),
                checks.non_negative(task.tolerance, "task.tolerance"),
                checks.at_least(task.tolerance_window, 1, "task.tolerance_window"),
            ),
            seed=seed,
            ckpt_path=ckpt_path,
            fingerprint=fingerprint,
            text=prompt,
        )
        if ckpt_path is not None:
            check_resume(ckpt_path, fingerprint)
        return settings


def loss_network(cfg: DictConfig) -> ModelSettings:
    """``model.*`` of a network stylize can optimize against: VGG, or one of ``features.FAMILIES``."""
    described = (
        f"{' or '.join(backbone.ARCHS)}, or a network of the torchvision families {', '.join(features.FAMILIES)} "
        "(docs/backbones.md)"
    )
    return groups.model(cfg, ARCHS, features.TRANSFORMS, described)


def output_plan(
    task: DictConfig, memory: MemoryModel, inputs: Inputs, device: str, tiling: Tiling
) -> tuple[int, list[tuple[float, int]]]:
    """The output size (``task.size=auto`` resolved within ``task.memory_budget``) and the coarse-to-fine
    schedule, checked against the depth of the layers in use and, with ``task.memory_check``, the memory
    the device has."""
    budget = checks.number(task.memory_budget, "task.memory_budget")
    if not 0 < budget <= 1:
        raise ConfigError(f"task.memory_budget={budget} is invalid; it must be a share of free memory in (0, 1]")
    content_wh = images.open_rgb(inputs.content).size
    if task.size == "auto":
        size = auto_size(memory, inputs, content_wh, device, budget)
    else:
        size = checks.at_least(task.size, MIN_SIZE, "task.size")
    plan = schedule(task.scales, task.scale_steps, size, tiling.steps)
    check_feature_sizes(memory, inputs, content_wh, size, plan)
    if checks.choice(task.memory_check, [True, False], "task.memory_check"):
        check_memory(memory, inputs, content_wh, device, size, plan, tiling.tile)
    return size, plan


def stylize_checkpoint(value: Any) -> Path | None:
    """``ckpt_path``: None, or a local file (checked with the other input files)."""
    if not value:
        return None
    return checkpoints.local_file(str(value), "ckpt_path", "a checkpoint of a stylize run (checkpoints/step*.ckpt)")


def resume_path(checkpoint: Path | None, tiles_only: bool) -> Path | None:
    """The ``checkpoint`` to resume from, for a run that has whole-image scales to resume."""
    if checkpoint is not None and tiles_only:
        raise ConfigError(
            "ckpt_path resumes the whole-image scales, and this tiled run has none; set task.scales or drop ckpt_path"
        )
    return checkpoint


def resume_fingerprint(
    inputs: Inputs,
    size: int,
    plan: list[tuple[float, int]],
    model: ModelSettings,
    layers: groups.Layers,
    loss: LossWeights,
    optimizer: OptimizerSettings,
    seed: int,
) -> dict[str, Any]:
    """What a checkpoint must have been made with to resume this run, as JSON values (the checkpoint
    holds it as such)."""
    fingerprint = {
        "task.content": fetch.sha256_of(inputs.content),
        "task.style": [fetch.sha256_of(p) for p in inputs.styles],
        "task.style_weights": list(inputs.style_weights),
        "task.style_masks": [fetch.sha256_of(p) for p in inputs.style_masks],
        "task.strength_map": (
            fetch.sha256_of(inputs.strength_map) if isinstance(inputs.strength_map, Path) else inputs.strength_map
        ),
        "task.size": size,
        # The coarser scales and their steps; task.steps (the last scale's) may grow on a resume.
        "task.scales": [list(s) for s in plan[:-1]],
        "task.style_scale": inputs.style_scale,
        "task.init": inputs.init,
        "task.color": inputs.color,
        "task.histogram_method": inputs.histogram_method,
        "model": asdict(model),
        "layers.content": layers.content,
        "layers.style": layers.style,
        "loss": {term: getattr(loss, term) for term in LOSS_TERMS},
        "optimizer": asdict(optimizer),
        "seed": seed,
    }
    return checkpoints.fingerprint(fingerprint)


def image_cadence(value: Any, total_steps: int) -> int:
    """``task.image_every``: K steps, 0 (only the final image), or auto: about ``PREVIEWS`` previews over the run."""
    if value == "auto":
        return max(1, total_steps // PREVIEWS)
    if isinstance(value, str):
        raise ConfigError(f"task.image_every={value!r} is invalid; give auto, 0 (final image only) or a step count")
    return checks.at_least(value, 0, "task.image_every")


def strength_map(task: DictConfig) -> Path | str | None:
    """``task.strength_map``: None, ``auto``, or the local file (a pinned URL fetched)."""
    source = saliency.strength_source(task.strength_map, "task.strength_map")
    return source if source in (None, saliency.AUTO) else images.input_file(source, "task.strength_map")


def text_settings(cfg: DictConfig, optimizer: str) -> TextSettings | None:
    """``task.style_text`` and its CLIP model (transferlab/text.py), for Adam only."""
    prompt = text.settings(cfg)
    if prompt is not None and optimizer != "adam":
        raise ConfigError(
            f"task.style_text needs optimizer=adam (not {optimizer}): the patch term draws new random crops at "
            "every evaluation, which L-BFGS's line search and curvature history cannot follow"
        )
    return prompt


def input_settings(task: DictConfig, problems: checks.Problems, prompt: bool = False) -> Inputs:
    """Counts and values of the style inputs; every image checked, its problems kept in ``problems``.
    With a ``prompt`` (task.style_text), style images are optional: an unset ``task.style`` is none."""
    styles = [] if prompt and OmegaConf.is_missing(task, "style") else checks.as_list(task.style)
    if not styles and not prompt:
        raise ConfigError("task.style is empty; give one style image or a list: task.style=[a.jpg,b.jpg]")
    weights = checks.style_weights(task.style_weights, len(styles)) if styles else ()
    masks = checks.as_list(task.style_masks)
    if masks and len(masks) != len(styles):
        raise ConfigError(
            f"task.style_masks has {len(masks)} masks for {len(styles)} styles; give one per style image "
            "(a prompt applies everywhere: task.strength_map says where and how much)"
        )
    init = checks.choice(task.init, INITS, "task.init")
    mode = checks.choice(task.color, COLORS, "task.color")
    if not styles and (init == "style" or mode == "histogram"):
        key, value = ("task.init", init) if init == "style" else ("task.color", mode)
        raise ConfigError(
            f"{key}={value} needs a style image; with a prompt alone use content or noise, none or luminance"
        )
    method = checks.choice(task.histogram_method, color.HISTOGRAM_METHODS, "task.histogram_method")
    style_scale = checks.positive(task.style_scale, "task.style_scale")
    style_key = "task.style" if len(styles) == 1 else "task.style[{}]"
    return Inputs(
        content=problems.run(images.input_file, task.content, "task.content"),
        styles=tuple(problems.run(images.input_file, s, style_key.format(i)) for i, s in enumerate(styles)),
        style_weights=weights,
        style_masks=tuple(problems.run(images.input_file, m, f"task.style_masks[{i}]") for i, m in enumerate(masks)),
        strength_map=problems.run(strength_map, task),
        style_scale=style_scale,
        init=init,
        color=mode,
        histogram_method=method,
    )


def schedule(scales: Any, scale_steps: Any, size: int, steps: int) -> list[tuple[float, int]]:
    """``[(scale factor, steps), ...]`` from ``task.scales`` / ``task.scale_steps``, ending at the output size."""
    scales, counts = list(scales or []), list(scale_steps or [])
    if len(scales) != len(counts):
        raise ConfigError(
            f"task.scales has {len(scales)} sizes but task.scale_steps {len(counts)}; give one step count per scale"
        )
    for i, (s, n) in enumerate(zip(scales, counts)):
        checks.at_least(s, MIN_SIZE, f"task.scales[{i}]")
        checks.at_least(n, 1, f"task.scale_steps[{i}]")
    if scales != sorted(scales) or (scales and scales[-1] >= size):
        raise ConfigError(f"task.scales={scales} must increase and stay below task.size={size} (the last scale)")
    return [(s / size, n) for s, n in zip(scales, counts)] + [(1.0, steps)]


def output_hw(wh: tuple[int, int], long_side: int) -> tuple[int, int]:
    """``(H, W)`` of an image of ``wh = (W, H)`` resized to ``long_side``, as ``images.load_image`` does."""
    width, height = wh
    scale = long_side / max(width, height)
    return max(1, round(height * scale)), max(1, round(width * scale))


def check_feature_sizes(
    memory: MemoryModel, inputs: Inputs, content_wh: tuple[int, int], size: int, plan: list[tuple[float, int]]
) -> None:
    """Refuse images so thin that the network's pooling layers would shrink a side to nothing before the
    deepest layer in use (a few pixels by thousands)."""
    minimum, deepest = memory.min_side()
    coarsest = plan[0][0]
    h, w = output_hw(content_wh, max(1, round(size * coarsest)))
    if min(h, w) < minimum:
        raise ConfigError(
            f"task.content={inputs.content}: at {max(h, w)} px its short side is {min(h, w)} px, "
            f"below the {minimum} px "
            f"that {deepest} needs; crop it to a less extreme aspect ratio or raise task.size"
        )
    style_long = max(MIN_SIZE, round(size * inputs.style_scale * coarsest))
    for key, path in zip(inputs.style_keys, inputs.styles):
        h, w = output_hw(images.open_rgb(path).size, style_long)
        if min(h, w) < minimum:
            raise ConfigError(
                f"{key}={path}: at {style_long} px its short side is {min(h, w)} px, below the {minimum} px that "
                f"{deepest} needs; crop it or raise task.style_scale"
            )


@dataclass(frozen=True)
class MemoryModel:
    """What the memory and time estimate of a run depends on, besides the image sizes."""

    arch: str
    content_layers: dict[str, float]
    style_layers: dict[str, float]
    optimizer: str
    history_size: int
    heap_block_limit: float  # the largest freed block the process keeps (RuntimeSettings.heap_block_limit)
    fast_convs: winograd.Mode  # Winograd convolutions on this device
    transform: str = "none"  # model.feature_transform
    measured: estimate.Measured | None = None  # a network of another family than VGG, measured at the door

    def min_side(self) -> tuple[int, str]:
        """The shortest image side that keeps every feature map in use non-empty, and the layer that needs it."""
        layers = [*self.content_layers, *self.style_layers]
        if self.measured is None:
            return backbone.min_side(self.arch, layers), backbone.deepest(self.arch, layers)
        return self.measured.min_side, max(layers, key=self.measured.strides.__getitem__)

    def estimate(
        self, hw: tuple[int, int], style_hw: tuple[int, int], throughput: float = estimate.DEFAULT_THROUGHPUT
    ) -> estimate.Estimate:
        return estimate.estimate(
            self.arch,
            self.content_layers,
            self.style_layers,
            hw,
            style_hw,
            self.optimizer,
            self.history_size,
            throughput,
            self.heap_block_limit,
            self.fast_convs,
            self.transform,
            self.measured,
        )

    def largest_size(self, budget: int, aspect: float, style_scale: float) -> int | None:
        return estimate.largest_size(
            budget,
            aspect,
            style_scale=style_scale,
            arch=self.arch,
            content_layers=self.content_layers,
            style_layers=self.style_layers,
            optimizer=self.optimizer,
            history_size=self.history_size,
            heap_block_limit=self.heap_block_limit,
            fast_convs=self.fast_convs,
            transform=self.transform,
            measured=self.measured,
        )


def measured_network(model: ModelSettings, layers: groups.Layers) -> estimate.Measured | None:
    """A network of another family than VGG measured for the estimate (``estimate.measure``), with random
    weights: its activations' sizes do not depend on them (the run loads its weights later, once)."""
    if not features.is_node_arch(model.arch):
        return None
    network, normalization = backbone.build_classifier(model.arch, None)
    encoder = features.NodeFeatures(
        network, model.arch, [*layers.content, *layers.style], normalization, model.feature_transform, model.temperature
    )
    return estimate.measure(encoder, layers.content, layers.style)


def auto_size(
    memory: MemoryModel, inputs: Inputs, content_wh: tuple[int, int], device: str, budget_share: float
) -> int:
    """``task.size=auto``: the largest output whose estimated peak memory fits ``task.memory_budget``
    of the device's free memory."""
    width, height = content_wh
    budget = int(budget_share * device_memory.available_memory(device))
    size = memory.largest_size(budget, width / height, inputs.style_scale)
    if size is None:
        raise ConfigError(
            f"task.size=auto: even a 32 px image needs more than the budget of {budget / 2**30:.2f} GiB; "
            "raise task.memory_budget or free memory on the device"
        )
    log.info("task.size=auto: %d px, the largest that fits %.2f GiB on %s", size, budget / 2**30, device)
    return size


def check_memory(
    memory: MemoryModel,
    inputs: Inputs,
    content_wh: tuple[int, int],
    device: str,
    size: int,
    plan: list[tuple[float, int]],
    tile: int,
) -> None:
    """Refuse, before any allocation, a run whose estimated peak exceeds what the device has."""
    tiled = bool(tile) and size > tile
    sides = [round(size * f) for f, _ in (plan[:-1] if tiled else plan)] + ([tile] if tiled else [])
    peak = max(
        memory.estimate(
            output_hw(content_wh, s), output_hw(content_wh, max(MIN_SIZE, round(s * inputs.style_scale)))
        ).peak_bytes
        for s in sides
    )
    device_memory.check(
        peak,
        device,
        f"task.size={size}",
        "use task.size=auto, optimize in tiles (task.tile=1024 with task.scales), a smaller task.size, or "
        "task.memory_check=false to run anyway",
    )


def check_resume(path: Path, fingerprint: dict[str, Any]) -> None:
    """Refuse a checkpoint that is not a stylize checkpoint, or was made with other inputs or settings,
    before Lightning loads it (nothing is written into the new run directory)."""
    expected = "a checkpoint of a stylize run (checkpoints/step*.ckpt)"
    ckpt = checkpoints.check_resume(path, "stylize", fingerprint, expected)
    if not isinstance(ckpt["state_dict"].get("image"), torch.Tensor):
        raise WeightsError(f"ckpt_path={path} is not {expected} (it holds no image)")


def hparams(settings: StyleSettings) -> dict[str, Any]:
    """The settings that mean something for this run, flat, keyed as on the command line, as
    TensorBoard's HParams tab shows them: per-layer weights, the other optimizer's settings and
    values left at their neutral default are left out (the composed config is in .hydra/)."""
    inputs, opt, model = settings.inputs, settings.optimizer, settings.model
    hp: dict[str, Any] = {
        "task.content": inputs.content.name,
        "task.style": ",".join(p.name for p in inputs.styles),
        "task.size": settings.size,
        "task.steps": settings.steps,
        "task.init": inputs.init,
        "task.color": inputs.color if inputs.color != "histogram" else f"histogram ({inputs.histogram_method})",
        "loss.content_weight": settings.loss.content,
        "loss.style_weight": settings.loss.style,
        "loss.tv_weight": settings.loss.tv,
        "model.arch": model.arch,
        "model.weights": model.weights or "random",
        "model.pooling": model.pooling,
        "optimizer.name": opt.name,
        "optimizer.lr" if opt.name == "lbfgs" else "task.lr": opt.lr,
        "layers.content": ",".join(settings.content_layers),
        "layers.style": ",".join(settings.style_layers),
        "precision": settings.trainer.precision,
        "seed": settings.seed,
    }
    if settings.text is not None:
        t = settings.text
        hp |= {"task.style_text": t.prompt, "task.source_text": t.source, "text.model": t.model}
        hp |= {"text.weights": t.weights or "random", "loss.text_direction_weight": t.loss.direction_weight}
        hp["loss.text_patch_weight"] = t.loss.patch_weight
    if inputs.style_scale != 1:
        hp["task.style_scale"] = inputs.style_scale
    if len(settings.schedule) > 1:
        hp["task.scales"] = str([round(f * settings.size) for f, _ in settings.schedule[:-1]])
    if settings.tiled:
        hp["task.tile"] = settings.tile
    if model.feature_scale != 1:
        hp["model.feature_scale"] = model.feature_scale
    if model.feature_transform != "none":
        hp["model.feature_transform"] = model.feature_transform
        hp["model.temperature"] = model.temperature
    return hp
