"""Fixtures of the classify tests: a generated two-class dataset and one fine-tuned run on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import FAST, compose_cfg, make_dataset
from transferlab import main


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_dataset(tmp_path_factory.mktemp("data"), {"train": 6, "val": 3, "test": 2})
    (root / "train" / "ants" / "notes.txt").write_text("not an image")
    (root / "train" / "bees" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return root


@pytest.fixture(scope="session")
def trained(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted two-epoch run, shared by the tests that need a checkpoint."""
    out = tmp_path_factory.mktemp("run")
    cfg = compose_cfg(*FAST, f"data.root={dataset}", "data.max_bad_fraction=0.2")
    main.run_task(cfg, out)
    return out
