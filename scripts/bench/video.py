"""Video style transfer on this machine: seconds per frame at each size for the optimization method
(Gatys per frame from the warped previous result + temporal loss, few steps) and the fast method (a
per-style network per frame + flow-warped blending), the share of each frame's time spent in optical
flow, and the flicker (mean squared warping error over the reliable pixels) with the temporal terms
next to independent per-frame stylization of the same frames.

The clip is synthetic: a textured square moving over a panning textured background. Random weights
everywhere (model.weights=null, an untrained network): speed does not depend on them, the flicker
figures do (and on the steps: unconverged frames keep moving). Runs go through the task itself
(task=video, in process); each frame's time leaves out the independent baseline's, given apart.

    python scripts/benchmark_video.py [--study sizes] [--sizes 256 512] [--frames 4] [--first-steps 10] [--steps 3]

``--study quality`` (issue 24's figure (b), item 5): on the synthetic clip and on a clip made by panning
and zooming a photo (``--photo``: every pixel moves by a fractional flow), the flicker beside what it
skips (``skipped_share``, ``skipped_ssim`` to independent frames there), the sharpness against the
independent frames' and the content and style terms paid for the stability (video/quality.py), for the
optimization method (8 and 50 steps a frame), the light per-style network and AdaIN (VGG19 encoder
and decoder, untrained, the decoder rescaled to give contrast: ``adain_checkpoint``) per frame, with blending, and with
sequence-level statistics (``task.global_stats``).

``--study fps`` (issue 30 item 4): frames per second of method=fast at each ``--fps-size`` with the light per-style
network and AdaIN's light network, from checkpoints and exported to ONNX, flow included: the shares of the flow, the
network and the rest, each flow setting (``task.flow``, ``task.flow_size``) with its flicker against the clip's true
motion, and a frame's parts on one thread in CPU ms.

Random weights everywhere (VGG and networks): the loss terms and SSIM compare methods under the same
random loss network, not how good a stylization looks.

    python scripts/benchmark_video.py --study quality|all [--photo PHOTO] [--style STYLE] [--quality-size 256] [--frames 6]
    python scripts/benchmark_video.py --study fps [--fps-size 512 1024] [--frames 4] [--repeats 3] [--threads N]

``--study adain`` (issue 24 item 3): an untrained AdaIN network (``--adain-encoder light|vgg19``) per frame, with
flow-warped blending, with the clip's content statistics (``task.global_stats``), and both, at each of
``--sizes``: seconds per frame and the flicker, on the synthetic clip and on a static clip (one frame
repeated), where global statistics must give zero flicker.

    python scripts/benchmark_video.py --study adain [--sizes 256 512] [--frames 6] [--adain-encoder light]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import torch
from hydra import compose, initialize_config_dir

from bench.common import ROOT, SHARED, add_warnings_switch, load, machine, quiet
from transferlab import exporter, images
from transferlab import main as tasks
from transferlab.fast import adain_export, stylizer
from transferlab.fast.arbitrary.networks import EXPORT_MIN_SIZES, AdaINNet, Pipeline
from transferlab.fast.export import SIGNATURE
from transferlab.fast.per_style.networks import build_network
from transferlab.fast.stylizer import read_network
from transferlab.motion import warp
from transferlab.video import io
from transferlab.video import task as video_task
from transferlab.video.flow import OpenCVFlow, consistency_mask, warping_error

SHALLOW = ["~layers.content", "+layers.content={relu2_1: 1}", "~layers.style", "+layers.style={relu1_1: 1, relu2_1: 1}"]


def texture(h: int, w: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(1, 3, max(2, h // 8), max(2, w // 8), generator=g)
    return torch.nn.functional.interpolate(noise, size=(h, w), mode="bicubic", align_corners=False)[0].clamp(0, 1)


def clip_frames(size: int, n: int):
    """``n`` frames ``size`` wide (4:3): the background pans by size/128 px a frame, a square crosses it at size/32."""
    h, w, pan, step = size * 3 // 4, size, max(1, size // 128), max(2, size // 32)
    background, square = texture(h, w + pan * n, 1), texture(h // 3, h // 3, 2) * 0.5 + 0.5
    for t in range(n):
        frame = background[:, :, (n - t) * pan : (n - t) * pan + w].clone()
        x, y = w // 8 + t * step, h // 3
        frame[:, y : y + h // 3, x : x + h // 3] = square
        yield frame


def tiny_checkpoint(path: Path, arch: str, width: float) -> Path:
    """An untrained network saved as train_fast saves it."""
    spec = {"arch": arch, "width": width, "blocks": 5}
    state = {f"network.{k}": v for k, v in build_network(**spec).state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"network": spec}}, path)
    return path


def photo_frames(photo: Path, size: int, n: int):
    """``n`` frames ``size`` wide (4:3) of ``photo``: a window that pans right by 1% of the photo's width
    and zooms in by 2% a frame (fractional motion at every pixel, as a hand-held camera gives)."""
    image = images.resize_long_side(images.load_image(photo), 2 * size)  # antialiased once, sampled below
    _, height, width = image.shape
    h, w = size * 3 // 4, size
    for t in range(n):
        share = 0.8 * 0.98**t  # of the photo's width that the window spans
        ws, hs = share, share * width * 3 / 4 / height
        cx = (t - n / 2) * 0.02  # in grid units ([-1, 1] spans the photo): 1% of its width a frame
        ys, xs = torch.meshgrid(torch.linspace(-hs, hs, h), torch.linspace(cx - ws, cx + ws, w), indexing="ij")
        grid = torch.stack([xs, ys], dim=-1).unsqueeze(0)
        yield torch.nn.functional.grid_sample(image.unsqueeze(0), grid, align_corners=True)[0].clamp(0, 1)


def adain_checkpoint(
    path: Path, encoder: str, calibration: torch.Tensor, style: torch.Tensor, width: float = 0.25
) -> Path:
    """An untrained AdaIN network (``encoder``: vgg19 with its decoder, or light at ``width``) saved as
    train_adain saves it; its decoder He-initialized and its last convolution rescaled so that on ``calibration`` (a frame)
    with ``style`` each channel has mean 0.5 and deviation 0.2: PyTorch's default init shrinks the signal
    layer by layer to a flat grey frame (+-0.02 before the 8-bit frames), with nothing to flicker."""
    spec = {
        "arch": "adain",
        "weights": None,
        "normalization": "imagenet",
        "pooling": "max",
        "style_layers": {"relu1_1": 0.25, "relu2_1": 0.25, "relu3_1": 0.25, "relu4_1": 0.25},
        "encoder": encoder,
        "width": 1.0 if encoder == "vgg19" else width,
    }
    torch.manual_seed(0)
    net = AdaINNet(**spec, loss_net=False).eval()
    convs = [layer for layer in net.decoder.modules() if isinstance(layer, torch.nn.Conv2d)]
    for conv in convs:
        torch.nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
        torch.nn.init.zeros_(conv.bias)
    seen = []
    handle = net.decoder.register_forward_hook(lambda module, args, out: seen.append(out))
    with torch.no_grad():
        net.stylize(calibration.unsqueeze(0), [net.code(style.unsqueeze(0))])
        handle.remove()
        mean, std = seen[0].mean(dim=(0, 2, 3)), seen[0].std(dim=(0, 2, 3))
        last = convs[-1]
        last.weight.mul_((0.2 / std).view(-1, 1, 1, 1))
        last.bias.copy_((last.bias - mean) * 0.2 / std + 0.5)
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"network": spec, "loss_weights": [1.0, 10.0, 1.0]}}, path)
    return path


def run(tmp: Path, name: str, *overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=["task=video", "model.weights=null", "trainer.accelerator=cpu", *overrides])
    out = tmp / name
    tasks.run_task(cfg, out)
    return json.loads((out / "metrics.json").read_text())


def row(label: str, m: dict) -> str:
    base = m.get("flicker_baseline")
    ratio = f"{base / m['flicker']:.1f}x" if base and m["flicker"] else "-"
    extra = f", independent {m['baseline_seconds_per_frame']:.2f} s" if m["method"] == "optimize" else ""
    return (
        f"{label:38s} {m['seconds_per_frame']:7.3f} s/frame ({1 / m['seconds_per_frame']:6.1f} fps){extra}; "
        f"flow {m['flow_share']:5.1%}; flicker {m['flicker']:.3g} vs independent "
        f"{base if base is None else f'{base:.3g}'} ({ratio} lower)"
    )


def quality_row(label: str, m: dict) -> str:
    terms = ""
    if "content_loss" in m:
        terms = (
            f"; content {m['content_loss']:.3g} (independent {m['content_loss_baseline']:.3g}), "
            f"style {m['style_loss']:.3g} (independent {m['style_loss_baseline']:.3g})"
        )
    return (
        f"{label:40s} flicker {m['flicker']:.3g} (independent {m['flicker_baseline']:.3g}); it skips "
        f"{m['skipped_share']:.1%} of the pixels, SSIM to independent there {m['skipped_ssim']:.3f}; sharpness "
        f"{m['sharpness']:.3g} (independent {m['sharpness_baseline']:.3g})" + terms
    )


def quality(tmp: Path, args: argparse.Namespace) -> None:
    """Issue 24 (b) and item 5: what the flicker skips, sharpness and the loss terms, per method and clip."""
    style, size, n = Path(args.style), args.quality_size, args.frames
    calibration = (next(clip_frames(size, 1)), images.load_image(style, size))
    adain = adain_checkpoint(tmp / "adain.ckpt", "vgg19", *calibration)
    light = tiny_checkpoint(tmp / "light.ckpt", "light", 0.35)
    clips = {
        "synthetic clip": lambda: clip_frames(size, n),
        f"{Path(args.photo).name} panned and zoomed": lambda: photo_frames(Path(args.photo), size, n),
    }
    print(
        f"=== quality at {size}x{size * 3 // 4}, {n} frames, style {style.name}. optimize: layers relu1_1-relu2_1 "
        f"(its loss terms in them), {args.first_steps_quality} steps on the first and each independent frame; "
        "AdaIN: VGG19 encoder + decoder, untrained (decoder He-initialized and rescaled), loss terms at "
        "Gatys' layers; the light per-style network: untrained, no style image, so no loss terms; random VGG weights"
    )
    for name, frames in clips.items():
        clip = tmp / f"{name.split()[0]}{size}.mp4"
        io.write_video(frames(), clip, 10)
        source = [f"task.input={clip}", f"task.max_frames={n}", f"task.size={size}"]
        common = [*source, f"task.style={style}"]
        print(f"--- {name}", flush=True)
        for steps in (8, 50):
            optimize = [f"task.first_steps={args.first_steps_quality}", f"task.steps={steps}", *SHALLOW]
            m = run(tmp, f"q{name[:3]}{steps}", *common, *optimize)
            print(quality_row(f"optimize, {steps} steps a frame", m), flush=True)
        for blend in (0, 0.5):
            m = run(
                tmp,
                f"q{name[:3]}light{blend}",
                *source,
                "task.method=fast",
                f"task.network={light}",
                f"task.blend={blend}",
            )
            print(quality_row(f"light per-style network, blend {blend}", m), flush=True)
        fast = [*common, "task.method=fast", f"task.network={adain}", "task.loss_terms=true"]
        for blend in (0, 0.5):
            m = run(tmp, f"q{name[:3]}adain{blend}", *fast, f"task.blend={blend}")
            print(quality_row(f"AdaIN, blend {blend}" + " (per frame)" * (blend == 0), m), flush=True)
        m = run(tmp, f"q{name[:3]}global", *fast, "task.blend=0.5", "task.global_stats=true")
        print(quality_row("AdaIN, blend 0.5, global statistics", m), flush=True)


# The flow settings of the fps study: label -> (task.flow, task.flow_size), the first the default.
FLOWS = {
    "DIS": ("dis", None),
    "DIS fast": ("dis_fast", None),
    "DIS at 512 px": ("dis", 512),
    "DIS at 256 px": ("dis", 256),
    "Farneback": ("farneback", None),
}


def fps_networks(tmp: Path, style: Path) -> dict[str, tuple[Path, list[str]]]:
    """The light networks as a user runs them, untrained: label -> (network file, overrides). The per-style
    one (width 0.35) and AdaIN's light encoder and decoder (width 0.125, train_adain's default), each as a
    checkpoint (PyTorch) and exported (ONNX Runtime; the AdaIN pipeline encodes the style at every call), and
    ``fastnet=narrow`` (width 0.25, the fastest per-style network on CPUs) exported."""
    light = tiny_checkpoint(tmp / "light.ckpt", "light", 0.35)
    narrow = tiny_checkpoint(tmp / "narrow.ckpt", "narrow", 0.25)
    calibration = (next(clip_frames(256, 1)), images.load_image(style, 256))
    adain = adain_checkpoint(tmp / "adain_light.ckpt", "light", *calibration, width=0.125)
    _, per_style, _ = read_network(light, family="per_style")
    exporter.export_onnx(per_style, (torch.rand(2, 3, 64, 64),), tmp / "light.onnx", SIGNATURE)
    _, per_style, _ = read_network(narrow, family="per_style")
    exporter.export_onnx(per_style, (torch.rand(2, 3, 64, 64),), tmp / "narrow.onnx", SIGNATURE)
    _, arbitrary, spec = read_network(adain, family="arbitrary")
    example = (torch.rand(2, 3, 64, 64), torch.rand(1, 3, 64, 80))
    signature = adain_export.signature(EXPORT_MIN_SIZES[spec["arch"]])
    exporter.export_onnx(Pipeline(arbitrary).eval(), example, tmp / "adain_light.onnx", signature)
    with_style = [f"task.style={style}"]
    return {
        "light per-style w=0.35, PyTorch": (light, []),
        "light per-style w=0.35, ONNX": (tmp / "light.onnx", []),
        "narrow per-style w=0.25, ONNX": (tmp / "narrow.onnx", []),
        "AdaIN light w=0.125, PyTorch": (adain, with_style),
        "AdaIN light w=0.125, ONNX": (tmp / "adain_light.onnx", with_style),
    }


def clip_motion(size: int, t: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The true backward flow of frame ``t`` of ``clip_frames(size, n)`` into frame ``t - 1`` (``flow.py``'s
    convention) and its mask: 0 where the background was under the square or outside frame ``t - 1``."""
    h, w, pan, step = size * 3 // 4, size, max(1, size // 128), max(2, size // 32)
    side, top, x = h // 3, h // 3, w // 8 + t * step  # the square in frame t; at x - step in frame t - 1
    flow, mask = torch.zeros(2, h, w), torch.ones(1, h, w)
    flow[0] = -pan
    mask[0, :, :pan] = 0
    source = torch.arange(w) - pan  # where each background column was in frame t - 1
    mask[0, top : top + side] *= ((source < x - step) | (source >= x - step + side)).float()
    flow[0, top : top + side, x : x + side] = -step
    mask[0, top : top + side, x : x + side] = 1
    return flow, mask


