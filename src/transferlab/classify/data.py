"""ImageFolder datasets for fine-tuning: layout, validation, unreadable files, stratified split, transforms.

Samples leave this module as RGB float tensors in [0, 1]; the model owns the normalization.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from torchvision.datasets import ImageFolder
from torchvision.transforms import v2

from transferlab import fetch, images, shards
from transferlab.classify import feature_cache
from transferlab.classify.settings import Augment, DataSettings, ImagesIn
from transferlab.errors import DataError, ImageError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
SHOWN = 5  # bad files named in a message


def eval_transform(resize: int, crop: int) -> v2.Compose:
    return v2.Compose([v2.ToImage(), v2.Resize(resize), v2.CenterCrop(crop), v2.ToDtype(torch.float32, scale=True)])


def train_transform(augment: Augment, resize: int, crop: int) -> v2.Compose:
    if augment.random_resized_crop:
        steps: list[Any] = [v2.RandomResizedCrop(crop, scale=tuple(augment.scale))]
    else:
        steps = [v2.Resize(resize), v2.CenterCrop(crop)]
    if augment.hflip:
        steps.append(v2.RandomHorizontalFlip(augment.hflip))
    if augment.color_jitter:
        s = augment.color_jitter
        steps.append(v2.ColorJitter(brightness=s, contrast=s, saturation=s))
    return v2.Compose([v2.ToImage(), *steps, v2.ToDtype(torch.float32, scale=True)])


class FileCheck:
    """``is_valid_file`` for ImageFolder that records, instead of silently dropping, the files it rejects."""

    def __init__(self, verify: bool) -> None:
        self.verify = verify
        self.bad: list[tuple[str, str]] = []
        self.seen = 0

    def __call__(self, path: str) -> bool:
        if not images.is_image_name(path):
            self.seen += 1
            self.bad.append((path, f"not one of {' '.join(images.EXTENSIONS)}"))
            return False
        return self.readable(path, lambda: images.open_rgb(path))

    def readable(self, name: str, decode: Callable[[], Any]) -> bool:
        """Whether the image ``name`` decodes (``decode()``; not tried without ``verify``), the failure recorded."""
        self.seen += 1
        if self.verify:
            try:
                decode()
            except ImageError as exc:
                self.bad.append((name, str(exc)))
                return False
        return True

    def report(self, where: str, max_bad_fraction: float, key: str) -> None:
        """Log the skipped files, or raise when more than ``max_bad_fraction`` of them are bad."""
        if not self.bad:
            return
        names = ", ".join(Path(p).name for p, _ in self.bad[:SHOWN]) + (" ..." if len(self.bad) > SHOWN else "")
        share = len(self.bad) / self.seen
        if share > max_bad_fraction:
            raise DataError(
                f"{where}: {len(self.bad)} of {self.seen} files are not readable images ({names}; first: "
                f"{self.bad[0][1]}); fix or remove them, or raise {key} (now {max_bad_fraction})"
            )
        log.warning(
            "%s: skipped %d of %d files that are not readable images: %s", where, len(self.bad), self.seen, names
        )


def class_folders(directory: Path) -> list[str]:
    return sorted(d.name for d in directory.iterdir() if d.is_dir() and not d.name.startswith("."))


class Folder(ImageFolder):
    """ImageFolder whose class indices are given (the train split's), so that val and test agree with them."""

    def __init__(self, root: Path, classes: list[str], check: FileCheck) -> None:
        self.given = classes
        super().__init__(str(root), loader=images.open_rgb, is_valid_file=check, allow_empty=True)

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        return self.given, {name: i for i, name in enumerate(self.given)}

    @staticmethod
    def make_dataset(
        directory: str | Path,
        class_to_idx: dict[str, int],
        extensions: tuple[str, ...] | None = None,
        is_valid_file: Callable[[str], bool] | None = None,
        allow_empty: bool = False,
    ) -> list[tuple[str, int]]:
        # The project's lister, not torchvision's walk: that one follows a symlink loop until the path is
        # too long (a class repeated 40 times) or forever; ours follows each folder once.
        check = is_valid_file or images.is_image_name
        folders = [(Path(directory) / name, index) for name, index in class_to_idx.items()]
        return [
            (str(path), index)
            for folder, index in folders
            if folder.is_dir()
            for path in images.files_under(folder)
            if check(str(path))
        ]


def load_split(directory: Path, classes: list[str] | None, data: DataSettings) -> Folder:
    """One split's images, with unreadable files reported and skipped; empty class folders are errors."""
    present = class_folders(directory)
    classes = classes or present
    unknown = sorted(set(present) - set(classes))
    if unknown:
        raise DataError(
            f"{directory} has class folders the train set lacks: {', '.join(unknown)}; "
            f"remove them or add them to train (train classes: {', '.join(classes)})"
        )
    check = FileCheck(data.verify)
    folder = Folder(directory, classes, check)
    check.report(str(directory), data.max_bad_fraction, "data.max_bad_fraction")
    counts = torch.bincount(torch.tensor(folder.targets, dtype=torch.long), minlength=len(classes))
    for name in present:
        if counts[classes.index(name)] == 0:
            raise DataError(f"class folder {directory / name} has no readable images; add images or remove the folder")
    return folder


def stratified_split(targets: list[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices of (train, val): ``fraction`` of every class (at least one, if it has two) held out."""
    g = torch.Generator().manual_seed(seed)
    train, val = [], []
    by_class: dict[int, list[int]] = {}
    for i, t in enumerate(targets):
        by_class.setdefault(t, []).append(i)
    for t in sorted(by_class):
        idx = by_class[t]
        order = [idx[j] for j in torch.randperm(len(idx), generator=g).tolist()]
        n_val = min(len(idx) - 1, max(1, round(len(idx) * fraction)))
        val += sorted(order[:n_val])
        train += sorted(order[n_val:])
    return train, val


@dataclass
class Splits:
    """Untransformed datasets of (PIL image, class index), the class names, and each split's
    (path, class index) in dataset order."""

    classes: list[str]
    train: Dataset
    val: Dataset
    test: Dataset | None
    files: dict[str, list[tuple[str, int]]]

    @property
    def train_targets(self) -> list[int]:
        return [target for _, target in self.files["train"]]

    def __len__(self) -> int:
        return sum(len(files) for files in self.files.values())


def shard_layout(root: Path | str) -> dict[str, str] | None:
    """The manifests of a packed ImageFolder (``task=pack task.classes=true``): ``root`` itself (a manifest:
    the train split) or ``root/<split>/shards.json``; None for image folders."""
    if shards.is_manifest(root):
        return {"train": str(root)}
    root = Path(root)
    found = {
        split: str(root / split / shards.MANIFEST) for split in SPLITS if (root / split / shards.MANIFEST).is_file()
    }
    return found if "train" in found else None


class ShardImages(Dataset):
    """A split of a packed ImageFolder: (PIL image, class index) per sample, as ``Folder`` gives them. Each
    epoch visits the samples in a new order, so the split's shards are held in memory (by each worker) once
    read: for the datasets one fine-tunes on; a larger one is better read from folders."""

    def __init__(self, members: list[shards.Member]) -> None:
        self.members, self.cache = members, shards.ShardCache(len({m.shard for m in members}))
        self.targets = [int(m.label) for m in members]  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self.members)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return self.cache.read(self.members[index]), self.targets[index]


def shard_split(
    source: str, classes: tuple[str, ...] | None, data: DataSettings
) -> tuple[ShardImages, tuple[str, ...]]:
    """One split's samples, checked as image files are (``data.verify``: decoded once, bad ones skipped
    within ``data.max_bad_fraction``); its classes must be the train split's."""
    members, found, _ = shards.read_manifest(source, "data.root")
    if len(found) < 2 or members[0].label is None or (classes is not None and found != classes):
        raise DataError(
            f"data.root: {source} holds {'other classes than the train split' if classes else 'no classes'} "
            f"({', '.join(found) or 'none'}); pack an ImageFolder with task=pack task.classes=true"
        )
    check = FileCheck(data.verify)
    cache = shards.ShardCache()
    kept = [m for m in members if check.readable(str(m), lambda m=m: cache.read(m))]
    check.report(source, data.max_bad_fraction, "data.max_bad_fraction")
    return ShardImages(kept), found


def hold_out_val(
    train: Any, items: list[Any], source: str | Path, missing: str, data: DataSettings, seed: int
) -> tuple[Dataset, Dataset, dict[str, list[Any]]]:
    """``data.val_fraction`` of ``train`` (read from ``source``, a dataset with ``targets``) held out, stratified
    by class, where the dataset has no ``missing`` (a val split, a val/ folder): the two subsets and their
    ``items`` by split."""
    if not 0 < data.val_fraction < 1:
        raise DataError(f"{source} has no {missing} and data.val_fraction={data.val_fraction}; set it in (0, 1)")
    train_idx, val_idx = stratified_split(train.targets, data.val_fraction, seed)
    log.info(
        "split %s into %d train and %d val images (val_fraction %s, seed %d)",
        source,
        len(train_idx),
        len(val_idx),
        data.val_fraction,
        seed,
    )
    split = {"train": [items[i] for i in train_idx], "val": [items[i] for i in val_idx]}
    return Subset(train, train_idx), Subset(train, val_idx), split


def load_shards(manifests: dict[str, str], data: DataSettings, seed: int) -> Splits:
    """The splits of a packed ImageFolder; without a val split, ``data.val_fraction`` of train, stratified."""
    train, classes = shard_split(manifests["train"], None, data)
    test = shard_split(manifests["test"], classes, data)[0] if "test" in manifests else None
    if "val" in manifests:
        val: Dataset = shard_split(manifests["val"], classes, data)[0]
        train_set: Dataset = train
        members = {"train": train.members, "val": val.members}  # type: ignore[attr-defined]
    else:
        train_set, val, members = hold_out_val(train, train.members, manifests["train"], "val split", data, seed)
    if test is not None:
        members["test"] = test.members
    # named with their shard's hash: the feature cache keys on it as it keys on a file's size and time
    files = {s: [(f"{m}@{m.sha256}", int(m.label)) for m in found] for s, found in members.items()}  # type: ignore[arg-type]
    return Splits(list(classes), train_set, val, test, files)


def load(data: DataSettings, seed: int) -> Splits:
    """The dataset under ``data.root`` in either layout (see configs/data/imagefolder.yaml), or packed into shards."""
    manifests = shard_layout(data.root)
    if manifests is not None:
        return load_shards(manifests, data, seed)
    root = Path(data.root)
    if not root.is_dir():
        raise DataError(f"data.root={root} does not exist or is not a folder; point it at an ImageFolder dataset")
    train_dir = root / "train" if (root / "train").is_dir() else root
    if not class_folders(train_dir):
        raise DataError(f"{train_dir} has no class folders; expected {train_dir}/<class>/<image files>")
    train = load_split(train_dir, None, data)
    classes = train.classes
    if len(classes) < 2:
        raise DataError(
            f"{train_dir} has {len(classes)} class folder ({', '.join(classes)}); a classifier needs at least two"
        )
    if (root / "val").is_dir():
        val: Dataset = load_split(root / "val", classes, data)
        train_set: Dataset = train
        files = {"train": list(train.samples), "val": list(val.samples)}
    else:
        train_set, val, files = hold_out_val(train, list(train.samples), root, "val/ folder", data, seed)
    test = load_split(root / "test", classes, data) if (root / "test").is_dir() else None
    if test is not None:
        files["test"] = list(test.samples)
    fixes = {
        "train": f"add images to {train_dir}/<class>/",
        "val": f"add a val/ folder to {root}, or at least 2 images per class for data.val_fraction to hold one out",
        "test": f"add images to {root / 'test'}/<class>/ or remove the folder",
    }
    for name, split in (("train", train_set), ("val", val), ("test", test)):
        if split is not None and len(split) == 0:
            raise DataError(f"the {name} split of {root} has no images; {fixes[name]}")
    return Splits(classes, train_set, val, test, files)


class Transformed(Dataset):
    """Applies ``transform`` to each image with the random generator seeded by (seed, epoch, index), so
    that a run resumed from a checkpoint sees the same augmented images as an uninterrupted run,
    whatever the number of workers."""

    def __init__(self, samples: Dataset, transform: Callable, seed: int) -> None:
        self.samples, self.transform, self.seed = samples, transform, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        image, target = self.samples[index]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(hash((self.seed, self.epoch, index)) % 2**63)
            return self.transform(image), target


class EpochSampler(DistributedSampler):
    """Shuffles with a permutation seeded by (seed, epoch) and passes the epoch on to the dataset.
    Lightning calls ``set_epoch`` before each epoch; with one process it is a seeded RandomSampler."""

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.dataset.epoch = epoch


class ImageFolderData(pl.LightningDataModule):
    """Batches of transformed images, or with a ``feature_prefix`` (the model's own frozen modules, see
    feature_cache) batches of their cached output, computed on the first request."""

    def __init__(
        self,
        splits: Splits,
        data: DataSettings,
        sizes: dict[str, int],
        seed: int,
        feature_prefix: nn.Module | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        super().__init__()
        self.seed = seed
        self.batch_size, self.num_workers = data.batch_size, data.num_workers
        evaluate = eval_transform(sizes["resize"], sizes["crop"])
        self.train = Transformed(splits.train, train_transform(data.augment, sizes["resize"], sizes["crop"]), seed)
        self.val = Transformed(splits.val, evaluate, seed)
        self.test = Transformed(splits.test, evaluate, seed) if splits.test is not None else None
        self.files = splits.files
        self.feature_prefix, self.cache_dir = feature_prefix, cache_dir
        self.features: dict[str, feature_cache.Features] = {}
        self.cache_seconds = 0.0

    def dataset(self, split: str) -> Dataset:
        images = getattr(self, split)
        if self.feature_prefix is None:
            return images
        if split not in self.features:
            # Here, not in setup(): the prefix shares the model's modules, which a resumed run has restored
            # and Lightning has moved to its device by the time it asks for data.
            start = time.perf_counter()
            self.features[split] = feature_cache.load_or_compute(
                images, self.files[split], self.feature_prefix, self.batch_size, self.num_workers, self.cache_dir
            )
            self.cache_seconds += time.perf_counter() - start
        return self.features[split]

    def loader(self, dataset: Dataset, **kwargs: Any) -> DataLoader:
        # Cached features are in memory already: worker processes would only add copies.
        workers = 0 if isinstance(dataset, feature_cache.Features) else self.num_workers
        pin = self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"
        return DataLoader(dataset, self.batch_size, num_workers=workers, pin_memory=pin, **kwargs)

    def train_dataloader(self) -> DataLoader:
        dataset = self.dataset("train")
        sampler = EpochSampler(
            dataset, num_replicas=self.trainer.world_size, rank=self.trainer.global_rank, shuffle=True, seed=self.seed
        )
        # A resumed run creates its first iterator before Lightning sets the epoch.
        sampler.set_epoch(self.trainer.current_epoch)
        # Not persistent_workers: workers must pick up each epoch's dataset.epoch.
        return self.loader(dataset, sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        return self.loader(self.dataset("val"))

    def test_dataloader(self) -> DataLoader:
        return self.loader(self.dataset("test"))


class ImageFiles(Dataset):
    def __init__(self, paths: list[Path], transform: Callable) -> None:
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Tensor:
        return self.transform(images.open_rgb(self.paths[index]))


def image_files(path: Path, max_bad_fraction: float, key: str, fraction_key: str) -> list[Path]:
    """``path`` if it is an image, else the readable images under the folder ``path`` (recursively, sorted);
    unreadable files are reported and skipped. ``key`` and ``fraction_key`` name the settings in messages."""
    if path.is_file():
        images.open_rgb(path)  # raises one clear ImageError
        return [path]
    if not path.is_dir():
        raise DataError(f"{key}={path} does not exist; give an image or a folder of images")
    check = FileCheck(verify=True)
    files = [p for p in images.files_under(path) if check(str(p))]
    check.report(str(path), max_bad_fraction, fraction_key)
    if not files:
        raise DataError(f"{key}={path} has no readable images")
    return files


def image_loader(source: ImagesIn, sizes: dict[str, int]) -> tuple[list[str], DataLoader]:
    """The names of the readable images of ``source`` (relative to a folder given, else the file's path) and
    batches of them, resized and cropped as in evaluation."""
    path = fetch.resolve(source.source, "task.input")
    files = image_files(path, source.max_bad_fraction, "task.input", "task.max_bad_fraction")
    transform = eval_transform(sizes["resize"], sizes["crop"])
    names = [str(f.relative_to(path) if path.is_dir() else f) for f in files]
    return names, DataLoader(ImageFiles(files, transform), source.batch_size, num_workers=source.num_workers)
