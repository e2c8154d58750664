"""The video task's door: every check and derived value of ``task=video``, once."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from transferlab import checks, fetch, groups
from transferlab.backbone import ModelSettings
from transferlab.errors import ConfigError
from transferlab.fast.settings import NETWORK_FILE, model_file
from transferlab.groups import LossWeights, OptimizerSettings
from transferlab.runtime import RuntimeSettings
from transferlab.style.settings import LOSS_TERMS, OPTIMIZERS
from transferlab.video.flow import METHODS as FLOW_METHODS

METHODS = ("optimize", "fast")


@dataclass(frozen=True)
class VideoSettings:
    input: Path
    style: Path | None  # method=optimize, or method=fast with an arbitrary-style network
    method: str
    size: int | None  # long side of the processed frames; None: the input's size
    steps: int
    first_steps: int
    temporal_weight: float
    long_term: tuple[int, ...]  # earlier frames held to, by distance (1: the previous frame)
    flow: str
    blend: float
    baseline: bool
    fps: float  # frame rate of a frame folder
    max_frames: int | None
    network: Path | None  # method=fast: any stylizer file (fast/stylizer.py)
    device: str  # cpu | cuda | mps (an ONNX network runs on the CPU)
    model: ModelSettings  # the shared groups (groups.py), as stylize takes them
    content_layers: dict[str, float]
    style_layers: dict[str, float]
    loss: LossWeights
    optimizer: OptimizerSettings
    runtime: RuntimeSettings
    seed: int

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> VideoSettings:
        task = cfg.task
        checks.choice(task.method, METHODS, "task.method")
        checks.choice(task.flow, FLOW_METHODS, "task.flow")
        if task.size is not None:
            checks.at_least(task.size, 32, "task.size")
        checks.at_least(task.steps, 1, "task.steps")
        checks.at_least(task.first_steps, 1, "task.first_steps")
        checks.non_negative(task.temporal_weight, "task.temporal_weight")
        if not 0 <= checks.number(task.blend, "task.blend") < 1:
            raise ConfigError(f"task.blend={task.blend} is invalid; it must be in [0, 1) (0: no smoothing)")
        long_term = tuple(int(j) for j in (task.long_term or [1]))
        if any(j < 1 for j in long_term) or list(long_term) != sorted(set(long_term)):
            raise ConfigError(f"task.long_term={list(long_term)} must be increasing distances >= 1, e.g. [1, 2, 4]")
        checks.positive(task.fps, "task.fps")
        if task.max_frames is not None:
            checks.at_least(task.max_frames, 1, "task.max_frames")
        style = network = None
        if task.method == "optimize":
            if not task.style:
                raise ConfigError("task.method=optimize needs task.style=<a style image: a local path or pinned URL>")
            style = Path(fetch.resolve(str(task.style), "task.style"))
        else:
            if not task.network:
                raise ConfigError(f"task.method=fast needs task.network=<{NETWORK_FILE}>")
            network = model_file(str(task.network), "task.network", (".ckpt", ".onnx"), NETWORK_FILE)
            if task.style:  # an arbitrary-style network's style
                style = Path(fetch.resolve(str(task.style), "task.style"))
        optimizer = groups.optimizer(cfg, OPTIMIZERS)
        device = groups.trainer(cfg, optimizer.name if task.method == "optimize" else None).accelerator
        if network is not None and network.suffix.lower() == ".onnx":
            device = "cpu"
        model = groups.model(cfg)
        layers = groups.layers(cfg, model.arch)
        return cls(
            input=Path(str(task.input)),
            style=style,
            method=task.method,
            size=task.size,
            steps=task.steps,
            first_steps=task.first_steps,
            temporal_weight=float(task.temporal_weight),
            long_term=long_term,
            flow=task.flow,
            blend=float(task.blend),
            baseline=bool(task.baseline),
            fps=float(task.fps),
            max_frames=task.max_frames,
            network=network,
            device=device,
            model=model,
            content_layers=layers.content,
            style_layers=layers.style,
            loss=groups.loss(cfg, LOSS_TERMS),
            optimizer=optimizer,
            runtime=groups.runtime(cfg),
            seed=int(cfg.seed),
        )

    def fingerprint(self) -> dict[str, Any]:
        """What the finished frames belong to: a resumed run must match it (input file by size and mtime)."""
        stat = self.input.stat()
        skip = ("max_frames", "device", "runtime")  # how this process computes, not what
        values = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items() if k not in skip}
        saved = {"settings": repr(sorted(values.items())), "input_size": stat.st_size, "input_mtime": stat.st_mtime}
        return saved | ({"network": fetch.sha256_of(self.network)} if self.network is not None else {})
