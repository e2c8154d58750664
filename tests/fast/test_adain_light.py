"""The light AdaIN network (task.encoder=light): shapes at odd sizes, AdaIN's statistics in its feature space,
training lowers the loss with VGG19 frozen, a checkpoint applied without VGG19, bad config in one line
(resume, apply, export and apply from model.onnx: test_adain_tasks.py, for both encoders). Random weights,
32-64 px images."""

import pytest
import torch

from helpers import ADAIN_LIGHT, adain_train_cfg, compose_cfg, lively
from transferlab import main
from transferlab.errors import WeightsError
from transferlab.fast.arbitrary import ops as A
from transferlab.fast.arbitrary.networks import AdaINNet
from transferlab.fast.arbitrary.settings import TrainAdaINSettings
from transferlab.fast.stylizer import read_network


@pytest.fixture(scope="module")
def trained(photos, styles, tmp_path_factory):
    out = tmp_path_factory.mktemp("light")
    main.run_task(adain_train_cfg(photos, styles, *ADAIN_LIGHT), out)
    return out


def test_odd_sizes_come_back_at_their_size():
    net = AdaINNet(encoder="light", width=0.25, loss_net=False).eval()
    assert net.teacher is None and net.encode(torch.rand(1, 3, 32, 40))["relu4_1"].shape == (1, 128, 4, 5)
    g = torch.Generator().manual_seed(0)
    code = net.code(torch.rand(1, 3, 33, 47, generator=g))
    with torch.no_grad():
        for h, w in ((37, 29), (16, 61), (45, 45)):
            assert net.stylize(torch.rand(2, 3, h, w, generator=g), [code]).shape == (2, 3, h, w)


def test_adain_gives_the_style_statistics_in_the_light_space():
    """The light encoder's relu4_1 after AdaIN has the style's channel mean and std (what the decoder is
    trained to invert) in every channel the content varies in (a channel ReLU leaves constant stays
    constant), and a style code is the light features' statistics."""
    torch.manual_seed(0)
    net = AdaINNet(encoder="light", width=0.25, loss_net=False).eval()
    net.load_state_dict(lively(net.state_dict()))
    g = torch.Generator().manual_seed(1)
    content, style = torch.rand(2, 3, 40, 48, generator=g), torch.rand(1, 3, 32, 32, generator=g)
    with torch.no_grad():
        code = net.code(style)
        s_mean, s_std = A.mean_std(net.encode(style)["relu4_1"])
        torch.testing.assert_close((code.mean, code.std), (s_mean, s_std))
        feat = net.encode(content)["relu4_1"]
        mean, std = A.mean_std(A.adain_code(feat, code))
    varies = A.mean_std(feat)[1] > 0.1
    assert feat.shape[1] == net.encoder.channels == 128 and varies.float().mean() > 0.5 and s_std.std() > 1e-3
    torch.testing.assert_close(mean, s_mean.expand_as(mean), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(std[varies], s_std.expand_as(std)[varies], atol=1e-3, rtol=1e-3)


def test_training_lowers_the_loss_and_leaves_vgg19_frozen():
    torch.manual_seed(0)
    net = AdaINNet(encoder="light", width=0.25)
    vgg = {k: v.clone() for k, v in net.teacher.vgg.state_dict().items()}
    encoder = {k: v.clone() for k, v in net.encoder.state_dict().items()}
    c, s = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for _ in range(4):
        _, terms = net.terms(c, s)
        loss = terms["content"] + 10 * terms["style"] + terms["distill"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses
    assert {"content", "style", "distill", "style_relu1_1"} <= set(terms)
    assert all(torch.equal(v, net.teacher.vgg.state_dict()[k]) for k, v in vgg.items())
    assert any(not torch.equal(v, net.encoder.state_dict()[k]) for k, v in encoder.items())


def test_checkpoint_records_the_light_network(trained):
    checkpoint = torch.load(trained / "checkpoints" / "last.ckpt", weights_only=True)
    spec = checkpoint["hyper_parameters"]["network"]
    assert (spec["encoder"], spec["width"]) == ("light", 0.25)
    assert any(k.startswith("net.teacher.vgg.") for k in checkpoint["state_dict"])  # the loss network, for resume
    net = read_network(trained / "checkpoints" / "last.ckpt", family="arbitrary")[1]
    assert net.teacher is None and not any("vgg" in k for k in net.state_dict())  # apply needs no VGG19


@pytest.mark.parametrize("width", [1e6, -1.0, "wide"])
def test_a_checkpoint_naming_a_bad_width_is_one_line_before_anything_is_built(tmp_path, width):
    # A crafted checkpoint: a width of 1e6 would allocate terabytes of weights before any were read.
    path = tmp_path / "crafted.ckpt"
    network = {"arch": "adain", "weights": None, "encoder": "light", "width": width}
    torch.save({"hyper_parameters": {"network": network, "loss_weights": (1.0, 40.0, 1.0)}, "state_dict": {}}, path)
    with pytest.raises(
        WeightsError, match=r"crafted.ckpt: its weights do not fit the network it names .*width"
    ) as info:
        read_network(path, family="arbitrary")[1]
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["task.encoder=resnet"], r"task.encoder='resnet' is invalid; choose one of vgg19, light"),
        (["task.encoder=light", "task.width=0"], r"task.width=0 is invalid; it must be a number > 0"),
        (["task.encoder=light", "task.width=-0.5"], r"task.width=-0.5 is invalid; it must be a number > 0"),
        (["task.encoder=light", "task.width=2"], r"task.width=2.0 is invalid; it must be in \(0, 1\]"),
        (["task.encoder=light", "task.arch=sanet"], r"task.arch=sanet with task.encoder=light: .* use task.encoder"),
        (["loss.distill_weight=-1"], r"loss.distill_weight=-1 is invalid"),
    ],
)
def test_bad_light_config_is_one_line(overrides, message):
    cfg = compose_cfg("task=train_adain", "data.root=x", "task.styles=y", *overrides)
    with pytest.raises(Exception, match=message) as info:
        TrainAdaINSettings.from_cfg(cfg)
    assert "\n" not in str(info.value)


def test_vgg19_ignores_the_width():
    s = TrainAdaINSettings.from_cfg(compose_cfg("task=train_adain", "data.root=x", "task.styles=y", "task.width=0.5"))
    assert (s.encoder, s.width, s.distill_weight) == ("vgg19", 1.0, 1.0)
