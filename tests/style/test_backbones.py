"""Any torchvision family as stylize's loss network (issue 26 item 5): layers by node names, Wang et al.'s softmax
transformation, frozen batch norms, the measured memory estimate and task.size=auto; random weights, 32-224 px."""

import json

import pytest
import torch

from helpers import compose_cfg, make_image, stylize_cfg
from transferlab import features, groups, main, memory
from transferlab.errors import ConfigError
from transferlab.style import estimate, quality
from transferlab.style import task as stylize
from transferlab.style.settings import StyleSettings


def test_softmax_is_n_times_the_softmax_over_every_activation_of_each_image():
    x = torch.randn(2, 3, 4, 5) * 4
    for layout in (torch.contiguous_format, torch.channels_last):
        out = features.softmax(x.contiguous(memory_format=layout), 2.0)
        expected = 3 * 4 * 5 * torch.softmax(x.reshape(2, -1) / 2.0, dim=1).reshape(x.shape)
        torch.testing.assert_close(out, expected)
    torch.testing.assert_close(out.mean(dim=(1, 2, 3)), torch.ones(2))  # the transformed activations average 1
    assert features.softmax(x.bfloat16(), 1.0).dtype == torch.float32


@pytest.mark.parametrize(
    "override,message",
    [
        (
            "+model.layers.style.layr3=1.0",
            r"^model.layers.style: 'layr3' is not a layer of resnet18; close names: layer3",
        ),
        ("+layers.style.layer2=1", r"^layers.style.layer2: the layers group names VGG's layers; name resnet18's in "),
        (
            "model.feature_transform=sigmoid",
            r"^model.feature_transform='sigmoid' is invalid; choose one of none, softmax",
        ),
        ("model.temperature=0", r"^model.temperature=0 is invalid"),
    ],
)
def test_bad_backbone_settings_are_one_line(content_path, style_path, override, message):
    cfg = stylize_cfg(content_path, style_path, "model=resnet18", override)
    with pytest.raises(ConfigError, match=message) as info:
        StyleSettings.from_cfg(cfg)
    assert "\n" not in str(info.value)


def test_the_softmax_transform_is_refused_where_a_task_would_ignore_it():
    cfg = compose_cfg("task=train_fast", "model.feature_transform=softmax")
    with pytest.raises(
        ConfigError, match=r"^model.feature_transform=softmax is for task=stylize and task=video's .*; task=train_fast"
    ):
        groups.model(cfg)


def test_resnet18_by_its_default_nodes_is_frozen_and_the_loss_falls(content_path, style_path):
    overrides = ("model=resnet18", "model.feature_transform=softmax", "model.temperature=2")
    settings = StyleSettings.from_cfg(stylize_cfg(content_path, style_path, *overrides, size=48))
    assert list(settings.content_layers) == ["layer3"]
    assert list(settings.style_layers) == ["relu", "layer1", "layer2", "layer3", "layer4"]
    torch.manual_seed(0)
    module, reference = stylize.build(settings)
    assert reference.layers == ["relu", "layer1", "layer2", "layer3", "layer4"]  # features.stage_ends
    assert [name for name, p in module.named_parameters() if p.requires_grad] == ["image"]
    stats = {k: v.clone() for k, v in module.encoder.state_dict().items() if "running" in k}
    module.train()  # what Lightning does: the encoder stays in eval mode (batch norms on running statistics)
    assert not any(m.training for m in module.encoder.modules())
    module.on_fit_start()
    optimizer = torch.optim.LBFGS([module.image], max_iter=4, line_search_fn="strong_wolfe")
    losses = []

    def closure():
        optimizer.zero_grad()
        loss = module.losses()["loss/total"]
        loss.backward()
        losses.append(loss.item())
        return loss

    optimizer.step(closure)
    assert min(losses[1:]) < losses[0]
    for key, value in module.encoder.state_dict().items():
        if "running" in key:
            torch.testing.assert_close(value, stats[key])
    figures = quality.figures(reference, module.output(), module.scene)  # on the network's own ruler
    assert {"gram_relu", "gram_layer4", "gram_mean", "ssim"} <= set(figures)


