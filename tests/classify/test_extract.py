"""task=extract from a checkpoint and from torchvision's VGG."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch

from helpers import CLASSES, compose_cfg, make_image
from transferlab import images, main
from transferlab.classify import data
from transferlab.classify import module as classifier
from transferlab.classify.settings import ExtractSettings


def test_extract_named_layers_from_checkpoint(trained: Path, dataset: Path, tmp_path: Path) -> None:
    cfg = compose_cfg(
        "task=extract",
        f"ckpt_path={trained / 'checkpoints' / 'best.ckpt'}",
        f"task.input={dataset / 'val'}",
        "task.layers=[layer3,flatten,fc]",
        "task.num_workers=0",
        "trainer.accelerator=cpu",
    )
    main.run_task(cfg, tmp_path)
    saved = torch.load(tmp_path / "features.pt", weights_only=True)
    shapes = {k: tuple(v.shape) for k, v in saved["layers"].items()}
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["images"] == 6 and {k: tuple(v) for k, v in metrics["layers"].items()} == shapes
    assert shapes == {"layer3": (6, 256), "flatten": (6, 512), "fc": (6, 2)}
    manifest = list(csv.DictReader((tmp_path / "manifest.csv").open()))
    assert [m["file"] for m in manifest] == saved["files"] == [f"{c}/{i}.png" for c in CLASSES for i in range(3)]
    # Rows follow the files: the logits of fc are the classifier's own.
    module = classifier.load(trained / "checkpoints" / "best.ckpt")
    batch = torch.stack([data.eval_transform(36, 32)(images.open_rgb(dataset / "val" / f)) for f in saved["files"]])
    with torch.no_grad():
        torch.testing.assert_close(saved["layers"]["fc"], module(batch), atol=1e-4, rtol=1e-4)


def test_extract_unpooled_maps_without_checkpoint(dataset: Path, tmp_path: Path) -> None:
    cfg = compose_cfg(
        "task=extract",
        "model=vgg16",
        "model.weights=null",
        f"task.input={dataset / 'test' / 'ants' / '0.png'}",
        "task.layers=[conv1_1,pool5]",
        "task.pool=false",
        "task.resize_size=32",
        "task.crop_size=32",
        "task.num_workers=0",
        "trainer.accelerator=cpu",
    )
    main.run_task(cfg, tmp_path)
    saved = torch.load(tmp_path / "features.pt", weights_only=True)
    assert tuple(saved["layers"]["conv1_1"].shape) == (1, 64, 32, 32)
    assert tuple(saved["layers"]["pool5"].shape) == (1, 512, 1, 1)
    assert saved["layers"]["conv1_1"].min() < 0  # a conv output, not overwritten by the in-place ReLU after it


def test_one_layer_given_as_a_string_is_that_layer_not_its_letters(tmp_path: Path) -> None:
    image = make_image(tmp_path / "a.png")
    cfg = compose_cfg("task=extract", "model.weights=null", f"task.input={image}", "task.layers=relu7")
    assert ExtractSettings.from_cfg(cfg).layers == ("relu7",)
