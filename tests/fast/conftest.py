"""Fixtures of the fast tests: generated photos and style, one short training run with a mid checkpoint.
Every test here (its fixtures' setup included) runs torch on one thread: see ``pytest_runtest_setup``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from helpers import TINY_DATA, compose_cfg, make_image
from transferlab import main

_threads: list[int] = []


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """One intra-op thread for the tests of this folder, restored after each: their tensors (32-64 px,
    8-channel networks) are too small to split, and on a shared 2-core CPU two threads wait on each
    other at every op (a 32 px light-network step: ~13 ms on one thread, 30-1400 ms on two)."""
    _threads.append(torch.get_num_threads())
    torch.set_num_threads(1)


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if _threads:
        torch.set_num_threads(_threads.pop())


TINY = [
    "task=train_fast",
    *TINY_DATA,
    "task.style_size=48",
    "task.val_every=2",
    "task.log_every=1",
    "fastnet=light",
    "fastnet.width=0.25",
    "fastnet.blocks=1",
]


@pytest.fixture(scope="session")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    for i in range(8):
        make_image(root / f"set{i % 2}" / f"{i}.png", size=(48 + 4 * i, 40), seed=10 + i)
    return root


@pytest.fixture(scope="session")
def style_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image(tmp_path_factory.mktemp("style") / "style.png", size=(48, 48), seed=99)


def _train_cfg(photos: Path, style: Path, *overrides: str) -> DictConfig:
    return compose_cfg(*TINY, f"data.root={photos}", f"task.style={style}", *overrides)


@pytest.fixture(scope="session")
def train_cfg() -> Callable[..., DictConfig]:
    """``train_cfg(photos, style, *overrides)``: a tiny train_fast config on the CPU."""
    return _train_cfg


@pytest.fixture(scope="session")
def trained(photos: Path, style_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 steps with a checkpoint every 2: checkpoints/step2.ckpt and checkpoints/last.ckpt."""
    out = tmp_path_factory.mktemp("train")
    main.run_task(_train_cfg(photos, style_image, "task.steps=4", "task.checkpoint_every=2"), out)
    return out


@pytest.fixture(scope="session")
def styles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three small style images (train_adain's task.styles)."""
    root = tmp_path_factory.mktemp("styles")
    for i in range(3):
        make_image(root / f"s{i}.png", size=(44 + 4 * i, 40), seed=90 + i)
    return root
