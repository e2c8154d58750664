"""The finetune task: an ImageFolder dataset, a VGG with its first layers frozen, best and last checkpoints.

Checkpoints: ``best.ckpt`` holds the best epoch's weights only (what predict, export and extract read);
``last.ckpt`` (``task.save_last``) the full state an exact resume needs: the weights, the optimizer's state
(SGD's momentum: one value per trained weight, so twice best.ckpt's size) and the loops' and scheduler's.
Both leave out the frozen tensors equal to the source weights (classify.module). With VGG16 the fully
connected layers dominate both (scripts/benchmark_finetune.py checkpoints measures them)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint, TQDMProgressBar
from pytorch_lightning.trainer.states import TrainerFn

from transferlab import backbone, checkpoints, trainer
from transferlab.classify import data, networks, report, settings
from transferlab.classify import module as classifier
from transferlab.classify.settings import FinetuneSettings
from transferlab.files import write_json
from transferlab.result import TaskResult

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


def run(cfg: DictConfig, output_dir: Path) -> TaskResult:
    """Fine-tune; writes checkpoints/, classes.json, confusion matrices and TensorBoard events (the entry
    writes metrics.json from the result)."""
    s = FinetuneSettings.from_cfg(cfg)
    weights = backbone.announce_weights(s.model.weights, s.model.arch, "a trained classifier")
    module, datamodule, fit_data = build(s)
    best = ModelCheckpoint(
        dirpath=output_dir / "checkpoints",
        filename="best",
        monitor=s.monitor,
        mode=s.monitor_mode,
        # Weights only (no optimizer state: half the size with SGD momentum); runs resume from last.ckpt.
        save_weights_only=True,
    )
    # Not save_last=True: Lightning 2.6 rewrites last.ckpt only in epochs that improve the best one.
    last = ModelCheckpoint(dirpath=output_dir / "checkpoints", filename="last") if s.save_last else None
    fit = train(s, module, datamodule, [best, last] if last else [best], output_dir)
    results: dict[str, Any] = {
        "weights": weights,
        "classes": module.classes,
        "monitor": s.monitor,
        "best_score": float(best.best_model_score),
        "best_checkpoint": best.best_model_path,
        "last_checkpoint": last.best_model_path if last else None,
        "epochs": fit.current_epoch,
        "epoch_time_s": [round(t, 3) for t in module.epoch_times],
        # Before the first epoch, so not in its time: computing (or loading) the cached features.
        "feature_cache_s": round(datamodule.cache_seconds, 3) if fit_data.cache_features else None,
    }
    results |= evaluate(fit, module, datamodule)
    return outcome(s, fit, results, output_dir)


def train(
    s: FinetuneSettings,
    module: classifier.Classifier,
    datamodule: data.ImageFolderData,
    checkpoints: list[ModelCheckpoint],
    output_dir: Path,
) -> pl.Trainer:
    """Fit (resumed from ``ckpt_path``) with the checkpoints, the evaluation
    report and early stopping; returns the Trainer."""
    images = {"val": datamodule.val, **({"test": datamodule.test} if datamodule.test is not None else {})}
    callbacks: list[pl.Callback] = [
        *checkpoints,
        report.EvalReport(module.classes, images, s.misclassified, output_dir),
        trainer.ResumeRecord("finetune", s.fingerprint()),
        EvaluationBar(),
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
        write_json(module.classes, output_dir / "classes.json")
    ckpt = str(s.ckpt_path) if s.ckpt_path else None
    fit.fit(module, datamodule=datamodule, ckpt_path=ckpt, weights_only=True)
    return fit


class EvaluationBar(TQDMProgressBar):
    """Lightning's bar, whose bars for the best checkpoint's evaluations after fit (they stay on screen) say
    what they evaluate instead of "Validation DataLoader 0"."""

    def on_validation_batch_start(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        super().on_validation_batch_start(trainer, *args, **kwargs)
        if trainer.state.fn == TrainerFn.VALIDATING:
            self.val_progress_bar.set_description("best checkpoint on val", refresh=False)

    def on_test_batch_start(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        super().on_test_batch_start(trainer, *args, **kwargs)
        self.test_progress_bar.set_description("best checkpoint on test", refresh=False)


def evaluate(fit: pl.Trainer, module: classifier.Classifier, datamodule: data.ImageFolderData) -> dict[str, Any]:
    """The best checkpoint (not the last epoch) on val and, where there is one, test: each split's loss,
    accuracies and confusion matrix (EvalReport writes its confusion matrix and mistakes as images)."""
    evaluations = {"val": fit.validate} | ({"test": fit.test} if datamodule.test is not None else {})
    out = {}
    for split, run_split in evaluations.items():
        run_split(module, datamodule=datamodule, ckpt_path="best", weights_only=True, verbose=False)
        ev = module.last_eval
        out[split] = {"loss": ev.loss, **ev.accuracies, "confusion_matrix": ev.counts.tolist()}
    return out


def outcome(s: FinetuneSettings, fit: pl.Trainer, results: dict[str, Any], output_dir: Path) -> TaskResult:
    """The run's result: ``results`` as its metrics, the best score as its objective, the validation's
    confusion matrix as its image."""
    if fit.is_global_zero:
        fit.logger.finalize("success")
        log.info(
            "best %s %.4f (%s); val acc_micro %.4f acc_macro %.4f",
            s.monitor,
            results["best_score"],
            results["best_checkpoint"],
            results["val"]["acc_micro"],
            results["val"]["acc_macro"],
        )
    confusion = report.confusion_path(output_dir, "val")
    return TaskResult(
        metrics=results,
        objective=results["best_score"],
        images=(confusion,) if confusion.is_file() else (),
        caption=(
            f"best {s.monitor} {results['best_score']:.4g}",
            f"val acc {results['val']['acc_micro']:.3f}  macro {results['val']['acc_macro']:.3f}",
        ),
        hparams=s.hparams,
        # The best checkpoint's val figures, at its step: a point on each val curve where that epoch's is (at
        # the last step val/loss seemed to rise). The test split's stay in metrics.json: one point each,
        # charts of a single point.
        summary={f"val/{k}": results["val"][k] for k in ("loss", "acc_micro", "acc_macro")},
        step=best_step(results["best_checkpoint"]),
    )


def best_step(path: str) -> int:
    """The step the best checkpoint was saved at (its tensors are mapped, not read)."""
    return int(checkpoints.load(path, "checkpoints/best.ckpt", "the run's best checkpoint", mmap=True)["global_step"])
