"""Test helpers: small generated images, Hydra-composed configs, datasets, and real CLI runs in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = Path(__file__).resolve().parents[1]


def make_image(path: Path, size: tuple[int, int] = (48, 40), seed: int = 0, mode: str = "RGB") -> Path:
    """A small image with structure (gradients plus noise), saved in the format of its suffix."""
    g = torch.Generator().manual_seed(seed)
    w, h = size
    y, x = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = torch.stack([x, y, (x + y) / 2]) * 0.7 + 0.3 * torch.rand(3, h, w, generator=g)
    array = (base.clamp(0, 1) * 255).byte().permute(1, 2, 0).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, "RGB").convert(mode).save(path)
    return path


def compose_cfg(*overrides: str) -> DictConfig:
    """The config `python run.py OVERRIDES` would get, composed with Hydra's compose API."""
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=False)


def stylize_cfg(content_path: Path, style_path: Path, *overrides: str, size: int = 32, steps: int = 4) -> DictConfig:
    """A stylize config on local images with random weights, small and short, on the CPU."""
    return compose_cfg(
        "model.weights=null",
        f"task.content={content_path}",
        f"task.style={style_path}",
        f"task.size={size}",
        f"task.steps={steps}",
        "task.image_every=0",
        "trainer.accelerator=cpu",
        *overrides,
    )


def sweep_in_process(sweep_dir: Path, common: list[str], key: str, values: list[str]) -> Path:
    """What ``run.py -m COMMON KEY=V1,V2,...`` does, in this process: a job directory per value with its
    .hydra/overrides.yaml, the task run through the entry (``main.run_task``, the swept key known), then
    the contact sheet the sweep's end writes; returns the sheet's path."""
    from omegaconf import OmegaConf

    from transferlab import main, sweep

    for num, value in enumerate(values):
        job, overrides = sweep_dir / str(num), [*common, f"{key}={value}"]
        (job / ".hydra").mkdir(parents=True)
        OmegaConf.save(OmegaConf.create(overrides), job / ".hydra" / "overrides.yaml")
        main.run_task(compose_cfg(*overrides), job, overrides, {key})
    return sweep.write_contact_sheet(sweep_dir)


def hparams_columns(run_dir: Path) -> list[str]:
    """The HParams session's settings of a run, in the order the task logged them."""
    from omegaconf import OmegaConf

    return list(OmegaConf.load(run_dir / "tensorboard" / "hparams" / "hparams.yaml"))


def hparams_metrics(run_dir: Path) -> list[str]:
    """The HParams session's metrics of a run, in the order TensorBoard's HParams table shows them."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    events = dashboard(run_dir, session=True)
    data = events.PluginTagToContent("hparams")["_hparams_/experiment"]
    return [m.name.tag for m in plugin_data_pb2.HParamsPluginData.FromString(data).experiment.metric_infos]


def dashboard(run_dir: Path, session: bool = False) -> EventAccumulator:
    """A run's TensorBoard events as TensorBoard reads them, every point and image kept: its own, or
    (``session``) its HParams session's."""
    path = run_dir / "tensorboard" / ("hparams" if session else "")
    return EventAccumulator(str(path), size_guidance={"scalars": 0, "images": 0}).Reload()


def board_groups(run_dir: Path) -> tuple[list[str], list[str]]:
    """The groups of a run's scalar tags and of its image tags (both runs: its own and its HParams
    session's), in the order TensorBoard's Time Series tab shows them: by name, the first two expanded."""
    tags = {"scalars": set(), "images": set()}
    for events in (dashboard(run_dir), dashboard(run_dir, session=True)):
        for kind in tags:
            tags[kind] |= {tag.split("/")[0] for tag in events.Tags()[kind]}
    return sorted(tags["scalars"]), sorted(tags["images"])


def check_dashboard(run_dir: Path, first: list[str], single: tuple[str, ...] = ()) -> None:
    """The convention every task's TensorBoard keeps: the scalar groups ``first`` open it (sorted first),
    images after every scalar group, every chart of more than one point (the HParams session's metrics
    add a point to a chart of the run's own); ``single``: groups a tiny run draws once (a validation)."""
    scalars, pictures = board_groups(run_dir)
    assert scalars[: len(first)] == first, scalars
    assert not pictures or max(scalars) < min(pictures), (scalars, pictures)
    events = dashboard(run_dir)
    for tag in events.Tags()["scalars"]:
        assert len(events.Scalars(tag)) > 1 or tag.startswith(single), f"{tag}: a chart of a single point"
    assert set(dashboard(run_dir, session=True).Tags()["scalars"]) <= set(events.Tags()["scalars"])


