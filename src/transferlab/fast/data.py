"""Content photos for training feed-forward style networks: every image under a folder (recursively),
random square crops for training, a fixed set of resized photos for validation.

Generic on purpose: any network trained on content photos (per-style or arbitrary-style) uses it.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from transferlab import images
from transferlab.errors import DataError, ImageError


def list_images(root: str | Path, key: str = "data.root") -> list[Path]:
    """Every image file under ``root`` (subfolders too, ``images.list_images``); a DataError when there is none."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{key}={root} does not exist or is not a folder; point it at a folder of photos")
    files = images.list_images(root)
    if not files:
        raise DataError(
            f"{key}={root} holds no images ({', '.join(images.EXTENSIONS)}); point it at a folder of photos"
        )
    return files


def split(files: list[Path], val_count: int, seed: int) -> tuple[list[Path], list[Path]]:
    """A fixed validation set of ``val_count`` files drawn with ``seed``; the rest for training."""
    if val_count >= len(files):
        raise DataError(f"{len(files)} images are too few to hold out {val_count} for validation; add images")
    order = list(files)
    random.Random(seed).shuffle(order)
    return sorted(order[val_count:]), sorted(order[:val_count])


def fit_crop(image: Tensor, crop: int) -> Tensor:
    """Resize so that the short side is ``crop`` (up or down), keeping the aspect ratio."""
    h, w = image.shape[-2:]
    scale = crop / min(h, w)
    return images.resize(image, (max(crop, round(h * scale)), max(crop, round(w * scale))))


class ContentCrops(Dataset):
    """Sample ``i`` of a stream of ``length`` random ``crop`` x ``crop`` crops: the photos in a new
    order each pass (seeded by ``seed`` and the pass), the crop position seeded by ``seed`` and ``i``.
    Every sample is a function of its index alone, so a run resumed at step k (``Subset`` from
    ``k * batch``) sees exactly the batches an uninterrupted run would, with any number of workers.

    The short side is resized to ``resize`` (>= crop) first. Unreadable files are skipped (another
    photo takes their place) until more than ``max_bad`` of them are unreadable."""

    def __init__(
        self, files: list[Path], crop: int, length: int, seed: int, resize: int | None = None, max_bad: float = 0.05
    ) -> None:
        if not files:
            raise ValueError("no files")
        self.files, self.crop, self.resize = list(files), crop, max(resize or crop, crop)
        self.length, self.seed, self.max_bad = length, seed, max_bad
        self.bad: set[int] = set()

    def __len__(self) -> int:
        return self.length

    def _load(self, index: int) -> Tensor:
        for attempt in range(len(self.files)):
            i = (index + attempt) % len(self.files)
            if i in self.bad:
                continue
            try:
                return fit_crop(images.load_image(self.files[i]), self.resize)
            except ImageError:
                self.bad.add(i)
                if len(self.bad) > self.max_bad * len(self.files):
                    raise DataError(
                        f"{len(self.bad)} of {len(self.files)} content photos are unreadable (e.g. {self.files[i]}); "
                        "remove them or raise data.max_bad_fraction"
                    ) from None
        raise DataError("none of the content photos is readable; check data.root")

    def __getitem__(self, index: int) -> Tensor:
        n = len(self.files)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + index // n))
        image = self._load(int(order[index % n]))
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + 7919 * index + 1)
        h, w = image.shape[-2:]
        top = int(torch.randint(h - self.crop + 1, (), generator=g))
        left = int(torch.randint(w - self.crop + 1, (), generator=g))
        return image[:, top : top + self.crop, left : left + self.crop].contiguous()


def validation_batch(files: list[Path], size: int) -> Tensor:
    """The validation photos as one ``[N, 3, size, size]`` batch: short side resized, centre crop."""
    batch = []
    for path in files:
        image = fit_crop(images.load_image(path), size)
        h, w = image.shape[-2:]
        top, left = (h - size) // 2, (w - size) // 2
        batch.append(image[:, top : top + size, left : left + size])
    return torch.stack(batch)
