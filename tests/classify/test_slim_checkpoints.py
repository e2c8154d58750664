"""Checkpoints leave out the frozen tensors equal to their source weights and load them back from there,
checked by hash. "Pretrained" weights here are random ones written where the loader looks for them: a
local .pth file, or torch hub's cache under a temporary TORCH_HOME."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torchvision import models

from helpers import FAST, compose_cfg, resnet18_classifier
from transferlab import backbone, main
from transferlab.classify import module as classifier
from transferlab.errors import ConfigError, WeightsError


def fake_weights(path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(models.resnet18().state_dict(), path)
    return path


def saved(module: classifier.Classifier) -> dict:
    """The checkpoint Lightning would write (its model part), after the module's hook."""
    ckpt = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    module.on_save_checkpoint(ckpt)
    return ckpt


@pytest.fixture
def weights_file(tmp_path: Path) -> Path:
    return fake_weights(tmp_path / "weights" / "resnet18.pth")


def test_weights_source_names_what_loads_the_same_later(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert backbone.weights_source("resnet18", None) is None
    assert backbone.weights_source("resnet18", "DEFAULT") == "IMAGENET1K_V1"
    monkeypatch.chdir(tmp_path)
    assert backbone.weights_source("resnet18", "w/resnet18.pth") == str(tmp_path / "w" / "resnet18.pth")


def test_frozen_tensors_equal_to_the_source_are_left_out_and_refilled(weights_file: Path) -> None:
    module = resnet18_classifier(str(weights_file))
    with torch.no_grad():
        module.network.layer1[0].conv1.weight[0, 0, 0, 0] += 1  # frozen, but no longer the source's
    full = module.state_dict()
    ckpt = saved(module)
    kept = set(ckpt["state_dict"])
    assert kept == {k for k in full if k.startswith(("network.layer4.", "network.fc."))} | {
        "network.layer1.0.conv1.weight"
    }
    ref = ckpt[classifier.SOURCE]
    assert ref["weights"] == str(weights_file) and set(ref["keys"]) == set(full) - kept
    assert "network.layer3.0.bn1.running_var" in ref["keys"]  # buffers too
    classifier.refill(ckpt, "test.ckpt")
    assert classifier.SOURCE not in ckpt and ckpt["state_dict"].keys() == full.keys()
    for key, value in full.items():
        assert torch.equal(ckpt["state_dict"][key], value), key


def test_random_weights_leave_nothing_out() -> None:
    module = resnet18_classifier(None)
    ckpt = saved(module)
    assert classifier.SOURCE not in ckpt and ckpt["state_dict"].keys() == module.state_dict().keys()


def test_a_slim_checkpoint_loads_for_predict_export_extract(weights_file: Path, tmp_path: Path) -> None:
    module = resnet18_classifier(str(weights_file))
    path = tmp_path / "best.ckpt"
    torch.save(saved(module), path)
    loaded = classifier.load(path)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.inference_network()(x), module.inference_network()(x), rtol=0, atol=0)


def test_full_checkpoints_of_the_first_format_still_load_and_unknown_formats_are_refused(tmp_path: Path) -> None:
    module = resnet18_classifier(None)
    ckpt = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    assert ckpt["hyper_parameters"]["format"] == classifier.FORMAT == "transferlab.classifier/2"
    ckpt["hyper_parameters"]["format"] = "transferlab.classifier/1"  # before slim checkpoints: every tensor
    torch.save(ckpt, tmp_path / "old.ckpt")
    assert classifier.load(tmp_path / "old.ckpt").classes == ["a", "b"]
    ckpt["hyper_parameters"]["format"] = "transferlab.classifier/9"
    torch.save(ckpt, tmp_path / "future.ckpt")
    with pytest.raises(WeightsError, match="is not a transferlab finetune checkpoint") as error:
        classifier.load(tmp_path / "future.ckpt")
    assert "\n" not in str(error.value)


