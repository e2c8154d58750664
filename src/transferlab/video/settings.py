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
from transferlab.fast.settings import NETWORK_FILE, checked_alpha, model_file
from transferlab.groups import LossWeights, OptimizerSettings
from transferlab.runtime import RuntimeSettings
from transferlab.style import estimate
from transferlab.style.settings import (
    COLORS,
    LOSS_TERMS,
    OPTIMIZERS,
    MemoryModel,
    loss_network,
    measured_network,
    output_hw,
    strength_map,
)
from transferlab.video import io
from transferlab.video.flow import METHODS as FLOW_METHODS

METHODS = ("optimize", "fast")
MAP_MOTIONS = ("fixed", "flow")  # task.map_motion: maps given once stay put, or follow the flow frame to frame
# A frame folder's rate: an mp4 holds 1/100 (a slide every 100 s) to 1000 frames per second.
FPS_RANGE = (0.01, 1000.0)
RESUME_FILE = "progress.json"


@dataclass(frozen=True)
class FrameControls:
    """Where and how much style each frame gets, with the image tasks' keys and meaning: ``task.style_weights``,
    ``task.style_masks`` (one per style), ``task.strength_map`` (a file, ``auto``: each frame's saliency, or
    None), ``task.alpha``, ``task.color``; ``task.map_motion``, whether masks and a strength map file stay
    fixed or follow the flow; ``task.global_stats``, an AdaIN network normalizing every frame with the
    clip's content statistics."""

    style_weights: tuple[float, ...]  # sum to 1; () without styles (a per-style network)
    style_masks: tuple[Path, ...]  # () or one per style
    strength_map: Path | str | None
    alpha: float
    color: str
    map_motion: str
    global_stats: bool

    @property
    def moving(self) -> bool:
        """Whether maps given once follow the flow (``auto`` is each frame's own and never moves)."""
        has_file = bool(self.style_masks) or isinstance(self.strength_map, Path)
        return self.map_motion == "flow" and has_file


@dataclass(frozen=True)
class VideoSettings:
    input: Path
    styles: tuple[Path, ...]  # method=optimize, or method=fast with an arbitrary-style network; else ()
    method: str
    size: int | None  # long side of the processed frames; None: the input's size
    steps: int
    first_steps: int
    temporal_weight: float
    long_term: tuple[int, ...]  # earlier frames held to, by distance (1: the previous frame)
    flow: str
    flow_size: int | None  # long side the flow is computed at; None: the frames'
    blend: float
    baseline: bool
    loss_terms: bool  # content and style terms of every frame in metrics.json (video/quality.py)
    fps: float  # frame rate of a frame folder
    max_frames: int | None
    network: Path | None  # method=fast: any stylizer file (fast/stylizer.py)
    controls: FrameControls
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
    measured: estimate.Measured | None = None  # method=optimize with a network of another family than VGG

    @property
    def loads_vgg(self) -> bool:
        """Whether the run loads ``model``'s VGG: for the optimization or for the loss terms."""
        return self.method == "optimize" or self.loss_terms

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> VideoSettings:
        task = cfg.task
        long_term = checked_task(task)
        optimizer = groups.optimizer(cfg, OPTIMIZERS)
        # The optimization takes stylize's loss networks (VGG or another torchvision family, docs/backbones.md);
        # the loss terms of method=fast are VGG's.
        model = loss_network(cfg) if task.method == "optimize" else groups.model(cfg)
        layers = groups.layers(cfg, model.arch)
        device = groups.trainer(cfg, optimizer.name if task.method == "optimize" else None).accelerator
        problems = checks.Problems()  # the video, the style or network and the weights at once
        info = problems.run(io.probe, Path(str(task.input)), float(task.fps))
        sources = problems.run(task_sources, task)
        maps = problems.run(map_files, task)
        if task.method == "optimize":
            problems.run(backbone.check_weights, model.arch, model.weights, bool(problems.errors))
        problems.raise_all()
        styles, network = sources
        controls = frame_controls(task, styles, network, *maps)
        if network is not None and network.suffix.lower() == ".onnx":
            device = "cpu"
        hw = (info.height, info.width) if task.size is None else output_hw((info.width, info.height), task.size)
        settings = cls(
            input=Path(str(task.input)),
            styles=styles,
            method=task.method,
            size=task.size,
            steps=task.steps,
            first_steps=task.first_steps,
            temporal_weight=float(task.temporal_weight),
            long_term=long_term,
            flow=task.flow,
            flow_size=task.flow_size,
            blend=float(task.blend),
            baseline=bool(task.baseline),
            loss_terms=loss_terms(task, styles),
            fps=float(task.fps),
            max_frames=task.max_frames,
            network=network,
            controls=controls,
            device=device,
            model=model,
            content_layers=layers.content,
            style_layers=layers.style,
            loss=groups.loss(cfg, LOSS_TERMS),
            optimizer=optimizer,
            runtime=groups.runtime(cfg),
            seed=groups.seed(cfg),
            info=info,
            hw=hw,
            resume=resume_file(cfg.get("ckpt_path")),
            measured=measured_network(model, layers) if task.method == "optimize" else None,
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
        skip = ("max_frames", "device", "runtime", "resume", "info", "measured")  # how this process computes
        values = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items() if k not in skip}
        saved = {"settings": repr(sorted(values.items())), "input_size": stat.st_size, "input_mtime": stat.st_mtime}
        return saved | ({"network": fetch.sha256_of(self.network)} if self.network is not None else {})


