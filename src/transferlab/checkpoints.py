"""The one loader of every checkpoint and weights file the project reads: local files only, unpickled
with ``weights_only=True`` (tensors, containers and plain values; no code runs), one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from transferlab.errors import WeightsError
from transferlab.fetch import is_url


def local_file(source: str | Path, key: str, expected: str) -> Path:
    """``source`` as an existing local file; a URL or anything else is refused naming ``expected``."""
    if is_url(str(source)):
        raise WeightsError(
            f"{key}={source}: checkpoints and weights are loaded from local files only (a remote pickle can run "
            f"code); download it, check it, and pass its path. Expected: {expected}"
        )
    path = Path(source).expanduser()
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise WeightsError(f"{key}={path} {what}; give {expected}")
    return path


def load(source: str | Path, key: str, expected: str, mmap: bool = False) -> Any:
    """The object saved in the local file ``source``, loaded on the CPU with ``weights_only=True``."""
    path = local_file(source, key, expected)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(
            f"{key}={path} is not a readable PyTorch state dict or checkpoint that loads safely "
            f"(weights_only=True): {first}; give {expected}"
        ) from None
