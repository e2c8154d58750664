"""Content photos for training feed-forward style networks: every image under a folder (recursively) or in
a shard manifest (``shards``), random square crops for training, a fixed set of resized photos for validation.

Generic on purpose: any network trained on content photos (per-style or arbitrary-style) uses it.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from transferlab import fetch, images, shards
from transferlab.errors import DataError, ImageError

Photo = Path | shards.Member  # an image file, or a sample of a shard


def list_images(root: str | Path, key: str = "data.root", hint: str | None = None) -> list[Photo]:
    """Every image file under ``root`` (subfolders too, ``images.list_images``), or every sample of the shard
    manifest ``root`` (``shards.read_manifest``); a DataError when there is none. ``hint``: what ``root``
    should hold, said when it is missing (a paper-scale experiment names its dataset)."""
    if shards.is_manifest(root) and (fetch.is_url(str(root)) or Path(root).is_file() or not hint):
        return shards.read_manifest(str(root), key)[0]
    root = Path(root)
    if not root.exists() and hint:
        raise DataError(f"{key}={root} does not exist; {hint}, or set {key}=<a folder of images or a shards.json>")
    if not root.is_dir():
        raise DataError(f"{key}={root} does not exist or is not a folder; point it at a folder of photos")
    files = images.list_images(root)
    if not files:
        raise DataError(
            f"{key}={root} holds no images ({', '.join(images.EXTENSIONS)}); point it at a folder of photos"
        )
    return files


def listing_digest(files: list[Photo], root: str | Path, key: str = "data.root") -> str:
    """What a run read, cheaply (a resume fingerprint): the manifest's SHA-256, or the files' names and sizes."""
    if shards.is_manifest(root):
        return fetch.sha256_of(fetch.resolve(str(root), key))  # fetched by list_images: in the cache
    return images.listing_digest(files, root)  # type: ignore[arg-type]


def load(photo: Photo, cache: shards.ShardCache | None = None) -> Tensor:
    """The image of ``photo``: a file, or a shard's sample (its shard held in ``cache``: by default, this call's)."""
    if isinstance(photo, shards.Member):
        return (cache or shards.ShardCache()).load(photo)
    return images.load_image(photo)


def split(files: list[Photo], val_count: int, seed: int) -> tuple[list[Photo], list[Photo]]:
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

    Shard samples come shard by shard: each pass takes the shards in a new order, ``window`` at a time, and
    mixes the samples of those (each data worker holds ``window`` shards in memory).

    The short side is resized to ``resize`` (>= crop) first. Unreadable files are skipped (another
    photo takes their place) until more than ``max_bad`` of them are unreadable."""

    def __init__(
        self,
        files: list[Photo],
        crop: int,
        length: int,
        seed: int,
        resize: int | None = None,
        max_bad: float = 0.05,
        window: int = 4,
    ) -> None:
        if not files:
            raise ValueError("no files")
        self.files, self.crop, self.resize = list(files), crop, max(resize or crop, crop)
        self.length, self.seed, self.max_bad, self.window = length, seed, max_bad, window
        self.bad: set[int] = set()
        self.shards = shard_groups(self.files)
        self.cache = shards.ShardCache(window)
        self._order: tuple[int, Tensor] | None = None  # the last pass's order

    def __len__(self) -> int:
        return self.length

    def _load(self, index: int) -> Tensor:
        for attempt in range(len(self.files)):
            i = (index + attempt) % len(self.files)
            if i in self.bad:
                continue
            try:
                return fit_crop(load(self.files[i], self.cache), self.resize)
            except ImageError:
                self.bad.add(i)
                if len(self.bad) > self.max_bad * len(self.files):
                    raise DataError(
                        f"{len(self.bad)} of {len(self.files)} content photos are unreadable (e.g. {self.files[i]}); "
                        "remove them or raise data.max_bad_fraction"
                    ) from None
        raise DataError("none of the content photos is readable; check data.root")

    def order(self, pass_: int) -> Tensor:
        """The photos' order in pass ``pass_``: a permutation, or shard windows of permutations."""
        if self._order is None or self._order[0] != pass_:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + pass_)
            if self.shards is None:
                order = torch.randperm(len(self.files), generator=g)
            else:
                sequence = [self.shards[int(k)] for k in torch.randperm(len(self.shards), generator=g)]
                windows = [torch.cat(sequence[w : w + self.window]) for w in range(0, len(sequence), self.window)]
                order = torch.cat([w[torch.randperm(len(w), generator=g)] for w in windows])
            self._order = (pass_, order)
        return self._order[1]

    def __getitem__(self, index: int) -> Tensor:
        n = len(self.files)
        image = self._load(int(self.order(index // n)[index % n]))
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + 7919 * index + 1)
        h, w = image.shape[-2:]
        top = int(torch.randint(h - self.crop + 1, (), generator=g))
        left = int(torch.randint(w - self.crop + 1, (), generator=g))
        return image[:, top : top + self.crop, left : left + self.crop].contiguous()


def shard_groups(files: list[Photo]) -> list[Tensor] | None:
    """The indices of ``files`` shard by shard (runs of samples of one shard); None for image files."""
    if not isinstance(files[0], shards.Member):
        return None
    groups: list[list[int]] = []
    for i, member in enumerate(files):
        if i == 0 or member.shard != files[i - 1].shard:  # type: ignore[union-attr]
            groups.append([])
        groups[-1].append(i)
    return [torch.tensor(g) for g in groups]


def validation_batch(files: list[Photo], size: int) -> Tensor:
    """The validation photos as one ``[N, 3, size, size]`` batch: short side resized, centre crop."""
    batch, cache = [], shards.ShardCache()
    for path in files:
        image = fit_crop(load(path, cache), size)
        h, w = image.shape[-2:]
        top, left = (h - size) // 2, (w - size) // 2
        batch.append(image[:, top : top + size, left : left + size])
    return torch.stack(batch)
