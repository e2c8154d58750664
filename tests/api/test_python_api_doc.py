"""docs/python_api.md stays true: its Python blocks run in order in one namespace (in a fresh directory, as a
reader's notebook would), and each prints the output shown under it, numbers with a decimal point aside
(their digits depend on the machine). ``python tests/api/test_python_api_doc.py`` writes the outputs into
the page after a change."""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "python_api.md"
# A python block, and the text block right under it (its output), if any.
BLOCK = re.compile(r"```python\n(.*?)```\n(?:\n```text\n(.*?)```\n)?", re.S)
DECIMAL = re.compile(r"-?\d+\.\d+(?:e[-+]?\d+)?")


def run_blocks(doc: str) -> list[tuple[re.Match, str]]:
    """Each python block of ``doc`` with what it printed, run in order in one namespace."""
    namespace: dict = {"__name__": "__doc__"}
    ran = []
    for block in BLOCK.finditer(doc):
        printed = io.StringIO()
        start = time.process_time()
        with contextlib.redirect_stdout(printed):
            exec(compile(block.group(1), str(DOC), "exec"), namespace)
        print(f"{time.process_time() - start:.1f} s: {block.group(1).splitlines()[0]}", file=sys.stderr)
        ran.append((block, _without_bars(printed.getvalue())))
    return ran


def _without_bars(printed: str) -> str:
    """What a block printed, without Lightning's progress bars (lines redrawn with carriage returns and escapes)."""
    return "\n".join(line for line in printed.split("\n") if not re.search(r"[\r\x1b]", line))


def _same(expected: str, printed: str) -> bool:
    return DECIMAL.sub("#", expected) == DECIMAL.sub("#", printed)


@pytest.mark.slow  # a walkthrough: a stylization, a training, an ONNX export (about 20 s of CPU)
def test_the_python_api_page_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for block, printed in run_blocks(DOC.read_text()):
        expected = block.group(2)
        assert expected is None or _same(expected, printed), f"{block.group(1)}\nprinted:\n{printed}"
        assert expected is not None or not printed, f"{block.group(1)}\nprinted, but the page shows nothing:\n{printed}"


def write_outputs() -> None:
    """Run the page in a temporary directory and write each block's output under it."""
    doc = DOC.read_text()
    home = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            ran = run_blocks(doc)
        finally:
            os.chdir(home)
    parts, end = [], 0
    for block, printed in ran:
        parts.append(doc[end : block.start()])
        parts.append(f"```python\n{block.group(1)}```\n" + (f"\n```text\n{printed}```\n" if printed else ""))
        end = block.end()
    DOC.write_text("".join(parts) + doc[end:])


if __name__ == "__main__":
    sys.path[:0] = [str(ROOT / "src")]
    write_outputs()