def checked_task(task: DictConfig) -> tuple[int, ...]:
    """Check ``task``'s plain values; return its long-term distances."""
    checks.choice(task.method, METHODS, "task.method")
    checks.choice(task.flow, FLOW_METHODS, "task.flow")
    if task.flow_size is not None:
        checks.at_least(task.flow_size, 32, "task.flow_size")
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


def task_sources(task: DictConfig) -> tuple[tuple[Path, ...], Path | None]:
    """The (style images, network file) the method reads, resolved; every one missing or unreadable at once."""
    sources = checks.as_list(task.style)
    key = "task.style" if len(sources) == 1 else "task.style[{}]"
    problems = checks.Problems()
    styles = tuple(problems.run(images.input_file, v, key.format(i)) for i, v in enumerate(sources))
    network = None
    if task.method == "optimize":
        if not sources:
            raise ConfigError("task.method=optimize needs task.style=<a style image: a local path or pinned URL>")
    else:
        if not task.network:
            raise ConfigError(f"task.method=fast needs task.network=<{NETWORK_FILE}>")
        network = problems.run(model_file, str(task.network), "task.network", (".ckpt", ".onnx"), NETWORK_FILE)
    problems.raise_all()
    return styles, network


def map_files(task: DictConfig) -> tuple[tuple[Path, ...], Path | str | None]:
    """``task.style_masks`` (each decoded: a missing or unreadable mask is refused before any frame is
    stylized) and ``task.strength_map``; every one missing or unreadable at once."""
    problems = checks.Problems()
    masks = tuple(
        problems.run(mask_file, m, f"task.style_masks[{i}]") for i, m in enumerate(checks.as_list(task.style_masks))
    )
    strength = problems.run(strength_map, task)
    problems.raise_all()
    return masks, strength


def mask_file(source: Any, key: str) -> Path:
    path = images.input_file(source, key)
    images.open_rgb(path)
    return path


