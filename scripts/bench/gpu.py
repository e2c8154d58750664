"""The GPU run of issue 16 (item 4), one command; on a machine without CUDA, the same code on tiny
sizes and few steps (the CPU fallback, run by tests/floor/test_benchmark_gpu.py), so that the
device run cannot fail on a typo.

    python scripts/benchmark_gpu.py            # CUDA: 2-4 min on one H200 (estimated: no device has run it yet)
    python scripts/benchmark_gpu.py --cpu      # force the fallback

What it prints, each figure with the machine and its load:
  1. style transfer at 512 px, 500 L-BFGS iterations (one per step, history 100), fp32 and
     bf16-mixed: seconds, evaluations, final loss and their difference;
  2. the same fp32 run with ``torch.compile`` of the loss graph (``module.losses``): compile time
     (the first step) and seconds for the rest, against plain fp32;
  3. 1024 and 2048 px: a few L-BFGS steps, peak GPU memory (``torch.cuda.max_memory_allocated``)
     against ``style/estimate.py`` (no heap part: the caching allocator's peak is live tensors);
  4. fine-tuning images/s at 224 px (full network trained, SGD, synthetic batches already on the
     device, so the figure is the network's, not JPEG decoding's), VGG16 and ResNet-50, fp32 and bf16;
  5. the real-time networks' images/s at 1024 px, fp32 and bf16: the per-style Johnson and light
     networks, and the AdaIN pipeline (VGG19 and light encoders) with its style code cached (as apply_fast
     and apply_adain run).
The style runs go through the project's code path (``bench.stylize.runs``' ``build`` and
``fit``: ``stylize.build`` and the module's own training step under a Lightning Trainer).
Random VGG weights (``model.weights=null``): the times do not depend on them, the losses do.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from bench.common import add_warnings_switch, load, machine, quiet
from bench.stylize import runs
from transferlab import images


@dataclass(frozen=True)
class Plan:
    """Sizes and step counts: the issue's on CUDA, tiny ones for the CPU fallback."""

    device: str
    size: int  # the timed style transfer's long side
    steps: int  # its L-BFGS iterations
    memory_sizes: tuple[int, ...]
    memory_steps: int
    finetune_batch: int
    finetune_steps: int
    fast_size: int
    finetune_size: int
    finetune_warmup: int
    finetune_precisions: tuple[str, ...]  # the fallback trains fp32 only: emulated bf16 takes seconds a step on CPU
    compile_backend: str  # the fallback only checks that the graph traces (inductor takes minutes on 2 cores)


GPU = Plan("cuda", 512, 500, (1024, 2048), 5, 64, 30, 1024, 224, 3, ("32", "bf16-mixed"), "inductor")
CPU = Plan("cpu", 32, 2, (32, 48), 2, 2, 1, 32, 32, 0, ("32",), "eager")  # batch 2: ResNet-50 trains batch norms


