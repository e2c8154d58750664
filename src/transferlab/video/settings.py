"""The video task's door: every check and derived value of ``task=video``, once."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from transferlab import backbone, checks, fetch, groups, images, memory
from transferlab.backbone import ModelSettings
from transferlab.errors import ConfigError
from transferlab.fast.per_style.networks import MIN_SIZE as NETWORK_MIN_SIDE
from transferlab.fast.settings import NETWORK_FILE, model_file
from transferlab.groups import LossWeights, OptimizerSettings
from transferlab.runtime import RuntimeSettings
from transferlab.style import estimate
from transferlab.style.settings import LOSS_TERMS, OPTIMIZERS, MemoryModel, output_hw
from transferlab.video import io
from transferlab.video.flow import METHODS as FLOW_METHODS

METHODS = ("optimize", "fast")
# A frame folder's rate: an mp4 holds 1/100 (a slide every 100 s) to 1000 frames per second.
FPS_RANGE = (0.01, 1000.0)
RESUME_FILE = "progress.json"


@dataclass(frozen=True)
class VideoSettings:
    input: Path
    style: Path | None  # method=optimize, or method=fast with an arbitrary-style network
    method: str
    size: int | None  # long side of the processed frames; None: the input's size
    steps: int
    first_steps: int
    temporal_weight: float
    long_term: tuple[int, ...]  # earlier frames held to, by distance (1: the previous frame)
    flow: str
    blend: float
    baseline: bool
    fps: float  # frame rate of a frame folder
    max_frames: int | None
    network: Path | None  # method=fast: any stylizer file (fast/stylizer.py)
    device: str  # cpu | cuda | mps (an ONNX network runs on the CPU)
    model: ModelSettings  # the shared groups (groups.py), as stylize takes them
    content_layers: dict[str, float]
    style_layers: dict[str, float]
    loss: LossWeights
    optimizer: OptimizerSettings
    runtime: RuntimeSettings
    seed: int
    info: io.VideoInfo  # the input's rate, displayed size, frame count and audio
    hw: tuple[int, int]  # (H, W) of the processed frames: every frame is resized to it
    resume: Path | None  # ckpt_path: the progress.json of the run directory this run continues

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> VideoSettings:
        task = cfg.task
        long_term = checked_task(task)
        optimizer = groups.optimizer(cfg, OPTIMIZERS)
        model = groups.model(cfg)
        layers = groups.layers(cfg, model.arch)
        device = groups.trainer(cfg, optimizer.name if task.method == "optimize" else None).accelerator
        problems = checks.Problems()  # the video, the style or network and the weights at once
        info = problems.run(io.probe, Path(str(task.input)), float(task.fps))
        sources = problems.run(task_sources, task)
        if task.method == "optimize":
            problems.run(backbone.check_weights, model.arch, model.weights, bool(problems.errors))
        problems.raise_all()
        style, network = sources
        if network is not None and network.suffix.lower() == ".onnx":
            device = "cpu"
        hw = (info.height, info.width) if task.size is None else output_hw((info.width, info.height), task.size)
        settings = cls(
            input=Path(str(task.input)),
            style=style,
            method=task.method,
            size=task.size,
            steps=task.steps,
            first_steps=task.first_steps,
            temporal_weight=float(task.temporal_weight),
            long_term=long_term,
            flow=task.flow,
            blend=float(task.blend),
            baseline=bool(task.baseline),
            fps=float(task.fps),
            max_frames=task.max_frames,
            network=network,
            device=device,
            model=model,
            content_layers=layers.content,
            style_layers=layers.style,
            loss=groups.loss(cfg, LOSS_TERMS),
            optimizer=optimizer,
            runtime=groups.runtime(cfg),
            seed=int(cfg.seed),
            info=info,
            hw=hw,
            resume=resume_file(cfg.get("ckpt_path")),
        )
        check_sides(settings)
        if checks.choice(task.memory_check, [True, False], "task.memory_check"):
            check_memory(settings)
        if settings.resume is not None:
            check_resume(settings.resume, settings.fingerprint())
        return settings

    def fingerprint(self) -> dict[str, Any]:
        """What the finished frames belong to: a resumed run must match it (input file by size and mtime)."""
        stat = self.input.stat()
        skip = ("max_frames", "device", "runtime", "resume", "info")  # how this process computes, not what
        values = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items() if k not in skip}
        saved = {"settings": repr(sorted(values.items())), "input_size": stat.st_size, "input_mtime": stat.st_mtime}
        return saved | ({"network": fetch.sha256_of(self.network)} if self.network is not None else {})


def checked_task(task: DictConfig) -> tuple[int, ...]:
    """Check ``task``'s plain values; return its long-term distances."""
    checks.choice(task.method, METHODS, "task.method")
    checks.choice(task.flow, FLOW_METHODS, "task.flow")
    if task.size is not None:
        checks.at_least(task.size, 32, "task.size")
    checks.at_least(task.steps, 1, "task.steps")
    checks.at_least(task.first_steps, 1, "task.first_steps")
    checks.non_negative(task.temporal_weight, "task.temporal_weight")
    if not 0 <= checks.number(task.blend, "task.blend") < 1:
        raise ConfigError(f"task.blend={task.blend} is invalid; it must be in [0, 1) (0: no smoothing)")
    long_term = long_term_distances(task.long_term)
    if not FPS_RANGE[0] <= checks.positive(task.fps, "task.fps") <= FPS_RANGE[1]:
        raise ConfigError(f"task.fps={task.fps} is invalid; a frame folder's rate must be in {list(FPS_RANGE)}")
    if task.max_frames is not None:
        checks.at_least(task.max_frames, 1, "task.max_frames")
    return long_term


