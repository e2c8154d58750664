"""The fine-tuned VGG classifier: freezing by layer, a new head, the LightningModule, and its checkpoints."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.trainer.states import TrainerFn
from torch import Tensor, nn
from torchvision.models import vgg

from transferlab import backbone, checkpoints, images
from transferlab.classify import metrics
from transferlab.errors import ConfigError, WeightsError

log = logging.getLogger(__name__)

FORMAT = "transferlab.classifier/1"  # marks our checkpoints; bump when the hyper-parameters change meaning
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("step", "cosine", "none")
FREEZE_WORDS = ("features", "all")


def frozen_modules(arch: str, freeze: int | str) -> tuple[int, bool]:
    """How many ``features`` modules to freeze from the input, and whether the classifier's
    hidden layers are frozen too, for ``task.freeze`` (see configs/task/finetune.yaml)."""
    names = backbone.layer_names(arch)
    convs = [i for i, name in enumerate(names) if name.startswith("conv")]
    if freeze == "all":
        return len(names), True
    if freeze == "features":
        return len(names), False
    if isinstance(freeze, int) and not isinstance(freeze, bool):
        if not 0 <= freeze <= len(convs):
            raise ConfigError(
                f"task.freeze={freeze} is out of range; {arch} has {len(convs)} conv layers (0-{len(convs)})"
            )
        return (convs[freeze - 1] + 1 if freeze else 0), False
    if freeze in names:
        return names.index(freeze) + 1, False
    raise ConfigError(
        f"task.freeze={freeze!r} is invalid; give a number of conv layers (0-{len(convs)}), "
        f"{' or '.join(FREEZE_WORDS)}, or a layer name: {', '.join(names)}"
    )


def build_network(
    arch: str, weights: str | None, normalization: str, num_classes: int, dropout: float
) -> tuple[vgg.VGG, backbone.Normalization]:
    """torchvision's VGG with its weights and a new last layer for ``num_classes``."""
    model, norm = backbone.build_classifier(arch, weights, normalization)
    for module in model.classifier:
        if isinstance(module, nn.Dropout):
            module.p = dropout
    head = nn.Linear(model.classifier[-1].in_features, num_classes)
    # torchvision's own initialization of VGG's linear layers.
    nn.init.normal_(head.weight, 0, 0.01)
    nn.init.zeros_(head.bias)
    model.classifier[-1] = head
    return model, norm


