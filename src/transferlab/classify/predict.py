"""The predict task: top-k classes of a fine-tuned checkpoint for an image or a folder of images, as CSV."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import torch
from omegaconf import DictConfig

from transferlab.classify import data
from transferlab.classify import module as classifier
from transferlab.classify.settings import PredictSettings
from transferlab.files import atomic_write
from transferlab.result import TaskResult, settings_hparams

log = logging.getLogger(__name__)


def run(cfg: DictConfig, output_dir: Path) -> TaskResult:
    """Writes predictions.csv: file, then class_i and prob_i for i = 1..top_k, most probable first."""
    s = PredictSettings.from_cfg(cfg)
    module = classifier.load(s.checkpoint)
    network = module.inference_network().to(s.device)
    names, loader = data.image_loader(s.images, module.hparams.preprocessing)
    k = min(s.top_k, len(module.classes))
    if k < s.top_k:
        log.warning("task.top_k=%d is more than the %d classes of the checkpoint: writing %d", s.top_k, k, k)
    rows = []
    with torch.inference_mode():
        for batch in loader:
            probs, indices = network(batch.to(s.device)).float().softmax(1).topk(k, dim=1)
            rows += list(zip(probs.cpu().tolist(), indices.cpu().tolist()))
    path = output_dir / "predictions.csv"
    with atomic_write(path, "w") as f:
        writer = csv.writer(f)
        writer.writerow(["file", *(f"{kind}_{i}" for i in range(1, k + 1) for kind in ("class", "prob"))])
        for name, (p, idx) in zip(names, rows):
            writer.writerow([name, *(v for c, q in zip(idx, p) for v in (module.classes[c], f"{q:.6f}"))])
    log.info("predictions for %d images: %s", len(names), path)
    return TaskResult(
        metrics={"images": len(names), "top_k": k, "classes": len(module.classes)},
        objective=None,
        caption=(f"{len(names)} images, top {k} of {len(module.classes)} classes",),
        hparams=settings_hparams(s),
    )
