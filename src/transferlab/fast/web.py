"""The export_web task: a train_fast or train_adain checkpoint as a self-contained web page that stylizes in the
browser with onnxruntime-web (WebGPU where the browser has it, single-threaded WASM otherwise), an uploaded image
or the webcam, with the network's controls (strength; alpha for an arbitrary-style network) and its frame rate.

``<run dir>/web/`` holds ``index.html`` and ``app.js`` (``assets/web``), ``model.json`` (what the page needs to
know of the network), ``model.onnx`` (exported by the one exporter and checked against PyTorch), ``style.png``
(an arbitrary-style network's first style) and ``ort/``: two builds (WebGPU, and WASM only) of the pinned
onnxruntime-web release the page runs on. That release comes from npm's tarball through the project's fetcher
(pinned by SHA-256, cached, ``$TRANSFERLAB_MIRROR`` honoured), not from a CDN at run time: the page then works
offline and on any static host, and every file it runs is one we verified (a CDN's Subresource Integrity would
cover the script tag only, not the WASM binaries the runtime loads itself). The folder is staged beside its place
and renamed into it whole.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from transferlab import checks, exporter, fetch, groups, images
from transferlab.errors import ConfigError
from transferlab.fast.arbitrary import networks as arbitrary
from transferlab.fast.per_style import networks as per_style
from transferlab.fast.settings import checkpoint_file
from transferlab.fast.stylizer import read_network, style_image
from transferlab.files import not_a_file, write_json
from transferlab.result import TaskResult, settings_hparams

ORT_VERSION = "1.31.1"
ORT_SHA256 = "bdccdb9fbb9ab537247c0c734e9b1d2b1b338b4f2a09faa58f0dc1cfa27c312c"
ORT_URL = f"https://registry.npmjs.org/onnxruntime-web/-/onnxruntime-web-{ORT_VERSION}.tgz"
# Two builds, each an ES-module bundle (the Emscripten glue inside) and its WASM binary: the WebGPU build (29 MB),
# loaded where the browser has a WebGPU adapter, and the WASM-only build (15 MB), loaded otherwise: half the
# download, ready twice as fast and faster per frame than the WebGPU build's own WASM backend (measured: 2.7 s
# against 6.1 s to ready, 350-410 against 500-800 ms per 512 px light-AdaIN frame in headless Chromium).
ORT_FILES = (
    "ort.webgpu.bundle.min.mjs",
    "ort-wasm-simd-threaded.asyncify.wasm",
    "ort.wasm.bundle.min.mjs",
    "ort-wasm-simd-threaded.wasm",
)
ORT_MAX_FILE = 64 * 2**20  # a member larger than this is no file of that release
PAGE = Path(__file__).resolve().parents[1] / "assets" / "web"
PAGE_FILES = ("index.html", "app.js")
FOLDER = "web"
FAMILIES = "a train_fast or train_adain checkpoint (.ckpt)"
DEFAULT_STYLE = "sample:starry_night"
# The parity check of the exported model (other sizes than the traced example's: dynamic dims exercised).
EXAMPLE_SIDE, CHECK_SIZE, STYLE_CHECK_SIZE, CHECK_ALPHA = 64, (67, 45), (50, 61), 0.6
TOLERANCE = 1e-4


@dataclass(frozen=True)
class WebSettings:
    checkpoint: Path
    size: int  # long side the page resizes an upload or webcam frame to
    style: str | None  # an arbitrary-style network's first style (None: DEFAULT_STYLE)
    style_size: int
    runtime: str | None  # a local copy of the pinned onnxruntime-web tarball (None: fetched)
    seed: int

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> WebSettings:
        task = cfg.task
        problems = checks.Problems()  # every bad value at once
        path = problems.run(checkpoint_file, cfg, (".ckpt",), FAMILIES)
        size = problems.run(checks.at_least, task.size, per_style.MIN_SIZE, "task.size")
        style_size = problems.run(checks.at_least, task.style_size, arbitrary.MIN_SIZE, "task.style_size")
        if task.style is not None:
            problems.run(images.check_source, task.style, "task.style")
        runtime = None if task.onnxruntime_web is None else str(task.onnxruntime_web)
        if runtime is not None and not fetch.is_url(runtime):
            problems.run(_local_runtime, runtime)
        problems.run(checks.requires, "task=export_web (ONNX export)", exporter.ONNX_MODULES)
        problems.raise_all()
        for key, value in (("task.size", size), ("task.style_size", style_size)):
            exporter.side(value, key)
        style = None if task.style is None else str(task.style)
        return cls(path, size, style, style_size, runtime, groups.seed(cfg))


def _local_runtime(source: str) -> None:
    path = Path(source).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"task.onnxruntime_web={source} {not_a_file(path)}; give onnxruntime-web-{ORT_VERSION}.tgz from npm, "
            "or null to fetch it"
        )


class AlphaPipeline(arbitrary.Pipeline):
    """The AdaIN pipeline with alpha as an input (``[1]``, in [0, 1]) rather than baked in, so that the page's
    slider moves it: alpha enters as a constant strength map, which blends the features exactly as alpha does."""

    def forward(self, content: Tensor, style: Tensor, alpha: Tensor) -> Tensor:  # type: ignore[override]
        return self.net.stylize(content, [self.net.code(style)], 1.0, strength=alpha.reshape(1, 1, 1, 1))


def traced(family: str, network: nn.Module, seed: int) -> tuple[nn.Module, exporter.Signature, tuple, tuple]:
    """The module to export for ``family``, its signature, its traced example (a batch of 2: the batch dim stays
    dynamic) and its check inputs (the page's batch of 1, other sizes)."""
    g = torch.Generator().manual_seed(seed)
    side = EXAMPLE_SIDE
    if family == "per_style":
        signature = exporter.Signature(("image",), "stylized", (exporter.image_dims(per_style.MIN_SIZE),))
        example, check = torch.rand(2, 3, side, side, generator=g), torch.rand(1, 3, *CHECK_SIZE, generator=g)
        return network, signature, (example,), (check,)
    signature = exporter.Signature(
        ("content", "style", "alpha"),
        "stylized",
        (
            exporter.image_dims(arbitrary.MIN_SIZE),
            exporter.image_dims(arbitrary.MIN_SIZE, "style_", batch=False),
            {},
        ),
    )
    example = (torch.rand(2, 3, side, side, generator=g), torch.rand(1, 3, side, side + 16, generator=g))
    check = (torch.rand(1, 3, *CHECK_SIZE, generator=g), torch.rand(1, 3, *STYLE_CHECK_SIZE, generator=g))
    return AlphaPipeline(network), signature, (*example, torch.ones(1)), (*check, torch.tensor([CHECK_ALPHA]))


def runtime_tarball(source: str | None) -> Path:
    """The pinned onnxruntime-web tarball: ``source`` (a local copy or pinned URL), or fetched from npm into the
    cache once; a ConfigError when it is another file than the pinned release."""
    path = fetch.resolve(source or f"{ORT_URL}#sha256={ORT_SHA256}", "task.onnxruntime_web")
    if fetch.sha256_of(path) != ORT_SHA256:
        raise ConfigError(
            f"task.onnxruntime_web={source} is not onnxruntime-web {ORT_VERSION} (its sha256 is not {ORT_SHA256}); "
            f"give that release's tarball ({ORT_URL}), or null to fetch it"
        )
    return path


def copy_runtime(tarball: Path, folder: Path) -> None:
    """The page's onnxruntime-web files read out of ``tarball`` into ``folder`` (no member is extracted by
    its own name: only the files named here, each a regular file of bounded size)."""
    folder.mkdir()
    with tarfile.open(tarball, "r:gz") as archive:
        for name in ORT_FILES:
            member = archive.getmember(f"package/dist/{name}")
            if not member.isfile() or member.size > ORT_MAX_FILE:
                raise ConfigError(f"task.onnxruntime_web={tarball}: package/dist/{name} is not a file of that release")
            with archive.extractfile(member) as src, open(folder / name, "wb") as dst:  # type: ignore[union-attr]
                shutil.copyfileobj(src, dst)
    (folder / "NOTICE.txt").write_text(
        f"onnxruntime-web {ORT_VERSION} (MIT licence, Microsoft Corporation): {', '.join(ORT_FILES)} from\n"
        f"{ORT_URL}\n(sha256 {ORT_SHA256}).\n"
    )


def write_page(staging: Path, s: WebSettings, family: str, style: Tensor | None) -> None:
    """The page, its settings and (arbitrary-style) its first style into ``staging``."""
    for name in PAGE_FILES:
        shutil.copyfile(PAGE / name, staging / name)
    page = {
        "family": family,
        "inputs": ["image"] if family == "per_style" else ["content", "style", "alpha"],
        "min_side": per_style.MIN_SIZE if family == "per_style" else arbitrary.MIN_SIZE,
        "size": s.size,
        "style_size": s.style_size,
        "style": None if style is None else "style.png",
        "onnxruntime_web": ORT_VERSION,
    }
    (staging / "model.json").write_text(json.dumps(page, indent=2))
    if style is not None:
        images.save_image(style[0], staging / "style.png")


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def run(cfg: DictConfig, output_dir: Path) -> TaskResult:
    s = WebSettings.from_cfg(cfg)
    family, network, spec = read_network(s.checkpoint, "ckpt_path")
    if family == "per_style" and s.style is not None:
        raise ConfigError(
            f"ckpt_path={s.checkpoint} is a per-style network (its style is trained in): drop task.style, or give "
            "a train_adain checkpoint"
        )
    style = None if family == "per_style" else style_image(s.style or DEFAULT_STYLE, "task.style", s.style_size)
    tarball = runtime_tarball(s.runtime)  # before the export: a missing runtime fails fast
    module, signature, example, check = traced(family, network, s.seed)
    target = output_dir / FOLDER
    output_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=output_dir, prefix=f".{FOLDER}.", suffix=".partial"))
    try:
        options = exporter.ExportOptions(("onnx",), exporter.OPSETS[0], TOLERANCE, TOLERANCE)
        report: dict[str, Any] = {"checkpoint": str(s.checkpoint.resolve()), "network": spec, "family": family}
        # export.json names local paths: it stays in the run directory, beside the folder (and there on a failure).
        report = exporter.export(module, example, check, signature, options, output_dir, report)
        os.replace(output_dir / exporter.FILES["onnx"], staging / exporter.FILES["onnx"])
        write_page(staging, s, family, style)
        copy_runtime(tarball, staging / "ort")
        os.chmod(staging, 0o755)  # mkdtemp's 0700 would hide the folder from a web server's user
        os.rename(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    report = {**report, "folder": FOLDER, "folder_bytes": folder_bytes(target), "onnxruntime_web": ORT_VERSION}
    write_json(report, output_dir / "export.json")
    mb = report["folder_bytes"] / 2**20
    return TaskResult(
        metrics=report,
        objective=None,
        caption=(f"web page ({family}), {mb:.1f} MB", f"onnx max |diff| {report['onnx']['max_abs_diff']:.2g}"),
        hparams=settings_hparams(s),
    )
