"""A run's input problems are found before any work and reported together, one line each (checks.Problems):
the first offline run used to fail three times in a row (content, style, weights)."""

from __future__ import annotations

import pytest

from helpers import compose_cfg, run_cli, stylize_cfg
from transferlab import backbone, checks, fetch
from transferlab.errors import FetchError, ImageError, InputProblemsError, WeightsError
from transferlab.style.settings import StyleSettings


def test_missing_content_style_and_weights_are_reported_together(tmp_path):
    cfg = stylize_cfg(tmp_path / "no.jpg", tmp_path, f"model.weights={tmp_path / 'no.pth'}")
    with pytest.raises(InputProblemsError) as info:
        StyleSettings.from_cfg(cfg)
    lines = str(info.value).splitlines()
    assert [type(e) for e in info.value.errors] == [ImageError, ImageError, WeightsError]
    assert lines[0].startswith(f"image {tmp_path / 'no.jpg'} does not exist (task.content); give a local image")
    assert "experiment=vangogh" in lines[0]
    assert lines[1].startswith(f"image {tmp_path} is a directory (task.style)")
    assert lines[2] == f"model.weights={tmp_path / 'no.pth'} does not exist; give a vgg19 state dict (.pth)"


def test_a_file_that_is_no_image_and_uncached_weights_are_named(tmp_path, content_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty cache: offline, the run would fail
    text = tmp_path / "style.jpg"
    text.write_text("not an image")
    cfg = stylize_cfg(content_path, text, "model.weights=IMAGENET1K_V1")
    with pytest.raises(InputProblemsError) as info:
        StyleSettings.from_cfg(cfg)
    first, second = str(info.value).splitlines()
    assert first.startswith(f"image {text} is not an image format Pillow can read (task.style)")
    assert second.startswith("model.weights=IMAGENET1K_V1: vgg19's weights are not in the cache (")
    assert "vgg19-dcbb9e9d.pth" in second and "model.weights=null" in second


def test_uncached_weights_alone_are_no_problem_at_the_door(tmp_path, content_path, style_path, monkeypatch):
    # A run with nothing else wrong downloads them when it builds the network, as before.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    backbone.check_weights("vgg19", "IMAGENET1K_V1", cached=False)


def test_a_failed_download_is_one_of_the_problems(tmp_path, style_path, monkeypatch):
    def offline(*args, **kwargs):
        raise FetchError("task.content: cannot reach example.org (offline)")

    monkeypatch.setattr(fetch, "download", offline)
    url = "'https://example.org/c.jpg#sha256=" + "0" * 64 + "'"  # quoted for Hydra
    cfg = stylize_cfg(url, tmp_path / "no.png", "model.weights=null")
    with pytest.raises(InputProblemsError) as info:
        StyleSettings.from_cfg(cfg)
    assert [type(e) for e in info.value.errors] == [FetchError, ImageError]


def test_one_problem_is_raised_as_it_is():
    problems = checks.Problems()
    assert problems.run(lambda x: x + 1, 1) == 2
    problems.raise_all()
    problems.run(checks.positive, -1, "task.lr")
    with pytest.raises(checks.ConfigError, match="task.lr=-1"):
        problems.raise_all()


@pytest.mark.slow
def test_the_cli_prints_each_problem_on_its_line_and_leaves_one_directory(tmp_path):
    run = tmp_path / "run"
    result = run_cli(
        "task.content=no.jpg", "task.style=none.jpg", "model.weights=no.pth", f"hydra.run.dir={run}", cwd=tmp_path
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert [line.split(" (")[0] for line in lines] == [
        "error: image no.jpg does not exist",
        "error: image none.jpg does not exist",
        "error: model.weights=no.pth does not exist; give a vgg19 state dict",
    ]
    assert sorted(p.name for p in run.iterdir()) == [".hydra", "error.txt", "main.log"]
    assert (run / "error.txt").read_text().splitlines()[:3] == [line.removeprefix("error: ") for line in lines]


@pytest.mark.parametrize(
    "task,door,overrides,keys",
    [
        (
            "apply_fast",
            "transferlab.fast.settings:ApplySettings",
            ["ckpt_path={t}/no.ckpt", "task.input={t}/no.png", "task.style={t}/no.jpg"],
            ["ckpt_path", "task.input", "task.style"],
        ),
        (
            "apply_adain",
            "transferlab.fast.arbitrary.settings:ApplyAdaINSettings",
            ["ckpt_path={t}/no.ckpt", "task.input=[{t}/a.png,{t}]", "task.style={t}/no.jpg"],
            ["ckpt_path", "task.input[0]", "task.style"],
        ),
        (
            "train_fast",
            "transferlab.fast.settings:TrainSettings",
            ["task.style={t}/no.jpg", "model.weights={t}/no.pth", "data.root={t}"],
            ["task.style", "model.weights"],
        ),
        (
            "video",
            "transferlab.video.settings:VideoSettings",
            ["task.input={t}/no.mp4", "task.style={t}/no.jpg", "model.weights={t}/no.pth"],
            ["task.input", "task.style", "model.weights"],
        ),
        (
            "finetune",
            "transferlab.classify.settings:FinetuneSettings",
            ["model=resnet18", "model.weights={t}/no.pth", "ckpt_path={t}/no.ckpt", "data.root={t}"],
            ["ckpt_path", "model.weights"],
        ),
        (
            "predict",
            "transferlab.classify.settings:PredictSettings",
            ["ckpt_path={t}/no.ckpt", "task.input={t}/no"],
            ["ckpt_path", "task.input"],
        ),
        (
            "extract",
            "transferlab.classify.settings:ExtractSettings",
            ["model=resnet18", "model.weights={t}/no.pth", "task.input={t}/no"],
            ["task.input", "model.weights"],
        ),
    ],
)
def test_each_door_reports_its_missing_files_together(tmp_path, task, door, overrides, keys):
    import importlib

    module, name = door.split(":")
    settings = getattr(importlib.import_module(module), name)
    cfg = compose_cfg(f"task={task}", "trainer.accelerator=cpu", *(o.format(t=tmp_path) for o in overrides))
    with pytest.raises(InputProblemsError) as info:
        settings.from_cfg(cfg)
    lines = str(info.value).splitlines()
    assert len(lines) == len(keys) and all(key in line for key, line in zip(keys, lines)), str(info.value)


def test_pipes_and_a_checkpoint_are_named_with_the_other_problems(tmp_path):
    import os

    pipe, checkpoint = tmp_path / "content.png", tmp_path / "step.ckpt"
    os.mkfifo(pipe)  # reading a pipe waits for a writer forever: the door never opens one
    os.mkfifo(checkpoint)
    cfg = stylize_cfg(pipe, tmp_path / "no.jpg", "model.weights=null", f"ckpt_path={checkpoint}")
    with pytest.raises(InputProblemsError) as info:
        StyleSettings.from_cfg(cfg)
    lines = str(info.value).splitlines()
    assert lines[0].startswith(f"image {pipe} is not a regular file (a pipe, device or socket) (task.content)")
    assert lines[1].startswith(f"image {tmp_path / 'no.jpg'} does not exist (task.style)")
    assert lines[2].startswith(f"ckpt_path={checkpoint} is not a regular file (a pipe, device or socket); give")
