"""The video task: stylize a video frame by frame with temporal consistency (Ruder et al., 2016),
stream frames (memory independent of length), write each frame as it finishes, resume a killed
run, report the flicker metric next to independent per-frame stylization, write stylized.mp4.

Not Ruder et al.'s multi-pass (alternate forward and backward passes over the whole clip, each frame
blended with both neighbours): it needs every frame's result held or re-read and re-optimized several
times, which streaming, writing each frame once and resuming rule out, at several times the cost. The
damage it repairs, edges a pan uncovers filled from the previous frame's border, is avoided here
instead: those pixels start from the independent result or the content (temporal.initial_image)."""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from torch import Tensor
from tqdm import tqdm

from transferlab import backbone, checks, features, images, runtime, scalars, trainer
from transferlab.errors import VideoError
from transferlab.features import Encoder
from transferlab.files import write_json
from transferlab.motion import warp
from transferlab.result import TaskResult
from transferlab.video import controls, io, quality
from transferlab.video.controls import Maps
from transferlab.video.flow import OpenCVFlow, consistency_mask, warping_error
from transferlab.video.settings import RESUME_FILE, VideoSettings
from transferlab.video.temporal import BlendedFrames, OptimizedFrames, combine, initial_image

HP_KEYS = (  # TensorBoard's HParams columns after the user's overrides (checks.hparams)
    "task.input",
    "task.method",
    "task.style",
    "task.network",
    "task.size",
    "task.steps",
    "task.first_steps",
    "task.temporal_weight",
    "task.flow",
    "task.blend",
    "model.arch",
    "model.weights",
    "layers.content",
    "layers.style",
    "loss.content_weight",
    "loss.style_weight",
    "optimizer.name",
    "precision",
    "seed",
)

log = logging.getLogger(__name__)

SHEET_FRAMES = 4  # the frames that show a run in a sweep's contact sheet, first to last
BOARD_FRAMES = 8  # about as many frames (and their baselines) as TensorBoard images: PNG-encoded on the CPU
BOARD_CADENCE = 25  # every K frames where the frame count is not known ahead
# Figures often under 1e-4 (flicker: mean squared error per channel value; loss terms: 1e-9 with random weights)
SMALL_FIGURES = (
    "flicker",
    "flicker_baseline",
    "content_loss",
    "content_loss_baseline",
    "style_loss",
    "style_loss_baseline",
)
BOARD_SIZE = 512  # long side of those images
# metrics.json's figures that are means of per-frame curves (video/<name> in TensorBoard; video/quality.py)
CURVES = ("flicker", "flicker_baseline", "sharpness", "sharpness_baseline", "skipped_share", "skipped_ssim")
CURVES += tuple(f"{term}_loss{suffix}" for term in ("content", "style") for suffix in ("", "_baseline"))
# Disk a finished frame's PNG takes at most: PNG is lossless, about the raw 3 bytes a pixel for a
# stylized frame's texture (less for flat content). H.264 at crf 18 keeps the video under a tenth of raw.
PNG_BYTES_PER_PIXEL = 3
MP4_BYTES_PER_PIXEL = 0.3


def quantized(image: Tensor) -> Tensor:
    """What the frame's PNG holds: a resumed run continues from exactly what an unbroken one used."""
    return (image.clamp(0, 1) * 255).round() / 255


def frame_name(i: int) -> str:
    return f"frame_{i:06d}.png"


def build_encoder(s: VideoSettings) -> Encoder | None:
    """The loss network of the optimization and of the loss terms (one for both), to the deepest layer in use;
    None where neither needs it."""
    if not s.loads_vgg:
        return None
    (encoder,) = features.encoders(s.model, [[*s.content_layers, *s.style_layers]], s.runtime.winograd)
    runtime.configure(s.runtime)  # after loading the weights: the heap would keep the checkpoint's memory
    return encoder.to(s.device)