def true_flicker(frames: Path, n: int, size: int) -> float:
    """The flicker of the run's frames in ``frames`` measured with the clip's true motion (``clip_motion``):
    the same yardstick for every flow setting, none of which it favours."""
    sums, previous = [0.0, 0.0], images.load_image(frames / video_task.frame_name(0))
    for t in range(1, n):
        out = images.load_image(frames / video_task.frame_name(t))
        error = warping_error(out, previous, *clip_motion(size, t))
        sums, previous = [sums[0] + error[0], sums[1] + error[1]], out
    return sums[0] / sums[1]


def cpu_ms(fn: Callable[[], object], repeats: int = 3) -> float:
    """Median CPU milliseconds of ``fn()`` (after one warm-up), every thread of the process: on one thread
    about what a quiet machine's clock shows, whatever the load of a shared one."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return 1e3 * statistics.median(times)


def parts(nets: dict[str, tuple[Path, list[str]]], size: int, style: Path) -> None:
    """A frame's parts at ``size`` on one thread, in CPU ms: each network, each flow setting (both directions,
    as the task computes them), the consistency mask, the bicubic warp of the previous result, the PNG."""
    torch_threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    a, b = clip_frames(size, 2)
    styled = stylizer.style_image(str(style), "--style", size)
    figures = {}
    for label, (path, extra) in nets.items():
        run_net = (
            exporter.onnx_runner(path, threads=1)
            if path.suffix == ".onnx"
            else stylizer.load(path, style=styled if extra else None)
        )
        inputs = (a.unsqueeze(0), styled) if extra and path.suffix == ".onnx" else (a.unsqueeze(0),)
        figures[label] = cpu_ms(lambda run_net=run_net, inputs=inputs: run_net(*inputs))
    for label, (method, cap) in FLOWS.items():
        flow = OpenCVFlow(method, cap)
        figures[f"flow {label}"] = cpu_ms(lambda flow=flow: (flow(b, a), flow(a, b)))
    backward, forward = OpenCVFlow("dis")(b, a), OpenCVFlow("dis")(a, b)
    figures["consistency mask"] = cpu_ms(lambda: consistency_mask(backward, forward))
    figures["bicubic warp"] = cpu_ms(lambda: warp(a, backward, "bicubic"))
    with tempfile.TemporaryDirectory() as folder:
        figures["PNG"] = cpu_ms(lambda: images.save_image(b, Path(folder) / "frame.png"))
    torch.set_num_threads(torch_threads)
    cv2.setNumThreads(cv2_threads)
    print("  parts on 1 thread, CPU ms: " + "; ".join(f"{k} {v:.0f}" for k, v in figures.items()), flush=True)


def fps(tmp: Path, args: argparse.Namespace) -> None:
    """Frames per second of method=fast (issue 30 item 4) at each ``--fps-size`` with the light networks, blend
    0.5: the frame's time split into the optical flow (both directions and the consistency mask), the network,
    and the rest (warping, blending, the flicker sums, writing the PNG), and the whole task's wall time per
    frame (decoding, startup, the quality figures and stylized.mp4 included). The exported networks (what runs
    in real time) also with each flow setting (``FLOWS``) and as independent frames (blend 0). The runs of a
    size interleave, ``--repeats`` times; medians. Then the parts of a frame on one thread (``parts``). Flicker with the run's own flow and with the full-size DIS
    flow and with the clip's true motion (``true_flicker``), which compares the flow settings fairly."""
    n, style = args.frames, Path(args.style)
    nets = fps_networks(tmp, style)
    print(
        f"=== frames per second of task=video task.method=fast, {n} frames of the synthetic clip (4:3), blend 0.5 "
        f"(independent: blend 0), untrained networks, median of {args.repeats} interleaved runs; s/frame: the "
        "task's seconds_per_frame (flow + network + the rest); whole: the task's wall time / frames, and its CPU "
        "time (all threads; with --threads 1 about a quiet machine's wall time on a loaded one)",
        flush=True,
    )
    for size in args.fps_size:
        clip = tmp / f"fps{size}.mp4"
        io.write_video(clip_frames(size, n), clip, 10)
        rows = [(net, flow) for net in nets for flow in [*FLOWS, "independent"] if flow == "DIS" or "ONNX" in net]
        rows = [r for r in rows if (FLOWS.get(r[1], ("", None))[1] or 0) < size]  # a cap over the frames: DIS
        seen: dict[tuple[str, str], list[dict]] = {r: [] for r in rows}
        for repeat in range(args.repeats):
            for net, flow in rows:
                method, cap = FLOWS.get(flow, ("dis", None))
                temporal = [f"task.flow={method}", f"task.flow_size={cap or 'null'}"]
                common = [f"task.input={clip}", f"task.max_frames={n}", f"task.size={size}", "task.baseline=false"]
                overrides = [*common, "task.method=fast", f"task.network={nets[net][0]}", *nets[net][1]]
                out = f"fps{size}_{list(nets).index(net)}_{flow}_{repeat}"
                start, cpu = time.perf_counter(), time.process_time()
                m = run(tmp, out, *overrides, *(["task.blend=0"] if flow == "independent" else temporal))
                m["wall"], m["cpu"] = (time.perf_counter() - start) / n, (time.process_time() - cpu) / n
                if repeat == 0:
                    m["true"] = true_flicker(tmp / out / "frames", n, size)
                seen[(net, flow)].append(m)
                shutil.rmtree(tmp / out)
        print(f"--- {size}x{size * 3 // 4} (load average {load()})", flush=True)
        parts(nets, size, style)
        print_fps(seen)


