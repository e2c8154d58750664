"""The shared config groups, each parsed here and nowhere else, into one frozen value with one set of rules:
``model``, ``optimizer``, ``runtime``, ``trainer`` with ``precision``, ``loss``, ``layers``, the photo
``data`` of the trainers, and ``fetch``. A task's door composes these values and adds only its own checks.

The defaults live in configs/ (config.yaml and the group files): a parser reads every key it needs from
the composed config and has no fallback of its own. Only the doors and the entry import this module.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

from omegaconf import DictConfig

from transferlab import backbone, checks, conv_choice, features, shards
from transferlab.backbone import ModelSettings
from transferlab.errors import ConfigError
from transferlab.fetch import is_url, pinned, resolve
from transferlab.motion import Motion
from transferlab.runtime import RuntimeSettings
from transferlab.textloss import TextLossSettings
from transferlab.trainer import PRECISIONS, TrainerSettings, available_accelerators

log = logging.getLogger(__name__)
OPTIMIZERS = ("lbfgs", "adam", "adamw", "sgd")  # lbfgs's step scale is optimizer.lr; the others' task.lr


def model(
    cfg: DictConfig, archs: Sequence[str] | None = None, transforms: Sequence[str] = ("none",), described: str = ""
) -> ModelSettings:
    """``model.*``: an architecture of ``archs`` (default: the backbone's VGGs), weights that exist for it
    (a torchvision name, a state dict file, or null for random), and for a VGG its pooling,
    normalization and feature scale; other torchvision models take ImageNet normalization, max pooling.
    ``model.feature_transform`` is one of ``transforms`` (the task's; ``softmax``: stylize's), at
    ``model.temperature`` > 0. ``described``: ``archs`` in words, for the message refusing another (default:
    the list)."""
    node = cfg.model
    arch = node.arch
    if archs is None:
        if arch not in backbone.ARCHS:
            raise ConfigError(
                f"model.arch={arch!r} is not supported here; choose one of {', '.join(backbone.ARCHS)} "
                "(other torchvision models are for task=finetune, predict, export, extract and stylize)"
            )
    elif described and arch not in archs:
        raise ConfigError(f"model.arch={arch!r} is not supported here; choose {described}")
    else:
        checks.choice(arch, archs, "model.arch")
    weights = None if node.weights is None else str(node.weights)
    if weights is not None and not backbone.is_weights_file(weights) and weights not in backbone.weight_names(arch):
        choices = [*backbone.weight_names(arch), "a path to a .pth state dict", "null (random)"]
        raise ConfigError(f"model.weights={weights!r} is not a {arch} weight set; choose one of {choices}")
    transform = node.feature_transform
    if transform not in transforms:
        if transform in features.TRANSFORMS:
            raise ConfigError(
                f"model.feature_transform={transform} is for task=stylize and task=video's task.method=optimize; "
                f"task={cfg.task.name} uses the features as they are here: model.feature_transform=none"
            )
        checks.choice(transform, features.TRANSFORMS, "model.feature_transform")
    transform_keys = {
        "feature_transform": transform,
        "temperature": checks.positive(node.temperature, "model.temperature"),
    }
    if arch not in backbone.ARCHS:
        normalization = checks.choice(node.normalization, ["auto", "imagenet"], "model.normalization")
        return ModelSettings(arch, weights, "max", normalization, 1.0, **transform_keys)
    return ModelSettings(
        arch,
        weights,
        checks.choice(node.pooling, backbone.POOLINGS, "model.pooling"),
        checks.choice(node.normalization, ["auto", *backbone.NORMALIZATIONS], "model.normalization"),
        checks.positive(node.feature_scale, "model.feature_scale"),
        **transform_keys,
    )


@dataclass(frozen=True)
class OptimizerSettings:
    """``optimizer.*`` checked; the fields another optimizer uses are None."""

    name: str  # lbfgs | adam | adamw | sgd
    lr: float  # lbfgs: optimizer.lr (its step scale); the others: task.lr (its one home)
    history_size: int | None = None  # lbfgs
    line_search: str | None = None  # lbfgs: strong_wolfe | None (a fixed step)
    tolerance_grad: float | None = None  # lbfgs: converged where no gradient value exceeds it (torch's criterion)
    tolerance_change: float | None = None  # lbfgs: converged where a step changes no pixel or the loss by more
    betas: tuple[float, float] | None = None  # adam, adamw
    weight_decay: float | None = None  # adam, adamw, sgd
    momentum: float | None = None  # sgd
    nesterov: bool | None = None  # sgd


def optimizer(cfg: DictConfig, names: Sequence[str]) -> OptimizerSettings:
    """``optimizer.*`` for a task that can use the optimizers ``names``; a first-order optimizer's learning
    rate is ``task.lr``, > 0 wherever it is written."""
    node = cfg.optimizer
    name = checks.choice(node.name, names, "optimizer.name")
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer {name!r} has no parser; known: {OPTIMIZERS}")
    if name == "lbfgs":
        return OptimizerSettings(
            name,
            checks.positive(node.lr, "optimizer.lr"),
            history_size=checks.at_least(node.history_size, 1, "optimizer.history_size"),
            line_search=checks.choice(node.line_search, ["strong_wolfe", None], "optimizer.line_search"),
            tolerance_grad=checks.non_negative(node.tolerance_grad, "optimizer.tolerance_grad"),
            tolerance_change=checks.non_negative(node.tolerance_change, "optimizer.tolerance_change"),
        )
    lr = checks.positive(cfg.task.lr, "task.lr")
    decay = checks.non_negative(node.weight_decay, "optimizer.weight_decay")
    if name == "sgd":
        momentum = checks.non_negative(node.momentum, "optimizer.momentum")
        if momentum >= 1:
            raise ConfigError(f"optimizer.momentum={momentum} is invalid; it must be in [0, 1)")
        nesterov = checks.choice(node.nesterov, [True, False], "optimizer.nesterov")
        if nesterov and momentum == 0:
            raise ConfigError("optimizer.nesterov=true needs optimizer.momentum > 0")
        return OptimizerSettings(name, lr, weight_decay=decay, momentum=momentum, nesterov=nesterov)
    betas = tuple(checks.number(b, f"optimizer.betas[{i}]") for i, b in enumerate(node.betas))
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        raise ConfigError(f"optimizer.betas={list(betas)} is invalid; give two numbers in [0, 1)")
    return OptimizerSettings(name, lr, betas=betas, weight_decay=decay)  # type: ignore[arg-type]


def runtime(cfg: DictConfig) -> RuntimeSettings:
    """``runtime.*``: the process-wide settings every task that builds the backbone applies, each with
    its off switch."""
    node = cfg.runtime
    return RuntimeSettings(
        **{
            key: checks.choice(node[key], [True, False], f"runtime.{key}")
            for key in ("flush_denormal", "keep_freed_memory")
        },
        winograd=checks.choice(node.winograd, ["auto", True, False], "runtime.winograd"),
    )


def trainer(cfg: DictConfig, optimizer: str | None = None) -> TrainerSettings:
    """``trainer.*`` and ``precision`` checked, with ``trainer.accelerator=auto`` resolved for this machine;
    ``optimizer``: the run's, when it has one (fp16 loss scaling cannot drive L-BFGS)."""
    precision = checks.choice(str(cfg.precision), PRECISIONS, "precision")
    if precision == "16-mixed" and optimizer == "lbfgs":
        raise ConfigError(
            "precision=16-mixed cannot drive optimizer=lbfgs (fp16 loss scaling breaks its line search); "
            "use precision=bf16-mixed or 32, or optimizer=adam"
        )
    available = available_accelerators()
    requested = checks.choice(cfg.trainer.accelerator, ["auto", *available], "trainer.accelerator")
    if requested == "auto":
        accelerator = "cuda" if available["cuda"] else "mps" if available["mps"] else "cpu"
    elif not available[requested]:
        raise ConfigError(
            f"trainer.accelerator={requested}: no {requested} device on this machine; use trainer.accelerator=auto"
        )
    else:
        accelerator = requested
    if precision == "16-mixed" and accelerator != "cuda":
        raise ConfigError(
            f"precision=16-mixed needs a CUDA GPU (this run is on {accelerator}); use precision=bf16-mixed or 32"
        )
    if precision == "bf16-mixed" and accelerator == "cpu" and not conv_choice.native_bf16():
        log.warning(
            "precision=bf16-mixed: this CPU has no native bf16 (AVX512_BF16 or AMX), so bf16 is emulated and "
            "will likely be slower than precision=32 (runtime.winograd=auto runs VGG's timed 3x3 convolutions in "
            "fp32 here; everything else runs in emulated bf16)"
        )
    num_nodes = checks.at_least(cfg.trainer.num_nodes, 1, "trainer.num_nodes")
    return TrainerSettings(accelerator, cfg.trainer.devices, cfg.trainer.strategy, precision, num_nodes)


@dataclass(frozen=True)
class LossWeights:
    """``loss.<term>_weight``, each >= 0; a term the task's loss config does not name weighs 0."""

    content: float
    style: float
    tv: float = 0.0
    distill: float = 0.0
    temporal: float = 0.0
    identity: float = (
        0.0  # an arbitrary-style network's output for (x, x) against x (SANet's and StyTr²'s identity losses)
    )
    identity_features: float = 0.0  # the same at the loss network's style layers


# The keys of a network trainer's temporal term besides its weight (configs/loss/temporal/default.yaml).
MOTION_KEYS = ("temporal_noise", "temporal_shift", "temporal_zoom", "temporal_rotation")


def loss(cfg: DictConfig, terms: Iterable[str], others: Iterable[str] = ()) -> LossWeights:
    """``loss.*``: the weight of each of the task's ``terms`` (required), and no other key but ``others``
    (keys the task checks itself: the text terms', transferlab/text.py); a task whose terms include
    ``temporal`` also takes the motion keys of ``steadiness``."""
    terms = list(terms)
    node = cfg.loss
    known = {f"{t}_weight" for t in terms} | (set(MOTION_KEYS) if "temporal" in terms else set()) | set(others)
    extra = sorted(set(map(str, node)) - known)
    if extra:
        raise ConfigError(
            f"loss.{extra[0]} is not a loss weight of task={cfg.task.name}; "
            f"its terms are {', '.join(f'loss.{t}_weight' for t in terms)}"
        )
    return LossWeights(**{t: checks.non_negative(node[f"{t}_weight"], f"loss.{t}_weight") for t in terms})


# loss.* keys of a text prompt's terms (configs/loss/text/default.yaml), read by text_loss.
TEXT_LOSS_KEYS = (
    "text_direction_weight",
    "text_patch_weight",
    "text_crops",
    "text_crop_size",
    "text_distortion",
    "text_threshold",
)


def text_loss(cfg: DictConfig) -> TextLossSettings:
    """``loss.text_*`` (configs/loss/text/default.yaml): a text prompt's terms (transferlab/textloss.py)."""
    node = cfg.loss
    distortion = checks.non_negative(node.text_distortion, "loss.text_distortion")
    if distortion >= 1:
        raise ConfigError(f"loss.text_distortion={distortion} is invalid; it must be in [0, 1) (0.5: CLIPstyler's)")
    threshold = checks.non_negative(node.text_threshold, "loss.text_threshold")
    if threshold > 2:
        raise ConfigError(f"loss.text_threshold={threshold} is invalid; it must be in [0, 2] (1 - cos lies there)")
    return TextLossSettings(
        direction_weight=checks.non_negative(node.text_direction_weight, "loss.text_direction_weight"),
        patch_weight=checks.non_negative(node.text_patch_weight, "loss.text_patch_weight"),
        crops=checks.at_least(node.text_crops, 1, "loss.text_crops"),
        crop_size=checks.at_least(node.text_crop_size, 8, "loss.text_crop_size"),
        distortion=distortion,
        threshold=threshold,
    )


@dataclass(frozen=True)
class Steadiness:
    """How a trained network is held steady (``loss.temporal_*``): each photo is moved by a random
    ``motion`` with exact flow and, where ``noise`` > 0, given Gaussian noise of that standard deviation
    (pixels in [0, 1]); the network's output of the moved photo should be its output moved."""

    motion: Motion
    noise: float

    def fingerprint(self) -> dict[str, Any]:
        return {"motion": asdict(self.motion), "noise": self.noise}


def steadiness(cfg: DictConfig) -> Steadiness:
    """``loss.temporal_noise`` in [0, 1], ``loss.temporal_shift`` (pixels, below half the training photos'
    side ``data.crop``: a larger one moves the photo out of the frame, and the term compares no pixel),
    ``loss.temporal_zoom`` (a fraction in [0, 0.5]) and ``loss.temporal_rotation`` (degrees in [0, 45])."""
    node = cfg.loss
    limits = {"temporal_noise": 1.0, "temporal_zoom": 0.5, "temporal_rotation": 45.0}
    values = {}
    for key in MOTION_KEYS:
        value = checks.non_negative(node[key], f"loss.{key}")
        if key in limits and value > limits[key]:
            raise ConfigError(f"loss.{key}={value} is invalid; it must be in [0, {limits[key]:g}]")
        values[key] = value
    side = crop(cfg)
    if values["temporal_shift"] >= side / 2:
        raise ConfigError(
            f"loss.temporal_shift={values['temporal_shift']:g} is invalid; it must be below half the training "
            f"photos' side (data.crop={side}: < {side / 2:g} px), or the moved photo leaves the frame"
        )
    motion = Motion(values["temporal_shift"], values["temporal_zoom"], values["temporal_rotation"])
    return Steadiness(motion, values["temporal_noise"])


class Layers(NamedTuple):
    """``layers.content`` and ``layers.style``: per-layer weights, each set normalized to sum to 1."""

    content: dict[str, float]
    style: dict[str, float]


def layers(cfg: DictConfig, arch: str) -> Layers:
    """``layers.*`` for ``arch``: every layer named as in the papers (``relu4_2``), weights >= 0. A deleted
    set (``~layers.style``) is an empty one: that term is left out; both empty is refused. A network of
    another family (``features.is_node_arch``) takes ``model.layers.*`` instead, named by torchvision's node
    names (its model file holds its default set): the ``layers`` group names VGG's layers."""
    if features.is_node_arch(arch):
        return node_layers(cfg, arch)
    node = cfg.get("layers") or {}
    sets = []
    for kind in ("content", "style"):
        given = node.get(kind) or {}
        checks.vgg_layers(arch, map(str, given), f"layers.{kind}")
        sets.append(checks.layer_weights(given, f"layers.{kind}"))
    if not sets[0] and not sets[1]:
        raise ConfigError("layers.content and layers.style are both empty; name at least one layer, e.g. layers=gatys")
    return Layers(*sets)


def node_layers(cfg: DictConfig, arch: str) -> Layers:
    """``model.layers.content`` and ``model.layers.style`` of a network addressed by node names; a node of
    ``arch`` written into the ``layers`` group (VGG's) is refused, naming where it belongs."""
    for kind in ("content", "style"):
        misplaced = [
            str(name) for name in (cfg.get("layers") or {}).get(kind) or {} if str(name) in features.node_names(arch)
        ]
        if misplaced:
            raise ConfigError(
                f"layers.{kind}.{misplaced[0]}: the layers group names VGG's layers; name {arch}'s in "
                f"model.layers.{kind} (e.g. model.layers.{kind}={{{misplaced[0]}:1.0}})"
            )
    node = cfg.model.get("layers") or {}
    sets = []
    for kind in ("content", "style"):
        given = node.get(kind) or {}
        problem = features.unknown_layer(arch, map(str, given))
        if problem:
            raise ConfigError(f"model.layers.{kind}: {problem}")
        sets.append(checks.layer_weights(given, f"model.layers.{kind}"))
    if not sets[0] and not sets[1]:
        raise ConfigError(
            f"model.layers.content and model.layers.style are both empty; name at least one layer of {arch}"
        )
    return Layers(*sets)


@dataclass(frozen=True)
class Photos:
    """``data.*`` (configs/data/photos.yaml): the content photos every photo-trained network learns from."""

    root: Path | str  # a folder, or a shard manifest (a local path or a pinned URL: read by the task)
    crop: int
    resize: int | None
    val_count: int
    val_size: int
    batch_size: int
    num_workers: int
    max_bad_fraction: float
    shard_window: int
    hint: str | None  # what root should hold, said when it is missing

    def fingerprint(self) -> dict[str, Any]:
        """What the training batches depend on (a resume must keep it; the folder and workers may change)."""
        keys = ("crop", "resize", "val_count", "batch_size", "max_bad_fraction")
        return {"data": {k: getattr(self, k) for k in keys} | self.shard_fingerprint()}

    def shard_fingerprint(self) -> dict[str, Any]:
        return {"shard_window": self.shard_window} if shards.is_manifest(self.root) else {}


MAX_SEED = 2**32 - 1  # numpy's and Lightning's range: Lightning replaces a seed outside it by a random one


def seed(cfg: DictConfig) -> int:
    """``seed``: an integer in [0, 2**32 - 1]."""
    value = cfg.seed
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_SEED:
        raise ConfigError(f"seed={value!r} is invalid; it must be an integer in [0, {MAX_SEED}]")
    return value


def crop(cfg: DictConfig) -> int:
    """``data.crop``: the side of the square training photos (>= 16 px)."""
    return checks.at_least(cfg.data.crop, 16, "data.crop")


def photos(cfg: DictConfig) -> Photos:
    data = cfg.data
    side = crop(cfg)
    return Photos(
        root=folder_or_shards(data.root, "data.root"),
        crop=side,
        resize=None if data.resize is None else checks.at_least(data.resize, side, "data.resize"),
        val_count=checks.at_least(data.val_count, 1, "data.val_count"),
        val_size=checks.at_least(data.val_size, 16, "data.val_size"),
        batch_size=checks.at_least(data.batch_size, 1, "data.batch_size"),
        num_workers=checks.at_least(data.num_workers, 0, "data.num_workers"),
        max_bad_fraction=checks.non_negative(data.max_bad_fraction, "data.max_bad_fraction"),
        shard_window=checks.at_least(data.shard_window, 1, "data.shard_window"),
        hint=None if data.hint is None else str(data.hint),
    )


def folder_or_shards(value: Any, key: str) -> Path | str:
    """A folder of images (a path, a sample: or a dataset: name), or a shard manifest kept as given (a path
    or a pinned URL: its shards are named relative to it); a folder holding a manifest (task=pack's
    shards/) stands for it."""
    source = str(value)
    if shards.is_manifest(source):
        if is_url(source):
            pinned(source, key)  # refused here, in one line, when it has no hash
        return source
    folder = resolve(source, key)
    return str(folder / shards.MANIFEST) if (folder / shards.MANIFEST).is_file() else folder


class FetchLimits(NamedTuple):
    timeout_s: float
    max_mb: float


# Upper bounds: a longer wait is a hang (and Python's timers overflow near 1e10 s); a larger size, no limit.
FETCH_BOUNDS = {"timeout_s": 86400.0, "max_mb": float(2**20)}


def fetch(cfg: DictConfig) -> FetchLimits:
    """``fetch.*``: the timeout (at most a day) and size limit (at most 1 TiB) of every download of the run."""
    values = []
    for key, bound in FETCH_BOUNDS.items():
        value = checks.positive(cfg.fetch[key], f"fetch.{key}")
        if value > bound:
            raise ConfigError(f"fetch.{key}={value:g} is invalid; it must be in (0, {bound:.0f}]")
        values.append(value)
    return FetchLimits(*values)