def test_the_estimate_is_measured_for_a_node_network_and_size_auto_fits_it(tmp_path, style_path, monkeypatch):
    content = make_image(tmp_path / "wide.png", size=(200, 150), seed=3)
    monkeypatch.setattr(memory, "available_memory", lambda device: 600 * 2**20)
    overrides = ("model=resnet18", "task.size=auto", "task.memory_budget=0.5", "optimizer.history_size=5")
    settings = StyleSettings.from_cfg(stylize_cfg(content, style_path, *overrides))

    def peak(long_side):
        hw = (round(long_side * 3 / 4), long_side)
        return settings.memory.estimate(hw, hw).peak_bytes

    size = settings.size
    assert size % 32 == 0 and peak(size) <= 300 * 2**20 < peak(size + 32)
    # The measured activations against the tensors one evaluation really holds at that size, beyond the probes
    # (256 and 512 px): within 10 % (1-2 % high at 800-1024 px; the estimate's other parts are VGG's).
    module, _ = stylize.build(settings)
    module.on_fit_start()
    held = memory.peak_bytes(lambda: module.losses()["loss/total"].backward(), grad=True)
    hw = tuple(module.image.shape[-2:])
    assert abs(settings.memory.estimate(hw, hw).parts["activations"] - held) <= 0.1 * held
    assert settings.memory.min_side() == (32, "layer4")


def test_vgg_takes_the_softmax_transform_too(content_path, style_path):
    settings = StyleSettings.from_cfg(stylize_cfg(content_path, style_path, "model.feature_transform=softmax"))
    encoder, reference = stylize.encoders(settings)
    image = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        out, plain = encoder(image), encoder.encoder(image)
    assert set(out) == set(plain) == {"relu4_2", *(f"relu{i}_1" for i in range(1, 6))}
    for layer, value in out.items():
        torch.testing.assert_close(value, features.softmax(plain[layer], 1.0))
    assert list(reference.layers) == list(quality.REFERENCE_LAYERS)
    # The estimate holds each transformed layer and its scaled input besides VGG's activations.
    used = dict(content_layers=["relu1_1"], style_layers=["relu1_1", "relu2_1"], size=(32, 32), style_size=(32, 32))
    softmax, none = (estimate.estimate("vgg19", transform=t, **used) for t in ("softmax", "none"))
    assert softmax.parts["activations"] - none.parts["activations"] == 2 * (64 * 32 * 32 + 128 * 16 * 16) * 4


def test_a_video_optimizes_its_frames_against_resnet18(tmp_path, style_path):
    from tests.video.conftest import pan_frames, write_clip

    clip = write_clip(tmp_path / "pan.mp4", pan_frames(n=2))
    cfg = compose_cfg(
        "task=video",
        "model=resnet18",
        "model.weights=null",
        "model.feature_transform=softmax",
        f"task.input={clip}",
        f"task.style={style_path}",
        "task.steps=2",
        "task.first_steps=2",
        "task.baseline=false",
        "trainer.accelerator=cpu",
    )
    main.run_task(cfg, tmp_path / "run")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["frames"] == 2 and metrics["weights"] == "random"
    assert len(list((tmp_path / "run" / "frames").glob("*.png"))) == 2


@pytest.mark.parametrize("model", ["resnet18", "resnet50", "convnext_tiny", "efficientnet_b0", "mobilenet_v3_large"])
def test_every_model_file_names_default_layers_of_its_network(model):
    cfg = compose_cfg(f"model={model}")
    layers = groups.layers(cfg, cfg.model.arch)  # a misspelt default would fail here in one line
    assert layers.content and len(layers.style) == 5
