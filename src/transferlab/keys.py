"""Every key of a composed config must be one that the chosen config files define, however it got there.

Hydra closes the composed config before applying command-line overrides, so ``task.stpes=10`` fails in
Hydra; but ``+`` and ``++`` open each node on their path (``OmegaConf.update(force_add=True)``), and an
experiment file is merged before the config is closed, so a misspelt key written either way would be
accepted and ignored. This module checks the composed config once, after composition, against the keys
that the files of its defaults list define (an experiment's own keys define nothing: it only sets values).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

from transferlab.errors import ConfigError

# Nodes whose keys are names the door checks (layers.style.relu1_1), not keys a config file defines.
OPEN_MAPS = ("layers.content", "layers.style", "model.layers.content", "model.layers.style")
# An experiment sets values of the chosen configs; the keys it writes must already be defined by them.
SETS_VALUES_ONLY = ("experiment/",)


def defined_keys(config_name: str, overrides: Sequence[str]) -> dict[str, Any]:
    """The tree of keys (``{key: subtree or None}``) the config files chosen by ``overrides`` define,
    from the defaults list Hydra computes for them (Hydra must be initialized: the entry, or a test's
    ``initialize_config_dir``)."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    loader = GlobalHydra.instance().config_loader()
    tree: dict[str, Any] = {}
    for default in loader.compute_defaults_list(config_name, list(overrides), RunMode.RUN).defaults:
        path = default.config_path or ""
        if path.startswith(("hydra/", *SETS_VALUES_ONLY)):
            continue
        node = tree
        for part in filter(None, (default.package or "").split(".")):
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        _add(node, OmegaConf.to_container(loader.repository.load_config(path).config))
    return tree


def _add(tree: dict[str, Any], values: Any) -> None:
    for key, value in (values or {}).items():
        if isinstance(value, dict):
            subtree = tree.get(key)
            tree[key] = subtree if isinstance(subtree, dict) else {}
            _add(tree[key], value)
        else:
            tree.setdefault(key, None)


def unknown(values: Mapping[str, Any], tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, list[str]]]:
    """Each key of ``values`` (the composed config as a container) that ``tree`` does not define, as (its
    full name, the valid keys of its node); the subtree of a key that is not a mapping in ``tree`` (null
    by default, a value the door reads) and the open maps are not looked into."""
    for key, value in values.items():
        full = f"{prefix}{key}"
        if full == "hydra":
            continue
        if key not in tree:
            yield full, [str(k) for k in tree if f"{prefix}{k}" != "hydra"]
        elif isinstance(value, dict) and isinstance(tree[key], dict) and full not in OPEN_MAPS:
            yield from unknown(value, tree[key], f"{full}.")


def message(full_key: str, valid: Sequence[str], source: str = "") -> str:
    """The one line for an unknown key: its name, where it was written, and the nearest valid key."""
    parent, _, name = full_key.rpartition(".")
    near = difflib.get_close_matches(name, valid, n=1)
    where = f" of {parent}" if parent else ""
    hint = f"did you mean {parent + '.' if parent else ''}{near[0]}?" if near else f"valid keys: {', '.join(valid)}"
    if not valid:  # a value that is null (set it whole) or an open map still empty (a key is added with +)
        hint = f"{parent} has no keys to set: give it whole ({parent}=...), or add a key with +{full_key}=..."
    return f"{full_key}{f' ({source})' if source else ''} is not a known key{where}; {hint}"


def source(full_key: str, overrides: Sequence[str]) -> str:
    """The override that added ``full_key`` (above, at or below it), else the experiment file: only ``+``
    and ``++`` add keys (Hydra refuses a new key without them)."""
    for text in overrides:
        key = text.lstrip("+").partition("=")[0]
        if text.startswith("+") and (f"{key}.".startswith(f"{full_key}.") or full_key.startswith(f"{key}.")):
            return f"from {text}"
    chosen = [text for text in overrides if text.startswith("experiment=")]
    return f"from {chosen[-1]}" if chosen else ""


def unknown_hydra(overrides: Sequence[str]) -> Iterator[tuple[str, list[str], str]]:
    """Each key that a ``+hydra.*`` or ``++hydra.*`` override adds where Hydra's own schema (``HydraConf``)
    has none, as (its name, the valid keys of its node, the override); keys under open maps
    (``hydra.job.env_set``, ``hydra.callbacks``, a launcher's or sweeper's settings) are not looked into."""
    from hydra.conf import HydraConf

    schema = OmegaConf.structured(HydraConf)
    for text in overrides:
        key = text.partition("=")[0]
        if not (text.startswith("+") and key.lstrip("+").startswith("hydra.")):
            continue
        node, parts = schema, key.lstrip("+").split(".")[1:]
        for depth, part in enumerate(parts):
            if not isinstance(node, DictConfig) or node._metadata.object_type in (None, dict):
                break  # an open map, or a plugin's node (Any): its keys are the plugin's
            if part not in list(node):  # ``in`` says no for a key whose value is missing (???)
                yield ".".join(["hydra", *parts[: depth + 1]]), [str(k) for k in node if k != "defaults"], text
                break
            node = node._get_node(part)


def check(cfg: DictConfig, overrides: Sequence[str], config_name: str = "config", hydra: Sequence[str] = ()) -> None:
    """Refuse every key of ``cfg`` that its config files do not define, and every key a ``+hydra.*``
    override adds that Hydra does not define, one line each, naming the nearest valid key.
    ``overrides``: the task's overrides as written; ``hydra``: Hydra's own (a search path, hydra.*)."""
    tree = defined_keys(config_name, [*overrides, *hydra])
    values = OmegaConf.to_container(cfg, resolve=False)
    lines = [message(key, valid, source(key, overrides)) for key, valid in unknown(values, tree)]
    lines += [message(key, valid, f"from {text}") for key, valid, text in unknown_hydra(hydra)]
    if lines:
        raise ConfigError("\n".join(lines))
