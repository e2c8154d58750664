import pytest
import torch
from torchvision.models import vgg

from transferlab import backbone, checks, fetch
from transferlab.errors import ConfigError, WeightsError


@pytest.mark.parametrize("arch,cfg", [("vgg16", "D"), ("vgg19", "E")])
def test_layer_names_follow_torchvision_features(arch, cfg):
    names = backbone.layer_names(arch)
    features = vgg.make_layers(vgg.cfgs[cfg])
    assert len(names) == len(features)
    for name, module in zip(names, features):
        kind = {torch.nn.Conv2d: "conv", torch.nn.ReLU: "relu", torch.nn.MaxPool2d: "pool"}[type(module)]
        assert name.startswith(kind)
    assert names[:5] == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1"]
    assert ("relu3_4" in names) == (arch == "vgg19")


def test_unknown_layer_names_the_key_and_valid_names():
    with pytest.raises(
        ConfigError, match=r"layers.style: layer 'relu3_4' does not exist in vgg16; valid names are conv1_1"
    ):
        checks.vgg_layers("vgg16", ["relu1_1", "relu3_4"], "layers.style")


def test_features_run_only_to_deepest_layer_frozen_and_in_eval():
    features, norm = backbone.build_features("vgg19", None)
    encoder = backbone.VGGFeatures(features, "vgg19", ["relu2_1", "conv1_2"], norm)
    assert len(encoder.stack) == backbone.layer_names("vgg19").index("relu2_1") + 1
    assert not any(p.requires_grad for p in encoder.parameters())
    encoder.train()
    assert not encoder.training and not any(m.training for m in encoder.modules())
    out = encoder(torch.rand(2, 3, 32, 40))
    assert set(out) == {"relu2_1", "conv1_2"}
    assert out["relu2_1"].shape == (2, 128, 16, 20)
    assert out["conv1_2"].min() < 0  # the conv output, not overwritten by an in-place ReLU


def test_avg_pooling_replaces_max_pooling():
    features, _ = backbone.build_features("vgg16", None, pooling="avg")
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in features)
    assert sum(isinstance(m, torch.nn.AvgPool2d) for m in features) == 5


def test_caffe_normalization_is_bgr_0_255_minus_mean():
    image = torch.rand(1, 3, 4, 4)
    out = backbone.Normalize(backbone.CAFFE)(image)
    expected = image.flip(1) * 255 - torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-3)


def _features_state(cfg: str, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return {f"features.{k}": v for k, v in vgg.make_layers(vgg.cfgs[cfg]).state_dict().items()}


def test_local_state_dict_file_is_loaded(tmp_path):
    state = _features_state("D", seed=3)
    path = tmp_path / "vgg16.pth"
    torch.save(state, path)
    features, norm = backbone.build_features("vgg16", str(path))
    torch.testing.assert_close(features[0].weight, state["features.0.weight"])
    assert norm == backbone.IMAGENET


def test_local_file_of_the_wrong_architecture_is_refused(tmp_path):
    path = tmp_path / "vgg16.pth"
    torch.save(_features_state("D", seed=0), path)
    with pytest.raises(WeightsError, match="does not fit vgg19"):
        backbone.build_features("vgg19", str(path))


def test_missing_or_garbage_weight_files_are_refused(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        backbone.build_features("vgg19", str(tmp_path / "nope.pth"))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="not a readable PyTorch state dict"):
        backbone.build_features("vgg19", str(garbage))


def test_torchvision_weights_come_from_the_torch_home_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = backbone.torchvision_weights("vgg16", "IMAGENET1K_FEATURES")
    cached = tmp_path / "hub" / "checkpoints" / weights.url.rsplit("/", 1)[1]
    cached.parent.mkdir(parents=True)
    state = _features_state("D", seed=5)
    torch.save(state, cached)
    features, norm = backbone.build_features("vgg16", "IMAGENET1K_FEATURES")
    torch.testing.assert_close(features[28].weight, state["features.28.weight"])
    # These weights were converted from Caffe: 0-255 input, no std scaling.
    assert norm.std == pytest.approx((1 / 255,) * 3)


def test_missing_torchvision_weights_say_how_to_fix(tmp_path, monkeypatch):
    import urllib.error

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(fetch, "open_url", offline)  # every download opens its URL there
    with pytest.raises(WeightsError) as error:
        backbone.build_features("vgg19", "IMAGENET1K_V1")
    message = str(error.value)
    assert "are not in the cache" in message and "no network" in message and "model.weights=null" in message
    assert str(tmp_path) in message and "\n" not in message
    assert not list(tmp_path.rglob("*.partial"))


def test_unknown_weight_name_lists_choices():
    with pytest.raises(ValueError, match="IMAGENET1K_V1"):
        backbone.build_features("vgg19", "IMAGENET22K")


def test_encoders_sharing_features_keep_their_own_relu_settings():
    features, norm = backbone.build_features("vgg19", None)
    encoder = backbone.VGGFeatures(features, "vgg19", ["conv1_2", "relu2_1"], norm)
    backbone.VGGFeatures(features, "vgg19", ["relu1_1", "relu2_1"], norm)  # e.g. the quality metrics' encoder
    assert encoder(torch.rand(1, 3, 32, 32))["conv1_2"].min() < 0  # not overwritten by an in-place ReLU
