"""After a Hydra multirun: one contact sheet of every job's final image, labelled with what varied."""

from __future__ import annotations

import json
import logging
import sys
import textwrap
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from transferlab import images

log = logging.getLogger(__name__)


ERROR_FILE = "error.txt"  # what main leaves in a job's directory when the job fails


def job_dirs(sweep_dir: Path) -> list[Path]:
    """The jobs that produced an image or failed (main leaves error.txt), in job order."""
    jobs = [
        d
        for d in sweep_dir.iterdir()
        if d.is_dir() and d.name.isdigit() and ((d / "final.png").is_file() or (d / ERROR_FILE).is_file())
    ]
    return sorted(jobs, key=lambda d: int(d.name))


def failed(job: Path) -> bool:
    return (job / ERROR_FILE).is_file()


def labels(jobs: list[Path]) -> list[list[str]]:
    """Each job's overrides that differ between jobs (all of them if none differ), then its final
    loss and quality metrics (SSIM to the content, Gram distance to the style)."""
    overrides = [list(OmegaConf.load(job / ".hydra" / "overrides.yaml")) for job in jobs]
    varying = {o for o in set().union(*overrides) if sum(o in job for job in overrides) < len(overrides)}
    out = []
    for job, job_overrides in zip(jobs, overrides):
        lines = [o for o in job_overrides if o in varying] or job_overrides
        metrics = job / "metrics.json"
        if failed(job):
            error = (job / ERROR_FILE).read_text().splitlines()[0]
            lines.append("FAILED")
            # The job's own prefix ("job N (overrides): ") is on the tile already.
            lines += textwrap.wrap(error.split("): ", 1)[-1], 40)[:3]
        elif metrics.is_file():
            m = json.loads(metrics.read_text())
            lines.append(f"loss {m['loss_total']:.4g}")
            lines.append(f"ssim {m['quality_ssim']:.3f}  style {m['quality_gram_mean']:.3g}")
        out.append(lines)
    return out


def write_contact_sheet(sweep_dir: Path) -> Path | None:
    jobs = job_dirs(sweep_dir)
    if not jobs:
        return None
    tiles = [
        (FAILED_TILE if failed(job) else images.open_rgb(job / "final.png"), lines)
        for job, lines in zip(jobs, labels(jobs))
    ]
    return images.save_atomic(images.contact_sheet(tiles), sweep_dir / "contact_sheet.png")


FAILED_TILE = Image.new("RGB", (256, 256), (200, 40, 40))


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
