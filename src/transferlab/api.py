"""The Python API: every task as a function, through the command line's own door.

``run(task, **keys, overrides=[...])`` composes the packaged configs with Hydra's compose API (the same
defaults list, experiments and groups as ``transferlab`` on the command line), checks the keys as the entry
does (``keys.check``, ``entry_checks``), and runs the task through ``main.run_task``: the same door, run
directory, metrics.json, result.json and TensorBoard as a command-line run. The named functions
(``stylize``, ``finetune``, ...) are thin wrappers that name each task's required keys. A keyword is a config
key: ``size=512`` is ``task.size`` (a key of the task), ``seed=1`` and ``model="resnet50"`` are top-level keys
and group choices, ``trainer__accelerator="cpu"`` (or ``trainer={"accelerator": "cpu"}``) is
``trainer.accelerator``; ``overrides`` takes command-line overrides as written. Bad input raises the
project's one-line ``TransferLabError`` (``ConfigError`` for a key or value); nothing is printed and nothing
exits. Importing this module imports neither torch nor Lightning and installs no logging handler.
"""

from __future__ import annotations

import errno
import json
import logging
import shutil
import tempfile
import traceback
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from transferlab import CONFIGS
from transferlab.errors import ConfigError, TransferLabError

if TYPE_CHECKING:
    from omegaconf import DictConfig
    from PIL import Image

    from transferlab.fast.net import StylizerNet


class _CommandLineDefault:
    def __repr__(self) -> str:
        return "CLI_RUN_DIR"


CLI_RUN_DIR: Final = _CommandLineDefault()
"""``run_dir``'s default: the directory a command-line run would get (``hydra.run.dir``: outputs/<task>/<date>/
<time>-<pid>, under the current directory), or the one an override ``hydra.run.dir=...`` names."""

RunDir = str | PathLike | None | _CommandLineDefault
Source = str | PathLike


@dataclass(frozen=True)
class Run:
    """What a run gave: ``metrics`` (its metrics.json), ``objective`` (what a sweeper would optimize),
    ``images`` (the images that represent it, e.g. stylize's final image, loaded), ``caption`` (its last line's
    figures) and ``run_dir`` (None when run with ``run_dir=None``: the directory is gone)."""

    task: str
    run_dir: Path | None
    metrics: dict[str, Any]
    objective: float | None
    images: tuple[Image.Image, ...]
    caption: tuple[str, ...]

    @property
    def image(self) -> Image.Image | None:
        """The first image that represents the run (stylize: the result), or None for a task without one."""
        return self.images[0] if self.images else None


def run(
    task: str | None = None,
    *,
    overrides: Sequence[str] = (),
    run_dir: RunDir = CLI_RUN_DIR,
    **keys: Any,
) -> Run:
    """Run ``task`` (any of ``transferlab task=...``; None: the config's own, or the experiment's) with ``keys``
    (see the module docstring) and command-line ``overrides``, as the command line would.

    ``run_dir``: left out, the command line's default directory; a path, that directory (new or empty, as
    ``hydra.run.dir=...``); None, a temporary directory removed when the run ends (``Run.run_dir`` is None;
    checkpoints and TensorBoard go with it). Raises ``ConfigError`` for an unknown key or bad value, and
    the other ``TransferLabError`` types for a missing file or bad data, in one line; a failed run leaves
    its error in the run directory's error.txt, as on the command line."""
    cfg, given = _composed(task, overrides, keys)
    directory = _run_dir(cfg, run_dir)
    from omegaconf import open_dict

    with open_dict(cfg):
        del cfg["hydra"]  # as Hydra hands a task its config (hydra.* is Hydra's, not the task's)
    try:
        _record_config(cfg, given, directory)
        _run_task(cfg, directory, given)
        return _result(cfg.task.name, directory, keep=run_dir is not None)
    finally:
        if run_dir is None:
            shutil.rmtree(directory, ignore_errors=True)


def compose(task: str | None = None, *, overrides: Sequence[str] = (), **keys: Any) -> DictConfig:
    """The config ``run`` would hand the task (checked as ``run`` checks it; ``hydra`` left out): to look at
    what a call would do without running it."""
    cfg, _ = _composed(task, overrides, keys)
    from omegaconf import open_dict

    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def load_stylizer(path: Source, device: str = "cpu", style_size: int = 512) -> StylizerNet:
    """A train_fast or train_adain checkpoint, or an export_fast or export_adain ``model.onnx``, as a callable
    ``net(image, style=..., alpha=..., strength_map=..., color=...)`` (``fast/net.py``), loaded by the project's one
    stylizer loader. ``device``: where a checkpoint's network runs (ONNX models run on the CPU); ``style_size``:
    the long side an arbitrary-style network's style image is resized to (``task.style_size``)."""
    from transferlab.fast.net import StylizerNet

    return StylizerNet(Path(path), device, style_size)


