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


def read_trained(source: str | Path, key: str, expected: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``hyper_parameters`` and ``state_dict`` of a Lightning checkpoint in ``source``, both checked to be
    dicts (the state dict of tensors by name); anything else is a WeightsError naming ``expected``. The
    callers check each hyperparameter before they build anything from it."""
    checkpoint = load(source, key, expected)
    hp = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if not isinstance(hp, dict) or not isinstance(state, dict):
        raise WeightsError(f"{key}={source} is not {expected} (no hyperparameters and state dict); give {expected}")
    bad = next((k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise WeightsError(f"{key}={source}: its state dict holds {bad!r}, which is not a tensor; give {expected}")
    return hp, state


def load_weights(
    network: torch.nn.Module,
    state: dict[str, torch.Tensor],
    prefix: str,
    what: str,
    expected: str,
    skip: tuple[str, ...] = (),
    assign: bool = False,
) -> torch.nn.Module:
    """``network`` (in eval mode) with the tensors of ``state`` under ``prefix`` (less the names under ``skip``),
    which must fit it exactly and be finite; a WeightsError in one line naming ``what`` (the file and key)
    otherwise. A NaN or infinite weight is refused here: it would run and write black images."""
    own = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix) and not k.startswith(skip)}
    bad = next((k for k, v in own.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())), None)
    if bad is not None:
        raise WeightsError(
            f"{what}: weight {bad} holds NaN or infinite values (the training diverged); give {expected} "
            "from before it diverged, or retrain with a lower learning rate"
        )
    try:
        network.load_state_dict(own, assign=assign)
    except (RuntimeError, TypeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise WeightsError(f"{what}: its weights do not fit the network it names: {first}; give {expected}") from None
    return network.eval()
