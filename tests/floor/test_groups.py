"""The shared config groups (groups.py): parsed in one module, with one set of rules for every task;
a misspelt task key fails for every task; runtime.* reaches every task that builds the backbone."""

from __future__ import annotations

import logging
import re

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

from helpers import ROOT, TINY_DATA, compose_cfg, make_image, stylize_cfg
from transferlab import backbone, keys, main, runtime, winograd
from transferlab.classify.settings import FinetuneSettings
from transferlab.errors import ConfigError
from transferlab.fast.arbitrary.settings import ApplyAdaINSettings, TrainAdaINSettings
from transferlab.fast.settings import TrainSettings
from transferlab.style.settings import StyleSettings
from transferlab.video.settings import VideoSettings

TASKS = sorted(p.stem for p in (ROOT / "configs" / "task").glob("*.yaml"))
GROUPS = r"\bcfg\.(model|optimizer|loss|layers|runtime|trainer|precision|fetch)\b|\bcfg\.get\(\"(layers|runtime|fetch)"


def one_line(error: pytest.ExceptionInfo) -> str:
    assert "\n" not in str(error.value)
    return str(error.value)


def test_each_shared_group_is_read_in_one_module():
    readers = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in (ROOT / "src" / "transferlab").rglob("*.py")
        if path.name != "groups.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(GROUPS, line)
    ]
    assert readers == []


@pytest.mark.parametrize("task", TASKS)
def test_a_misspelt_task_key_fails_in_an_experiment_file_and_on_the_command_line(task, tmp_path):
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "typo.yaml").write_text(
        f"# @package _global_\ndefaults:\n  - override /task: {task}\ntask:\n  stpes: 3\n"
    )
    search = f"hydra.searchpath=[file://{tmp_path}]"
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=[search, "experiment=typo"])
        with pytest.raises(ConfigError, match="stpes"):  # keys.check, which the entry runs
            keys.check(cfg, ["experiment=typo"], hydra=[search])
    with pytest.raises(ConfigCompositionException, match="stpes"):
        compose_cfg(f"task={task}", "task.stpes=3")


# --- one set of rules for every task -------------------------------------------------------------


@pytest.fixture
def doors(tmp_path, content_path, style_path):
    """Each task that reads the group, composed small: ``{task: (settings class, overrides)}``."""
    photos = tmp_path / "photos"
    frames = tmp_path / "frames"
    for i in range(2):
        make_image(frames / f"{i}.png", seed=i)
    return {
        "stylize": (StyleSettings, ["model.weights=null", f"task.content={content_path}", f"task.style={style_path}"]),
        "video": (
            VideoSettings,
            ["task=video", "model.weights=null", f"task.input={frames}", f"task.style={style_path}"],
        ),
        "train_fast": (
            TrainSettings,
            ["task=train_fast", *TINY_DATA, f"data.root={photos}", f"task.style={style_path}"],
        ),
        "train_adain": (TrainAdaINSettings, ["task=train_adain", *TINY_DATA, f"data.root={photos}", "task.styles=s"]),
        "finetune": (FinetuneSettings, ["task=finetune", "model=resnet18", "model.weights=null", "data.root=x"]),
    }


def refused(doors, tasks, override, message):
    for task in tasks:
        settings, overrides = doors[task]
        with pytest.raises(ConfigError, match=message) as error:
            settings.from_cfg(compose_cfg(*overrides, "trainer.accelerator=cpu", *override))
        one_line(error)


def test_a_first_order_learning_rate_is_positive_everywhere(doors):
    refused(doors, ["finetune", "train_fast", "train_adain"], ["task.lr=0"], r"task.lr=0 is invalid; .* > 0")
    refused(doors, ["stylize", "video"], ["optimizer=adam", "task.lr=0"], r"task.lr=0 is invalid; .* > 0")


def test_betas_are_checked_everywhere(doors):
    betas = ["optimizer.betas=[1.5,0.9]"]
    refused(doors, ["train_fast", "train_adain"], betas, r"optimizer.betas=\[1.5, 0.9\] is invalid")
    refused(doors, ["finetune"], ["optimizer=adam", *betas], r"optimizer.betas=\[1.5, 0.9\] is invalid")
    refused(doors, ["stylize", "video"], ["optimizer=adam", *betas], r"optimizer.betas=\[1.5, 0.9\] is invalid")


def test_a_bad_weight_name_is_one_line_at_every_door(doors):
    # The fast and AdaIN doors let it through to backbone.torchvision_weights, whose ValueError is a bug's.
    refused(doors, list(doors), ["model.weights=IMAGENET9K"], r"model.weights='IMAGENET9K' is not a .* weight set")


def test_a_loss_term_the_task_does_not_have_is_one_line(doors):
    refused(doors, ["stylize", "video", "train_fast"], ["loss=adain"], r"loss.distill_weight is not a loss weight")
    refused(doors, ["train_adain"], ["loss=default"], r"loss.tv_weight is not a loss weight of task=train_adain")


def test_fp16_cannot_drive_lbfgs_in_video_either(doors):
    refused(doors, ["stylize", "video"], ["precision=16-mixed"], r"precision=16-mixed cannot drive optimizer=lbfgs")


# --- weights as large as floats go -------------------------------------------------------------------


