"""A full disk, the real way (issue 32 items 9 and 10): the run directory on a 5 MB tmpfs, filled for real,
not an OSError-raising fake. Whatever was writing (Hydra's .hydra/ at the start, a checkpoint, TensorBoard's
event writer in its thread), the run ends in one line naming where, exit 1, no traceback, and no truncated
checkpoint under its final name. Skipped where `mount -t tmpfs` is not permitted."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from pathlib import Path

import pytest
import torch

from helpers import TINY_DATA, make_image, start_cli, tmpfs

pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 5 MB tmpfs mounted at tmp_path / "disk", unmounted afterwards."""
    with tmpfs(tmp_path / "disk", "5m") as mount:
        yield mount


def fill(disk: Path, leave_kb: int) -> None:
    stat = os.statvfs(disk)
    with contextlib.suppress(OSError):  # the run took some of it meanwhile: the disk is full either way
        (disk / "filler").write_bytes(b"\0" * max(0, stat.f_bavail * stat.f_frsize - leave_kb * 1024))


def train_fast(tmp_path: Path, run_dir: Path, checkpoint_every: int) -> subprocess.Popen:
    for i in range(5):
        make_image(tmp_path / "photos" / f"{i}.png", size=(48, 40), seed=i)
    style = make_image(tmp_path / "style.png", seed=9)
    args = [
        "task=train_fast",
        f"data.root={tmp_path / 'photos'}",
        f"task.style={style}",
        *TINY_DATA,
        "task.steps=5000",
        "task.val_every=2",
        "task.log_every=1",
        f"task.checkpoint_every={checkpoint_every}",
        "task.style_size=32",
        "fastnet=light",
        "fastnet.width=0.25",
        "fastnet.blocks=1",
        f"hydra.run.dir={run_dir}",
    ]
    return start_cli(*args, cwd=tmp_path)


@pytest.mark.parametrize("case", ["start", "checkpoint", "events"])
def test_a_full_disk_is_one_line_and_leaves_no_truncated_checkpoint(small_disk: Path, tmp_path: Path, case: str):
    run_dir = small_disk / "run"
    if case == "start":  # not even room for .hydra/: Hydra's own write was a traceback
        fill(small_disk, 16)
    elif case == "checkpoint":  # room to start; the first checkpoint does not fit
        fill(small_disk, 300)
    process = train_fast(tmp_path, run_dir, checkpoint_every=2 if case == "checkpoint" else 0)
    if case == "events":  # fill it once training logs: TensorBoard's writer thread meets the full disk
        deadline = time.time() + 120
        while time.time() < deadline and not any(p.stat().st_size > 0 for p in run_dir.glob("tensorboard/events*")):
            time.sleep(0.2)
        fill(small_disk, 0)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 1 and "Traceback" not in stderr, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert f"error: no space left on device writing {run_dir}" in last and ".tmp" not in last, last
    for checkpoint in run_dir.rglob("*.ckpt"):
        torch.load(checkpoint, weights_only=True)  # complete, or not there at all
    assert not [p for p in run_dir.rglob("*") if p.name.endswith(".tmp")]
