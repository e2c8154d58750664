"""The one stylizer loader: either family's checkpoint or ONNX model into apply_fast and video; crafted
checkpoints (bad hyperparameters, wrong types, NaN weights) and crafted ONNX models (another network's
contract, an absurd allocation, an endless Loop, NaN weights) refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
import torch
from onnx import TensorProto as T
from onnx import helper as h

from helpers import compose_cfg, make_image
from transferlab import main
from transferlab.errors import ConfigError, ImageError, TransferLabError, WeightsError
from transferlab.fast import stylizer
from transferlab.fast.arbitrary.networks import AdaINNet
from transferlab.fast.per_style.networks import build_network

PER_STYLE = {"arch": "light", "width": 0.25, "blocks": 1}
ARBITRARY = {
    "arch": "adain",
    "weights": None,
    "normalization": "imagenet",
    "pooling": "max",
    "style_layers": {"relu1_1": 0.5, "relu4_1": 0.5},
    "encoder": "light",
    "width": 0.125,
}


def per_style_ckpt(path: Path, spec: dict | None = None, nan: bool = False) -> Path:
    """A randomly initialised per-style network saved as train_fast saves it (the mechanics, not the look)."""
    torch.manual_seed(0)
    state = {f"network.{k}": v for k, v in build_network(**PER_STYLE).state_dict().items()}
    if nan:
        state["network.stem.0.1.weight"][0, 0, 0, 0] = float("nan")
    torch.save({"state_dict": state, "hyper_parameters": {"network": spec or PER_STYLE}}, path)
    return path


def arbitrary_ckpt(path: Path, spec: dict | None = None, nan: bool = False) -> Path:
    """A randomly initialised light AdaIN network saved as train_adain saves it (without its teacher)."""
    torch.manual_seed(0)
    state = {f"net.{k}": v for k, v in AdaINNet(**ARBITRARY, loss_net=False).state_dict().items()}
    if nan:
        next(v for k, v in state.items() if k.endswith("weight")).fill_(float("inf"))
    hp = {"network": spec or ARBITRARY, "loss_weights": [1.0, 10.0, 1.0]}
    torch.save({"state_dict": state, "hyper_parameters": hp}, path)
    return path


def apply_cfg(model: Path, inputs: Path, *overrides: str):
    return compose_cfg("task=apply_fast", f"ckpt_path={model}", f"task.input={inputs}", *overrides)


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    make_image(folder / "a.png", (40, 24), seed=1)
    make_image(folder / "b.png", (33, 30), seed=2)
    return folder


def test_apply_fast_takes_an_arbitrary_style_checkpoint(tmp_path, photos):
    model, style = arbitrary_ckpt(tmp_path / "adain.ckpt"), make_image(tmp_path / "style.png", (48, 40), seed=3)
    main.run_task(apply_cfg(model, photos, f"task.style={style}", "task.style_size=32"), tmp_path / "run")
    report = json.loads((tmp_path / "run" / "apply.json").read_text())
    assert report["family"] == "arbitrary" and len(report["outputs"]) == 2
    from PIL import Image

    for source, out in report["outputs"].items():
        assert Image.open(out).size == Image.open(source).size
    with pytest.raises(ConfigError, match="arbitrary-style network: give task.style=") as info:
        main.run_task(apply_cfg(model, photos), tmp_path / "run2")
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="per-style network .*drop task.style"):
        main.run_task(apply_cfg(per_style_ckpt(tmp_path / "p.ckpt"), photos, f"task.style={style}"), tmp_path / "r3")


def test_video_takes_an_arbitrary_style_checkpoint(tmp_path):
    from tests.video.conftest import square_frames, write_clip
    from transferlab.main import run_task

    clip = write_clip(tmp_path / "square.mp4", square_frames(n=3))
    model, style = arbitrary_ckpt(tmp_path / "adain.ckpt"), make_image(tmp_path / "style.png", (48, 40), seed=3)
    overrides = ("task=video", f"task.input={clip}", "task.method=fast", f"task.network={model}", f"task.style={style}")
    run_task(compose_cfg(*overrides, "trainer.accelerator=cpu", "model.weights=null"), tmp_path / "run")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (metrics["method"], metrics["frames"]) == ("fast", 3)


@pytest.mark.parametrize(
    "change,message",
    [
        ({"network": {**PER_STYLE, "blocks": 10**6}}, r"network.blocks=1000000 is invalid; it must be in \[0, 32\]"),
        ({"network": {**PER_STYLE, "width": "wide"}}, r"network.width='wide' is invalid"),
        ({"network": {**PER_STYLE, "blocks": 1.5}}, r"network.blocks=1.5 is invalid; it must be an integer"),
        ({"network": {**PER_STYLE, "depth": 3}}, r"network holds 'depth'"),
        ({"network": [1, 2]}, r"is not a train_fast checkpoint or a train_adain checkpoint"),
        ({"hyper_parameters": [1, 2]}, r"is not a train_fast checkpoint or a train_adain checkpoint"),
        ({"state_dict": [1, 2]}, r"is not a train_fast checkpoint or a train_adain checkpoint"),
        ({"state_dict": {"network.x": "text"}}, r"its state dict holds 'network.x', which is not a tensor"),
        ({"network": {**ARBITRARY, "weights": "IMAGENET1K_V1"}}, r"network.weights='IMAGENET1K_V1' is invalid"),
        ({"network": {**ARBITRARY, "style_layers": {"relu5_1": 1.0}}}, r"relu5_1 lie past relu4_1"),
        ({"network": {**ARBITRARY, "encoder": "light", "arch": "sanet"}}, r"SANet runs in VGG19's relu4_1 space"),
        ({"network": {**ARBITRARY, "pooling": 3}}, r"network.pooling=3 is invalid"),
    ],
)
def test_crafted_checkpoints_are_refused_before_anything_is_built(tmp_path, change, message):
    path = per_style_ckpt(tmp_path / "model.ckpt")
    checkpoint = torch.load(path, weights_only=True)
    for key, value in change.items():
        target = checkpoint["hyper_parameters"] if key == "network" else checkpoint
        target[key] = value
    torch.save(checkpoint, path)
    with pytest.raises(WeightsError, match=message) as info:
        stylizer.read_network(path)
    assert "\n" not in str(info.value) and "model.ckpt" in str(info.value)


def test_non_finite_weights_are_refused_at_load(tmp_path, photos):
    nan = per_style_ckpt(tmp_path / "nan.ckpt", nan=True)
    for cfg in (
        apply_cfg(nan, photos),
        compose_cfg("task=export_fast", f"ckpt_path={nan}", "task.formats=[onnx,int8]"),
        apply_cfg(arbitrary_ckpt(tmp_path / "inf.ckpt", nan=True), photos, f"task.style={photos / 'a.png'}"),
    ):
        with pytest.raises(WeightsError, match=r"weight .* holds NaN or infinite values") as info:
            main.run_task(cfg, tmp_path / "run")
        assert "\n" not in str(info.value)
    from tests.video.conftest import square_frames, write_clip

    clip = write_clip(tmp_path / "square.mp4", square_frames(n=2))
    video = compose_cfg(
        "task=video", f"task.input={clip}", "task.method=fast", f"task.network={nan}", "model.weights=null"
    )
    with pytest.raises(WeightsError, match="holds NaN or infinite values"):
        main.run_task(video, tmp_path / "video")


def _onnx(path: Path, nodes, inputs, outputs, initializers=()) -> Path:
    graph = h.make_graph(nodes, "crafted", inputs, outputs, initializer=list(initializers))
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 18)]), str(path))
    return path


def _image(name: str, dims=("N", 3, "H", "W")):
    return h.make_tensor_value_info(name, T.FLOAT, list(dims))


def _nan_output(path: Path) -> Path:
    """Finite weights, NaN pixels: the log of -1 - image."""
    negative = h.make_node("Sub", ["minus_one", "image"], ["negative"])
    log = h.make_node("Log", ["negative"], ["stylized"])
    minus_one = h.make_tensor("minus_one", T.FLOAT, [1], [-1.0])
    return _onnx(path, [negative, log], [_image("image")], [_image("stylized")], [minus_one])


def _absurd(path: Path) -> Path:
    """Adds a 12 TB tensor of zeros to the image: a graph that allocates more than any machine holds."""
    shape = h.make_node("Constant", [], ["shape"], value=h.make_tensor("s", T.INT64, [4], [1, 3, 10**6, 10**6]))
    zeros = h.make_node("ConstantOfShape", ["shape"], ["big"], value=h.make_tensor("v", T.FLOAT, [1], [0.0]))
    add = h.make_node("Add", ["image", "big"], ["stylized"])
    return _onnx(path, [shape, zeros, add], [_image("image")], [_image("stylized")])


def _endless(path: Path) -> Path:
    """A Loop without a trip count whose condition stays true: it never ends."""
    body = h.make_graph(
        [h.make_node("Identity", ["cond_in"], ["cond_out"]), h.make_node("Identity", ["x_in"], ["x_out"])],
        "body",
        [
            h.make_tensor_value_info("i", T.INT64, []),
            h.make_tensor_value_info("cond_in", T.BOOL, []),
            h.make_tensor_value_info("x_in", T.FLOAT, None),
        ],
        [h.make_tensor_value_info("cond_out", T.BOOL, []), h.make_tensor_value_info("x_out", T.FLOAT, None)],
    )
    true = h.make_node("Constant", [], ["cond"], value=h.make_tensor("c", T.BOOL, [], [True]))
    loop = h.make_node("Loop", ["", "cond", "image"], ["stylized"], body=body)
    return _onnx(path, [true, loop], [_image("image")], [_image("stylized")])


def _classifier(path: Path) -> Path:
    """An image in, class scores out: a classifier export's contract."""
    pool = h.make_node("ReduceMean", ["image"], ["scores"], keepdims=0, axes=[2, 3])
    return _onnx(path, [pool], [_image("image")], [h.make_tensor_value_info("scores", T.FLOAT, ["N", 3])])


