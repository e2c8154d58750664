"""The finetune task: an ImageFolder dataset, a VGG with its first layers frozen, best and last checkpoints."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint

from transferlab import backbone, checks, images, trainer
from transferlab.classify import data, feature_cache
from transferlab.classify import module as classifier
from transferlab.errors import ConfigError, DataError
from transferlab.files import write_json

log = logging.getLogger(__name__)


def check(cfg: DictConfig) -> None:
    """Fail before any work on a config value that cannot work (the dataset is checked when loaded)."""
    task = cfg.task
    if cfg.model.arch not in backbone.ARCHS:
        raise ConfigError(f"model.arch={cfg.model.arch!r} is not supported; choose one of {', '.join(backbone.ARCHS)}")
    if cfg.model.pooling != "max":
        raise ConfigError(
            f"model.pooling={cfg.model.pooling} is for stylize; the VGG classifier was trained with max pooling"
        )
    checks.choice(cfg.optimizer.name, classifier.OPTIMIZERS, "optimizer.name")
    checks.choice(cfg.scheduler.name, classifier.SCHEDULERS, "scheduler.name")
    checks.at_least(task.epochs, 1, "task.epochs")
    checks.non_negative(task.lr, "task.lr")
    checks.non_negative(task.backbone_lr, "task.backbone_lr")
    for key in ("dropout", "label_smoothing"):
        if not 0 <= checks.non_negative(task[key], f"task.{key}") < 1:
            raise ConfigError(f"task.{key}={task[key]} is invalid; it must be in [0, 1)")
    if task.grad_clip is not None:
        checks.non_negative(task.grad_clip, "task.grad_clip")
    checks.choice(task.monitor_mode, ["max", "min"], "task.monitor_mode")
    checks.at_least(task.patience, 0, "task.patience")
    checks.at_least(task.misclassified, 0, "task.misclassified")
    checks.at_least(cfg.data.batch_size, 1, "data.batch_size")
    checks.at_least(cfg.data.num_workers, 0, "data.num_workers")
    for key in ("resize_size", "crop_size"):
        if cfg.data[key] is not None:
            checks.at_least(cfg.data[key], 32, f"data.{key}")
    checks.non_negative(cfg.data.max_bad_fraction, "data.max_bad_fraction")
    checks.non_negative(task.cache_max_gb, "task.cache_max_gb")
    classifier.frozen_modules(cfg.model.arch, task.freeze)
    feature_cache.check(task.cache_features, cfg.model.arch, task.freeze, cfg.data.augment)
    checks.trainer_settings(cfg)


def class_weights(spec: Any, classes: list[str], targets: list[int]) -> list[float] | None:
    """``balanced``: n_samples / (n_classes * n_class), as scikit-learn defines it."""
    if spec is None:
        return None
    if spec == "balanced":
        counts = [targets.count(i) for i in range(len(classes))]
        return [len(targets) / (len(classes) * c) for c in counts]
    weights = list(spec) if OmegaConf.is_list(spec) or isinstance(spec, list) else None
    if weights is None or len(weights) != len(classes):
        raise ConfigError(
            f"task.class_weights={spec} is invalid; give null, balanced, "
            f"or one weight per class ({len(classes)}: {', '.join(classes)})"
        )
    return [checks.non_negative(w, "task.class_weights") for w in weights]


def check_monitor(monitor: str, classes: list[str]) -> None:
    valid = [
        "val/loss",
        "val/acc_micro",
        "val/acc_macro",
        *(f"val/acc_{c}" for c in classes),
        "train/loss",
        "train/acc_micro",
        "train/acc_macro",
    ]
    checks.choice(monitor, valid, "task.monitor")


def check_resume(path: str, arch: str, classes: list[str]) -> None:
    """Refuse a checkpoint that is not ours or was trained on other classes, before Lightning loads it."""
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


def run(cfg: DictConfig, output_dir: Path) -> float:
    """Fine-tune; writes checkpoints/, classes.json, metrics.json, confusion matrices and TensorBoard events."""
    check(cfg)
    task = cfg.task
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    splits = data.load(cfg.data, cfg.seed)
    check_monitor(task.monitor, splits.classes)
    if cfg.ckpt_path:
        check_resume(cfg.ckpt_path, cfg.model.arch, splits.classes)
    sizes = data.preprocessing(cfg.model.arch, cfg.model.weights, cfg.data.resize_size, cfg.data.crop_size)
    network, norm = classifier.build_network(
        cfg.model.arch, cfg.model.weights, cfg.model.normalization, len(splits.classes), task.dropout
    )
    module = classifier.Classifier(
        network,
        arch=cfg.model.arch,
        classes=splits.classes,
        normalization={"mean": list(norm.mean), "std": list(norm.std), "bgr": norm.bgr},
        preprocessing=sizes,
        freeze=task.freeze,
        dropout=task.dropout,
        label_smoothing=task.label_smoothing,
        class_weights=class_weights(task.class_weights, splits.classes, splits.train_targets),
        optimizer=OmegaConf.to_container(cfg.optimizer, resolve=True),
        scheduler=OmegaConf.to_container(cfg.scheduler, resolve=True),
        backbone_lr=task.backbone_lr,
        epochs=task.epochs,
        seed=cfg.seed,
        misclassified=task.misclassified,
    )
    n_images = sum(len(split) for split in (splits.train, splits.val, splits.test) if split is not None)
    cache = feature_cache.enabled(
        task.cache_features, cfg.model.arch, task.freeze, cfg.data.augment, n_images, task.cache_max_gb
    )
    cache_dir = Path(str(task.cache_dir)).expanduser() if task.cache_dir else None
    datamodule = data.ImageFolderData(splits, cfg.data, sizes, cfg.seed, cache_features=cache, cache_dir=cache_dir)
    best = ModelCheckpoint(
        dirpath=output_dir / "checkpoints",
        filename="best",
        monitor=task.monitor,
        mode=task.monitor_mode,
        # Weights only (no optimizer state: half the size with SGD momentum); runs resume from last.ckpt.
        save_weights_only=True,
    )
    # Not save_last=True: Lightning 2.6 rewrites last.ckpt only in epochs that improve the best one.
    last = ModelCheckpoint(dirpath=output_dir / "checkpoints", filename="last")
    callbacks: list[pl.Callback] = [best, last, LearningRateMonitor(logging_interval="epoch")]
    if task.patience:
        callbacks.append(
            EarlyStopping(task.monitor, min_delta=task.min_delta, patience=task.patience, mode=task.monitor_mode)
        )
    fit = trainer.make_trainer(
        checks.trainer_settings(cfg),
        output_dir,
        max_epochs=task.epochs,
        callbacks=callbacks,
        gradient_clip_val=task.grad_clip,
        log_every_n_steps=max(1, min(50, len(datamodule.train) // cfg.data.batch_size)),
    )
    if fit.is_global_zero:
        write_json(splits.classes, output_dir / "classes.json")
    fit.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path, weights_only=True)

    results: dict[str, Any] = {
        "classes": splits.classes,
        "monitor": task.monitor,
        "best_score": float(best.best_model_score),
        "best_checkpoint": best.best_model_path,
        "last_checkpoint": last.best_model_path,
        "epochs": fit.current_epoch,
        "epoch_time_s": [round(t, 3) for t in module.epoch_times],
        # Before the first epoch, so not in its time: computing (or loading) the cached features.
        "feature_cache_s": round(datamodule.cache_seconds, 3) if cache else None,
    }
    # Report the best checkpoint, not the last epoch.
    evaluations = {
        "val": fit.validate(module, datamodule=datamodule, ckpt_path="best", weights_only=True, verbose=False)[0]
    }
    if splits.test is not None:
        evaluations["test"] = fit.test(
            module, datamodule=datamodule, ckpt_path="best", weights_only=True, verbose=False
        )[0]
    if fit.is_global_zero:
        for split, logged in evaluations.items():
            prefix = "best_val" if split == "val" else "test"
            results[split] = {k.split("/", 1)[1]: float(v) for k, v in logged.items()}
            artifacts = module.results[prefix]
            images.save_atomic(artifacts["confusion_image"], output_dir / f"confusion_matrix_{split}.png")
            results[split]["confusion_matrix"] = artifacts["confusion"].tolist()
            if artifacts["misclassified"] is not None:
                images.save_atomic(artifacts["misclassified"], output_dir / f"misclassified_{split}.png")
        write_json(results, output_dir / "metrics.json")
        fit.logger.log_hyperparams(
            checks.flat(cfg, ["task", "model", "data", "optimizer", "scheduler"])
            | {"precision": str(cfg.precision), "seed": cfg.seed},
            {f"final/{split}_acc_macro": r["acc_macro"] for split, r in results.items() if split in evaluations},
        )
        fit.logger.finalize("success")
        log.info(
            "best %s %.4f (%s); val acc_micro %.4f acc_macro %.4f",
            task.monitor,
            results["best_score"],
            results["best_checkpoint"],
            results["val"]["acc_micro"],
            results["val"]["acc_macro"],
        )
    return results["best_score"]