def build_optimizer(s: VideoSettings, encoder: Encoder) -> OptimizedFrames:
    return OptimizedFrames(
        encoder,
        load_styles(s),
        s.content_layers,
        s.style_layers,
        s.loss,
        s.optimizer,
        list(s.controls.style_weights),
        s.controls.color,
    )


def load_styles(s: VideoSettings) -> list[Tensor]:
    return [images.load_image(style, s.size).to(s.device) for style in s.styles]


def build_loss_terms(s: VideoSettings, encoder: Encoder | None) -> quality.LossTerms | None:
    """The content and style terms metrics.json reports (``task.loss_terms``), over the task's VGG."""
    if not s.loss_terms or encoder is None:
        return None
    weights = list(s.controls.style_weights)
    return quality.LossTerms(encoder, load_styles(s), weights, s.content_layers, s.style_layers, s.loss)


Targets = list[tuple[Tensor, Tensor]]  # earlier results warped into this frame and their masks, nearest first
FrameStep = Callable[[Tensor, Targets, Maps], tuple[Tensor, Tensor | None]]
History = deque[tuple[Tensor, Tensor, Tensor | None]]  # (input, result, baseline), nearest first


def frame_step(s: VideoSettings, clock: dict[str, float], encoder: Encoder | None) -> FrameStep:
    """``step(frame, targets, maps) -> (result, independent)``: the frame stylized with temporal consistency,
    and stylized on its own (``None`` without ``task.baseline``), by the method of ``task.method``, both
    under the frame's controls ``maps`` (video/controls.py);
    the seconds the independent stylization alone takes are added to ``clock["baseline"]`` and the
    frames it ran on to ``clock["frames"]``, those of every call of the network or the optimization (the
    independent one's too) to ``clock["stylizer"]``."""
    if s.method == "fast":
        blended = BlendedFrames(timed(controls.network_frames(s), clock), s.blend)

        def fast(frame: Tensor, targets: Targets, maps: Maps) -> tuple[Tensor, Tensor | None]:
            result, own = blended(frame, controls.styled_only(combine(targets), maps), maps)
            return quantized(result), quantized(own) if s.baseline else None

        return fast
    stylize = timed(build_optimizer(s, encoder), clock)

    def optimize(frame: Tensor, targets: Targets, maps: Maps) -> tuple[Tensor, Tensor | None]:
        temporal, masks, strength = combine(targets), maps.masks, maps.strength
        if not targets:  # the first frame: its independent result is this one
            result = quantized(stylize(frame, s.first_steps, frame, None, s.temporal_weight, masks, strength))
            return result, result if s.baseline else None
        own = None
        if s.baseline:
            start = time.perf_counter()
            own = quantized(stylize(frame, s.first_steps, frame, None, 0.0, masks, strength))
            clock["baseline"] += time.perf_counter() - start
            clock["frames"] += 1
        init = initial_image(frame, temporal, own)
        return quantized(stylize(frame, s.steps, init, temporal, s.temporal_weight, masks, strength)), own

    return optimize


def timed(stylizer: Callable[..., Tensor], clock: dict[str, float]) -> Callable[..., Tensor]:
    """``stylizer`` adding the seconds of each call to ``clock["stylizer"]`` (metrics.json's ``stylizer_share``)."""

    def call(*args: Any) -> Tensor:
        start = time.perf_counter()
        out = stylizer(*args)
        clock["stylizer"] += time.perf_counter() - start
        return out

    return call


def load_progress(s: VideoSettings, output_dir: Path) -> dict[str, Any]:
    """The frames finished and flicker sums so far: ``progress.json`` when it belongs to this input and
    config (the door refused a ``ckpt_path`` that does not), else a fresh start."""
    path = output_dir / RESUME_FILE
    if s.resume is not None and s.resume.resolve() != path.resolve():
        raise VideoError(
            f"ckpt_path={s.resume} is not the {RESUME_FILE} of this run's directory {output_dir}; "
            f"continue it with hydra.run.dir={s.resume.parent}"
        )
    fingerprint = s.fingerprint()
    fresh = {"fingerprint": fingerprint, "done": 0, "sums": {"video": [0.0, 0.0], "baseline": [0.0, 0.0]}}
    if not path.exists():
        return fresh
    try:
        saved = json.loads(path.read_text())
    except ValueError:
        saved = None  # not written by a run (they write it atomically): nothing to continue from
    if not isinstance(saved, dict) or saved.get("fingerprint") != fingerprint:
        log.warning("%s belongs to another input or config (or is not a run's): starting over", path)
        return fresh
    log.info("resuming: %d frames already finished in %s", saved["done"], output_dir / "frames")
    return saved


