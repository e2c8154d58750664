"""The pack task: a folder of images (read recursively), or an ImageFolder (``task.classes=true``: a folder per
class, and optionally train/ val/ test/ above them), packed into WebDataset shards of ``task.shard_samples``
images each, with a manifest and SHA-256 checksums (``shards.pack``), in the run directory: ``shards/`` (an
ImageFolder with split folders: ``shards/<split>/``). Training reads them with
``data.root=<run>/shards/shards.json`` (or the same files served over HTTP: a pinned URL)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from transferlab import checks, images, shards
from transferlab.errors import DataError
from transferlab.fetch import resolve
from transferlab.result import TaskResult

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class PackSettings:
    input: Path
    classes: bool
    shard_samples: int

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> PackSettings:
        task = cfg.task
        checks.requires("task=pack", ["webdataset"], "shards")
        source = resolve(str(task.input), "task.input")  # a folder, a dataset: name
        if not source.is_dir():
            raise DataError(f"task.input={task.input} is not a folder; point it at a folder of images")
        return cls(
            input=source,
            classes=checks.choice(task.classes, [True, False], "task.classes"),
            shard_samples=checks.at_least(task.shard_samples, 1, "task.shard_samples"),
        )


def split_folders(root: Path, classes: bool) -> dict[str, Path]:
    """The folders packed apart: an ImageFolder's train/ val/ test/ when it has train/, else ``root`` alone."""
    if classes and (root / "train").is_dir():
        return {split: root / split for split in SPLITS if (root / split).is_dir()}
    return {"": root}


def listing(folder: Path, classes: tuple[str, ...] | None) -> tuple[list[Path], list[int] | None, tuple[str, ...]]:
    """The images of ``folder`` in natural order and, with ``classes`` (() for the first split: its own
    class folders), their class indices."""
    if classes is None:
        return images.list_images(folder), None, ()
    present = tuple(sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")))
    classes = classes or present
    unknown = sorted(set(present) - set(classes))
    if not classes or unknown:
        what = f"class folders the first split lacks: {', '.join(unknown)}" if unknown else "no class folders"
        raise DataError(
            f"task.input: {folder} has {what}; an ImageFolder is <root>/<class>/<images> (or "
            "<root>/train/<class>/<images>)"
        )
    pairs = [
        (path, i)
        for i, name in enumerate(classes)
        if (folder / name).is_dir()
        for path in images.list_images(folder / name)
    ]
    return [p for p, _ in pairs], [i for _, i in pairs], classes


def run(cfg: DictConfig, output_dir: Path) -> TaskResult:
    s = PackSettings.from_cfg(cfg)
    classes: tuple[str, ...] | None = () if s.classes else None
    manifests, counts = {}, {}
    for split, folder in split_folders(s.input, s.classes).items():
        files, labels, found = listing(folder, classes)
        if not files:
            raise DataError(f"task.input: {folder} holds no images ({', '.join(images.EXTENSIONS)})")
        classes = found if s.classes else None
        manifest = shards.pack(files, labels, output_dir / "shards" / split, s.shard_samples, found)
        manifests[split or "all"], counts[split or "all"] = str(manifest), len(files)
        log.info("pack: %d images of %s into %s", len(files), folder, manifest.parent)
    total = sum(counts.values())
    shard_count = sum(-(-n // s.shard_samples) for n in counts.values())
    return TaskResult(
        metrics={"task": "pack", "images": counts, "shards": shard_count, "manifests": manifests},
        objective=None,
        caption=(f"{total} images in {shard_count} shards",),
        hparams={"task.shard_samples": s.shard_samples, "task.classes": s.classes},
    )
