"""The one task contract: every task returns a ``TaskResult``, and the entry (``main.run_task``)
writes the run's ``metrics.json``, its ``result.json`` (which images represent it, their caption, the
objective) and its TensorBoard HParams session from it, the same way for every task. A sweep's contact
sheet (``sweep.py``) reads each job's ``result.json``: it knows no task's file names or metric keys."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import OmegaConf

from transferlab import trainer
from transferlab.files import write_json

METRICS_FILE = "metrics.json"
RESULT_FILE = "result.json"


@dataclass(frozen=True)
class TaskResult:
    """What a task hands the entry. ``metrics``: metrics.json as the task defines it. ``objective``: what
    a sweeper optimizes (returned to Hydra). ``images``: the files in the run directory that show the
    result, one contact-sheet tile each. ``caption``: a line or two of figures under the job's tiles.
    ``hparams``: the settings for TensorBoard's HParams table (nested dicts become ``group.key``, as on
    the command line). ``summary``: that table's metrics, named as their curves, logged at ``step``."""

    metrics: dict[str, Any]
    objective: float | None
    images: tuple[Path, ...] = ()
    caption: tuple[str, ...] = ()
    hparams: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, float] = field(default_factory=dict)
    step: int = 0


def record(result: TaskResult, output_dir: Path, overrides: Sequence[str] = (), swept: Collection[str] = ()) -> None:
    """Write ``result`` into ``output_dir``: metrics.json, result.json and the HParams session (its
    columns led by the user's ``overrides``, the ``swept`` keys first: ``leading_hparams``; random
    weights as ``model.weights=random``)."""
    write_json(result.metrics, output_dir / METRICS_FILE)
    index = {
        "objective": result.objective,
        "images": [str(Path(p).relative_to(output_dir)) for p in result.images],
        "caption": list(result.caption),
    }
    write_json(index, output_dir / RESULT_FILE)
    hp = flat(result.hparams)
    if "model.weights" in hp and hp["model.weights"] is None:
        hp["model.weights"] = "random"  # as every task's log announces them, not TensorBoard's "None"
    hp = leading_hparams(hp, overrides, swept)
    trainer.log_summary(output_dir, hp, result.summary, result.step)


def read_index(run_dir: Path) -> dict[str, Any] | None:
    """A run's result.json (images as paths), or None where the run wrote none."""
    path = run_dir / RESULT_FILE
    if not path.is_file():
        return None
    index = json.loads(path.read_text())
    index["images"] = [run_dir / p for p in index["images"]]
    return index


def flat(hparams: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as ``group.key`` (the command line's names), so that an override finds its column."""
    out: dict[str, Any] = {}
    for key, value in hparams.items():
        if isinstance(value, Mapping) and value:
            out |= flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def settings_hparams(settings: Any) -> dict[str, Any]:
    """A task's door values (a frozen settings dataclass) as HParams: nested settings as ``group.key``,
    paths and lists as text (TensorBoard shows numbers, text and booleans only)."""
    return {key: shown(value) for key, value in flat(dataclasses.asdict(settings)).items()}


def shown(value: Any) -> Any:
    """A setting as an HParams cell: lists as ``a,b``, mappings as ``k:v,k:v``, paths as text."""
    if isinstance(value, Mapping):
        return ",".join(f"{k}:{v}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value) if isinstance(value, Path) else value


def leading_hparams(hp: dict[str, Any], overrides: Sequence[str], swept: Collection[str] = ()) -> dict[str, Any]:
    """HParams: the keys the user swept, then those they overrode, then the task's settings. TensorBoard
    sorts the table's columns by name and ticks the first five, so swept keys are named ``* key`` and, in
    a sweep, the other overrides ``= key`` (both sort before letters, ``*`` first, in byte and in locale
    order; outside a sweep every override is a ``* key``); a key that is not among the settings
    (trainer.accelerator, a group choice) shows the value as given."""
    hp = dict(hp)
    first: dict[str, Any] = {}
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if key.startswith("hydra"):
            continue
        mark = "*" if key in swept or not swept else "="
        first[f"{mark} {key}"] = hp.pop(key) if key in hp else value
    return dict(sorted(first.items(), key=lambda item: item[0][0] != "*")) | hp


def swept_keys() -> set[str]:
    """The keys a ``-m`` sweep varies (read from its multirun.yaml, so with any launcher); none outside a sweep."""
    try:
        config = HydraConfig.get()
    except ValueError:
        return set()
    if config.mode != RunMode.MULTIRUN:
        return set()
    path = Path(config.sweep.dir) / "multirun.yaml"
    if not path.is_file():
        return set()
    overrides = OverridesParser.create().parse_overrides(list(OmegaConf.load(path).hydra.overrides.task))
    return {o.key_or_group for o in overrides if o.is_sweep_override()}
