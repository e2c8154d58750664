"""The primitive checks every door and every group parser (groups.py) uses: each turns an invalid config
value into one ConfigError naming the key and what is valid. Only the doors, groups.py, the entry and the
readers of settings saved in a checkpoint (checked with the rules of the config that made them) import it."""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from omegaconf import DictConfig, ListConfig, OmegaConf

from transferlab import backbone
from transferlab.errors import ConfigError, InputProblemsError, TransferLabError
from transferlab.result import shown

T = TypeVar("T")


class Problems:
    """The input problems a door finds before any heavy work, reported together: the door runs each
    independent check through ``run`` and calls ``raise_all`` before it uses their results, so that a run
    with a missing content image, style image and weights file says all three at once (one line each)."""

    def __init__(self) -> None:
        self.errors: list[TransferLabError] = []

    def run(self, check: Callable[..., T], *args: Any) -> T | None:
        """``check(*args)``, or None with its error kept."""
        try:
            return check(*args)
        except InputProblemsError as exc:
            self.errors.extend(exc.errors)
        except TransferLabError as exc:
            self.errors.append(exc)
        return None

    def raise_all(self) -> None:
        """Raise the one error found as it is, several as one InputProblemsError; nothing when there is none."""
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise InputProblemsError(self.errors)


def requires(feature: str, modules: Iterable[str], extra: str = "export") -> None:
    """Refuse ``feature`` before any work when one of the ``modules`` it needs does not import (not
    installed, or broken), naming the extra that installs them."""
    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            missing.append(f"{name} ({str(exc).splitlines()[0] if str(exc) else 'does not import'})")
    if missing:
        raise ConfigError(f"{feature} needs {', '.join(missing)}; {install(extra)}")


def install(extra: str) -> str:
    """The command that installs the optional dependencies of ``extra`` (pyproject's optional-dependencies)."""
    return f'pip install "transferlab[{extra}]"'


def choice(value: Any, choices: Iterable[Any], key: str) -> Any:
    choices = list(choices)
    # 1 == True in Python: a boolean key takes only true or false, and a boolean is no other choice.
    if not any(value == c and isinstance(value, bool) == isinstance(c, bool) for c in choices):
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


def normalized(weights: Sequence[float], all_zero: str) -> list[float]:
    """Weights already checked >= 0, scaled to sum to 1 (none stay none); ``all_zero``: the error when
    every one is 0. Divided by the largest first, so that weights as large as 1e308 do not overflow
    their sum to inf and every share to 0."""
    largest = max(weights, default=0.0)
    if weights and largest == 0:
        raise ConfigError(all_zero)
    scaled = [w / largest for w in weights]
    return [w / sum(scaled) for w in scaled]


def layer_weights(weights: Mapping[str, Any] | None, key: str) -> dict[str, float]:
    """Per-layer weights (each >= 0) normalized to sum to 1, the zero ones left out; an empty set stays empty."""
    given = {str(layer): non_negative(w, f"{key}.{layer}") for layer, w in (weights or {}).items()}
    shares = normalized(list(given.values()), f"{key}: all layer weights are 0; give at least one a positive weight")
    return {layer: w for layer, w in zip(given, shares) if w > 0}


def as_list(value: object) -> list:
    """A value that may be one item or a list (``task.style=a.jpg`` or ``[a.jpg, b.jpg]``) as a list."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]


def style_weights(value: Any, count: int) -> tuple[float, ...]:
    """``task.style_weights``: one weight >= 0 per style, normalized to sum to 1 (null: equal weights)."""
    weights = [non_negative(w, f"task.style_weights[{i}]") for i, w in enumerate(as_list(value))]
    if weights and len(weights) != count:
        raise ConfigError(f"task.style_weights has {len(weights)} values for {count} styles; give one per style")
    all_zero = "task.style_weights are all 0; give at least one style a positive weight"
    return tuple(normalized(weights or [1.0] * count, all_zero))


def hparams(cfg: DictConfig, keys: Iterable[str]) -> dict[str, Any]:
    """The settings that matter for a task's HParams table, named as on the command line (``task.lr``):
    the given keys' values, lists and mappings as text (``relu1_1:1.0,relu2_1:1.0``). Every key's value,
    all 40 of them, drowned the few that tell runs apart (the composed config is in .hydra/)."""
    out = {}
    for key in keys:
        value = OmegaConf.select(cfg, key)
        out[key] = shown(OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value)
    return out


def vgg_layers(arch: str, layers: Iterable[str], key: str) -> None:
    """Every layer of ``layers`` is one of ``arch``'s, by its paper name."""
    valid = backbone.layer_names(arch)
    for layer in layers:
        if layer not in valid:
            raise ConfigError(f"{key}: layer {layer!r} does not exist in {arch}; valid names are {', '.join(valid)}")
