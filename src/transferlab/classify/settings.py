"""The doors of the classify wing: each task's config checked and turned into frozen plain values, once.

Fine-tuning has a second step at its door: checks that need the dataset's classes (the monitored
metric, class weights, a checkpoint to resume, whether the features fit the cache) run on the
loaded dataset, before any training. Below this module nothing reads the config.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from transferlab import backbone, checkpoints, checks, groups, images
from transferlab.backbone import ModelSettings
from transferlab.classify import module as classifier
from transferlab.classify import networks
from transferlab.errors import ConfigError, DataError
from transferlab.exporter import ExportOptions
from transferlab.groups import OptimizerSettings
from transferlab.trainer import TrainerSettings

HP_KEYS = (  # TensorBoard's HParams columns after the user's overrides (checks.hparams)
    "task.epochs",
    "task.lr",
    "task.backbone_lr",
    "task.freeze",
    "task.dropout",
    "task.label_smoothing",
    "task.class_weights",
    "task.monitor",
    "model.arch",
    "model.weights",
    "data.root",
    "data.batch_size",
    "optimizer.name",
    "scheduler.name",
    "precision",
    "seed",
)

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("step", "cosine", "none")
CACHE_SETTINGS = ("auto", True, False)


@dataclass(frozen=True)
class Augment:
    random_resized_crop: bool
    scale: tuple[float, float]
    hflip: float
    color_jitter: float

    def random_keys(self) -> list[str]:
        """The keys that make training augmentation random (empty: it is deterministic)."""
        return [k for k in ("random_resized_crop", "hflip", "color_jitter") if getattr(self, k)]


@dataclass(frozen=True)
class DataSettings:
    root: Path | str  # a folder, or a shard manifest (a path or a pinned URL)
    val_fraction: float
    augment: Augment
    verify: bool
    max_bad_fraction: float
    batch_size: int
    num_workers: int


@dataclass(frozen=True)
class Scheduler:
    name: str
    step_size: int = 0  # step
    gamma: float = 1.0  # step
    eta_min: float = 0.0  # cosine


@dataclass(frozen=True)
class FinetuneSettings:
    model: ModelSettings
    data: DataSettings
    sizes: dict[str, int]  # eval resize and crop: the config's, else the weights' own
    optimizer: OptimizerSettings
    scheduler: Scheduler
    backbone_lr: float
    epochs: int
    freeze: int | str
    dropout: float | None  # None: the architecture's own
    label_smoothing: float
    class_weights: str | tuple[float, ...] | None  # checked against the classes once they are known
    grad_clip: float | None
    monitor: str  # checked against the classes once they are known
    monitor_mode: str
    patience: int
    min_delta: float
    misclassified: int
    save_last: bool  # last.ckpt, the full training state, after every epoch
    cache_features: str | bool
    cache_max_gb: float
    cache_dir: Path | None
    trainer: TrainerSettings
    seed: int
    ckpt_path: Path | None
    hparams: dict[str, Any]

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> FinetuneSettings:
        task = cfg.task
        model = model_settings(cfg)
        data = data_settings(cfg.data)
        freeze = task.freeze
        try:
            all_frozen = networks.body_frozen(model.arch, freeze)
        except ValueError as exc:
            raise ConfigError(f"task.freeze={exc}") from None
        cache = checks.choice(task.cache_features, CACHE_SETTINGS, "task.cache_features")
        if cache is True:
            reason = cache_unusable(freeze, all_frozen, data.augment)
            if reason is not None:
                raise ConfigError(f"task.cache_features=true cannot be used: {reason}; or set task.cache_features=auto")
        fractions = {
            k: checks.non_negative(task[k], f"task.{k}")
            for k in ("dropout", "label_smoothing")
            if not (k == "dropout" and task[k] is None)  # null: the architecture's own
        }
        for key, value in fractions.items():
            if value >= 1:
                raise ConfigError(f"task.{key}={value} is invalid; it must be in [0, 1)")
        class_weights = task.class_weights
        if class_weights is not None and class_weights != "balanced":
            if not OmegaConf.is_list(class_weights):
                raise ConfigError(
                    f"task.class_weights={class_weights} is invalid; give null, balanced, or one weight per class"
                )
            class_weights = tuple(checks.non_negative(w, "task.class_weights") for w in class_weights)
        settings = cls(
            model=model,
            data=data,
            sizes=preprocessing(model, cfg.data.resize_size, cfg.data.crop_size),
            optimizer=groups.optimizer(cfg, OPTIMIZERS),
            scheduler=scheduler(cfg.scheduler),
            backbone_lr=checks.non_negative(task.backbone_lr, "task.backbone_lr"),
            epochs=checks.at_least(task.epochs, 1, "task.epochs"),
            freeze=freeze,
            dropout=fractions.get("dropout"),
            label_smoothing=fractions["label_smoothing"],
            class_weights=class_weights,
            grad_clip=None if task.grad_clip is None else checks.non_negative(task.grad_clip, "task.grad_clip"),
            monitor=str(task.monitor),
            monitor_mode=checks.choice(task.monitor_mode, ["max", "min"], "task.monitor_mode"),
            patience=checks.at_least(task.patience, 0, "task.patience"),
            min_delta=checks.non_negative(task.min_delta, "task.min_delta"),
            misclassified=checks.at_least(task.misclassified, 0, "task.misclassified"),
            save_last=checks.choice(task.save_last, [True, False], "task.save_last"),
            cache_features=cache,
            cache_max_gb=checks.non_negative(task.cache_max_gb, "task.cache_max_gb"),
            cache_dir=Path(str(task.cache_dir)).expanduser() if task.cache_dir else None,
            trainer=groups.trainer(cfg),
            seed=groups.seed(cfg),
            ckpt_path=Path(str(cfg.ckpt_path)).expanduser() if cfg.ckpt_path else None,
            hparams=checks.hparams(cfg, HP_KEYS),
        )
        files(settings.ckpt_path, None, model)
        return settings

    def fingerprint(self) -> dict[str, Any]:
        """What a resumed run must share with its checkpoint (``task.epochs`` may grow)."""
        return checkpoints.fingerprint(
            {
                "model": {
                    "arch": self.model.arch,
                    "weights": backbone.weights_source(self.model.arch, self.model.weights),
                },
                "data": {k: v for k, v in asdict(self.data).items() if k not in ("root", "num_workers")},
                "preprocessing": self.sizes,
                "task": {
                    "freeze": self.freeze,
                    "dropout": self.dropout,
                    "label_smoothing": self.label_smoothing,
                    "class_weights": self.class_weights,
                    "backbone_lr": self.backbone_lr,
                },
                "optimizer": asdict(self.optimizer),
                "scheduler": asdict(self.scheduler),
                "seed": self.seed,
            }
        )

    def classifier_options(self) -> dict[str, Any]:
        """The Classifier's constructor arguments that come from the config as they are."""
        return {
            "arch": self.model.arch,
            "weights": backbone.weights_source(self.model.arch, self.model.weights),
            "preprocessing": self.sizes,
            "freeze": self.freeze,
            "dropout": self.dropout,
            "label_smoothing": self.label_smoothing,
            "optimizer": asdict(self.optimizer),
            "scheduler": asdict(self.scheduler),
            "backbone_lr": self.backbone_lr,
            "epochs": self.epochs,
            "seed": self.seed,
            "misclassified": self.misclassified,
        }