def test_changed_source_weights_are_refused_in_one_line(weights_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "best.ckpt"
    torch.save(saved(resnet18_classifier(str(weights_file))), path)
    fake_weights(weights_file, seed=2)
    with pytest.raises(WeightsError, match="sha256 differs") as error:
        classifier.load(path)
    assert str(weights_file) in str(error.value) and "\n" not in str(error.value)


def test_missing_source_weights_are_refused_in_one_line(weights_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "best.ckpt"
    torch.save(saved(resnet18_classifier(str(weights_file))), path)
    weights_file.unlink()
    with pytest.raises(WeightsError, match="frozen tensors stored in the resnet18 weights.*does not exist") as error:
        classifier.load(path)
    assert "\n" not in str(error.value)


def test_torchvision_weights_are_found_in_the_torch_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    spec = backbone.torchvision_weights("resnet18", "IMAGENET1K_V1")
    fake_weights(tmp_path / "hub" / "checkpoints" / spec.url.rsplit("/", 1)[1])
    module = resnet18_classifier("DEFAULT")
    ckpt = saved(module)
    assert ckpt[classifier.SOURCE]["weights"] == "IMAGENET1K_V1" and ckpt[classifier.SOURCE]["keys"]
    classifier.refill(ckpt, "test.ckpt")
    assert ckpt["state_dict"].keys() == module.state_dict().keys()


@pytest.mark.slow
def test_resume_from_a_slim_checkpoint_matches_an_uninterrupted_run(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights = fake_weights(tmp_path / "resnet18.pth")
    common = [*FAST, f"model.weights={weights}", f"data.root={dataset}", "data.max_bad_fraction=0.2"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    main.run_task(compose_cfg(*common), straight)
    main.run_task(compose_cfg(*common, "task.epochs=1"), resumed)
    main.run_task(compose_cfg(*common, f"ckpt_path={resumed / 'checkpoints' / 'last.ckpt'}"), resumed)
    a = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(straight / "checkpoints" / "last.ckpt", weights_only=True)
    assert a[classifier.SOURCE] == b[classifier.SOURCE] and b[classifier.SOURCE]["keys"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key in b["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    assert (
        json.loads((resumed / "metrics.json").read_text())["val"]
        == json.loads((straight / "metrics.json").read_text())["val"]
    )
    best = torch.load(straight / "checkpoints" / "best.ckpt", weights_only=True)
    assert "optimizer_states" not in best and best[classifier.SOURCE]["keys"]


def _crafted(case: str, weights_file: Path) -> dict:
    ckpt = saved(resnet18_classifier(str(weights_file)))
    hp = ckpt["hyper_parameters"]
    if case == "huge_crop":  # 200,000 px: 240 GB before any check
        hp["preprocessing"] = {"resize": 200_000, "crop": 200_000}
    elif case == "hparams_list":
        ckpt["hyper_parameters"] = list(hp.items())
    elif case == "state_list":
        ckpt["state_dict"] = list(ckpt["state_dict"].items())
    elif case == "no_arch":
        del hp["arch"]
    elif case == "other_class_count":
        hp["classes"] = ["a", "b", "c"]
    elif case == "unknown_arch":
        hp["arch"] = "os.system"
    elif case == "nan_mean":
        hp["normalization"] = {**hp["normalization"], "mean": [float("nan"), 0.0, 0.0]}
    elif case == "bad_freeze":
        hp["freeze"] = "layer99"
    elif case == "extra_argument":
        hp["network"] = "injected"
    elif case == "bad_source":
        ckpt[classifier.SOURCE] = {"weights": 3, "keys": "all", "sha256": None}
    return ckpt


@pytest.mark.parametrize(
    "case,message",
    [
        ("huge_crop", r"preprocessing.resize=200000 is invalid; it must be at most 4096 px"),
        ("hparams_list", r"is not a transferlab finetune checkpoint"),
        ("state_list", r"is not a transferlab finetune checkpoint"),
        ("no_arch", r"missing \['arch'\]"),
        ("other_class_count", r"has other shapes for tensors fc.weight, fc.bias"),
        ("unknown_arch", r"arch='os.system' is invalid"),
        ("nan_mean", r"normalization.mean=nan is invalid"),
        ("bad_freeze", r"layer99"),
        ("extra_argument", r"unknown \['network'\]"),
        ("bad_source", r"source_weights is invalid"),
    ],
)
def test_crafted_saved_settings_are_refused_before_anything_is_built(
    case: str, message: str, weights_file: Path, tmp_path: Path
) -> None:
    """Issue 32 item 3: every value a finetune checkpoint holds is checked with the config's rules before a
    network or an image is allocated from it; for predict, export and extract alike (one loader)."""
    path = tmp_path / f"{case}.ckpt"
    torch.save(_crafted(case, weights_file), path)
    with pytest.raises(WeightsError, match=message) as error:
        classifier.load(path)
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_the_config_has_the_same_size_limit() -> None:
    with pytest.raises(ConfigError, match=r"data.crop_size=200000 is invalid; it must be at most 4096 px"):
        main.run_task(compose_cfg(*FAST, "data.crop_size=200000"), Path("/nonexistent"))
