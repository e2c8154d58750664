"""Automatic strength maps: the spectral-residual saliency finds a salient disk over a fine texture, and
stylize takes task.strength_map=auto."""

import pytest
import torch

from helpers import make_image, stylize_cfg
from transferlab import main, saliency
from transferlab.errors import ConfigError


def disk_over_texture(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """A bright disk over fine grey noise ``[1, 3, n, n]``, and the disk's mask."""
    texture = 0.4 + 0.2 * torch.rand(1, 1, n, n, generator=torch.Generator().manual_seed(0))
    y, x = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    disk = (y - n * 3 // 8) ** 2 + (x - n * 5 // 8) ** 2 < (n // 8) ** 2
    return torch.where(disk, 1.0, texture).expand(1, 3, n, n), disk


def test_the_salient_disk_gets_less_style():
    image, disk = disk_over_texture()
    strength = saliency.auto_strength(image)[0, 0]
    assert strength.shape == disk.shape and strength.min() >= 1 - saliency.KEEP - 1e-6 and strength.max() <= 1
    assert strength[disk].mean() < strength[~disk].mean() - 0.2


def test_a_flat_or_thin_image_gets_full_style():
    assert torch.equal(saliency.auto_strength(torch.full((2, 3, 20, 30), 0.5)), torch.ones(2, 1, 20, 30))
    assert saliency.auto_strength(torch.rand(1, 3, 8, 300)).shape == (1, 1, 8, 300)


def test_stylize_takes_auto_and_refuses_a_misspelling(tmp_path):
    content, style = make_image(tmp_path / "c.png"), make_image(tmp_path / "s.png", seed=1)
    main.run_task(stylize_cfg(content, style, "task.strength_map=auto", steps=2), tmp_path / "run")
    assert (tmp_path / "run" / "final.png").is_file()
    try:
        main.run_task(stylize_cfg(content, style, "task.strength_map=Auto"), tmp_path / "bad")
    except ConfigError as error:
        assert "task.strength_map='Auto' is not a file" in str(error) and "\n" not in str(error)
    else:
        raise AssertionError("a misspelt auto ran")


def test_a_bundled_sample_is_a_strength_map_and_an_unknown_one_is_one_line(tmp_path):
    from transferlab.errors import FetchError
    from transferlab.style.settings import StyleSettings

    content, style = make_image(tmp_path / "c.png"), make_image(tmp_path / "s.png", seed=1)
    settings = StyleSettings.from_cfg(stylize_cfg(content, style, "task.strength_map=sample:chelsea"))
    assert settings.inputs.strength_map.name == "chelsea.jpg"
    with pytest.raises(FetchError, match="task.strength_map=sample:chelsa is not a bundled sample"):
        StyleSettings.from_cfg(stylize_cfg(content, style, "task.strength_map=sample:chelsa"))
