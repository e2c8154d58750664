"""`python run.py task=apply_adain` and `task=train_adain` from the command line: bad input is one line and exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import make_image, run_cli


@pytest.mark.slow
def test_bad_apply_input_is_one_line(tmp_path: Path) -> None:
    image = make_image(tmp_path / "a.png")
    (tmp_path / "m.ckpt").write_bytes(b"")
    result = run_cli(
        "task=apply_adain",
        f"ckpt_path={tmp_path / 'm.ckpt'}",
        f"task.input={image}",
        f"task.style={image}",
        "task.alpha=2",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == "error: task.alpha=2.0 is invalid; it must be in [0, 1] (0 content, 1 full style)"


@pytest.mark.slow
def test_bad_light_width_is_one_line(tmp_path: Path) -> None:
    result = run_cli(
        "task=train_adain",
        f"data.root={tmp_path}",
        f"task.styles={tmp_path}",
        "task.encoder=light",
        "task.width=0",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "error: task.width=0 is invalid; it must be a number > 0"
