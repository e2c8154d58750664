"""SIGTERM (a scheduler's stop, `kill`) during training is a stopped run, not a finished one (issue 32
item 8: it exited 0): one line naming it and where the run was left, exit 143, no traceback."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from helpers import TINY_DATA, interrupt_cli, logged, make_image

pytestmark = pytest.mark.slow


def terminate_when_logged(args: list[str], run_dir: Path, tag: bytes) -> tuple[int, str]:
    """A run into ``run_dir`` sent SIGTERM once it has logged ``tag`` (it is training): exit code, stderr."""
    ready = lambda: logged(run_dir, tag)  # noqa: E731
    return interrupt_cli(*args, f"hydra.run.dir={run_dir}", cwd=run_dir.parent, ready=ready, sig=signal.SIGTERM)


def test_sigterm_stops_stylize_and_train_fast_with_a_non_zero_exit(tmp_path: Path) -> None:
    content, style = make_image(tmp_path / "content.png"), make_image(tmp_path / "style.png", seed=3)
    stylize = [
        "model.weights=null",
        f"task.content={content}",
        f"task.style={style}",
        "task.size=32",
        "task.steps=100000",
        "task.stop_at_convergence=false",  # still running when the signal comes: a tiny run may converge early
        "trainer.accelerator=cpu",
    ]
    code, stderr = terminate_when_logged(stylize, tmp_path / "stylize", b"loss/total")
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
    code, stderr = terminate_when_logged(train, tmp_path / "fast", b"train/")
    assert code == 143 and "Traceback" not in stderr, stderr
    assert "interrupted: SIGTERM" in stderr and not (tmp_path / "fast" / "metrics.json").exists()
