"""The entry: parse the command line, dispatch a composed config to its task, and turn every way a run
can fail (bad input, a full disk, Ctrl-C, a job of a sweep) into one line and an exit status."""

from __future__ import annotations

import errno
import importlib
import logging
import os
import re
import signal
import sys
import threading
import traceback
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException
from pytorch_lightning.utilities import rank_zero_only
from tqdm.contrib.logging import logging_redirect_tqdm

import transferlab
from transferlab import checks, console, entry_checks, fetch, groups, keys, sweep
from transferlab.errors import TransferLabError
from transferlab.result import TaskResult, record, swept_keys

# Each task is a module with run(cfg, output_dir), imported only when chosen.
TASKS = {
    "stylize": "transferlab.style.task",
    "finetune": "transferlab.classify.finetune",
    "predict": "transferlab.classify.predict",
    "export": "transferlab.classify.export",
    "extract": "transferlab.classify.extract",
    "train_fast": "transferlab.fast.per_style.train",
    "apply_fast": "transferlab.fast.apply",
    "export_fast": "transferlab.fast.export",
    "train_adain": "transferlab.fast.arbitrary.train",
    "apply_adain": "transferlab.fast.arbitrary.apply",
    "export_adain": "transferlab.fast.adain_export",
    "export_web": "transferlab.fast.web",
    "video": "transferlab.video.task",
    "pack": "transferlab.pack",
}

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1  # the machine failed the run (a full disk), not its input
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports a process SIGTERM ended
ERROR_FILE = "error.txt"
DISK_FULL = fetch.DISK_FULL

# In hydra.run.dir and hydra.sweep.dir (configs/config.yaml): with the microseconds, makes default run
# directories unique between processes started at the same moment, on one machine or several.
OmegaConf.register_new_resolver("transferlab_pid", lambda: str(os.getpid()), replace=True)
# hydra.sweep.subdir: a job's directory named by its number and what it sweeps (sweep.job_dir_name).
OmegaConf.register_new_resolver("transferlab_job", sweep.job_dir_name, replace=True)

# Which signal stopped the run ("Ctrl-C" or "SIGTERM"), or None: Lightning turns the KeyboardInterrupt our
# handlers raise into exit(1), and a SIGTERM it receives itself into SystemExit(0).
_interrupted: str | None = None


def run_task(
    cfg: DictConfig, output_dir: Path, overrides: Sequence[str] = (), swept: Collection[str] = ()
) -> float | None:
    """Run ``cfg.task.name`` writing into ``output_dir``. Every task returns a ``TaskResult``: it is
    recorded (metrics.json, result.json, the HParams session led by the user's ``overrides``, the
    ``swept`` keys first) and its objective returned (for sweepers)."""
    name = cfg.task.name
    if name not in TASKS:
        raise TransferLabError(f"task.name={name!r} is unknown; choose one of {', '.join(TASKS)}")
    entry_checks.ckpt_path(cfg.get("ckpt_path"))
    if "fetch" in cfg:
        fetch.configure(*groups.fetch(cfg))
    console.configure(checks.choice(cfg.get("verbose", False), [True, False], "verbose"))
    with logging_redirect_tqdm():  # log lines above the progress bar, not written into it
        outcome = importlib.import_module(TASKS[name]).run(cfg, output_dir)
    if not isinstance(outcome, TaskResult):
        raise ValueError(f"task {name} returned {type(outcome).__name__}, not a TaskResult (transferlab.result)")
    if rank_zero_only.rank == 0:  # under DDP every process has the result; one writes it
        record(outcome, output_dir, overrides, swept)
        console.last_line(name, output_dir, outcome.caption)
    return outcome.objective