def _rank3(path: Path) -> Path:
    return _onnx(path, [h.make_node("Identity", ["image"], ["stylized"])], [_image("image", (3, "H", "W"))], [])


def _nan_weight(path: Path) -> Path:
    weight = h.make_tensor("w", T.FLOAT, [1], [float("nan")])
    add = h.make_node("Add", ["image", "w"], ["stylized"])
    return _onnx(path, [add], [_image("image")], [_image("stylized")], [weight])


@pytest.mark.parametrize(
    "craft,message",
    [
        (_classifier, r"scores has shape \[\?, 3\] .* not float \[N, 3, H, W\]"),
        (_rank3, r"its inputs are \(image\) and it has 0 outputs"),
        (_nan_weight, r"weight w holds NaN or infinite values"),
        (_nan_output, r"model.onnx gave NaN or infinite values"),
        (_absurd, r"failed to run \(memory limit .* GiB\): .*ConstantOfShape"),
        (_endless, r"one batch ran past 1 s and was stopped"),
    ],
)
def test_crafted_onnx_models_are_one_line(tmp_path, photos, monkeypatch, craft, message):
    monkeypatch.setattr(stylizer, "ONNX_TIMEOUT_S", 1.0)
    model = craft(tmp_path / "model.onnx")
    with pytest.raises(WeightsError, match=message) as info:
        main.run_task(apply_cfg(model, photos), tmp_path / "run")
    assert "\n" not in str(info.value)


