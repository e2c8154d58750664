"""Issue 30 item 1-2: the default (``runtime.winograd=auto``) beside each fixed choice, neural-style-pt and a
straightforward optimized implementation, side by side: seconds per L-BFGS evaluation and whole-process peak
resident memory, every run in a fresh process, interleaved, the median of ``--repeats``.

neural-style-pt (ProGamerGov, the most used PyTorch port of Johnson's neural-style) runs from a checkout
outside this repository (``--neural-style-pt DIR``; ``git clone https://github.com/ProGamerGov/neural-style-pt``)
unchanged: its ``neural_style.py`` is run as a script with our random VGG19 weights written in its file
format, the seed's layers, denormals flushed and the same L-BFGS history; only ``torch.optim.LBFGS`` is
wrapped, to stamp each evaluation. It drives L-BFGS without a line search (its own choice), which changes
how many evaluations a step takes, not what one costs.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import runpy
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models import vgg19

from bench.common import load, machine, rss_mib
from bench.stylize.runs import CONTENT, STYLE, fit, layer_sets, make_cfg, run_child
from transferlab import backbone, conv_choice, runtime
from transferlab.style import estimate
from transferlab.style import task as stylize
from transferlab.style.settings import StyleSettings

# The project's variants: runtime overrides of each. "default" times its layer shapes (a first run on this
# machine, with a cache of its own); "rerun" reads what it recorded, as every later run does.
OURS = {
    "default": (),
    "rerun": (),
    "winograd=true": ("runtime.winograd=true",),
    "winograd=false": ("runtime.winograd=false",),
    "keep_freed=false": ("runtime.keep_freed_memory=false",),
    "both false": ("runtime.winograd=false", "runtime.keep_freed_memory=false"),
}
OPTIMIZED, PEER = "optimized", "neural-style-pt"
# Every run makes its evaluations: random weights can leave gradients below torch's convergence tolerances.
EVERY_STEP = ("task.stop_at_convergence=false", "optimizer.tolerance_grad=0", "optimizer.tolerance_change=0")


class OptimizedGatys:
    """The loss as a careful hand-written script computes it: VGG19 cut after the deepest layer in use, its
    ReLUs in place, NCHW, the targets computed once without a gradient, each Gram matrix one ``mm``. It loads
    the project's encoder weights and computes the project's loss."""

    def __init__(self, module: Any) -> None:
        p = module.perceptual
        self.p, self.image, self.normalize = p, module.image, module.encoder.normalize
        names = backbone.layer_names("vgg19")
        wanted = {*p.content_layers, *p.style_layers}
        self.depth = max(names.index(n) for n in wanted) + 1
        with torch.device("meta"):  # no classifier allocated, nor weights initialized only to be overwritten
            self.net = vgg19().features[: self.depth].eval().requires_grad_(False)
        self.net.to_empty(device="cpu")
        missing = self.net.load_state_dict(module.encoder.stack.state_dict(), strict=False).missing_keys
        assert not missing, missing
        for layer in self.net:
            if isinstance(layer, torch.nn.ReLU):
                layer.inplace = True
        self.at = {i: n for i, n in enumerate(names[: self.depth]) if n in wanted}
        with torch.no_grad():
            content = self.features(module.scene.content.unsqueeze(0))
            style = self.features(module.scene.styles[0].unsqueeze(0))
        self.content_targets = {n: content[n] for n in p.content_layers}
        self.style_targets = {n: self.gram(style[n]) for n in p.style_layers}

    def features(self, image: Tensor) -> dict[str, Tensor]:
        x, out = self.normalize(image), {}
        for i, layer in enumerate(self.net):
            x = layer(x)
            if i in self.at:
                out[self.at[i]] = x
        return out

    @staticmethod
    def gram(x: Tensor) -> Tensor:
        flat = x.flatten(2)[0]
        return flat @ flat.t() / flat.shape[1]

    def evaluate(self) -> Tensor:
        p, image = self.p, self.image
        f = self.features(image)
        content = sum(w * F.mse_loss(f[n], self.content_targets[n]) for n, w in p.content_layers.items())
        style = sum(w * F.mse_loss(self.gram(f[n]), self.style_targets[n]) for n, w in p.style_layers.items())
        tv = (image[..., 1:, :] - image[..., :-1, :]).pow(2).mean() + (image[..., 1:] - image[..., :-1]).pow(2).mean()
        return p.content_weight * content + p.style_weight * style + p.tv_weight * tv


def per_evaluation(stamps: list[float], warmup: int) -> float:
    """Seconds per evaluation from the start times of consecutive evaluations, the first ``warmup`` left out."""
    return (stamps[-1] - stamps[warmup]) / (len(stamps) - 1 - warmup)


def peers_child(
    size: int, history: int, evals: int, variant: str, peer: list[str] | None, cache: str
) -> dict[str, Any]:
    """One implementation for ``evals`` evaluations in this fresh process: its seconds per evaluation after the
    first, and this process's peak resident memory (imports included, as a user's process has them).
    ``peer``: neural-style-pt's checkout and the weights file written for it; ``cache``: the user cache folder
    (``runtime.winograd=auto``'s choices: "default" writes them, "rerun" reads them)."""
    imports = rss_mib()
    if variant == PEER:
        torch.set_flush_denormal(True)
        seconds, hw = neural_style_pt(Path(peer[0]), Path(peer[1]), size, history, evals), None
    else:
        Path(cache).mkdir(exist_ok=True)
        os.environ["XDG_CACHE_HOME"] = cache if variant in ("default", "rerun") else tempfile.mkdtemp(dir=cache)
        if variant == "default":
            conv_choice.cache_file().unlink(missing_ok=True)  # each repeat a first run
        overrides = OURS.get(variant, ("runtime.winograd=false",))
        cfg = make_cfg(size, "seed", *EVERY_STEP, f"optimizer.history_size={history}", *overrides)
        s = StyleSettings.from_cfg(cfg)
        torch.manual_seed(cfg.seed)
        module, _ = stylize.build(s)
        hw = list(module.image.shape[-2:])
        if variant in OURS:
            runtime.configure(s.runtime)  # as stylize.run does once the weights are loaded
            stamps: list[float] = []
            losses = module.losses

            def stamped() -> dict[str, Tensor]:
                # what each evaluation of the closure computes (a repeated point is answered from its cache)
                stamps.append(time.perf_counter())
                return losses()

            module.losses = stamped
            fit(module, None, evals + 1)
            seconds = per_evaluation(stamps, 1)
        else:
            torch.set_flush_denormal(True)  # the one process setting every implementation gets
            seconds = optimized(module, s, evals)
    return {
        "size": hw,
        "s_per_eval": seconds,
        "peak_mib": rss_mib("VmHWM"),
        "imports_mib": imports,
        "calibration_s": conv_choice._spent,
    }


def optimized(module: Any, s: StyleSettings, evals: int) -> float:
    """``OptimizedGatys`` under torch's L-BFGS with the run's settings; the project's module is dropped first."""
    impl = OptimizedGatys(module)
    del module
    opt = s.optimizer
    lbfgs = torch.optim.LBFGS(
        [impl.image], lr=opt.lr, max_iter=1, history_size=opt.history_size, line_search_fn=opt.line_search
    )
    stamps: list[float] = []

    def closure() -> Tensor:
        stamps.append(time.perf_counter())
        impl.image.grad = None
        loss = impl.evaluate()
        loss.backward()
        return loss

    while len(stamps) <= evals:
        lbfgs.step(closure)
    return per_evaluation(stamps, 1)


def neural_style_pt(peer: Path, weights: Path, size: int, history: int, evals: int) -> float:
    """The peer's script, unchanged, on ``weights`` (our encoder's, in its file format)."""
    stamps: list[float] = []

    class StampedLBFGS(torch.optim.LBFGS):
        def step(self, closure: Any) -> Any:
            def stamped() -> Any:
                stamps.append(time.perf_counter())
                return closure()

            return super().step(stamped)

    torch.optim.LBFGS = StampedLBFGS
    sys.argv = ["neural_style.py", "-gpu", "c", "-image_size", str(size)]
    sys.argv += ["-num_iterations", str(evals + 1), "-lbfgs_num_correction", str(history), "-init", "image"]
    sys.argv += ["-print_iter", "0", "-save_iter", "0", "-seed", "0", "-model_file", str(weights), "-disable_check"]
    sys.argv += ["-content_image", str(CONTENT), "-style_image", str(STYLE), "-output_image", str(weights) + ".png"]
    sys.argv += ["-content_layers", "relu4_2", "-style_layers", "relu1_2,relu2_2,relu3_3,relu4_3"]
    os.chdir(peer)
    sys.path.insert(0, str(peer))
    with contextlib.redirect_stdout(io.StringIO()):  # its progress lines; our result is the last line
        runpy.run_path("neural_style.py", run_name="__main__")
    return per_evaluation(stamps, 1)


def peer_weights(folder: Path) -> Path:
    """Our encoder's random weights as neural-style-pt loads them (its loader picks the architecture by name)."""
    cfg = make_cfg(64, "seed")
    torch.manual_seed(cfg.seed)
    module, _ = stylize.build(StyleSettings.from_cfg(cfg))
    path = folder / "vgg19-random.pth"
    torch.save({f"features.{k}": v for k, v in module.encoder.stack.state_dict().items()}, path)
    return path


def peers(args: argparse.Namespace) -> None:
    """Every implementation at every size, each run in a fresh process, the repeats interleaved."""
    print(
        f"== the default beside each fixed choice and the peers (VGG19, the seed's layers, fp32, L-BFGS history"
        f" {args.history}, {args.evals} evaluations after the first, median of {args.repeats} interleaved runs)"
        f"\nmachine: {machine()}"
    )
    variants = [*args.variants, OPTIMIZED]
    if args.neural_style_pt:
        variants.append(PEER)
    else:
        print(f"{PEER}: not timed (--neural-style-pt DIR: git clone https://github.com/ProGamerGov/neural-style-pt)")
    with tempfile.TemporaryDirectory() as tmp:
        peer = (
            [str(Path(args.neural_style_pt).resolve()), str(peer_weights(Path(tmp)))] if args.neural_style_pt else None
        )
        runs: dict[tuple[int, str], list[dict[str, Any]]] = {}
        rates: list[float] = []
        for _ in range(args.repeats):
            for size in args.sizes:
                for v in variants:
                    if v in (OPTIMIZED, PEER) and size not in args.peer_sizes:
                        continue
                    runs.setdefault((size, v), []).append(
                        run_child(
                            "peers",
                            size=size,
                            history=args.history,
                            evals=args.evals,
                            variant=v,
                            peer=peer,
                            cache=str(Path(tmp) / f"cache{size}"),
                        )
                    )
                rates.append(max(estimate.conv_throughput(channels_last=c, repeats=5) for c in (False, True)))
    rate = max(rates)
    print(
        f"bound = the direct convolutions' and Gram matrices' FLOPs at the best conv throughput measured between"
        f" the runs ({rate / 1e9:.0f} GFLOP/s, fp32 256->256 3x3 on 128x128); timing s = the default's first-run cost"
        f" of timing each layer shape (zero on later runs)"
    )
    print(report(args, variants, runs, rate))
    print(f"load average after: {load()}")


def report(args: argparse.Namespace, variants: list[str], runs: dict, rate: float) -> str:
    """Two tables over the same runs: seconds per evaluation with the ratios the issue sets targets on, then
    peak memory against the optimized implementation."""
    content, style = layer_sets(make_cfg(args.sizes[0], "seed"))
    short = {PEER: "ns-pt"}  # column heads
    speed = [f"{'size':>9} {'bound':>6}" + "".join(f" {short.get(v, v):>9.9}" for v in variants)]
    speed[0] += f" {'default/bound':>13} {'fixed/default':>13} {'ns-pt/default':>13} {'timing s':>8}"
    memory = [f"{'size':>9}" + "".join(f" {short.get(v, v):>9.9}" for v in variants)]
    memory[0] += f" {'default/optimized':>17} {'rerun/optimized':>15}"
    for size in args.sizes:
        got = {v: runs[(size, v)] for v in variants if (size, v) in runs}
        med = {v: statistics.median(r["s_per_eval"] for r in rs) for v, rs in got.items()}
        peak = {v: statistics.median(r["peak_mib"] for r in rs) for v, rs in got.items()}
        h, w = got["default"][0]["size"]
        bound = estimate.evaluation_flops("vgg19", content + style, style, h, w) / rate
        default = med["default"]
        line = f"{h:>4}x{w:<4} {bound:6.3f}" + "".join(
            f" {med[v]:9.3f}" if v in med else f" {'-':>9}" for v in variants
        )
        fixed = [med[v] for v in ("winograd=true", "winograd=false") if v in med]
        line += f" {default / bound:12.2f}x" + (f" {min(fixed) / default:12.2f}x" if fixed else f" {'-':>13}")
        line += f" {med[PEER] / default:12.2f}x" if PEER in med else f" {'-':>13}"
        speed.append(line + f" {statistics.median(r['calibration_s'] for r in got['default']):8.2f}")
        line = f"{h:>4}x{w:<4}" + "".join(f" {peak[v]:9.0f}" if v in peak else f" {'-':>9}" for v in variants)
        if OPTIMIZED in peak:
            line += f" {peak['default'] / peak[OPTIMIZED]:16.2f}x"
            line += f" {peak['rerun'] / peak[OPTIMIZED]:14.2f}x" if "rerun" in peak else f" {'-':>15}"
        memory.append(line)
    imports = statistics.median(r["imports_mib"] for rs in runs.values() for r in rs)
    return "\n".join(
        [
            "seconds per evaluation (ns-pt: neural-style-pt; fixed: the faster of winograd=true and false):",
            *speed,
            f"peak resident memory of the whole process, MiB (of which about {imports:.0f} MiB is the imports):",
            *memory,
        ]
    )


HELP = "issue 30: the default vs each fixed choice, neural-style-pt and an optimized implementation"


def arguments(p: argparse.ArgumentParser) -> None:
    """The study's options on its subcommand, and the function that runs it."""
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 512, 1024, 2048])
    p.add_argument("--peer-sizes", type=int, nargs="+", default=[128, 256, 512, 1024], help="sizes the peers run at")
    p.add_argument("--history", type=int, default=100, help="L-BFGS history size, the same for every implementation")
    p.add_argument("--evals", type=int, default=5, help="timed evaluations per run, after the first")
    p.add_argument("--repeats", type=int, default=3, help="interleaved runs of each; the median is reported")
    p.add_argument(
        "--variants",
        nargs="+",
        choices=list(OURS),
        default=list(OURS),
        help="the project's variants to run (rerun reads what default recorded just before)",
    )
    p.add_argument("--neural-style-pt", metavar="DIR", help="a checkout of ProGamerGov/neural-style-pt")
    p.set_defaults(run=peers)
