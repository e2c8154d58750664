"""runtime.winograd=auto: each layer shape timed once per machine, the faster kept and recorded."""

from __future__ import annotations

import json
import time

import pytest
import torch
from torch import nn

from helpers import compose_cfg
from transferlab import backbone, conv_choice, groups, winograd


@pytest.fixture(autouse=True)
def fresh_record(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(conv_choice, "_recorded", None)
    monkeypatch.setattr(conv_choice, "_spent", 0.0)


def slow(seconds: float):
    return lambda: time.sleep(seconds)


def refuse():
    raise AssertionError("timed again although recorded")


def test_the_faster_candidate_is_kept_recorded_and_read_back_without_timing() -> None:
    assert conv_choice.choose("k", lambda: {"direct": slow(0.01), "winograd": slow(0)}) == "winograd"
    stored = json.loads(conv_choice.cache_file().read_text())
    assert stored == {f"{conv_choice.machine()}|k": "winograd"}
    conv_choice._recorded, conv_choice._spent = None, 0.0  # another process on the same machine
    assert conv_choice.choose("k", lambda: {"direct": refuse, "winograd": refuse}) == "winograd"
    assert conv_choice._spent == 0


def test_records_merge_with_what_other_processes_wrote_and_a_corrupt_cache_is_timed_again() -> None:
    conv_choice.cache_file().parent.mkdir(parents=True)
    conv_choice.cache_file().write_text("{not json")
    assert conv_choice.choose("a", lambda: {"direct": slow(0), "winograd": slow(0.01)}) == "direct"
    other = json.loads(conv_choice.cache_file().read_text()) | {"elsewhere|b": "winograd"}
    conv_choice.cache_file().write_text(json.dumps(other))
    conv_choice.choose("c", lambda: {"direct": slow(0.01), "winograd": slow(0)})
    assert set(json.loads(conv_choice.cache_file().read_text())) == {
        "elsewhere|b",
        f"{conv_choice.machine()}|a",
        f"{conv_choice.machine()}|c",
    }


def test_a_spent_budget_times_nothing_and_says_so(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    monkeypatch.setattr(conv_choice, "BUDGET_S", 0.005)
    with caplog.at_level("INFO", logger="transferlab.conv_choice"):
        assert conv_choice.choose("a", lambda: {"direct": slow(0.01), "winograd": slow(0)}) == "winograd"
    assert "convolution a: direct" in caplog.text and "budget of" in caplog.text
    assert conv_choice.choose("b", lambda: {"direct": refuse, "winograd": refuse}) is None


def frozen_conv(channels: int) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, 3, padding=1).requires_grad_(False)


@pytest.mark.parametrize("choice", ["direct", "winograd"])
def test_a_timed_layer_runs_the_recorded_choice_with_the_same_result(choice: str, monkeypatch) -> None:
    conv = frozen_conv(64)
    timed = winograd.WinogradConv2d.of(conv, timed=True)
    x = torch.randn(1, 64, 12, 10, requires_grad=True)
    key = "64->64 at 12x10 batch 1"
    conv_choice._recorded = {f"{conv_choice.machine()}|{key}": choice}
    calls = []
    monkeypatch.setattr(winograd._Winograd, "apply", lambda *a: calls.append(1) or conv(a[0]))
    timed(x).sum().backward()
    assert bool(calls) == (choice == "winograd")


def test_a_forward_without_a_gradient_keeps_the_fixed_rule_whatever_is_recorded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    conv = frozen_conv(256)
    timed = winograd.WinogradConv2d.of(conv, timed=True)
    x = torch.randn(1, 256, 9, 11)
    conv_choice._recorded = {f"{conv_choice.machine()}|256->256 at 9x11 batch 1": "direct"}
    calls = []
    monkeypatch.setattr(winograd._Winograd, "apply", lambda *a: calls.append(1) or conv(a[0]))
    with torch.no_grad():
        timed(x)
    assert calls and conv_choice._spent == 0  # the fixed rule (Winograd from 256 channels), recorded or not


def test_a_timed_layer_keeps_no_kernel_from_a_forward_without_a_gradient() -> None:
    conv = frozen_conv(256)
    timed, fixed = (winograd.WinogradConv2d.of(conv, timed=t) for t in (True, False))
    x = torch.randn(1, 256, 9, 11)
    with torch.no_grad():
        torch.testing.assert_close(timed(x), conv(x), rtol=1e-4, atol=1e-4)
        fixed(x)
    # 16 MiB a 512-channel layer: held by a timed layer only once its hot loop runs Winograd
    assert timed._transformed is None and fixed._transformed is not None


def test_the_first_forward_with_a_gradient_times_its_shape_once() -> None:
    conv = frozen_conv(64)
    timed = winograd.WinogradConv2d.of(conv, timed=True)
    x = torch.randn(1, 64, 9, 11)
    y = x.clone().requires_grad_()
    out = timed(y)
    (grad,) = torch.autograd.grad(out.sum(), y)
    (expected,) = torch.autograd.grad(conv(y).sum(), y)
    torch.testing.assert_close(out, conv(y), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-4)
    assert conv_choice.recorded("64->64 at 9x11 batch 1") in ("direct", "winograd") and conv_choice._spent > 0


def test_auto_times_every_3x3_layer_from_64_channels_and_true_keeps_the_fixed_rule() -> None:
    auto, _ = backbone.build_features("vgg19", None, fast_convs="auto")
    fixed, _ = backbone.build_features("vgg19", None, fast_convs=True)
    timed = [m.in_channels for m in auto if isinstance(m, winograd.WinogradConv2d)]
    assert min(timed) == winograd.MIN_CHANNELS_TIMED and all(
        m.timed for m in auto if isinstance(m, winograd.WinogradConv2d)
    )
    assert min(m.in_channels for m in fixed if isinstance(m, winograd.WinogradConv2d)) == winograd.MIN_CHANNELS


def test_under_bf16_autocast_a_timed_layer_records_one_of_three_under_its_own_key_and_matches_fp32() -> None:
    conv = frozen_conv(64)
    timed = winograd.WinogradConv2d.of(conv, timed=True)
    x = torch.randn(1, 64, 9, 11, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = timed(x)
    (grad,) = torch.autograd.grad(out.float().sum(), x)
    (expected_grad,) = torch.autograd.grad(conv(x).sum(), x)
    torch.testing.assert_close(out.float(), conv(x), rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(grad, expected_grad, rtol=2e-2, atol=2e-2)
    assert conv_choice.recorded("64->64 at 9x11 batch 1 bf16-mixed") in ("bf16", "direct", "winograd")
    assert conv_choice.recorded("64->64 at 9x11 batch 1") is None  # fp32 runs read their own key only


@pytest.mark.parametrize(("choice", "dtype"), [("bf16", torch.bfloat16), ("direct", torch.float32)])
def test_under_bf16_autocast_the_recorded_choice_runs_and_forwards_without_a_gradient_stay_bf16(
    choice: str, dtype: torch.dtype
) -> None:
    timed = winograd.WinogradConv2d.of(frozen_conv(64), timed=True)
    x = torch.randn(1, 64, 9, 11, requires_grad=True)
    conv_choice._recorded = {f"{conv_choice.machine()}|64->64 at 9x11 batch 1 bf16-mixed": choice}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert timed(x).dtype == dtype and timed(x.to(torch.bfloat16)).dtype == dtype
        with torch.no_grad():
            assert timed(x).dtype == torch.bfloat16  # the targets: the fixed rule, whatever is recorded
    assert conv_choice._spent == 0


def timed_candidates(monkeypatch: pytest.MonkeyPatch) -> list[set[str]]:
    """The names of the candidates of every shape timed from now on."""
    names: list[set[str]] = []
    choose = conv_choice.choose
    monkeypatch.setattr(conv_choice, "choose", lambda key, run: names.append(set(run())) or choose(key, run))
    return names


def test_a_run_in_fp32_never_times_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    timed_names = timed_candidates(monkeypatch)
    timed = winograd.WinogradConv2d.of(frozen_conv(64), timed=True)
    timed(torch.randn(1, 64, 9, 11, requires_grad=True)).sum().backward()
    assert timed_names == [{"direct", "winograd"}]


@pytest.mark.parametrize("native", [True, False])
def test_bf16_mixed_on_a_cpu_without_native_bf16_warns_once_at_the_door(native: bool, monkeypatch, caplog) -> None:
    monkeypatch.setattr(conv_choice, "native_bf16", lambda: native)
    with caplog.at_level("WARNING", logger="transferlab.groups"):
        groups.trainer(compose_cfg("precision=bf16-mixed", "trainer.accelerator=cpu"))
        groups.trainer(compose_cfg("precision=32", "trainer.accelerator=cpu"))
    assert len(caplog.records) == (0 if native else 1) and (native or "emulated" in caplog.text)


def test_under_bf16_autocast_a_cpu_without_native_bf16_times_only_the_fp32_convolutions(monkeypatch) -> None:
    monkeypatch.setattr(conv_choice, "native_bf16", lambda: False)
    timed_names = timed_candidates(monkeypatch)
    timed = winograd.WinogradConv2d.of(frozen_conv(64), timed=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = timed(torch.randn(1, 64, 9, 11, requires_grad=True))
    assert timed_names == [{"direct", "winograd"}] and out.dtype == torch.float32
