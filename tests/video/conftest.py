"""Synthetic videos with known motion, written with PyAV."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch

from tests.helpers import lively, make_image, tmpfs
from transferlab import images
from transferlab.fast.arbitrary.networks import AdaINNet
from transferlab.fast.per_style.networks import build_network


def textured(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A smooth random texture (blurred noise): trackable by flow at every pixel."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(1, 3, h // 4, w // 4, generator=g)
    return torch.nn.functional.interpolate(noise, size=(h, w), mode="bicubic", align_corners=False)[0].clamp(0, 1)


def pan_frames(n: int = 4, h: int = 48, w: int = 64, shift: int = 2) -> list[torch.Tensor]:
    """A texture panned right by ``shift`` px per frame: frame t at x shows the texture at x - t*shift."""
    big = textured(h, w + shift * n + 8)
    return [big[:, :, (n - t) * shift + 4 : (n - t) * shift + 4 + w] for t in range(n)]


def square_frames(n: int = 4, h: int = 48, w: int = 64, shift: int = 3, side: int = 20) -> list[torch.Tensor]:
    """A textured square moving right by ``shift`` px per frame over a static textured background."""
    background, square = textured(h, w, seed=1), textured(side, side, seed=2) * 0.5 + 0.5
    frames = []
    for t in range(n):
        frame = background.clone()
        frame[:, 14 : 14 + side, 10 + t * shift : 10 + t * shift + side] = square
        frames.append(frame)
    return frames


def write_clip(
    path: Path, frames: list[torch.Tensor], fps: int = 10, audio: bool = False, rotation: int | None = None
) -> Path:
    """An H.264 clip of ``frames``; ``rotation``: the display matrix's counterclockwise degrees (a phone
    held upright records landscape frames with -90)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames[0].shape[-2:]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "10"}
        if rotation is not None:
            stream.set_display_rotation(rotation)
        if audio:
            sound = out.add_stream("aac", rate=16000)
            sound.layout = "mono"
        for f in frames:
            array = (f * 255).round().byte().permute(1, 2, 0).contiguous().numpy()
            out.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        out.mux(stream.encode())
        if audio:
            seconds = len(frames) / fps
            samples = np.sin(np.linspace(0, 440 * 2 * np.pi * seconds, int(16000 * seconds))).astype(np.float32)
            for start in range(0, len(samples), 1024):
                chunk = av.AudioFrame.from_ndarray(samples[None, start : start + 1024], format="fltp", layout="mono")
                chunk.sample_rate = 16000
                chunk.pts = start
                out.mux(sound.encode(chunk))
            out.mux(sound.encode())
    return path


def variable_size_clip(path: Path, *parts: list[torch.Tensor]) -> Path:
    """One H.264 stream whose frame size changes between ``parts``: MPEG-TS segments back to back, as a
    broadcast or a screen recording that changes resolution is."""
    data = b""
    for k, frames in enumerate(parts):
        segment = path.with_name(f"{path.stem}.part{k}.ts")
        with av.open(str(segment), "w", format="mpegts") as out:
            stream = out.add_stream("libx264", rate=10)
            stream.height, stream.width = frames[0].shape[-2:]
            stream.pix_fmt = "yuv420p"
            for f in frames:
                array = (f * 255).round().byte().permute(1, 2, 0).contiguous().numpy()
                out.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
            out.mux(stream.encode())
        data += segment.read_bytes()
        segment.unlink()
    path.write_bytes(data)
    return path


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 600 KB tmpfs: a real full disk (root only; skipped where mounting is not allowed)."""
    with tmpfs(tmp_path / "disk", "600k") as mount:
        yield mount


@pytest.fixture
def tiny_network(tmp_path: Path) -> Path:
    """A randomly initialised light network saved as train_fast saves it (the mechanics, not the look)."""
    torch.manual_seed(0)
    spec = {"arch": "light", "width": 0.25, "blocks": 1}
    state = {f"network.{k}": v for k, v in build_network(**spec).state_dict().items()}
    path = tmp_path / "tiny.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": {"network": spec}}, path)
    return path


# A light AdaIN network as small as it builds: random weights, the mechanics of arbitrary style, not the look.
ADAIN = {
    "arch": "adain",
    "weights": None,
    "normalization": "imagenet",
    "pooling": "max",
    "style_layers": {"relu1_1": 1.0},
    "encoder": "light",
    "width": 0.125,
}


@pytest.fixture
def adain_network(tmp_path: Path) -> Path:
    """A randomly initialised light AdaIN network saved as train_adain saves it (without its teacher), with
    weights that keep the activations' scale (``lively``; by default its output is flat whatever the style),
    the last layer 10x lively's so that two styles' outputs differ by about 0.02 a value."""
    torch.manual_seed(0)
    weights = lively(AdaINNet(**ADAIN, loss_net=False).state_dict())
    last = [k for k, v in weights.items() if k.endswith(".weight") and v.dim() == 4][-1]
    weights[last] = weights[last] * 10
    state = {f"net.{k}": v for k, v in weights.items()}
    path = tmp_path / "adain.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": {"network": ADAIN}}, path)
    return path


def frame_folder(path: Path, frames: list[torch.Tensor]) -> Path:
    """``frames`` as lossless PNGs in a folder (an input the tests can compare outputs with exactly)."""
    path.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        images.save_image(frame, path / f"frame_{i}.png")
    return path


@pytest.fixture
def pan_clip(tmp_path: Path) -> Path:
    return write_clip(tmp_path / "pan.mp4", pan_frames())


@pytest.fixture
def style_image(tmp_path: Path) -> Path:
    return make_image(tmp_path / "style.png", (40, 40), seed=3)


@pytest.fixture(autouse=True)
def one_thread():
    """The video tests' images are tiny (48x64): a second intra-op thread gains little there, and on a
    CPU shared with other processes it made them up to 10x slower (threads waiting on each other)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