def check_space(s: VideoSettings, output_dir: Path, done: int) -> None:
    """Refuse a run whose frames (two PNGs each with the baseline) and video would not fit the free
    space of ``output_dir``'s disk, before the first frame is stylized."""
    total = min(s.info.frames or done + 1, s.max_frames or 10**12)
    pixels = s.hw[0] * s.hw[1]
    need = max(total - done, 0) * pixels * PNG_BYTES_PER_PIXEL * (2 if s.baseline else 1)
    need += int(total * pixels * MP4_BYTES_PER_PIXEL)
    free = shutil.disk_usage(output_dir).free
    if need > free:
        raise VideoError(
            f"{output_dir}: {total - done} frames of {s.hw[1]}x{s.hw[0]} need up to {need / 2**30:.2f} GiB "
            f"(frames/{', baseline/' if s.baseline else ''} and stylized.mp4) but the disk has "
            f"{free / 2**30:.2f} GiB free; free space, write elsewhere (hydra.run.dir), or lower "
            "task.size or task.max_frames" + (" (task.baseline=false halves it)" if s.baseline else "")
        )


class FlowTargets:
    """For each frame, the earlier results at ``task.long_term`` distances warped into it with their
    consistency masks, and the nearest one's flow for the flicker metric; times the flow work."""

    def __init__(self, s: VideoSettings) -> None:
        self.flow, self.long_term, self.seconds = OpenCVFlow(s.flow, s.flow_size), s.long_term, 0.0

    def __call__(self, frame: Tensor, history: History) -> tuple[Targets, list[tuple[Tensor, ...]]]:
        targets, pairs = [], []
        for j in self.long_term:
            if j > len(history):
                break
            earlier, result, base = history[j - 1]
            start = time.perf_counter()
            backward, forward = self.flow(frame, earlier), self.flow(earlier, frame)
            mask = consistency_mask(backward, forward)
            self.seconds += time.perf_counter() - start
            targets.append((warp(result, backward, "bicubic").clamp(0, 1), mask))  # bilinear blurs (motion.warp)
            if j == 1:
                pairs = [(result, base, backward, mask)]
        return targets, pairs


