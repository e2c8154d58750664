"""transferlab: configuration-driven transfer-learning experiments with pretrained CNNs.

``import transferlab as tl`` gives the Python API (``transferlab.api``, docs/python_api.md): ``tl.run(task,
**keys)`` and one function per task (``tl.stylize``, ``tl.finetune``, ...), ``tl.load_stylizer(path)``,
``tl.compose``. They are imported on first use, so that importing the package (the command line does) loads
neither torch nor Lightning.
"""

from pathlib import Path

CONFIGS = Path(__file__).resolve().parent / "configs"

__all__ = [
    "CONFIGS",
    "CLI_RUN_DIR",
    "Run",
    "run",
    "compose",
    "load_stylizer",
    "stylize",
    "finetune",
    "predict",
    "export",
    "extract",
    "train_fast",
    "apply_fast",
    "export_fast",
    "train_adain",
    "apply_adain",
    "export_adain",
    "stylize_video",
    "TransferLabError",
    "ConfigError",
]


def __getattr__(name: str):
    if name in ("TransferLabError", "ConfigError"):
        from transferlab import errors

        return getattr(errors, name)
    if name in __all__:
        from transferlab import api

        return getattr(api, name)
    raise AttributeError(f"module 'transferlab' has no attribute {name!r}")
