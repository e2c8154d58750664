"""Training at scale, in process: the sample stream split by rank, a resume by another world size refused."""

from __future__ import annotations

import pytest
import torch

from helpers import adain_train_cfg, compose_cfg
from transferlab import main, shards
from transferlab.errors import ConfigError, DataError
from transferlab.fast.train import rank_indices


def test_ranks_split_each_step_of_the_global_stream():
    batch, world, steps = 2, 2, 3
    per_step = batch * world
    streams = [list(rank_indices(0, steps * per_step, r, world)) for r in range(world)]
    for k in range(steps):  # step k: each rank's batch is its next `batch` samples
        taken = sorted(i for s in streams for i in s[k * batch : (k + 1) * batch])
        assert taken == list(range(k * per_step, (k + 1) * per_step))
    resumed = [list(rank_indices(per_step, steps * per_step, r, world)) for r in range(world)]
    assert all(resumed[r] == streams[r][batch:] for r in range(world))
    assert list(rank_indices(4, 12, 0, 1)) == list(range(4, 12))  # one process: the stream as it was


def test_resume_by_another_world_size_is_one_line(trained, train_cfg, photos, style_image, tmp_path):
    saved = torch.load(trained / "checkpoints" / "step2.ckpt", weights_only=True)
    assert saved["train_fast"]["world_size"] == 1
    saved["train_fast"]["world_size"] = 2
    torch.save(saved, tmp_path / "ddp.ckpt")
    cfg = train_cfg(photos, style_image, "task.steps=4", f"ckpt_path={tmp_path / 'ddp.ckpt'}")
    with pytest.raises(ConfigError, match=r"trained by 2 processes and this run has 1 .*resume with 2"):
        main.run_task(cfg, tmp_path / "run")


def test_train_adain_reads_photos_and_styles_from_shards(photos, styles, tmp_path):
    for name, folder in (("photos", photos), ("styles", styles)):
        main.run_task(compose_cfg("task=pack", f"task.input={folder}", "task.shard_samples=3"), tmp_path / name)
    # a manifest, or the folder holding it
    cfg = adain_train_cfg(tmp_path / "photos" / "shards" / shards.MANIFEST, tmp_path / "styles" / "shards")
    result = main.run_task(cfg, tmp_path / "run")
    assert result is not None and (tmp_path / "run" / "val_grid.png").is_file()
    listed = (tmp_path / "run" / "val_files.txt").read_text().splitlines()
    assert len(listed) == 2 and all(".tar[" in line for line in listed)


@pytest.mark.parametrize(
    ("experiment", "overrides", "message"),
    [
        (
            "johnson_coco",
            [],
            r"data.root=data/coco/train2014 does not exist; experiment=johnson_coco expects the MS-COCO",
        ),
        ("adain_coco_wikiart", ["data.root={photos}", "data.val_count=2"], r"task.styles=data/wikiart/train does not"),
    ],
)
def test_paper_scale_experiments_say_where_their_datasets_go(
    experiment, overrides, message, photos, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # the presets name folders relative to where the run starts
    cfg = compose_cfg(
        f"experiment={experiment}",
        "model.weights=null",
        "trainer.accelerator=cpu",
        *(o.format(photos=photos) for o in overrides),
    )
    with pytest.raises(DataError, match=message) as error:
        main.run_task(cfg, tmp_path / "run")
    assert "\n" not in str(error.value) and "or set " in str(error.value)
