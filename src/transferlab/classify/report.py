"""What a person looks at after an evaluation: the confusion matrix with class names, and the
misclassified images of every direction (each true class), in TensorBoard and as files."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from PIL.Image import Image
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.trainer.states import TrainerFn
from torch import Tensor
from torch.utils.data import Dataset

from transferlab import images
from transferlab.files import atomic_write
from transferlab.trainer import VISUALS

MAX_KEPT = 256  # misclassified images held during one evaluation
MAX_DRAWN = 100  # classes drawn in the confusion image (about 4000 px square); beyond, SHOWN_OF_MANY of them
SHOWN_OF_MANY = 40
MISTAKE_COLUMNS = 3  # misclassified images a row


def confusion_image(counts: Tensor, classes: list[str]) -> Image:
    """Row = true class, column = predicted class; each cell shows its count and its share of the
    row, and is shaded by that share (so the diagonal shows per-class recall). Up to 12 classes the
    columns carry the names; beyond, indices (the rows name them), smaller type, and beyond 40
    classes the shading alone. Beyond ``MAX_DRAWN`` classes only the ``SHOWN_OF_MANY`` classes in the
    most confusions are drawn (shares still of their whole rows): 1000 classes drawn whole were a
    27,500 px image nobody could read; the whole matrix is data (``write_confusion_csv``)."""
    rows = counts.double().cpu()
    shares = rows / rows.sum(dim=1, keepdim=True).clamp(min=1)
    n = len(classes)
    title = "rows: true class, columns: predicted; count (share of the row)"
    shown = list(range(n))
    if n > MAX_DRAWN:
        errors = rows.clone().fill_diagonal_(0)
        shown = sorted(torch.topk(errors.sum(0) + errors.sum(1), SHOWN_OF_MANY).indices.tolist())
        title = f"the {SHOWN_OF_MANY} of {n} classes in the most confusions (all: confusion_matrix_*.csv); {title}"
    rows, shares = rows[shown][:, shown], shares[shown][:, shown]
    if n <= 12:
        values = [[f"{int(c)} ({s:.0%})" for c, s in zip(r, q)] for r, q in zip(rows.tolist(), shares.tolist())]
        labels, columns, font = [f"true {name}" for name in classes], [f"pred {name}" for name in classes], 16
    else:
        values = [[str(int(c)) if len(shown) <= 40 else "" for c in r] for r in rows.tolist()]
        labels, columns, font = [f"{i} {classes[i]}" for i in shown], [str(i) for i in shown], 11
    return images.shaded_table(values, shares.tolist(), labels, columns, title, font_size=font)


def write_confusion_csv(counts: Tensor, classes: list[str], path: Path) -> None:
    """The whole confusion matrix as data: a header of the predicted classes, then a row per true class."""
    with atomic_write(path, "w") as f:
        writer = csv.writer(f)
        writer.writerow(["true \\ predicted", *classes])
        for name, row in zip(classes, counts.cpu().tolist()):
            writer.writerow([name, *row])


@dataclass(frozen=True)
class Mistake:
    image: Tensor
    true: int
    predicted: int
    prob: float


def misclassified_sheet(mistakes: list[Mistake], classes: list[str], counts: Tensor, pairs: int = 8) -> Image | None:
    """The misclassified images of the ``pairs`` most frequent confusions (true -> predicted, so both
    directions of a two-class problem), most frequent first, each captioned with both classes."""
    if not mistakes:
        return None
    frequency = counts.cpu()
    order = sorted({(m.true, m.predicted) for m in mistakes}, key=lambda tp: -int(frequency[tp]))[:pairs]
    tiles = [
        # The probability on a line of its own: after a class name it ran past the 128 px tile and was cut.
        (images.to_pil(m.image), [f"true {classes[m.true]}", f"pred {classes[m.predicted]}", f"p {m.prob:.2f}"])
        for pair in order
        for m in mistakes
        if (m.true, m.predicted) == pair
    ]
    # 3 tiles across (384 px) show nearly at full size in TensorBoard's image card (about 365 px wide at its
    # default size): 4 (512 px) were shrunk to 70%, their 11 px captions to 8 px.
    return images.contact_sheet(tiles, tile=128, columns=MISTAKE_COLUMNS)


def confusion_path(output_dir: Path, split: str) -> Path:
    """Where ``EvalReport`` writes a split's confusion matrix after ``trainer.validate`` / ``trainer.test``."""
    return output_dir / f"confusion_matrix_{split}.png"