def task_sources(task: DictConfig) -> tuple[Path | None, Path | None]:
    """The (style image, network file) the method reads, resolved."""
    style = network = None
    if task.method == "optimize":
        if not task.style:
            raise ConfigError("task.method=optimize needs task.style=<a style image: a local path or pinned URL>")
        style = images.check_input(fetch.resolve(str(task.style), "task.style"), "task.style")
    else:
        if not task.network:
            raise ConfigError(f"task.method=fast needs task.network=<{NETWORK_FILE}>")
        network = model_file(str(task.network), "task.network", (".ckpt", ".onnx"), NETWORK_FILE)
        if task.style:  # an arbitrary-style network's style
            style = images.check_input(fetch.resolve(str(task.style), "task.style"), "task.style")
    return style, network


def long_term_distances(value: Any) -> tuple[int, ...]:
    """``task.long_term``: increasing integer distances >= 1 (1: the previous frame)."""
    if value is None:
        return (1,)
    items = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else []
    if (
        not items
        or not all(isinstance(j, int) and not isinstance(j, bool) and j >= 1 for j in items)
        or items != sorted(set(items))
    ):
        raise ConfigError(
            f"task.long_term={value!r} is invalid; give increasing integer distances >= 1, e.g. [1, 2, 4]"
        )
    return tuple(items)


def resume_file(value: Any) -> Path | None:
    """``ckpt_path``: a video run continues from its run directory's progress.json (the entry lets a run
    into an occupied directory only when ckpt_path lies inside it)."""
    if value is None or value == "":
        return None
    path = Path(str(value))
    if path.name != RESUME_FILE or not path.is_file():
        raise ConfigError(
            f"ckpt_path={value}: a video run continues from the {RESUME_FILE} of its run directory; "
            f"pass ckpt_path=RUN/{RESUME_FILE} hydra.run.dir=RUN"
        )
    return path


