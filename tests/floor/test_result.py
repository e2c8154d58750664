"""The task contract on the floor: what the entry writes from a TaskResult, the one HParams convention,
and a sweep's contact sheet read from each job's result.json (no task's file names)."""

import importlib
import json
import typing
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from PIL import Image

from helpers import compose_cfg, hparams_columns, make_image
from transferlab import checks, main, result, sweep
from transferlab.classify import predict
from transferlab.classify.settings import ExportSettings
from transferlab.exporter import ExportOptions
from transferlab.result import TaskResult


def test_record_writes_metrics_the_index_and_the_hparams_session(tmp_path):
    image = make_image(tmp_path / "shown" / "a.png")
    done = TaskResult(
        metrics={"loss": 0.5, "name": "x"},
        objective=0.5,
        images=(image,),
        caption=("loss 0.5",),
        hparams={"task": {"lr": 0.1, "steps": 3}, "seed": 0},
        summary={"val/loss": 0.5},
        step=3,
    )
    result.record(done, tmp_path, ["task.steps=3", "hydra.job.num=0"], {"task.steps"})
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"loss": 0.5, "name": "x"}
    index = json.loads((tmp_path / "result.json").read_text())
    assert index == {"objective": 0.5, "images": ["shown/a.png"], "caption": ["loss 0.5"]}
    assert result.read_index(tmp_path)["images"] == [image]
    assert hparams_columns(tmp_path) == ["* task.steps", "task.lr", "seed"]
    assert OmegaConf.load(tmp_path / "tensorboard" / "hparams" / "hparams.yaml")["* task.steps"] == 3


def test_every_tasks_hparams_name_random_weights_and_show_only_the_keys_given(tmp_path):
    """checks.hparams: the keys a task names, as on the command line, lists and mappings as text; record:
    ``model.weights=null`` shows as ``random`` (as stylize's own table does), led by the override."""
    cfg = compose_cfg("task=train_fast", "model.weights=null", "task.style=s.png", "data.root=photos")
    hp = checks.hparams(cfg, ["task.steps", "model.weights", "layers.content", "data.root"])
    assert hp == {"task.steps": 2000, "model.weights": None, "layers.content": "relu2_2:1.0", "data.root": "photos"}
    result.record(TaskResult(metrics={}, objective=None, hparams=hp), tmp_path, ["model.weights=null"])
    saved = OmegaConf.load(tmp_path / "tensorboard" / "hparams" / "hparams.yaml")
    assert list(saved)[0] == "* model.weights" and saved["* model.weights"] == "random"


def test_hparams_lead_with_swept_keys_then_other_overrides():
    hp = result.leading_hparams(
        result.flat({"loss": {"style_weight": 1e3}, "model": {"arch": "vgg19"}, "seed": 0}),
        ["model.arch=vgg16", "+loss.style_weight=1e4", "trainer.accelerator=cpu"],
        {"loss.style_weight"},
    )
    assert list(hp) == ["* loss.style_weight", "= model.arch", "= trainer.accelerator", "seed"]
    assert hp["* loss.style_weight"] == 1e3 and hp["= trainer.accelerator"] == "cpu"


def test_contact_sheet_reads_each_jobs_result(tmp_path):
    """Images named anywhere in a job's directory; a job without images is a blank captioned tile."""
    for job, value in (("0", "a"), ("1", "b")):
        run = tmp_path / job
        (run / ".hydra").mkdir(parents=True)
        (run / ".hydra" / "overrides.yaml").write_text(f"- task.x={value}\n- seed=1\n")
    shown = make_image(tmp_path / "0" / "deep" / "any_name.png")
    result.record(TaskResult({}, 1.0, images=(shown,), caption=("one",)), tmp_path / "0")
    result.record(TaskResult({}, 2.0, caption=("two",)), tmp_path / "1")
    assert sweep.labels(sweep.job_dirs(tmp_path)) == [["task.x=a", "one"], ["task.x=b", "two"]]
    sheet = Image.open(sweep.write_contact_sheet(tmp_path))
    assert sheet.width == 2 * 256
    assert sheet.getpixel((128, 128)) != (255, 255, 255) and sheet.getpixel((384, 128)) == (255, 255, 255)


def test_sweep_jobs_are_found_by_their_number_in_job_order(tmp_path):
    """hydra.sweep.subdir names a job by its number and what it sweeps (sweep.job_dir_name); job 10 after 2."""
    for name in ("2_task.lr-0.01", "10_task.lr-0.1", "0", "notes", "3_no_result"):
        (tmp_path / name).mkdir()
    for name in ("2_task.lr-0.01", "10_task.lr-0.1", "0", "notes"):
        result.record(TaskResult({}, None), tmp_path / name)
    assert [d.name for d in sweep.job_dirs(tmp_path)] == ["0", "2_task.lr-0.01", "10_task.lr-0.1"]
    assert sweep.job_dir_name(4) == "4"  # outside a Hydra job: the number alone


def test_every_task_returns_a_task_result():
    """Each task's run says so (each task's own tests run it through main.run_task, which refuses any other)."""
    for name, module in main.TASKS.items():
        run = importlib.import_module(module).run
        assert typing.get_type_hints(run)["return"] is TaskResult, name


def test_run_task_refuses_another_return_as_a_programming_error(tmp_path, monkeypatch):
    monkeypatch.setattr(predict, "run", lambda cfg, output_dir: {"outputs": 1})
    cfg = compose_cfg("task=predict", "ckpt_path=x.ckpt", "task.input=x")
    with pytest.raises(ValueError, match="task predict returned dict, not a TaskResult"):
        main.run_task(cfg, tmp_path)
    assert not (tmp_path / "metrics.json").exists()


def test_settings_hparams_are_the_doors_values_flat():
    options = ExportOptions(("onnx", "pt2"), 18, 1e-4, 1e-4)
    hp = result.settings_hparams(ExportSettings(Path("a/b.ckpt"), options, 0))
    assert hp == {
        "checkpoint": "a/b.ckpt",
        "export.formats": "onnx,pt2",
        "export.opset": 18,
        "export.atol": 1e-4,
        "export.rtol": 1e-4,
        "seed": 0,
    }
