"""The stylize task's door: the composed config checked and turned into plain, frozen values once.

Every check of a stylize run lives here, and so does every derived value (the output size for
``task.size=auto``, the device, the normalized layer weights, the coarse-to-fine schedule, the
memory estimate against the device). Below this module nothing reads the config.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig

from transferlab import backbone, checkpoints, checks, color, fetch, images
from transferlab import memory as device_memory
from transferlab.backbone import ModelSettings
from transferlab.errors import ConfigError, WeightsError
from transferlab.runtime import RuntimeSettings
from transferlab.style import estimate
from transferlab.trainer import TrainerSettings

log = logging.getLogger(__name__)

OPTIMIZERS = ("lbfgs", "adam")
INITS = ("content", "noise", "style")
COLORS = ("none", "luminance", "histogram")
MIN_SIZE = 32
PREVIEWS = 10  # task.image_every=auto: about this many preview images over a run


@dataclass(frozen=True)
class OptimizerSettings:
    name: str  # lbfgs | adam
    lr: float
    history_size: int = 0  # lbfgs
    line_search: str | None = None  # lbfgs
    betas: tuple[float, float] = (0.9, 0.999)  # adam
    weight_decay: float = 0.0  # adam


@dataclass(frozen=True)
class LossWeights:
    content: float
    style: float
    tv: float


@dataclass(frozen=True)
class Inputs:
    """The files of a run (local paths, pinned URLs already fetched) and how they are combined."""

    content: Path
    styles: tuple[Path, ...]
    style_weights: tuple[float, ...]  # sum to 1
    style_masks: tuple[Path, ...]  # empty, or one per style
    strength_map: Path | None
    style_scale: float
    init: str
    color: str
    histogram_method: str

    @property
    def style_keys(self) -> list[str]:
        return [f"task.style[{i}]" for i in range(len(self.styles))] if len(self.styles) > 1 else ["task.style"]


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
    seed: int
    ckpt_path: Path | None
    fingerprint: dict[str, Any]  # what a checkpoint must have been made with to resume this run

    @property
    def tiled(self) -> bool:
        return bool(self.tile) and self.size > self.tile

    @property
    def whole_schedule(self) -> tuple[tuple[float, int], ...]:
        """The scales optimized on the whole image: a tiled run optimizes its last scale in tiles."""
        return self.schedule[:-1] if self.tiled and len(self.schedule) > 1 else self.schedule

    @property
    def random_weights(self) -> bool:
        return self.model.weights is None

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> StyleSettings:
        task = cfg.task
        model = checks.model_settings(cfg.model)
        optimizer = optimizer_settings(cfg.optimizer, cfg.task.lr)
        if str(cfg.precision) == "16-mixed" and optimizer.name == "lbfgs":
            raise ConfigError(
                "precision=16-mixed cannot drive optimizer=lbfgs (fp16 loss scaling breaks its line search); "
                "use precision=bf16-mixed or 32, or optimizer=adam"
            )
        trainer = checks.trainer_settings(cfg)
        runtime = checks.runtime_settings(cfg)
        content_layers, style_layers = layer_sets(cfg, model.arch)
        loss = loss_weights(cfg.loss)
        memory_budget = checks.number(task.memory_budget, "task.memory_budget")
        if not 0 < memory_budget <= 1:
            raise ConfigError(
                f"task.memory_budget={memory_budget} is invalid; it must be a share of free memory in (0, 1]"
            )
        steps = checks.at_least(task.steps, 1, "task.steps")
        tile = checks.at_least(task.tile, 0, "task.tile")
        overlap = checks.at_least(task.tile_overlap, 0, "task.tile_overlap")
        if tile:
            checks.at_least(tile, 64, "task.tile")
            if overlap >= tile // 2:
                raise ConfigError(f"task.tile_overlap={overlap} must be below half of task.tile={tile}")
        if task.size != "auto":
            checks.at_least(task.size, MIN_SIZE, "task.size")
        memory = MemoryModel(
            model.arch,
            content_layers,
            style_layers,
            optimizer.name,
            optimizer.history_size,
            runtime.heap_block_limit(trainer.device),
            runtime.fast_convs(trainer.device),
        )
        inputs = input_settings(task)
        content_wh = images.open_rgb(inputs.content).size
        if task.size == "auto":
            size = auto_size(memory, inputs, content_wh, trainer.accelerator, memory_budget)
        else:
            size = checks.at_least(task.size, MIN_SIZE, "task.size")
        plan = schedule(task.scales, task.scale_steps, size, steps)
        tiled = bool(tile) and size > tile
        ckpt_path = None
        if cfg.ckpt_path:
            if tiled and len(plan) == 1:
                raise ConfigError(
                    "ckpt_path resumes the whole-image scales, and this tiled run has none; "
                    "set task.scales or drop ckpt_path"
                )
            ckpt_path = checkpoints.local_file(
                str(cfg.ckpt_path), "ckpt_path", "a checkpoint of a stylize run (checkpoints/step*.ckpt)"
            )
        check_feature_sizes(model.arch, [*content_layers, *style_layers], inputs, content_wh, size, plan)
        if checks.choice(task.memory_check, [True, False], "task.memory_check"):
            check_memory(memory, inputs, content_wh, trainer.accelerator, size, plan, tile)
        fingerprint = {
            "task.content": fetch.sha256_of(inputs.content),
            "task.style": [fetch.sha256_of(p) for p in inputs.styles],
            "task.style_weights": list(inputs.style_weights),
            "task.style_masks": [fetch.sha256_of(p) for p in inputs.style_masks],
            "task.strength_map": fetch.sha256_of(inputs.strength_map) if inputs.strength_map else None,
            "task.size": size,
            # The coarser scales and their steps; task.steps (the last scale's) may grow on a resume.
            "task.scales": [list(s) for s in plan[:-1]],
            "task.style_scale": inputs.style_scale,
            "task.init": inputs.init,
            "task.color": inputs.color,
            "task.histogram_method": inputs.histogram_method,
            "model": asdict(model),
            "layers.content": content_layers,
            "layers.style": style_layers,
            "loss": asdict(loss),
            "optimizer": asdict(optimizer) | {"betas": list(optimizer.betas)},
            "seed": cfg.seed,
        }
        # JSON round trip: the fingerprint is compared with the one a checkpoint holds.
        fingerprint = json.loads(json.dumps(fingerprint))
        settings = cls(
            model=model,
            trainer=trainer,
            runtime=runtime,
            memory=memory,
            inputs=inputs,
            content_layers=content_layers,
            style_layers=style_layers,
            loss=loss,
            optimizer=optimizer,
            size=size,
            schedule=tuple(plan),
            steps=steps,
            tile=tile,
            tile_overlap=overlap,
            image_every=image_cadence(task.image_every, sum(n for _, n in plan)),
            image_log_size=checks.at_least(task.image_log_size, MIN_SIZE, "task.image_log_size"),
            checkpoint_every=checks.at_least(task.checkpoint_every, 0, "task.checkpoint_every"),
            seed=cfg.seed,
            ckpt_path=ckpt_path,
            fingerprint=fingerprint,
        )
        if ckpt_path is not None:
            check_resume(ckpt_path, fingerprint)
        return settings


def image_cadence(value: Any, total_steps: int) -> int:
    """``task.image_every``: K steps, 0 (only the final image), or auto: about ``PREVIEWS`` previews over the run."""
    if value == "auto":
        return max(1, total_steps // PREVIEWS)
    if isinstance(value, str):
        raise ConfigError(f"task.image_every={value!r} is invalid; give auto, 0 (final image only) or a step count")
    return checks.at_least(value, 0, "task.image_every")


def loss_weights(loss: DictConfig) -> LossWeights:
    """``loss.content_weight``, ``loss.style_weight`` and ``loss.tv_weight``, each >= 0."""
    return LossWeights(
        *(checks.non_negative(loss[k], f"loss.{k}") for k in ("content_weight", "style_weight", "tv_weight"))
    )


def optimizer_settings(optimizer: DictConfig, first_order_lr: Any) -> OptimizerSettings:
    """``optimizer.*``; L-BFGS's step scale is ``optimizer.lr``, Adam's learning rate is the task's ``task.lr``."""
    name = checks.choice(optimizer.name, OPTIMIZERS, "optimizer.name")
    lr = checks.positive(*((optimizer.lr, "optimizer.lr") if name == "lbfgs" else (first_order_lr, "task.lr")))
    if name == "lbfgs":
        line_search = optimizer.line_search
        checks.choice(line_search, ["strong_wolfe", None], "optimizer.line_search")
        return OptimizerSettings(
            name, lr, checks.at_least(optimizer.history_size, 1, "optimizer.history_size"), line_search
        )
    betas = tuple(checks.number(b, f"optimizer.betas[{i}]") for i, b in enumerate(optimizer.betas))
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        raise ConfigError(f"optimizer.betas={list(betas)} is invalid; give two numbers in [0, 1)")
    return OptimizerSettings(
        name, lr, betas=betas, weight_decay=checks.non_negative(optimizer.weight_decay, "optimizer.weight_decay")
    )


