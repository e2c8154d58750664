"""Issue 10 at the floor and the entry: no pickle runs code, one-line errors, run directories."""

from __future__ import annotations

import errno
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from helpers import compose_cfg, run_cli
from transferlab import backbone, entry_checks, main, rundir
from transferlab.errors import ConfigError, WeightsError


class Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


@pytest.fixture
def evil_file(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "served" / "evil.ckpt"
    path.parent.mkdir()
    torch.save({"state_dict": Evil(marker)}, path)
    return path, marker


def test_url_ckpt_path_is_refused_before_anything_is_fetched(evil_file, tmp_path):
    path, marker = evil_file
    handler = partial(SimpleHTTPRequestHandler, directory=str(path.parent))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/evil.ckpt"
        cfg = compose_cfg("experiment=vangogh", "model.weights=null", f"ckpt_path={url}")
        with pytest.raises(WeightsError, match="checkpoints are loaded from local files only") as error:
            main.run_task(cfg, tmp_path / "run")
        assert "\n" not in str(error.value)
    finally:
        httpd.shutdown()
    assert not marker.exists()


def test_malicious_pickle_in_the_torch_hub_cache_never_runs(evil_file, tmp_path, monkeypatch):
    path, marker = evil_file
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(path.read_bytes())
    with pytest.raises(WeightsError, match="loads safely") as error:
        backbone.build_features("vgg19", "IMAGENET1K_V1")
    assert "\n" not in str(error.value) and not marker.exists()


@pytest.mark.parametrize("value", ["s3://bucket/x.ckpt", "https://h/x.ckpt#sha256=" + "0" * 64])
def test_other_ckpt_schemes_are_refused(value):
    with pytest.raises(WeightsError, match="local files only"):
        entry_checks.ckpt_path(value)


@pytest.mark.parametrize(
    "arg", ["task.content=https://x/y.png#sha256=abc", "task.content=/a/b (1).png", "task.style=/a/it's #1.png"]
)
def test_unparsable_override_is_one_line_with_a_quoted_form_that_parses(arg):
    import shlex

    from hydra.core.override_parser.overrides_parser import OverridesParser

    message = entry_checks.parse_errors([arg])
    assert message and "\n" not in message
    (suggested,) = shlex.split(message.rsplit("write ", 1)[1])
    assert OverridesParser.create().parse_override(suggested).value() == arg.partition("=")[2]


def test_merged_or_deleted_layer_sets_are_one_line():
    cfg = compose_cfg("layers.style={}")
    with pytest.raises(ConfigError, match=r"changes nothing; .*'~layers.style' '\+layers.style=\{\}'"):
        entry_checks.overrides(cfg, ["layers.style={}"])
    with pytest.raises(ConfigError, match="keeps the others"):
        entry_checks.overrides(compose_cfg("layers.style={relu1_1: 1}"), ["layers.style={relu1_1: 1}"])
    entry_checks.overrides(compose_cfg("~layers.style", "+layers.style={relu1_1: 1}"), ["+layers.style={relu1_1: 1}"])
    cfg = compose_cfg("~layers.style")
    with pytest.raises(Exception) as error:
        cfg.layers.style  # noqa: B018
    assert entry_checks.deleted_key(error.value, ["~layers.style"]).startswith("~layers.style deleted layers.style")


def test_a_run_directory_that_cannot_be_made_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    assert rundir.unusable(tmp_path / "file", "hydra.run.dir") == (
        f"hydra.run.dir={tmp_path / 'file'} is not a folder; pick another directory"
    )
    assert rundir.unusable(tmp_path / "file" / "run", "hydra.sweep.dir") == (
        f"hydra.sweep.dir={tmp_path / 'file' / 'run'} lies under {tmp_path / 'file'}, which is not a folder; "
        "pick another directory"
    )
    assert rundir.unusable(tmp_path / "new" / "run", "hydra.run.dir") is None
    monkeypatch.setattr(rundir.os, "access", lambda *args: False)  # root may write anywhere
    assert "is not writable (permission denied)" in rundir.unusable(tmp_path / "run", "hydra.run.dir")


def test_directory_holding_a_run_is_refused_unless_continued(tmp_path):
    run = tmp_path / "run"
    assert rundir.refusal(run, None, "hydra.run.dir") is None
    (run / "checkpoints").mkdir(parents=True)
    (run / "final.png").write_bytes(b"x")
    assert "already holds a run" in rundir.refusal(run, None, "hydra.run.dir")
    assert rundir.refusal(run, str(run / "checkpoints" / "last.ckpt"), "hydra.run.dir") is None
    assert "already holds a run" in rundir.refusal(run, str(tmp_path / "other.ckpt"), "hydra.run.dir")


def test_default_run_dir_is_unique_per_process():
    text = (Path(main.CONFIGS) / "config.yaml").read_text()
    assert "%f" in text and "transferlab_pid" in text


def single_run_in(output_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Let ``main`` see Hydra's runtime config of a single run (no sweep, no task overrides) into ``output_dir``."""
    hydra = SimpleNamespace(
        runtime=SimpleNamespace(output_dir=str(output_dir)),
        overrides=SimpleNamespace(task=[], hydra=[]),
        job=SimpleNamespace(num=0, config_name="config"),
        mode=None,
    )
    monkeypatch.setattr(main.HydraConfig, "get", staticmethod(lambda: hydra))
    # The key check composes through Hydra's initialized loader, which these runs lack (tests/floor/test_keys.py).
    monkeypatch.setattr(main.keys, "check", lambda *args: None)


def test_full_disk_is_one_line_and_leaves_no_empty_files(tmp_path, monkeypatch, capsys):
    def full(cfg, output_dir, *recording):
        (output_dir / "run.log").touch()
        raise OSError(errno.ENOSPC, "No space left on device", str(output_dir / "final.png"))

    single_run_in(tmp_path, monkeypatch)
    monkeypatch.setattr(main, "run_task", full)
    with pytest.raises(SystemExit) as exit_:
        main.main(compose_cfg())
    assert exit_.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: no space left on device writing {tmp_path / 'final.png'}; the run stopped "
        "(free space there, or write the run elsewhere with hydra.run.dir=...)"
    ]
    assert not (tmp_path / "run.log").exists() and (tmp_path / "error.txt").read_text().startswith("no space")


def test_a_path_the_user_may_not_use_is_bad_input_in_one_line(tmp_path, monkeypatch, capsys):
    def denied(cfg, output_dir, *recording):
        raise PermissionError(errno.EACCES, "Permission denied", "/locked/content.png")  # root ignores chmod

    single_run_in(tmp_path, monkeypatch)
    monkeypatch.setattr(main, "run_task", denied)
    with pytest.raises(SystemExit) as exit_:
        main.main(compose_cfg())
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: permission denied: /locked/content.png; fix its permissions, or give a path you can use"
    ]


