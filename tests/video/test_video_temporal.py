"""The optimization method's parts: style statistics once per video, one evaluation per L-BFGS step."""

from __future__ import annotations

import torch

from tests.video.conftest import pan_frames, textured
from transferlab import backbone
from transferlab.groups import LossWeights, OptimizerSettings
from transferlab.video.temporal import OptimizedFrames


def shallow_encoder() -> backbone.VGGFeatures:
    features, normalization = backbone.build_features("vgg19", None, "max", "auto")
    return backbone.VGGFeatures(features, "vgg19", ["relu1_1", "relu2_1"], normalization)


def test_style_grams_are_computed_once_for_all_frames() -> None:
    encoder = shallow_encoder()
    seen: list[tuple[int, ...]] = []
    encoder.register_forward_pre_hook(lambda _, args: seen.append(tuple(args[0].shape[-2:])))
    style = textured(40, 40, seed=3)
    stylize = OptimizedFrames(
        encoder,
        [style],
        {"relu2_1": 1.0},
        {"relu1_1": 0.5, "relu2_1": 0.5},
        LossWeights(1, 1e3, 0),
        OptimizerSettings("adam", 0.01, betas=(0.9, 0.999), weight_decay=0.0),
    )
    frames = pan_frames(n=3)
    results = [stylize(frame, 1, frame, None, 0.0) for frame in frames]
    assert seen.count((40, 40)) == 1 and len(results) == 3
    assert all(torch.isfinite(r).all() for r in results)


def test_lbfgs_frames_do_not_reevaluate_the_accepted_point() -> None:
    encoder = shallow_encoder()
    frame = pan_frames(n=1)[0]
    seen: list[tuple[int, ...]] = []
    encoder.register_forward_pre_hook(lambda _, args: seen.append(tuple(args[0].shape[-2:])))
    stylize = OptimizedFrames(
        encoder,
        [textured(40, 40, seed=3)],
        {"relu2_1": 1.0},
        {"relu1_1": 0.5, "relu2_1": 0.5},
        LossWeights(1, 1e3, 0),
        OptimizerSettings(
            "lbfgs", 1.0, history_size=10, line_search="strong_wolfe", tolerance_grad=1e-7, tolerance_change=1e-9
        ),
    )
    steps = 6
    stylize(frame, steps, frame, None, 0.0)
    evaluations = seen.count(tuple(frame.shape[-2:])) - 1  # less the content's features
    # Each step starts at the point the last line search accepted: answered from the module's cache,
    # about one evaluation per step; re-evaluated, at least two.
    assert steps <= evaluations < 2 * steps