def main(cfg: DictConfig) -> Any:
    """The body of ``run.py``: run the task in Hydra's output directory. Bad input exits 2 with one line,
    a full disk 1, Ctrl-C 130; the error is kept in the run directory's error.txt. A job of a sweep that
    fails returns instead, so that the sweep goes on (sweep.ContactSheet reports it at the end)."""
    hydra_cfg = HydraConfig.get()
    output_dir = Path(hydra_cfg.runtime.output_dir)
    overrides = list(hydra_cfg.overrides.task)
    sweeping = hydra_cfg.mode == RunMode.MULTIRUN
    _fail_on_full_disk(logging.getLogger())
    threading.excepthook = _thread_failed
    code, details = EXIT_BAD_INPUT, None
    try:
        keys.check(cfg, overrides, hydra_cfg.job.config_name, hydra_cfg.overrides.hydra)
        entry_checks.overrides(cfg, overrides)
        result = run_task(cfg, output_dir, overrides, swept_keys())
        # A finished run that resumed a failed or stopped one is no failure (a sweep's sheet reads error.txt).
        (output_dir / ERROR_FILE).unlink(missing_ok=True)
        return result
    except MissingMandatoryValue:
        message = missing_message(cfg)
    except (ConfigAttributeError, ConfigKeyError) as exc:
        message = entry_checks.deleted_key(exc, overrides)
        if message is None:
            code, message, details = _unexpected(exc, output_dir, sweeping)
    except TransferLabError as exc:
        message = str(exc)
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:  # a path given in an override: bad input
            message = too_long(exc)
        elif isinstance(exc, PermissionError):  # a path the user gave (an input, hydra.run.dir) they cannot use
            message = f"permission denied: {exc.filename}; fix its permissions, or give a path you can use"
        elif exc.errno not in DISK_FULL:
            code, message, details = _unexpected(exc, output_dir, sweeping)
        else:
            code = EXIT_FAILED
            where = exc.filename or output_dir
            message = (
                f"no space left on device writing {where}; the run stopped (free space there, or write the run "
                f"elsewhere with hydra.run.dir=...)"
            )
    except (KeyboardInterrupt, SystemExit) as exc:
        if not (isinstance(exc, KeyboardInterrupt) or _interrupted):
            raise  # a task's own exit
        how = _interrupted or "Ctrl-C"
        code = EXIT_TERMINATED if how == "SIGTERM" else EXIT_INTERRUPTED
        message = interrupted_message(output_dir, how)
    except Exception as exc:  # noqa: BLE001 - a bug: the traceback goes to error.txt (and the console)
        code, message, details = _unexpected(exc, output_dir, sweeping)
    stopped = code in (EXIT_INTERRUPTED, EXIT_TERMINATED)
    if sweeping and not stopped:
        job = f"job {hydra_cfg.job.num} ({' '.join(overrides)})"
        message = "\n".join(f"{job}: {line}" for line in message.splitlines())
    for line in message.splitlines():  # several input problems found at once: one line each
        print(f"{'interrupted' if stopped else 'error'}: {line}", file=sys.stderr)
    keep_error(output_dir, message, details)
    if sweeping and not stopped:
        return None  # the sweep goes on; ContactSheet marks this job and the sweep exits non-zero
    if details is not None:
        raise SystemExit(EXIT_FAILED)
    sys.exit(code)


def missing_message(cfg: DictConfig) -> str:
    """The one line for the required keys (``???``) of ``cfg`` that nothing set."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    return (
        f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required but not set; "
        f"pass {' '.join(f'{k}=...' for k in missing)} (or pick an experiment=...)"
    )


def too_long(exc: OSError) -> str:
    """The one line for a path longer than the file system allows (ENAMETOOLONG), its name shortened."""
    name = os.path.basename(str(exc.filename or "")) or str(exc.filename)
    shown = name if len(name) <= 60 else f"{name[:30]}...{name[-20:]}"
    return f"{shown} is longer than a file name may be; shorten the override that names it"


def _unexpected(exc: BaseException, output_dir: Path, sweeping: bool) -> tuple[int, str, str]:
    details = "".join(traceback.format_exception(exc))
    if not sweeping:
        sys.stderr.write(details)
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return EXIT_FAILED, f"{type(exc).__name__}: {first} (traceback in {output_dir / ERROR_FILE})", details


def interrupted_message(output_dir: Path, how: str = "Ctrl-C") -> str:
    """Where a run stopped by ``how`` (Ctrl-C, SIGTERM) left its latest image and checkpoint (a video run's
    progress.json: its finished frames), and how to continue it."""
    image = output_dir / "final.png"
    resumable = [*output_dir.glob("checkpoints/*.ckpt"), *output_dir.glob("progress.json")]
    ckpts = sorted(resumable, key=lambda p: p.stat().st_mtime)
    parts = [f"latest image {image}" if image.is_file() else "no image was written yet"]
    if ckpts:
        parts.append(f"latest checkpoint {ckpts[-1]}; continue with ckpt_path={ckpts[-1]} hydra.run.dir={output_dir}")
    return f"{how}: " + "; ".join(parts)


def keep_error(output_dir: Path, message: str, details: str | None) -> None:
    """Leave the error in the run directory (``error.txt``) and no empty files (a run.log or event file
    opened on a full disk) or folders (an output folder made before the input failed, which would make
    rundir refuse the run directory again): never an unexplained directory."""
    from transferlab.files import atomic_write

    try:
        with atomic_write(output_dir / ERROR_FILE, "w") as f:
            f.write(message + "\n" + (f"\n{details}" if details else ""))
    except OSError:
        pass  # the disk is full: the console line is all there is
    for path in sorted(output_dir.rglob("*"), reverse=True):  # a folder's contents before the folder
        try:
            if path.is_symlink():
                continue
            if path.is_file() and path.stat().st_size == 0:
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        except OSError:
            pass


def _fail_on_full_disk(logger: logging.Logger) -> None:
    """A log file on a full disk stops the run (one line at the entry) instead of printing a logging
    traceback for every message and leaving an empty run.log."""
    for handler in logger.handlers:
        if isinstance(handler, logging.FileHandler) and not getattr(handler, "_transferlab", False):
            default = handler.handleError

            def handle_error(record: logging.LogRecord, handler: logging.FileHandler = handler, default=default):
                exc = sys.exc_info()[1]
                if isinstance(exc, OSError) and exc.errno in DISK_FULL:
                    raise OSError(exc.errno, os.strerror(exc.errno), handler.baseFilename) from None
                default(record)

            handler.handleError = handle_error
            handler._transferlab = True


def _thread_failed(args: threading.ExceptHookArgs) -> None:
    """A full disk in a writer's thread (TensorBoard's event writer) is not printed as a traceback: the
    writer raises it again in the run's thread at its next write, which the entry reports in one line."""
    if isinstance(args.exc_value, OSError) and args.exc_value.errno in DISK_FULL:
        return
    threading.__excepthook__(args)


