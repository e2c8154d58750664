"""The finetune task: an ImageFolder dataset, a VGG with its first layers frozen, best and last checkpoints."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint

from transferlab import trainer
from transferlab.classify import data, networks, report, settings
from transferlab.classify import module as classifier
from transferlab.classify.settings import FinetuneSettings
from transferlab.files import write_json

log = logging.getLogger(__name__)


def build(s: FinetuneSettings) -> tuple[classifier.Classifier, data.ImageFolderData, settings.DatasetSettings]:
    """The Classifier and its DataModule, after the checks that need the dataset (see settings.for_dataset)."""
    pl.seed_everything(s.seed, workers=True, verbose=False)
    splits = data.load(s.data, s.seed)
    fit_data = settings.for_dataset(s, splits.classes, splits.train_targets, len(splits))
    if not fit_data.cache_features:
        log.info("backbone features are not cached: %s", fit_data.cache_reason)
    network, norm = networks.build(s.model.arch, s.model.weights, s.model.normalization, len(splits.classes), s.dropout)
    module = classifier.Classifier(
        network,
        classes=splits.classes,
        normalization={"mean": list(norm.mean), "std": list(norm.std), "bgr": norm.bgr},
        class_weights=fit_data.class_weights,
        **s.classifier_options(),
    )
    body = networks.Body(module.network, s.model.arch, module.normalize) if fit_data.cache_features else None
    datamodule = data.ImageFolderData(splits, s.data, s.sizes, s.seed, feature_prefix=body, cache_dir=s.cache_dir)
    return module, datamodule, fit_data


def run(cfg: DictConfig, output_dir: Path) -> float:
    """Fine-tune; writes checkpoints/, classes.json, metrics.json, confusion matrices and TensorBoard events."""
    s = FinetuneSettings.from_cfg(cfg)
    module, datamodule, fit_data = build(s)
    classes = module.classes
    best = ModelCheckpoint(
        dirpath=output_dir / "checkpoints",
        filename="best",
        monitor=s.monitor,
        mode=s.monitor_mode,
        # Weights only (no optimizer state: half the size with SGD momentum); runs resume from last.ckpt.
        save_weights_only=True,
    )
    # Not save_last=True: Lightning 2.6 rewrites last.ckpt only in epochs that improve the best one.
    last = ModelCheckpoint(dirpath=output_dir / "checkpoints", filename="last")
    images = {"val": datamodule.val, **({"test": datamodule.test} if datamodule.test is not None else {})}
    callbacks: list[pl.Callback] = [
        best,
        last,
        LearningRateMonitor(logging_interval="epoch"),
        report.EvalReport(classes, images, s.misclassified, output_dir),
        trainer.ResumeRecord("finetune", s.fingerprint()),
    ]
    if s.patience:
        callbacks.append(EarlyStopping(s.monitor, min_delta=s.min_delta, patience=s.patience, mode=s.monitor_mode))
    fit = trainer.make_trainer(
        s.trainer,
        output_dir,
        max_epochs=s.epochs,
        callbacks=callbacks,
        gradient_clip_val=s.grad_clip,
        log_every_n_steps=max(1, min(50, len(datamodule.train) // s.data.batch_size)),
    )
    if fit.is_global_zero:
        write_json(classes, output_dir / "classes.json")
    ckpt = str(s.ckpt_path) if s.ckpt_path else None
    fit.fit(module, datamodule=datamodule, ckpt_path=ckpt, weights_only=True)

    results: dict[str, Any] = {
        "classes": classes,
        "monitor": s.monitor,
        "best_score": float(best.best_model_score),
        "best_checkpoint": best.best_model_path,
        "last_checkpoint": last.best_model_path,
        "epochs": fit.current_epoch,
        "epoch_time_s": [round(t, 3) for t in module.epoch_times],
        # Before the first epoch, so not in its time: computing (or loading) the cached features.
        "feature_cache_s": round(datamodule.cache_seconds, 3) if fit_data.cache_features else None,
    }
    # Report the best checkpoint, not the last epoch (EvalReport writes its confusion matrix and mistakes).
    evaluate = {"val": fit.validate} | ({"test": fit.test} if datamodule.test is not None else {})
    for split, run_split in evaluate.items():
        run_split(module, datamodule=datamodule, ckpt_path="best", weights_only=True, verbose=False)
        ev = module.last_eval
        results[split] = {"loss": ev.loss, **ev.accuracies, "confusion_matrix": ev.counts.tolist()}
    if fit.is_global_zero:
        write_json(results, output_dir / "metrics.json")
        summary = {f"{split}/{k}": results[split][k] for split in evaluate for k in ("loss", "acc_micro", "acc_macro")}
        trainer.log_summary(fit.logger, s.hparams, summary, fit.global_step)
        fit.logger.finalize("success")
        log.info(
            "best %s %.4f (%s); val acc_micro %.4f acc_macro %.4f",
            s.monitor,
            results["best_score"],
            results["best_checkpoint"],
            results["val"]["acc_micro"],
            results["val"]["acc_macro"],
        )
    return results["best_score"]
