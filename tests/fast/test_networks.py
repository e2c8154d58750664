"""Transformation networks: odd sizes round-trip, [0, 1] out, the light one is smaller, the narrow one is full
3x3 convolutions with zero padding (issue 30 item 3) and loads from its checkpoint as the others do."""

import pytest
import torch

from transferlab.fast.per_style.networks import MIN_SIZE, build_network


@pytest.mark.parametrize("arch", ["johnson", "light", "narrow"])
@pytest.mark.parametrize("hw", [(MIN_SIZE, MIN_SIZE), (33, 47), (64, 31)])
def test_any_size_round_trips(arch, hw):
    net = build_network(arch, 0.25, 1).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, *hw))
    assert out.shape == (2, 3, *hw) and out.min() >= 0 and out.max() <= 1


def test_light_network_is_smaller():
    count = lambda n: sum(p.numel() for p in n.parameters())  # noqa: E731
    assert count(build_network("light", 1.0)) < count(build_network("johnson", 1.0)) / 5


def test_the_designs_of_before_keep_their_parameters():
    """Checkpoints of johnson and light saved before the narrow design load as they did: same parameter counts
    (the light network's RGB output conv stays a full 9x9 conv)."""
    count = lambda n: sum(p.numel() for p in n.parameters())  # noqa: E731
    assert count(build_network("light", 0.35)) == 34_169 and count(build_network("johnson", 1.0)) == 1_679_235


def test_no_transposed_convolutions():
    net = build_network("johnson")
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in net.modules())
    assert any(isinstance(m, torch.nn.InstanceNorm2d) for m in net.modules())
    assert any(isinstance(m, torch.nn.ReflectionPad2d) for m in net.modules())


def test_narrow_network_is_full_3x3_convolutions_without_pad_passes():
    net = build_network("narrow", 0.25, 1)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(c.kernel_size == (3, 3) and c.groups == 1 and c.padding == (1, 1) for c in convs)
    assert not any(isinstance(m, torch.nn.ReflectionPad2d) for m in net.modules())
    assert [c.out_channels for c in convs[:3]] == [8, 16, 32]  # width 0.25: 8, then doubled at each level


def test_narrow_checkpoint_loads_and_a_mismatched_one_is_refused(tmp_path):
    from transferlab.errors import WeightsError
    from transferlab.fast.stylizer import read_network

    spec = {"arch": "narrow", "width": 0.25, "blocks": 1}
    state = {f"network.{k}": v for k, v in build_network(**spec).state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"network": spec}}, tmp_path / "narrow.ckpt")
    family, net, read = read_network(tmp_path / "narrow.ckpt", family="per_style")
    assert family == "per_style" and read == spec and net(torch.rand(1, 3, 33, 47)).shape == (1, 3, 33, 47)
    light = {"arch": "light", "width": 0.25, "blocks": 1}  # the same keys, other shapes (depthwise convs)
    torch.save({"state_dict": state, "hyper_parameters": {"network": light}}, tmp_path / "light.ckpt")
    with pytest.raises(WeightsError, match="light.ckpt") as info:
        read_network(tmp_path / "light.ckpt", family="per_style")
    assert "\n" not in str(info.value)
