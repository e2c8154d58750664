"""Transformation networks: odd sizes round-trip, [0, 1] out, the light one is smaller."""

import pytest
import torch

from transferlab.fast.per_style.networks import MIN_SIZE, build_network


@pytest.mark.parametrize("arch", ["johnson", "light"])
@pytest.mark.parametrize("hw", [(MIN_SIZE, MIN_SIZE), (33, 47), (64, 31)])
def test_any_size_round_trips(arch, hw):
    net = build_network(arch, 0.25, 1).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, *hw))
    assert out.shape == (2, 3, *hw) and out.min() >= 0 and out.max() <= 1


def test_light_network_is_smaller():
    count = lambda n: sum(p.numel() for p in n.parameters())  # noqa: E731
    assert count(build_network("light", 1.0)) < count(build_network("johnson", 1.0)) / 5


def test_no_transposed_convolutions():
    net = build_network("johnson")
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in net.modules())
    assert any(isinstance(m, torch.nn.InstanceNorm2d) for m in net.modules())
    assert any(isinstance(m, torch.nn.ReflectionPad2d) for m in net.modules())
