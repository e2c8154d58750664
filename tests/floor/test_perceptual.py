"""The one perceptual-loss composition: named terms, one encoder pass per evaluation, extra terms, targets."""

import pytest
import torch

from transferlab import backbone
from transferlab.perceptual import PerceptualLoss, style_grams


def composition(tv_weight: float = 0.0, extra=None) -> PerceptualLoss:
    torch.manual_seed(0)
    features, normalization = backbone.build_features("vgg19", None, "max", "auto")
    encoder = backbone.VGGFeatures(features, "vgg19", ["relu1_1", "relu2_1"], normalization)
    loss = PerceptualLoss(
        encoder,
        {"relu2_1": 1.0},
        {"relu1_1": 0.25, "relu2_1": 0.75},
        content_weight=2.0,
        style_weight=1e3,
        tv_weight=tv_weight,
        extra=extra,
    )
    loss.set_styles(style_grams(encoder, [torch.rand(3, 24, 32)], loss.style_layers))
    return loss


def test_terms_are_named_weighted_and_summed_with_the_extra_ones() -> None:
    extra = {"loss/temporal": lambda image: 3.0 * image.mean()}
    loss = composition(tv_weight=0.5, extra=extra)
    content, image = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    loss.set_content(content)
    parts, terms = loss.parts(image), loss(image)
    weighted = ["loss/content", "loss/style", "loss/tv", "loss/temporal", "loss/total"]
    assert list(terms) == weighted + ["style/loss_relu1_1", "style/loss_relu2_1"]
    torch.testing.assert_close(terms["loss/content"], 2.0 * parts["content_relu2_1"])
    torch.testing.assert_close(terms["loss/style"], terms["style/loss_relu1_1"] + terms["style/loss_relu2_1"])
    torch.testing.assert_close(terms["style/loss_relu1_1"], 1e3 * 0.25 * parts["style_relu1_1"])
    torch.testing.assert_close(terms["loss/tv"], 0.5 * parts["tv"])
    others = [terms[k] for k in ("loss/content", "loss/style", "loss/tv", "loss/temporal")]
    torch.testing.assert_close(terms["loss/total"], sum(others))
    # The content given per call (a training batch) is the same target as the one set once.
    torch.testing.assert_close(loss(image, content)["loss/content"], terms["loss/content"])


def test_one_encoder_pass_per_evaluation_and_no_tv_term_at_weight_zero() -> None:
    loss = composition()
    loss.set_content(torch.rand(1, 3, 32, 32))
    calls = []
    loss.encoder.register_forward_hook(lambda *args: calls.append(1))
    image = torch.rand(1, 3, 32, 32, requires_grad=True)
    terms = loss(image)
    terms["loss/total"].backward()
    assert len(calls) == 1 and "loss/tv" not in terms and image.grad is not None


def test_masks_are_resized_to_each_style_layer() -> None:
    loss = composition()
    left = torch.zeros(1, 32, 32)
    left[..., :16] = 1
    loss.set_content(torch.rand(1, 3, 32, 32), [left])
    assert loss.mask(0, "relu1_1").shape == (1, 1, 32, 32) and loss.mask(0, "relu2_1").shape == (1, 1, 16, 16)


def test_missing_targets_and_layers_are_programming_errors() -> None:
    loss = composition()
    with pytest.raises(ValueError, match="no content targets"):
        loss(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="does not return layers"):
        PerceptualLoss(loss.encoder, {"relu4_2": 1.0}, {}, content_weight=1, style_weight=1, tv_weight=0)
