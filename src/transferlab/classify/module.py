"""The fine-tuned VGG classifier: a new head, the LightningModule, and its checkpoints."""

from __future__ import annotations

import hashlib
import inspect
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.trainer.states import TrainerFn
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassConfusionMatrix

from transferlab import backbone, checkpoints, checks
from transferlab.classify import metrics, networks
from transferlab.errors import ConfigError, WeightsError

log = logging.getLogger(__name__)

# Marks our checkpoints; bump when the hyper-parameters change meaning. /2 leaves out the frozen tensors
# equal to the source weights (refill): code that reads only /1 refuses it in one line, not a traceback.
FORMAT = "transferlab.classifier/2"
READABLE = (FORMAT, "transferlab.classifier/1")
# The checkpoint entry that names the frozen tensors left out of its state dict: equal to the source weights'.
SOURCE = "source_weights"
# Eval resize and crop (data.resize_size, data.crop_size, a checkpoint's preprocessing): one image of 4096 px
# through VGG's first block is 4 GB of activations.
MIN_SIZE, MAX_SIZE = 32, 4096
FINETUNE_CHECKPOINT = "a checkpoint of a task=finetune run (checkpoints/best.ckpt or last.ckpt)"


def image_size(value: Any, key: str) -> int:
    """An eval resize or crop size, in [MIN_SIZE, MAX_SIZE]: the same rule for a config and a checkpoint."""
    size = checks.at_least(value, MIN_SIZE, key)
    if size > MAX_SIZE:
        raise ConfigError(f"{key}={size} is invalid; it must be at most {MAX_SIZE} px")
    return size


@dataclass(frozen=True)
class Evaluation:
    """The latest evaluation's confusion matrix (summed over processes), accuracies and mean loss,
    under its prefix: val (each epoch), best_val (trainer.validate after fit) or test (TensorBoard's
    ``visuals/<prefix>_confusion_matrix`` and ``visuals/<prefix>_misclassified`` images)."""

    prefix: str
    counts: Tensor
    accuracies: dict[str, float]
    loss: float