def print_fps(seen: dict[tuple[str, str], list[dict]]) -> None:
    header = "fps (s/frame) | whole s/frame (CPU) | flow | network | warp+blend+write | flicker (own flow; true motion)"
    for (net, flow), ms in seen.items():
        if flow == next(iter(FLOWS)):
            print(f"  {net}:  {header}")

        def med(key: str, ms: list[dict] = ms) -> float:
            return statistics.median(m[key] for m in ms)

        spf, shares = med("seconds_per_frame"), (med("flow_share"), med("stylizer_share"))
        print(
            f"    {flow:14s} {1 / spf:6.2f} fps ({spf:.3f}) | {med('wall'):.3f} ({med('cpu'):.3f}) | {shares[0]:5.1%} | {shares[1]:5.1%} "
            f"| {1 - sum(shares):5.1%} | {ms[0]['flicker']:.3g}; {ms[0]['true']:.3g}",
            flush=True,
        )


def sizes(tmp: Path, args: argparse.Namespace) -> None:
    """Seconds per frame at each size, flow share and flicker, for both methods (the module's first table)."""
    print(
        f"=== sizes: {args.frames} frames; optimize: L-BFGS, {args.first_steps} steps on the first frame (and on "
        f"each independent frame), {args.steps} after; fast: untrained networks; DIS flow; random weights"
    )
    style = images.save_image(texture(128, 128, 3), tmp / "style.png")
    nets = {f"{a} w={w}": tiny_checkpoint(tmp / f"{a}.ckpt", a, w) for a, w in (("johnson", 1.0), ("light", 0.5))}
    for size in args.sizes:
        clip = tmp / f"clip{size}.mp4"
        io.write_video(clip_frames(size, args.frames), clip, 10)
        common = [f"task.input={clip}", f"task.max_frames={args.frames}"]
        steps = [f"task.style={style}", f"task.first_steps={args.first_steps}", f"task.steps={args.steps}"]
        print(f"--- {size} px")
        for label, layers in (("optimize, Gatys layers (to relu5_1)", []), ("optimize, relu1_1-relu2_1", SHALLOW)):
            print(row(label, run(tmp, f"opt{size}{len(layers)}", *common, *steps, *layers)), flush=True)
        for label, path in nets.items():
            m = run(tmp, f"fast{size}{label}", *common, "task.method=fast", f"task.network={path}")
            print(row(f"fast, {label}, blend 0.5", m), flush=True)