def layer_sets(cfg: DictConfig, arch: str) -> tuple[dict[str, float], dict[str, float]]:
    layers = cfg.get("layers") or {}
    sets = []
    for kind in ("content", "style"):
        weights = checks.layer_weights(layers.get(kind), f"layers.{kind}")
        checks.vgg_layers(arch, weights, f"layers.{kind}")
        sets.append(weights)
    if not sets[0] and not sets[1]:
        raise ConfigError("layers.content and layers.style are both empty; name at least one layer, e.g. layers=gatys")
    return sets[0], sets[1]


def as_list(value: object) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]


def input_settings(task: DictConfig) -> Inputs:
    """Counts and values of the style inputs; pinned URLs are fetched (once, into the cache)."""
    styles = as_list(task.style)
    if not styles:
        raise ConfigError("task.style is empty; give one style image or a list: task.style=[a.jpg,b.jpg]")
    weights = [checks.non_negative(w, f"task.style_weights[{i}]") for i, w in enumerate(as_list(task.style_weights))]
    if weights and len(weights) != len(styles):
        raise ConfigError(f"task.style_weights has {len(weights)} values for {len(styles)} styles; give one per style")
    if weights and sum(weights) == 0:
        raise ConfigError("task.style_weights are all 0; give at least one style a positive weight")
    weights = weights or [1.0] * len(styles)
    masks = as_list(task.style_masks)
    if masks and len(masks) != len(styles):
        raise ConfigError(f"task.style_masks has {len(masks)} masks for {len(styles)} styles; give one per style")
    init = checks.choice(task.init, INITS, "task.init")
    mode = checks.choice(task.color, COLORS, "task.color")
    method = checks.choice(task.histogram_method, color.HISTOGRAM_METHODS, "task.histogram_method")
    style_scale = checks.positive(task.style_scale, "task.style_scale")
    style_key = "task.style" if len(styles) == 1 else "task.style[{}]"
    return Inputs(
        content=fetch.resolve(str(task.content), "task.content"),
        styles=tuple(fetch.resolve(str(s), style_key.format(i)) for i, s in enumerate(styles)),
        style_weights=tuple(w / sum(weights) for w in weights),
        style_masks=tuple(fetch.resolve(str(m), f"task.style_masks[{i}]") for i, m in enumerate(masks)),
        strength_map=fetch.resolve(str(task.strength_map), "task.strength_map") if task.strength_map else None,
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
    arch: str, layers: list[str], inputs: Inputs, content_wh: tuple[int, int], size: int, plan: list[tuple[float, int]]
) -> None:
    """Refuse images so thin that VGG's pooling layers would shrink a side to nothing before the
    deepest layer in use (a few pixels by thousands)."""
    minimum = backbone.min_side(arch, layers)
    coarsest = plan[0][0]
    h, w = output_hw(content_wh, max(1, round(size * coarsest)))
    if min(h, w) < minimum:
        raise ConfigError(
            f"task.content={inputs.content}: at {max(h, w)} px its short side is {min(h, w)} px, "
            f"below the {minimum} px "
            f"that {backbone.deepest(arch, layers)} needs; crop it to a less extreme aspect ratio or raise task.size"
        )
    style_long = max(MIN_SIZE, round(size * inputs.style_scale * coarsest))
    for key, path in zip(inputs.style_keys, inputs.styles):
        h, w = output_hw(images.open_rgb(path).size, style_long)
        if min(h, w) < minimum:
            raise ConfigError(
                f"{key}={path}: at {style_long} px its short side is {min(h, w)} px, below the {minimum} px that "
                f"{backbone.deepest(arch, layers)} needs; crop it or raise task.style_scale"
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
    fast_convs: bool  # Winograd convolutions on this device

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
        )


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
    ckpt = checkpoints.load(path, "ckpt_path", expected)
    saved = ckpt.get("stylize") if isinstance(ckpt, dict) else None
    if not isinstance(saved, dict) or "state_dict" not in ckpt or "image" not in ckpt.get("state_dict", {}):
        raise WeightsError(f"ckpt_path={path} is not {expected}")
    differ = [key for key in fingerprint if saved.get("fingerprint", {}).get(key) != fingerprint[key]]
    if differ:
        raise ConfigError(
            f"ckpt_path={path} was made with other {', '.join(differ)}; resume with the config it was made with "
            "(its run directory's .hydra/overrides.yaml), or start afresh without ckpt_path"
        )


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
    if inputs.style_scale != 1:
        hp["task.style_scale"] = inputs.style_scale
    if len(settings.schedule) > 1:
        hp["task.scales"] = str([round(f * settings.size) for f, _ in settings.schedule[:-1]])
    if settings.tiled:
        hp["task.tile"] = settings.tile
    if model.feature_scale != 1:
        hp["model.feature_scale"] = model.feature_scale
    return hp
