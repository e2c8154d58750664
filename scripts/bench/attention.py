"""Attention and the arbitrary-style architectures on this machine (issue 26), random weights everywhere.

    python scripts/benchmark_attention.py memory  [--sizes 1024 2048] [--channels 512]
    python scripts/benchmark_attention.py compare [--steps 20] [--crop 128] [--size 512]
    python scripts/benchmark_attention.py all

``memory``: one SANet level at relu4_1 of a square image of each side (content and style alike: (side / 8)^2
positions each, ``--channels`` wide) through the project's attention (``attention.attend``: PyTorch's fused
``scaled_dot_product_attention``) and through the full matrix it replaced (``softmax(q kᵀ) v``), each case in a
fresh process: the peak resident memory it added (VmHWM, reset after the inputs are allocated, minus VmRSS)
and its seconds. A full-matrix case whose matrix and softmax (2 x positions^2 x 4 bytes) would not fit in half
of the memory available now is not run (it would push the machine into the OOM killer): its need is printed.

``compare``: AdaIN, SANet and AdaAttN after equal training: each network is built from the same seed (the same
random VGG19), trained with its paper's objective (``layers=<arch> loss=<arch>``, the train_adain module's
``terms``) for ``--steps`` Adam steps on the same crops of the same photos and styles, then scored on held-out
photos x the styles with that objective (each arch's own: the figures compare how far each got on its own
loss, not one loss across archs), with seconds per training step and ms per ``--size`` px image (eager, style
code cached); and the identity test: each network stylizes each held-out photo with itself as the style,
PSNR of the output to the photo (untrained decoders: the mechanics, not a quality figure).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

from bench.common import SHARED, add_warnings_switch, machine, median_time, quiet, reset_peak, rss_mib
from transferlab.fast.arbitrary import attention

ENTRY = Path(__file__).resolve().parents[1] / "benchmark_attention.py"
ARCHS = ("adain", "sanet", "adaattn", "stytr")


def full_matrix(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The attention this project computed before issue 26: the whole positions x positions matrix."""
    n, c, h, w = q.shape
    weights = torch.softmax(q.flatten(2).transpose(1, 2) @ k.flatten(2), dim=-1)
    return (weights @ v.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(n, -1, h, w)


def attend_case(size: int, channels: int, impl: str) -> dict[str, Any]:
    """One case, in this (fresh) process: MiB of peak resident memory added and seconds."""
    side = size // 8
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, channels, side, side, generator=g) for _ in range(3))
    reset_peak()  # importing torch peaked above what the inputs hold: measure from here
    before = rss_mib()
    start = time.perf_counter()
    with torch.inference_mode():
        (attention.attend if impl == "fused" else full_matrix)(q, k, v)
    seconds = time.perf_counter() - start
    return {"mib": rss_mib("VmHWM") - before, "seconds": seconds}


def available_mib() -> float:
    text = Path("/proc/meminfo").read_text()
    return int(next(line.split()[1] for line in text.splitlines() if line.startswith("MemAvailable"))) / 1024


