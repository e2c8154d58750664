"""What the entry checks before any task runs, because no task's door can: the command line as Hydra
parses it (quoting), overrides whose Hydra meaning differs from what they say (a merged layer set, a
deleted key), and ``ckpt_path`` naming anything but a local file."""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from transferlab.errors import ConfigError, WeightsError
from transferlab.fetch import has_scheme, is_url


def ckpt_path(value: Any) -> None:
    """Refuse a ``ckpt_path`` that is not a local path: Lightning downloads a URL and unpickles it with
    ``weights_only=False`` (a pickle runs code), and other schemes (s3://, hf://) go through fsspec."""
    if value is None or value == "":
        return
    if not isinstance(value, str):
        raise ConfigError(f"ckpt_path={value!r} is invalid; give the path of a checkpoint file")
    if is_url(value) or has_scheme(value):
        raise WeightsError(
            f"ckpt_path={value}: checkpoints are loaded from local files only (a remote pickle can run code); "
            "download it, check it, and pass its path"
        )


def _parser() -> Any:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()


def parse_errors(argv: Iterable[str]) -> str | None:
    """One line for the first override Hydra's grammar rejects, with the quoted form that it accepts."""
    from hydra.errors import HydraException

    argv = list(argv)
    flags = [i for i, arg in enumerate(argv) if arg in ("-m", "--multirun")]
    overrides_at = [i for i, arg in enumerate(argv) if "=" in arg and not arg.startswith("-")]
    if flags and overrides_at and overrides_at[0] < flags[0] < overrides_at[-1]:
        # Hydra's parser takes the overrides as one group: those after the flag are left unread.
        return f"{argv[flags[0]]} must come before every override, e.g. python run.py {argv[flags[0]]} a=1,2 b=3"
    parser = _parser()
    for arg in argv:
        # Only key=value overrides: flags, their values (-cn NAME) and bare words are Hydra's to report.
        if arg.startswith("-") or "=" not in arg:
            continue
        try:
            parser.parse_override(arg)
        except HydraException:
            key, _, value = arg.partition("=")
            if not _parses(parser, f"{key}=0"):
                return (
                    f"{key} in {arg} is not a key Hydra reads: a key is ASCII names (letters, digits, _ and -) joined "
                    "by dots, with + or ~ in front; quotes belong to values; check its spelling"
                )
            return (
                f"Hydra cannot parse the override {arg}: a value with # , = ( ) [ ] {{ }} quotes or other "
                f"special characters must be quoted; write {quoted(key, value)}"
            )
    return None


def _parses(parser: Any, override: str) -> bool:
    from hydra.errors import HydraException

    try:
        parser.parse_override(override)
    except HydraException:
        return False
    return True


def quoted(key: str, value: str) -> str:
    """``key=value`` quoted for Hydra (inside) and for the shell (outside)."""
    quote = "'" if '"' in value and "'" not in value else '"'
    escaped = value.replace("\\", "\\\\") if quote in value else value
    escaped = escaped.replace(quote, "\\" + quote)
    return shlex.quote(f"{key}={quote}{escaped}{quote}")


def overrides(cfg: DictConfig, task_overrides: Iterable[str]) -> None:
    """Refuse a layer-set override that Hydra merges into the composed set, so that it does not mean
    what it says: ``layers.style={}`` changes nothing, ``layers.style={relu1_1: 1}`` keeps the others."""
    parser = _parser()
    for text in task_overrides:
        try:
            override = parser.parse_override(text)
        except OmegaConfBaseException:
            continue
        except Exception:  # noqa: BLE001 - Hydra already accepted it; nothing to refuse here
            continue
        key = override.key_or_group
        if not key.startswith("layers.") or override.is_delete() or override.is_add():
            continue
        value = override.value()
        if not isinstance(value, dict):
            continue
        node = OmegaConf.select(cfg, key)
        composed = OmegaConf.to_container(node) if isinstance(node, DictConfig) else None
        if composed is not None and set(map(str, composed)) != set(map(str, value)):
            given = OmegaConf.to_yaml(value, sort_keys=False).strip().replace("\n", ", ") if value else ""
            raise ConfigError(
                f"{text}: Hydra merges a set of layers into the composed one ({', '.join(map(str, composed))}), "
                f"so this {'changes nothing' if not value else 'keeps the others'}; to use exactly these layers "
                f"write '~{key}' '+{key}={{{given}}}', or set a layer's weight to 0 ({key}.<layer>=0)"
            )


def deleted_key(exc: OmegaConfBaseException, task_overrides: Iterable[str]) -> str | None:
    """The one line for a key the task needs that an override deleted (``~layers.style``), else None."""
    full_key = str(getattr(exc, "full_key", "") or "")
    for text in task_overrides:
        if not text.startswith("~"):
            continue
        deleted = text[1:].partition("=")[0]
        if full_key and (full_key == deleted or full_key.startswith(deleted + ".")):
            return (
                f"{text} deleted {full_key}, which this task needs; set its value instead of deleting it "
                f"({deleted}=... , or pick another option of its config group)"
            )
    return None
