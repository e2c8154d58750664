"""The console's lines (configs/config.yaml's hydra.job_logging): time and level, no process settings, which the
run's log file keeps."""

from __future__ import annotations

import logging

from hydra import compose, initialize_config_dir

from helpers import ROOT
from transferlab import console


def test_process_settings_reach_the_run_log_but_not_the_console(caplog) -> None:
    with caplog.at_level(logging.INFO):
        console.configure(verbose=True)
    (record,) = [r for r in caplog.records if r.message.startswith("process settings:")]
    keep = console.ConsoleFilter()
    assert not keep.filter(record)
    assert keep.filter(logging.LogRecord("x", logging.INFO, "", 0, "stylize done: outputs/x", None, None))


def test_the_console_handler_is_short_and_filtered() -> None:
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        logging_cfg = compose("config", return_hydra_config=True).hydra.job_logging
    assert list(logging_cfg.handlers.console.filters) == ["console"]
    assert logging_cfg.formatters.console.format == "[%(asctime)s][%(levelname)s] - %(message)s"
    assert "filters" not in logging_cfg.handlers.file  # the run's log keeps every line, with its logger
