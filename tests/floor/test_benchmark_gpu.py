"""The GPU benchmark's CPU fallback runs end to end, so that the device run cannot fail on a typo."""

from __future__ import annotations

import subprocess
import sys

import pytest

from helpers import ROOT


@pytest.mark.slow
def test_the_gpu_benchmark_runs_its_cpu_fallback() -> None:
    # torch.compile is left out: tracing VGG with its Winograd convolutions takes over a minute on 2 cores.
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "benchmark_gpu.py"), "--cpu", "--skip", "compile"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    for section in ("== 1. style transfer", "bf16-mixed vs fp32", "== 3. peak memory", "resnet50", "== 5.", "AdaIN"):
        assert section in out.stdout