class Classifier(pl.LightningModule):
    """A torchvision network on [0, 1] RGB input (it normalizes itself), its first units frozen (their
    batch norms keep their statistics), a new last layer, trained with cross-entropy.

    Logs train/loss, {train,val}/acc_micro and acc_macro, val_class/acc_<class> (see metrics for their
    definitions); ``last_eval`` holds the latest evaluation for reports. Every constructor argument but
    ``network`` is a plain value saved in the checkpoint, which therefore loads with
    ``torch.load(weights_only=True)``. ``weights`` names the source weights (backbone.weights_source;
    None: random): the checkpoint leaves out the frozen tensors still equal to theirs (see refill).
    """

    def __init__(
        self,
        network: nn.Module,
        arch: str,
        classes: list[str],
        normalization: dict[str, Any],
        preprocessing: dict[str, int],
        freeze: int | str,
        dropout: float | None,
        label_smoothing: float = 0.0,
        class_weights: list[float] | None = None,
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        backbone_lr: float = 0.0,
        epochs: int = 1,
        seed: int = 0,
        misclassified: int = 8,
        weights: str | None = None,
        format: str = FORMAT,  # noqa: A002 - a saved hyper-parameter name, kept for old checkpoints
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["network"])
        self.normalize = backbone.Normalize(backbone.Normalization(**normalization))
        self.network = network
        self.classes = list(classes)
        # Plain values, not submodules: the network's modules are registered (and saved) once.
        self.frozen = networks.freeze(network, arch, freeze)
        self.units = networks.units(network, arch)
        weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.loss = nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)
        # torchmetrics objects accumulate over the epoch and sum over processes (DDP) when computed.
        self.train_confusion = MulticlassConfusionMatrix(len(self.classes))
        self.eval_confusion = MulticlassConfusionMatrix(len(self.classes))
        self.train_loss = MeanMetric()
        self.eval_loss = MeanMetric()
        self.epoch_times: list[float] = []
        self.last_eval: Evaluation | None = None

    def forward(self, images: Tensor) -> Tensor:
        return self.network(self.normalize(images))

    def logits(self, inputs: Tensor) -> Tensor:
        """Logits of a batch of images, or of cached body features (flat vectors, see feature_cache)."""
        return networks.after_body(self.network, self.units, inputs) if inputs.dim() == 2 else self(inputs)

    def inference_network(self) -> nn.Sequential:
        """The model as exported and used for prediction: [0, 1] RGB in, logits out."""
        return nn.Sequential(self.normalize, self.network).eval()

    def train(self, mode: bool = True) -> Classifier:
        super().train(mode)
        for module in self.frozen:
            for norm in module.modules():
                if isinstance(norm, nn.modules.batchnorm._BatchNorm):
                    norm.eval()  # frozen means frozen statistics too
        return self

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Frozen tensors still bit-identical to the source weights are stored once, there; the hash of
        # what is left out detects a source that changed since.
        if self.hparams.weights is None:
            return
        source, _ = backbone.load_state_dict(self.hparams.arch, self.hparams.weights)
        frozen = {id(m) for m in self.frozen}
        prefixes = tuple(f"network.{name}." for name, m in self.network.named_modules() if id(m) in frozen)
        state = checkpoint["state_dict"]
        keys = [k for k in state if k.startswith(prefixes) and _same_bits(state[k], source.get(_source_key(k)))]
        checkpoint[SOURCE] = {"weights": self.hparams.weights, "keys": keys, "sha256": digest(state[k] for k in keys)}
        for key in keys:
            del state[key]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Checkpoints of the VGG-only versions name the network "vgg".
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith("vgg.")]:
            state["network." + key[len("vgg.") :]] = state.pop(key)
        refill(checkpoint, f"ckpt_path={self.trainer.ckpt_path}")

    # Training ------------------------------------------------------------------------------

    def on_train_epoch_start(self) -> None:
        # Lightning 2.x never calls train() on the module (it only restores each submodule's flag after
        # validation): without this the frozen batch norms, built in train mode, update their statistics.
        self.train()
        self.epoch_start = time.perf_counter()

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        # Dropout draws from the global generator, which data loading also draws from (once per
        # iterator): seeding it per step makes a resumed run match an uninterrupted one.
        torch.manual_seed(hash((self.hparams.seed, self.global_step, self.global_rank)) % 2**63)
        inputs, targets = batch[:2]
        logits = self.logits(inputs)
        loss = self.loss(logits.float(), targets)
        self.train_confusion.update(logits.argmax(1), targets)
        self.train_loss.update(loss.detach(), weight=len(targets))
        # This process's batch only: under DDP, Lightning's progress bar makes rank 0 alone sync an
        # on_epoch train metric (a collective mismatch with gloo), so the epoch mean is computed below.
        self.log("train/loss_step", loss, prog_bar=True)
        return loss

    def on_train_epoch_end(self) -> None:
        # Lightning runs validation before this hook, so the time covers training and validation.
        self.epoch_times.append(time.perf_counter() - self.epoch_start)
        acc = metrics.accuracies(self.train_confusion.compute(), self.classes)
        epoch = {"train/loss": float(self.train_loss.compute()), "train/acc_micro": acc["acc_micro"]}
        epoch["train/acc_macro"] = acc["acc_macro"]
        # In the train group, after the losses and accuracies in TensorBoard (Lightning's LearningRateMonitor
        # names a group lr-SGD that sorts before them); the epoch's rates: the scheduler steps after this hook.
        epoch |= {f"train/lr_{g['name']}": g["lr"] for g in self.optimizers().param_groups}
        epoch["train/epoch_s"] = self.epoch_times[-1]
        self.train_confusion.reset()
        self.train_loss.reset()
        self.log_dict(epoch, sync_dist=True)  # the epoch's log line states them: a bar of them ran past 120 columns
        # At the step the epoch ended on, as its validation (trainer.ValidationStep): Lightning draws an
        # epoch's figures a step before, beside the step the epoch's validation belongs to.
        self.log("step", float(self.global_step), sync_dist=True)
        if self.global_rank == 0:
            val = self.last_eval.accuracies if self.last_eval is not None else {}
            loss = self.last_eval.loss if self.last_eval is not None else None
            log.info(
                "epoch %d/%d: train loss %.4f acc_micro %.4f acc_macro %.4f | "
                "val loss %s acc_micro %s acc_macro %s (%.1f s)",
                self.current_epoch + 1,
                self.trainer.max_epochs,
                epoch["train/loss"],
                epoch["train/acc_micro"],
                epoch["train/acc_macro"],
                f"{loss:.4f}" if loss is not None else "-",
                *(f"{val[k]:.4f}" if k in val else "-" for k in ("acc_micro", "acc_macro")),
                self.epoch_times[-1],
            )

    # Evaluation ----------------------------------------------------------------------------

    def _prefix(self) -> str:
        # The task calls trainer.validate() only on the best checkpoint, after fit: keep its numbers
        # apart from the epochs' val/ ones.
        return {TrainerFn.VALIDATING: "best_val", TrainerFn.TESTING: "test"}.get(self.trainer.state.fn, "val")

    def _eval_step(self, batch: tuple[Tensor, ...]) -> dict[str, Tensor]:
        """Returns each sample's prediction and its probability (for report.EvalReport)."""
        inputs, targets = batch[:2]
        logits = self.logits(inputs).float()
        loss = F.cross_entropy(logits, targets)
        self.eval_loss.update(loss, weight=len(targets))
        if self.trainer.state.fn == TrainerFn.FITTING:
            self.log("val/loss", loss, batch_size=len(targets), sync_dist=True, prog_bar=True)
        probs, preds = logits.softmax(1).max(1)
        self.eval_confusion.update(preds, targets)
        return {"preds": preds, "probs": probs}

    def _eval_end(self) -> None:
        counts, loss = self.eval_confusion.compute(), float(self.eval_loss.compute())
        self.eval_confusion.reset()
        self.eval_loss.reset()
        if self.trainer.sanity_checking:
            return
        acc = metrics.accuracies(counts, self.classes)
        if self.trainer.state.fn == TrainerFn.FITTING:
            # The epochs' curves; the best checkpoint's and the test split's figures go to the run's summary.
            # Each class's accuracy in a group of its own (val_class/), which TensorBoard sorts after val/: with
            # them in val/, acc_<class> charts came before the loss, alphabetically.
            classes = {f"val_class/{k}": v for k, v in acc.items() if k not in ("acc_micro", "acc_macro")}
            self.log_dict({"val/acc_micro": acc["acc_micro"], **classes}, sync_dist=True)
            self.log("val/acc_macro", acc["acc_macro"], sync_dist=True, prog_bar=True)
        self.last_eval = Evaluation(self._prefix(), counts.cpu(), acc, loss)

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> dict[str, Tensor]:
        return self._eval_step(batch)

    def on_validation_epoch_end(self) -> None:
        self._eval_end()

    def test_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> dict[str, Tensor]:
        return self._eval_step(batch)

    def on_test_epoch_end(self) -> None:
        self._eval_end()

    # Optimization --------------------------------------------------------------------------

    def configure_optimizers(self) -> Any:
        cfg, hp = self.hparams.optimizer, self.hparams
        head = list(self.network.get_submodule(self.units.paths[-1]).parameters())
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


