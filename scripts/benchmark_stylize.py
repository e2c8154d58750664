"""Benchmarks of the stylize task's optimization loop (issue 4), on this machine; random VGG weights
unless ``--weights`` names real ones.

    python scripts/benchmark_stylize.py speed      # s/evaluation vs its FLOP lower bound, and vs a plain baseline
    python scripts/benchmark_stylize.py convs      # per VGG conv: Winograd vs the direct convolution
    python scripts/benchmark_stylize.py quality    # time to a loss: single-scale vs coarse-to-fine
    python scripts/benchmark_stylize.py memory     # peak memory vs the estimate, L-BFGS and Adam
    python scripts/benchmark_stylize.py precision  # bf16-mixed vs fp32 (CUDA, or a CPU with AMX)

"Our" numbers come from the project's code path: ``stylize.build`` and the module's
``losses()`` plus ``backward()``, which is what its L-BFGS closure runs (``manual_backward`` is
``backward`` at precision 32). Every figure is printed with the machine and its load, since
other processes may share the CPU: the conv throughput that sets the lower bound is measured in
the same process, interleaved with the timings it is compared to.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import DictConfig  # noqa: E402
from torch import Tensor  # noqa: E402
from torchvision.models import vgg19  # noqa: E402

from transferlab import backbone, checks, runtime, winograd  # noqa: E402
from transferlab.runtime import RuntimeSettings
from transferlab.style import estimate
from transferlab.style import task as stylize
from transferlab.style.settings import StyleSettings
from transferlab.trainer import RunLogger

CONTENT = ROOT.parent / "shared" / "data" / "content" / "tubingen.jpg"
STYLE = ROOT.parent / "shared" / "data" / "styles" / "starry_night.jpg"
RESULTS = ROOT / "outputs" / "benchmarks"

# glibc otherwise raises its mmap threshold as large blocks are freed and keeps later ones in its
# heap, so the resident peak also holds memory no tensor uses any more.
LIVE_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "65536"}

# Lightning's banner and tips, once per fit, would bury the figures.
logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
warnings.filterwarnings("ignore")


# ---------------------------------------------------------------- machine, config, measurement helpers


def machine() -> str:
    cpu = platform.processor()
    if Path("/proc/cpuinfo").exists():
        found = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
        cpu = found.group(1) if found else cpu
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (
        f"{cpu}, {os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads, "
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}){gpu}; load average {load()}"
    )


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def weights() -> str:
    """model.weights of every run (``--weights``; children inherit it)."""
    return os.environ.get("BENCH_WEIGHTS", "null")


def make_cfg(size: int, layers: str = "gatys", *overrides: str) -> DictConfig:
    """The config ``python run.py`` would get for this stylize run."""
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose(
            "config",
            overrides=[
                f"task.content={CONTENT}",
                f"task.style={STYLE}",
                f"task.size={size}",
                f"model.weights={weights()}",
                f"layers={layers}",
                *overrides,
            ],
        )


def build(cfg: DictConfig, targets: bool = True) -> stylize.StyleTransfer:
    """The project's module for ``cfg`` (its coarse-to-fine plan included), with its targets
    computed as at the start of fitting when ``targets``."""
    torch.manual_seed(cfg.seed)  # random weights: the same for every build of one architecture
    module, _ = stylize.build(StyleSettings.from_cfg(cfg))
    if targets:
        module.on_fit_start()
    return module


def estimate_for(
    cfg: DictConfig, size: tuple[int, int], style_size: tuple[int, int], heap_block_limit: float, fast_convs: bool
) -> estimate.Estimate:
    """``estimate.estimate`` for the run ``cfg`` describes (its layers, optimizer and history)."""
    s = StyleSettings.from_cfg(cfg)
    return estimate.estimate(
        s.model.arch,
        s.content_layers,
        s.style_layers,
        size,
        style_size,
        s.optimizer.name,
        s.optimizer.history_size,
        heap_block_limit=heap_block_limit,
        fast_convs=fast_convs,
    )


def style_hw(module: stylize.StyleTransfer) -> tuple[int, int]:
    return tuple(module.scene.styles[0].shape[-2:])


def evaluation(module: stylize.StyleTransfer) -> Callable[[], float]:
    """One function evaluation as the L-BFGS closure runs it (without its cache)."""

    def evaluate() -> float:
        module.image.grad = None
        loss = module.losses()["loss/total"]
        loss.backward()
        return float(loss.detach())

    return evaluate


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def rss_mib(key: str = "VmRSS") -> float:
    """This process's resident (VmRSS) or peak resident (VmHWM) memory, Linux only."""
    return int(re.search(rf"{key}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def run_child(section: str, env: dict[str, str] | None = None, **kwargs: Any) -> dict[str, Any]:
    """Run ``section`` in a fresh process (clean peak memory, no state from earlier runs)."""
    out = subprocess.run(
        [sys.executable, __file__, "_child", section, json.dumps(kwargs)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )
    if out.returncode:
        raise RuntimeError(f"child {section} {kwargs} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def layer_sets(cfg: DictConfig) -> tuple[list[str], list[str]]:
    return list(cfg.layers.content), list(cfg.layers.style)


# ---------------------------------------------------------------- the plain baseline (item 2)


class PlainGatys:
    """Style transfer as it is usually written: the whole ``vgg19().features``, forward hooks on
    the named layers, autograd's Gram matrix, NCHW, and the style features re-extracted in every
    closure. It loads our encoder's weights, so both compute the same loss."""

    def __init__(self, module: stylize.StyleTransfer) -> None:
        self.module = module
        self.normalize = module.encoder.normalize  # kept: the switches section frees the encoder
        self.vgg = vgg19().features.eval().requires_grad_(False)
        self.vgg.load_state_dict(module.encoder.stack.state_dict(), strict=False)
        self.outputs: dict[str, Tensor] = {}
        wanted = {*module.perceptual.content_layers, *module.perceptual.style_layers}
        for name, layer in zip(backbone.layer_names("vgg19"), self.vgg):
            if name in wanted:
                layer.register_forward_hook(lambda _m, _i, out, name=name: self.outputs.__setitem__(name, out))
        with torch.no_grad():
            self.content_targets = {k: v.clone() for k, v in self.features(module.scene.content.unsqueeze(0)).items()}

    def features(self, image: Tensor) -> dict[str, Tensor]:
        self.outputs = {}
        self.vgg(self.normalize(image))
        return self.outputs

    @staticmethod
    def gram(x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        flat = x.reshape(b, c, h * w)
        return flat @ flat.transpose(1, 2) / (h * w)

    def evaluate(self) -> float:
        m, p = self.module, self.module.perceptual
        image = m.image
        image.grad = None
        with torch.no_grad():
            style = self.features(m.scene.styles[0].unsqueeze(0))
            style_grams = {ly: self.gram(style[ly]) for ly in p.style_layers}
        features = self.features(image)
        content = sum(w * F.mse_loss(features[ly], self.content_targets[ly]) for ly, w in p.content_layers.items())
        style_loss = sum(w * F.mse_loss(self.gram(features[ly]), style_grams[ly]) for ly, w in p.style_layers.items())
        loss = (
            p.content_weight * content
            + p.style_weight * style_loss
            + p.tv_weight
            * (
                (image[..., 1:, :] - image[..., :-1, :]).pow(2).mean()
                + (image[..., 1:] - image[..., :-1]).pow(2).mean()
            )
        )
        loss.backward()
        return float(loss.detach())


# ---------------------------------------------------------------- item 1 and 2: speed


def speed_child(size: int, layers: str, rounds: int, parts: list[str]) -> dict[str, Any]:
    """``rounds`` timed evaluations of ``parts`` (``ours``, ``plain`` or both, interleaved) in this process."""
    rss0 = rss_mib()
    # The door's memory check would count this process's own evaluations against the estimate it makes below.
    cfg = make_cfg(size, layers, "task.memory_check=false")
    module = build(cfg, targets="ours" in parts)
    runtime.configure(RuntimeSettings())  # as stylize.run does, once the weights are loaded
    timers: dict[str, Callable[[], Any]] = {}
    result: dict[str, Any] = {"size": list(module.image.shape[-2:]), "layers": layers}
    if "ours" in parts:
        timers["ours"] = evaluation(module)
        reset_peak()
        result["loss"] = timers["ours"]()  # warm-up; its peak is the evaluation's (no optimizer state yet)
        result["peak_mib"] = rss_mib("VmHWM") - rss0
        est = estimate_for(
            cfg,
            tuple(module.image.shape[-2:]),
            style_hw(module),
            heap_block_limit=RuntimeSettings().heap_block_limit("cpu"),
            fast_convs=winograd.runs_on("cpu"),
        )
        result["estimate_mib"] = (est.peak_bytes - est.parts["optimizer"]) / 2**20
        grad = module.image.grad.clone()
    if "plain" in parts:
        plain = PlainGatys(module)
        timers["plain"] = plain.evaluate
        if "ours" in parts:
            result["plain_loss"] = plain.evaluate()
            result["plain_grad_err"] = float((module.image.grad - grad).abs().max() / grad.abs().max())
        else:
            plain.evaluate()  # warm-up
            module.perceptual.encoder = None  # PlainGatys holds its own VGG
    content, style = layer_sets(cfg)
    flops = estimate.evaluation_flops(cfg.model.arch, content + style, style, *module.image.shape[-2:])
    plan = estimate.layer_plan(
        cfg.model.arch, backbone.deepest(cfg.model.arch, content + style), *module.image.shape[-2:]
    )
    # Winograd layers multiply 16 times per 2x2 outputs where a direct convolution multiplies 36 times.
    fast = sum(
        4 * 9 * ly.in_channels * ly.channels * ly.height * ly.width
        for ly in plan
        if ly.kind == "conv" and ly.in_channels >= winograd.MIN_CHANNELS
    )
    rows = []
    for _ in range(rounds):
        # Interleaved, so that the bound and our time see the same share of a contended CPU.
        row = {
            "nchw": estimate.conv_throughput(channels_last=False, repeats=1),
            "cl": estimate.conv_throughput(channels_last=True, repeats=1),
        }
        rows.append(row | {name: timed(fn) for name, fn in timers.items()})
    return result | {"flops": flops, "done": flops - fast * 5 / 9, "rows": rows}


def speed(args: argparse.Namespace) -> None:
    print(f"== speed: one L-BFGS function evaluation (VGG19, fp32, model.weights={weights()})\nmachine: {machine()}")
    print(
        "lower bound = FLOPs / best throughput of a 256->256 3x3 conv on 128x128 (fp32, NCHW or channels-last), measured"
        f" before each timing; times are the best of {args.rounds} rounds (other processes only ever add time)"
    )
    print(
        "done = the same ratio against the multiplications actually performed: the Winograd convolutions (>= 256 input"
        " channels, on CPU) do 16 for every 36 of a direct convolution"
    )
    header = (
        f"{'size':>9} {'layers':>6} {'GFLOP':>6} {'conv GF/s nchw/cl':>17} {'bound s':>7} {'ours s':>7} {'ratio':>6}"
        f" {'(done)':>6}"
    )
    header += f" {'plain s':>7} {'speed-up':>8}" if args.baseline else ""
    print(header + f" {'peak MiB (est.)':>16}")
    for size in args.sizes:
        for layers in args.layers:
            if not args.baseline:
                runs = [["ours"]]
            elif size >= args.apart_from:  # the two do not fit in memory together
                runs = [["ours"], ["plain"]]
            else:
                runs = [["ours", "plain"]]
            parts = [run_child("speed", size=size, layers=layers, rounds=args.rounds, parts=p) for p in runs]
            r = parts[0]
            timed_rows = [x for p in parts for x in p["rows"]]
            best = {key: min(x[key] for x in timed_rows if key in x) for key in {k for x in timed_rows for k in x}}
            probe = {key: max(x[key] for x in timed_rows) for key in ("nchw", "cl")}
            bound = r["flops"] / max(probe.values())
            line = (
                f"{r['size'][0]:>4}x{r['size'][1]:<4} {layers:>6} {r['flops'] / 1e9:6.0f} "
                f"{probe['nchw'] / 1e9:8.0f}/{probe['cl'] / 1e9:<8.0f} {bound:7.3f} {best['ours']:7.3f} {best['ours'] / bound:5.2f}x"
                f" {best['ours'] * r['flops'] / r['done'] / bound:5.2f}x"
            )
            if args.baseline:
                line += f" {best['plain']:7.3f} {best['plain'] / best['ours']:7.2f}x"
            print(line + f" {r['peak_mib']:8.0f} ({r['estimate_mib']:.0f})", flush=True)
            if "plain_loss" in r:
                print(
                    f"{'':17} same function: loss ours {r['loss']:.6g} plain {r['plain_loss']:.6g}, "
                    f"max gradient difference {r['plain_grad_err']:.1e} (relative)"
                )
            elif args.baseline:
                print(f"{'':17} ours and plain timed in separate processes (from --apart-from {args.apart_from} px)")
    print(f"load average after: {load()}; peak = resident memory added by one evaluation (no optimizer state)")


# ---------------------------------------------------------------- item 3: time to quality


class Trace(pl.Callback):
    """Records (seconds, evaluations, loss, scale) after every step; at the last scale, stops at a
    loss or after an evaluation budget."""

    def __init__(self, target: float | None, max_evals: int) -> None:
        self.target, self.max_evals = target, max_evals
        self.points: list[tuple[float, int, float, int]] = []
        self.start = time.perf_counter()
        self.final_start = 0  # evaluations when the last scale began

    def on_train_batch_end(self, trainer: pl.Trainer, module: stylize.StyleTransfer, *args: Any) -> None:
        loss = float(module.last_losses["loss/total"])
        self.points.append((time.perf_counter() - self.start, module.evaluations, loss, module.scale))
        if len(self.points) % 25 == 0:  # progress, for long runs
            print(
                f"  {module.image.shape[-1]}px step {len(self.points)}: {module.evaluations} evaluations,"
                f" loss {loss:.5g}, {self.points[-1][0]:.0f}s",
                file=sys.stderr,
                flush=True,
            )
        if module.scale < len(module.schedule) - 1:
            self.final_start = module.evaluations
        elif module.evaluations - self.final_start >= self.max_evals or (
            self.target is not None and loss <= self.target
        ):
            trainer.should_stop = True


def fit(
    module: stylize.StyleTransfer,
    target: float | None,
    max_evals: int,
    max_steps: int | None = None,
    precision: str = "32",
    logger: pl.loggers.Logger | bool = False,
) -> Trace:
    """Fit ``module`` with the project's training step (L-BFGS closure, cache) through Lightning."""
    trace = Trace(target, max_evals)
    trainer = pl.Trainer(
        accelerator="auto",
        devices=1,
        precision=precision,
        max_steps=max_steps or -1,
        logger=logger,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        callbacks=[trace],
    )
    trainer.fit(module)
    return trace


def balanced_weights(size: int, layers: str) -> list[str]:
    """Config overrides that give every style layer its say with random VGG weights, whose
    activations shrink with depth (relu5_1's Gram matrix is ~1e6 times smaller than relu1_1's):
    each layer's style loss is divided by the mean square of its target Gram matrix (a relative
    error, as activation scales are for a trained VGG), the style weight makes the loss of the
    content image 1e3, and the content weight makes a noise image cost as much in content."""
    module = build(make_cfg(size, layers))
    with torch.no_grad():
        scale = {ly: float(module.perceptual.gram(0, ly).pow(2).mean()) for ly in module.perceptual.style_layers}
        overrides = [f"layers.style.{ly}={1 / v:.6g}" for ly, v in scale.items()]
        module = build(make_cfg(size, layers, *overrides))
        style = float(module.losses()["loss/style"]) / module.perceptual.style_weight
        module.image.copy_(torch.rand_like(module.image))
        content = float(module.losses()["loss/content"]) / module.perceptual.content_weight
    return overrides + [f"loss.style_weight={1e3 / style:.6g}", f"loss.content_weight={1e3 / content:.6g}"]


def schedule(
    stages: list[tuple[int, int]], layers: str, history: int, target: float | None, weights: list[str]
) -> dict[str, Any]:
    """A run of the project's coarse-to-fine optimization (``task.scales``): ``stages`` is
    ``[(size, steps), ..., (output size, evaluations)]``; the last scale runs until ``target``
    (or its evaluation budget)."""
    *coarse, (size, evals) = stages
    cfg = make_cfg(
        size,
        layers,
        f"optimizer.history_size={history}",
        *weights,
        f"task.scales=[{','.join(str(s) for s, _ in coarse)}]",
        f"task.scale_steps=[{','.join(str(n) for _, n in coarse)}]",
        f"task.steps={10 * evals}",
    )
    start = time.perf_counter()
    module = build(cfg, targets=False)
    trace = fit(module, target, evals)
    seconds = time.perf_counter() - start
    content, style = layer_sets(cfg)
    log = []
    for scale in range(module.scale + 1):
        points = [p for p in trace.points if p[3] == scale]
        before = [p for p in trace.points if p[3] < scale]
        evaluations = points[-1][1] - (before[-1][1] if before else 0)
        hw = module.hw(scale)
        gflop = estimate.evaluation_flops(cfg.model.arch, content + style, style, *hw) / 1e9
        log.append(
            {
                "size": list(hw),
                "evaluations": evaluations,
                "loss": points[-1][2],
                "gflop": gflop * evaluations,
                "seconds": points[-1][0] - (before[-1][0] if before else 0),
                "trace": points,
            }
        )
    loss = trace.points[-1][2]
    terms = {k: float(v) for k, v in module.last_losses.items()}
    return {
        "stages": log,
        "seconds": seconds,
        "loss": loss,
        "terms": terms,
        "reached": target is None or loss <= target,
    }


def quality(args: argparse.Namespace) -> None:
    runtime.configure(RuntimeSettings())
    print(
        f"== time to quality at {args.size} px, layers={args.layers}, model.weights={weights()}\nmachine: {machine()}"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    loss_weights = balanced_weights(args.size, args.layers)
    print("loss weights (balanced layers, fixed for every run):", " ".join(loss_weights))
    key = hashlib.sha256(" ".join([weights(), *loss_weights]).encode()).hexdigest()[:8]
    ref_file = RESULTS / f"single_{args.size}_{args.layers}_{args.evals}_{key}.json"
    if ref_file.exists():
        ref = json.loads(ref_file.read_text())
        print(f"single-scale reference read from {ref_file} (delete it to measure again)")
    else:
        ref = schedule([(args.size, args.evals)], args.layers, 100, None, loss_weights)
        ref["machine"] = machine()
        ref_file.write_text(json.dumps(ref))
    target = ref["loss"]
    report("single-scale", ref)
    for spec in args.schedules:
        *coarse, history = spec.split("/")
        stages = [tuple(map(int, s.split(":"))) for s in coarse] + [(args.size, args.evals)]
        result = schedule(stages, args.layers, int(history), target, loss_weights)
        report(f"{spec}", result, ref)


def report(name: str, result: dict[str, Any], ref: dict[str, Any] | None = None) -> None:
    stages = " -> ".join(f"{s['size'][1]}px {s['evaluations']} evals {s['seconds']:.0f}s" for s in result["stages"])
    gflop = sum(s["gflop"] for s in result["stages"])
    line = f"{name:>24}: loss {result['loss']:.5g} in {result['seconds']:.0f}s, {gflop / 1e3:.1f} TFLOP ({stages})"
    if ref is not None:
        ref_gflop = sum(s["gflop"] for s in ref["stages"])
        line += (
            f"; {'reached' if result['reached'] else 'MISSED'} the single-scale loss: time "
            f"{result['seconds'] / ref['seconds']:.2f}x, FLOPs {gflop / ref_gflop:.2f}x of single-scale"
        )
    print(line, flush=True)
    if "terms" in result:
        print(
            f"{'':26}final terms: "
            + ", ".join(f"{k.split('/')[-1]} {v:.4g}" for k, v in result["terms"].items() if k != "loss/total"),
            flush=True,
        )


def convs(args: argparse.Namespace) -> None:
    """Each VGG conv shape from conv3_1 on: Winograd (``winograd.WinogradConv2d``) against the direct
    convolution it replaces, forward plus input gradient, so that the channel threshold
    (``winograd.MIN_CHANNELS``) can be checked on another CPU."""
    runtime.configure(RuntimeSettings())
    print(
        f"== VGG convs, forward + input gradient: direct (channels-last) vs Winograd, best of {args.rounds}\n"
        f"machine: {machine()}; Winograd is used from {winograd.MIN_CHANNELS} input channels"
    )
    for size in args.sizes:
        h, w = round(size * 3 / 4), size
        print(f"input {h}x{w}")
        for cin, cout, stride in [(128, 256, 4), (256, 256, 4), (256, 512, 8), (512, 512, 8), (512, 512, 16)]:
            conv = torch.nn.Conv2d(cin, cout, 3, padding=1).requires_grad_(False).to(memory_format=torch.channels_last)
            x = torch.randn(1, cin, h // stride, w // stride).contiguous(memory_format=torch.channels_last)
            x.requires_grad_()
            grad = torch.randn(1, cout, h // stride, w // stride).contiguous(memory_format=torch.channels_last)

            def step(layer: torch.nn.Module, x: torch.Tensor = x, grad: torch.Tensor = grad) -> None:
                torch.autograd.grad(layer(x), x, grad)

            times = {}
            for name, layer in (("direct", conv), ("winograd", winograd.WinogradConv2d.of(conv))):
                step(layer)  # warm-up: oneDNN picks its kernel, Winograd transforms its weights
                times[name] = min(timed(lambda layer=layer: step(layer)) for _ in range(args.rounds))
            gflops = 2 * 2 * 9 * cin * cout * x.shape[-2] * x.shape[-1] / times["direct"] / 1e9
            print(
                f"  {cin:>3}->{cout:<3} on {x.shape[-2]:>3}x{x.shape[-1]:<3}: direct {times['direct'] * 1e3:6.1f} ms "
                f"({gflops:3.0f} GFLOP/s)  winograd {times['winograd'] * 1e3:6.1f} ms  "
                f"{times['direct'] / times['winograd']:.2f}x",
                flush=True,
            )


# ---------------------------------------------------------------- item 4: memory


def memory_child(size: int, layers: str, optimizer: str, history: int, steps: int, live: bool) -> dict[str, Any]:
    rss0 = rss_mib()
    cfg = make_cfg(
        size, layers, f"optimizer={optimizer}", *([f"optimizer.history_size={history}"] if optimizer == "lbfgs" else [])
    )
    reset_peak()
    module = build(cfg, targets=False)
    if not live:
        runtime.configure(
            RuntimeSettings()
        )  # as stylize.run does once the weights are loaded: freed blocks are kept for reuse
    est = estimate_for(
        cfg,
        tuple(module.image.shape[-2:]),
        style_hw(module),
        heap_block_limit=0 if live else RuntimeSettings().heap_block_limit("cpu"),
        fast_convs=winograd.runs_on("cpu"),
    )
    start = time.perf_counter()
    fit(module, None, 10**6, max_steps=steps)
    return {
        "size": list(module.image.shape[-2:]),
        "peak_mib": rss_mib("VmHWM") - rss0,
        "baseline_mib": rss0,
        "estimate": est.parts,
        "evaluations": module.evaluations,
        "seconds": time.perf_counter() - start,
    }


def memory(args: argparse.Namespace) -> None:
    print(f"== peak memory of a stylize run (VGG19, layers={args.layers}, fp32, batch 1)\nmachine: {machine()}")
    print(
        "measured = peak resident memory of a fresh process during build + fit, less its resident memory after"
        " imports; L-BFGS runs history+2 steps so that its history is full"
    )
    if args.live:
        print(
            "--live: glibc's mmap threshold fixed at 64 KiB, so freed tensors leave the process at once and the"
            " peak is that of live tensors (what torch.cuda.max_memory_allocated reports on a GPU)"
        )
    print(f"{'size':>9} {'optimizer':>14} {'measured MiB':>12} {'estimate MiB':>12} {'error':>6}  estimate parts (MiB)")
    for size in args.sizes:
        for optimizer in ("lbfgs", "adam"):
            steps = args.history + 2 if optimizer == "lbfgs" else 3
            r = run_child(
                "memory",
                env=LIVE_MALLOC if args.live else None,
                size=size,
                layers=args.layers,
                optimizer=optimizer,
                history=args.history,
                steps=steps,
                live=args.live,
            )
            est = sum(r["estimate"].values()) / 2**20
            name = f"lbfgs(h={args.history})" if optimizer == "lbfgs" else "adam"
            parts = ", ".join(f"{k} {v / 2**20:.0f}" for k, v in r["estimate"].items())
            print(
                f"{r['size'][0]:>4}x{r['size'][1]:<4} {name:>14} {r['peak_mib']:12.0f} {est:12.0f} "
                f"{(est - r['peak_mib']) / r['peak_mib']:+6.0%}  {parts}",
                flush=True,
            )
        h, w = r["size"]
        print(
            f"{'':10} L-BFGS history costs 2 x history x {3 * h * w} pixels x 4 B = {8 * 3 * h * w / 2**20:.1f} MiB per"
            f" entry: {args.history * 8 * 3 * h * w / 2**20:.0f} MiB at history {args.history},"
            f" {100 * 8 * 3 * h * w / 2**20:.0f} MiB at 100 (the default)"
        )
    print(f"process baseline (imports) {r['baseline_mib']:.0f} MiB, not counted; load average after: {load()}")


# ---------------------------------------------------------------- issue 16 item 2: what each memory part buys

SWITCHES = {  # variant: (runtime.keep_freed_memory, runtime.winograd); None: the plain baseline
    "default": (True, True),
    "keep_freed_memory=false": (False, True),
    "winograd=false": (True, False),
    "both false": (False, False),
    "plain baseline": None,
}


def switches_child(size: int, layers: str, history: int, steps: int, variant: str) -> dict[str, Any]:
    """Peak memory and seconds per evaluation of ``steps`` L-BFGS steps in this fresh process: the stylize
    run with ``variant``'s runtime switches, or ``PlainGatys`` driven by the same L-BFGS."""
    rss0 = rss_mib()
    switches = SWITCHES[variant] or (False, False)
    cfg = make_cfg(
        size,
        layers,
        f"optimizer.history_size={history}",
        f"runtime.keep_freed_memory={str(switches[0]).lower()}",
        f"runtime.winograd={str(switches[1]).lower()}",
    )
    s = StyleSettings.from_cfg(cfg)
    torch.manual_seed(cfg.seed)
    module, _ = stylize.build(s)
    hw = tuple(module.image.shape[-2:])
    est = s.memory.estimate(hw, style_hw(module))
    if SWITCHES[variant] is None:
        plain = PlainGatys(module)
        module.perceptual.encoder = None  # the baseline holds its own VGG
        opt = module.optimizer_settings
        lbfgs = torch.optim.LBFGS(
            [module.image], lr=opt.lr, max_iter=1, max_eval=25, history_size=history, line_search_fn=opt.line_search
        )
        evaluations = [0]

        def closure() -> float:
            evaluations[0] += 1
            return plain.evaluate()

        reset_peak()
        points = []
        start = time.perf_counter()
        for _ in range(steps):
            lbfgs.step(closure)
            points.append((time.perf_counter() - start, evaluations[0]))
    else:
        runtime.configure(s.runtime)  # as stylize.run does once the weights are loaded
        reset_peak()
        points = [(p[0], p[1]) for p in fit(module, None, 10**6, max_steps=steps).points]
    (t0, e0), (t1, e1) = points[0], points[-1]
    return {
        "size": list(hw),
        "peak_mib": rss_mib("VmHWM") - rss0,
        "baseline_mib": rss0,
        "estimate_mib": est.peak_bytes / 2**20 if SWITCHES[variant] else None,
        "s_per_eval": (t1 - t0) / max(1, e1 - e0),
    }


def switches(args: argparse.Namespace) -> None:
    """Each memory part a stylize run adds over the plain baseline, with its switch and what it buys in speed."""
    print(
        f"== memory and speed by runtime switch (VGG19, layers={args.layers}, L-BFGS history {args.history},"
        f" {args.history + 2} steps, fp32)\nmachine: {machine()}"
    )
    print(
        "peak = peak resident memory of a fresh process during build + fit, less its resident memory after imports;"
        " s/eval after the first step; plain baseline = PlainGatys (whole vgg19().features, hooks, style features"
        " re-extracted per evaluation) under the same L-BFGS"
    )
    print(
        f"{'size':>9} {'variant':>24} {'peak MiB':>8} {'vs plain':>8} {'estimate':>8} {'error':>6}"
        f" {'s/eval':>7} {'vs default':>10}"
    )
    for size in args.sizes:
        rows = {
            v: run_child(
                "switches", size=size, layers=args.layers, history=args.history, steps=args.history + 2, variant=v
            )
            for v in SWITCHES
        }
        plain, default = rows["plain baseline"], rows["default"]
        for v, r in rows.items():
            est = r["estimate_mib"]
            print(
                f"{r['size'][0]:>4}x{r['size'][1]:<4} {v:>24} {r['peak_mib']:8.0f}"
                f" {r['peak_mib'] / plain['peak_mib']:7.2f}x"
                + (f" {est:8.0f} {(est - r['peak_mib']) / r['peak_mib']:+6.0%}" if est else f" {'-':>8} {'':>6}")
                + f" {r['s_per_eval']:7.3f} {r['s_per_eval'] / default['s_per_eval']:9.2f}x",
                flush=True,
            )
    print(f"process baseline (imports) {plain['baseline_mib']:.0f} MiB, not counted; load average after: {load()}")


# ---------------------------------------------------------------- issue 16 item 3: per-step overhead


def plain_fit(module: stylize.StyleTransfer, steps: int) -> list[tuple[float, int]]:
    """The module's L-BFGS steps without Lightning: the same optimizer, losses and closure (``module.step``,
    as the video wing runs it), no loop, hooks or logging. Returns (seconds, evaluations) after every step."""
    module.on_fit_start()
    optimizer = module.configure_optimizers()
    start, points = time.perf_counter(), []
    for _ in range(steps):
        module.step(optimizer, Tensor.backward)
        float(module.last_losses["loss/total"])  # as the Trace callback reads the loss after each Lightning step
        points.append((time.perf_counter() - start, module.evaluations))
    return points


def overhead(args: argparse.Namespace) -> None:
    """Lightning fit (the module's training_step, its scalars written to TensorBoard every step) against a plain
    loop running the same steps (``module.step``: the same closure and evaluations), interleaved A, B, A, B in
    one process. Both sides take the same sequence of steps, so their step times compare like with like: the
    figure is the median step time over every step after the first of every round, which a descheduled thread
    in one step does not move (a mean over a run of 1.5 s moves by several percent)."""
    runtime.configure(RuntimeSettings())
    print(
        f"== per-step overhead: Lightning fit vs a plain PyTorch loop, L-BFGS, VGG19 {args.layers}"
        f"\nmachine: {machine()}"
    )
    print(
        f"{'size':>9} {'steps':>5} {'evals':>5} {'lightning ms/step':>17} {'plain ms/step':>13} {'ratio':>6}"
        f" {'difference':>10}  per-round ratio of mean step times"
    )
    for size in args.sizes:
        # About 1.5 s of evaluations per run at every size: a few ms per step resolve at small sizes.
        steps = args.evals or max(8, 40 * 64 // size)
        times: dict[str, list[float]] = {"lightning": [], "plain": []}
        means: dict[str, list[float]] = {"lightning": [], "plain": []}
        evaluations: dict[str, set[int]] = {"lightning": set(), "plain": set()}
        for _ in range(args.rounds):
            for name in ("lightning", "plain"):
                module = build(make_cfg(size, args.layers), targets=False)
                if name == "lightning":
                    with tempfile.TemporaryDirectory() as tmp:  # the run's TensorBoard logger, writing every step
                        tb = RunLogger(save_dir=tmp, name="tensorboard", version="", default_hp_metric=False)
                        points = [(p[0], p[1]) for p in fit(module, None, 10**6, max_steps=steps, logger=tb).points]
                else:
                    points = plain_fit(module, steps)
                durations = [b[0] - a[0] for a, b in zip(points, points[1:])]
                times[name] += durations
                means[name].append(sum(durations) / len(durations))
                evaluations[name].add(points[-1][1])
        med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
        h, w = module.image.shape[-2:]
        same = "" if evaluations["lightning"] == evaluations["plain"] else f" (evaluations differ: {evaluations})"
        print(
            f"{h:>4}x{w:<4} {steps:>5} {min(evaluations['plain']):>5} {med['lightning'] * 1e3:17.2f}"
            f" {med['plain'] * 1e3:13.2f} {med['lightning'] / med['plain']:5.3f}x"
            f" {(med['lightning'] - med['plain']) * 1e3:+8.2f}ms  "
            + " ".join(f"{a / b:.3f}" for a, b in zip(means["lightning"], means["plain"]))
            + f"; load {load()}{same}",
            flush=True,
        )


# ---------------------------------------------------------------- issue 16 item 5: torch.compile on CPU

COMPILE_VARIANTS = {  # variant: (runtime.winograd, torch.compile of module.losses)
    "eager": (True, False),
    "compiled": (True, True),
    "eager, winograd=false": (False, False),
    "compiled, winograd=false": (False, True),
}


def compile_child(size: int, layers: str, steps: int, variant: str) -> dict[str, Any]:
    """``steps`` L-BFGS steps of the Lightning fit in this fresh process, with ``module.losses`` (VGG to
    the deepest layer, Gram matrices, losses; the backward follows) compiled by inductor or not."""
    fast_convs, compiled = COMPILE_VARIANTS[variant]
    cfg = make_cfg(size, layers, f"runtime.winograd={str(fast_convs).lower()}")
    runtime.configure(checks.runtime_settings(cfg))
    module = build(cfg, targets=False)
    if compiled:
        module.losses = torch.compile(module.losses)
    points = fit(module, None, 10**6, max_steps=steps).points
    (t0, e0), (t1, e1) = points[0][:2], points[-1][:2]
    return {"size": list(module.image.shape[-2:]), "first_s": t0, "s_per_eval": (t1 - t0) / max(1, e1 - e0)}


def compiled(args: argparse.Namespace) -> None:
    """Whether inductor's compiled loss graph beats the eager one per evaluation, and what compiling costs."""
    print(
        f"== torch.compile(module.losses) (inductor) vs eager, L-BFGS, VGG19 {args.layers}, {args.steps} steps,"
        f" {args.rounds} fresh processes each\nmachine: {machine()}"
    )
    print(f"{'size':>9} {'variant':>26} {'s/eval':>7} {'vs eager':>8} {'first step s':>12} {'compile s':>9}  rounds")
    for size in args.sizes:
        rows: dict[str, list[dict[str, Any]]] = {v: [] for v in COMPILE_VARIANTS}
        for _ in range(args.rounds):  # interleaved, so that a change in load hits every variant alike
            for v in COMPILE_VARIANTS:
                rows[v].append(run_child("compile", size=size, layers=args.layers, steps=args.steps, variant=v))
        med = {
            v: {k: sorted(r[k] for r in rs)[len(rs) // 2] for k in ("first_s", "s_per_eval")} for v, rs in rows.items()
        }
        h, w = rows["eager"][0]["size"]
        for v, m in med.items():
            eager = med["eager" if COMPILE_VARIANTS[v][0] else "eager, winograd=false"]
            print(
                f"{h:>4}x{w:<4} {v:>26} {m['s_per_eval']:7.3f} {m['s_per_eval'] / eager['s_per_eval']:7.2f}x"
                f" {m['first_s']:12.1f} {m['first_s'] - eager['first_s'] if COMPILE_VARIANTS[v][1] else 0:9.1f}  "
                + " ".join(f"{r['s_per_eval']:.3f}" for r in rows[v]),
                flush=True,
            )
    print(
        "s/eval after the first step; compile s = first step compiled minus first step eager (same convolutions);"
        f" load average after: {load()}"
    )


# ---------------------------------------------------------------- item 5: mixed precision


def precision(args: argparse.Namespace) -> None:
    runtime.configure(RuntimeSettings())
    print(f"== bf16-mixed against fp32\nmachine: {machine()}")
    amx = "AMX" in torch.backends.cpu.get_cpu_capability()
    if not (torch.cuda.is_available() or amx or args.force):
        print(
            "skipped: no CUDA device and no AMX on this CPU (capability "
            f"{torch.backends.cpu.get_cpu_capability()}); bf16 would run on emulated paths, slower than fp32"
        )
        return
    results = {}
    for prec in ("32", "bf16-mixed"):
        module = build(make_cfg(args.size, args.layers), targets=False)
        start = time.perf_counter()
        fit(module, None, 10**6, max_steps=args.steps, precision=prec)
        results[prec] = (time.perf_counter() - start, module.evaluations, float(module.last_losses["loss/total"]))
    for prec, (seconds, evals, loss) in results.items():
        print(
            f"{prec:>10}: {args.steps} steps, {evals} evaluations in {seconds:.1f}s ({seconds / evals:.3f} s/evaluation),"
            f" final loss {loss:.6g}"
        )
    (t32, e32, l32), (t16, e16, l16) = results.values()
    print(
        f"bf16-mixed: {(t32 / e32) / (t16 / e16):.2f}x the speed per evaluation, final loss {(l16 - l32) / l32:+.2%} vs fp32"
    )


# ---------------------------------------------------------------- entry point


def child(section: str, kwargs: str) -> None:
    torch.set_num_threads(int(os.environ["BENCH_THREADS"]))
    result = {"speed": speed_child, "memory": memory_child, "switches": switches_child, "compile": compile_child}[
        section
    ](**json.loads(kwargs))
    print(json.dumps(result))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        return child(sys.argv[2], sys.argv[3])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--threads",
        type=int,
        default=torch.get_num_threads(),
        help="intra-op threads; on a shared CPU fewer threads than cores can be faster",
    )
    parser.add_argument(
        "--weights",
        default="null",
        help="model.weights: null (random, the default), IMAGENET1K_V1 (torchvision's cache) or a state-dict file",
    )
    sections = parser.add_subparsers(dest="section", required=True)
    p = sections.add_parser("speed", help="s/evaluation, FLOP lower bound, plain baseline, peak memory")
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    p.add_argument("--layers", nargs="+", default=["gatys", "seed"])
    p.add_argument("--rounds", type=int, default=7, help="timed evaluations after one warm-up")
    p.add_argument("--no-baseline", dest="baseline", action="store_false", help="skip the plain implementation")
    p.add_argument(
        "--apart-from",
        type=int,
        default=2048,
        help="from this size, time ours and the plain implementation in separate processes (memory)",
    )
    p.set_defaults(run=speed)
    p = sections.add_parser("convs", help="per VGG conv shape: Winograd vs the direct convolution")
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    p.add_argument("--rounds", type=int, default=7)
    p.set_defaults(run=convs)
    p = sections.add_parser("quality", help="time to the single-scale loss: coarse-to-fine schedules")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--layers", default="gatys")
    p.add_argument("--evals", type=int, default=300, help="single-scale evaluations that set the target loss")
    p.add_argument(
        "--schedules",
        nargs="*",
        default=["128:150/256:60/100", "256:100/100"],
        help="coarse scales SIZE:STEPS separated by /, then the L-BFGS history size",
    )
    p.set_defaults(run=quality)
    p = sections.add_parser("memory", help="peak memory vs estimate at several sizes, L-BFGS and Adam")
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    p.add_argument("--layers", default="gatys")
    p.add_argument("--history", type=int, default=10, help="L-BFGS history size (its cost is printed for 100 too)")
    p.add_argument("--live", action="store_true", help="measure live tensors: no heap retention by malloc")
    p.set_defaults(run=memory)
    p = sections.add_parser("switches", help="memory and speed with each runtime switch off, vs the plain baseline")
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    p.add_argument("--layers", default="gatys")
    p.add_argument("--history", type=int, default=10, help="L-BFGS history size (the same for every variant)")
    p.set_defaults(run=switches)
    p = sections.add_parser("overhead", help="Lightning fit vs a plain loop doing the same evaluations (issue 16)")
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 512])
    p.add_argument("--layers", default="gatys")
    p.add_argument("--evals", type=int, default=None, help="L-BFGS steps per run (default: 40 at 64 px, fewer above)")
    p.add_argument("--rounds", type=int, default=5)
    p.set_defaults(run=overhead)
    p = sections.add_parser("compile", help="torch.compile of the loss graph (inductor) vs eager on this CPU")
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    p.add_argument("--layers", default="gatys")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--rounds", type=int, default=3)
    p.set_defaults(run=compiled)
    p = sections.add_parser("precision", help="bf16-mixed vs fp32 speed and final loss (CUDA or AMX)")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--layers", default="gatys")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--force", action="store_true", help="run even without CUDA or AMX (a functional check)")
    p.set_defaults(run=precision)
    args = parser.parse_args()
    os.environ["BENCH_THREADS"] = str(args.threads)  # children inherit both
    os.environ["BENCH_WEIGHTS"] = args.weights
    torch.set_num_threads(args.threads)
    args.run(args)


if __name__ == "__main__":
    main()
