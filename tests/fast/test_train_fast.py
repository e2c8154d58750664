"""Training lowers the perceptual loss below the identity's; resume is exact; configs check at the door."""

import json
import shutil

import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import compose_cfg, hparams_columns, make_image, sweep_in_process
from tests.fast.conftest import TINY
from transferlab import images, main, sweep
from transferlab.errors import DataError, DivergedError
from transferlab.fast import data
from transferlab.fast.per_style.module import make_loss
from transferlab.fast.per_style.networks import build_network
from transferlab.fast.settings import TrainSettings
from transferlab.fast.stylizer import read_network


def test_training_beats_the_identity_on_held_out_images(photos):
    """A few Adam steps lower the loss on held-out photos below the identity mapping's (output = input).
    The style is binary noise, far from any photo's statistics, so that the identity is a real bar."""
    torch.manual_seed(0)
    files = data.list_images(photos)
    train, held_out = files[:6], files[6:]
    g = torch.Generator().manual_seed(5)
    style = (0.7 * (torch.rand(1, 32, 32, generator=g) > 0.5) + 0.3 * torch.rand(3, 1, 1, generator=g)).clamp(0, 1)
    loss = make_loss(
        "vgg16", None, "max", "auto", 1.0, style, {"relu2_2": 1.0}, {"relu1_2": 1.0, "relu2_2": 1.0}, (1.0, 1e3, 0.0)
    )
    net = build_network("light", 0.25, 1)
    crops = data.ContentCrops(train, 32, 4 * 8, seed=0)
    val = data.validation_batch(held_out, 32)
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    with torch.no_grad():
        before, identity = float(loss(net(val), val)["loss/total"]), float(loss(val, val)["loss/total"])
    for step in range(8):
        batch = torch.stack([crops[step * 4 + i] for i in range(4)])
        opt.zero_grad()
        loss(net(batch), batch)["loss/total"].backward()
        opt.step()
    with torch.no_grad():
        after = float(loss(net(val), val)["loss/total"])
    assert after < before and after < identity, (before, after, identity)


