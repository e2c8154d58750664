"""Feed-forward apply within memory (issue 32 item 7): a network's measured footprint, an image beyond memory
tiled (per-style networks) or refused in one line with the size that fits (AdaIN), exports refusing sizes
beyond memory. The device's memory is lowered in the test (``memory.available_memory``), never allocated."""

from __future__ import annotations

import logging

import pytest
import torch

from helpers import adain_train_cfg, compose_cfg, lively, make_image
from transferlab import images, main, memory
from transferlab.fast import stylizer
from transferlab.fast.arbitrary.networks import AdaINNet
from transferlab.fast.per_style.networks import MIN_SIZE, build_network
from transferlab.fast.tiled import Bounded
from transferlab.memory import MemoryLimitError


def test_a_footprint_predicts_the_peak_at_another_size():
    net = build_network("light", 0.25, 1).eval()
    footprint = memory.footprint(net, MIN_SIZE)
    measured = memory.peak_bytes(net, torch.rand(1, 3, 96, 200))
    assert footprint.per_pixel > 0 and abs(footprint.peak(96 * 200) - measured) <= 0.05 * measured
    # A batch is its images' pixels together.
    assert abs(memory.peak_bytes(net, torch.rand(3, 3, 64, 64)) - footprint.peak(3 * 64 * 64)) <= 0.05 * measured


def test_an_image_beyond_memory_is_tiled_and_matches_the_whole(tmp_path):
    """A per-style network is local but for instance norm, whose statistics each tile takes from itself:
    tiles as large as memory allows stay close to the whole image's result."""
    torch.manual_seed(0)
    net = build_network("johnson").eval()
    image = images.load_image(make_image(tmp_path / "a.png", size=(200, 160), seed=3))[None]
    footprint = memory.footprint(net, MIN_SIZE)
    bound = Bounded(net, lambda: footprint, footprint.peak(160 * 160 + 100), MIN_SIZE, tile=True)
    assert not bound.fits(160, 200) and bound.tile_side == 160
    bound.check(tmp_path / "a.png", 160, 200)  # tiling makes it fit: no refusal
    with torch.inference_mode():
        whole, tiled = net(image), bound(image)
    difference = (tiled - whole).abs()
    assert tiled.shape == whole.shape
    assert float(difference.mean()) < 0.04 and float(difference.max()) < 0.25
    # A batch that fits image by image is split, not tiled: exactly the whole result.
    pair = torch.cat([image[..., :100], image[..., 100:]])
    with torch.inference_mode():
        torch.testing.assert_close(bound(pair), net(pair), atol=1e-5, rtol=0)


def test_apply_fast_tiles_an_image_beyond_memory(trained, tmp_path, monkeypatch, caplog):
    ckpt = trained / "checkpoints" / "last.ckpt"
    footprint = memory.footprint(stylizer.load(ckpt), MIN_SIZE)  # as apply_fast measures it
    # Memory for a 96 px tile at BUDGET_SHARE: a 200 x 150 image does not fit whole.
    monkeypatch.setattr(
        memory, "available_memory", lambda device: int(footprint.peak(96 * 96 + 50) / memory.BUDGET_SHARE)
    )
    make_image(tmp_path / "in" / "big.png", size=(200, 150), seed=4)
    with caplog.at_level(logging.INFO):
        main.run_task(compose_cfg("task=apply_fast", f"ckpt_path={ckpt}", f"task.input={tmp_path / 'in'}"), tmp_path)
    assert images.load_image(tmp_path / "stylized" / "big.png").shape == (3, 150, 200)
    assert any("tiles of 96 px (memory)" in r.getMessage() for r in caplog.records)


def test_adain_refuses_an_image_beyond_memory_with_the_size_that_fits(tmp_path):
    """AdaIN's statistics are the whole content's: no tiling; one line naming the image and task.size."""
    net = AdaINNet().eval()
    net.load_state_dict(lively(net.state_dict()))
    with torch.inference_mode():
        code = net.code(torch.rand(1, 3, 32, 32))
    stylize = lambda batch: net.stylize(batch, [code])  # noqa: E731
    footprint = memory.footprint(stylize, 16)
    bound = Bounded(stylize, lambda: footprint, footprint.peak(64 * 64), 16, tile=False)
    bound.check(tmp_path / "small.png", 48, 64)
    with pytest.raises(MemoryLimitError) as error:
        bound.check(tmp_path / "photo.jpg", 300, 400)
    message = str(error.value)
    longest = footprint.largest_side(footprint.peak(64 * 64), 300, 400)
    assert "\n" not in message and "photo.jpg at 400x300 px" in message and f"task.size={longest}" in message
    assert 64 <= longest <= 80  # the long side of a 4:3 image with about 64 x 64 px


@pytest.mark.parametrize("task", ["export_fast"])
def test_an_export_check_size_beyond_memory_is_refused(task, trained, tmp_path, monkeypatch):
    monkeypatch.setattr(memory, "available_memory", lambda device: 2**30)
    cfg = compose_cfg(
        f"task={task}", f"ckpt_path={trained / 'checkpoints' / 'last.ckpt'}", "task.check_size=[16000,16000]"
    )
    with pytest.raises(MemoryLimitError, match=r"task.check_size=\[16000, 16000\]: the run needs an estimated"):
        main.run_task(cfg, tmp_path)
    assert not list(tmp_path.iterdir())


def test_train_fast_refuses_a_crop_beyond_memory_before_training(train_cfg, photos, style_image, tmp_path, monkeypatch):
    monkeypatch.setattr(memory, "available_memory", lambda device: 2**30)
    cfg = train_cfg(photos, style_image, "data.crop=8192", "data.batch_size=4")
    with pytest.raises(MemoryLimitError, match=r"data.crop=8192 with data.batch_size=4: the run needs an estimated"):
        main.run_task(cfg, tmp_path)
    assert not (tmp_path / "checkpoints").exists()


def test_train_adain_refuses_a_crop_beyond_memory_before_training(photos, styles, tmp_path, monkeypatch):
    monkeypatch.setattr(memory, "available_memory", lambda device: 2**30)
    cfg = adain_train_cfg(photos, styles, "data.crop=8192", "data.batch_size=2", "task.style_resize=8192")
    with pytest.raises(MemoryLimitError, match=r"data.crop=8192 with data.batch_size=2: the run needs an estimated"):
        main.run_task(cfg, tmp_path)
    assert not (tmp_path / "checkpoints").exists()


def test_images_no_larger_than_the_probes_are_not_measured(tmp_path):
    bound = Bounded(lambda batch: batch * 0.5, lambda: pytest.fail("measured"), 0, MIN_SIZE, tile=False)
    bound.check(tmp_path / "small.png", 128, 128)
    torch.testing.assert_close(bound(torch.ones(1, 3, 128, 128)), torch.full((1, 3, 128, 128), 0.5))
