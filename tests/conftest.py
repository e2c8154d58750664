"""Fixtures shared by every test folder (helpers live in helpers.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import make_dataset, make_image


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The runs' user cache (runtime.winograd=auto's timings among others) in a folder of the session's own,
    shared by the CLI processes it starts, never the user's."""
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture
def content_path(tmp_path: Path) -> Path:
    return make_image(tmp_path / "content.png", seed=1)


@pytest.fixture
def style_path(tmp_path: Path) -> Path:
    return make_image(tmp_path / "style.png", size=(40, 40), seed=2)


@pytest.fixture
def hymenoptera(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tiny stand-in for dataset:hymenoptera, already in a private cache ($XDG_CACHE_HOME) and pinned by a
    manifest of its own (every use checks the cached files against it): no download."""
    from transferlab import fetch

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    staged = make_dataset(tmp_path / "staged", {"train": 3, "val": 1}, classes=("ants", "bees"))
    manifest = tmp_path / "hymenoptera.sha256"
    files = sorted(p for p in staged.rglob("*") if p.is_file())
    manifest.write_text("".join(f"{fetch.sha256_of(p)}  {p.relative_to(staged).as_posix()}\n" for p in files))
    # An absolute manifest path stays itself under assets/ (pathlib joins an absolute path as that path).
    spec = fetch.DATASETS["hymenoptera"]._replace(manifest=str(manifest))
    monkeypatch.setitem(fetch.DATASETS, "hymenoptera", spec)
    root = fetch.dataset_dir("hymenoptera", fetch.default_cache_dir() / "datasets")
    root.parent.mkdir(parents=True)
    return staged.rename(root)
