"""Two runs never share a directory: before Hydra writes ``.hydra/`` or opens the log, a run directory
(or sweep directory) that already holds a run is refused in one line, unless the run continues it
through a ``ckpt_path`` inside it. A directory left by a run that failed before writing anything but
its error is reused."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

# What a run that failed at its door leaves (main.keep_error): nothing worth keeping from it.
FAILED_ONLY = {".hydra", "run.log", "error.txt"}


def refusal(directory: Path, ckpt_path: str | None, key: str) -> str | None:
    """Why ``directory`` cannot take a new run, or None (it is new, empty, or continued by ``ckpt_path``)."""
    if not directory.is_dir():
        return None
    entries = {p.name for p in directory.iterdir()}
    if not entries:
        return None
    if "error.txt" in entries and entries <= FAILED_ONLY:
        return None  # the new run replaces .hydra/ and error.txt (main.keep_error), and appends to run.log
    if (
        ckpt_path
        and key == "hydra.run.dir"
        and Path(ckpt_path).expanduser().resolve().is_relative_to(directory.resolve())
    ):
        return None  # continuing the run that is there
    shown = ", ".join(sorted(entries)[:4]) + (", ..." if len(entries) > 4 else "")
    fix = (
        "continue that run with ckpt_path=<one of its checkpoints>, " if key == "hydra.run.dir" else ""
    ) + f"leave {key} at its default (unique), or pick a new directory"
    return f"{key}={directory} already holds a run ({shown}); {fix}"


def _directory(config: DictConfig, key: str) -> Path | None:
    try:
        return Path(str(OmegaConf.select(config, key, throw_on_resolution_failure=True)))
    except Exception:  # noqa: BLE001 - a directory named by interpolations known only later: not checked
        return None


def _refuse(message: str) -> None:
    # A callback's exception would reach Hydra's traceback printer; exit as the entry does for bad input.
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


class FreshRunDir(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if os.environ.get("LOCAL_RANK", "0") != "0":
            return  # a DDP worker Lightning started: it joins the run its rank 0 began in this directory
        directory = _directory(config, "hydra.run.dir")
        if directory is not None:
            message = refusal(directory, OmegaConf.select(config, "ckpt_path", default=None), "hydra.run.dir")
            if message:
                _refuse(message)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        directory = _directory(config, "hydra.sweep.dir")
        if directory is not None:
            message = refusal(directory, None, "hydra.sweep.dir")
            if message:
                _refuse(message)
