"""Benchmarks of fine-tuning (issue 4, items 6 and 7) on this machine, random VGG16 weights, 224 px.

    python scripts/benchmark_finetune.py cache       # epoch times with and without the feature cache (freeze=all, no augmentation)
    python scripts/benchmark_finetune.py throughput  # training images/s: our Lightning path vs a plain PyTorch loop, and loading alone
    python scripts/benchmark_finetune.py checkpoints # bytes of best.ckpt and last.ckpt after one epoch, per model and task.save_last
    python scripts/benchmark_finetune.py all

Both run the project's own code: ``cache`` runs the whole finetune task (``main.run_task``, with its
checkpoints, metrics and TensorBoard logging); ``throughput`` fits the task's Classifier and
DataModule with the task's Trainer and compares it, in the same process and interleaved, with a
plain loop over the same network, optimizer, transforms and DataLoader settings. The machine and
its load are printed with every figure: other processes may share the CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from PIL import Image
from torch.utils.data import DataLoader

from bench.common import ROOT, SHARED, add_warnings_switch, load, machine, quiet
from transferlab import groups, main, trainer
from transferlab.classify import data, finetune
from transferlab.classify import module as classifier
from transferlab.classify.settings import FinetuneSettings

HYMENOPTERA = SHARED / "hymenoptera"


def make_cfg(root: Path, *overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose(
            "config",
            overrides=[
                "task=finetune",
                "model=vgg16",
                "model.weights=null",
                f"data.root={root}",
                "data.resize_size=256",
                "data.crop_size=224",
                "trainer.accelerator=cpu",
                *overrides,
            ],
        )


def subset(root: Path, images: int | None, into: Path) -> Path:
    """``root`` itself, or a copy made of links to its first ``images`` files per split, spread over the classes."""
    if images is None:
        return root
    for split in ("train", "val"):
        classes = data.class_folders(root / split)
        for c, name in enumerate(classes):
            files = sorted(p for p in (root / split / name).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
            share = images // len(classes) + (c < images % len(classes))
            (into / split / name).mkdir(parents=True)
            for f in files[:share]:
                (into / split / name / f.name).symlink_to(f)
    return into


# ---------------------------------------------------------------------------------------- cache


def cache(args: argparse.Namespace) -> None:
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        root = subset(args.root, args.images, Path(tmp) / "data")
        common = [
            "task.freeze=all",
            "data.augment.random_resized_crop=false",
            "data.augment.hflip=0",
            "task.patience=0",
        ]
        runs = {}
        for name, epochs, setting in (("uncached", args.uncached_epochs, "false"), ("cached", args.epochs, "true")):
            cfg = make_cfg(root, *common, f"task.epochs={epochs}", f"task.cache_features={setting}")
            out = Path(tmp) / name
            start = time.perf_counter()
            main.run_task(cfg, out)
            result = json.loads((out / "metrics.json").read_text())
            result["wall_s"] = time.perf_counter() - start
            runs[name] = result
            times = ", ".join(f"{t:.1f}" for t in result["epoch_time_s"])
            extra = (
                f"; features computed before epoch 1 in {result['feature_cache_s']:.1f} s"
                if result.get("feature_cache_s")
                else ""
            )
            print(
                f"{name}: epoch times (train + val + checkpoints) {times} s{extra}; whole run {result['wall_s']:.0f} s; load {load()}"
            )
    n = args.images or "all"
    cached = runs["cached"]["epoch_time_s"]
    first = runs["cached"]["feature_cache_s"] + cached[0]
    later = sum(cached[1:]) / max(1, len(cached) - 1)
    uncached = sum(runs["uncached"]["epoch_time_s"]) / len(runs["uncached"]["epoch_time_s"])
    print(
        f"hymenoptera ({n} train and val images) at 224 px, freeze=all, no augmentation:\n"
        f"  cached run: first epoch incl. computing features {first:.1f} s, later epochs {later:.2f} s: {first / later:.1f}x faster (target >= 5x)\n"
        f"  an uncached epoch {uncached:.1f} s is {uncached / later:.1f}x a cached one; "
        f"val acc_micro uncached {runs['uncached']['val']['acc_micro']:.4f}, cached {runs['cached']['val']['acc_micro']:.4f}"
    )


# ----------------------------------------------------------------------------------- throughput


class BatchClock(pl.Callback):
    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_train_batch_end(self, *args: Any) -> None:
        self.ends.append(time.perf_counter())


def build(cfg: DictConfig) -> tuple[classifier.Classifier, data.ImageFolderData]:
    """The Classifier and DataModule exactly as finetune.run builds them."""
    module, datamodule, _ = finetune.build(FinetuneSettings.from_cfg(cfg))
    return module, datamodule


def rate(ends: list[float], warmup: int, batch_size: int) -> float:
    """Images/s of the median batch after warm-up (end to end, data waits included): other processes
    on a shared CPU slow some batches down, and the median keeps those from deciding the comparison."""
    return batch_size / statistics.median(b - a for a, b in zip(ends[warmup - 1 :], ends[warmup:]))


def lightning_rate(cfg: DictConfig, steps: int, warmup: int, out: Path) -> float:
    module, datamodule = build(cfg)
    clock = BatchClock()
    fit = trainer.make_trainer(
        groups.trainer(cfg),
        out,
        max_steps=steps,
        callbacks=[clock],
        limit_val_batches=0,
        num_sanity_val_steps=0,
        enable_checkpointing=False,
        log_every_n_steps=1,
        enable_progress_bar=False,
    )
    fit.fit(module, datamodule=datamodule)
    return rate(clock.ends, warmup, cfg.data.batch_size)


def plain_rate(cfg: DictConfig, steps: int, warmup: int) -> float:
    """The same work without Lightning: forward, cross-entropy, backward, optimizer step."""
    module, datamodule = build(cfg)
    optimizer = module.configure_optimizers()  # scheduler=none: the optimizer alone
    loader = DataLoader(datamodule.train, cfg.data.batch_size, shuffle=True, num_workers=cfg.data.num_workers)
    module.train()
    ends = []
    for inputs, targets in loader:
        loss = F.cross_entropy(module(inputs), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        ends.append(time.perf_counter())
        if len(ends) == steps:
            break
    return rate(ends, warmup, cfg.data.batch_size)


def loading_rate(cfg: DictConfig, batches: int) -> float:
    _, datamodule = build(cfg)
    loader = DataLoader(datamodule.train, cfg.data.batch_size, shuffle=True, num_workers=cfg.data.num_workers)
    start, n = time.perf_counter(), 0
    for i, (inputs, _) in enumerate(loader):
        n += len(inputs)
        if i + 1 == batches:
            break
    return n / (time.perf_counter() - start)


def throughput(args: argparse.Namespace) -> None:
    print(f"machine: {machine()}")
    cfg = make_cfg(args.root, f"task.freeze={args.freeze}", f"data.batch_size={args.batch_size}", "scheduler=none")
    steps = args.batches + args.warmup
    print(
        f"training at 224 px, task.freeze={args.freeze}, batch {args.batch_size}, {cfg.data.num_workers} loader workers, "
        f"augmentation on; {args.batches} timed batches after {args.warmup} warm-up, {args.rounds} interleaved rounds"
    )
    rates: dict[str, list[float]] = {"lightning": [], "plain": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            rates["lightning"].append(lightning_rate(cfg, steps, args.warmup, Path(tmp) / str(r)))
            rates["plain"].append(plain_rate(cfg, steps, args.warmup))
            print(
                f"  round {r + 1}: lightning {rates['lightning'][-1]:.2f} img/s, plain {rates['plain'][-1]:.2f} img/s; load {load()}"
            )
    ours, plain = (statistics.median(v) for v in (rates["lightning"], rates["plain"]))
    print(
        f"full fine-tuning throughput (median batch, median round): lightning {ours:.2f} img/s, plain PyTorch {plain:.2f} img/s: "
        f"{100 * ours / plain:.0f}% of plain (target >= 90%)"
    )
    loading = loading_rate(cfg, args.loading_batches)
    print(
        f"data loading alone (same DataLoader settings, no model): {loading:.1f} img/s, {loading / ours:.0f}x the training rate; load {load()}"
    )


# ---------------------------------------------------------------------------------------- checkpoints


def tiny_dataset(into: Path) -> Path:
    """Two classes, two 48 px images each in train/ and val/: one epoch is one batch (the checkpoints' size
    does not depend on the data)."""
    for split in ("train", "val"):
        for c, name in enumerate(("ants", "bees")):
            (into / split / name).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (48, 48), (60 * c + 40 * i, 120, 200 - 60 * c)).save(into / split / name / f"{i}.png")
    return into


def checkpoints(args: argparse.Namespace) -> None:
    """One epoch of the finetune task on random weights at 32 px crops, freeze=auto, SGD with momentum
    (the task's defaults otherwise), for each model and task.save_last; the checkpoint files' bytes."""
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        root = tiny_dataset(Path(tmp) / "data")
        for arch in args.models:
            for save_last in ("true", "false"):
                out = Path(tmp) / f"{arch}-{save_last}"
                overrides = ["task=finetune", f"model={arch}", "model.weights=null", f"data.root={root}"]
                overrides += ["trainer.accelerator=cpu", "data.resize_size=36", "data.crop_size=32"]
                with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
                    cfg = compose(
                        "config",
                        overrides=[*overrides, "data.batch_size=4", "data.num_workers=0", "task.epochs=1"]
                        + ["task.misclassified=0", f"task.save_last={save_last}"],
                    )
                main.run_task(cfg, out)
                files = {p.name: p.stat().st_size for p in sorted((out / "checkpoints").glob("*.ckpt"))}
                sizes = ", ".join(f"{name} {n / 1e6:.1f} MB" for name, n in files.items())
                print(f"{arch} task.save_last={save_last}: {sizes}; total {sum(files.values()) / 1e6:.1f} MB")


def main_() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("section", choices=["cache", "throughput", "checkpoints", "all"])
    parser.add_argument("--models", nargs="+", default=["resnet18", "vgg16"], help="checkpoints: model configs")
    parser.add_argument("--root", type=Path, default=HYMENOPTERA, help="ImageFolder dataset with train/ and val/")
    parser.add_argument(
        "--images", type=int, default=None, help="cache: use only this many train and val images each (default all)"
    )
    parser.add_argument("--epochs", type=int, default=3, help="cache: epochs of the cached run")
    parser.add_argument("--uncached-epochs", type=int, default=1, help="cache: epochs of the uncached reference run")
    parser.add_argument("--freeze", default="0", help="throughput: task.freeze (0: full fine-tuning)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--batches", type=int, default=4, help="throughput: timed batches per round")
    parser.add_argument("--warmup", type=int, default=1, help="throughput: untimed batches first (at least 1)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--loading-batches", type=int, default=8)
    add_warnings_switch(parser)
    args = parser.parse_args()
    quiet(args.warnings)
    args.warmup = max(1, args.warmup)  # the first batch includes starting the loader workers
    if args.section in ("cache", "all"):
        cache(args)
    if args.section in ("throughput", "all"):
        throughput(args)
    if args.section in ("checkpoints", "all"):
        checkpoints(args)
