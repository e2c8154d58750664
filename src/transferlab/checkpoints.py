"""The one loader of every checkpoint and weights file the project reads: local files only, unpickled
with ``weights_only=True`` (tensors, containers and plain values; no code runs), one-line errors; and
the one resume check of every trainer: before a checkpoint reaches Lightning's ``ckpt_path``, it must be
a full checkpoint of the same task, made with the same inputs and settings (its resume fingerprint),
holding tensors of the shapes the new run's module has."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from transferlab.errors import ConfigError, WeightsError
from transferlab.fetch import is_url
from transferlab.files import not_a_file

# What Lightning reads from a checkpoint it resumes from, with the type it needs (else a traceback).
LIGHTNING_KEYS = {
    "pytorch-lightning_version": str,
    "state_dict": dict,
    "loops": dict,
    "optimizer_states": list,
    "lr_schedulers": list,
    "global_step": int,
    "epoch": int,
}
# torch's weights_only refusal opens with advice to load the file unsafely: never passed on.
_TORCH_ADVICE = ("Weights only load failed", "Please file an issue", "Check the documentation", "In PyTorch 2.6")


def local_file(source: str | Path, key: str, expected: str) -> Path:
    """``source`` as an existing local file; a URL or anything else is refused naming ``expected``."""
    if is_url(str(source)):
        raise WeightsError(
            f"{key}={source}: checkpoints and weights are loaded from local files only (a remote pickle can run "
            f"code); download it, check it, and pass its path. Expected: {expected}"
        )
    path = Path(source).expanduser()
    if not path.is_file():
        raise WeightsError(f"{key}={path} {not_a_file(path)}; give {expected}")
    return path


def load(source: str | Path, key: str, expected: str, mmap: bool = False) -> Any:
    """The object saved in the local file ``source``, loaded on the CPU with ``weights_only=True``."""
    path = local_file(source, key, expected)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        raise WeightsError(
            f"{key}={path} is not a readable PyTorch state dict or checkpoint that loads safely "
            f"(weights_only=True): {_reason(exc)}; give {expected}"
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


def _reason(exc: Exception) -> str:
    """The line of a load error that says what is wrong with the file, without torch's advice to load
    it with ``weights_only=False`` (which runs whatever code the file names)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    kept = [line for line in lines if not line.startswith(_TORCH_ADVICE)]
    reason = kept[0] if kept else type(exc).__name__
    return reason.removeprefix("WeightsUnpickler error: ").rstrip(".")


def fingerprint(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` as a checkpoint stores them (a JSON round trip: tuples become lists), for comparing."""
    return json.loads(json.dumps(values))


def check_resume(
    path: Path, task: str, expected_fingerprint: Mapping[str, Any], expected: str, ckpt: Any = None
) -> dict[str, Any]:
    """The checkpoint in ``path`` (loaded safely, unless the caller passes it as ``ckpt``), refused in one
    line unless it is a full Lightning checkpoint that a ``task`` run wrote (``trainer.ResumeRecord``) with
    ``expected_fingerprint``: same inputs and settings. ``expected`` describes it, for messages."""
    if ckpt is None:
        ckpt = load(path, "ckpt_path", expected)
    record = ckpt.get(task) if isinstance(ckpt, dict) else None
    if not isinstance(record, dict) or not isinstance(record.get("fingerprint"), dict):
        raise WeightsError(f"ckpt_path={path} is not {expected} (it was not written by a task={task} run)")
    wrong = [k for k, kind in LIGHTNING_KEYS.items() if not isinstance(ckpt.get(k), kind)]
    if wrong:
        raise WeightsError(
            f"ckpt_path={path} is not a full checkpoint ({', '.join(wrong)} missing or malformed); give {expected}"
        )
    saved = record["fingerprint"]
    differ = [key for key in expected_fingerprint if saved.get(key) != expected_fingerprint[key]]
    if differ:
        raise ConfigError(
            f"ckpt_path={path} was made with other {', '.join(differ)}; resume with the config it was made with "
            "(its run directory's .hydra/overrides.yaml), or start afresh without ckpt_path"
        )
    return ckpt


def check_state(
    path: Path,
    saved: Mapping[str, Any],
    module_state: Mapping[str, torch.Tensor],
    expected: str,
    rebuilt: tuple[str, ...] = (),
) -> None:
    """Refuse in one line a checkpoint's ``state_dict`` (``saved``) whose tensors are not the module's:
    a key missing (but those under the prefixes ``rebuilt``, which the module restores itself) or extra,
    a value that is not a tensor, or another shape."""
    missing = [k for k in module_state if k not in saved and not k.startswith(rebuilt)]
    extra = [k for k in saved if k not in module_state]
    wrong = [
        k
        for k, v in saved.items()
        if k in module_state and (not isinstance(v, torch.Tensor) or v.shape != module_state[k].shape)
    ]
    for what, keys in (("lacks", missing), ("has unexpected", extra), ("has other shapes for", wrong)):
        if keys:
            shown = ", ".join(keys[:3]) + (f" (and {len(keys) - 3} more)" if len(keys) > 3 else "")
            raise WeightsError(
                f"ckpt_path={path} {what} tensors {shown} of the network it must load into; give {expected}"
            )
