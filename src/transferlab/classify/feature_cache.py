"""Body features computed once: when everything before the classifier is frozen (``networks.Body``:
VGG's conv layers, a ResNet's layer1-4, ... with their batch norms in eval mode) and the train
transform is deterministic, the body's output is the same every epoch, so it is computed once per
split and only the classifier (frozen hidden layers, their dropout, the new head) runs each epoch,
on the cached vectors.

The cache lives in memory, bounded by ``task.cache_max_gb`` (the door decides), and optionally on disk under
``task.cache_dir`` in files named by a key that covers the image files (paths, sizes, mtimes),
the transform, the normalization and the frozen weights, so that any change makes a new entry.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from transferlab import checkpoints
from transferlab.files import atomic_write

log = logging.getLogger(__name__)


def cache_key(files: list[tuple[str, int]], transform: Any, prefix: nn.Module) -> str:
    """Changes when an image file, its class, the transform, the normalization or a frozen weight changes."""
    h = hashlib.sha256(repr(transform).encode())
    for path, target in files:
        # a shard's sample is named with its shard's hash (classify.data.load_shards): the name says it all
        stat = os.stat(path) if os.path.isfile(path) else None
        changes = f"{stat.st_size}\0{stat.st_mtime_ns}" if stat else ""
        h.update(f"{path}\0{target}\0{changes}\n".encode())
    for name, tensor in [*prefix.named_parameters(), *prefix.named_buffers()]:
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:32]


@torch.no_grad()
def compute(images: Dataset, prefix: nn.Module, batch_size: int, num_workers: int, device: torch.device) -> Tensor:
    """``prefix`` applied to every image of ``images`` (in order), as a float32 CPU tensor."""
    was_training = prefix.training
    prefix.eval()  # VGG without batch norm: eval and train modes compute the same features
    loader = DataLoader(images, batch_size, num_workers=num_workers, pin_memory=device.type == "cuda")
    out = torch.cat([prefix(x.to(device, non_blocking=True)).float().cpu() for x, _ in loader])
    prefix.train(was_training)
    return out


class Features(Dataset):
    """Cached feature vectors with their targets; items are (features, target, index), the index
    into the split's images (report.EvalReport shows misclassified ones from there)."""

    def __init__(self, features: Tensor, targets: list[int]) -> None:
        self.features, self.targets = features, targets
        self.epoch = 0  # set by data.EpochSampler; the features do not change with it

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> tuple[Tensor, int, int]:
        return self.features[index], self.targets[index], index


def load_or_compute(
    images: Any,
    files: list[tuple[str, int]],
    prefix: nn.Module,
    batch_size: int,
    num_workers: int,
    cache_dir: Path | None,
) -> Features:
    """The features of ``images`` (a data.Transformed whose samples are ``files``, in order): from
    ``cache_dir`` when an entry with the same key is there, else computed on the prefix's device (and
    written there atomically)."""
    start = time.perf_counter()
    targets = [target for _, target in files]
    path = None
    if cache_dir is not None:
        path = cache_dir / f"{cache_key(files, images.transform, prefix)}.pt"
        if path.is_file():
            features = checkpoints.load(path, "task.cache_dir", "a feature file of the cache (or delete it)")
            log.info("loaded cached features of %d images from %s", len(features), path)
            return Features(features, targets)
    device = next(prefix.parameters()).device
    features = compute(images, prefix, batch_size, num_workers, device)
    log.info("computed backbone features of %d images in %.1f s", len(features), time.perf_counter() - start)
    if path is not None:
        with atomic_write(path) as f:
            torch.save(features, f)
    return Features(features, targets)
