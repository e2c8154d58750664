"""The predict task: top-k classes of a fine-tuned checkpoint for an image or a folder of images, as CSV."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from transferlab import checks
from transferlab.classify import data
from transferlab.classify import module as classifier
from transferlab.errors import ConfigError
from transferlab.files import atomic_write

log = logging.getLogger(__name__)


def run(cfg: DictConfig, output_dir: Path) -> None:
    """Writes predictions.csv: file, then class_i and prob_i for i = 1..top_k, most probable first."""
    task = cfg.task
    checks.at_least(task.top_k, 1, "task.top_k")
    checks.at_least(task.batch_size, 1, "task.batch_size")
    if not cfg.ckpt_path:
        raise ConfigError("task=predict needs ckpt_path=<a finetune run's checkpoints/best.ckpt>")
    module = classifier.load(cfg.ckpt_path)
    device = checks.trainer_settings(cfg).device
    network = module.inference_network().to(device)
    source = Path(str(task.input)).expanduser()
    files = data.image_files(source, task.max_bad_fraction, "task.input", "task.max_bad_fraction")
    sizes = module.hparams.preprocessing
    loader = DataLoader(
        data.ImageFiles(files, data.eval_transform(sizes["resize"], sizes["crop"])),
        task.batch_size,
        num_workers=task.num_workers,
    )
    k = min(task.top_k, len(module.classes))
    if k < task.top_k:
        log.warning("task.top_k=%d is more than the %d classes of the checkpoint: writing %d", task.top_k, k, k)
    rows = []
    with torch.inference_mode():
        for batch in loader:
            probs, indices = network(batch.to(device)).float().softmax(1).topk(k, dim=1)
            rows += list(zip(probs.cpu().tolist(), indices.cpu().tolist()))
    path = output_dir / "predictions.csv"
    with atomic_write(path, "w") as f:
        writer = csv.writer(f)
        writer.writerow(["file", *(f"{kind}_{i}" for i in range(1, k + 1) for kind in ("class", "prob"))])
        for file, (p, idx) in zip(files, rows):
            name = file.relative_to(source) if source.is_dir() else file
            writer.writerow([str(name), *(v for c, q in zip(idx, p) for v in (module.classes[c], f"{q:.6f}"))])
    log.info("predictions for %d images: %s", len(files), path)
