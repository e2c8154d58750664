"""Real `python run.py ...` runs in a subprocess: the main command, errors, a sweep, Ctrl-C."""

import signal

import pytest
from omegaconf import OmegaConf
from PIL import Image

from helpers import assert_quiet, interrupt_cli, logged, run_cli
from transferlab import images

pytestmark = pytest.mark.slow


def stylize_args(content_path, style_path, *extra):
    return [
        "experiment=vangogh",
        "model.weights=null",
        f"task.content={content_path}",
        f"task.style={style_path}",
        "task.size=32",
        "task.steps=3",
        *extra,
    ]


def test_main_command_writes_the_run_directory_under_outputs(tmp_path, content_path, style_path):
    result = run_cli(*stylize_args(content_path, style_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (run_dir,) = (tmp_path / "outputs" / "stylize").glob("*/*")
    assert images.load_image(run_dir / "final.png").shape[-1] == 32
    assert_quiet(result, run_dir)
    assert (run_dir / "metrics.json").is_file() and (run_dir / ".hydra" / "config.yaml").is_file()
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.parametrize(
    "extra,message",
    [
        (["model=vgg16", "+layers.style.relu3_4=1"], "error: layers.style: layer 'relu3_4' does not exist in vgg16"),
        (["precision=16-mixed"], "error: precision=16-mixed cannot drive optimizer=lbfgs"),
        (["task.style=/nonexistent/style.jpg"], "error: image /nonexistent/style.jpg does not exist"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, content_path, style_path, extra, message):
    result = run_cli(*stylize_args(content_path, style_path, f"hydra.run.dir={tmp_path / 'run'}", *extra), cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "final.png").exists()


def test_missing_required_input_names_the_key(tmp_path):
    result = run_cli("model.weights=null", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 2
    assert "error: task.content, task.style are required but not set" in result.stderr


def test_unknown_optimizer_lists_the_choices(tmp_path):
    result = run_cli("optimizer=sgdx", cwd=tmp_path)
    assert result.returncode != 0
    assert "Could not find 'optimizer/sgdx'" in result.stderr and "lbfgs" in result.stderr


@pytest.mark.slow
def test_misspelt_key_is_one_line_and_exit_2(tmp_path):
    result = run_cli("model.weights=null", "task.sise=1", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: task.sise is not a known key of task; did you mean task.size?"
    ]


def test_sweep_runs_each_job_in_its_own_directory_and_writes_a_contact_sheet(tmp_path, content_path, style_path):
    sweep_dir = tmp_path / "sweep"
    result = run_cli(
        "-m",
        *stylize_args(content_path, style_path, "loss.style_weight=1e2,1e4", f"hydra.sweep.dir={sweep_dir}"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    # Each job's directory named by its number and what it sweeps.
    jobs = [sweep_dir / "0_loss.style_weight-100.0", sweep_dir / "1_loss.style_weight-10000.0"]
    assert (jobs[0] / "final.png").is_file() and (jobs[1] / "final.png").is_file()
    sheet = Image.open(sweep_dir / "contact_sheet.png")
    assert sheet.width == 2 * 256
    # HParams: the swept key sorts first (TensorBoard orders columns by name), then the other overrides.
    columns = [k for k in OmegaConf.load(jobs[0] / "tensorboard" / "hparams" / "hparams.yaml")][:3]
    assert columns == ["* loss.style_weight", "= experiment", "= model.weights"]


def test_ctrl_c_stops_cleanly_and_keeps_the_latest_image(tmp_path, content_path, style_path):
    run_dir = tmp_path / "run"
    code, stderr = interrupt_cli(
        # Every step, so that the run is still going when the signal comes (a tiny run may converge early).
        *stylize_args(
            content_path, style_path, "task.steps=100000", "task.stop_at_convergence=false", f"hydra.run.dir={run_dir}"
        ),
        cwd=tmp_path,
        ready=lambda: logged(run_dir, b"loss/total"),
        sig=signal.SIGINT,
    )
    assert "Traceback" not in stderr and code == 130
    assert f"interrupted: Ctrl-C: latest image {run_dir / 'final.png'}" in stderr
    assert images.load_image(run_dir / "final.png").shape[-1] == 32
    assert not [p for p in run_dir.rglob(".*") if p.is_file() and p.suffix == ".tmp"]


def test_sweep_goes_on_past_a_failed_job_marks_it_and_exits_non_zero(tmp_path, content_path, style_path):
    sweep_dir = tmp_path / "sweep"
    result = run_cli(
        "-m",
        *stylize_args(content_path, style_path, "task.init=content,nosie", f"hydra.sweep.dir={sweep_dir}"),
        cwd=tmp_path,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert (sweep_dir / "0_task.init-content" / "final.png").is_file()
    assert "task.init" in (sweep_dir / "1_task.init-nosie" / "error.txt").read_text()
    assert "1 job(s) of the sweep failed: 1" in result.stderr
    assert Image.open(sweep_dir / "contact_sheet.png").width == 2 * 256


def test_occupied_run_dir_is_refused_and_left_alone(tmp_path, content_path, style_path):
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / "final.png").write_bytes(b"an earlier run")
    result = run_cli(*stylize_args(content_path, style_path, f"hydra.run.dir={run_dir}"), cwd=tmp_path)
    assert result.returncode == 2 and "already holds a run" in result.stderr
    assert (run_dir / "final.png").read_bytes() == b"an earlier run" and not list((run_dir / ".hydra").iterdir())
