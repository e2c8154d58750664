"""The benchmark package imports without touching process-wide settings (each command quiets output at its
start, not on import), and every benchmark command's parser answers ``--help``."""

from __future__ import annotations

import subprocess
import sys

import pytest

from helpers import ROOT

IMPORT_ALL = """
import sys, warnings
sys.path[:0] = [{scripts!r}, {src!r}]
import bench.adain, bench.finetune, bench.gpu, bench.scale, bench.steady, bench.stylize
import bench.text, bench.video, bench.web
blanket = [f for f in warnings.filters if f[0] == "ignore" and f[1] is None and f[2] is Warning]
assert not blanket, blanket
for name in ("stylize", "fast", "adain", "finetune", "video", "steady", "gpu", "scale", "text", "web"):
    sys.argv = [f"benchmark_{{name}}.py", "--help"]
    try:
        getattr(__import__(f"bench.{{name}}", fromlist=["x"]), "main_" if name == "finetune" else "main")()
    except SystemExit as exit:
        assert exit.code == 0, name
"""


@pytest.mark.slow  # a fresh interpreter importing torch, Lightning and ONNX: 10-15 s on a shared 2-core CPU
def test_benchmarks_import_without_warning_filters_and_parse_help() -> None:
    code = IMPORT_ALL.format(scripts=str(ROOT / "scripts"), src=str(ROOT / "src"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
