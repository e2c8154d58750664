"""A resume is checked before Lightning sees the checkpoint (issue 32, items 1 and 2): every crafted or
foreign file is one line naming it, and a checkpoint made with another style, network or layers is refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from helpers import make_image
from transferlab import main
from transferlab.errors import ConfigError, TransferLabError, WeightsError


class Payload:
    """Unpickling this would run a shell command; weights_only=True refuses to."""

    def __reduce__(self):
        return (os.system, ("touch /tmp/transferlab-pwned",))


def crafted(tmp_path: Path, name: str, trained: Path) -> Path:
    """The checkpoint ``name``: a file an attacker or a careless user could hand to ckpt_path."""
    path = tmp_path / f"{name}.ckpt"
    real = torch.load(trained / "checkpoints" / "step2.ckpt", weights_only=True)
    if name == "malicious":
        torch.save({"state_dict": Payload()}, path)
    elif name == "garbage":
        path.write_bytes(b"\x80\x02garbage" * 50)
    elif name == "plain_dict":
        torch.save({"state_dict": {}}, path)
    elif name == "other_family":  # what train_adain writes: its own record, not train_fast's
        real["train_adain"] = real.pop("train_fast")
        torch.save(real, path)
    elif name == "finetune":
        real["finetune"] = real.pop("train_fast")
        real["hyper_parameters"] = {"format": "transferlab.classifier/2", "arch": "resnet18"}
        torch.save(real, path)
    elif name == "no_loops":  # the right record, but not a checkpoint Lightning can resume from
        del real["loops"]
        torch.save(real, path)
    elif name == "other_shapes":  # the right record, tensors of another network
        key = next(k for k in real["state_dict"] if k.startswith("network.") and k.endswith("weight"))
        real["state_dict"][key] = torch.zeros(3, 3)
        torch.save(real, path)
    return path


@pytest.mark.parametrize(
    "name,error,message",
    [
        ("malicious", WeightsError, r"loads safely \(weights_only=True\): Trying to load unsupported GLOBAL"),
        ("garbage", WeightsError, r"not a readable PyTorch state dict"),
        ("plain_dict", WeightsError, r"not a checkpoint of a task=train_fast run .*not written by"),
        ("other_family", WeightsError, r"not written by a task=train_fast run"),
        ("finetune", WeightsError, r"not written by a task=train_fast run"),
        ("no_loops", WeightsError, r"not a full checkpoint \(loops missing or malformed\)"),
        ("other_shapes", WeightsError, r"has other shapes for tensors network\."),
    ],
)
def test_a_bad_checkpoint_to_resume_is_one_line(
    name, error, message, trained, train_cfg, photos, style_image, tmp_path
):
    path = crafted(tmp_path, name, trained)
    cfg = train_cfg(photos, style_image, "task.steps=4", f"ckpt_path={path}")
    with pytest.raises(error, match=message) as info:
        main.run_task(cfg, tmp_path / "run")
    text = str(info.value)
    assert "\n" not in text and str(path) in text
    assert "weights_only=False" not in text and "will likely succeed" not in text  # never that advice
    assert not Path("/tmp/transferlab-pwned").exists()
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize(
    "override,differs",
    [
        ("fastnet.width=0.5", "fastnet"),
        ("layers.style.relu1_2=5", "layers.style"),
        ("loss.style_weight=7", "loss"),
        ("data.crop=24", "data"),
        ("task.lr=0.5", "optimizer"),
        ("seed=3", "seed"),
    ],
)
def test_resume_with_other_settings_is_refused(override, differs, trained, train_cfg, photos, style_image, tmp_path):
    ckpt = trained / "checkpoints" / "step2.ckpt"
    cfg = train_cfg(photos, style_image, "task.steps=4", f"ckpt_path={ckpt}", override)
    with pytest.raises(ConfigError, match=rf"was made with other {differs}\b"):
        main.run_task(cfg, tmp_path)


def test_resume_with_another_style_or_photos_is_refused(trained, train_cfg, photos, style_image, tmp_path):
    ckpt = trained / "checkpoints" / "step2.ckpt"
    other_style = make_image(tmp_path / "other.png", size=(48, 48), seed=5)
    with pytest.raises(ConfigError, match=r"was made with other task.style\b"):
        main.run_task(train_cfg(photos, other_style, "task.steps=4", f"ckpt_path={ckpt}"), tmp_path / "a")
    more = tmp_path / "photos"
    for src in photos.rglob("*.png"):
        make_image(more / src.relative_to(photos), size=(48, 40))
    make_image(more / "set0" / "extra.png")
    with pytest.raises(ConfigError, match=r"was made with other data.files\b"):
        main.run_task(train_cfg(more, style_image, "task.steps=4", f"ckpt_path={ckpt}"), tmp_path / "b")


def test_resume_from_the_same_settings_and_more_steps_is_accepted(trained, train_cfg, photos, style_image, tmp_path):
    """Only task.steps (and the cadences, the workers) may change on a resume."""
    cfg = train_cfg(
        photos, style_image, "task.steps=5", "task.val_every=5", f"ckpt_path={trained / 'checkpoints' / 'last.ckpt'}"
    )
    try:
        main.run_task(cfg, tmp_path)
    except TransferLabError as exc:  # pragma: no cover - the assertion's message
        pytest.fail(str(exc))
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
