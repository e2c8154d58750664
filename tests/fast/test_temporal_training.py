"""Networks trained to be steady (loss.temporal_*): the term's mechanics, off by default with no extra
forward, one logged training step for each family, bad values in one line. Random weights, 32 px crops."""

from __future__ import annotations

import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import adain_train_cfg, compose_cfg
from transferlab import main, motion
from transferlab.errors import ConfigError
from transferlab.fast.arbitrary.settings import TrainAdaINSettings
from transferlab.fast.per_style.module import FastStyleModule
from transferlab.fast.per_style.networks import build_network
from transferlab.fast.settings import TrainSettings
from transferlab.fast.train import TemporalTerm, temporal_term
from transferlab.perceptual import PerceptualLoss

STILL = motion.Motion(shift=0.0, zoom=0.0, rotation=0.0)


def test_a_network_that_moves_with_its_input_pays_nothing_and_one_that_does_not_pays() -> None:
    photos = torch.rand(2, 3, 32, 32)
    term = TemporalTerm(1.0, motion.Motion(shift=3.0, zoom=0.05, rotation=3.0), 0.0, seed=0)
    assert term(lambda x: 1 - x, photos, 1 - photos, key=0) < 1e-10  # pixelwise: exactly steady
    fixed = torch.rand(1, 3, 32, 32)  # ignores its input: moving the input does not move it
    assert term(lambda x: fixed.expand_as(x), photos, fixed.expand_as(photos), key=0) > 1e-3
    noisy = TemporalTerm(1.0, STILL, 0.1, seed=0)  # still, with noise: an identity pays the noise's variance
    assert noisy(lambda x: x, photos, photos, key=0) == pytest.approx(0.01, rel=0.2)


def test_the_draws_depend_on_the_seed_and_key_only() -> None:
    photos, net = torch.rand(2, 3, 32, 32), build_network("light", 0.25, 1)
    with torch.no_grad():
        out = net(photos)
        term = TemporalTerm(1.0, motion.Motion(4.0, 0.05, 2.0), 0.02, seed=3)
        first, again, other = term(net, photos, out, 7), term(net, photos, out, 7), term(net, photos, out, 8)
    assert first == again != other


def _count_forwards(module: FastStyleModule) -> list[int]:
    calls: list[int] = []
    module.network.register_forward_hook(lambda *_: calls.append(1))
    return calls


def test_weight_zero_is_the_loss_of_before_with_no_extra_forward(photos, style_image, train_cfg) -> None:
    s = TrainSettings.from_cfg(train_cfg(photos, style_image))
    assert s.loss.temporal == 0 and temporal_term(s.loss.temporal, s.steadiness, 0) is None
    assert "loss.temporal" not in s.fingerprint()  # checkpoints of runs without the term resume as before
    loss = PerceptualLoss.__new__(PerceptualLoss)  # only its calls are counted below
    batch = torch.rand(2, 3, 32, 32)
    plain = FastStyleModule({"arch": "light", "width": 0.25, "blocks": 1}, loss, 1e-3, (0.9, 0.999), 0.0)
    plain.perceptual = _Flat()
    calls = _count_forwards(plain)
    terms = plain.terms(plain.network(batch), batch)
    assert len(calls) == 1 and "temporal" not in terms and float(terms["loss"]) == 2.0
    steady = FastStyleModule(
        {"arch": "light", "width": 0.25, "blocks": 1}, loss, 1e-3, (0.9, 0.999), 0.0, TemporalTerm(5.0, STILL, 0, 0)
    )
    steady.perceptual = _Flat()
    calls = _count_forwards(steady)
    with torch.no_grad():
        terms = steady.terms(steady.network(batch), batch)
    assert len(calls) == 2 and float(terms["temporal"]) < 1e-10 and float(terms["loss"]) == pytest.approx(2.0)


