"""The same crafted checkpoints handed to every task that resumes from one (issue 32: rows = crafted inputs,
columns = tasks): each refused in one line naming the file, through the floor's one resume check, with no
pickle run and no advice to load unsafely."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from helpers import adain_train_cfg, make_image, stylize_cfg
from transferlab import main
from transferlab.classify import settings as classify_settings
from transferlab.errors import TransferLabError
from transferlab.style.settings import StyleSettings

MARKER = Path("/tmp/transferlab-resume-table-pwned")
LIGHTNING = {
    "pytorch-lightning_version": "2.6.6",
    "state_dict": {},
    "loops": {},
    "optimizer_states": [],
    "lr_schedulers": [],
    "global_step": 1,
    "epoch": 0,
}


class Payload:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


def write(kind: str, path: Path) -> Path:
    if kind == "malicious":
        torch.save({"state_dict": Payload()}, path)
    elif kind == "garbage":
        path.write_bytes(os.urandom(2048))
    elif kind == "plain_dict":
        torch.save({"state_dict": {}}, path)
    elif kind == "another_task":  # a full Lightning checkpoint, written by a task none of these is
        torch.save({**LIGHTNING, "video": {"fingerprint": {}}}, path)
    return path


def resume(task: str, path: Path, tmp_path: Path, photos: Path, styles: Path, style_image: Path, train_cfg) -> None:
    if task == "stylize":
        content = make_image(tmp_path / "content.png", size=(40, 32))
        StyleSettings.from_cfg(stylize_cfg(content, style_image, f"ckpt_path={path}"))
    elif task == "finetune":
        classify_settings.check_resume(path, "resnet18", ["ants", "bees"], {})
    elif task == "train_fast":
        main.run_task(train_cfg(photos, style_image, "task.steps=2", f"ckpt_path={path}"), tmp_path / "run")
    elif task == "train_adain":
        main.run_task(adain_train_cfg(photos, styles, f"ckpt_path={path}"), tmp_path / "run")


@pytest.mark.parametrize("task", ["stylize", "finetune", "train_fast", "train_adain"])
@pytest.mark.parametrize("kind", ["malicious", "garbage", "plain_dict", "another_task"])
def test_every_resuming_task_refuses_a_crafted_checkpoint_in_one_line(
    kind, task, tmp_path, photos, styles, style_image, train_cfg
):
    path = write(kind, tmp_path / f"{kind}.ckpt")
    with pytest.raises(TransferLabError) as error:
        resume(task, path, tmp_path, photos, styles, style_image, train_cfg)
    message = str(error.value)
    assert "\n" not in message and str(path) in message
    assert "weights_only=False" not in message and not MARKER.exists()
    assert not (tmp_path / "run" / "checkpoints").exists()
