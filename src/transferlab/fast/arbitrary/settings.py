"""The doors of the AdaIN tasks (train_adain, apply_adain, export_adain): each task's config checked and
turned into frozen plain values, once. The shared groups come from groups.py, the schedule checks from
fast/settings.py."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from transferlab import backbone, checks, exporter, groups, images, saliency
from transferlab.errors import ConfigError
from transferlab.exporter import ExportOptions
from transferlab.fast.arbitrary.networks import (
    ARCH_NAMES,
    ARCHS,
    CONTENT_LAYERS,
    ENCODERS,
    LOSS_TERMS,
    MIN_SIZE,
    MULTIPLE,
)
from transferlab.fast.settings import (
    ImagesToStylize,
    Training,
    checked_alpha,
    checkpoint_file,
    temporal_fingerprint,
)
from transferlab.groups import Photos, Steadiness
from transferlab.runtime import RuntimeSettings

HP_KEYS = (  # TensorBoard's HParams columns after the user's overrides (checks.hparams)
    "task.arch",
    "task.encoder",
    "task.width",
    "task.styles",
    "task.steps",
    "task.lr",
    "model.arch",
    "model.weights",
    "layers.content",
    "layers.style",
    "loss.content_weight",
    "loss.style_weight",
    "loss.distill_weight",
    "loss.identity_weight",
    "loss.temporal_weight",
    "data.root",
    "data.crop",
    "data.batch_size",
    "precision",
    "seed",
)

CHECKPOINT = "a train_adain checkpoint (.ckpt)"
EXPORTED = "an export_adain model.onnx"


@dataclass(frozen=True)
class TrainAdaINSettings:
    arch: str  # adain | sanet | adaattn: what aligns the content's features to the style's
    encoder: str  # vgg19 (frozen) | light (trained, distilled against VGG19)
    width: float  # the light encoder's and decoder's (or the transformer's) channels x this (1.0 for vgg19)
    # the loss network (VGG19 to relu4_1, frozen; also the encoder for encoder=vgg19) and loss
    weights: str | None
    pooling: str
    normalization: str
    style_layers: dict[str, float]  # normalized to sum to 1
    content_layers: dict[str, float]  # the arch's (CONTENT_LAYERS; the transformer's free), normalized to sum to 1
    content_weight: float
    style_weight: float
    distill_weight: float  # light encoder only
    identity_weight: float  # the output for (x, x) against x: images, then VGG19 features
    identity_features_weight: float
    temporal_weight: float
    steadiness: Steadiness  # loss.temporal_*: used where temporal_weight > 0
    runtime: RuntimeSettings
    # data: content photos (data.*) and style images
    photos: Photos
    styles: Path | str  # a folder, or a shard manifest
    styles_hint: str | None  # what styles should hold, said when it is missing
    style_resize: int
    preview_styles: int
    preview_size: int
    training: Training
    hparams: dict[str, Any]

    @property
    def identity(self) -> bool:
        return self.identity_weight > 0 or self.identity_features_weight > 0

    def fingerprint(self) -> dict[str, Any]:
        """The settings a resumed run must share with the checkpoint's (the task adds its files')."""
        return {
            "task": {k: getattr(self, k) for k in ("arch", "encoder", "width", "style_resize")},
            "model": {k: getattr(self, k) for k in ("weights", "pooling", "normalization")},
            "layers.style": self.style_layers,
            "loss": [self.content_weight, self.style_weight, self.distill_weight],
            # Only where set: a run from before these keys resumes as it did.
            **({"layers.content": self.content_layers} if self.arch != "adain" else {}),
            **({"loss.identity": [self.identity_weight, self.identity_features_weight]} if self.identity else {}),
            **self.photos.fingerprint(),
            **self.training.fingerprint(),
            **temporal_fingerprint(self.temporal_weight, self.steadiness),
        }

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> TrainAdaINSettings:
        task, model = cfg.task, groups.model(cfg)
        if model.arch != "vgg19":
            raise ConfigError(f"model.arch={model.arch!r}: the AdaIN decoder mirrors VGG19; use model=vgg19")
        arch = checks.choice(task.arch, list(ARCHS), "task.arch")
        content, style = groups.layers(cfg, "vgg19")
        loss, steadiness = groups.loss(cfg, (*LOSS_TERMS, "temporal")), groups.steadiness(cfg)
        encoder = checks.choice(task.encoder, list(ENCODERS), "task.encoder")
        if encoder == "light" and arch != "adain":
            raise ConfigError(
                f"task.arch={arch} with task.encoder=light: the light encoder is AdaIN's ({ARCH_NAMES[arch]} "
                f"attends in VGG19's feature spaces, or has its own encoder); use task.encoder=vgg19 for {arch}, "
                "or task.arch=adain with the light encoder"
            )
        if arch in CONTENT_LAYERS and sorted(content) != sorted(CONTENT_LAYERS[arch]):
            raise ConfigError(
                f"layers.content={list(content)}: {ARCH_NAMES[arch]}'s content target is "
                f"{', '.join(CONTENT_LAYERS[arch])}; use layers={arch} (or layers.content naming those)"
            )
        if not style:
            raise ConfigError(
                f"layers.style is empty; the style loss needs layers "
                f"(layers={arch if arch in CONTENT_LAYERS else 'adain'})"
            )
        deepest = "relu4_1" if arch == "adain" else "relu5_1"
        reach = backbone.layer_names("vgg19")[: backbone.layer_names("vgg19").index(deepest) + 1]
        ends = "the loss network ends" if arch == "stytr" else f"task.arch={arch}'s encoder ends"
        for key, layers in (("layers.style", style), ("layers.content", content)):
            deeper = [layer for layer in layers if layer not in reach]
            if deeper:
                raise ConfigError(
                    f"{key}: {', '.join(deeper)} lie past {deepest}, where {ends}; use layers up to {deepest}"
                )
        photos = groups.photos(cfg)
        for key in ("crop", "val_size"):
            if getattr(photos, key) % MULTIPLE:
                raise ConfigError(
                    f"data.{key}={getattr(photos, key)} is invalid; "
                    f"it must be a multiple of {MULTIPLE} (VGG19 pools 3 times)"
                )
        width = checks.positive(task.width, "task.width")
        if width > 1:
            raise ConfigError(f"task.width={width} is invalid; it must be in (0, 1] (1 is VGG19's channels)")
        settings = cls(
            arch=arch,
            encoder=encoder,
            width=width if encoder == "light" or arch == "stytr" else 1.0,
            weights=model.weights,
            pooling=model.pooling,
            normalization=model.normalization,
            style_layers=style,
            content_layers=content,
            content_weight=loss.content,
            style_weight=loss.style,
            distill_weight=loss.distill,
            identity_weight=loss.identity,
            identity_features_weight=loss.identity_features,
            temporal_weight=loss.temporal,
            steadiness=steadiness,
            runtime=groups.runtime(cfg),
            styles=groups.folder_or_shards(task.styles, "task.styles"),  # a folder, sample:styles, or shards
            styles_hint=None if task.styles_hint is None else str(task.styles_hint),
            style_resize=checks.at_least(task.style_resize, photos.crop, "task.style_resize"),
            preview_styles=checks.at_least(task.preview_styles, 1, "task.preview_styles"),
            preview_size=checks.at_least(task.preview_size, 16, "task.preview_size"),
            photos=photos,
            training=Training.from_cfg(cfg, f"{CHECKPOINT} to resume"),
            hparams=checks.hparams(cfg, HP_KEYS),
        )
        backbone.check_weights(model.arch, model.weights, cached=False)  # the values are right: a weights file
        return settings


@dataclass(frozen=True)
class ApplyAdaINSettings:
    model: Path
    styles: tuple[str, ...]  # local paths or pinned URLs, resolved by the task
    style_size: int
    style_weights: tuple[float, ...]  # sum to 1
    style_masks: tuple[str, ...]  # () or one per style
    strength_map: str | None
    alpha: float
    images: ImagesToStylize
    device: str

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> ApplyAdaINSettings:
        task = cfg.task
        styles = tuple(map(str, checks.as_list(task.style)))
        if not styles:
            raise ConfigError("task.style is empty; give one style image or a list: task.style=[a.jpg,b.jpg]")
        masks = tuple(map(str, checks.as_list(task.style_masks)))
        if checks.as_list(task.style_weights) and masks:
            raise ConfigError(
                "task.style_weights and task.style_masks both set; with masks each mask says how much of its "
                "style goes where: drop task.style_weights (or scale a mask's grey level)"
            )
        weights = checks.style_weights(task.style_weights, len(styles))
        if masks and len(masks) != len(styles):
            raise ConfigError(f"task.style_masks has {len(masks)} masks for {len(styles)} styles; give one per style")
        alpha = checked_alpha(task)
        to_stylize = ImagesToStylize.from_task(task, MIN_SIZE)
        style_size = checks.at_least(task.style_size, MIN_SIZE, "task.style_size")
        device = groups.trainer(cfg).accelerator
        if str(cfg.ckpt_path or "").lower().endswith(".onnx"):
            controls = {
                "several styles": len(styles) > 1,
                "task.style_masks": bool(masks),
                "task.strength_map": bool(task.strength_map),
                "task.alpha": alpha != 1,
            }
            if any(controls.values()):
                raise ConfigError(
                    f"ckpt_path={Path(str(cfg.ckpt_path)).expanduser()} is an exported pipeline: one style at the "
                    "alpha it was exported with; "
                    f"{', '.join(k for k, v in controls.items() if v)} need {CHECKPOINT}"
                )
        problems = checks.Problems()  # the values are right: the model, images, styles, masks, strength map at once
        model = problems.run(checkpoint_file, cfg, (".ckpt", ".onnx"), f"{CHECKPOINT} or {EXPORTED}")
        to_stylize.check_files(problems)
        for key, sources in (("task.style", styles), ("task.style_masks", masks)):
            for i, source in enumerate(sources):
                problems.run(images.check_source, source, key if len(sources) == 1 else f"{key}[{i}]")
        strength = problems.run(saliency.strength_source, task.strength_map, "task.strength_map")
        problems.raise_all()
        return cls(
            model=model,
            styles=styles,
            style_size=style_size,
            style_weights=weights,
            style_masks=masks,
            strength_map=strength,
            alpha=alpha,
            images=to_stylize,
            device=device,
        )


@dataclass(frozen=True)
class ExportAdaINSettings:
    checkpoint: Path
    export: ExportOptions
    alpha: float
    example_size: int
    check_size: tuple[int, int]
    style_check_size: tuple[int, int]
    seed: int

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> ExportAdaINSettings:
        task = cfg.task
        alpha = checked_alpha(task)
        example = checks.at_least(task.example_size, MIN_SIZE, "task.example_size")
        if example > exporter.MAX_SIDE - 16:
            raise ConfigError(
                f"task.example_size={example} is invalid; it must be at most {exporter.MAX_SIDE - 16} "
                "(the traced style is 16 px wider, and an exported program accepts sides up to "
                f"{exporter.MAX_SIDE} px)"
            )
        problems = checks.Problems()  # a missing checkpoint and a missing extra at once
        path = problems.run(checkpoint_file, cfg, (".ckpt",), CHECKPOINT)
        export = problems.run(ExportOptions.from_cfg, task)
        problems.raise_all()
        return cls(
            checkpoint=path,
            export=export,
            alpha=alpha,
            example_size=example,
            check_size=exporter.side_pair(task.check_size, "task.check_size", MIN_SIZE),
            style_check_size=exporter.side_pair(task.style_check_size, "task.style_check_size", MIN_SIZE),
            seed=groups.seed(cfg),
        )
