"""The fine-tuning feature cache: when it is used, that it computes what the uncached path does, and its key."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from helpers import FAST, compose_cfg, make_dataset
from transferlab import main
from transferlab.classify import data, feature_cache, networks, settings
from transferlab.classify import module as classifier
from transferlab.classify.settings import FinetuneSettings
from transferlab.errors import ConfigError

CACHEABLE = [*FAST, "task.freeze=all", "data.augment.random_resized_crop=false", "data.augment.hflip=0"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data"), {"train": 4, "val": 2})


def setup(root: Path, *overrides: str) -> tuple[classifier.Classifier, data.ImageFolderData]:
    cfg = compose_cfg(*CACHEABLE, f"data.root={root}", *overrides)
    torch.manual_seed(0)
    splits = data.load(settings.data_settings(cfg.data), cfg.seed)
    network, norm = networks.build("vgg16", None, "auto", 2, 0.5)
    module = classifier.Classifier(
        network,
        "vgg16",
        splits.classes,
        {"mean": list(norm.mean), "std": list(norm.std), "bgr": False},
        {"resize": 36, "crop": 32},
        freeze=cfg.task.freeze,
        dropout=0.5,
    )
    return module, data.ImageFolderData(splits, settings.data_settings(cfg.data), {"resize": 36, "crop": 32}, cfg.seed)


def cached(*overrides: str, n_images: int = 100) -> bool:
    s = FinetuneSettings.from_cfg(compose_cfg(*overrides, "data.root=unused"))
    return settings.for_dataset(s, ["a", "b"], [0, 1], n_images).cache_features


def test_when_the_cache_is_used() -> None:
    assert cached(*CACHEABLE, "task.freeze=all")
    assert cached(*CACHEABLE, "task.freeze=features")
    assert cached(*CACHEABLE, "model=vgg16", "task.freeze=13")  # every conv frozen
    assert not cached(*CACHEABLE, "model=vgg16", "task.freeze=conv5_2")
    assert not cached(*CACHEABLE, "task.freeze=layer3")
    assert not cached(*FAST, "task.freeze=all")  # random augmentation
    assert not cached(*CACHEABLE, "model=vgg16", n_images=100_000)  # 10 GB of VGG features
    assert not cached(*CACHEABLE, "task.cache_features=false")


def test_cache_refused_with_one_line_when_not_valid(tmp_path: Path) -> None:
    for overrides, match in [
        (
            [*FAST, "task.freeze=all", "task.cache_features=true"],
            r"training augmentation is random \(data.augment.random_resized_crop=false data.augment.hflip=false",
        ),
        (
            [*CACHEABLE, "model=vgg16", "task.freeze=conv5_2", "task.cache_features=true"],
            "task.freeze=conv5_2 leaves conv layers trainable",
        ),
        ([*CACHEABLE, "task.cache_features=maybe"], "task.cache_features='maybe' is invalid"),
    ]:
        with pytest.raises(ConfigError, match=match) as info:
            FinetuneSettings.from_cfg(compose_cfg(*overrides, f"data.root={tmp_path}"))
        assert "\n" not in str(info.value)


@pytest.mark.slow
def test_cached_features_give_the_uncached_logits(dataset: Path) -> None:
    module, datamodule = setup(dataset)
    prefix = networks.Body(module.network, "vgg16", module.normalize)
    cached = feature_cache.compute(datamodule.train, prefix, 3, 0, torch.device("cpu"))
    images = torch.stack([image for image, _ in datamodule.train])
    module.train()  # dropout on, as in training: the same draws for both
    with torch.no_grad():
        torch.manual_seed(1)
        direct = module.logits(images)
        torch.manual_seed(1)
        from_cache = module.logits(cached)
    torch.testing.assert_close(from_cache, direct, atol=1e-5, rtol=1e-4)


def test_cache_key_changes_with_data_transform_and_weights(dataset: Path, tmp_path: Path) -> None:
    module, datamodule = setup(dataset)
    prefix = networks.Body(module.network, "vgg16", module.normalize)
    files = datamodule.files["train"]
    key = feature_cache.cache_key(files, datamodule.train.transform, prefix)
    assert feature_cache.cache_key(files, datamodule.train.transform, prefix) == key
    assert feature_cache.cache_key(files, data.eval_transform(40, 32), prefix) != key
    assert feature_cache.cache_key(files[1:], datamodule.train.transform, prefix) != key
    first = files[0][0]
    stat = os.stat(first)
    os.utime(first, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    try:
        assert feature_cache.cache_key(files, datamodule.train.transform, prefix) != key
    finally:
        os.utime(first, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with torch.no_grad():
        module.network.features[0].bias[0] += 1
    assert feature_cache.cache_key(files, datamodule.train.transform, prefix) != key

    # On disk: the second request loads what the first wrote.
    val_files = datamodule.files["val"]
    first_run = feature_cache.load_or_compute(datamodule.val, val_files, prefix, 4, 0, tmp_path)
    assert len(list(tmp_path.glob("*.pt"))) == 1
    again = feature_cache.load_or_compute(datamodule.val, val_files, prefix, 4, 0, tmp_path)
    assert torch.equal(again.features, first_run.features)
    assert again[1][1:] == (datamodule.val[1][1], 1)


@pytest.mark.slow
def test_finetune_with_cached_features_end_to_end(dataset: Path, tmp_path: Path) -> None:
    main.run_task(compose_cfg(*CACHEABLE, f"data.root={dataset}", "task.epochs=1", "task.misclassified=4"), tmp_path)
    result = json.loads((tmp_path / "metrics.json").read_text())
    assert result["feature_cache_s"] > 0 and len(result["epoch_time_s"]) == 1
    assert sum(map(sum, result["val"]["confusion_matrix"])) == 4
    # misclassified_val.png: the images of cached features are loaded for it.
    assert (tmp_path / "confusion_matrix_val.png").is_file() and (tmp_path / "misclassified_val.png").is_file()
    # The checkpoint is still the whole VGG classifier, taking images.
    module = classifier.load(tmp_path / "checkpoints" / "best.ckpt")
    assert module(torch.rand(2, 3, 32, 32)).shape == (2, 2)
