"""The doors of the fast wing: each task's config checked and turned into frozen plain values, once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from transferlab import backbone, checks, exporter
from transferlab.errors import ConfigError
from transferlab.exporter import ExportOptions
from transferlab.fast.networks import ARCHS, MIN_SIZE
from transferlab.style.settings import layer_sets
from transferlab.trainer import TrainerSettings

COLORS = ("none", "luminance", "histogram")


@dataclass(frozen=True)
class NetworkSettings:
    arch: str
    width: float
    blocks: int

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> NetworkSettings:
        arch = checks.choice(cfg.fastnet.arch, ARCHS, "fastnet.arch")
        width = checks.positive(cfg.fastnet.width, "fastnet.width")
        if width > 8:
            raise ConfigError(
                f"fastnet.width={width} is invalid; it must be in (0, 8] (1 is Johnson et al.'s 32 channels)"
            )
        return cls(arch, width, checks.at_least(cfg.fastnet.blocks, 0, "fastnet.blocks"))


@dataclass(frozen=True)
class TrainSettings:
    network: NetworkSettings
    # loss network
    arch: str
    weights: str | None
    pooling: str
    normalization: str
    feature_scale: float
    content_layers: dict[str, float]
    style_layers: dict[str, float]
    content_weight: float
    style_weight: float
    tv_weight: float
    # data
    style: str  # a local path or pinned URL, resolved by the task (fetching is work, not a check)
    style_size: int
    photos: Photos
    training: Training
    hparams: dict[str, Any]

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> TrainSettings:
        task, model, loss = cfg.task, cfg.model, cfg.loss
        arch = model.arch
        if arch not in backbone.ARCHS:
            raise ConfigError(f"model.arch={arch!r} is not supported; choose one of {', '.join(backbone.ARCHS)}")
        content, style = layer_sets(cfg, arch)
        return cls(
            network=NetworkSettings.from_cfg(cfg),
            arch=arch,
            weights=model.weights,
            pooling=checks.choice(model.pooling, ["max", "avg"], "model.pooling"),
            normalization=model.normalization,
            feature_scale=checks.positive(model.feature_scale, "model.feature_scale"),
            content_layers=content,
            style_layers=style,
            content_weight=checks.non_negative(loss.content_weight, "loss.content_weight"),
            style_weight=checks.non_negative(loss.style_weight, "loss.style_weight"),
            tv_weight=checks.non_negative(loss.tv_weight, "loss.tv_weight"),
            style=str(task.style),
            style_size=checks.at_least(task.style_size, 32, "task.style_size"),
            photos=Photos.from_cfg(cfg),
            training=Training.from_cfg(cfg, "a train_fast checkpoint (.ckpt) to resume"),
            hparams=checks.hparams(cfg, ["task", "fastnet", "model", "layers", "loss", "data", "optimizer", "seed"]),
        )


@dataclass(frozen=True)
class Photos:
    """``data.*`` (configs/data/photos.yaml): the content photos every photo-trained network learns from."""

    root: Path
    crop: int
    resize: int | None
    val_count: int
    val_size: int
    batch_size: int
    num_workers: int
    max_bad_fraction: float

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> Photos:
        data = cfg.data
        crop = checks.at_least(data.crop, 16, "data.crop")
        return cls(
            root=Path(str(data.root)),
            crop=crop,
            resize=None if data.resize is None else checks.at_least(data.resize, crop, "data.resize"),
            val_count=checks.at_least(data.val_count, 1, "data.val_count"),
            val_size=checks.at_least(data.val_size, 16, "data.val_size"),
            batch_size=checks.at_least(data.batch_size, 1, "data.batch_size"),
            num_workers=checks.at_least(data.num_workers, 0, "data.num_workers"),
            max_bad_fraction=checks.non_negative(data.max_bad_fraction, "data.max_bad_fraction"),
        )


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

    @classmethod
    def from_cfg(cls, cfg: DictConfig, expected: str) -> Training:
        """``expected`` describes the checkpoint a resume takes, for messages."""
        task, opt = cfg.task, cfg.optimizer
        checks.choice(opt.name, ["adam"], "optimizer.name")
        betas = tuple(checks.number(b, "optimizer.betas") for b in opt.betas)
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ConfigError(f"optimizer.betas={list(opt.betas)} is invalid; give two numbers in [0, 1)")
        ckpt = None
        if cfg.ckpt_path:
            from transferlab import checkpoints

            ckpt = checkpoints.local_file(cfg.ckpt_path, "ckpt_path", expected)
        steps = checks.at_least(task.steps, 1, "task.steps")
        return cls(
            trainer=checks.trainer_settings(cfg),
            seed=int(cfg.seed),
            steps=steps,
            lr=checks.positive(task.lr, "task.lr"),
            betas=betas,  # type: ignore[arg-type]
            weight_decay=checks.non_negative(opt.weight_decay, "optimizer.weight_decay"),
            val_every=min(checks.at_least(task.val_every, 1, "task.val_every"), steps),
            checkpoint_every=checks.at_least(task.checkpoint_every, 0, "task.checkpoint_every"),
            log_every=checks.at_least(task.log_every, 1, "task.log_every"),
            ckpt_path=ckpt,
        )


NETWORK_FILE = "a train_fast checkpoint (.ckpt) or an export_fast model.onnx"


def model_file(source: str, key: str, suffixes: tuple[str, ...], expected: str) -> Path:
    """``source`` as a local file with one of ``suffixes``; errors name ``key`` and ``expected``."""
    from transferlab import checkpoints

    path = checkpoints.local_file(source, key, expected)
    if path.suffix.lower() not in suffixes:
        raise ConfigError(f"{key}={path} is not a {' or '.join(suffixes)} file; give {expected}")
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


@dataclass(frozen=True)
class ApplySettings:
    model: Path
    images: ImagesToStylize
    device: str

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> ApplySettings:
        model = checkpoint_file(cfg, (".ckpt", ".onnx"), NETWORK_FILE)
        device = "cpu" if model.suffix.lower() == ".onnx" else checks.trainer_settings(cfg).accelerator
        return cls(model, ImagesToStylize.from_task(cfg.task, MIN_SIZE), device)


@dataclass(frozen=True)
class ExportSettings:
    checkpoint: Path
    export: ExportOptions
    example_size: int
    check_size: tuple[int, int]
    seed: int

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> ExportSettings:
        task = cfg.task
        return cls(
            checkpoint=checkpoint_file(cfg, (".ckpt",), "a train_fast checkpoint (.ckpt)"),
            export=ExportOptions.from_cfg(task),
            example_size=exporter.side(
                checks.at_least(task.example_size, 16, "task.example_size"), "task.example_size"
            ),
            check_size=exporter.side_pair(task.check_size, "task.check_size", MIN_SIZE),
            seed=int(cfg.seed),
        )
