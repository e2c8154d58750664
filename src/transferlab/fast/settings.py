"""The doors of the fast wing: each task's config checked and turned into frozen plain values, once."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from transferlab import backbone, checks, exporter, groups, images, saliency, text
from transferlab.backbone import ModelSettings
from transferlab.errors import ConfigError
from transferlab.exporter import ExportOptions
from transferlab.fast.arbitrary.networks import MIN_SIZE as STYLE_MIN_SIZE
from transferlab.fast.per_style.networks import ARCHS, MAX_BLOCKS, MAX_WIDTH, MIN_SIZE
from transferlab.groups import LossWeights, Photos, Steadiness
from transferlab.runtime import RuntimeSettings
from transferlab.text import TextSettings
from transferlab.trainer import TrainerSettings

HP_KEYS = (  # TensorBoard's HParams columns after the user's overrides (checks.hparams)
    "task.style",
    "task.style_size",
    "task.steps",
    "task.lr",
    "fastnet.arch",
    "fastnet.width",
    "fastnet.blocks",
    "model.arch",
    "model.weights",
    "layers.content",
    "layers.style",
    "loss.content_weight",
    "loss.style_weight",
    "loss.tv_weight",
    "loss.temporal_weight",
    "data.root",
    "data.crop",
    "data.batch_size",
    "precision",
    "seed",
)
TEXT_HP_KEYS = ("task.style_text", "text.model")  # beside them with a prompt

COLORS = ("none", "luminance", "histogram")


@dataclass(frozen=True)
class NetworkSettings:
    arch: str
    width: float
    blocks: int

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> NetworkSettings:
        return cls.from_values(cfg.fastnet, "fastnet")

    @classmethod
    def from_values(cls, values: Any, prefix: str) -> NetworkSettings:
        """``arch``, ``width`` and ``blocks`` of ``values`` (the ``fastnet`` group, or the ``network``
        hyperparameters a checkpoint holds: one set of rules for both), errors naming ``prefix``."""
        arch = checks.choice(values.get("arch"), ARCHS, f"{prefix}.arch")
        width = checks.positive(values.get("width"), f"{prefix}.width")
        if width > MAX_WIDTH:
            raise ConfigError(
                f"{prefix}.width={width} is invalid; it must be in (0, {MAX_WIDTH}] (1 is Johnson et al.'s 32 channels)"
            )
        blocks = checks.at_least(values.get("blocks"), 0, f"{prefix}.blocks")
        if blocks > MAX_BLOCKS:
            raise ConfigError(
                f"{prefix}.blocks={blocks} is invalid; it must be in [0, {MAX_BLOCKS}] (Johnson et al.: 5)"
            )
        return cls(arch, width, blocks)


@dataclass(frozen=True)
class TrainSettings:
    network: NetworkSettings
    # the loss network and loss (groups.py)
    model: ModelSettings
    content_layers: dict[str, float]
    style_layers: dict[str, float]
    loss: LossWeights
    steadiness: Steadiness  # loss.temporal_*: used where loss.temporal > 0
    runtime: RuntimeSettings
    # data
    style: str | None  # a local path or pinned URL, resolved by the task (fetching is work, not a check)
    style_size: int
    photos: Photos
    training: Training
    hparams: dict[str, Any]
    text: TextSettings | None = None  # task.style_text: a prompt in place of (or beside) the style image

    def fingerprint(self) -> dict[str, Any]:
        """The settings a resumed run must share with the checkpoint's (the task adds its files')."""
        return {
            "fastnet": asdict(self.network),
            "model": asdict(self.model),
            "layers.content": self.content_layers,
            "layers.style": self.style_layers,
            "loss": [self.loss.content, self.loss.style, self.loss.tv],
            "task.style_size": self.style_size,
            **self.photos.fingerprint(),
            **self.training.fingerprint(),
            **temporal_fingerprint(self.loss.temporal, self.steadiness),
            **(self.text.fingerprint() if self.text is not None else {}),
        }

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> TrainSettings:
        model = groups.model(cfg)
        layers = groups.layers(cfg, model.arch)
        prompt = text.settings(cfg)
        style = None if prompt is not None and OmegaConf.is_missing(cfg.task, "style") else cfg.task.style
        if style is None and prompt is None:
            raise ConfigError("task.style is empty; give a style image, or a prompt: task.style_text='...'")
        settings = cls(
            network=NetworkSettings.from_cfg(cfg),
            model=model,
            content_layers=layers.content,
            style_layers=layers.style if style is not None else {},  # a prompt alone: VGG to the content layers
            loss=groups.loss(cfg, ("content", "style", "tv", "temporal"), groups.TEXT_LOSS_KEYS),
            steadiness=groups.steadiness(cfg),
            runtime=groups.runtime(cfg),
            style=None if style is None else str(style),
            style_size=checks.at_least(cfg.task.style_size, 32, "task.style_size"),
            photos=groups.photos(cfg),
            training=Training.from_cfg(cfg, "a train_fast checkpoint (.ckpt) to resume"),
            hparams=checks.hparams(cfg, HP_KEYS[:1] + (TEXT_HP_KEYS if prompt else ()) + HP_KEYS[1:]),
            text=prompt,
        )
        problems = checks.Problems()  # the values are right: the style image and the weights at once
        if style is not None:
            problems.run(images.check_source, style, "task.style")
        problems.run(backbone.check_weights, model.arch, model.weights, bool(problems.errors))
        problems.raise_all()
        return settings


def temporal_fingerprint(weight: float, steadiness: Steadiness) -> dict[str, Any]:
    """What a resume must keep of the temporal term; nothing at weight 0, so that the checkpoints of runs
    without it (and of the versions before it) resume as they did."""
    return {"loss.temporal": {"weight": weight, **steadiness.fingerprint()}} if weight > 0 else {}


@dataclass(frozen=True)
class Training:
    """Adam and the step schedule every step-trained network shares: ``task.steps``, ``val_every``,
    ``checkpoint_every``, ``log_every``, the trainer, the seed and ``ckpt_path`` (a local checkpoint)."""

    trainer: TrainerSettings
    seed: int
    steps: int
    lr: float
    betas: tuple[float, float]
    weight_decay: float
    val_every: int
    checkpoint_every: int
    log_every: int
    ckpt_path: Path | None

    def fingerprint(self) -> dict[str, Any]:
        """What a resume must keep: the optimizer and the seed (``task.steps`` may grow)."""
        return {"optimizer": {"lr": self.lr, "betas": self.betas, "weight_decay": self.weight_decay}, "seed": self.seed}

    @classmethod
    def from_cfg(cls, cfg: DictConfig, expected: str) -> Training:
        """``expected`` describes the checkpoint a resume takes, for messages."""
        task, opt = cfg.task, groups.optimizer(cfg, ["adam"])
        ckpt = None
        if cfg.ckpt_path:
            from transferlab import checkpoints

            ckpt = checkpoints.local_file(cfg.ckpt_path, "ckpt_path", expected)
        steps = checks.at_least(task.steps, 1, "task.steps")
        return cls(
            trainer=groups.trainer(cfg, opt.name),
            seed=groups.seed(cfg),
            steps=steps,
            lr=opt.lr,
            betas=opt.betas,  # type: ignore[arg-type]
            weight_decay=opt.weight_decay,  # type: ignore[arg-type]
            val_every=min(checks.at_least(task.val_every, 1, "task.val_every"), steps),
            checkpoint_every=checks.at_least(task.checkpoint_every, 0, "task.checkpoint_every"),
            log_every=checks.at_least(task.log_every, 1, "task.log_every"),
            ckpt_path=ckpt,
        )


def checked_alpha(task: DictConfig) -> float:
    """``task.alpha``, the overall strength of the style in [0, 1]."""
    value = checks.number(task.alpha, "task.alpha")
    if not 0 <= value <= 1:
        raise ConfigError(f"task.alpha={value} is invalid; it must be in [0, 1] (0 content, 1 full style)")
    return value


NETWORK_FILE = "a train_fast or train_adain checkpoint (.ckpt), or an export_fast or export_adain model.onnx"


def model_file(source: str, key: str, suffixes: tuple[str, ...], expected: str) -> Path:
    """``source`` as a local file with one of ``suffixes``; errors name ``key`` and ``expected``."""
    from transferlab import checkpoints

    path = checkpoints.local_file(source, key, expected)
    if path.suffix.lower() not in suffixes:
        raise ConfigError(f"{key}={path} is not a {' or '.join(suffixes)} file; give {expected}")
    if path.suffix.lower() == ".onnx":  # checked (onnx) and run (onnxruntime) by fast.stylizer
        checks.requires(f"{key}={path} (an ONNX model)", ("onnx", "onnxruntime"))
    return path


def checkpoint_file(cfg: DictConfig, suffixes: tuple[str, ...], expected: str) -> Path:
    """``ckpt_path``, required, as a local file with one of ``suffixes``."""
    if not cfg.ckpt_path:
        raise ConfigError(f"task={cfg.task.name} needs ckpt_path=<{expected}>")
    return model_file(str(cfg.ckpt_path), "ckpt_path", suffixes, expected)


@dataclass(frozen=True)
class ImagesToStylize:
    """The images an apply task reads and how it writes them: ``task.input`` (an image, a folder or a
    list), ``task.size``, ``task.batch_size``, ``task.color``, ``task.format``."""

    inputs: tuple[str, ...]
    size: int | None
    batch_size: int
    color: str
    format: str

    @classmethod
    def from_task(cls, task: DictConfig, min_size: int) -> ImagesToStylize:
        raw = task.input
        inputs = tuple(map(str, OmegaConf.to_container(raw) if OmegaConf.is_list(raw) else [raw]))
        if not inputs:
            raise ConfigError("task.input=[] is empty; give an image, a folder or a list of images")
        return cls(
            inputs=inputs,
            size=None if task.size is None else checks.at_least(task.size, min_size, "task.size"),
            batch_size=checks.at_least(task.batch_size, 1, "task.batch_size"),
            color=checks.choice(task.color, COLORS, "task.color"),
            format=checks.choice(task.format, ["png", "jpg"], "task.format"),
        )

    def check_files(self, problems: checks.Problems) -> None:
        """Each local input is an image file or a folder (whose images the task lists), its problems kept."""
        for i, source in enumerate(self.inputs):
            problems.run(
                images.check_source, source, "task.input" if len(self.inputs) == 1 else f"task.input[{i}]", True
            )


@dataclass(frozen=True)
class ApplySettings:
    model: Path
    images: ImagesToStylize
    device: str
    style: str | None  # an arbitrary-style model's style: a local path or pinned URL, resolved by the task
    style_size: int
    alpha: float
    strength_map: str | None  # auto, or a local path or pinned URL, resolved by the task

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> ApplySettings:
        task = cfg.task
        if OmegaConf.is_list(task.style):
            raise ConfigError(
                "task.style takes one style image in apply_fast; several styles, blended or placed by masks, "
                "need task=apply_adain with a train_adain checkpoint"
            )
        to_stylize = ImagesToStylize.from_task(task, MIN_SIZE)
        style_size = checks.at_least(task.style_size, STYLE_MIN_SIZE, "task.style_size")
        alpha = checked_alpha(task)
        problems = checks.Problems()  # the values are right: the model, images, style and strength map at once
        model = problems.run(checkpoint_file, cfg, (".ckpt", ".onnx"), NETWORK_FILE)
        to_stylize.check_files(problems)
        if task.style:
            problems.run(images.check_source, task.style, "task.style")
        strength = problems.run(saliency.strength_source, task.strength_map, "task.strength_map")
        problems.raise_all()
        device = "cpu" if model.suffix.lower() == ".onnx" else groups.trainer(cfg).accelerator
        return cls(
            model,
            to_stylize,
            device,
            str(task.style) if task.style else None,
            style_size,
            alpha,
            strength,
        )


@dataclass(frozen=True)
class ExportSettings:
    checkpoint: Path
    export: ExportOptions
    example_size: int
    check_size: tuple[int, int]
    seed: int
    calibration: str | None  # int8's calibration photos (a file, folder, sample: name); None: dynamic int8

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> ExportSettings:
        task = cfg.task
        problems = checks.Problems()  # a missing checkpoint and a missing extra at once
        path = problems.run(checkpoint_file, cfg, (".ckpt",), "a train_fast checkpoint (.ckpt)")
        export = problems.run(ExportOptions.from_cfg, task)
        calibration = None if task.calibration is None else str(task.calibration)
        if calibration is not None:
            problems.run(images.check_source, calibration, "task.calibration", True)
        problems.raise_all()
        return cls(
            checkpoint=path,
            export=export,
            example_size=exporter.side(
                checks.at_least(task.example_size, 16, "task.example_size"), "task.example_size"
            ),
            check_size=exporter.side_pair(task.check_size, "task.check_size", MIN_SIZE),
            seed=groups.seed(cfg),
            calibration=calibration if "int8" in export.formats else None,
        )
