"""Fixtures shared by every test folder (helpers live in helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import make_dataset, make_image


@pytest.fixture
def content_path(tmp_path: Path) -> Path:
    return make_image(tmp_path / "content.png", seed=1)


@pytest.fixture
def style_path(tmp_path: Path) -> Path:
    return make_image(tmp_path / "style.png", size=(40, 40), seed=2)


@pytest.fixture
def hymenoptera(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tiny stand-in for dataset:hymenoptera, already in a private cache ($XDG_CACHE_HOME): no download."""
    from transferlab import fetch

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = fetch.dataset_dir("hymenoptera", fetch.default_cache_dir() / "datasets")
    return make_dataset(root, {"train": 3, "val": 1}, classes=("ants", "bees"))