# The task's required keys as arguments, the rest as keywords: one thin wrapper per task.


def stylize(
    content: Source,
    style: Source | Sequence[Source],
    *,
    overrides: Sequence[str] = (),
    run_dir: RunDir = CLI_RUN_DIR,
    **keys: Any,
) -> Run:
    """Gatys et al.: optimize an image with ``content``'s content and ``style``'s style (paths, pinned URLs or
    ``sample:<name>``; several styles as a list). ``Run.image`` is the result. Keys: configs/task/stylize.yaml
    (``size``, ``steps``, ``color``, ``strength_map``, ...)."""
    return run("stylize", overrides=overrides, run_dir=run_dir, content=content, style=style, **keys)


def finetune(data_root: Source, *, overrides: Sequence[str] = (), run_dir: RunDir = CLI_RUN_DIR, **keys: Any) -> Run:
    """Fine-tune a pretrained CNN (``model=...``) on the ImageFolder ``data_root`` (``data.root``); its best
    checkpoint is ``Run.run_dir / "checkpoints" / "best.ckpt"``. Keys: configs/task/finetune.yaml (``epochs``,
    ``lr``, ``freeze``, ...), ``data__*`` (configs/data/imagefolder.yaml)."""
    return run("finetune", overrides=overrides, run_dir=run_dir, data__root=data_root, **keys)


def predict(
    ckpt_path: Source,
    images: Source | Sequence[Source],
    *,
    overrides: Sequence[str] = (),
    run_dir: RunDir = CLI_RUN_DIR,
    **keys: Any,
) -> Run:
    """Classify ``images`` (``task.input``: an image, a folder or a list) with a finetune checkpoint."""
    return run("predict", overrides=overrides, run_dir=run_dir, ckpt_path=ckpt_path, input=images, **keys)


def export(ckpt_path: Source, *, overrides: Sequence[str] = (), run_dir: RunDir = CLI_RUN_DIR, **keys: Any) -> Run:
    """Export a finetune checkpoint (``formats``: pt2, onnx), checked against PyTorch's outputs."""
    return run("export", overrides=overrides, run_dir=run_dir, ckpt_path=ckpt_path, **keys)


def extract(
    images: Source | Sequence[Source], *, overrides: Sequence[str] = (), run_dir: RunDir = CLI_RUN_DIR, **keys: Any
) -> Run:
    """Features of ``images`` (``task.input``) at ``layers``, from ``model``'s weights or a ``ckpt_path``."""
    return run("extract", overrides=overrides, run_dir=run_dir, input=images, **keys)


def train_fast(
    data_root: Source, style: Source, *, overrides: Sequence[str] = (), run_dir: RunDir = CLI_RUN_DIR, **keys: Any
) -> Run:
    """Train a per-style feed-forward network on the photos under ``data_root`` for ``style``; its checkpoint
    ``Run.run_dir / "checkpoints" / "last.ckpt"`` goes to ``load_stylizer``, ``apply_fast``, ``export_fast``."""
    return run("train_fast", overrides=overrides, run_dir=run_dir, data__root=data_root, style=style, **keys)


def apply_fast(
    ckpt_path: Source,
    images: Source | Sequence[Source],
    *,
    overrides: Sequence[str] = (),
    run_dir: RunDir = CLI_RUN_DIR,
    **keys: Any,
) -> Run:
    """Stylize ``images`` (``task.input``) with any stylizer file (``style=`` for an arbitrary-style one) into
    ``Run.run_dir / "stylized"``."""
    return run("apply_fast", overrides=overrides, run_dir=run_dir, ckpt_path=ckpt_path, input=images, **keys)


def export_fast(ckpt_path: Source, *, overrides: Sequence[str] = (), run_dir: RunDir = CLI_RUN_DIR, **keys: Any) -> Run:
    """Export a train_fast checkpoint (``formats``: onnx, pt2, int8) into the run directory (model.onnx, ...)."""
    return run("export_fast", overrides=overrides, run_dir=run_dir, ckpt_path=ckpt_path, **keys)


def train_adain(
    data_root: Source, styles: Source, *, overrides: Sequence[str] = (), run_dir: RunDir = CLI_RUN_DIR, **keys: Any
) -> Run:
    """Train an arbitrary-style network (``arch``: adain, sanet) on the photos under ``data_root`` and the
    style images under ``styles``."""
    return run("train_adain", overrides=overrides, run_dir=run_dir, data__root=data_root, styles=styles, **keys)


def apply_adain(
    ckpt_path: Source,
    images: Source | Sequence[Source],
    style: Source | Sequence[Source],
    *,
    overrides: Sequence[str] = (),
    run_dir: RunDir = CLI_RUN_DIR,
    **keys: Any,
) -> Run:
    """Stylize ``images`` with a train_adain checkpoint and ``style`` (several: blended or masked)."""
    kw = {"ckpt_path": ckpt_path, "input": images, "style": style}
    return run("apply_adain", overrides=overrides, run_dir=run_dir, **kw, **keys)