def run_cli(
    *args: str, cwd: Path, timeout: int = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`python run.py ARGS` in a subprocess, importing this checkout's sources, never the network."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# What a normal run must not print (transferlab.console): third-party warnings, Lightning's tips, summary, info.
NOISE = ("Warning", "warn(", "deprecated", "Tip:", "Trainable params", "GPU available", "`Trainer.fit` stopped")


def assert_quiet(result: subprocess.CompletedProcess, run_dir: Path) -> None:
    """A normal run prints no third-party noise, and its last log line says where its results are."""
    printed = result.stdout + result.stderr
    assert not [n for n in NOISE if n in printed], printed[-3000:]
    logged = [line for line in result.stdout.splitlines() if "][INFO] - " in line]
    assert f"done: {run_dir}" in logged[-1], logged[-3:]


def apply_outputs(run_dir: Path) -> dict[str, str]:
    """An apply run's outputs by source image (its apply.json), each checked to keep its source's size."""
    from transferlab import images

    outputs = json.loads((run_dir / "apply.json").read_text())["outputs"]
    for source, target in outputs.items():
        assert images.open_rgb(target).size == images.open_rgb(source).size
    return outputs


def _default_sigint() -> None:
    # A suite started in the background (`cmd &` in a script) inherits SIGINT ignored, and so would the
    # child: Python installs its Ctrl-C handler only where SIGINT is at its default.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_cli(*args: str, cwd: Path) -> subprocess.Popen:
    """`python run.py ARGS` started in a subprocess on one CPU thread, its stderr piped as text, with
    SIGINT at its default (as a terminal's foreground process has it)."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), *args],
        cwd=cwd,
        preexec_fn=_default_sigint,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def interrupt_cli(*args: str, cwd: Path, ready: Callable[[], bool], sig: int) -> tuple[int, str]:
    """`python run.py ARGS` (``start_cli``) sent ``sig`` once ``ready()`` holds (or it ended, or 120 s
    passed): its exit code and stderr."""
    process = start_cli(*args, cwd=cwd)
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None and not ready():
        time.sleep(0.01)  # short: a stage such as an int8 export lasts a fraction of a second
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=120)
    return process.returncode, stderr


def logged(run_dir: Path, tag: bytes) -> bool:
    """Whether the run's TensorBoard event files hold ``tag`` (it has trained and logged)."""
    return any(tag in p.read_bytes() for p in run_dir.glob("tensorboard/events*"))


CLASSES = ("ants", "bees")
# ResNet-18 (45 MB checkpoints against VGG16's 537 MB): the task's mechanics are the same for every
# network; VGG's own naming is tested where it matters (tests/classify/test_networks.py, extract).
FAST = [
    "task=finetune",
    "model=resnet18",
    "model.weights=null",
    "data.resize_size=36",
    "data.crop_size=32",
    "data.batch_size=4",
    "data.num_workers=0",
    "trainer.accelerator=cpu",
    "task.freeze=layer3",  # layer4 and the head train: both learning-rate groups are used
    "scheduler=step",  # cosine's T_max follows task.epochs, which a resume test changes
    "task.epochs=2",
    "task.misclassified=2",
]


def make_dataset(root: Path, counts: dict[str, int], classes: tuple[str, ...] = CLASSES) -> Path:
    """root/<split>/<class>/<i>.png, each class with its own colour cast so that it can be learned."""
    for split, n in counts.items():
        for c, name in enumerate(classes):
            for i in range(n):
                path = make_image(root / split / name / f"{i}.png", seed=1000 * c + 10 * i + len(split))
                if c:
                    Image.open(path).point(lambda v: min(255, v + 60)).save(path)
    return root


def resnet18_classifier(weights: str | None = None):
    """A two-class ResNet-18 ``Classifier`` frozen through layer3, for 32 px crops (seeded)."""
    from transferlab import backbone
    from transferlab.classify import module, networks

    torch.manual_seed(1)
    network, norm = networks.build("resnet18", weights, "auto", 2, None)
    return module.Classifier(
        network,
        "resnet18",
        ["a", "b"],
        {"mean": list(norm.mean), "std": list(norm.std), "bgr": False},
        {"resize": 36, "crop": 32},
        freeze="layer3",
        dropout=None,
        weights=backbone.weights_source("resnet18", weights),
    )


# The photo data of a training task at test size, offline: random VGG weights, 32 px crops, batch 2.
TINY_DATA = [
    "model.weights=null",
    "trainer.accelerator=cpu",
    "data.crop=32",
    "data.val_size=32",
    "data.val_count=2",
    "data.batch_size=2",
    "data.num_workers=0",
]
# train_adain at test size: 2 steps, a checkpoint per step.
ADAIN_TINY = [
    "task=train_adain",
    *TINY_DATA,
    "task.style_resize=40",
    "task.val_every=2",
    "task.log_every=1",
    "task.steps=2",
    "task.checkpoint_every=1",
    "task.preview_styles=2",
    "task.preview_size=24",
]

# train_adain's light network (task.encoder=light) at a test width.
ADAIN_LIGHT = ("task.encoder=light", "task.width=0.25")


def adain_train_cfg(photos: Path, styles: Path, *overrides: str) -> DictConfig:
    return compose_cfg(*ADAIN_TINY, f"data.root={photos}", f"task.styles={styles}", *overrides)


def lively(state: dict, seed: int = 0) -> dict:
    """Conv weights that keep the activations' scale (He init, no bias), the decoder's last layer scaled
    down around its 0.5 bias: with PyTorch's default init, random VGG19 features at relu4_1 are ~1e-7
    apart and every image-level comparison would pass whatever the code did."""
    g = torch.Generator().manual_seed(seed)
    out = dict(state)
    convs = [k for k, v in state.items() if k.endswith(".weight") and v.dim() == 4]
    for k in convs:
        w = state[k]
        out[k] = torch.randn(w.shape, generator=g) * (2 / w[0].numel()) ** 0.5 * (0.05 if k == convs[-1] else 1)
        bias = k[: -len("weight")] + "bias"
        if bias in state and k != convs[-1]:
            out[bias] = torch.zeros_like(state[bias])
    return out


@contextmanager
def tmpfs(mount: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (mount's -o size=, e.g. 600k) mounted at ``mount``: a real full disk, not an
    OSError-raising fake. Unmounted afterwards; the test is skipped where mounting is not allowed (not root)."""
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def tile_mean(grid: torch.Tensor, row: int, col: int, side: int) -> float:
    """The mean of one tile of a make_grid image (tiles ``side`` px square, 2 px padding), to 4 places."""
    step = side + 2
    return round(float(grid[:, 2 + step * row : step * (row + 1), 2 + step * col : step * (col + 1)].mean()), 4)