def stylize_frames(s: VideoSettings, output_dir: Path, progress: dict[str, Any]) -> dict[str, float]:
    """Stylize every frame not finished yet into ``frames/`` (and ``baseline/``), keeping ``progress``
    (saved after each frame) up to date; returns the frame count and the seconds spent."""
    frames_dir, baseline_dir = output_dir / "frames", output_dir / "baseline"
    # baseline: the independent stylization (optimize); stylizer: the network's or the optimization's calls
    clock = {"baseline": 0.0, "frames": 0, "total": 0.0, "stylizer": 0.0}
    encoder = build_encoder(s)
    step, flow, terms = frame_step(s, clock, encoder), FlowTargets(s), build_loss_terms(s, encoder)
    maps = controls.FrameMaps(s)
    history: History = deque(maxlen=max(s.long_term))
    done, count = progress["done"], 0
    total = min(s.info.frames or 0, s.max_frames or 10**9) or None
    board = trainer.run_logger(output_dir)
    cadence = -(-total // BOARD_FRAMES) if total else BOARD_CADENCE
    for i, frame in enumerate(tqdm(io.read_frames(s.input, s.hw), total=total, desc="frames", unit="frame")):
        if s.max_frames is not None and i >= s.max_frames:
            break
        count, frame = i + 1, frame.to(s.device)
        frame_maps = maps(frame)  # every frame, finished or not: maps that follow the flow move through each
        if i < done:  # finished before: only its result is needed, for the next frames
            result = images.load_image(frames_dir / frame_name(i)).to(s.device)
            base = images.load_image(baseline_dir / frame_name(i)).to(s.device) if s.baseline else None
            history.appendleft((frame, result, base))
            continue
        start = time.perf_counter()
        targets, pairs = flow(frame, history)
        result, base = step(frame, targets, frame_maps)
        images.save_image(result, frames_dir / frame_name(i))
        if base is not None:
            images.save_image(base, baseline_dir / frame_name(i))
        flicker = {}
        for previous, previous_base, backward, mask in pairs:
            flicker["flicker"] = add(progress["sums"]["video"], warping_error(result, previous, backward, mask))
            if base is not None:
                flicker["flicker_baseline"] = add(
                    progress["sums"]["baseline"], warping_error(base, previous_base, backward, mask)
                )
        history.appendleft((frame, result, base))
        clock["total"] += time.perf_counter() - start
        figures = measure_frame(progress, frame, result, base, pairs, terms)  # after the clock: not the method's
        log_frame(board, i, flicker | figures, (result, base) if i % cadence == 0 else ())
        progress["done"] = i + 1
        write_json(progress, output_dir / RESUME_FILE)
    board.finalize("success")
    return clock | {"count": count, "done": done, "flow": flow.seconds}


def log_frame(board: trainer.RunLogger, i: int, figures: dict[str, float], shown: tuple[Tensor | None, ...]) -> None:
    """Frame ``i``'s figures as TensorBoard points at step ``i`` (``video/<name>``: the names of metrics.json,
    whose values are their means; ``SMALL_FIGURES`` also as ``<name>_log10``, which TensorBoard's tables show),
    and the ``shown`` result and baseline (``trainer.VISUALS``: sorts after them)."""
    readable = scalars.with_log10(figures, SMALL_FIGURES)
    board.log_metrics({f"video/{name}": value for name, value in readable.items()}, step=i)
    for tag, image in zip((f"{trainer.VISUALS}/frame", f"{trainer.VISUALS}/frame_baseline"), shown):
        if image is not None:
            board.experiment.add_image(tag, images.fits_in(image.cpu(), BOARD_SIZE), i)
    # Written with the frame (a frame takes seconds): a stopped run keeps the curves of the frames it finished.
    board.experiment.flush()


def measure_frame(
    progress: dict[str, Any],
    frame: Tensor,
    result: Tensor,
    base: Tensor | None,
    pairs: list[tuple[Tensor, ...]],
    terms: quality.LossTerms | None,
) -> dict[str, float]:
    """Add the frame's figures beside the flicker (video/quality.py) to ``progress``; returns them."""
    mask = pairs[0][3] if pairs else None  # the nearest earlier frame's: the pixels the flicker skips
    return quality.measure(progress.setdefault("quality", {}), frame, result, base, mask, terms)


def summarize(s: VideoSettings, fps: float, progress: dict[str, Any], clock: dict[str, float]) -> dict[str, float]:
    """metrics.json: the flicker of the video (and of independent frames), the seconds per frame, and the
    figures of video/quality.py (what the flicker skips, sharpness, loss terms)."""
    sums, own = progress["sums"], clock["total"] - clock["baseline"]  # the method's time, flow included
    metrics = {
        "method": s.method,
        "frames": clock["count"],
        "fps": fps,
        "flicker": sums["video"][0] / sums["video"][1] if sums["video"][1] else 0.0,
        "seconds_per_frame": own / max(clock["count"] - clock["done"], 1),
        "flow_share": clock["flow"] / own if clock["total"] else 0.0,
        # the network's or the optimization's own calls; the rest of the frame (warping, blending, the flicker
        # sums, writing the PNG) is what flow_share and stylizer_share leave
        "stylizer_share": (clock["stylizer"] - clock["baseline"]) / own if clock["total"] else 0.0,
    }
    if s.baseline:
        # per frame it ran on (the first frame's is the first result)
        metrics["baseline_seconds_per_frame"] = clock["baseline"] / max(clock["frames"], 1)
        metrics["flicker_baseline"] = sums["baseline"][0] / sums["baseline"][1] if sums["baseline"][1] else 0.0
    return metrics | quality.summary(progress.get("quality", {}))


def stylize_video(s: VideoSettings, output_dir: Path) -> dict[str, float]:
    """Stylize every frame into ``output_dir/frames`` (and the independent baseline into
    ``output_dir/baseline``), resuming from ``progress.json`` when it matches; returns the metrics."""
    (output_dir / "frames").mkdir(parents=True, exist_ok=True)
    if s.baseline:
        (output_dir / "baseline").mkdir(exist_ok=True)
    progress = load_progress(s, output_dir)
    check_space(s, output_dir, progress["done"])
    clock = stylize_frames(s, output_dir, progress)
    return summarize(s, float(s.info.fps), progress, clock)


def add(total: list[float], part: tuple[float, float]) -> float:
    """Add a frame pair's flicker (sum, count) to ``total``; returns the pair's own (0 where no pixel counts)."""
    total[0] += part[0]
    total[1] += part[1]
    return part[0] / part[1] if part[1] else 0.0


def finished_frames(frames_dir: Path, count: int, hw: tuple[int, int]) -> Iterator[Tensor]:
    """The finished PNGs at the input's size, one at a time."""
    for i in range(count):
        yield images.resize(images.load_image(frames_dir / frame_name(i)), hw)


def run(cfg: DictConfig, output_dir: Path) -> TaskResult:
    """The video task: frames/, baseline/ and stylized.mp4 in ``output_dir`` (the entry writes metrics.json
    from the result: its images are up to ``SHEET_FRAMES`` frames spread over the video)."""
    s = VideoSettings.from_cfg(cfg)
    pl.seed_everything(s.seed, verbose=False)
    torch.manual_seed(s.seed)
    info = s.info
    # A network file's weights are its own: model.weights counts where the run loads VGG.
    network = s.model.arch if features.is_node_arch(s.model.arch) else "VGG"
    weights = backbone.announce_weights(s.model.weights, network, "a stylization") if s.loads_vgg else None
    metrics = stylize_video(s, output_dir) | ({"weights": weights} if weights else {})
    io.write_video(
        finished_frames(output_dir / "frames", metrics["frames"], (info.height, info.width)),
        output_dir / "stylized.mp4",
        info.fps,
        s.input if info.has_audio else None,
    )
    baseline = f"{metrics['flicker_baseline']:.4g}" if "flicker_baseline" in metrics else "not measured"
    log.info(
        "stylized.mp4: %d frames at %.3g fps; flicker %.4g (independent frames: %s)",
        metrics["frames"],
        metrics["fps"],
        metrics["flicker"],
        baseline,
    )
    log.info("%s", quality.describe(metrics))
    count = metrics["frames"]
    n = min(count, SHEET_FRAMES)
    shown = [round(i * (count - 1) / max(n - 1, 1)) for i in range(n)]
    return TaskResult(
        metrics=metrics,
        objective=metrics["flicker"],
        images=tuple(output_dir / "frames" / frame_name(i) for i in shown),
        caption=(
            f"flicker {metrics['flicker']:.4g} (independent {baseline})",
            # Both named: the progress bar's s/frame counts the method, the baseline and the figures together.
            f"{metrics['seconds_per_frame']:.3g} s/frame by the method"
            + (
                f", {metrics['baseline_seconds_per_frame']:.3g} by the baseline"
                if "baseline_seconds_per_frame" in metrics
                else ""
            ),
        ),
        hparams=checks.hparams(cfg, HP_KEYS),
        # The means of the per-frame curves, named as them: no chart of a single point (frames, fps, ...).
        summary={f"video/{k}": float(v) for k, v in metrics.items() if k in CURVES},
        step=count,
    )
