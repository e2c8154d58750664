"""Structured-config schemas for the task configs, so that a misspelt key fails wherever it is written
(an experiment file too, not only the command line).

Each schema is made from its task's own YAML file, whose values stay the one source of defaults: every
key the file defines is a field, and Hydra refuses to merge a key that is not one. A task file extends
its schema with ``- /schema/task@_here_: <name>`` in its defaults list; schemas live in their own group,
so ``task=glob(*)`` sweeps never pick them up.
"""

from __future__ import annotations

from dataclasses import field, make_dataclass
from pathlib import Path
from typing import Any

import yaml
from hydra.core.config_store import ConfigStore


def task_schema(path: Path) -> type:
    values = yaml.safe_load(path.read_text()) or {}
    values.pop("defaults", None)
    fields = [(key, Any, field(default_factory=lambda v=value: v)) for key, value in values.items()]
    return make_dataclass(f"{path.stem.title().replace('_', '')}Task", fields)


def register(config_dir: Path) -> None:
    store = ConfigStore.instance()
    for path in sorted((config_dir / "task").glob("*.yaml")):
        store.store(group="schema/task", name=path.stem, node=task_schema(path))
