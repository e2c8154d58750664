"""Fine-tune, predict, export and extract with torchvision models other than VGG (random weights, 32 px)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch

from helpers import FAST, compose_cfg
from transferlab import main
from transferlab.classify import module as classifier

ONE_EPOCH = [*FAST, "task.epochs=1", "task.misclassified=1"]


def test_resnet_finetunes_by_stage_then_predicts_exports_and_extracts(dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    main.run_task(
        compose_cfg(
            *ONE_EPOCH,
            "model=resnet18",
            "model.weights=null",
            "task.freeze=layer3",
            f"data.root={dataset}",
            "data.max_bad_fraction=0.2",
        ),
        run,
    )
    ckpt = run / "checkpoints" / "best.ckpt"
    metrics = json.loads((run / "metrics.json").read_text())
    assert sum(map(sum, metrics["val"]["confusion_matrix"])) == 6 and metrics["feature_cache_s"] is None
    module = classifier.load(ckpt)
    assert module.hparams.arch == "resnet18" and module(torch.rand(2, 3, 32, 32)).shape == (2, 2)

    common = [f"ckpt_path={ckpt}", "trainer.accelerator=cpu"]
    main.run_task(
        compose_cfg("task=predict", *common, f"task.input={dataset / 'val'}", "task.num_workers=0"), tmp_path / "p"
    )
    rows = list(csv.DictReader((tmp_path / "p" / "predictions.csv").open()))
    assert len(rows) == 6 and {r["class_1"] for r in rows} <= {"ants", "bees"}

    report = main.run_task(compose_cfg("task=export", *common), tmp_path / "e")
    assert report["onnx"]["within_tolerance"] and report["export"]["within_tolerance"]

    extract = [
        "task=extract",
        *common,
        f"task.input={dataset / 'val'}",
        "task.layers=[layer4,flatten]",
        "task.num_workers=0",
    ]
    main.run_task(compose_cfg(*extract), tmp_path / "x")
    saved = torch.load(tmp_path / "x" / "features.pt", weights_only=True)
    assert {k: tuple(v.shape) for k, v in saved["layers"].items()} == {"layer4": (6, 512), "flatten": (6, 512)}


def test_mobilenet_with_a_frozen_body_trains_on_cached_features(dataset: Path, tmp_path: Path) -> None:
    overrides = ["model=mobilenet_v3_large", "model.weights=null", "task.freeze=features"]
    deterministic = ["data.augment.random_resized_crop=false", "data.augment.hflip=0"]
    main.run_task(
        compose_cfg(*ONE_EPOCH, *overrides, *deterministic, f"data.root={dataset}", "data.max_bad_fraction=0.2"),
        tmp_path,
    )
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["feature_cache_s"] > 0 and (tmp_path / "confusion_matrix_test.png").is_file()
