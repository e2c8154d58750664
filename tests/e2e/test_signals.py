"""SIGTERM (a scheduler's stop, `kill`) during training is a stopped run, not a finished one (issue 32
item 8: it exited 0): one line naming it and where the run was left, exit 143, no traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import ROOT, TINY_DATA, make_image

pytestmark = pytest.mark.slow


def _terminate_when_training(args: list[str], run_dir: Path, tag: bytes, cwd: Path) -> tuple[int, str]:
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), *args, f"hydra.run.dir={run_dir}"],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not any(tag in p.read_bytes() for p in run_dir.glob("tensorboard/events*")):
        time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    return process.returncode, stderr


def test_sigterm_stops_stylize_and_train_fast_with_a_non_zero_exit(tmp_path: Path) -> None:
    content, style = make_image(tmp_path / "content.png"), make_image(tmp_path / "style.png", seed=3)
    stylize = [
        "model.weights=null",
        f"task.content={content}",
        f"task.style={style}",
        "task.size=32",
        "task.steps=100000",
        "trainer.accelerator=cpu",
    ]
    code, stderr = _terminate_when_training(stylize, tmp_path / "stylize", b"loss/total", tmp_path)
    assert code == 143 and "Traceback" not in stderr, stderr
    assert f"interrupted: SIGTERM: latest image {tmp_path / 'stylize' / 'final.png'}" in stderr
    assert "SIGTERM" in (tmp_path / "stylize" / "error.txt").read_text()

    for i in range(5):
        make_image(tmp_path / "photos" / f"{i}.png", size=(48, 40), seed=i)
    train = [
        "task=train_fast",
        f"data.root={tmp_path / 'photos'}",
        f"task.style={style}",
        *TINY_DATA,
        "task.steps=100000",
        "task.log_every=1",
        "task.style_size=32",
        "fastnet=light",
        "fastnet.width=0.25",
        "fastnet.blocks=1",
    ]
    code, stderr = _terminate_when_training(train, tmp_path / "fast", b"train/", tmp_path)
    assert code == 143 and "Traceback" not in stderr, stderr
    assert "interrupted: SIGTERM" in stderr and not (tmp_path / "fast" / "metrics.json").exists()
