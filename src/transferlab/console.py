"""What a run prints: its own log lines and its last line, not third-party noise.

``verbose=false`` (the default) silences the third-party messages a normal run triggers, each by its own
text so that any other warning still shows, and Lightning's info lines (the GPU/TPU lines, its tips, the
model summary, "`Trainer.fit` stopped"). ``verbose=true`` brings them all back.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

log = logging.getLogger(__name__)

# Warnings every normal run of some task triggers, and why each says nothing to our users.
NOISE = (
    # torch deprecates LeafSpec; Lightning's own pytree code still builds one on every step.
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    # The frozen loss network (VGG) is in eval mode on purpose.
    r".*module\(s\) in eval mode",
    # A short run (a few steps, tests and smoke runs) logs less often than Lightning's default cadence.
    r"The number of training batches \(\d+\) is smaller than the logging interval",
    # Fine-tuning keeps a best and a last checkpoint and validates the best by name.
    r'`\.validate\(ckpt_path="best"\)` is called with Trainer configured with multiple',
)
LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning_fabric")
# ``extra`` of a record for the run's log file only (main.log): the process settings, a record for whoever
# compares runs, were the first two lines of every run's console.
RUN_LOG_ONLY = {"run_log_only": True}


class ConsoleFilter(logging.Filter):
    """The console's filter (configs/config.yaml, hydra.job_logging): leaves out ``RUN_LOG_ONLY`` records."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "run_log_only", False)


def configure(verbose: bool) -> None:
    """Apply ``verbose`` to this process (the entry does it once), and say so in the run's log."""
    if not verbose:
        for pattern in NOISE:
            warnings.filterwarnings("ignore", message=pattern)
        for name in LIGHTNING_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
    log.info("process settings: verbose=%s", verbose, extra=RUN_LOG_ONLY)


def last_line(task: str, output_dir: Path, caption: tuple[str, ...]) -> None:
    """Every run ends on the same line: where its results are, and what they say."""
    log.info("%s done: %s%s", task, output_dir, f" ({'; '.join(caption)})" if caption else "")
