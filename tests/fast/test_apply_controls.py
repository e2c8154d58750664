"""apply_fast's strength controls on either family of stylizer: task.alpha and task.strength_map (a grayscale
image or auto) interpolate between the content and the stylized output in pixel space; apply_adain's auto map;
bad values in one line."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from PIL import Image

from helpers import compose_cfg, make_image
from tests.fast.test_stylizer import apply_cfg, arbitrary_ckpt, per_style_ckpt
from transferlab import images, main, memory
from transferlab.errors import ConfigError
from transferlab.fast import stylizer
from transferlab.fast.per_style.networks import MIN_SIZE


def grey(path: Path, level: int, size: tuple[int, int] = (40, 24)) -> Path:
    Image.new("L", size, level).save(path)
    return path


@pytest.fixture
def setup(tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Path, Path, list[str]]:
    """(model, content image, extra overrides) of the family ``request.param``."""
    content = make_image(tmp_path / "in" / "a.png", (40, 24), seed=1)
    if request.param == "per_style":
        return per_style_ckpt(tmp_path / "p.ckpt"), content, []
    style = make_image(tmp_path / "style.png", (40, 40), seed=3)
    return arbitrary_ckpt(tmp_path / "a.ckpt"), content, [f"task.style={style}", "task.style_size=32"]


def output(model: Path, content: Path, extra: list[str], run: Path, *overrides: str) -> torch.Tensor:
    main.run_task(apply_cfg(model, content, "trainer.accelerator=cpu", *extra, *overrides), run)
    report = json.loads((run / "apply.json").read_text())
    return images.load_image(next(iter(report["outputs"].values())))


@pytest.mark.parametrize("setup", ["per_style", "arbitrary"], indirect=True)
def test_alpha_and_strength_map_interpolate_in_pixel_space(setup, tmp_path):
    model, content, extra = setup
    original = images.load_image(content)
    plain = output(model, content, extra, tmp_path / "plain")
    assert (plain - original).abs().mean() > 0.01  # the check below is not vacuous
    assert torch.equal(output(model, content, extra, tmp_path / "a0", "task.alpha=0"), original)
    ones = f"task.strength_map={grey(tmp_path / 'one.png', 255)}"
    assert torch.equal(output(model, content, extra, tmp_path / "a1", "task.alpha=1", ones), plain)
    zeros = f"task.strength_map={grey(tmp_path / 'zero.png', 0)}"
    assert torch.equal(output(model, content, extra, tmp_path / "m0", zeros), original)
    half = f"task.strength_map={grey(tmp_path / 'half.png', 128, (20, 12))}"  # resized to the content
    for run, overrides in (("h", [half]), ("a", ["task.alpha=0.5"])):
        between = output(model, content, extra, tmp_path / run, *overrides)
        torch.testing.assert_close(between, (original + plain) / 2, atol=2 / 255, rtol=0)  # 8-bit rounding


def test_a_strength_map_applies_to_the_whole_tiled_output(tmp_path, monkeypatch, caplog):
    """The map weighs the tiled network's output of the whole image: where it is 0 the content comes back
    exactly, however the image was cut."""
    model = per_style_ckpt(tmp_path / "p.ckpt")
    footprint = memory.footprint(stylizer.load(model), MIN_SIZE)  # as apply_fast measures it
    monkeypatch.setattr(
        memory, "available_memory", lambda device: int(footprint.peak(96 * 96 + 50) / memory.BUDGET_SHARE)
    )
    content = make_image(tmp_path / "in" / "big.png", (200, 150), seed=4)
    half = Image.new("L", (20, 10), 255)
    half.paste(0, (0, 0, 10, 10))  # left half 0, right half 1
    half.save(tmp_path / "half.png")
    with caplog.at_level(logging.INFO):
        out = output(model, content, [], tmp_path / "run", f"task.strength_map={tmp_path / 'half.png'}")
    assert any("tiles of 96 px (memory)" in r.getMessage() for r in caplog.records)
    original = images.load_image(content)
    assert torch.equal(out[..., :80], original[..., :80])
    assert (out - original)[..., 120:].abs().mean() > 0.01


@pytest.mark.parametrize("setup", ["per_style", "arbitrary"], indirect=True)
def test_auto_strength_map_runs(setup, tmp_path):
    model, content, extra = setup
    out = output(model, content, extra, tmp_path / "auto", "task.strength_map=auto", "task.color=luminance")
    assert out.shape == images.load_image(content).shape
    assert json.loads((tmp_path / "auto" / "apply.json").read_text())["strength_map"] == "auto"


def test_apply_adain_auto_strength_map_runs(tmp_path):
    model = arbitrary_ckpt(tmp_path / "a.ckpt")
    content = make_image(tmp_path / "in" / "a.png", (40, 24), seed=1)
    style = make_image(tmp_path / "style.png", (40, 40), seed=3)
    cfg = compose_cfg(
        "task=apply_adain",
        f"ckpt_path={model}",
        f"task.input={content}",
        f"task.style={style}",
        "task.style_size=32",
        "task.strength_map=auto",
        "trainer.accelerator=cpu",
    )
    main.run_task(cfg, tmp_path / "run")
    report = json.loads((tmp_path / "run" / "apply.json").read_text())
    assert report["strength_map"] == "auto" and len(report["outputs"]) == 1


@pytest.mark.parametrize(
    "task, override, message",
    [
        ("apply_fast", "task.strength_map=atuo", "task.strength_map='atuo' is not a file; .* or auto"),
        ("apply_adain", "task.strength_map=missing.png", "task.strength_map='missing.png' is not a file"),
        ("apply_fast", "task.alpha=1.5", r"task.alpha=1.5 is invalid; it must be in \[0, 1\]"),
        ("apply_fast", "task.style=[a.png,b.png]", "task.style takes one style image in apply_fast"),
    ],
)
def test_bad_controls_are_one_line(tmp_path, task, override, message):
    model = per_style_ckpt(tmp_path / "p.ckpt") if task == "apply_fast" else arbitrary_ckpt(tmp_path / "a.ckpt")
    style = [] if task == "apply_fast" else [f"task.style={make_image(tmp_path / 's.png', (40, 40))}"]
    content = make_image(tmp_path / "c.png")  # the door reports every missing input at once: only the control fails
    cfg = compose_cfg(f"task={task}", f"ckpt_path={model}", f"task.input={content}", *style, override)
    with pytest.raises(ConfigError, match=message) as info:
        main.run_task(cfg, tmp_path / "run")
    assert "\n" not in str(info.value)
