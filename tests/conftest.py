"""Shared fixtures: small generated images, Hydra-composed configs, and real `python run.py` runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def make_image(path: Path, size: tuple[int, int] = (48, 40), seed: int = 0, mode: str = "RGB") -> Path:
    """A small image with structure (gradients plus noise), saved in the format of its suffix."""
    g = torch.Generator().manual_seed(seed)
    w, h = size
    y, x = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = torch.stack([x, y, (x + y) / 2]) * 0.7 + 0.3 * torch.rand(3, h, w, generator=g)
    array = (base.clamp(0, 1) * 255).byte().permute(1, 2, 0).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, "RGB").convert(mode).save(path)
    return path


@pytest.fixture
def content_path(tmp_path: Path) -> Path:
    return make_image(tmp_path / "content.png", seed=1)


@pytest.fixture
def style_path(tmp_path: Path) -> Path:
    return make_image(tmp_path / "style.png", size=(40, 40), seed=2)


def compose_cfg(*overrides: str) -> DictConfig:
    """The config `python run.py OVERRIDES` would get, composed with Hydra's compose API."""
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=False)


def stylize_cfg(content_path: Path, style_path: Path, *overrides: str, size: int = 32, steps: int = 4) -> DictConfig:
    """A stylize config on local images with random weights, small and short, on the CPU."""
    return compose_cfg(
        "model.weights=null",
        f"task.content={content_path}",
        f"task.style={style_path}",
        f"task.size={size}",
        f"task.steps={steps}",
        "task.image_every=0",
        "trainer.accelerator=cpu",
        *overrides,
    )


def run_cli(*args: str, cwd: Path, timeout: int = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python run.py ARGS` in a subprocess, importing this checkout's sources, never the network."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