def inputs(tmp: Path) -> None:
    """The benchmark's content and style photos when this checkout has them (shared/data), else
    generated images of the same sizes (the device machine gets only the repository)."""
    if runs.CONTENT.is_file() and runs.STYLE.is_file():
        return
    g = torch.Generator().manual_seed(0)
    for name, (h, w) in (("content.png", (384, 512)), ("style.png", (406, 512))):
        low = torch.rand(1, 3, h // 16, w // 16, generator=g)
        image = (F.interpolate(low, (h, w), mode="bicubic") + 0.1 * torch.rand(1, 3, h, w, generator=g)).clamp(0, 1)
        images.save_image(image[0], tmp / name)
    runs.use_inputs(tmp / "content.png", tmp / "style.png")
    print(f"inputs: {tmp}/content.png and style.png, generated (no shared/data here)")


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def style_cfg(plan: Plan, size: int, *overrides: str) -> Any:
    return runs.make_cfg(size, "gatys", f"trainer.accelerator={plan.device}", *overrides)


def stylize(plan: Plan, size: int, steps: int, precision: str = "32", compile_backend: str | None = None) -> dict:
    """One single-scale L-BFGS run through Lightning; seconds exclude building and targets."""
    module = runs.build(style_cfg(plan, size), targets=False)
    if compile_backend:
        # The loss graph: VGG to the deepest layer, Gram matrices, losses (the backward follows).
        module.losses = torch.compile(module.losses, backend=compile_backend)
    trace = runs.fit(module, None, 10**6, max_steps=steps, precision=precision)
    sync()
    loss = float(module.last_losses["loss/total"])
    # Per step: seconds since the Trainer was made (the first step includes setup and targets), evaluations so far.
    t, evals = [p[0] for p in trace.points], [p[1] for p in trace.points]
    return {"seconds": t[-1], "first": t[0], "rest": t[-1] - t[0], "evals": evals[-1], "loss": loss}


def style_speed(plan: Plan) -> dict:
    print(
        f"\n== 1. style transfer {plan.size} px, {plan.steps} L-BFGS iterations (history 100), VGG19 gatys layers;"
        f" load {load()}"
    )
    if plan.device == "cuda":
        stylize(plan, plan.size, 2)  # warm-up: cuDNN's algorithm search, Lightning's lazy imports
    runs = {}
    for precision in ("32", "bf16-mixed"):
        r = runs[precision] = stylize(plan, plan.size, plan.steps, precision)
        print(
            f"  {precision:>10}: {r['seconds']:7.2f} s, {r['evals']} evaluations ({r['seconds'] / r['evals'] * 1e3:.1f}"
            f" ms each), final loss {r['loss']:.6g}; load {load()}",
            flush=True,
        )
    a, b = runs["32"], runs["bf16-mixed"]
    print(
        f"  bf16-mixed vs fp32: {a['seconds'] / b['seconds']:.2f}x the speed,"
        f" final loss {(b['loss'] - a['loss']) / a['loss']:+.3%}"
        f" (target: 500 iterations under 10 s; anchors jcjohnson/neural-style 22 s, neural-style-pt 23 s)"
    )
    return runs


def style_compile(plan: Plan, plain: dict) -> None:
    print(f"\n== 2. torch.compile(module.losses, backend={plan.compile_backend}) at {plan.size} px; load {load()}")
    r = stylize(plan, plan.size, plan.steps, compile_backend=plan.compile_backend)
    per = r["rest"] / max(1, r["evals"] - 1)
    plain_per = plain["rest"] / max(1, plain["evals"] - 1)
    print(
        f"  compiled: {r['seconds']:.2f} s in all, first step {r['first']:.1f} s (compiles),"
        f" then {per * 1e3:.1f} ms per evaluation against {plain_per * 1e3:.1f} ms uncompiled ({plain_per / per:.2f}x);"
        f" final loss {r['loss']:.6g}"
        f" ({(r['loss'] - plain['loss']) / plain['loss']:+.3%}); pays after"
        f" {r['first'] / max(plain_per - per, 1e-9):.0f} evaluations if faster; load {load()}",
        flush=True,
    )


def style_memory(plan: Plan) -> None:
    print(f"\n== 3. peak memory, {plan.memory_steps} L-BFGS steps (history 100); load {load()}")
    for size in plan.memory_sizes:
        cfg = style_cfg(plan, size)
        module = runs.build(cfg, targets=False)
        est = runs.estimate_for(
            cfg, tuple(module.image.shape[-2:]), runs.style_hw(module), heap_block_limit=0, fast_convs=False
        )
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()  # nothing yet: the module moves to the GPU in fit
        runs.fit(module, None, 10**6, max_steps=plan.memory_steps)
        sync()
        h, w = module.image.shape[-2:]
        parts = ", ".join(f"{k} {v / 2**20:.0f}" for k, v in est.parts.items())
        if torch.cuda.is_available():
            peak = (torch.cuda.max_memory_allocated() - base) / 2**20
            err = (est.peak_bytes / 2**20 - peak) / peak
            print(
                f"  {h}x{w}: peak {peak:.0f} MiB allocated, estimate {est.peak_bytes / 2**20:.0f} MiB ({err:+.1%});"
                f" reserved {torch.cuda.max_memory_reserved() / 2**20:.0f} MiB; estimate parts (MiB): {parts}",
                flush=True,
            )
        else:
            print(f"  {h}x{w}: (no CUDA: no peak measured) estimate {est.peak_bytes / 2**20:.0f} MiB: {parts}")
        del module


def finetune_speed(plan: Plan) -> None:
    from transferlab.classify import networks

    print(
        f"\n== 4. fine-tuning at {plan.finetune_size} px, batch {plan.finetune_batch}, every layer trained, SGD,"
        f" synthetic batches on the device; median of {plan.finetune_steps} steps after {plan.finetune_warmup} warm-up;"
        f" load {load()}"
    )
    for arch in ("vgg16", "resnet50"):
        network, _ = networks.build(arch, None, "auto", 2, 0.5)
        network = network.to(plan.device, memory_format=torch.channels_last).train()
        optimizer = torch.optim.SGD(network.parameters(), lr=1e-3, momentum=0.9)
        x = torch.rand(plan.finetune_batch, 3, plan.finetune_size, plan.finetune_size, device=plan.device).contiguous(
            memory_format=torch.channels_last
        )
        y = torch.randint(0, 2, (plan.finetune_batch,), device=plan.device)
        for precision in plan.finetune_precisions:
            times = []
            for _ in range(plan.finetune_steps + plan.finetune_warmup):
                start = time.perf_counter()
                with torch.autocast(plan.device, torch.bfloat16, enabled=precision != "32"):
                    loss = F.cross_entropy(network(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                sync()
                times.append(time.perf_counter() - start)
            timed = times[plan.finetune_warmup :]
            step = sorted(timed)[len(timed) // 2]
            print(
                f"  {arch:<8} {precision:>10}: {plan.finetune_batch / step:8.2f} images/s; load {load()}",
                flush=True,
            )
        del network, optimizer


def fast_speed(plan: Plan) -> None:
    """The fast wing's networks as apply_fast and apply_adain run them (eval, no grad), one image at a time."""
    from transferlab.fast.arbitrary.networks import AdaINNet
    from transferlab.fast.per_style.networks import build_network

    print(f"\n== 5. real-time networks at {plan.fast_size} px, one image per call, median of 10 after 3 warm-up")
    x = torch.rand(1, 3, plan.fast_size, plan.fast_size, device=plan.device)
    style = torch.rand(1, 3, plan.fast_size // 2, plan.fast_size // 2, device=plan.device)
    runs = {
        "per-style Johnson (width 1)": build_network("johnson").to(plan.device).eval(),
        "per-style light (width 0.35)": build_network("light", 0.35).to(plan.device).eval(),
    }
    for name, net in {
        "AdaIN, VGG19 encoder": AdaINNet(),
        "AdaIN, light encoder (width 0.125)": AdaINNet(encoder="light", width=0.125, loss_net=False),
    }.items():
        net = net.to(plan.device).eval()
        with torch.inference_mode():
            code = net.code(style)
        runs[f"{name}, style code cached"] = lambda image, net=net, code=code: net.stylize(image, [code])
    for name, net in runs.items():
        for precision in plan.finetune_precisions:
            times = []
            with torch.inference_mode(), torch.autocast(plan.device, torch.bfloat16, enabled=precision != "32"):
                for _ in range(13):
                    start = time.perf_counter()
                    net(x)
                    sync()
                    times.append(time.perf_counter() - start)
            step = sorted(times[3:])[len(times[3:]) // 2]
            print(f"  {name:<52} {precision:>10}: {1 / step:8.1f} images/s; load {load()}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", action="store_true", help="the CPU fallback even where CUDA is available")
    parser.add_argument("--skip", nargs="*", default=[], choices=["compile", "memory", "finetune", "fast"])
    add_warnings_switch(parser)
    args = parser.parse_args()
    quiet(args.warnings)
    plan = GPU if torch.cuda.is_available() and not args.cpu else CPU
    if plan is GPU:
        torch.backends.cudnn.benchmark = True
    start = time.perf_counter()
    print(f"== benchmark_gpu ({'CUDA' if plan is GPU else 'CPU fallback: tiny sizes, few steps'})")
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        inputs(Path(tmp))
        plain = style_speed(plan)["32"]
        if "compile" not in args.skip:
            style_compile(plan, plain)
        if "memory" not in args.skip:
            style_memory(plan)
    if "finetune" not in args.skip:
        finetune_speed(plan)
    if "fast" not in args.skip:
        fast_speed(plan)
    print(f"\ndone in {time.perf_counter() - start:.0f} s; load {load()}")
