"""apply_fast on a folder from a checkpoint and from ONNX; export parity; bad model files and images."""

import json

import pytest

from helpers import apply_outputs, compose_cfg, make_image
from transferlab import main, result
from transferlab.errors import ImageError, WeightsError


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    main.run_task(compose_cfg("task=export_fast", f"ckpt_path={trained / 'checkpoints' / 'last.ckpt'}"), out)
    return out


@pytest.fixture
def folder(tmp_path):
    make_image(tmp_path / "in" / "a.png", size=(33, 21), seed=1)
    make_image(tmp_path / "in" / "sub" / "b.jpg", size=(33, 21), seed=2)
    make_image(tmp_path / "in" / "c.png", size=(40, 51), seed=3)
    return tmp_path / "in"


def test_export_parity_onnx_pt2_int8(exported):
    report = json.loads((exported / "export.json").read_text())
    assert json.loads((exported / "metrics.json").read_text()) == report
    assert result.read_index(exported)["caption"][0] == "onnx pt2 int8"
    assert report["check_shape"] == [3, 3, 67, 45]
    assert report["onnx"]["max_abs_diff"] < 1e-4 and report["pt2"]["max_abs_diff"] < 1e-4
    assert report["int8"]["max_abs_diff"] < 0.5 and report["int8"]["bytes"] < report["onnx"]["bytes"]


def test_export_int8_is_static_calibrated_on_the_bundled_photos(exported):
    import onnx

    report = json.loads((exported / "export.json").read_text())
    assert report["int8_quantization"] == {
        "method": "static",
        "calibration": "sample:content",
        "images": 3,
        "long_side": 256,
    }
    ops = {n.op_type for n in onnx.load(exported / "model.int8.onnx").graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and "ConvInteger" not in ops


def test_export_calibration_at_the_door(trained, tmp_path):
    from transferlab.errors import TransferLabError
    from transferlab.fast.settings import ExportSettings

    ckpt = f"ckpt_path={trained / 'checkpoints' / 'last.ckpt'}"
    assert ExportSettings.from_cfg(compose_cfg("task=export_fast", ckpt, "task.calibration=null")).calibration is None
    no_int8 = compose_cfg("task=export_fast", ckpt, "task.formats=[onnx]")
    assert ExportSettings.from_cfg(no_int8).calibration is None  # nothing to calibrate
    with pytest.raises(TransferLabError, match="task.calibration") as info:
        ExportSettings.from_cfg(compose_cfg("task=export_fast", ckpt, f"task.calibration={tmp_path / 'none'}"))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("model", ["checkpoints/last.ckpt", "model.onnx"])
def test_apply_on_a_folder_keeps_sizes(model, trained, exported, folder, tmp_path):
    path = (trained if model.endswith(".ckpt") else exported) / model
    cfg = compose_cfg(
        "task=apply_fast",
        f"ckpt_path={path}",
        f"task.input={folder}",
        "task.color=luminance",
        "trainer.accelerator=cpu",
        "task.batch_size=2",
    )
    main.run_task(cfg, tmp_path / "run")
    outputs = apply_outputs(tmp_path / "run")
    assert len(outputs) == 3
    assert (tmp_path / "run" / "apply.json").is_file()
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["images"] == 3 and metrics["outputs"] == outputs and metrics["seconds_per_image"] > 0
    assert len(result.read_index(tmp_path / "run")["images"]) == 3


def test_model_of_another_architecture_is_one_line(trained, folder, tmp_path):
    import torch

    checkpoint = torch.load(trained / "checkpoints" / "last.ckpt", weights_only=True)
    checkpoint["hyper_parameters"]["network"] = {"arch": "johnson", "width": 0.25, "blocks": 1}
    torch.save(checkpoint, tmp_path / "other.ckpt")
    cfg = compose_cfg("task=apply_fast", f"ckpt_path={tmp_path / 'other.ckpt'}", f"task.input={folder}")
    with pytest.raises(WeightsError, match="do not fit the network it names") as info:
        main.run_task(cfg, tmp_path / "run")
    assert "\n" not in str(info.value)
    torch.save({"weight": torch.zeros(1)}, tmp_path / "plain.ckpt")
    cfg = compose_cfg("task=apply_fast", f"ckpt_path={tmp_path / 'plain.ckpt'}", f"task.input={folder}")
    with pytest.raises(WeightsError, match="is not a train_fast checkpoint"):
        main.run_task(cfg, tmp_path / "run")


def test_image_too_small_is_one_line(trained, tmp_path):
    tiny = make_image(tmp_path / "tiny.png", size=(6, 20))
    cfg = compose_cfg("task=apply_fast", f"ckpt_path={trained / 'checkpoints' / 'last.ckpt'}", f"task.input={tiny}")
    with pytest.raises(ImageError, match=r"tiny.png is 6x20 px; the network needs at least 8 px") as info:
        main.run_task(cfg, tmp_path / "run")
    assert "\n" not in str(info.value)