class Classifier(pl.LightningModule):
    """VGG on [0, 1] RGB input (it normalizes itself), the first layers frozen, trained with cross-entropy.

    Logs train/loss, {train,val}/acc_micro and acc_macro, val/acc_<class>, a confusion matrix and
    misclassified val images. Every constructor argument but ``network`` is a plain value saved in
    the checkpoint, which therefore loads with ``torch.load(weights_only=True)``.
    """

    def __init__(
        self,
        network: vgg.VGG,
        arch: str,
        classes: list[str],
        normalization: dict[str, Any],
        preprocessing: dict[str, int],
        freeze: int | str,
        dropout: float,
        label_smoothing: float = 0.0,
        class_weights: list[float] | None = None,
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        backbone_lr: float = 0.0,
        epochs: int = 1,
        seed: int = 0,
        misclassified: int = 8,
        format: str = FORMAT,  # noqa: A002 - a saved hyper-parameter name, kept for old checkpoints
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["network"])
        self.normalize = backbone.Normalize(backbone.Normalization(**normalization))
        self.vgg = network
        self.classes = list(classes)
        n_features, classifier_too = frozen_modules(arch, freeze)
        frozen = list(network.features)[:n_features] + (list(network.classifier)[:-1] if classifier_too else [])
        for module in frozen:
            module.requires_grad_(False)
        weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.loss = nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)
        self.results: dict[str, dict[str, Any]] = {}
        self.epoch_times: list[float] = []
        self.latest_val: dict[str, float] = {}

    def forward(self, images: Tensor) -> Tensor:
        return self.vgg(self.normalize(images))

    def logits(self, inputs: Tensor) -> Tensor:
        """Logits of a batch of images, or of cached backbone features (flat vectors, see feature_cache)."""
        return self.vgg.classifier(inputs) if inputs.dim() == 2 else self(inputs)

    def inference_network(self) -> nn.Sequential:
        """The model as exported and used for prediction: [0, 1] RGB in, logits out."""
        return nn.Sequential(self.normalize, self.vgg).eval()

    # Training ------------------------------------------------------------------------------

    def on_train_epoch_start(self) -> None:
        self.train_counts = torch.zeros(len(self.classes), len(self.classes), dtype=torch.long, device=self.device)
        self.train_loss = torch.zeros(2, dtype=torch.float64, device=self.device)  # sum of losses, samples
        self.epoch_start = time.perf_counter()

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        # Dropout draws from the global generator, which data loading also draws from (once per
        # iterator): seeding it per step makes a resumed run match an uninterrupted one.
        torch.manual_seed(hash((self.hparams.seed, self.global_step, self.global_rank)) % 2**63)
        inputs, targets = batch[:2]
        logits = self.logits(inputs)
        loss = self.loss(logits.float(), targets)
        self.train_counts += metrics.confusion_matrix(logits.argmax(1), targets, len(self.classes))
        self.train_loss += torch.stack(
            [loss.detach().double() * len(targets), torch.tensor(len(targets), device=self.device)]
        )
        # This process's batch only: under DDP, Lightning's progress bar makes rank 0 alone sync an
        # on_epoch train metric (a collective mismatch with gloo), so the epoch mean is reduced below.
        self.log("train/loss_step", loss, prog_bar=True)
        return loss

    def on_train_epoch_end(self) -> None:
        # Lightning runs validation before this hook, so the time covers training and validation.
        self.epoch_times.append(time.perf_counter() - self.epoch_start)
        self.log("time/epoch_s", self.epoch_times[-1])
        loss_sum, n = self.trainer.strategy.reduce(self.train_loss, reduce_op="sum").tolist()
        acc = metrics.accuracies(self.trainer.strategy.reduce(self.train_counts, reduce_op="sum"), self.classes)
        epoch = {"train/loss": loss_sum / max(n, 1), **{f"train/{k}": acc[k] for k in ("acc_micro", "acc_macro")}}
        self.log_dict(epoch, sync_dist=True, prog_bar=True)
        if self.global_rank == 0:
            val = self.latest_val
            log.info(
                "epoch %d/%d: train loss %.4f acc_micro %.4f acc_macro %.4f | "
                "val loss %s acc_micro %s acc_macro %s (%.1f s)",
                self.current_epoch + 1,
                self.trainer.max_epochs,
                epoch["train/loss"],
                epoch["train/acc_micro"],
                epoch["train/acc_macro"],
                *(f"{val[k]:.4f}" if k in val else "-" for k in ("loss", "acc_micro", "acc_macro")),
                self.epoch_times[-1],
            )

    # Evaluation ----------------------------------------------------------------------------

    def _prefix(self) -> str:
        # The task calls trainer.validate() only on the best checkpoint, after fit: keep its numbers
        # apart from the epochs' val/ ones.
        return {TrainerFn.VALIDATING: "best_val", TrainerFn.TESTING: "test"}.get(self.trainer.state.fn, "val")

    def _eval_start(self) -> None:
        self.eval_counts = torch.zeros(len(self.classes), len(self.classes), dtype=torch.long, device=self.device)
        self.wrong: list[tuple[Tensor, int, int, float]] = []

    def _eval_step(self, batch: tuple[Tensor, ...]) -> None:
        inputs, targets = batch[:2]
        logits = self.logits(inputs).float()
        self.log(
            f"{self._prefix()}/loss",
            F.cross_entropy(logits, targets),
            batch_size=len(targets),
            sync_dist=True,
            prog_bar=True,
        )
        probs, preds = logits.softmax(1).max(1)
        self.eval_counts += metrics.confusion_matrix(preds, targets, len(self.classes))
        for i in (preds != targets).nonzero().flatten().tolist():
            if len(self.wrong) < self.hparams.misclassified:
                self.wrong.append((self._image(batch, i), int(targets[i]), int(preds[i]), float(probs[i])))

    def _image(self, batch: tuple[Tensor, ...], i: int) -> Tensor:
        inputs = batch[0]
        if inputs.dim() == 4:
            return inputs[i].float().cpu()
        # Cached features (items of feature_cache.Features): load the image itself.
        loader = self.trainer.test_dataloaders if self.trainer.testing else self.trainer.val_dataloaders
        return loader.dataset.image(int(batch[2][i]))

    def _eval_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        prefix = self._prefix()
        counts = self.trainer.strategy.reduce(self.eval_counts, reduce_op="sum")
        acc = metrics.accuracies(counts, self.classes)
        self.log_dict({f"{prefix}/{k}": v for k, v in acc.items() if k != "acc_macro"}, sync_dist=True)
        self.log(f"{prefix}/acc_macro", acc["acc_macro"], sync_dist=True, prog_bar=True)
        if prefix == "val":
            # For the per-epoch log line (train epoch end runs after validation).
            loss = self.trainer.callback_metrics.get("val/loss")
            self.latest_val = {**acc, **({"loss": float(loss)} if loss is not None else {})}
        confusion = images.confusion_image(counts, self.classes)
        wrong = self.misclassified_sheet()
        self.results[prefix] = {
            "metrics": acc,
            "confusion": counts.cpu(),
            "confusion_image": confusion,
            "misclassified": wrong,
        }
        if isinstance(self.logger, TensorBoardLogger):
            self.logger.experiment.add_image(
                f"{prefix}/confusion_matrix", images.to_tensor(confusion), self.global_step
            )
            if wrong is not None:
                self.logger.experiment.add_image(f"{prefix}/misclassified", images.to_tensor(wrong), self.global_step)

    def misclassified_sheet(self) -> Any:
        if not self.wrong:
            return None
        tiles = [
            (images.to_pil(image), [f"true {self.classes[t]}", f"pred {self.classes[p]} {prob:.2f}"])
            for image, t, p, prob in self.wrong
        ]
        return images.contact_sheet(tiles, tile=128)

    def on_validation_epoch_start(self) -> None:
        self._eval_start()

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        self._eval_step(batch)

    def on_validation_epoch_end(self) -> None:
        self._eval_end()

    def on_test_epoch_start(self) -> None:
        self._eval_start()

    def test_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        self._eval_step(batch)

    def on_test_epoch_end(self) -> None:
        self._eval_end()

    # Optimization --------------------------------------------------------------------------

    def configure_optimizers(self) -> Any:
        cfg, hp = self.hparams.optimizer, self.hparams
        head = list(self.vgg.classifier[-1].parameters())
        ids = {id(p) for p in head}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in ids]
        groups = [{"params": head, "lr": cfg["lr"], "name": "head"}]
        if rest:
            groups.append({"params": rest, "lr": hp.backbone_lr, "name": "backbone"})
        if cfg["name"] == "sgd":
            opt = torch.optim.SGD(
                groups,
                lr=cfg["lr"],
                momentum=cfg["momentum"],
                nesterov=cfg["nesterov"],
                weight_decay=cfg["weight_decay"],
            )
        else:
            kind = torch.optim.Adam if cfg["name"] == "adam" else torch.optim.AdamW
            opt = kind(groups, lr=cfg["lr"], betas=tuple(cfg["betas"]), weight_decay=cfg["weight_decay"])
        sched = hp.scheduler
        if sched["name"] == "step":
            return [opt], [torch.optim.lr_scheduler.StepLR(opt, step_size=sched["step_size"], gamma=sched["gamma"])]
        if sched["name"] == "cosine":
            return [opt], [torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=hp.epochs, eta_min=sched["eta_min"])]
        return opt


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint of a finetune run, loaded with ``weights_only=True``; anything else is refused."""
    ckpt = checkpoints.load(
        path, "ckpt_path", "a checkpoint of a task=finetune run (checkpoints/best.ckpt or last.ckpt)"
    )
    hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(hp, dict) or hp.get("format") != FORMAT or "state_dict" not in ckpt:
        raise WeightsError(
            f"ckpt_path={path} is not a transferlab finetune checkpoint; "
            "give checkpoints/best.ckpt or last.ckpt of a task=finetune run"
        )
    return ckpt


def load(path: str | Path) -> Classifier:
    """The classifier saved in ``path``, in eval mode on the CPU."""
    ckpt = read_checkpoint(path)
    hp = dict(ckpt["hyper_parameters"])
    # No pretrained weights (the checkpoint holds every weight) and no random initialization either.
    with torch.device("meta"):
        network, _ = build_network(hp["arch"], None, "auto", len(hp["classes"]), hp["dropout"])
    network.load_state_dict(
        {k[len("vgg.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("vgg.")}, assign=True
    )
    return Classifier(network, **hp).eval()