def _flat_bytes(tensor: Tensor) -> Tensor:
    return tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8)


def _source_key(key: str) -> str:
    return key[len("network.") :]


def _same_bits(a: Tensor, b: Tensor | None) -> bool:
    return b is not None and a.dtype == b.dtype and a.shape == b.shape and torch.equal(_flat_bytes(a), _flat_bytes(b))


def digest(tensors: Iterable[Tensor]) -> str:
    """sha256 of the tensors' bytes, one after another."""
    h = hashlib.sha256()
    for tensor in tensors:
        h.update(_flat_bytes(tensor).numpy())
    return h.hexdigest()


def refill(checkpoint: dict[str, Any], name: str) -> None:
    """Puts back into ``checkpoint`` the frozen tensors its save left out (Classifier.on_save_checkpoint),
    from the source weights it names, checked against its hash; one-line WeightsError when they are
    missing or changed. ``name`` says which checkpoint, for the message."""
    ref = checkpoint.pop(SOURCE, None)
    if not ref or not ref["keys"]:
        return
    arch, weights, keys = checkpoint["hyper_parameters"]["arch"], ref["weights"], ref["keys"]
    what = f"{name} leaves out {len(keys)} frozen tensors stored in the {arch} weights it was fine-tuned from"
    try:
        source, _ = backbone.load_state_dict(arch, weights)
    except (WeightsError, ValueError) as exc:
        raise WeightsError(f"{what} ({weights}); put those weights back to load it: {exc}") from None
    tensors = [source.get(_source_key(k)) for k in keys]
    if any(t is None for t in tensors) or digest(tensors) != ref["sha256"]:
        raise WeightsError(
            f"{what}, but {weights} now holds other tensors (sha256 differs); restore the {weights} it was "
            "fine-tuned from to load it"
        )
    checkpoint["state_dict"].update(zip(keys, tensors))


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint of a finetune run, loaded with ``weights_only=True``, its saved settings checked with the
    rules of the config that made them (before anything is built from them); anything else is refused."""
    ckpt = checkpoints.load(path, "ckpt_path", FINETUNE_CHECKPOINT)
    hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(hp, dict) or hp.get("format") not in READABLE or not isinstance(ckpt.get("state_dict"), dict):
        raise WeightsError(
            f"ckpt_path={path} is not a transferlab finetune checkpoint; "
            "give checkpoints/best.ckpt or last.ckpt of a task=finetune run"
        )
    try:
        check_saved_settings(hp, ckpt.get(SOURCE))
    except (ConfigError, ValueError) as exc:
        raise WeightsError(
            f"ckpt_path={path} holds an invalid saved setting: {exc}; give {FINETUNE_CHECKPOINT}"
        ) from None
    return ckpt


# What a checkpoint's hyper-parameters must hold (the constructor's arguments that have no default).
REQUIRED = ("arch", "classes", "normalization", "preprocessing", "freeze", "dropout")


def check_saved_settings(hp: dict[str, Any], source: Any) -> None:
    """The Classifier's saved arguments (and the source-weights entry), checked as the config was."""
    allowed = set(inspect.signature(Classifier.__init__).parameters) - {"self", "network"}
    unknown, missing = sorted(set(hp) - allowed), [k for k in REQUIRED if k not in hp]
    if unknown or missing:
        raise ConfigError(f"hyper_parameters: unknown {unknown}, missing {missing}")
    arch = checks.choice(hp["arch"], networks.ARCHS, "arch")
    classes = hp["classes"]
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise ConfigError(f"classes={classes!r} is invalid; it must be a non-empty list of names")
    if len(set(classes)) != len(classes):
        raise ConfigError("classes name a class twice")
    norm = hp["normalization"]
    if not isinstance(norm, dict) or set(norm) != {"mean", "std", "bgr"}:
        raise ConfigError(f"normalization={norm!r} is invalid; it must hold mean, std and bgr")
    for key in ("mean", "std"):
        if not isinstance(norm[key], list) or len(norm[key]) != 3:
            raise ConfigError(f"normalization.{key}={norm[key]!r} is invalid; give 3 numbers")
        for value in norm[key]:
            (checks.positive if key == "std" else checks.number)(value, f"normalization.{key}")
    checks.choice(norm["bgr"], [True, False], "normalization.bgr")
    sizes = hp["preprocessing"]
    if not isinstance(sizes, dict) or set(sizes) != {"resize", "crop"}:
        raise ConfigError(f"preprocessing={sizes!r} is invalid; it must hold resize and crop")
    for key, value in sizes.items():
        image_size(value, f"preprocessing.{key}")
    networks.body_frozen(arch, hp["freeze"])  # ValueError names a freeze this network does not have
    for key in ("dropout", "label_smoothing"):
        if hp.get(key) is not None and not 0 <= checks.number(hp[key], key) < 1:
            raise ConfigError(f"{key}={hp[key]} is invalid; it must be in [0, 1)")
    weights = hp.get("class_weights")
    if weights is not None and (not isinstance(weights, list) or len(weights) != len(classes)):
        raise ConfigError(f"class_weights={weights!r} is invalid; give one weight per class")
    for value in weights or []:
        checks.non_negative(value, "class_weights")
    if not isinstance(hp.get("weights"), (str, type(None))):
        raise ConfigError(f"weights={hp['weights']!r} is invalid; it must name the source weights or be null")
    checks.at_least(hp.get("misclassified", 0), 0, "misclassified")
    if source is not None and not (
        isinstance(source, dict)
        and isinstance(source.get("weights"), str)
        and isinstance(source.get("keys"), list)
        and all(isinstance(k, str) for k in source["keys"])
        and isinstance(source.get("sha256"), str)
    ):
        raise ConfigError(f"{SOURCE} is invalid; it must name the source weights, the keys and their sha256")


