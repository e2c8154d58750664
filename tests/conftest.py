"""Fixtures shared by every test folder (helpers live in helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import make_image


@pytest.fixture
def content_path(tmp_path: Path) -> Path:
    return make_image(tmp_path / "content.png", seed=1)


@pytest.fixture
def style_path(tmp_path: Path) -> Path:
    return make_image(tmp_path / "style.png", size=(40, 40), seed=2)