class EvalReport(pl.Callback):
    """Collects up to ``per_class`` misclassified images of each confusion (true -> predicted class)
    during every evaluation (at most ``MAX_KEPT`` in all);
    at its end logs them and the confusion matrix (from the module's ``last_eval``) to TensorBoard, and
    after ``trainer.validate`` / ``trainer.test`` also writes confusion_matrix_{split}.png (and .csv: every
    class) and misclassified_{split}.png into ``output_dir``.

    ``images`` holds each split's dataset of (image, target): a batch of cached features carries
    sample indices instead of images, and the images are read from there."""

    def __init__(self, classes: list[str], images: dict[str, Dataset], per_class: int, output_dir: Path) -> None:
        self.classes, self.images, self.per_class, self.output_dir = classes, images, per_class, output_dir
        self.mistakes: list[Mistake] = []
        self.kept: dict[tuple[int, int], int] = {}

    def _start(self, *_: Any) -> None:
        self.mistakes, self.kept = [], {}

    def _collect(self, split: str, outputs: dict[str, Tensor], batch: tuple[Tensor, ...]) -> None:
        inputs, targets = batch[:2]
        preds, probs = outputs["preds"], outputs["probs"]
        for i in (preds != targets).nonzero().flatten().tolist():
            pair = int(targets[i]), int(preds[i])
            if len(self.mistakes) >= MAX_KEPT or self.kept.get(pair, 0) >= self.per_class:
                continue
            self.kept[pair] = self.kept.get(pair, 0) + 1
            true = pair[0]
            image = inputs[i].float().cpu() if inputs.dim() == 4 else self.images[split][int(batch[2][i])][0]
            self.mistakes.append(Mistake(image, true, int(preds[i]), float(probs[i])))

    def _end(self, trainer: pl.Trainer, module: Any, split: str) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        evaluation = module.last_eval
        confusion = confusion_image(evaluation.counts, self.classes)
        sheet = misclassified_sheet(self.mistakes, self.classes, evaluation.counts)
        if isinstance(trainer.logger, TensorBoardLogger):
            board = trainer.logger.experiment
            board.add_image(
                f"{VISUALS}/{evaluation.prefix}_confusion_matrix", images.to_tensor(confusion), trainer.global_step
            )
            if sheet is not None:
                board.add_image(
                    f"{VISUALS}/{evaluation.prefix}_misclassified", images.to_tensor(sheet), trainer.global_step
                )
        if trainer.state.fn in (TrainerFn.VALIDATING, TrainerFn.TESTING):
            images.save_atomic(confusion, confusion_path(self.output_dir, split))
            write_confusion_csv(evaluation.counts, self.classes, self.output_dir / f"confusion_matrix_{split}.csv")
            if sheet is not None:
                images.save_atomic(sheet, self.output_dir / f"misclassified_{split}.png")

    on_validation_epoch_start = on_test_epoch_start = _start

    def on_validation_batch_end(
        self, trainer: pl.Trainer, module: Any, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if not trainer.sanity_checking:
            self._collect("val", outputs, batch)

    def on_test_batch_end(
        self, trainer: pl.Trainer, module: Any, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._collect("test", outputs, batch)

    def on_validation_end(self, trainer: pl.Trainer, module: Any) -> None:
        self._end(trainer, module, "val")

    def on_test_end(self, trainer: pl.Trainer, module: Any) -> None:
        self._end(trainer, module, "test")