def saved_network(ckpt: dict[str, Any], path: str | Path) -> tuple[nn.Module, dict[str, Tensor]]:
    """The network a checked checkpoint (``read_checkpoint``) names, built on the meta device (nothing is
    allocated), and its state dict from the checkpoint, refilled and checked against the network's tensors."""
    refill(ckpt, f"ckpt_path={path}")
    hp = ckpt["hyper_parameters"]
    with torch.device("meta"):
        network, _ = networks.build(hp["arch"], None, "auto", len(hp["classes"]), hp["dropout"])
    state = ckpt["state_dict"]
    prefix = next((p for p in ("network.", "vgg.") if any(k.startswith(p) for k in state)), "network.")
    state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    checkpoints.check_state(Path(path), state, network.state_dict(), FINETUNE_CHECKPOINT)
    return network, state


def load(path: str | Path) -> Classifier:
    """The classifier saved in ``path``, in eval mode on the CPU."""
    ckpt = read_checkpoint(path)
    # No pretrained weights (the checkpoint holds every weight) and no random initialization either.
    network, state = saved_network(ckpt, path)
    checkpoints.load_weights(network, state, "", f"ckpt_path={path}", FINETUNE_CHECKPOINT, assign=True)
    return Classifier(network, **ckpt["hyper_parameters"]).eval()
