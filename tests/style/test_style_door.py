"""The stylize door refuses, in one line and before any work, what cannot run: sizes beyond memory,
non-finite numbers, bad or foreign checkpoints, resumes with other inputs, images too thin for VGG."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from helpers import make_image, stylize_cfg
from transferlab import main
from transferlab import memory as device_memory
from transferlab.errors import ConfigError, TransferLabError, WeightsError
from transferlab.style.module import NonFiniteLossError, StyleTransfer
from transferlab.style.settings import StyleSettings


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_an_explicit_size_beyond_the_devices_memory_is_refused(content_path, style_path, monkeypatch):
    monkeypatch.setattr(device_memory, "available_memory", lambda device: 2**30)
    with pytest.raises(ConfigError) as error:
        StyleSettings.from_cfg(stylize_cfg(content_path, style_path, size=6000))
    message = one_line(error)
    assert "task.size=6000" in message and "GiB available" in message
    assert "task.size=auto" in message and "task.tile=" in message and "task.memory_check=false" in message
    # The user may insist.
    settings = StyleSettings.from_cfg(stylize_cfg(content_path, style_path, "task.memory_check=false", size=6000))
    assert settings.size == 6000


@pytest.mark.parametrize(
    "override,key",
    [
        ("loss.style_weight=nan", "loss.style_weight"),
        ("loss.content_weight=inf", "loss.content_weight"),
        ("loss.tv_weight=1e400", "loss.tv_weight"),
        ("task.style_scale=nan", "task.style_scale"),
        ("layers.style.relu1_1=inf", "layers.style.relu1_1"),
    ],
)
def test_non_finite_numbers_are_refused(content_path, style_path, override, key):
    with pytest.raises(ConfigError, match="must be a finite number") as error:
        StyleSettings.from_cfg(stylize_cfg(content_path, style_path, override))
    assert key in one_line(error)


def test_non_finite_style_weights_are_refused(tmp_path, content_path, style_path):
    other = make_image(tmp_path / "other.png", seed=5)
    cfg = stylize_cfg(content_path, style_path, f"task.style=[{style_path},{other}]", "task.style_weights=[1,inf]")
    with pytest.raises(ConfigError, match=r"task.style_weights\[1\]=inf"):
        StyleSettings.from_cfg(cfg)


@pytest.mark.slow
def test_a_loss_that_becomes_non_finite_stops_the_run_and_keeps_the_last_finite_image(
    tmp_path, content_path, style_path, monkeypatch
):
    losses = StyleTransfer.losses

    def poisoned(self):
        terms = losses(self)
        if self.evaluations >= 3:
            terms["loss/total"] = terms["loss/total"] * float("nan")
        return terms

    monkeypatch.setattr(StyleTransfer, "losses", poisoned)
    with pytest.raises(NonFiniteLossError, match="the loss became nan") as error:
        main.run_task(stylize_cfg(content_path, style_path, "optimizer=adam", steps=6), tmp_path)
    one_line(error)
    final = tmp_path / "final.png"
    assert final.is_file()
    from transferlab import images

    assert torch.isfinite(images.load_image(final)).all()


def checkpoint_of_a_run(tmp_path: Path, content_path: Path, style_path: Path, *overrides: str) -> Path:
    main.run_task(stylize_cfg(content_path, style_path, "task.checkpoint_every=2", *overrides), tmp_path / "first")
    return next((tmp_path / "first" / "checkpoints").glob("step*.ckpt"))


class Exploit:
    def __reduce__(self):
        return (Path.touch, (Path("/tmp/transferlab-exploit-marker"),))


@pytest.mark.parametrize("kind", ["missing", "directory", "truncated", "png", "no keys", "finetune", "pickle"])
def test_bad_checkpoints_get_one_line(tmp_path, content_path, style_path, kind):
    path = tmp_path / "x.ckpt"
    if kind == "directory":
        path.mkdir()
    elif kind == "truncated":
        torch.save({"state_dict": {"image": torch.rand(1, 3, 8, 8)}}, path)
        path.write_bytes(path.read_bytes()[:100])
    elif kind == "png":
        path.write_bytes(make_image(tmp_path / "x.png").read_bytes())
    elif kind == "no keys":
        torch.save({"something": 1}, path)
    elif kind == "finetune":
        torch.save({"state_dict": {"vgg.fc.weight": torch.zeros(1)}, "hyper_parameters": {"format": "x"}}, path)
    elif kind == "pickle":
        Path("/tmp/transferlab-exploit-marker").unlink(missing_ok=True)
        path.write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(WeightsError) as error:
        StyleSettings.from_cfg(stylize_cfg(content_path, style_path, f"ckpt_path={path}"))
    assert str(path) in one_line(error)
    assert not Path("/tmp/transferlab-exploit-marker").exists()


def test_a_url_checkpoint_is_refused(content_path, style_path):
    with pytest.raises(WeightsError, match="local files only") as error:
        StyleSettings.from_cfg(stylize_cfg(content_path, style_path, "ckpt_path='http://127.0.0.1:9/x.ckpt'"))
    one_line(error)


@pytest.mark.slow
def test_resume_with_another_style_or_layers_is_refused_and_writes_nothing(tmp_path, content_path, style_path):
    checkpoint = checkpoint_of_a_run(tmp_path, content_path, style_path)
    other = make_image(tmp_path / "other.png", seed=7)
    with pytest.raises(ConfigError, match="was made with other task.style;") as error:
        main.run_task(stylize_cfg(content_path, other, f"ckpt_path={checkpoint}"), tmp_path / "second")
    one_line(error)
    assert not (tmp_path / "second").exists()  # no interrupted.ckpt, nothing at all
    with pytest.raises(ConfigError, match="layers.style, loss"):
        StyleSettings.from_cfg(
            stylize_cfg(content_path, style_path, "layers=seed", "loss.style_weight=5", f"ckpt_path={checkpoint}")
        )


@pytest.mark.parametrize("which", ["content", "style"])
def test_images_too_thin_for_vgg_are_refused(tmp_path, content_path, style_path, which):
    thin = make_image(tmp_path / "thin.png", size=(400, 3))
    content, style = (thin, style_path) if which == "content" else (content_path, thin)
    with pytest.raises(ConfigError, match="below the 16 px that relu5_1 needs") as error:
        StyleSettings.from_cfg(stylize_cfg(content, style, size=64))
    assert f"task.{which}=" in one_line(error)


def test_deleted_layer_sets_give_one_line(content_path, style_path):
    settings = StyleSettings.from_cfg(stylize_cfg(content_path, style_path, "~layers.style"))
    assert settings.style_layers == {} and settings.content_layers == {"relu4_2": 1.0}
    with pytest.raises(TransferLabError, match="name at least one layer") as error:
        StyleSettings.from_cfg(stylize_cfg(content_path, style_path, "~layers"))
    one_line(error)
