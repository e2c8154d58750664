"""Checks that turn invalid config values into one ConfigError naming the key and the valid choices."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from transferlab.errors import ConfigError


def choice(value: Any, choices: Iterable[Any], key: str) -> Any:
    choices = list(choices)
    if value not in choices:
        raise ConfigError(f"{key}={value!r} is invalid; choose one of {', '.join(map(str, choices))}")
    return value


def non_negative(value: Any, key: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"{key}={value!r} is invalid; it must be a number >= 0")
    return float(value)


def at_least(value: Any, minimum: int, key: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{key}={value!r} is invalid; it must be an integer >= {minimum}")
    return value


def layer_weights(weights: Mapping[str, Any] | None, key: str) -> dict[str, float]:
    """Per-layer weights, normalized to sum to 1 (an empty set stays empty)."""
    weights = {str(layer): non_negative(w, f"{key}.{layer}") for layer, w in (weights or {}).items()}
    total = sum(weights.values())
    if weights and total == 0:
        raise ConfigError(f"{key}: all layer weights are 0; give at least one a positive weight")
    return {layer: w / total for layer, w in weights.items() if w > 0}


def flat(cfg: DictConfig, keys: Iterable[str]) -> dict[str, Any]:
    """``{"group.key": value}`` for the given top-level groups, values as TensorBoard hparams accept them."""
    out: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}.{k}", v)
        else:
            out[prefix] = node if isinstance(node, (int, float, str, bool)) else str(node)

    for key in keys:
        walk(key, OmegaConf.to_container(cfg[key], resolve=True))
    return out