def test_a_finished_resume_clears_the_error_of_the_run_it_continued(tmp_path, monkeypatch):
    """Issue 32 item 10: a completed resume kept the old error.txt, and a sweep's sheet counted it as FAILED."""
    (tmp_path / "error.txt").write_text("interrupted: SIGTERM: latest checkpoint ...\n")
    single_run_in(tmp_path, monkeypatch)
    monkeypatch.setattr(main, "run_task", lambda *args: 0.5)
    assert main.main(compose_cfg()) == 0.5
    assert not (tmp_path / "error.txt").exists()


def test_a_run_failed_at_its_door_leaves_only_its_error_and_the_directory_takes_the_next_run(tmp_path):
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("x: 1\n")
    (run / "main.log").write_text("a warning\n")
    (run / "stylized" / "sub").mkdir(parents=True)  # made before the input failed
    main.keep_error(run, "bad input", None)
    assert sorted(p.name for p in run.iterdir()) == [".hydra", "error.txt", "main.log"]
    assert rundir.refusal(run, None, "hydra.run.dir") is None


@pytest.mark.parametrize("arg", ["+task.'a.b'=1", "+task.stéps=1", 'task."steps"=3'])
def test_a_key_hydra_cannot_read_is_named_as_the_key_not_the_value(arg):
    message = entry_checks.parse_errors([arg])
    assert message.startswith(f"{arg.partition('=')[0]} in {arg} is not a key Hydra reads") and "\n" not in message


@pytest.mark.slow
def test_an_override_or_a_path_longer_than_a_file_name_is_one_line(tmp_path):
    result = run_cli(f"+task.{'k' * 300}=1", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().endswith("is longer than a file name may be; shorten the override that names it")
    too_long = f"task.content={tmp_path / ('k' * 300)}.png"
    result = run_cli(
        too_long, "task.style=s.png", "model.weights=null", f"hydra.run.dir={tmp_path / 'b'}", cwd=tmp_path
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {'k' * 30}...{'k' * 16}.png is longer than a file name may be; shorten the override that names it"
    )


def test_a_multirun_flag_after_an_override_is_one_line():
    message = entry_checks.parse_errors(["task.content=c.png", "-m", "task.steps=1,2"])
    assert message == "-m must come before every override, e.g. python run.py -m a=1,2 b=3"
    assert entry_checks.parse_errors(["-m", "task.content=c.png", "task.steps=1,2"]) is None


def test_adding_a_group_the_defaults_already_choose_says_to_drop_the_plus():
    from hydra.errors import ConfigCompositionException

    exc = ConfigCompositionException(
        "Multiple values for launcher. To override a value use 'override launcher: joblib'"
    )
    assert main.hydra_message(exc) == (
        "+launcher=joblib: the config already chooses a launcher; write launcher=joblib (without +)"
    )


@pytest.mark.slow
def test_a_config_group_set_to_null_is_one_line(tmp_path):
    result = run_cli("model=null", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        "error: model=null: a config group takes the name of one of its options, not null (--help lists them)"
    )
