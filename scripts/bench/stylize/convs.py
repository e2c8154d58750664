"""Per VGG conv shape: Winograd against the direct convolution it replaces."""

from __future__ import annotations

import argparse

import torch

from bench.common import ALL_ON, machine, timed
from transferlab import runtime, winograd


def convs(args: argparse.Namespace) -> None:
    """Each VGG conv shape from conv3_1 on: Winograd (``winograd.WinogradConv2d``) against the direct
    convolution it replaces, forward plus input gradient, so that the channel threshold
    (``winograd.MIN_CHANNELS``) can be checked on another CPU."""
    runtime.configure(ALL_ON)
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


HELP = "per VGG conv shape: Winograd vs the direct convolution"


def arguments(p: argparse.ArgumentParser) -> None:
    """The study's options on its subcommand, and the function that runs it."""
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    p.add_argument("--rounds", type=int, default=7)
    p.set_defaults(run=convs)