def export_adain(
    ckpt_path: Source, *, overrides: Sequence[str] = (), run_dir: RunDir = CLI_RUN_DIR, **keys: Any
) -> Run:
    """Export a train_adain checkpoint (content and style in, alpha baked in) to ONNX and a torch.export program."""
    return run("export_adain", overrides=overrides, run_dir=run_dir, ckpt_path=ckpt_path, **keys)


def stylize_video(source: Source, *, overrides: Sequence[str] = (), run_dir: RunDir = CLI_RUN_DIR, **keys: Any) -> Run:
    """Stylize the video file or frame folder ``source`` (``task.input``), by optimization (``style=``) or a
    network (``method="fast"``, ``network=``), with temporal consistency."""
    return run("video", overrides=overrides, run_dir=run_dir, input=source, **keys)


# Composition: the command line's configs, keys and checks.


def _composed(task: str | None, overrides: Sequence[str], keys: Mapping[str, Any]) -> tuple[DictConfig, list[str]]:
    """The composed config (hydra node included) and the task's overrides as the command line would write
    them, every check of the entry's passed."""
    from hydra import compose as hydra_compose
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from transferlab import entry_checks, main
    from transferlab import keys as config_keys

    overrides = [str(o) for o in ([overrides] if isinstance(overrides, str) else overrides)]
    message = entry_checks.parse_errors(overrides)
    if message:
        raise ConfigError(message)
    if task is not None and task not in main.TASKS:
        raise ConfigError(f"task={task!r} is unknown; choose one of {', '.join(main.TASKS)}")
    chosen = [f"task={task}"] if task is not None else []
    own = [o for o in overrides if not _is_hydras(o)]
    with _hydra():
        try:
            tree = config_keys.defined_keys("config", [*chosen, *own])
            written = [*chosen, *keyword_overrides(keys, tree), *overrides]
            # Hydra's own keys (hydra.run.dir) apart, as the command line's Hydra keeps them
            given, user_hydra = [o for o in written if not _is_hydras(o)], [o for o in written if _is_hydras(o)]
            cfg = hydra_compose("config", overrides=[*given, *user_hydra], return_hydra_config=True)
        except (HydraException, OmegaConfBaseException, ValueError) as exc:
            raise ConfigError(main.hydra_message(exc)) from None
        config_keys.check(cfg, given, "config", user_hydra)
    entry_checks.overrides(cfg, given)
    return cfg, given


def _is_hydras(override: str) -> bool:
    return override.lstrip("+~").startswith("hydra.")


@contextmanager
def _hydra() -> Iterator[None]:
    """Hydra initialized on the packaged configs for the block, whatever state the caller's Hydra is in (an
    API call inside a ``@hydra.main`` app): that state is restored afterwards."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    outer = GlobalHydra.instance().hydra
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
            yield
    finally:
        GlobalHydra.instance().clear()
        if outer is not None:
            GlobalHydra.instance().initialize(outer)


@cache
def _groups() -> frozenset[str]:
    """The config groups (``model``, ``optimizer``, ...): a keyword of that name chooses an option."""
    return frozenset(p.name for p in CONFIGS.iterdir() if p.is_dir() and p.name != "hydra")


def keyword_overrides(keys: Mapping[str, Any], tree: Mapping[str, Any]) -> list[str]:
    """``keys`` as command-line overrides: ``a__b`` and ``a.b`` name ``a.b``; a bare name is the task's key
    where the task (``tree["task"]``: the keys its config files define) has one, else a top-level key or
    config group where one is so named, else the task's (so that an unknown one is reported with the task's
    nearest key); a mapping sets the keys under its name (``trainer={"accelerator": "cpu"}``)."""
    task_keys = tree.get("task") or {}
    out: list[str] = []
    for name, value in keys.items():
        key = name.replace("__", ".")
        if "." not in key and (key in task_keys or (key not in tree and key not in _groups())):
            key = f"task.{key}"
        out.extend(_flat(key, value))
    return out


def _flat(key: str, value: Any) -> Iterator[str]:
    if isinstance(value, Mapping) and value:
        for name, inner in value.items():
            yield from _flat(f"{key}.{name}", inner)
    else:
        yield f"{key}={hydra_value(value)}"


def hydra_value(value: Any) -> str:
    """``value`` written as Hydra's override grammar reads it back (the same type and value): None as null,
    booleans as true/false, a string bare where that reads back as the same string, else quoted."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {hydra_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    text = str(value.__fspath__()) if isinstance(value, PathLike) else value
    if not isinstance(text, str):
        raise ConfigError(
            f"{value!r} ({type(value).__name__}) is no config value; give a number, text, path, list or dict"
        )
    return text if _reads_back(text) else _quoted(text)