def memory(args: argparse.Namespace) -> None:
    from bench.common import run_child

    print(
        f"one SANet level at relu4_1, {args.channels} channels, style as large as the content; peak resident MiB "
        "added and seconds, each case in a fresh process; random inputs"
    )
    print(f"{'size':>6s} {'positions':>10s} {'impl':>12s} {'peak MiB':>10s} {'seconds':>8s}")
    for size in args.sizes:
        positions = (size // 8) ** 2
        for impl in ("fused", "full matrix"):
            need = 2 * positions**2 * 4 / 2**20  # the matrix and its softmax
            if impl != "fused" and need > available_mib() / 2:
                print(f"{size:6d} {positions:10,d} {impl:>12s} {'not run':>10s}    (needs >= {need:,.0f} MiB)")
                continue
            r = run_child(ENTRY, "attend", size=size, channels=args.channels, impl=impl)
            print(f"{size:6d} {positions:10,d} {impl:>12s} {r['mib']:10,.0f} {r['seconds']:8.2f}")


def _batches(args: argparse.Namespace) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Training (content, style) crops for ``--steps`` steps, held-out photos and the styles, all fixed by the seed."""
    from transferlab.fast import data

    photos = data.list_images(Path(args.photos))
    styles = data.list_images(Path(args.styles))
    held, train = photos[: args.held_out], photos[args.held_out :]
    n = args.steps * args.batch
    crops = data.ContentCrops(train, args.crop, n, 0, args.crop * 2, 0.5)
    style_crops = data.ContentCrops(styles, args.crop, n, 1, args.crop * 2, 0.5)
    contents = [torch.stack([crops[i * args.batch + j] for j in range(args.batch)]) for i in range(args.steps)]
    style_batches = [
        torch.stack([style_crops[i * args.batch + j] for j in range(args.batch)]) for i in range(args.steps)
    ]
    return contents, style_batches, data.validation_batch(held, args.crop), data.validation_batch(styles, args.crop)


def _module(arch: str) -> Any:
    """The train_adain module for ``arch`` with its paper's layers and loss weights (configs/layers, configs/loss)."""
    from omegaconf import OmegaConf

    from bench.common import ROOT
    from transferlab import checks
    from transferlab.fast.arbitrary.module import LOSS_TERMS, AdaINModule

    layers = OmegaConf.load(ROOT / "configs" / "layers" / f"{arch}.yaml")
    loss = OmegaConf.load(ROOT / "configs" / "loss" / f"{arch}.yaml")
    network = {"arch": arch, "weights": None, "normalization": "auto", "pooling": "max"}
    network["style_layers"] = checks.layer_weights(layers.style, "layers.style")
    if arch != "adain":
        network["content_layers"] = checks.layer_weights(layers.content, "layers.content")
    if arch == "stytr":
        network |= {"encoder": "vgg19", "width": 0.25}  # experiment=stytr_hymenoptera's width
    weights = tuple(float(loss[f"{t}_weight"]) for t in LOSS_TERMS)
    torch.manual_seed(0)  # the same random VGG19 for every arch
    return AdaINModule(network, weights, 1e-4, (0.9, 0.999), 0.0)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(1 / max(float(torch.mean((a - b) ** 2)), 1e-12))


def compare(args: argparse.Namespace) -> None:
    contents, styles, held, style_set = _batches(args)
    print(
        f"equal training: {args.steps} Adam steps (lr 1e-4) x batch {args.batch} of {args.crop} px crops from "
        f"{args.photos} x {args.styles}; held-out: {len(held)} photos x {len(style_set)} styles at {args.crop} px, "
        f"each arch's own objective (layers=<arch> loss=<arch>); random VGG19 (model.weights=null); {machine()}"
    )
    print(
        f"{'arch':8s} {'params':>11s} {'held-out loss':>14s} {'s/step':>7s} {f'ms/{args.size}px':>10s} {'identity PSNR':>14s}"
    )
    image, style = torch.rand(1, 3, args.size, args.size), torch.rand(1, 3, args.size, args.size)
    # The first network timed paid for the process's warm-up (the Winograd choice per shape, allocator growth):
    # one step and one image through the deepest arch first, untimed, so that the order does not matter.
    warm = _module("adaattn")
    warm.terms(contents[0], styles[0])[1]["loss"].backward()
    with torch.inference_mode():
        warm.net.stylize(image, [warm.net.code(style)])
    del warm
    for arch in args.archs:
        module = _module(arch)
        opt = module.configure_optimizers()
        start = 0.0
        for i, (c, s) in enumerate(zip(contents, styles)):
            start = time.perf_counter() if i == 1 else start  # the first step warms up (kernel choices, buffers)
            loss = module.terms(c, s)[1]["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
        per_step = (time.perf_counter() - start) / max(1, len(contents) - 1)
        net = module.net.eval()
        with torch.inference_mode():
            held_out = sum(float(module.terms(held, st.expand_as(held))[1]["loss"]) for st in style_set) / len(
                style_set
            )
            same = net.stylize(held, [net.code(held[:1])])  # the first photo as its own style
            identity = psnr(same[:1], held[:1])
            code = net.code(style)
            ms = 1000 * median_time(lambda n=net, c=code: n.stylize(image, [c]), args.repeats)
        params = sum(p.numel() for p in net.parameters() if p.requires_grad)
        print(f"{arch:8s} {params:11,d} {held_out:14.4g} {per_step:7.2f} {ms:10.0f} {identity:14.2f}")
    print(
        "(params: trained ones; s/step: forward, backward and Adam of the training objective, the first step "
        "excluded; ms: eager, style code "
        f"cached, median of {args.repeats}; identity PSNR: a held-out photo stylized with itself, dB)"
    )


def child(section: str, payload: str) -> None:
    if section != "attend":
        raise SystemExit(f"unknown child section {section}")
    print(json.dumps(attend_case(**json.loads(payload))))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        child(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", choices=["memory", "compare", "all"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--channels", type=int, default=512)
    parser.add_argument("--archs", nargs="+", choices=ARCHS, default=list(ARCHS), help="compare: in this order")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--held-out", type=int, default=4)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--photos", default=str(SHARED / "hymenoptera" / "train"))
    parser.add_argument("--styles", default=str(SHARED / "styles"))
    add_warnings_switch(parser)
    args = parser.parse_args()
    quiet(args.warnings)
    print(f"machine: {machine()}")
    if args.study in ("memory", "all"):
        memory(args)
    if args.study in ("compare", "all"):
        compare(args)
