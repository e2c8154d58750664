"""Scalars that read in TensorBoard's tables. Its Time Series table and tooltip print at most four decimals, so a
figure under 5e-5 (an unweighted loss term, a flicker; 1e-9 with random weights) reads 0 there, and one under
1e-3 keeps a single digit. ``with_log10`` adds the base-10 logarithm of each such figure as ``<name>_log10``
(-8.3 for 5e-9), a chart beside its own; HParams' table (five significant digits) and metrics.json keep the
figures themselves."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TypeVar

from torch import Tensor

V = TypeVar("V", float, Tensor)
FLOOR = 1e-30  # log10 of 0 (an exact match) is drawn at -30, not as -inf


def with_log10(values: Mapping[str, V], names: Iterable[str]) -> dict[str, V]:
    """``values`` and ``<name>_log10`` for each of ``names`` among them."""
    logs = {}
    for name in names:
        if name in values:
            v = values[name]
            logs[f"{name}_log10"] = (
                v.detach().float().clamp(min=FLOOR).log10() if isinstance(v, Tensor) else math.log10(max(v, FLOOR))
            )
    return {**values, **logs}