class _Flat(torch.nn.Module):
    """A perceptual loss of 1 + 1 whatever the image (the temporal term's bookkeeping alone is tested)."""

    def parts(self, image, content):
        return {"content": torch.tensor(1.0), "style": torch.tensor(1.0)}

    def weighted(self, parts, image):
        return {"loss/total": parts["content"] + parts["style"]}


def _logged_temporal(out) -> list[float]:
    events = EventAccumulator(str(out / "tensorboard")).Reload()
    return [e.value for e in events.Scalars("train/temporal")]


STEADY = ["loss.temporal_weight=10", "loss.temporal_noise=0.05", "task.steps=1", "task.val_every=1"]


def test_one_steady_train_fast_step_logs_the_temporal_term(photos, style_image, train_cfg, tmp_path) -> None:
    cfg = train_cfg(photos, style_image, *STEADY)
    s = TrainSettings.from_cfg(cfg)
    assert s.loss.temporal == 10 and s.steadiness.noise == 0.05 and s.steadiness.motion.shift == 4
    assert s.fingerprint()["loss.temporal"]["weight"] == 10
    main.run_task(cfg, tmp_path)
    values = _logged_temporal(tmp_path)
    assert len(values) == 1 and values[0] > 0
    assert json.loads((tmp_path / "metrics.json").read_text())["val/temporal"] > 0


@pytest.mark.parametrize("encoder", [(), ("task.encoder=light", "task.width=0.25")], ids=["vgg19", "light"])
def test_one_steady_train_adain_step_logs_the_temporal_term(photos, styles, encoder, tmp_path) -> None:
    cfg = adain_train_cfg(photos, styles, *encoder, *STEADY, "task.checkpoint_every=0")
    assert TrainAdaINSettings.from_cfg(cfg).temporal_weight == 10
    main.run_task(cfg, tmp_path)
    assert len(_logged_temporal(tmp_path)) == 1
    assert json.loads((tmp_path / "metrics.json").read_text())["val/temporal"] >= 0


@pytest.mark.parametrize(
    "override, message",
    [
        ("loss.temporal_weight=-1", r"^loss.temporal_weight=-1 is invalid; it must be a number >= 0$"),
        ("loss.temporal_weight=nan", r"^loss.temporal_weight=nan is invalid; it must be a finite number$"),
        ("loss.temporal_noise=1.5", r"^loss.temporal_noise=1.5 is invalid; it must be in \[0, 1\]$"),
        ("loss.temporal_noise=-0.1", r"^loss.temporal_noise=-0.1 is invalid; it must be a number >= 0$"),
        ("loss.temporal_shift=inf", r"^loss.temporal_shift=inf is invalid; it must be a finite number$"),
        ("loss.temporal_shift=1e9", r"^loss.temporal_shift=1e\+09 is invalid; .* \(data.crop=256: < 128 px\)"),
        ("loss.temporal_zoom=0.9", r"^loss.temporal_zoom=0.9 is invalid; it must be in \[0, 0.5\]$"),
        ("loss.temporal_rotation=90", r"^loss.temporal_rotation=90.0 is invalid; it must be in \[0, 45\]$"),
    ],
)
@pytest.mark.parametrize("task", ["train_fast", "train_adain"])
def test_bad_temporal_values_are_one_line(task: str, override: str, message: str) -> None:
    door, data = (TrainSettings, "task.style=s.png") if task == "train_fast" else (TrainAdaINSettings, "task.styles=s")
    cfg = compose_cfg(f"task={task}", "model.weights=null", data, override)
    with pytest.raises(ConfigError, match=message):
        door.from_cfg(cfg)


def test_the_temporal_keys_belong_to_the_trainers_only() -> None:
    from transferlab.style.settings import StyleSettings

    cfg = compose_cfg("task.content=c.png", "task.style=s.png", "+loss.temporal_weight=1")
    with pytest.raises(ConfigError, match=r"^loss.temporal_weight is not a loss weight of task=stylize"):
        StyleSettings.from_cfg(cfg)