# Frame-sized fp32 planes a frame's step holds besides the history: per earlier frame its backward
# and forward flows (2 + 2), the mask and the warped result (1 + 3); the combined target (4), the
# consistency mask's temporaries (about 8) and OpenCV's flow pyramids (about 8). Counted for the
# nearest frame; each further distance adds its own 8.
FLOW_PLANES = 28
# A feed-forward network's peak per pixel, measured: a video run with the Johnson network (width 1,
# 5 blocks, long_term [1, 2]) on CPU grew by 366 MiB at 512x384 and 1178 MiB at 1024x768, 361 planes a
# pixel beyond a fixed 95 MiB; less the 54 planes of frames and flow counted here, about 307 (its
# full-resolution 32-channel layers and oneDNN's working buffers for the 9x9 convolutions).
NETWORK_PLANES = 320


def style_hw(s: VideoSettings) -> tuple[int, int]:
    """(H, W) of the style image as the optimization loads it: at task.size, or its own size."""
    width, height = images.open_rgb(s.style).size
    return output_hw((width, height), s.size) if s.size else (height, width)


def check_sides(s: VideoSettings) -> None:
    """Refuse frames (or a style image) so thin that the stylizer's layers would shrink a side to nothing."""
    if s.method == "optimize":
        layers = [*s.content_layers, *s.style_layers]
        minimum, needs = backbone.min_side(s.model.arch, layers), backbone.deepest(s.model.arch, layers)
        if min(style_hw(s)) < minimum:
            h, w = style_hw(s)
            raise ConfigError(
                f"task.style={s.style}: at {w}x{h} its short side is below the {minimum} px that {needs} needs; "
                "crop it to a less extreme aspect ratio or raise task.size"
            )
    else:
        minimum, needs = NETWORK_MIN_SIDE, "the network"
    if min(s.hw) < minimum:
        raise ConfigError(
            f"task.input={s.input}: its frames at {s.hw[1]}x{s.hw[0]} have a short side below the {minimum} px "
            f"that {needs} needs; raise task.size or crop the video to a less extreme aspect ratio"
        )


def peak_memory(s: VideoSettings) -> int:
    """Estimated peak bytes of a video run: the stylizer at the frame size (the style wing's estimate of
    one optimization, or a network's widest layer), the flow work, and the frames held for long-term
    consistency (input, result and baseline of each, up to the largest distance or the video's length)."""
    h, w = s.hw
    plane = h * w * estimate.FP32
    if s.method == "optimize":
        memory = MemoryModel(
            s.model.arch,
            s.content_layers,
            s.style_layers,
            s.optimizer.name,
            s.optimizer.history_size,
            heap_block_limit=s.runtime.heap_block_limit(s.device),
            fast_convs=s.runtime.winograd,
        )
        stylizer = memory.estimate(s.hw, style_hw(s)).peak_bytes
    else:
        stylizer = NETWORK_PLANES * plane + estimate.RUNTIME
    history = held_frames(s) * (9 if s.baseline else 6) * plane
    flow = (FLOW_PLANES + 8 * (len(s.long_term) - 1)) * plane
    return stylizer + history + flow


def held_frames(s: VideoSettings) -> int:
    """Earlier frames kept for long-term consistency: the largest distance, or the video's length if it is shorter."""
    return min(max(s.long_term), s.info.frames or max(s.long_term))


def check_memory(s: VideoSettings) -> None:
    """Refuse, before anything is allocated, a run whose estimated peak exceeds what the device has."""
    h, w = s.hw
    memory.check(
        peak_memory(s),
        s.device,
        f"task.size={s.size} ({w}x{h} frames, holding up to {held_frames(s)} earlier frames for "
        f"task.long_term={list(s.long_term)})",
        "use a smaller task.size, shorter task.long_term distances, or task.memory_check=false to run anyway",
    )


def check_resume(path: Path, fingerprint: dict[str, Any]) -> None:
    """Refuse to continue a run made with another input or config (without ckpt_path a run directory's
    progress.json that does not match is started over instead)."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        saved = None
    if not isinstance(saved, dict) or saved.get("fingerprint") != fingerprint:
        raise ConfigError(
            f"ckpt_path={path} belongs to another input or config (or is not a video run's {RESUME_FILE}); "
            "resume with the config it was made with (its run directory's .hydra/overrides.yaml)"
        )
