"""The Python API (transferlab.api, fast/net.py): keywords become the command line's overrides, bad input
raises the command line's one line, a run through the API equals the same run through the CLI, and
``load_stylizer`` takes PIL images and tensors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from fast.test_stylizer import arbitrary_ckpt, per_style_ckpt
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from onnx import TensorProto as T
from onnx import helper as h
from PIL import Image

import transferlab as tl
from helpers import ROOT, make_image, run_cli
from transferlab import api, images
from transferlab.errors import ConfigError, ImageError, WeightsError


def test_importing_the_package_loads_no_torch_and_no_logging_handler() -> None:
    code = (
        "import logging, sys, transferlab as tl; tl.run; "
        "print(sorted({'torch', 'pytorch_lightning'} & set(sys.modules)), logging.getLogger().handlers)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "[] []"


@pytest.mark.parametrize(
    "value", ["it's", "a\\", "a\\'b", "64", "null", "true", "a b", "x#y=z", "[1]", "${task.name}x", "c:\\d\\"]
)
def test_a_python_string_reaches_hydra_as_itself(value: str) -> None:
    parsed = OverridesParser.create().parse_override(f"k={api.hydra_value(value)}").value()
    assert parsed == value if "$" not in value else parsed.startswith("${")  # interpolations stay, as on the CLI


def test_keywords_name_the_command_lines_keys() -> None:
    tree = {"task": {"size": None, "layers": None}, "seed": None, "trainer": {"accelerator": None}}
    given = {
        "size": 64,  # the task's key
        "seed": 1,  # a top-level key
        "model": "resnet18",  # a config group
        "layers": ["fc7"],  # the task's key where a group has the same name (extract)
        "model__weights": None,
        "trainer": {"accelerator": "cpu"},
        "task.steps": 3,
        "stpes": 3,  # unknown: the task's, so that the check names the task's nearest key
        "size_text": "64",
        "flag": False,
        "pair": (1.5, Path("a b")),
    }
    assert api.keyword_overrides(given, tree) == [
        "task.size=64",
        "seed=1",
        "model=resnet18",
        "task.layers=[fc7]",
        "model.weights=null",
        "trainer.accelerator=cpu",
        "task.steps=3",
        "task.stpes=3",
        "task.size_text='64'",
        "task.flag=false",
        "task.pair=[1.5,a b]",
    ]


def test_compose_gives_the_command_lines_config_inside_a_hydra_app_too(tmp_path: Path) -> None:
    cfg = tl.compose("finetune", data__root=tmp_path, epochs=3, model="resnet18", overrides=["optimizer=adam"])
    assert (cfg.task.epochs, cfg.model.arch, cfg.optimizer.name, cfg.data.root) == (
        3,
        "resnet18",
        "adam",
        str(tmp_path),
    )
    assert "hydra" not in cfg
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        outer = GlobalHydra.instance().hydra
        assert tl.compose("stylize", size=40).task.size == 40
        assert GlobalHydra.instance().hydra is outer  # the caller's Hydra is left as it was


def test_every_task_of_the_entry_composes_through_the_api() -> None:
    from transferlab import main

    for task in main.TASKS:  # the ones added later too: tl.run(task) covers them without a wrapper
        assert tl.compose(task).task.name == task


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda: tl.compose("stylize", stpes=3),
            r"^task\.stpes is not a known key of task; did you mean task\.steps\?$",
        ),
        (lambda: tl.compose("stylize", overrides=["+task.foo=1"]), r"^task\.foo \(from \+task\.foo=1\) is not a known"),
        (lambda: tl.compose("stylize", overrides=["task.size=[1"]), r"^Hydra cannot parse the override task\.size=\[1"),
        (lambda: tl.compose("stylise"), r"^task='stylise' is unknown; choose one of stylize, finetune"),
        (lambda: tl.compose("stylize", optimizer="adamm"), r"Could not find 'optimizer/adamm'"),
        (lambda: tl.compose("stylize", size=object()), r"object .* is no config value"),
    ],
)
def test_bad_keys_raise_one_line(call, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        call()
    assert "\n" not in str(raised.value)


def test_a_run_with_bad_input_raises_its_one_line_and_leaves_it_in_the_run_dir(
    tmp_path: Path, content_path: Path, style_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(ConfigError, match=r"^task\.content, task\.style are required but not set; pass task\.content"):
        tl.run("stylize", run_dir=tmp_path / "missing")
    with pytest.raises(ImageError, match=r"^image nope\.png does not exist \(task\.content\)"):
        tl.stylize("nope.png", style_path, model__weights=None, run_dir=tmp_path / "file")
    with pytest.raises(ConfigError, match=r"^task\.size=8 is invalid; it must be an integer >= 32$"):
        tl.stylize(content_path, style_path, size=8, model__weights=None, run_dir=tmp_path / "value")
    assert (tmp_path / "value" / "error.txt").read_text().startswith("task.size=8 is invalid")
    assert (tmp_path / "value" / ".hydra" / "overrides.yaml").is_file()
    assert capsys.readouterr().out == ""
    (tmp_path / "taken" / "x").mkdir(parents=True)
    with pytest.raises(
        ConfigError, match=r"^run_dir=.*taken already holds a run \(x\); continue that run with ckpt_path"
    ):
        tl.stylize(content_path, style_path, run_dir=tmp_path / "taken")


def test_the_stylizer_callable_takes_pil_images_and_tensors_and_gives_apply_fasts_output(tmp_path: Path) -> None:
    torch.set_num_threads(1)  # 8-channel networks on 40 px images: threads only wait on each other
    ckpt = per_style_ckpt(tmp_path / "per_style.ckpt")
    photo = make_image(tmp_path / "photo.png", size=(48, 40))
    net = tl.load_stylizer(ckpt)
    image = Image.open(photo)
    out = net(image, alpha=0.7, strength_map="auto", color="luminance")
    assert isinstance(out, Image.Image) and out.size == image.size
    applied = tl.apply_fast(ckpt, photo, alpha=0.7, strength_map="auto", color="luminance", run_dir=None)
    assert applied.image.tobytes() == out.tobytes()  # the apply task's controls, in the same order
    assert net(torch.rand(2, 3, 40, 48, dtype=torch.float64)).dtype == torch.float64  # runs in float32
    batch = torch.rand(2, 3, 40, 48)
    assert net(batch).shape == batch.shape and net(batch[0]).shape == batch[0].shape
    assert torch.equal(net(batch, alpha=0.0), batch)
    map_ = torch.zeros(1, 20, 24)
    assert torch.equal(net(batch, strength_map=map_), batch)  # 0 everywhere: the content
    with pytest.raises(ConfigError, match=r"^alpha=1\.5 is invalid; it must be in \[0, 1\]"):
        net(batch, alpha=1.5)
    with pytest.raises(ImageError, match=r"^image is a tensor of shape \[40, 48\]"):
        net(batch[0, 0])
    with pytest.raises(ConfigError, match=r"is a per-style network \(its style is trained in\): drop style"):
        net(batch, style=photo)


def test_an_arbitrary_style_network_takes_its_style_per_call(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    net = tl.load_stylizer(arbitrary_ckpt(tmp_path / "arbitrary.ckpt"), style_size=64)
    style = make_image(tmp_path / "style.png", size=(48, 48), seed=5)
    batch = torch.rand(1, 3, 40, 48)
    with pytest.raises(ConfigError, match=r"is an arbitrary-style network: give style=<a style image>"):
        net(batch)
    by_path = net(batch, style=style)
    assert torch.allclose(net(batch, style=Image.open(style)), by_path, atol=1e-5)
    assert not torch.allclose(net(batch, style=make_image(tmp_path / "other.png", seed=6)), by_path)
    with pytest.raises(WeightsError, match=r"^path=.*nothing\.ckpt"):
        tl.load_stylizer(tmp_path / "nothing.ckpt")


def _onnx(path: Path, nodes: list, inputs: list[str], constants: list) -> Path:
    """An ONNX stylizer of the exported contract: float ``[N, 3, H, W]`` inputs, one output of that shape."""
    image = [h.make_tensor_value_info(name, T.FLOAT, ["N", 3, f"H{i}", f"W{i}"]) for i, name in enumerate(inputs)]
    out = [h.make_tensor_value_info("stylized", T.FLOAT, ["N", 3, "H0", "W0"])]
    graph = h.make_graph(nodes, "crafted", image, out, initializer=constants)
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 18)]), str(path))
    return path


def test_onnx_stylizers_of_either_family_are_the_same_callable(tmp_path: Path) -> None:
    inverse = _onnx(
        tmp_path / "per_style.onnx",
        [h.make_node("Sub", ["one", "image"], ["stylized"])],
        ["image"],
        [h.make_tensor("one", T.FLOAT, [1], [1.0])],
    )
    photo = Image.open(make_image(tmp_path / "photo.png", size=(40, 36)))
    inverted = torch.tensor(list(tl.load_stylizer(inverse)(photo).tobytes()))
    assert (inverted - (255 - torch.tensor(list(photo.tobytes())))).abs().max() <= 1  # to_pil truncates
    # content / 2 + the style's mean colour / 2: the style reaches the network per call
    half = h.make_tensor("half", T.FLOAT, [1], [0.5])
    axes = h.make_tensor("axes", T.INT64, [2], [2, 3])
    nodes = [
        h.make_node("ReduceMean", ["style", "axes"], ["mean"], keepdims=1),
        h.make_node("Add", ["content", "mean"], ["sum"]),
        h.make_node("Mul", ["sum", "half"], ["stylized"]),
    ]
    net = tl.load_stylizer(_onnx(tmp_path / "arbitrary.onnx", nodes, ["content", "style"], [half, axes]), style_size=64)
    assert net.family == "arbitrary"
    batch = torch.rand(1, 3, 36, 40)
    style = torch.rand(3, 48, 48)
    expected = (batch + images.resize(style, (64, 64)).mean(dim=(1, 2)).view(1, 3, 1, 1)) / 2
    assert torch.allclose(net(batch, style=style), expected, atol=1e-5)


@pytest.mark.slow
def test_a_run_through_the_api_equals_the_same_run_through_the_cli(
    tmp_path: Path, content_path: Path, style_path: Path
) -> None:
    keys = {"size": 32, "steps": 2, "image_every": 0, "seed": 3, "model__weights": None, "runtime__winograd": False}
    overrides = ["optimizer=adam", "trainer.accelerator=cpu"]
    made = tl.stylize(content_path, style_path, overrides=overrides, run_dir=tmp_path / "api", **keys)
    args = [f"task.content={content_path}", f"task.style={style_path}"]
    args += [f"task.{k}={v}" for k, v in list(keys.items())[:3]] + ["seed=3", "model.weights=null"]
    args += ["runtime.winograd=false", *overrides, "task=stylize", f"hydra.run.dir={tmp_path / 'cli'}"]
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    cli = tmp_path / "cli"

    def files(run: Path) -> set[str]:
        names = {str(p.relative_to(run)) for p in run.rglob("*") if p.is_file()}
        return {n if "tfevents" not in n else n.split("events")[0] for n in names} - {"main.log", ".hydra/hydra.yaml"}

    assert files(made.run_dir) == files(cli)
    # Equal to float rounding, not to the bit: the in-process run inherits this test worker's torch thread count
    # (other tests change it), and reductions split over other thread counts round differently.
    assert made.metrics == pytest.approx(json.loads((cli / "metrics.json").read_text()), rel=1e-5)
    pixels = [torch.from_numpy(np.asarray(Image.open(run / "final.png"))).int() for run in (made.run_dir, cli)]
    assert (pixels[0] - pixels[1]).abs().max() <= 1
    assert (made.run_dir / ".hydra/config.yaml").read_text() == (cli / ".hydra/config.yaml").read_text()