def model_settings(cfg: DictConfig) -> ModelSettings:
    """``model.*`` for a classifier: any torchvision classification model (VGG by our config files or
    ``model.arch=resnet50``, ...) with one of its weight sets, a file, or null (random)."""
    settings = groups.model(cfg, networks.ARCHS)
    if settings.pooling != "max":
        raise ConfigError(
            f"model.pooling={settings.pooling} is for stylize; the VGG classifier was trained with max pooling"
        )
    return settings


def data_settings(data: DictConfig) -> DataSettings:
    for key in ("resize_size", "crop_size"):
        if data[key] is not None:
            classifier.image_size(data[key], f"data.{key}")
    augment = data.augment
    scale = tuple(checks.positive(s, "data.augment.scale") for s in augment.scale)
    if len(scale) != 2 or not scale[0] <= scale[1] <= 1:
        raise ConfigError(f"data.augment.scale={list(augment.scale)} is invalid; give [min, max] with min <= max <= 1")
    return DataSettings(
        root=groups.folder_or_shards(data.root, "data.root"),  # a folder, a dataset: name, or a shard manifest
        val_fraction=checks.number(data.val_fraction, "data.val_fraction"),
        augment=Augment(
            random_resized_crop=checks.choice(
                augment.random_resized_crop, [True, False], "data.augment.random_resized_crop"
            ),
            scale=scale,  # type: ignore[arg-type]
            hflip=checks.non_negative(augment.hflip, "data.augment.hflip"),
            color_jitter=checks.non_negative(augment.color_jitter, "data.augment.color_jitter"),
        ),
        verify=checks.choice(data.verify, [True, False], "data.verify"),
        max_bad_fraction=checks.non_negative(data.max_bad_fraction, "data.max_bad_fraction"),
        batch_size=checks.at_least(data.batch_size, 1, "data.batch_size"),
        num_workers=checks.at_least(data.num_workers, 0, "data.num_workers"),
    )


# torchvision's VGG weights: resize the short side to 256, center crop 224.
DEFAULT_RESIZE, DEFAULT_CROP = 256, 224


