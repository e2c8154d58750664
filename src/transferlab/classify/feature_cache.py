"""Backbone features computed once: when every conv layer is frozen and the train transform is
deterministic, the output of ``features -> avgpool -> flatten`` is the same every epoch, so it is
computed once per split and only the classifier (frozen hidden layers, their dropout, the new head)
runs each epoch, on the cached vectors.

The cache lives in memory, bounded by ``task.cache_max_gb``, and optionally on disk under
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
from omegaconf import DictConfig
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from torchvision.models import vgg

from transferlab import backbone
from transferlab.classify import module as classifier
from transferlab.errors import ConfigError

log = logging.getLogger(__name__)

SETTINGS = ("auto", True, False)
# VGG's adaptive average pool always gives 512 x 7 x 7, whatever the crop size.
FEATURE_DIM = 512 * 7 * 7


def unusable(arch: str, freeze: int | str, augment: DictConfig) -> str | None:
    """Why features cannot be cached for this config (a phrase naming the keys), or None when they can."""
    n_frozen, _ = classifier.frozen_modules(arch, freeze)
    last_conv = max(i for i, name in enumerate(backbone.layer_names(arch)) if name.startswith("conv"))
    if n_frozen <= last_conv:
        return f"task.freeze={freeze} leaves conv layers trainable (use task.freeze=features or all)"
    random = [k for k in ("random_resized_crop", "hflip", "color_jitter") if augment[k]]
    if random:
        keys = " ".join(f"data.augment.{k}=false" for k in random)
        return f"training augmentation is random ({keys} makes it deterministic)"
    return None


def check(setting: Any, arch: str, freeze: int | str, augment: DictConfig) -> None:
    """Refuse an invalid ``task.cache_features``, or ``true`` where caching is not valid, before any work."""
    if setting not in SETTINGS:
        raise ConfigError(f"task.cache_features={setting!r} is invalid; choose auto, true or false")
    reason = unusable(arch, freeze, augment) if setting is True else None
    if reason is not None:
        raise ConfigError(f"task.cache_features=true cannot be used: {reason}; or set task.cache_features=auto")


def enabled(setting: Any, arch: str, freeze: int | str, augment: DictConfig, n_images: int, max_gb: float) -> bool:
    """Resolve ``task.cache_features`` (auto | true | false): auto caches whenever it is valid and fits."""
    check(setting, arch, freeze, augment)
    if setting is False:
        return False
    reason = unusable(arch, freeze, augment)
    if reason is None and n_images * FEATURE_DIM * 4 > max_gb * 1e9:
        reason = f"{n_images} images need {n_images * FEATURE_DIM * 4 / 1e9:.1f} GB, over task.cache_max_gb={max_gb}"
        if setting is True:
            raise ConfigError(
                f"task.cache_features=true cannot be used: {reason}; raise it or set task.cache_features=auto"
            )
    if reason is not None:
        log.info("backbone features are not cached: %s", reason)
    return reason is None


def frozen_prefix(network: vgg.VGG, normalize: nn.Module) -> nn.Sequential:
    """The model's own frozen modules, from the [0, 1] image to the classifier's input."""
    return nn.Sequential(normalize, network.features, network.avgpool, nn.Flatten(1))


def cache_key(files: list[tuple[str, int]], transform: Any, prefix: nn.Module) -> str:
    """Changes when an image file, its class, the transform, the normalization or a frozen weight changes."""
    h = hashlib.sha256(repr(transform).encode())
    for path, target in files:
        stat = os.stat(path)
        h.update(f"{path}\0{target}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
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
    """Cached feature vectors with their targets; items are (features, target, index). ``image(i)``
    is the transformed image, for the few misclassified images shown in TensorBoard."""

    def __init__(self, features: Tensor, images: Dataset) -> None:
        self.features, self.images = features, images
        self.targets = [target for _, target in files_of(images)]
        self.epoch = 0  # set by data.EpochSampler; the features do not change with it

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> tuple[Tensor, int, int]:
        return self.features[index], self.targets[index], index

    def image(self, index: int) -> Tensor:
        return self.images[index][0]


def files_of(images: Any) -> list[tuple[str, int]]:
    """(path, class index) of each sample of a data.Transformed over a Folder or a Subset of one."""
    samples = images.samples
    if hasattr(samples, "indices"):  # torch.utils.data.Subset
        return [samples.dataset.samples[i] for i in samples.indices]
    return list(samples.samples)


def load_or_compute(
    images: Any, prefix: nn.Module, batch_size: int, num_workers: int, device: torch.device, cache_dir: Path | None
) -> Features:
    """The split's features: from ``cache_dir`` when an entry with the same key is there, else computed
    (and written there atomically)."""
    start = time.perf_counter()
    path = None
    if cache_dir is not None:
        path = cache_dir / f"{cache_key(files_of(images), images.transform, prefix)}.pt"
        if path.is_file():
            features = torch.load(path, map_location="cpu", weights_only=True)
            log.info("loaded cached features of %d images from %s", len(features), path)
            return Features(features, images)
    features = compute(images, prefix, batch_size, num_workers, device)
    log.info("computed backbone features of %d images in %.1f s", len(features), time.perf_counter() - start)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save(features, partial)
        partial.replace(path)
    return Features(features, images)
