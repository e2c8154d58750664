"""Fine-tune, predict, export and extract with torchvision models other than VGG (random weights, 32 px)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from helpers import FAST, compose_cfg
from transferlab import main
from transferlab.classify import module as classifier

ONE_EPOCH = [*FAST, "task.epochs=1", "task.misclassified=1"]


@pytest.mark.slow  # VGG16's 537 MB checkpoints: about 15 s
def test_vgg_finetunes_then_extracts_by_paper_layer_names(dataset: Path, tmp_path: Path) -> None:
    """VGG is the other tests' ResNet-18 with its own unit names: conv5_2 frozen, fc7 and fc8 read back."""
    run = tmp_path / "run"
    vgg = ["model=vgg16", "model.weights=null", "task.freeze=conv5_2", f"data.root={dataset}"]
    main.run_task(compose_cfg(*ONE_EPOCH, *vgg, "data.max_bad_fraction=0.2"), run)
    ckpt = run / "checkpoints" / "best.ckpt"
    assert sum(map(sum, json.loads((run / "metrics.json").read_text())["val"]["confusion_matrix"])) == 6
    module = classifier.load(ckpt)
    assert module.network.features[26].weight.requires_grad is False  # conv5_2
    assert module.network.features[28].weight.requires_grad is True  # conv5_3
    extract = ["task=extract", f"ckpt_path={ckpt}", f"task.input={dataset / 'val'}", "task.layers=[relu7,fc8]"]
    main.run_task(compose_cfg(*extract, "task.num_workers=0", "trainer.accelerator=cpu"), tmp_path / "x")
    saved = torch.load(tmp_path / "x" / "features.pt", weights_only=True)
    assert {k: tuple(v.shape) for k, v in saved["layers"].items()} == {"relu7": (6, 4096), "fc8": (6, 2)}


def test_mobilenet_with_a_frozen_body_trains_on_cached_features(dataset: Path, tmp_path: Path) -> None:
    overrides = ["model=mobilenet_v3_large", "model.weights=null", "task.freeze=features"]
    deterministic = ["data.augment.random_resized_crop=false", "data.augment.hflip=0"]
    main.run_task(
        compose_cfg(*ONE_EPOCH, *overrides, *deterministic, f"data.root={dataset}", "data.max_bad_fraction=0.2"),
        tmp_path,
    )
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["feature_cache_s"] > 0 and (tmp_path / "confusion_matrix_test.png").is_file()
