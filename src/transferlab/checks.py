"""The checks every task's door uses: each turns an invalid config value into one ConfigError naming
the key and what is valid. Only settings modules (the doors), the entry, and the readers of settings saved
in a checkpoint (which check them with the same rules as the config that made them) import this module."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from transferlab import backbone
from transferlab.errors import ConfigError
from transferlab.runtime import RuntimeSettings
from transferlab.trainer import PRECISIONS, TrainerSettings, available_accelerators


def choice(value: Any, choices: Iterable[Any], key: str) -> Any:
    choices = list(choices)
    if value not in choices:
        raise ConfigError(f"{key}={value!r} is invalid; choose one of {', '.join(map(str, choices))}")
    return value


def number(value: Any, key: str) -> float:
    """A finite real number (``nan``, ``inf`` and ``1e400`` are refused: they would run to a black image)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ConfigError(f"{key}={value!r} is invalid; it must be a finite number")
    return float(value)


def non_negative(value: Any, key: str) -> float:
    if number(value, key) < 0:
        raise ConfigError(f"{key}={value!r} is invalid; it must be a number >= 0")
    return float(value)


def positive(value: Any, key: str) -> float:
    if number(value, key) <= 0:
        raise ConfigError(f"{key}={value!r} is invalid; it must be a number > 0")
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


def hparams(cfg: DictConfig, keys: Iterable[str]) -> dict[str, Any]:
    """The given top-level keys as plain nested values; Lightning's logger flattens them (``task/lr``)
    and turns what TensorBoard cannot show into strings."""
    return OmegaConf.to_container(OmegaConf.masked_copy(cfg, list(keys)), resolve=True)  # type: ignore[return-value]


def vgg_layers(arch: str, layers: Iterable[str], key: str) -> None:
    """Every layer of ``layers`` is one of ``arch``'s, by its paper name."""
    valid = backbone.layer_names(arch)
    for layer in layers:
        if layer not in valid:
            raise ConfigError(f"{key}: layer {layer!r} does not exist in {arch}; valid names are {', '.join(valid)}")


def model_settings(model: DictConfig) -> backbone.ModelSettings:
    """``model.*``: an architecture we know, weights that exist for it, a pooling and a normalization."""
    arch = model.arch
    if arch not in backbone.ARCHS:
        raise ConfigError(
            f"model.arch={arch!r} is not supported here; choose one of {', '.join(backbone.ARCHS)} "
            "(other torchvision models are for task=finetune, predict, export and extract)"
        )
    weights = None if model.weights is None else str(model.weights)
    if weights is not None and not backbone.is_weights_file(weights) and weights not in backbone.weight_names(arch):
        choices = [*backbone.weight_names(arch), "a path to a .pth state dict", "null (random)"]
        raise ConfigError(f"model.weights={weights!r} is not a {arch} weight set; choose one of {choices}")
    return backbone.ModelSettings(
        arch,
        weights,
        choice(model.pooling, backbone.POOLINGS, "model.pooling"),
        choice(model.normalization, ["auto", *backbone.NORMALIZATIONS], "model.normalization"),
        positive(model.feature_scale, "model.feature_scale"),
    )


def runtime_settings(cfg: DictConfig) -> RuntimeSettings:
    """``runtime.*``: the process-wide settings a task may apply, each with its off switch."""
    runtime = cfg.get("runtime") or {}
    return RuntimeSettings(
        **{
            key: choice(runtime.get(key, default), [True, False], f"runtime.{key}")
            for key, default in (("flush_denormal", True), ("keep_freed_memory", True), ("winograd", True))
        }
    )


def trainer_settings(cfg: DictConfig) -> TrainerSettings:
    """``trainer.*`` and ``precision`` checked, with ``trainer.accelerator=auto`` resolved for this machine."""
    available = available_accelerators()
    requested = choice(cfg.trainer.accelerator, ["auto", *available], "trainer.accelerator")
    if requested == "auto":
        accelerator = "cuda" if available["cuda"] else "mps" if available["mps"] else "cpu"
    elif not available[requested]:
        raise ConfigError(
            f"trainer.accelerator={requested}: no {requested} device on this machine; use trainer.accelerator=auto"
        )
    else:
        accelerator = requested
    precision = choice(str(cfg.precision), PRECISIONS, "precision")
    if precision == "16-mixed" and accelerator != "cuda":
        raise ConfigError(
            f"precision=16-mixed needs a CUDA GPU (this run is on {accelerator}); use precision=bf16-mixed or 32"
        )
    return TrainerSettings(accelerator, cfg.trainer.devices, cfg.trainer.strategy, precision)
