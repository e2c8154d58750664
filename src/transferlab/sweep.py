"""After a Hydra multirun: one contact sheet of every job's images, labelled with what varied and the
job's caption. Each job's images and caption are those its task named in its result (``result.json``,
written by the entry): one tile per job where each job has one image, else a row per job."""

from __future__ import annotations

import logging
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from transferlab import images, result

log = logging.getLogger(__name__)


ERROR_FILE = "error.txt"  # what main leaves in a job's directory when the job fails


JOB_NAME_CHARS = 60  # the part of a job's directory name after its number


def job_dir_name(num: Any) -> str:
    """A sweep job's directory (``hydra.sweep.subdir``): its number, then each key it sweeps and its value
    as in the job's overrides (``1_loss.style_weight-10000.0_task.lr-0.01``): ``-`` and ``_`` where Hydra's
    own ``override_dirname`` writes ``=`` and ``,``, which a later override naming a file in the job
    (``ckpt_path=...``) cannot hold unquoted; a path value by its file name, other characters as ``-``, at
    most ``JOB_NAME_CHARS`` after the number (``job_dirs`` orders jobs by it). Just the number where
    nothing is swept or outside a Hydra job."""
    try:
        overrides = list(HydraConfig.get().overrides.task)
    except ValueError:
        return str(num)
    swept = result.swept_keys()
    parts = []
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if key in swept:
            parts.append(f"{key}-{Path(value).name or value}")
    name = re.sub(r"[^A-Za-z0-9._+-]", "-", "_".join(parts))[:JOB_NAME_CHARS]
    return f"{num}_{name}" if name else str(num)


def job_number(job: Path) -> int | None:
    """The job's number from its directory's name (``3`` or ``3_task.lr-0.01``), None for another folder."""
    number = job.name.partition("_")[0]
    return int(number) if number.isdigit() else None


def job_images(job: Path) -> list[Path]:
    """The images a job's result names, in its order (none for a job without a result)."""
    index = result.read_index(job)
    return index["images"] if index else []


def job_dirs(sweep_dir: Path) -> list[Path]:
    """The jobs that finished (with a result) or failed (main leaves error.txt), in job order."""
    jobs = [
        d
        for d in sweep_dir.iterdir()
        if d.is_dir()
        and job_number(d) is not None
        and ((d / result.RESULT_FILE).is_file() or (d / ERROR_FILE).is_file())
    ]
    return sorted(jobs, key=job_number)


def failed(job: Path) -> bool:
    return (job / ERROR_FILE).is_file()


def labels(jobs: list[Path]) -> list[list[str]]:
    """Each job's overrides that differ between jobs (all of them if none differ), then its result's caption."""
    overrides = [list(OmegaConf.load(job / ".hydra" / "overrides.yaml")) for job in jobs]
    varying = {o for o in set().union(*overrides) if sum(o in job for job in overrides) < len(overrides)}
    out = []
    for job, job_overrides in zip(jobs, overrides):
        lines = [o for o in job_overrides if o in varying] or job_overrides
        index = result.read_index(job)
        if failed(job):
            error = (job / ERROR_FILE).read_text().splitlines()[0]
            lines.append("FAILED")
            # The job's own prefix ("job N (overrides): ") is on the tile already.
            lines += textwrap.wrap(error.split("): ", 1)[-1], 40)[:3]
        elif index:
            lines += index["caption"]
        out.append(lines)
    return out


def write_contact_sheet(sweep_dir: Path) -> Path | None:
    """contact_sheet.png in ``sweep_dir``: one tile per job if each has one image, else one row per job
    (its caption under its first tile, short rows filled with blank tiles; a result without images is a
    blank tile); None without jobs."""
    jobs = job_dirs(sweep_dir)
    if not jobs:
        return None
    rows = [
        [FAILED_TILE] if failed(job) else [images.open_rgb(p) for p in job_images(job)] or [BLANK_TILE] for job in jobs
    ]
    width = max(map(len, rows))
    tiles = [
        (image, lines if i == 0 else [])
        for row, lines in zip(rows, labels(jobs))
        for i, image in enumerate(row + [BLANK_TILE] * (width - len(row) if width > 1 else 0))
    ]
    sheet = images.contact_sheet(tiles, columns=width if width > 1 else 4)
    return images.save_atomic(sheet, sweep_dir / "contact_sheet.png")


FAILED_TILE = Image.new("RGB", (256, 256), (200, 40, 40))
BLANK_TILE = Image.new("RGB", (256, 256), "white")


class ContactSheet(Callback):
    """Writes the contact sheet when a sweep ends, then exits non-zero if a job failed (each failed job
    printed its error and went on, so that the others ran)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        sheet = write_contact_sheet(sweep_dir) if sweep_dir.is_dir() else None
        if sheet:
            log.info("contact sheet: %s", sheet)
        bad = [job.name for job in job_dirs(sweep_dir) if failed(job)] if sweep_dir.is_dir() else []
        if bad:
            print(
                f"error: {len(bad)} job(s) of the sweep failed: {', '.join(bad)} "
                f"(each has its error.txt in {sweep_dir})",
                file=sys.stderr,
            )
            sys.exit(1)
