"""After a Hydra multirun: one contact sheet of every job's final image, labelled with what varied."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from transferlab import images

log = logging.getLogger(__name__)


def job_dirs(sweep_dir: Path) -> list[Path]:
    jobs = [d for d in sweep_dir.iterdir() if d.is_dir() and d.name.isdigit() and (d / "final.png").is_file()]
    return sorted(jobs, key=lambda d: int(d.name))


def labels(jobs: list[Path]) -> list[list[str]]:
    """Each job's overrides that differ between jobs (all of them if none differ), then its final
    loss and quality metrics (SSIM to the content, Gram distance to the style)."""
    overrides = [list(OmegaConf.load(job / ".hydra" / "overrides.yaml")) for job in jobs]
    varying = {o for o in set().union(*overrides) if sum(o in job for job in overrides) < len(overrides)}
    out = []
    for job, job_overrides in zip(jobs, overrides):
        lines = [o for o in job_overrides if o in varying] or job_overrides
        metrics = job / "metrics.json"
        if metrics.is_file():
            m = json.loads(metrics.read_text())
            lines.append(f"loss {m['loss_total']:.4g}")
            lines.append(f"ssim {m['quality_ssim']:.3f}  style {m['quality_gram_mean']:.3g}")
        out.append(lines)
    return out


def write_contact_sheet(sweep_dir: Path) -> Path | None:
    jobs = job_dirs(sweep_dir)
    if not jobs:
        return None
    tiles = [(images.open_rgb(job / "final.png"), lines) for job, lines in zip(jobs, labels(jobs))]
    return images.save_atomic(images.contact_sheet(tiles), sweep_dir / "contact_sheet.png")


class ContactSheet(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sheet = write_contact_sheet(Path(config.hydra.sweep.dir))
        if sheet:
            log.info("contact sheet: %s", sheet)
