"""Fine-tuning reads an ImageFolder packed into shards (task=pack task.classes=true) as it reads the folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from torchvision.transforms.functional import pil_to_tensor

from helpers import FAST, compose_cfg, make_dataset
from transferlab import main
from transferlab.classify import data
from transferlab.classify.settings import FinetuneSettings
from transferlab.errors import DataError


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("packed")
    root = make_dataset(tmp / "data", {"train": 3, "val": 1})
    main.run_task(
        compose_cfg("task=pack", f"task.input={root}", "task.classes=true", "task.shard_samples=4"), tmp / "run"
    )
    return root, tmp / "run" / "shards"


def splits(root: Path | str) -> data.Splits:
    return data.load(FinetuneSettings.from_cfg(compose_cfg(*FAST, f"data.root={root}")).data, seed=0)


def test_shards_give_the_folders_images_classes_and_splits(packed):
    folder, shards = splits(packed[0]), splits(packed[1])
    assert shards.classes == folder.classes and shards.train_targets == folder.train_targets
    for split in ("train", "val"):
        a, b = getattr(folder, split), getattr(shards, split)
        assert len(a) == len(b) and all(
            (pil_to_tensor(a[i][0]) == pil_to_tensor(b[i][0])).all() and a[i][1] == b[i][1] for i in range(len(a))
        )
    train_only = splits(packed[1] / "train" / "shards.json")  # a manifest: val held out by data.val_fraction
    assert len(train_only.val) == 2 and len(train_only.train) == 4


def test_photo_shards_without_classes_are_one_line(packed, tmp_path):
    main.run_task(compose_cfg("task=pack", f"task.input={packed[0] / 'val'}"), tmp_path / "run")
    with pytest.raises(DataError, match=r"holds no classes .*task=pack task.classes=true"):
        splits(tmp_path / "run" / "shards")