def preprocessing(model: ModelSettings, resize: int | None, crop: int | None) -> dict[str, int]:
    """Eval resize and crop sizes: the given ones where set, else those of torchvision weights."""
    weights = model.weights
    if weights is not None and not backbone.is_weights_file(weights) and (resize is None or crop is None):
        spec = backbone.torchvision_weights(model.arch, weights).transforms()
        resize = resize or spec.resize_size[0]
        crop = crop or spec.crop_size[0]
    return {"resize": resize or DEFAULT_RESIZE, "crop": crop or DEFAULT_CROP}


def scheduler(sched: DictConfig) -> Scheduler:
    name = checks.choice(sched.name, SCHEDULERS, "scheduler.name")
    if name == "step":
        return Scheduler(
            name,
            checks.at_least(sched.step_size, 1, "scheduler.step_size"),
            checks.positive(sched.gamma, "scheduler.gamma"),
        )
    if name == "cosine":
        return Scheduler(name, eta_min=checks.non_negative(sched.eta_min, "scheduler.eta_min"))
    return Scheduler(name)


def cache_unusable(freeze: int | str, all_frozen: bool, augment: Augment) -> str | None:
    """Why the backbone's features cannot be cached (a phrase naming the keys), or None when they can."""
    if not all_frozen:
        return f"task.freeze={freeze} leaves conv layers trainable (use task.freeze=features or all)"
    random = augment.random_keys()
    if random:
        keys = " ".join(f"data.augment.{k}=false" for k in random)
        return f"training augmentation is random ({keys} makes it deterministic)"
    return None


@dataclass(frozen=True)
class DatasetSettings:
    """What the door decides once the dataset's classes and size are known."""

    class_weights: list[float] | None
    cache_features: bool
    cache_reason: str | None  # why features are not cached, for the log


def for_dataset(s: FinetuneSettings, classes: list[str], train_targets: list[int], n_images: int) -> DatasetSettings:
    """The checks that need the dataset: the monitored metric, class weights, the checkpoint to resume
    from (before Lightning loads it), and whether the features are cached."""
    valid = ["val/loss", "val/acc_micro", "val/acc_macro", *(f"val/acc_{c}" for c in classes)]
    checks.choice(s.monitor, [*valid, "train/loss", "train/acc_micro", "train/acc_macro"], "task.monitor")
    if s.ckpt_path is not None:
        check_resume(s.ckpt_path, s.model.arch, classes, s.fingerprint())
    reason = cache_unusable(s.freeze, networks.body_frozen(s.model.arch, s.freeze), s.data.augment)
    if s.cache_features is False:
        reason = "task.cache_features=false"
    elif reason is None and (need := n_images * networks.feature_bytes(s.model.arch, s.sizes["crop"]) / 1e9) > (
        s.cache_max_gb
    ):
        reason = f"{n_images} images need {need:.1f} GB, over task.cache_max_gb={s.cache_max_gb}"
        if s.cache_features is True:
            raise ConfigError(
                f"task.cache_features=true cannot be used: {reason}; raise it or set task.cache_features=auto"
            )
    return DatasetSettings(class_weights(s.class_weights, classes, train_targets), reason is None, reason)


def class_weights(spec: str | tuple[float, ...] | None, classes: list[str], targets: list[int]) -> list[float] | None:
    """``balanced``: n_samples / (n_classes * n_class), as scikit-learn defines it."""
    if spec is None:
        return None
    if spec == "balanced":
        counts = [targets.count(i) for i in range(len(classes))]
        return [len(targets) / (len(classes) * c) for c in counts]
    if len(spec) != len(classes):
        raise ConfigError(
            f"task.class_weights={list(spec)} is invalid; give null, balanced, "
            f"or one weight per class ({len(classes)}: {', '.join(classes)})"
        )
    return list(spec)


def check_resume(path: Path, arch: str, classes: list[str], fingerprint: dict[str, Any]) -> None:
    """Refuse a checkpoint that is not ours, was trained on other classes or with other settings, or holds
    tensors that are not its network's, before Lightning loads it."""
    ckpt = classifier.read_checkpoint(path)
    if "optimizer_states" not in ckpt:
        raise ConfigError(
            f"ckpt_path={path} holds weights only (best.ckpt is saved so); resume from checkpoints/last.ckpt"
        )
    hp = ckpt["hyper_parameters"]
    if hp["arch"] != arch:
        raise ConfigError(
            f"ckpt_path={path} is a {hp['arch']} checkpoint but model.arch={arch}; pass model={hp['arch']}"
        )
    if list(hp["classes"]) != classes:
        raise DataError(
            f"ckpt_path={path} was trained on {len(hp['classes'])} classes ({', '.join(hp['classes'])}) but "
            f"data.root has {len(classes)} ({', '.join(classes)}); resume only on the dataset it was trained on"
        )
    checkpoints.check_resume(path, "finetune", fingerprint, classifier.FINETUNE_CHECKPOINT, ckpt)
    classifier.saved_network(ckpt, path)