ADAIN_ROWS = {
    "per frame": ["task.blend=0"],
    "blend 0.5": ["task.blend=0.5"],
    "global stats": ["task.blend=0", "task.global_stats=true"],
    "global stats + blend 0.5": ["task.blend=0.5", "task.global_stats=true"],
}


def adain(tmp: Path, args: argparse.Namespace) -> None:
    """Arbitrary-style video (issue 24 item 3): an AdaIN network (``--adain-encoder``) per frame, blended, with
    the clip's content statistics, and both, at each of ``--sizes``, on the synthetic clip and on a static
    clip (one frame repeated, lossless), where global statistics must give zero flicker."""
    style = images.save_image(texture(128, 128, 3), tmp / "adain_style.png")
    for size in args.sizes:
        moving, static = tmp / f"adain{size}.mp4", tmp / f"static{size}"
        io.write_video(clip_frames(size, args.frames), moving, 10)
        first = next(clip_frames(size, 1))
        for i in range(args.frames):
            images.save_image(first, static / f"frame_{i}.png")
        net = adain_checkpoint(tmp / f"adain{size}.ckpt", args.adain_encoder, first, images.load_image(style, 128))
        for clip_name, clip in (("moving", moving), ("static", static)):
            print(f"--- AdaIN ({args.adain_encoder} encoder), {size} px, {clip_name} clip", flush=True)
            common = [f"task.input={clip}", "task.method=fast", f"task.network={net}", f"task.style={style}"]
            for label, overrides in ADAIN_ROWS.items():
                m = run(tmp, f"{clip_name}{size}{label}", *common, *overrides)
                print(row(f"adain, {label}", m), flush=True)


STUDIES = {"sizes": sizes, "quality": quality, "fps": fps, "adain": adain}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", choices=[*STUDIES, "all"], default="sizes")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--first-steps", type=int, default=10)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="PyTorch's and OpenCV's")
    parser.add_argument("--photo", default=str(SHARED / "content" / "tubingen.jpg"), help="quality: the photo clip's")
    parser.add_argument("--style", default=str(SHARED / "styles" / "starry_night.jpg"), help="quality and fps")
    parser.add_argument("--quality-size", type=int, default=256)
    parser.add_argument("--first-steps-quality", type=int, default=100)
    parser.add_argument("--fps-size", type=int, nargs="+", default=[512, 1024], help="fps: the frames' long sides")
    parser.add_argument("--repeats", type=int, default=3, help="fps: interleaved runs of each row (median)")
    parser.add_argument("--adain-encoder", choices=["light", "vgg19"], default="light", help="adain: the network's")
    add_warnings_switch(parser)
    args = parser.parse_args()
    quiet(args.warnings)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)  # the optical flow's
    print(machine())
    with tempfile.TemporaryDirectory() as name:
        for study in STUDIES if args.study == "all" else [args.study]:
            STUDIES[study](Path(name), args)