def _reads_back(text: str) -> bool:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        return OverridesParser.create().parse_override(f"k={text}").value() == text
    except HydraException:
        return False


def _quoted(text: str) -> str:
    """``text`` in single quotes as Hydra reads them: a quote escaped, and backslashes before a quote or the
    closing quote doubled (elsewhere Hydra keeps a backslash as it is)."""
    out, run = [], 0
    for char in text:
        if char == "\\":
            run += 1
            continue
        out.append("\\" * (run * 2 if char == "'" else run) + ("\\'" if char == "'" else char))
        run = 0
    return "'" + "".join(out) + "\\" * (run * 2) + "'"


# The run: its directory, the door, its result.


def _run_dir(cfg: DictConfig, run_dir: RunDir) -> Path:
    """The run's directory, refused in one line as the command line's (rundir.py) refuses it."""
    from transferlab import rundir

    if run_dir is None:
        return Path(tempfile.mkdtemp(prefix="transferlab-"))
    key = "run_dir"
    if isinstance(run_dir, _CommandLineDefault):
        run_dir, key = str(cfg.hydra.run.dir), "hydra.run.dir"
    directory = Path(run_dir).expanduser().absolute()  # as Hydra gives a run its runtime.output_dir
    # refusal's words for hydra.run.dir (continue a run with a ckpt_path inside it) hold for run_dir too
    taken = rundir.refusal(directory, cfg.get("ckpt_path"), "hydra.run.dir")
    for message in (rundir.unusable(directory, key), taken and taken.replace("hydra.run.dir", key)):
        if message:
            raise ConfigError(message)
    full = rundir.no_space(directory, key)
    if full:
        raise TransferLabError(full)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _record_config(cfg: DictConfig, overrides: list[str], directory: Path) -> None:
    """``.hydra/config.yaml`` and ``overrides.yaml``, as Hydra writes them for a command-line run (a resumed
    run's error messages point at overrides.yaml)."""
    from omegaconf import OmegaConf

    from transferlab.files import atomic_write

    for name, value in (("config.yaml", cfg), ("overrides.yaml", OmegaConf.create(overrides))):
        with atomic_write(directory / ".hydra" / name, "w") as f:
            f.write(OmegaConf.to_yaml(value))


def _run_task(cfg: DictConfig, directory: Path, overrides: list[str]) -> None:
    """``main.run_task``, its input errors raised as the entry words them and left in error.txt; the process
    settings the entry applies for a run (warning filters, Lightning's log level) restored afterwards."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, MissingMandatoryValue

    from transferlab import console, entry_checks, main

    levels = {name: logging.getLogger(name).level for name in console.LIGHTNING_LOGGERS}
    try:
        with warnings.catch_warnings():
            try:
                main.run_task(cfg, directory, overrides)
            except MissingMandatoryValue:
                raise ConfigError(main.missing_message(cfg)) from None
            except (ConfigAttributeError, ConfigKeyError) as exc:
                message = entry_checks.deleted_key(exc, overrides)
                if message is None:
                    raise
                raise ConfigError(message) from None
            except OSError as exc:
                if exc.errno != errno.ENAMETOOLONG:
                    raise
                raise ConfigError(main.too_long(exc)) from None
            except SystemExit as exc:
                # Lightning answers Ctrl-C inside fit with exit(1); a notebook wants the KeyboardInterrupt back.
                if isinstance(exc.__context__, KeyboardInterrupt):
                    raise exc.__context__ from None
                raise
    except BaseException as exc:
        _keep_error(exc, directory)
        raise
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    (directory / main.ERROR_FILE).unlink(missing_ok=True)  # a finished run that resumed a failed one


def _keep_error(exc: BaseException, directory: Path) -> None:
    from transferlab import main

    if isinstance(exc, TransferLabError):
        main.keep_error(directory, str(exc), None)
    elif isinstance(exc, KeyboardInterrupt):
        main.keep_error(directory, main.interrupted_message(directory), None)
    elif isinstance(exc, Exception):  # a bug: its traceback, as the entry keeps it
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        main.keep_error(directory, f"{type(exc).__name__}: {first}", "".join(traceback.format_exception(exc)))


def _result(task: str, directory: Path, keep: bool) -> Run:
    """The run as its directory records it (metrics.json, result.json), images loaded into memory."""
    from transferlab import images, result

    index = result.read_index(directory) or {"objective": None, "images": [], "caption": []}
    metrics = json.loads((directory / result.METRICS_FILE).read_text())
    return Run(
        task=task,
        run_dir=directory if keep else None,
        metrics=metrics,
        objective=index["objective"],
        images=tuple(images.open_rgb(p) for p in index["images"]),
        caption=tuple(index["caption"]),
    )
