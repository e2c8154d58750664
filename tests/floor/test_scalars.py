"""scalars.with_log10: the companions that TensorBoard's tables (four decimals) show for small figures."""

from __future__ import annotations

import pytest
import torch

from transferlab.scalars import with_log10


def test_small_figures_get_a_log10_companion_and_the_others_none() -> None:
    out = with_log10({"flicker": 5e-9, "ssim": 0.9, "exact": 0.0}, ["flicker", "exact", "absent"])
    assert list(out) == ["flicker", "ssim", "exact", "flicker_log10", "exact_log10"]
    assert out["flicker_log10"] == pytest.approx(-8.30103) and out["exact_log10"] == -30  # 0: drawn at the floor
    terms = with_log10({"content": torch.tensor(1e-4, requires_grad=True)}, ["content"])
    assert float(terms["content_log10"]) == pytest.approx(-4) and not terms["content_log10"].requires_grad