def test_onnx_model_of_another_rank_is_one_line(tmp_path, photos):
    single = h.make_node("Identity", ["image"], ["stylized"])
    model = _onnx(tmp_path / "model.onnx", [single], [_image("image", (3, "H", "W"))], [_image("stylized")])
    with pytest.raises(WeightsError, match=r"image has shape \[3, \?, \?\] .* not float \[N, 3, H, W\]"):
        main.run_task(apply_cfg(model, photos), tmp_path / "run")


def test_a_thin_style_image_is_one_line(tmp_path, photos):
    thin = make_image(tmp_path / "thin.png", (400, 10))
    model = arbitrary_ckpt(tmp_path / "adain.ckpt")
    for cfg in (
        compose_cfg("task=apply_adain", f"ckpt_path={model}", f"task.input={photos}", f"task.style={thin}"),
        apply_cfg(model, photos, f"task.style={thin}"),
    ):
        with pytest.raises(ImageError, match=r"thin.png is 512x13 px at long side 512; a style needs at least 16"):
            main.run_task(cfg, tmp_path / "run")


def test_a_file_that_is_no_checkpoint_is_one_line(tmp_path):
    """It goes through the floor's weights_only loader."""
    (tmp_path / "x.ckpt").write_bytes(b"not a pickle")
    with pytest.raises(TransferLabError, match="weights_only=True"):
        stylizer.read_network(tmp_path / "x.ckpt")
