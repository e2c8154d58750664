"""A key no chosen config file defines is refused however it is written (``+``, ``++``, an experiment
file, any group), one line each naming the nearest valid key (keys.check, run by the entry)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

from helpers import ROOT, run_cli
from transferlab import keys, main
from transferlab.errors import ConfigError

EXPERIMENTS = sorted(p.stem for p in (ROOT / "configs" / "experiment").glob("*.yaml"))
TASKS = sorted(p.stem for p in (ROOT / "configs" / "task").glob("*.yaml"))


def check(*overrides: str, search: Path | None = None) -> None:
    """Compose ``overrides`` as the entry does and run the entry's key check on the result."""
    hydra = [f"hydra.searchpath=[file://{search}]"] if search else []
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=[*overrides, *hydra])
        keys.check(cfg, overrides, hydra=hydra)


@pytest.mark.parametrize(
    "override,line",
    [
        ("+task.stpes=10", "task.stpes (from +task.stpes=10) is not a known key of task; did you mean task.steps?"),
        ("++task.stpes=10", "task.stpes (from ++task.stpes=10) is not a known key of task; did you mean task.steps?"),
        ("+model.wieghts=x", "model.wieghts (from +model.wieghts=x) is not a known key of model; did you mean "),
        ("+trainer.acelerator=cpu", "trainer.acelerator (from +trainer.acelerator=cpu) is not a known key of trainer"),
        ("+sise=1", "sise (from +sise=1) is not a known key; valid keys: seed, verbose, precision, trainer"),
        ("+layers.stlye={relu1_1: 1}", "layers.stlye (from +layers.stlye={relu1_1: 1}) is not a known key of layers"),
        ("+task.x.y=1", "task.x (from +task.x.y=1) is not a known key of task; valid keys: name, content"),
    ],
)
def test_an_added_unknown_key_is_refused_in_one_line(override, line):
    with pytest.raises(ConfigError) as info:
        check("model.weights=null", override)
    assert str(info.value).startswith(line) and "\n" not in str(info.value)


def test_a_plain_unknown_key_is_refused_by_hydra_and_named_with_the_nearest_one():
    with pytest.raises(ConfigCompositionException) as info:
        check("task.stpes=10")
    assert main.hydra_message(info.value) == "task.stpes is not a known key of task; did you mean task.steps?"


@pytest.mark.parametrize(
    "task,group,body,line",
    [
        ("stylize", "task", "stpes: 3", "task.stpes (from experiment=typo) is not a known key of task; did you mean"),
        ("stylize", "model", "wieghts: x", "model.wieghts (from experiment=typo) is not a known key of model"),
        ("stylize", "optimizer", "histroy_size: 3", "did you mean optimizer.history_size?"),
        ("stylize", "loss", "style_wieght: 3", "did you mean loss.style_weight?"),
        ("stylize", "layers", "stlye: {relu1_1: 1}", "did you mean layers.style?"),
        ("stylize", "runtime", "winogard: false", "did you mean runtime.winograd?"),
        ("stylize", "fetch", "timeout: 3", "did you mean fetch.timeout_s?"),
        ("finetune", "data", "rot: x", "did you mean data.root?"),
        ("train_fast", "fastnet", "widht: 1", "did you mean fastnet.width?"),
        ("finetune", "scheduler", "eta_mim: 0.1", "did you mean scheduler.eta_min?"),
    ],
)
def test_a_misspelt_key_in_an_experiment_file_is_refused_in_any_group(tmp_path, task, group, body, line):
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "typo.yaml").write_text(
        f"# @package _global_\ndefaults:\n  - override /task: {task}\n{group}:\n  {body}\n"
    )
    with pytest.raises(ConfigError, match=line.replace("?", r"\?").replace("(", r"\(").replace(")", r"\)")) as info:
        check("experiment=typo", search=tmp_path)
    assert "\n" not in str(info.value)


def test_every_problem_is_one_line():
    with pytest.raises(ConfigError) as info:
        check("+task.stpes=10", "+model.wieghts=x")
    assert [line.split(" ")[0] for line in str(info.value).splitlines()] == ["model.wieghts", "task.stpes"]


@pytest.mark.parametrize(
    "overrides",
    [
        *([f"experiment={e}"] for e in EXPERIMENTS),
        *([f"task={t}"] for t in TASKS),
        ["~layers.style", "+layers.style={relu1_1: 1}", "+layers.content.relu5_1=2"],  # the README's exact set
        ["launcher=joblib", "hydra.launcher.n_jobs=1"],
        ["model=resnet18", "task=finetune", "scheduler=step", "task.class_weights=[1, 2]"],
        ["task.style_masks={a: 1}"],  # a value that is null by default is the door's to check
    ],
)
def test_legitimate_configs_pass(overrides):
    check(*overrides)


@pytest.mark.slow
def test_added_typos_are_one_line_each_and_exit_2(tmp_path):
    result = run_cli("+task.stpes=10", "++model.wieghts=x", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: model.wieghts (from ++model.wieghts=x) is not a known key of model; did you mean model.weights?",
        "error: task.stpes (from +task.stpes=10) is not a known key of task; did you mean task.steps?",
    ]


def test_a_key_added_to_hydras_own_config_is_checked_against_its_schema():
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=["model.weights=null"])
        with pytest.raises(ConfigError) as info:
            keys.check(cfg, ["model.weights=null"], hydra=["+hydra.foo=1", "++hydra.run.dirr=x", "hydra.mode=RUN"])
    assert str(info.value).splitlines() == [
        "hydra.foo (from +hydra.foo=1) is not a known key of hydra; valid keys: mode, searchpath, run, sweep, "
        "hydra_logging, job_logging, sweeper, launcher, callbacks, help, hydra_help, output_subdir, overrides, job, "
        "runtime, verbose",
        "hydra.run.dirr (from ++hydra.run.dirr=x) is not a known key of hydra.run; did you mean hydra.run.dir?",
    ]
    open_maps = ["+hydra.job.env_set.A=1", "+hydra.launcher.n_jobs=2", "+hydra.job_logging.root.level=DEBUG"]
    assert list(keys.unknown_hydra([*open_maps, "++hydra.job.chdir=true", "+hydra.sweeper.params.a=1,2"])) == []


def test_a_key_of_an_empty_open_map_is_added_with_a_plus():
    assert keys.message("hydra.job.env_set.X", []) == (
        "hydra.job.env_set.X is not a known key of hydra.job.env_set; hydra.job.env_set has no keys to set: give it "
        "whole (hydra.job.env_set=...), or add a key with +hydra.job.env_set.X=..."
    )