def hydra_message(exc: BaseException) -> str:
    """Hydra's error (and the OmegaConf error under it) in one line, without its advice to append a key
    with ``+`` (keys.check refuses a key no config file defines either way); a key Hydra could not
    override is named with the nearest one its node has."""
    cause = exc.__cause__
    node = getattr(cause, "parent_node", None)
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and isinstance(node, DictConfig) and cause.full_key:
        return keys.message(str(cause.full_key), [str(k) for k in node])
    chosen = re.match(r"Multiple values for (\S+)\. To override a value use 'override \S+: (\S+)'", str(exc))
    if chosen:  # +group=option where the defaults list already picks an option of that group
        group, option = chosen.groups()
        return f"+{group}={option}: the config already chooses a {group}; write {group}={option} (without +)"
    if "Config group override must be a string or a list" in str(exc):  # Hydra's ValueError for group=null
        given = next((a for a in sys.argv[1:] if re.fullmatch(r"[\w/-]+=null", a)), "group=null")
        return f"{given}: a config group takes the name of one of its options, not null (--help lists them)"
    launcher = re.search(r"Could not find 'hydra/launcher/(\w+)'", str(exc))
    if launcher:  # launcher=joblib or submitit_*: its Hydra plugin (and the config it ships) is an extra
        name, hint = launcher.group(1), checks.install("launchers")
        return f"launcher={name} needs its Hydra plugin, which is not installed; {hint}"
    parts = [str(exc), str(exc.__cause__) if isinstance(exc.__cause__, OmegaConfBaseException) else ""]
    lines = [line.strip() for part in parts for line in part.splitlines()]
    lines = lines[: lines.index("Config search path:")] if "Config search path:" in lines else lines
    return " ".join(line for line in lines if line and not line.startswith("To append to your config"))


def _on_signal(signum: int, frame: object) -> None:
    """Ctrl-C and SIGTERM stop the run where it is: the task's cleanup runs, the entry says which stopped it."""
    global _interrupted
    _interrupted = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
    raise KeyboardInterrupt


# A file path, not a package: configs/ is a plain folder shipped as package data.
CONFIGS = str(transferlab.CONFIGS)


@hydra.main(version_base="1.3", config_path=CONFIGS, config_name="config")
def _hydra_main(cfg: DictConfig) -> Any:
    return main(cfg)


def cli() -> None:
    """The ``transferlab`` console command (and ``python run.py`` in a checkout): overrides Hydra's parser
    rejects and Ctrl-C outside a run are one line too."""
    message = entry_checks.parse_errors(sys.argv[1:])
    if message:
        print(f"error: {message}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_signal)
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        # Lightning's own SIGTERM handler (called before this one, inside fit) would end fit quietly.
        signal.signal(signal.SIGTERM, _on_signal)
    # Hydra prints an error of its own (a misspelt key, an unknown option) in several lines and exits 1;
    # told to raise it, it comes here as one line and exit 2. A user who set HYDRA_FULL_ERROR gets the trace.
    full_error = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        _hydra_main()
    except (HydraException, OmegaConfBaseException, ValueError) as exc:  # main() keeps the task's own
        if full_error:
            raise
        print(f"error: {hydra_message(exc)}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    except OSError as exc:  # the task's own are the entry's (main); these come from Hydra's composition
        if full_error or exc.errno != errno.ENAMETOOLONG:
            raise
        print(f"error: {too_long(exc)}", file=sys.stderr)  # Hydra looked for a config file named by an override
        sys.exit(EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        print(f"interrupted: {_interrupted or 'Ctrl-C'}", file=sys.stderr)
        sys.exit(EXIT_TERMINATED if _interrupted == "SIGTERM" else EXIT_INTERRUPTED)
