"""Two runs never share a directory: before Hydra writes ``.hydra/`` or opens the log, a run directory
(or sweep directory) that already holds a run is refused in one line, unless the run continues it
through a ``ckpt_path`` inside it. A directory left by a run that failed before writing anything but
its error is reused. A directory on a disk with almost no space left is refused there too (Hydra's own
writes would end in its traceback)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

# What a run that failed at its door leaves (main.keep_error): nothing worth keeping from it.
# The log is named after the job: main.log from run.py and the console command (hydra.main is in main.py).
FAILED_ONLY = {".hydra", "main.log", "run.log", "error.txt"}
# Below this, Hydra cannot even write .hydra/ and the log (about 40 KB in 4 KB blocks).
MIN_FREE_BYTES = 256 * 1024


def _nearest_existing(directory: Path) -> Path:
    return next(p for p in (directory, *directory.parents) if p.exists())


def unusable(directory: Path, key: str) -> str | None:
    """Why ``directory`` cannot be made or written (a file in its place or on its path, a folder the user
    may not write), or None."""
    existing = _nearest_existing(directory)
    if not existing.is_dir():
        where = "is not a folder" if existing == directory else f"lies under {existing}, which is not a folder"
        return f"{key}={directory} {where}; pick another directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{key}={directory}: {existing} is not writable (permission denied); pick a directory you can write"
    return None


def no_space(directory: Path, key: str) -> str | None:
    """Why ``directory``'s disk cannot take a run (under ``MIN_FREE_BYTES`` free), or None."""
    stat = os.statvfs(_nearest_existing(directory))
    free = stat.f_bavail * stat.f_frsize
    if free >= MIN_FREE_BYTES:
        return None
    return (
        f"no space left on device writing {directory} (only {free // 1024} KB free); free space there, "
        f"or write the run elsewhere with {key}=..."
    )


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


def _refuse(message: str, code: int = 2) -> None:
    # A callback's exception would reach Hydra's traceback printer; exit as the entry does (2: bad input,
    # 1: the machine cannot run it).
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


class FreshRunDir(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if os.environ.get("LOCAL_RANK", "0") != "0":
            return  # a DDP worker Lightning started: it joins the run its rank 0 began in this directory
        directory = _directory(config, "hydra.run.dir")
        if directory is not None:
            message = unusable(directory, "hydra.run.dir")
            if message:
                _refuse(message)
            message = refusal(directory, OmegaConf.select(config, "ckpt_path", default=None), "hydra.run.dir")
            if message:
                _refuse(message)
            message = no_space(directory, "hydra.run.dir")
            if message:
                _refuse(message, 1)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        directory = _directory(config, "hydra.sweep.dir")
        if directory is not None:
            message = unusable(directory, "hydra.sweep.dir")
            if message:
                _refuse(message)
            message = refusal(directory, None, "hydra.sweep.dir")
            if message:
                _refuse(message)
            message = no_space(directory, "hydra.sweep.dir")
            if message:
                _refuse(message, 1)