def test_huge_weights_are_normalized_not_zeroed(doors, tmp_path, style_path):
    settings, overrides = doors["stylize"]
    s = settings.from_cfg(
        compose_cfg(
            *overrides,
            f"task.style=[{style_path},{style_path}]",
            "task.style_weights=[1e308,1e308]",
            "layers.style={relu1_1: 1e308, relu2_1: 1e308, relu3_1: 0, relu4_1: 0, relu5_1: 0}",
        )
    )
    assert s.inputs.style_weights == (0.5, 0.5)
    assert s.style_layers == {"relu1_1": 0.5, "relu2_1": 0.5}
    ckpt = tmp_path / "a.ckpt"
    ckpt.write_bytes(b"")
    apply = ApplyAdaINSettings.from_cfg(
        compose_cfg(
            "task=apply_adain",
            f"ckpt_path={ckpt}",
            f"task.input={style_path}",  # the door checks the files exist
            f"task.style=[{style_path},{style_path},{style_path}]",
            "task.style_weights=[1e308,1e308,0]",
        )
    )
    assert apply.style_weights == (0.5, 0.5, 0.0)


# --- deleted layer sets: that term is left out; both, one line ---------------------------------------


@pytest.mark.parametrize("deleted", ["~layers.style", "~layers.content"])
def test_a_deleted_layer_set_runs_without_that_term(tmp_path, content_path, style_path, deleted):
    # Both ended in AttributeError tracebacks at the first step (the sum of no terms was the int 0).
    main.run_task(stylize_cfg(content_path, style_path, deleted, "runtime.winograd=false", steps=1), tmp_path / "s")
    assert (tmp_path / "s" / "metrics.json").is_file()
    if deleted == "~layers.content":  # the video wing optimizes with the same module: one set is enough here
        make_image(tmp_path / "frames" / "0.png", size=(40, 32))
        video = compose_cfg(
            "task=video",
            "model.weights=null",
            "trainer.accelerator=cpu",
            "runtime.winograd=false",
            f"task.input={tmp_path / 'frames'}",
            f"task.style={style_path}",
            "task.first_steps=1",
            "task.baseline=false",
            deleted,
        )
        main.run_task(video, tmp_path / "video")
        assert (tmp_path / "video" / "metrics.json").is_file()


def test_both_layer_sets_deleted_is_one_line(doors):
    for task in ("stylize", "video", "train_fast"):
        settings, overrides = doors[task]
        cfg = compose_cfg(*overrides, "trainer.accelerator=cpu", "~layers.style", "~layers.content")
        with pytest.raises(ConfigError, match="both empty; name at least one layer") as error:
            settings.from_cfg(cfg)
        one_line(error)


# --- runtime.* for every task that builds the backbone ---------------------------------------------


class BuiltError(Exception):
    """Raised where a task applies its runtime settings, right after building its backbone."""


@pytest.fixture
def built(monkeypatch):
    """The number of Winograd convolutions in each backbone a task builds; the task stops where it applies
    ``runtime.*`` (the real ``runtime.configure`` runs first, so that the log says so)."""
    counts: list[int] = []
    build, configure = backbone.build_features, runtime.configure

    def counting(*args, **kwargs):
        features, normalization = build(*args, **kwargs)
        counts.append(sum(isinstance(m, winograd.WinogradConv2d) for m in features))
        return features, normalization

    def stop(settings):
        configure(settings)
        raise BuiltError

    monkeypatch.setattr(backbone, "build_features", counting)
    monkeypatch.setattr(runtime, "configure", stop)
    return counts


@pytest.mark.parametrize("task", ["train_fast", "train_adain", "video"])
def test_winograd_off_switch_reaches_every_backbone(task, tmp_path, style_path, built, caplog):
    photos = tmp_path / "photos"
    for i in range(4):
        make_image(photos / f"{i}.png", size=(48, 48), seed=i)
        make_image(tmp_path / "styles" / f"{i}.png", size=(48, 48), seed=10 + i)
    overrides = {
        "train_fast": ["task=train_fast", *TINY_DATA, f"data.root={photos}", f"task.style={style_path}"]
        + ["task.style_size=32"],
        "train_adain": ["task=train_adain", *TINY_DATA, f"data.root={photos}", f"task.styles={tmp_path / 'styles'}"],
        "video": ["task=video", "model.weights=null", "trainer.accelerator=cpu", f"task.input={photos}"]
        + [f"task.style={style_path}", "task.steps=1", "task.first_steps=1"],
    }[task]
    short = ["task.max_frames=1"] if task == "video" else ["task.steps=1", "task.val_every=1"]  # if it did not stop
    torch.manual_seed(0)
    for i, switch in enumerate(["runtime.winograd=true", "runtime.winograd=false"]):
        with caplog.at_level(logging.INFO, logger="transferlab.runtime"), pytest.raises(BuiltError):
            main.run_task(compose_cfg(*overrides, *short, switch), tmp_path / f"run{i}")
    on, off = built
    assert on > 0 and off == 0
    applied = [r.message for r in caplog.records if r.message.startswith("process settings:")]
    assert "runtime.winograd=True" in applied[0] and "runtime.winograd=False" in applied[1]


def test_runtime_and_fetch_defaults_have_one_home(monkeypatch):
    from transferlab import fetch

    with pytest.raises(TypeError):
        runtime.RuntimeSettings()  # type: ignore[call-arg]  # no default of its own: configs/config.yaml has them
    monkeypatch.setattr(fetch, "_limits", {})  # as in a fresh process, before the entry configures it
    cfg = compose_cfg()
    assert fetch.limits() == (cfg.fetch.timeout_s, cfg.fetch.max_mb)
