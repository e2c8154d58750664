"""A feature behind an optional module asks for it at its door (checks.requires), before any work, and a
missing one is one line naming the extra that installs it."""

from __future__ import annotations

import sys

import pytest

from helpers import ROOT, compose_cfg, run_cli
from transferlab import checks, main
from transferlab.classify.settings import ExportSettings
from transferlab.errors import ConfigError, InputProblemsError
from transferlab.fast.arbitrary.settings import ApplyAdaINSettings, ExportAdaINSettings
from transferlab.fast.settings import ApplySettings
from transferlab.fast.settings import ExportSettings as ExportFastSettings
from transferlab.video.settings import VideoSettings

EXTRA = 'pip install "transferlab[export]"'


@pytest.fixture
def no_onnxruntime(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # its import raises ImportError


def test_requires_names_the_missing_module_and_the_extra(no_onnxruntime):
    checks.requires("feature", ("json",))
    with pytest.raises(ConfigError) as info:
        checks.requires("task.formats=onnx (ONNX export)", ("json", "onnxruntime"))
    assert str(info.value) == (
        "task.formats=onnx (ONNX export) needs onnxruntime (import of onnxruntime halted; None in sys.modules); "
        + EXTRA
    )


@pytest.mark.parametrize("task", ["export", "export_fast", "export_adain"])
def test_an_onnx_export_without_onnxruntime_stops_at_the_door(tmp_path, no_onnxruntime, task):
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"x")
    door = {"export": ExportSettings, "export_fast": ExportFastSettings, "export_adain": ExportAdaINSettings}[task]
    with pytest.raises(ConfigError, match=r"task.formats=onnx \(ONNX export\) needs onnxruntime .*" + EXTRA[:11]):
        door.from_cfg(compose_cfg(f"task={task}", f"ckpt_path={ckpt}"))
    door.from_cfg(compose_cfg(f"task={task}", f"ckpt_path={ckpt}", "task.formats=[pt2]"))  # pt2 needs torch only


def test_a_missing_checkpoint_and_a_missing_extra_are_reported_together(tmp_path, no_onnxruntime):
    with pytest.raises(InputProblemsError) as info:
        ExportFastSettings.from_cfg(compose_cfg("task=export_fast", f"ckpt_path={tmp_path / 'no.ckpt'}"))
    assert [line.split(" ")[0] for line in str(info.value).splitlines()] == [
        f"ckpt_path={tmp_path / 'no.ckpt'}",
        "task.formats=onnx",
    ]


def test_an_onnx_model_without_onnxruntime_says_so_not_unreadable(tmp_path, no_onnxruntime, content_path):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"\x08\x07")  # the door asks for onnxruntime before it reads the model
    expected = rf"ckpt_path={model} \(an ONNX model\) needs onnxruntime"
    style = f"task.style={content_path}"
    for door, task in ((ApplySettings, "apply_fast"), (ApplyAdaINSettings, "apply_adain")):
        with pytest.raises(ConfigError, match=expected):
            door.from_cfg(compose_cfg(f"task={task}", f"ckpt_path={model}", f"task.input={content_path}", style))
    with pytest.raises(InputProblemsError, match=rf"task.network={model} \(an ONNX model\) needs onnxruntime"):
        VideoSettings.from_cfg(compose_cfg("task=video", "task.method=fast", f"task.network={model}", "task.input=x"))


def test_a_prompt_without_open_clip_names_the_text_extra(monkeypatch, content_path):
    from transferlab.style.settings import StyleSettings

    monkeypatch.setitem(sys.modules, "open_clip", None)
    cfg = compose_cfg(f"task.content={content_path}", "task.style_text=fire", "optimizer=adam")
    with pytest.raises(ConfigError) as info:
        StyleSettings.from_cfg(cfg)
    assert str(info.value) == (
        "task.style_text (a text prompt) needs open_clip (import of open_clip halted; None in sys.modules); "
        'pip install "transferlab[text]"'
    )


def test_a_launcher_without_its_plugin_names_the_extra():
    from hydra.errors import MissingConfigException

    exc = MissingConfigException("In 'hydra/config': Could not find 'hydra/launcher/joblib'\n\nAvailable ...")
    assert main.hydra_message(exc) == (
        'launcher=joblib needs its Hydra plugin, which is not installed; pip install "transferlab[launchers]"'
    )


@pytest.mark.slow
def test_export_without_onnxruntime_is_one_line_and_writes_nothing(tmp_path):
    blocker = tmp_path / "blocked" / "onnxruntime"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError(\"No module named 'onnxruntime'\")\n")
    ckpt = tmp_path / "best.ckpt"
    ckpt.write_bytes(b"x")
    run = tmp_path / "run"
    env = {"PYTHONPATH": f"{tmp_path / 'blocked'}:{ROOT / 'src'}"}
    result = run_cli("task=export", f"ckpt_path={ckpt}", f"hydra.run.dir={run}", cwd=tmp_path, env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: task.formats=onnx (ONNX export) needs onnxruntime (No module named 'onnxruntime'); " + EXTRA
    ]
    assert not (run / "model.pt2").exists()
