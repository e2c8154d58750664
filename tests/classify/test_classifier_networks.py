"""Any torchvision classifier: a new head, freezing by layer or stage (batch norms frozen too), and the
body / classifier split that feature caching uses. Random weights; meta or 32-64 px inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from helpers import resnet18_classifier
from transferlab import backbone
from transferlab.classify import networks

ARCHS = ["resnet50", "mobilenet_v3_large", "efficientnet_b0", "convnext_tiny"]


def test_vgg_freezes_by_conv_count_paper_name_and_word() -> None:
    with torch.device("meta"):
        net, _ = networks.build("vgg16", None, "auto", 2, None)
    names = backbone.layer_names("vgg16")
    n = networks.frozen_units
    assert n(net, "vgg16", 0) == 0
    assert n(net, "vgg16", 1) == 1  # conv1_1 only
    assert n(net, "vgg16", "conv4_3") == names.index("conv4_3") + 1
    assert n(net, "vgg16", 10) == n(net, "vgg16", "conv4_3")
    assert n(net, "vgg16", "auto") == names.index("pool4") + 1  # all but the last block
    assert n(net, "vgg16", "features") == len(names) + 1  # and the average pool
    assert n(net, "vgg16", "all") == len(names) + 1 + 6  # all but fc8
    with pytest.raises(ValueError, match="13 conv layers"):
        n(net, "vgg16", 14)
    with pytest.raises(ValueError, match="'conv4_4' is invalid.*conv4_3"):  # vgg16 has no conv4_4
        n(net, "vgg16", "conv4_4")


@pytest.mark.parametrize("arch", ARCHS)
def test_every_family_gets_a_head_stages_and_the_body_split(arch: str) -> None:
    torch.manual_seed(0)
    net, norm = networks.build(arch, None, "auto", 3, 0.1)
    u = networks.units(net, arch)
    assert net.get_submodule(u.paths[-1]).out_features == 3
    assert all(m.p == 0.1 for m in net.modules() if isinstance(m, nn.Dropout))
    assert networks.body_frozen(arch, "features") and not networks.body_frozen(arch, "auto")
    normalize = backbone.Normalize(norm)
    body = networks.Body(net.eval(), arch, normalize)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        features = body(x)
        assert features.dim() == 2 and features.shape[1] * 4 == networks.feature_bytes(arch, 64)
        torch.testing.assert_close(networks.after_body(net, u, features), net(normalize(x)))


def test_a_frozen_stage_keeps_its_batch_norm_statistics() -> None:
    module = resnet18_classifier().train()
    net = module.network
    frozen, trained = net.layer3[0].bn1, net.layer4[0].bn1
    before = frozen.running_mean.clone(), trained.running_mean.clone()
    module.logits(torch.rand(4, 3, 32, 32)).sum().backward()
    assert not frozen.training and torch.equal(frozen.running_mean, before[0])
    assert trained.training and not torch.equal(trained.running_mean, before[1])
    assert net.layer3[0].conv1.weight.grad is None and net.layer4[0].conv1.weight.grad is not None
    assert net.fc.weight.grad is not None


def test_an_unknown_stage_names_the_valid_ones() -> None:
    with torch.device("meta"):
        net, _ = networks.build("resnet50", None, "auto", 2, None)
    with pytest.raises(ValueError, match="'conv4_3' is invalid.*layer1, layer2, layer3, layer4"):
        networks.frozen_units(net, "resnet50", "conv4_3")


def test_a_family_whose_forward_is_not_its_children_is_refused_in_one_line() -> None:
    from helpers import FAST, compose_cfg
    from transferlab.classify.settings import FinetuneSettings
    from transferlab.errors import ConfigError

    with pytest.raises(
        ConfigError, match="model.arch='densenet121' is invalid; choose one of alexnet, convnext"
    ) as info:
        FinetuneSettings.from_cfg(compose_cfg(*FAST, "model.arch=densenet121", "data.root=x"))
    assert "\n" not in str(info.value) and "vit_b_16" not in str(info.value)