# predict, export, extract ---------------------------------------------------------------------


def checkpoint(cfg: DictConfig, needed: bool) -> Path | None:
    """``ckpt_path``: a finetune checkpoint (checked when loaded), required by predict and export."""
    if not cfg.ckpt_path:
        if needed:
            raise ConfigError(f"task={cfg.task.name} needs ckpt_path=<a finetune run's checkpoints/best.ckpt>")
        return None
    return Path(str(cfg.ckpt_path)).expanduser()


def files(ckpt: Path | None, source: Any, model: ModelSettings | None) -> None:
    """The values are right: the checkpoint, the images (``task.input``: an image or a folder) and, with
    ``model``, its weights, their problems reported at once."""
    problems = checks.Problems()
    if ckpt is not None:
        problems.run(checkpoints.local_file, ckpt, "ckpt_path", classifier.FINETUNE_CHECKPOINT)
    if source is not None:
        problems.run(images.check_source, source, "task.input", True)
    if model is not None:
        problems.run(backbone.check_weights, model.arch, model.weights, bool(problems.errors))
    problems.raise_all()


@dataclass(frozen=True)
class ImagesIn:
    """The images a task reads: an image, or a folder searched recursively; unreadable ones skipped."""

    source: str  # a local path, sample:, dataset: or a pinned URL: fetch.resolve'd by the task
    batch_size: int
    num_workers: int
    max_bad_fraction: float

    @classmethod
    def from_task(cls, task: DictConfig) -> ImagesIn:
        return cls(
            str(task.input),
            checks.at_least(task.batch_size, 1, "task.batch_size"),
            checks.at_least(task.num_workers, 0, "task.num_workers"),
            checks.non_negative(task.max_bad_fraction, "task.max_bad_fraction"),
        )


@dataclass(frozen=True)
class PredictSettings:
    checkpoint: Path
    images: ImagesIn
    top_k: int
    device: str

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> PredictSettings:
        settings = cls(
            checkpoint(cfg, needed=True),  # type: ignore[arg-type]
            ImagesIn.from_task(cfg.task),
            checks.at_least(cfg.task.top_k, 1, "task.top_k"),
            groups.trainer(cfg).device,
        )
        files(settings.checkpoint, cfg.task.input, None)
        return settings


@dataclass(frozen=True)
class ExportSettings:
    checkpoint: Path
    export: ExportOptions
    seed: int

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> ExportSettings:
        path = checkpoint(cfg, needed=True)
        problems = checks.Problems()  # a missing checkpoint and a missing extra at once
        problems.run(files, path, None, None)
        export = problems.run(ExportOptions.from_cfg, cfg.task)
        problems.raise_all()
        return cls(path, export, groups.seed(cfg))  # type: ignore[arg-type]


@dataclass(frozen=True)
class ExtractSettings:
    checkpoint: Path | None  # the fine-tuned model, else ``model`` with its weights
    model: ModelSettings
    images: ImagesIn
    layers: tuple[str, ...]  # checked against the model's layers once it is loaded
    pool: bool
    resize_size: int | None
    crop_size: int | None
    device: str

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> ExtractSettings:
        task = cfg.task
        layers = tuple(dict.fromkeys(str(layer) for layer in checks.as_list(task.layers)))  # one name or a list
        if not layers:
            raise ConfigError("task.layers is empty; name at least one layer, such as task.layers=[relu7]")
        sizes = {
            k: None if task[k] is None else classifier.image_size(task[k], f"task.{k}")
            for k in ("resize_size", "crop_size")
        }
        model = model_settings(cfg)
        settings = cls(
            checkpoint(cfg, needed=False),
            model,
            ImagesIn.from_task(task),
            layers,
            checks.choice(task.pool, [True, False], "task.pool"),
            sizes["resize_size"],
            sizes["crop_size"],
            groups.trainer(cfg).device,
        )
        files(settings.checkpoint, task.input, None if settings.checkpoint else model)
        return settings


def extract_layers(layers: tuple[str, ...], valid: list[str], arch: str) -> None:
    """Each of ``layers`` is one of ``valid`` (listed in the message: the first ones name the layers or units)."""
    unknown = [layer for layer in layers if layer not in valid]
    if unknown:
        shown = ", ".join(valid[:40]) + (f" ... ({len(valid)} in all)" if len(valid) > 40 else "")
        raise ConfigError(f"task.layers: {unknown} not in {arch}; choose from {shown}")
