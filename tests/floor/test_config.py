"""Every config composes, and invalid values fail before any work with one line naming the key."""

from pathlib import Path

import pytest

from helpers import ROOT, compose_cfg
from transferlab import checks, groups
from transferlab.errors import ConfigError
from transferlab.style.settings import StyleSettings

IMAGES = ["task.content=a.png", "task.style=b.png"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (ROOT / "configs" / group).glob("*.yaml"))


@pytest.mark.parametrize("model", [m for m in options("model") if m.startswith("vgg")])
@pytest.mark.parametrize("layers", options("layers"))
@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_stylize_groups_compose_and_pass_checks(model, layers, optimizer, content_path, style_path):
    images = [f"task.content={content_path}", f"task.style={style_path}", "trainer.accelerator=cpu"]
    weights = ["model.weights=null"] if model.endswith("_caffe") else []
    cfg = compose_cfg(f"model={model}", f"layers={layers}", f"optimizer={optimizer}", *images, *weights)
    StyleSettings.from_cfg(cfg)


def test_a_classifier_model_is_refused_by_the_vgg_only_tasks_in_one_line(content_path, style_path):
    # Stylize takes any torchvision family (tests/style/test_backbones.py); train_fast, train_adain and video
    # parse model.* with VGG only.
    cfg = compose_cfg("task=video", "model=resnet50", "task.input=a.mp4", f"task.style={style_path}")
    with pytest.raises(ConfigError, match=r"model.arch='resnet50' .*vgg16, vgg19 .*task=finetune") as info:
        groups.model(cfg)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("experiment", options("experiment"))
def test_experiments_compose(experiment):
    cfg = compose_cfg(f"experiment={experiment}")
    assert cfg.task.name


def test_vangogh_picks_the_papers_setup():
    cfg = compose_cfg("experiment=vangogh")
    assert cfg.model.arch == "vgg19" and cfg.model.weights == "IMAGENET1K_V1"
    assert cfg.optimizer.name == "lbfgs" and list(cfg.layers.content) == ["relu4_2"]
    assert cfg.task.content.endswith("#sha256=e67d1869f01fd805385c681a80d9ebcf0f70ea4a5fe6127f0606bb1c7f4bf506")


def test_command_line_overrides_beat_the_experiment():
    cfg = compose_cfg("experiment=vangogh", "optimizer=adam", "task.size=64")
    assert cfg.optimizer.name == "adam" and cfg.task.size == 64 and "lr" not in cfg.optimizer


@pytest.mark.parametrize(
    "overrides,message",
    [
        (
            ["model=vgg16", "+layers.style.relu3_4=1.0"],
            r"layers.style: layer 'relu3_4' does not exist in vgg16; valid names are",
        ),
        (["loss.style_weight=-1"], r"loss.style_weight=-1 is invalid; it must be a number >= 0"),
        (["layers.style.relu1_1=-2"], r"layers.style.relu1_1=-2 is invalid"),
        (["precision=16-mixed"], r"precision=16-mixed cannot drive optimizer=lbfgs"),
        (["optimizer=adam", "precision=16-mixed"], r"precision=16-mixed needs a CUDA GPU"),
        (["precision=64"], r"precision='64' is invalid; choose one of 32, bf16-mixed, 16-mixed"),
        (["optimizer.name=sgd"], r"optimizer.name='sgd' is invalid; choose one of lbfgs, adam"),
        (["task.size=31"], r"task.size=31 is invalid; it must be an integer >= 32"),
        (["task.init=zeros"], r"task.init='zeros' is invalid; choose one of content, noise"),
        (["model.arch=vgg11"], r"model.arch='vgg11' is not supported"),
        (["seed=abc"], r"seed='abc' is invalid; it must be an integer in \[0, 4294967295\]"),
        (["seed=-1"], r"seed=-1 is invalid"),
        (["seed=1.5"], r"seed=1.5 is invalid"),
        (["seed=4294967296"], r"seed=4294967296 is invalid"),
        (
            ["layers=seed", "layers.style={relu1_2: 0, relu2_2: 0, relu3_3: 0, relu4_3: 0}"],
            r"layers.style: all layer weights are 0",
        ),
    ],
)
def test_invalid_values_fail_with_one_clear_line(overrides, message):
    cfg = compose_cfg(*IMAGES, *overrides)
    with pytest.raises(ConfigError, match=message) as error:
        StyleSettings.from_cfg(cfg)
    assert "\n" not in str(error.value)


def test_configs_dir_has_no_schema_in_sweepable_groups():
    # A schema file in a group would be picked up by glob(*) sweeps over that group.
    for group in ("model", "layers", "loss", "optimizer"):
        assert all(not p.name.startswith("_") for p in Path(ROOT / "configs" / group).iterdir())


@pytest.mark.parametrize(("value", "choices"), [(1, [True, False]), (0.0, [True, False]), (True, [1, 2])])
def test_a_boolean_and_a_number_are_not_the_same_choice(value, choices):
    with pytest.raises(ConfigError, match=f"k={value!r} is invalid; choose one of"):
        checks.choice(value, choices, "k")
