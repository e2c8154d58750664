"""The export_web page's speed: ms per frame of the network in headless Chromium (onnxruntime-web, single-threaded
WASM, as a page on a plain static host runs) beside ONNX Runtime Python on the same model.onnx (1 thread, and its
default), for the light per-style network (fastnet=light) and the light AdaIN pipeline (task.encoder=light, style
encoded per frame as the page runs it), random weights (speed does not depend on them), and the folder's size.

    python scripts/benchmark_web.py [--size 512] [--style-size 256] [--repeats 5]

Needs Debian's chromium (/usr/bin/chromium), playwright (pip install -e ".[dev]") and the network once (the pinned
onnxruntime-web tarball, then cached).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir

from bench.common import add_warnings_switch, machine, quiet
from transferlab import CONFIGS, images
from transferlab import main as tasks
from transferlab.fast.arbitrary.networks import AdaINNet
from transferlab.fast.per_style.networks import build_network

NETWORKS = {
    "light per-style (fastnet=light)": ("network.", {"arch": "light", "width": 0.35, "blocks": 5}),
    "light AdaIN (encoder=light, width 0.125)": (
        "net.",
        {
            "arch": "adain",
            "weights": None,
            "normalization": "imagenet",
            "pooling": "max",
            "style_layers": {"relu1_1": 1.0, "relu2_1": 1.0, "relu3_1": 1.0, "relu4_1": 1.0},
            "encoder": "light",
            "width": 0.125,
        },
    ),
}


def checkpoint(path: Path, prefix: str, spec: dict) -> Path:
    """A random network saved as its training task saves it."""
    net = build_network(**spec) if prefix == "network." else AdaINNet(**spec, loss_net=False)
    state = {prefix + k: v for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"network": spec, "loss_weights": [1.0, 1.0, 1.0]}}, path)
    return path


def export(ckpt: Path, out: Path, size: int, style_size: int) -> Path:
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        overrides = ["task=export_web", f"ckpt_path={ckpt}", f"task.size={size}", f"task.style_size={style_size}"]
        cfg = compose("config", overrides=overrides)
    tasks.run_task(cfg, out)
    return out / "web"


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def serve(folder: Path) -> str:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}/?backend=wasm"


def browser_ms(browser, folder: Path, image: Path, repeats: int) -> tuple[float, float]:
    """Median ms of the network and of the whole frame (conversions, blend, drawing) in the page; and the
    seconds from opening the page to ready (the runtime's WASM compiled)."""
    page = browser.new_page()
    started = time.perf_counter()
    page.goto(serve(folder))
    page.wait_for_selector("body[data-state='ready']", state="attached", timeout=300_000)
    ready = time.perf_counter() - started
    page.set_input_files("#content-file", str(image))
    times = []
    for frame in range(1, repeats + 2):
        if frame > 1:  # a control moved: the page runs the network again
            page.fill("#strength", "1" if frame % 2 else "0.95")
        page.wait_for_selector(f"body[data-frames='{frame}']", state="attached", timeout=300_000)
        if frame > 1:  # the first frame warms up
            times.append(float(page.get_attribute("body", "data-model-ms")))
    page.close()
    return statistics.median(times), ready


def python_ms(model: Path, feeds: dict[str, np.ndarray], threads: int, repeats: int) -> float:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    session.run(None, feeds)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--style-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    add_warnings_switch(parser)
    args = parser.parse_args()
    quiet(args.warnings)
    from playwright.sync_api import sync_playwright

    print(machine())
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        root = Path(tmp)
        g = torch.Generator().manual_seed(0)
        image = images.save_image(torch.rand(3, args.size, args.size, generator=g), root / "content.png")
        browser = p.chromium.launch(executable_path="/usr/bin/chromium")
        for i, (name, (prefix, spec)) in enumerate(NETWORKS.items()):
            folder = export(checkpoint(root / f"{i}.ckpt", prefix, spec), root / str(i), args.size, args.style_size)
            page_ms, ready = browser_ms(browser, folder, image, args.repeats)
            feeds = {"image" if prefix == "network." else "content": images.load_image(image).unsqueeze(0).numpy()}
            if prefix == "net.":
                feeds |= {
                    "style": images.load_image(folder / "style.png").unsqueeze(0).numpy(),
                    "alpha": np.ones(1, np.float32),
                }
            one, default = (python_ms(folder / "model.onnx", feeds, t, args.repeats) for t in (1, 0))
            size_mb = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20
            print(
                f"{name}: {args.size} px frame: Chromium WASM 1 thread {page_ms:.0f} ms (page ready in {ready:.1f} s); "
                f"ONNX Runtime Python {one:.0f} ms (1 thread), {default:.0f} ms (default threads); "
                f"model.onnx {(folder / 'model.onnx').stat().st_size / 2**20:.2f} MB, folder {size_mb:.1f} MB"
            )
        browser.close()
