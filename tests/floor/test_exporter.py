"""The one exporter (transferlab/exporter.py): its door (formats, opset, sizes within torch.export's guard),
its tolerance rule (NaN fails), and files that are whole or absent on a full disk (a real tmpfs) and Ctrl-C
(issue 23 item 4, issue 32 items 8 and 10)."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from helpers import ROOT, compose_cfg, interrupt_cli, tmpfs
from transferlab import exporter
from transferlab.errors import ConfigError, ExportError
from transferlab.fast.arbitrary.settings import ExportAdaINSettings
from transferlab.fast.settings import ExportSettings

SIGNATURE = exporter.Signature(("image",), "stylized", (exporter.image_dims(8),))


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 1), nn.Sigmoid()).eval()


def example() -> tuple[tuple[torch.Tensor], tuple[torch.Tensor]]:
    return (torch.rand(2, 3, 16, 16),), (torch.rand(3, 3, 13, 11),)


def options(*formats: str) -> exporter.ExportOptions:
    return exporter.ExportOptions(formats or ("onnx", "pt2", "int8"), 18, 1e-4, 1e-4)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("task.opset=99", "task.opset=99 is invalid; torch's ONNX exporter writes opsets 18-23"),
        ("task.opset=17", "task.opset=17 is invalid"),
        ("task.formats=[]", "task.formats=[] exports nothing"),
        ("task.formats=[export]", "task.formats='export' is invalid; choose one of onnx, pt2, int8"),
        ("task.formats=[int8]", "int8 quantizes the ONNX model; list onnx too"),
        ("task.check_size=[16385,45]", "task.check_size=16385 is invalid; an exported program accepts sides up to"),
        ("task.example_size=20000", "task.example_size=20000 is invalid"),
        ("task.rtol=-1", "task.rtol=-1"),
    ],
)
@pytest.mark.parametrize(("task", "settings"), [("export_fast", ExportSettings), ("export_adain", ExportAdaINSettings)])
def test_the_door_refuses_in_one_line(task, settings, override, message, tmp_path):
    ckpt = tmp_path / "x.ckpt"
    ckpt.write_bytes(b"")
    with pytest.raises(ConfigError) as error:
        settings.from_cfg(compose_cfg(f"task={task}", f"ckpt_path={ckpt}", override))
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("task", ["export", "export_fast", "export_adain"])
def test_one_format_given_as_a_string_is_that_format_not_its_letters(task):
    assert exporter.ExportOptions.from_cfg(compose_cfg(f"task={task}", "task.formats=onnx").task).formats == ("onnx",)


def test_every_export_task_names_its_formats_alike():
    for task in ("export", "export_fast", "export_adain"):
        cfg = compose_cfg(f"task={task}")
        assert set(cfg.task.formats) <= set(exporter.FORMATS) and {"atol", "rtol", "opset"} <= set(cfg.task)


def test_the_tolerance_rule_fails_nan_and_scales_with_the_value():
    x = torch.tensor([0.0, 1.0, 100.0])
    assert exporter.within(x + torch.tensor([1e-4, 1.5e-4, 9e-3]), x, atol=1e-4, rtol=1e-4)
    assert not exporter.within(x + torch.tensor([2e-4, 0, 0]), x, atol=1e-4, rtol=1e-4)
    assert not exporter.within(torch.full((3,), float("nan")), torch.full((3,), float("nan")), 1.0, 1.0)
    assert not exporter.within(x[:2], x, 1.0, 1.0)


def test_a_nan_network_is_refused_before_anything_is_written(tmp_path):
    net = tiny()
    with torch.no_grad():
        net[0].weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(ExportError, match="output is not finite"):
        exporter.export(net, *example(), SIGNATURE, options(), tmp_path, {})
    assert not list(tmp_path.iterdir())


def test_export_writes_every_format_and_one_report(tmp_path):
    report = exporter.export(tiny(), *example(), SIGNATURE, options(), tmp_path, {"task": "test"})
    assert report["check_shape"] == [3, 3, 13, 11] and report["tolerance"]["rtol"] == 1e-4
    for name in exporter.FORMATS:
        entry = report[name]
        assert (tmp_path / entry["file"]).stat().st_size == entry["bytes"]
        assert set(entry) == {"file", "bytes", "max_abs_diff", "within_tolerance"}
    assert report["onnx"]["within_tolerance"] and report["pt2"]["within_tolerance"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.json", "model.int8.onnx", "model.onnx", "model.pt2"]


def test_ctrl_c_during_int8_leaves_no_temporary_file(tmp_path, monkeypatch):
    from onnxruntime import quantization

    def interrupted(source, target, **kwargs):
        Path(target).write_bytes(b"part of a model")
        raise KeyboardInterrupt

    monkeypatch.setattr(quantization, "quantize_dynamic", interrupted)
    with pytest.raises(KeyboardInterrupt):
        exporter.export(tiny(), *example(), SIGNATURE, options(), tmp_path, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.pt2"]


@pytest.fixture
def full_disk(tmp_path):
    """A 256 KiB tmpfs, nearly filled: a real ENOSPC, not an OSError-raising fake (skipped where no mount)."""
    with tmpfs(tmp_path / "tmpfs", "256k") as mount:
        (mount / "filler").write_bytes(b"\0" * (250 * 1024))
        yield mount


def test_int8_on_a_full_disk_leaves_nothing(tmp_path, full_disk):
    exporter.export(tiny(), *example(), SIGNATURE, options("onnx"), tmp_path, {})
    with pytest.raises(OSError) as error:
        exporter.quantize_int8(tmp_path / "model.onnx", full_disk / "model.int8.onnx")
    assert error.value.errno == errno.ENOSPC
    assert [p.name for p in full_disk.iterdir()] == ["filler"]


@pytest.mark.slow  # torch.export in a child process: about 10 s on a shared CPU
def test_pt2_on_a_full_disk_is_an_error_not_an_abort(tmp_path, full_disk):
    """torch's zip writer aborts the process (SIGABRT) when a write fails: so in a child process."""
    script = textwrap.dedent(
        f"""
        import torch
        from pathlib import Path
        from transferlab import exporter
        net = torch.nn.Conv2d(3, 64, 3)  # 7 KB of weights: more than the disk has left
        program = torch.export.export(net, (torch.rand(1, 3, 8, 8),))
        exporter.save_program(program, Path({str(full_disk / "model.pt2")!r}))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 1 and "OSError: [Errno 28] No space left on device" in result.stderr
    assert [p.name for p in full_disk.iterdir()] == ["filler"]


@pytest.mark.slow  # a CLI export in a child process, stopped during int8: about 10 s
def test_ctrl_c_during_an_export_stops_it_and_leaves_no_temporary_file(tmp_path):
    from transferlab.fast.per_style.networks import build_network

    ckpt, run_dir = tmp_path / "net.ckpt", tmp_path / "run"
    spec = {"arch": "light", "width": 0.25, "blocks": 1}
    state = {f"network.{k}": v for k, v in build_network(**spec).state_dict().items()}
    torch.save({"hyper_parameters": {"network": spec}, "state_dict": state}, ckpt)
    code, stderr = interrupt_cli(
        "task=export_fast",
        "task.formats=[onnx,int8]",
        f"ckpt_path={ckpt}",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
        ready=lambda: bool(list(run_dir.glob(".int8.*"))),
        sig=signal.SIGINT,
    )
    assert "Traceback" not in stderr and code != 0 and "interrupted: Ctrl-C" in stderr
    assert [p.name for p in run_dir.glob(".*")] == [".hydra"]
    assert not (run_dir / "model.int8.onnx").exists() and (run_dir / "model.onnx").is_file()


def test_an_export_that_gives_nan_fails_and_its_report_stays_json(tmp_path, monkeypatch):
    """An exported model whose output is NaN fails the check ('NaN > atol' was false: it passed)."""
    monkeypatch.setattr(exporter, "save_program", lambda program, path: (path.write_bytes(b"x"), nan_model)[1])

    def nan_model(*x):
        return torch.full((3, 3, 13, 11), float("nan"))

    with pytest.raises(ExportError, match=r"pt2 export .* differs from PyTorch \(shape \[3, 3, 13, 11\], or values"):
        exporter.export(tiny(), *example(), SIGNATURE, options("pt2"), tmp_path, {})
    report = json.loads((tmp_path / "export.json").read_text())
    assert report["pt2"]["max_abs_diff"] is None and report["pt2"]["within_tolerance"] is False


def test_static_int8_is_qdq_and_runs_qlinearconv(tmp_path):
    """With calibration inputs int8 is static (issue 30 item 3): each Conv between QuantizeLinear and
    DequantizeLinear, which ONNX Runtime fuses into QLinearConv (not dynamic ConvInteger); near the float model."""
    import onnx
    import onnxruntime

    net = tiny()
    exporter.export_onnx(net, example()[0], tmp_path / "model.onnx", SIGNATURE)
    calibration = [(torch.rand(1, 3, 32, 32),) for _ in range(2)]
    run = exporter.quantize_int8(tmp_path / "model.onnx", tmp_path / "model.int8.onnx", calibration)
    ops = {n.op_type for n in onnx.load(tmp_path / "model.int8.onnx").graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops and "ConvInteger" not in ops
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    onnxruntime.InferenceSession(str(tmp_path / "model.int8.onnx"), options, providers=["CPUExecutionProvider"])
    assert "QLinearConv" in {n.op_type for n in onnx.load(tmp_path / "optimized.onnx").graph.node}
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert (run(x) - net(x)).abs().max() < 0.05
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.int8.onnx", "model.onnx", "optimized.onnx"]
