"""task=predict on the fine-tuned test run."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import pytest

from helpers import CLASSES, compose_cfg, make_image
from transferlab import main


def test_predict_writes_top_k_csv(trained: Path, dataset: Path, tmp_path: Path) -> None:
    cfg = compose_cfg(
        "task=predict",
        f"ckpt_path={trained / 'checkpoints' / 'best.ckpt'}",
        f"task.input={dataset / 'val'}",
        "task.top_k=2",
        "task.num_workers=0",
        "trainer.accelerator=cpu",
    )
    main.run_task(cfg, tmp_path)
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"images": 6, "top_k": 2, "classes": 2}
    assert json.loads((tmp_path / "result.json").read_text())["images"] == []
    rows = list(csv.DictReader((tmp_path / "predictions.csv").open()))
    assert [r["file"] for r in rows] == [f"{c}/{i}.png" for c in CLASSES for i in range(3)]
    for row in rows:
        assert {row["class_1"], row["class_2"]} == set(CLASSES)
        assert float(row["prob_1"]) >= float(row["prob_2"])
        assert abs(float(row["prob_1"]) + float(row["prob_2"]) - 1) < 1e-4


def test_top_k_above_classes_is_stated_and_gif_is_read(
    trained: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "in"
    make_image(folder / "a.gif")  # finetune's FileCheck accepts GIF too (images.EXTENSIONS)
    cfg = compose_cfg(
        "task=predict",
        f"ckpt_path={trained / 'checkpoints' / 'best.ckpt'}",
        f"task.input={folder}",
        "task.top_k=5",
        "task.num_workers=0",
        "trainer.accelerator=cpu",
    )
    with caplog.at_level(logging.WARNING):
        main.run_task(cfg, tmp_path / "out")
    assert "task.top_k=5 is more than the 2 classes" in caplog.text
    rows = list(csv.DictReader((tmp_path / "out" / "predictions.csv").open()))
    assert [r["file"] for r in rows] == ["a.gif"] and "class_3" not in rows[0]


def test_bundled_samples_and_their_folders_are_inputs_as_the_door_checked_them() -> None:
    from transferlab.classify import data
    from transferlab.classify.settings import ImagesIn
    from transferlab.fast import apply

    sizes = {"resize": 40, "crop": 32}
    names, loader = data.image_loader(ImagesIn("sample:chelsea", 1, 0, 0.0), sizes)
    assert names[0].endswith("chelsea.jpg") and next(iter(loader)).shape == (1, 3, 32, 32)
    names, _ = data.image_loader(ImagesIn("sample:content", 4, 0, 0.0), sizes)
    assert "chelsea.jpg" in names  # relative to the bundled folder
    files = apply.gather(("sample:chelsea", "sample:styles"))
    assert files[0].name == "chelsea.jpg" and len(files) > 1 and all(f.is_file() for f in files)