def frame_controls(
    task: DictConfig,
    styles: tuple[Path, ...],
    network: Path | None,
    mask_files: tuple[Path, ...],
    strength: Path | str | None,
) -> FrameControls:
    """``task.style_weights`` ... ``task.global_stats`` checked against the styles and the method, with the
    checked ``mask_files`` and ``strength`` map (``map_files``); what only the network's file tells (a
    per-style or SANet network) is refused when it is read (video/controls.py)."""
    masks = checks.as_list(task.style_masks)
    if masks and task.style_weights is not None:
        raise ConfigError(
            "task.style_weights and task.style_masks both set; with masks each mask says how much of its "
            "style goes where: drop task.style_weights (or scale a mask's grey level)"
        )
    weights = checks.as_list(task.style_weights)
    if (masks and len(masks) != len(styles)) or (weights and not styles):
        what, count = ("task.style_masks", len(masks)) if masks else ("task.style_weights", len(weights))
        raise ConfigError(
            f"{what} has {count} entries for {len(styles)} styles in task.style; give one per style (a per-style "
            "network has its one style: say where it applies with task.strength_map)"
        )
    global_stats = checks.choice(task.global_stats, [True, False], "task.global_stats")
    exported = network is not None and network.suffix.lower() == ".onnx"
    if global_stats and (network is None or exported):
        raise ConfigError(
            f"task.global_stats=true shares an AdaIN network's content statistics over the clip; "
            f"{'an exported pipeline normalizes each frame itself' if exported else 'task.method=optimize has none'}"
            ": give task.method=fast with a train_adain checkpoint, or drop it"
        )
    if exported and (masks or len(styles) > 1):
        raise ConfigError(
            f"task.network={network} is an exported pipeline with one style; several styles or task.style_masks "
            "need a train_adain checkpoint (.ckpt)"
        )
    return FrameControls(
        style_weights=checks.style_weights(task.style_weights, len(styles)) if styles else (),
        style_masks=mask_files,
        strength_map=strength,
        alpha=checked_alpha(task),
        color=checks.choice(task.color, COLORS, "task.color"),
        map_motion=checks.choice(task.map_motion, MAP_MOTIONS, "task.map_motion"),
        global_stats=global_stats,
    )


def loss_terms(task: DictConfig, styles: tuple[Path, ...]) -> bool:
    """``task.loss_terms``: null is on where VGG is loaded anyway (method=optimize); they need a style image."""
    if task.loss_terms is None:
        return task.method == "optimize"
    on = checks.choice(task.loss_terms, [True, False], "task.loss_terms")
    if on and not styles:
        raise ConfigError(
            "task.loss_terms=true needs task.style=<the style image the style term compares with>; "
            "a per-style network has none: leave task.loss_terms=null"
        )
    return on


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


def style_hw(s: VideoSettings, style: Path) -> tuple[int, int]:
    """(H, W) of a style image as the optimization loads it: at task.size, or its own size."""
    width, height = images.open_rgb(style).size
    return output_hw((width, height), s.size) if s.size else (height, width)


def check_sides(s: VideoSettings) -> None:
    """Refuse frames (or a style image) so thin that the stylizer's layers would shrink a side to nothing."""
    if s.method == "optimize":
        minimum, needs = memory_model(s).min_side()
        for style in s.styles:
            h, w = style_hw(s, style)
            if min(h, w) < minimum:
                raise ConfigError(
                    f"task.style={style}: at {w}x{h} its short side is below the {minimum} px that {needs} needs; "
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
        stylizer = max(memory_model(s).estimate(s.hw, style_hw(s, style)).peak_bytes for style in s.styles)
    else:
        stylizer = NETWORK_PLANES * plane + estimate.RUNTIME
    history = held_frames(s) * (9 if s.baseline else 6) * plane
    flow = (FLOW_PLANES + 8 * (len(s.long_term) - 1)) * plane
    return stylizer + history + flow


def memory_model(s: VideoSettings) -> MemoryModel:
    """What the style wing's estimate of one frame's optimization depends on (``MemoryModel``)."""
    return MemoryModel(
        s.model.arch,
        s.content_layers,
        s.style_layers,
        s.optimizer.name,
        s.optimizer.history_size,
        heap_block_limit=s.runtime.heap_block_limit(s.device),
        fast_convs=s.runtime.winograd if s.measured is None else False,
        transform=s.model.feature_transform,
        measured=s.measured,
    )


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