def test_run_writes_metrics_checkpoints_and_tensorboard(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["steps"] == 4 and "val/loss" in metrics and "val/style_relu4_3" in metrics
    assert (trained / "checkpoints" / "step2.ckpt").is_file() and (trained / "checkpoints" / "last.ckpt").is_file()
    assert any((trained / "tensorboard").glob("events.*"))
    finals = sorted((trained / "val_final").iterdir())  # the final validation's photos, for sweeps' sheets
    assert [p.name for p in finals] == ["00.png", "01.png"] and images.open_rgb(finals[0]).size == (32, 32)
    _, net, spec = read_network(trained / "checkpoints" / "last.ckpt", family="per_style")
    assert spec == {"arch": "light", "width": 0.25, "blocks": 1}
    # The frozen VGG is not stored in checkpoints.
    state = torch.load(trained / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert not any(k.startswith("perceptual.encoder.") for k in state)


def test_the_final_network_is_validated_once(trained):
    """val_every=2 of 4 steps: validations at steps 2 and 4, and no third, repeated one after training."""
    events = EventAccumulator(str(trained / "tensorboard")).Reload()
    assert len(events.Scalars("val/loss")) == 2
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["val/loss"] == pytest.approx(events.Scalars("val/loss")[-1].value)


def test_sweep_contact_sheet_has_a_row_of_validation_photos_per_job(trained, tmp_path):
    """Two train_fast jobs, the second failed: a row each, the failed one red with its error."""
    for job, weight in (("0", "1e4"), ("1", "1e5")):
        (tmp_path / job / ".hydra").mkdir(parents=True)
        (tmp_path / job / ".hydra" / "overrides.yaml").write_text(f"- loss.style_weight={weight}\n")
    shutil.copytree(trained / "val_final", tmp_path / "0" / "val_final")
    shutil.copy(trained / "metrics.json", tmp_path / "0")
    shutil.copy(trained / "result.json", tmp_path / "0")
    (tmp_path / "1" / "error.txt").write_text("job 1 (loss.style_weight=1e5): boom\n")
    assert sweep.labels(sweep.job_dirs(tmp_path))[0][:2] == [
        "loss.style_weight=1e4",
        "val loss " + format(json.loads((trained / "metrics.json").read_text())["val/loss"], ".4g"),
    ]
    sheet = Image.open(sweep.write_contact_sheet(tmp_path))
    assert sheet.width == 2 * 256 and sheet.getpixel((10, sheet.height // 2 + 10)) == (200, 40, 40)


def test_sweep_of_two_jobs_writes_a_contact_sheet(photos, style_image, tmp_path):
    """A row of final validation photos per job, captioned by its result; HParams lead with the swept key."""
    common = [*TINY, f"data.root={photos}", f"task.style={style_image}", "task.steps=2"]
    sheet = Image.open(sweep_in_process(tmp_path, common, "loss.style_weight", ["1e4", "1e5"]))
    assert sheet.width == 2 * 256 and sheet.height > 2 * 256  # a row of two photos per job
    assert sweep.labels(sweep.job_dirs(tmp_path))[1][0] == "loss.style_weight=1e5"
    assert hparams_columns(tmp_path / "0")[0] == "* loss.style_weight"


def test_resume_is_exact(trained, train_cfg, photos, style_image, tmp_path):
    cfg = train_cfg(
        photos,
        style_image,
        "task.steps=4",
        "task.checkpoint_every=2",
        f"ckpt_path={trained / 'checkpoints' / 'step2.ckpt'}",
    )
    main.run_task(cfg, tmp_path)
    a = read_network(trained / "checkpoints" / "last.ckpt", family="per_style")[1].state_dict()
    b = read_network(tmp_path / "checkpoints" / "last.ckpt", family="per_style")[1].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_folder_without_images_is_one_line(train_cfg, tmp_path, style_image):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no photos")
    cfg = train_cfg(tmp_path / "empty", style_image, "task.steps=1")
    with pytest.raises(DataError, match=r"data.root=.*empty holds no images") as info:
        main.run_task(cfg, tmp_path / "run")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "override,message",
    [
        ("fastnet.arch=mobile", r"fastnet.arch='mobile' is invalid; choose one of johnson, light"),
        ("fastnet.width=0", r"fastnet.width=0 is invalid"),
        ("fastnet.blocks=33", r"fastnet.blocks=33 is invalid; it must be in \[0, 32\]"),
        ("data.crop=8", r"data.crop=8 is invalid; it must be an integer >= 16"),
        ("+layers.style.relu5_4=1", r"layers.style: layer 'relu5_4' does not exist in vgg16"),
        ("optimizer=sgd", r"optimizer.name='sgd' is invalid"),
        ("ckpt_path=https://x/y.ckpt", r"local files only"),
    ],
)
def test_bad_config_is_one_line(override, message):
    cfg = compose_cfg("task=train_fast", "data.root=x", "task.style=y.png", override)
    with pytest.raises(Exception, match=message) as info:
        TrainSettings.from_cfg(cfg)
    assert "\n" not in str(info.value)


def test_experiment_data_exists_from_any_directory(hymenoptera):
    from transferlab import fetch

    cfg = compose_cfg("experiment=fast_starry")
    s = TrainSettings.from_cfg(cfg)
    assert s.network.arch == "johnson" and s.model.arch == "vgg16" and list(s.content_layers) == ["relu2_2"]
    assert s.photos.root.is_dir() and fetch.resolve(s.style, "task.style").is_file()
    assert s.photos.root == hymenoptera / "train"


def test_small_image_is_cropped_from_an_upscaled_photo(tmp_path):
    crops = data.ContentCrops([make_image(tmp_path / "a.png", size=(20, 12))], 32, 2, seed=0)
    assert crops[0].shape == (3, 32, 32)


def test_a_run_that_diverges_stops_in_one_line_without_a_nan_checkpoint(train_cfg, photos, style_image, tmp_path):
    """Issue 32 item 10: lr=1e6 drove the loss to NaN and the run exited 0 with NaN weights in last.ckpt."""
    cfg = train_cfg(photos, style_image, "task.steps=8", "task.checkpoint_every=1", "task.lr=1e6", "loss.tv_weight=0")
    with pytest.raises(DivergedError, match=r"the training loss became (nan|inf) at step \d+: training diverged"):
        main.run_task(cfg, tmp_path)
    assert not (tmp_path / "checkpoints" / "last.ckpt").exists()
    for path in (tmp_path / "checkpoints").glob("*.ckpt"):
        state = torch.load(path, weights_only=True)["state_dict"]
        assert all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point()), path
