import pytest
import torch

from transferlab.fast import adain as A


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
    torch.testing.assert_close(A.stylize_features(c, [code], alpha=0.0), c)
    strength = torch.zeros(1, 1, 6, 6)
    strength[..., 3:] = 1
    out = A.stylize_features(c, [code], alpha=1.0, strength=strength)
    torch.testing.assert_close(out[..., :3], c[..., :3])
    torch.testing.assert_close(out[..., 3:], A.adain_stats(c, code.mean, code.std)[..., 3:])


def test_zero_mask_leaves_style_out():
    torch.manual_seed(0)
    c = torch.randn(1, 8, 6, 6)
    a, b = A.style_code(torch.randn(1, 8, 5, 5)), A.style_code(torch.randn(1, 8, 5, 5) * 4)
    ones, zeros = torch.ones(1, 1, 6, 6), torch.zeros(1, 1, 6, 6)
    torch.testing.assert_close(A.stylize_features(c, [a, b], masks=[ones, zeros]), A.stylize_features(c, [a]))


def test_blend_weights_are_normalized():
    a, b = (
        A.StyleCode(torch.zeros(1, 2, 1, 1), torch.ones(1, 2, 1, 1)),
        A.StyleCode(torch.ones(1, 2, 1, 1), 3 * torch.ones(1, 2, 1, 1)),
    )
    m = A.blend_codes([a, b], [1.0, 3.0])
    torch.testing.assert_close(m.mean, torch.full((1, 2, 1, 1), 0.75))
    torch.testing.assert_close(m.std, torch.full((1, 2, 1, 1), 2.5))
    with pytest.raises(ValueError, match="not all zero"):
        A.blend_codes([a, b], [0.0, 0.0])


def test_decoder_and_sanet_shapes():
    feat = torch.randn(1, 512, 4, 5)
    assert A.Decoder()(feat).shape == (1, 3, 32, 40)
    assert A.SANet()(feat, torch.randn(1, 512, 3, 3)).shape == feat.shape


def test_bad_inputs_one_line():
    with pytest.raises(ValueError, match="alpha"):
        A.stylize_features(torch.randn(1, 2, 3, 3), [A.style_code(torch.randn(1, 2, 3, 3))], alpha=2.0)
    with pytest.raises(ValueError, match="differ"):
        A.adain(torch.randn(1, 2, 3, 3), torch.randn(1, 3, 3, 3))
