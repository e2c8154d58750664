import pytest
import torch

from transferlab.fast.arbitrary import ops as A
from transferlab.fast.arbitrary.attention import SANet
from transferlab.fast.arbitrary.networks import Decoder


def test_adain_matches_style_statistics():
    torch.manual_seed(0)
    c, s = torch.randn(2, 8, 6, 5) * 3 + 1, torch.randn(2, 8, 7, 9) * 0.5 - 2
    out = A.adain(c, s)
    om, os_ = A.mean_std(out)
    sm, ss = A.mean_std(s)
    torch.testing.assert_close(om, sm, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(os_, ss, atol=1e-4, rtol=1e-4)


def test_alpha_zero_and_zero_strength_keep_content():
    torch.manual_seed(0)
    c = torch.randn(1, 8, 6, 6)
    code = A.style_code(torch.randn(1, 8, 5, 5))
    torch.testing.assert_close(A.blend_targets(c, [A.adain_code(c, code)], alpha=0.0), c)
    strength = torch.zeros(1, 1, 6, 6)
    strength[..., 3:] = 1
    out = A.blend_targets(c, [A.adain_code(c, code)], alpha=1.0, strength=strength)
    torch.testing.assert_close(out[..., :3], c[..., :3])
    torch.testing.assert_close(out[..., 3:], A.adain_stats(c, code.mean, code.std)[..., 3:])


def test_zero_mask_leaves_style_out():
    torch.manual_seed(0)
    c = torch.randn(1, 8, 6, 6)
    a, b = A.style_code(torch.randn(1, 8, 5, 5)), A.style_code(torch.randn(1, 8, 5, 5) * 4)
    ones, zeros = torch.ones(1, 1, 6, 6), torch.zeros(1, 1, 6, 6)
    torch.testing.assert_close(
        A.blend_targets(c, [A.adain_code(c, a), A.adain_code(c, b)], masks=[ones, zeros]),
        A.blend_targets(c, [A.adain_code(c, a)]),
    )


def test_blend_weights_are_normalized_and_interpolate_the_styles():
    """Weights 1:3 give masks 0.25 and 0.75 everywhere; for AdaIN their blend of the per-style targets is
    AdaIN with the blended statistics (AdaIN is affine in them)."""
    torch.manual_seed(0)
    masks = A.blend_masks([1.0, 3.0])
    assert [float(m) for m in masks] == [0.25, 0.75] and sum(masks).item() == 1.0
    c = torch.randn(1, 2, 4, 4)
    a, b = A.style_code(torch.randn(1, 2, 5, 5)), A.style_code(torch.randn(1, 2, 5, 5) * 3 + 1)
    blended = A.adain_stats(c, 0.25 * a.mean + 0.75 * b.mean, 0.25 * a.std + 0.75 * b.std)
    torch.testing.assert_close(A.blend_targets(c, [A.adain_code(c, a), A.adain_code(c, b)], masks=masks), blended)
    with pytest.raises(ValueError, match="not all zero"):
        A.blend_masks([0.0, 0.0])


def test_decoder_and_sanet_shapes():
    feat = torch.randn(1, 512, 4, 5)
    assert Decoder()(feat).shape == (1, 3, 32, 40)
    assert SANet()(feat, torch.randn(1, 512, 3, 3)).shape == feat.shape


def test_blend_targets_takes_an_attention_target():
    """SANet attends over the style's map, which its code keeps; AdaIN's code keeps statistics only."""
    torch.manual_seed(0)
    sanet, c, s = SANet(8), torch.randn(1, 8, 4, 5), torch.randn(1, 8, 3, 3)
    code = A.style_code(s, {"relu4_1": s})
    out = A.blend_targets(c, [sanet(c, code.features["relu4_1"])])
    torch.testing.assert_close(out, sanet(c, s))
    assert A.style_code(s).features is None


def test_bad_inputs_one_line():
    with pytest.raises(ValueError, match="alpha"):
        A.blend_targets(torch.randn(1, 2, 3, 3), [torch.randn(1, 2, 3, 3)], alpha=2.0)
    with pytest.raises(ValueError, match="differ"):
        A.adain(torch.randn(1, 2, 3, 3), torch.randn(1, 3, 3, 3))
