"""The transformer arbitrary-style network (task.arch=stytr, ``fast/arbitrary/stytr.py``) on this machine:

1. time per training step (StyTr²'s objective: content, style, both identity terms; Adam) at ``--train-sizes``
   (128 and 256 px crops, batch ``--batch``);
2. ms per image at ``--sizes`` (512 and 1024 px) in PyTorch eager (style tokens cached, as apply_adain runs) and
   in ONNX Runtime (the export_adain pipeline, the style encoded per call) at ``--opsets``: 18 (attention as
   MatMul-Softmax-MatMul, run only up to ``--full-attention-max`` px) and 23 (ONNX's Attention op), each with
   its peak resident memory in a fresh process;
3. peak resident memory (``ru_maxrss`` of a fresh process) of one PyTorch stylization at ``--peak-sizes`` (2048),
   beside what one full attention matrix of the content's self-attention would take;
4. the identity test: content = style, PSNR of the output to the input on held-out photos, before and after
   ``--identity-steps`` training steps on ``--photos`` crops (styles from ``--styles``).

Random weights everywhere (no download: the loss network's VGG19 is random too, so the identity figure shows
that the identity terms train the path, not how a trained StyTr² looks); the machine is shared (its load is
printed with each section).

    python scripts/benchmark_stytr.py [--width 0.25] [--train-sizes 128 256] [--sizes 512 1024] [--opsets 18 23]
                                      [--peak-sizes 2048] [--identity-steps 40] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from bench.common import SHARED, add_warnings_switch, load, machine, median_time, quiet, run_child
from transferlab import exporter
from transferlab.fast import data
from transferlab.fast.adain_export import SIGNATURE
from transferlab.fast.arbitrary.networks import Pipeline
from transferlab.fast.arbitrary.stytr import HEADS, StyTrNet

ENTRY = Path(__file__).resolve().parents[1] / "benchmark_stytr.py"
# The paper's loss in this project's normalization (configs/experiment/stytr_hymenoptera.yaml).
LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
WEIGHTS = {"content": 14.0, "style": 50.0, "identity": 70.0, "identity_features": 5.0}


def training_net(width: float) -> StyTrNet:
    return StyTrNet(width=width, style_layers=LAYERS, content_layers=("relu4_1", "relu5_1"))


def step_fn(net: StyTrNet, optimizer: torch.optim.Optimizer, content: torch.Tensor, style: torch.Tensor) -> float:
    terms = net.terms(content, style)[1]
    loss = sum(w * terms[k] for k, w in WEIGHTS.items())
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def training_steps(width: float, sizes: list[int], batch: int) -> None:
    print(f"\n== 1. training step, batch {batch}, width {width:g}; load {load()}")
    net = training_net(width)
    optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=5e-4)
    for size in sizes:
        x, y = torch.rand(batch, 3, size, size), torch.rand(batch, 3, size, size)
        seconds = median_time(lambda x=x, y=y: step_fn(net, optimizer, x, y), 3)
        print(f"  {size} px: {seconds:.2f} s a step ({batch * 3600 / seconds:.0f} crops an hour)")


def stylizer(width: float) -> StyTrNet:
    torch.manual_seed(0)
    return StyTrNet(width=width, loss_net=False).eval()


def export(width: float, opset: int, folder: Path) -> Path:
    path = folder / f"stytr{opset}.onnx"
    example = (torch.rand(2, 3, 64, 64), torch.rand(1, 3, 64, 80))  # batch 2: 1 would be specialized
    exporter.export_onnx(Pipeline(stylizer(width)).eval(), example, path, SIGNATURE, opset)
    return path


def speed(width: float, sizes: list[int], opsets: list[int], full_max: int, style: int, threads: int) -> None:
    print(f"\n== 2. one image, style {style} px, width {width:g}, {threads} thread(s); load {load()}")
    net = stylizer(width)
    with torch.inference_mode():
        code = net.code(torch.rand(1, 3, style, style))
        for size in sizes:
            content = torch.rand(1, 3, size, size)
            ms = 1000 * median_time(lambda c=content: net.stylize(c, [code]), 2)
            print(f"  PyTorch eager, {size} px, style tokens cached: {ms:.0f} ms")
    with tempfile.TemporaryDirectory() as tmp:
        for opset in opsets:
            path = export(width, opset, Path(tmp))
            for side in sizes:
                if opset < 23 and side > full_max:
                    print(f"  ONNX Runtime opset {opset}, {side} px: not run (its full attention matrices grow with")
                    print(f"    the square of the positions: 16x for 2x the side; --full-attention-max {full_max})")
                    continue
                r = run_child(ENTRY, "ort", path=str(path), size=side, style=style, threads=threads)
                print(f"  ONNX Runtime opset {opset}, {side} px: {r['ms']:.0f} ms, {grown(r)}")


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ort_child(path: str, size: int, style: int, threads: int) -> dict[str, Any]:
    run = exporter.onnx_runner(Path(path), threads)
    content, style_image = torch.rand(1, 3, size, size), torch.rand(1, 3, style, style)
    before = peak_mib()
    ms = 1000 * median_time(lambda: run(content, style_image), 2)
    return {"ms": ms, "peak_mib": peak_mib(), "before_mib": before}


def peak_child(width: float, size: int, style: int, threads: int) -> dict[str, Any]:
    torch.set_num_threads(threads)
    net = stylizer(width)
    content = torch.rand(1, 3, size, size)
    before = peak_mib()
    with torch.inference_mode():
        code = net.code(torch.rand(1, 3, style, style))
        start = time.perf_counter()
        net.stylize(content, [code])
    return {"s": time.perf_counter() - start, "peak_mib": peak_mib(), "before_mib": before}


def grown(r: dict[str, Any]) -> str:
    return f"peak RSS {r['peak_mib']:.0f} MiB ({r['peak_mib'] - r['before_mib']:+.0f} MiB over the loaded process)"


def peaks(width: float, sizes: list[int], style: int, threads: int) -> None:
    print(f"\n== 3. peak memory of one PyTorch stylization (fresh process), style {style} px; load {load()}")
    heads = math.gcd(StyTrNet(width=width, loss_net=False).embed.out_channels, HEADS)
    for size in sizes:
        r = run_child(ENTRY, "peak", width=width, size=size, style=style, threads=threads)
        full = heads * (size // 8) ** 4 * 4 / 2**30
        print(
            f"  {size} px: {grown(r)}, in {r['s']:.1f} s; one full softmax(q @ k) of the content's "
            f"self-attention would hold {full:.1f} GiB"
        )


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / torch.mean((a - b) ** 2)))


def identity(width: float, photos: Path, styles: Path, steps: int, crop: int, batch: int) -> None:
    print(f"\n== 4. identity (content = style), {steps} steps at {crop} px, batch {batch}; load {load()}")
    torch.manual_seed(0)
    files = data.list_images(photos)
    train, held = files[:-4], files[-4:]
    n = steps * batch
    contents = data.ContentCrops(train, crop, n, 0, crop * 2, 0.5)
    style_crops = data.ContentCrops(data.list_images(styles), crop, n, 1, crop * 2, 0.5)
    held_out = data.validation_batch(held, crop)
    net = training_net(width)
    optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=5e-4)

    def score() -> float:
        net.eval()
        with torch.inference_mode():
            out = torch.cat([net.stylize(x[None], [net.code(x[None])]) for x in held_out])
        net.train()
        return psnr(out, held_out)

    before = score()
    start = time.perf_counter()
    for i in range(steps):
        index = range(i * batch, (i + 1) * batch)
        step_fn(net, optimizer, torch.stack([contents[j] for j in index]), torch.stack([style_crops[j] for j in index]))
    seconds = time.perf_counter() - start
    print(f"  PSNR of the output to the input: {before:.1f} dB untrained, {score():.1f} dB after {steps} steps")
    print(f"  ({seconds:.0f} s of training, {len(held)} held-out photos)")


CHILDREN = {"ort": ort_child, "peak": peak_child}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        print(json.dumps(CHILDREN[sys.argv[2]](**json.loads(sys.argv[3]))))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--train-sizes", type=int, nargs="*", default=[128, 256])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="*", default=[512, 1024])
    parser.add_argument("--opsets", type=int, nargs="*", default=[18, 23])
    # Opset 18's attention is MatMul-Softmax-MatMul: 768 px took 5.5 GiB in ONNX Runtime, 1024 px would take ~17.
    parser.add_argument("--full-attention-max", type=int, default=768)
    parser.add_argument("--style-size", type=int, default=512)
    parser.add_argument("--peak-sizes", type=int, nargs="*", default=[2048])
    parser.add_argument("--identity-steps", type=int, default=40)
    parser.add_argument("--photos", default=str(SHARED / "hymenoptera" / "train"))
    parser.add_argument("--styles", default=str(SHARED / "styles"))
    # One thread by default: on a shared 2-core machine two threads wait on each other at every op.
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip", nargs="*", default=[], choices=["train", "speed", "peak", "identity"])
    add_warnings_switch(parser)
    args = parser.parse_args()
    quiet(args.warnings)
    torch.set_num_threads(args.threads)
    print(machine())
    print("Random weights everywhere (no downloads); a shared machine: see each section's load.")
    if "train" not in args.skip:
        training_steps(args.width, args.train_sizes, args.batch)
    if "speed" not in args.skip:
        speed(args.width, args.sizes, args.opsets, args.full_attention_max, args.style_size, args.threads)
    if "peak" not in args.skip:
        peaks(args.width, args.peak_sizes, args.style_size, args.threads)
    if "identity" not in args.skip:
        identity(args.width, Path(args.photos), Path(args.styles), args.identity_steps, 128, args.batch)
