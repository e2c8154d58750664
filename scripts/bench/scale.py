"""Training throughput at scale (issue 28, item 4), one command:

    python scripts/benchmark_scale.py              # CPU: train_fast on 1 and 2 processes (DDP, gloo), folder vs shards
    python scripts/benchmark_scale.py --gpu        # CUDA: one GPU, fp32 and bf16-mixed, train_fast and train_adain

What it prints, each figure with the machine and its load:
  1. the data loader alone (``fast.data.ContentCrops`` in a DataLoader, as ``StepData`` builds it): images/s
     from a folder of JPEGs and from the same photos packed into shards (``shards.pack``);
  2. the training run itself (``transferlab`` in a child process, as a user runs it): images/s over the steps
     after the first two (each step's TensorBoard wall time: start-up, the first step and the final
     validation are left out), for each number of processes and each data source; the loader must be well
     above it, or it is the bottleneck.
The photos are the shared hymenoptera training photos when this checkout has them (``--photos``), else
generated JPEGs of COCO's size (640 x 480). Random VGG weights: the times do not depend on them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader, Subset

from bench.common import ROOT, SHARED, add_warnings_switch, machine, quiet
from transferlab import images, shards
from transferlab.fast import data


def photos(source: Path, tmp: Path, count: int) -> Path:
    """``source`` when it holds photos, else ``count`` generated 640 x 480 JPEGs in ``tmp``."""
    if source.is_dir() and images.list_images(source):
        return source
    g = torch.Generator().manual_seed(0)
    for i in range(count):
        low = torch.rand(1, 3, 30, 40, generator=g)
        image = (F.interpolate(low, (480, 640), mode="bicubic") + 0.1 * torch.rand(1, 3, 480, 640, generator=g)).clamp(
            0, 1
        )
        images.save_image(image[0], tmp / "photos" / f"{i:04d}.jpg")
    print(f"photos: {count} generated 640 x 480 JPEGs (no {source} here)")
    return tmp / "photos"


def loader_rate(files: list, crop: int, batch: int, workers: int, batches: int) -> float:
    """Images/s of the training loader alone over ``batches`` batches (after the first: workers starting)."""
    crops = data.ContentCrops(files, crop, (batches + 1) * batch, seed=0)
    loader = DataLoader(Subset(crops, range(len(crops))), batch_size=batch, num_workers=workers)
    it = iter(loader)
    next(it)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch / (time.perf_counter() - start)


def training_rate(root: str, processes: int, args: argparse.Namespace, run_dir: Path, extra: list[str]) -> float:
    """Images/s of a ``transferlab`` training run (a child process) between its third and last steps."""
    command = [
        sys.executable,
        str(ROOT / "run.py"),
        f"task={args.task}",
        "model.weights=null",
        f"data.root={root}",
        f"data.crop={args.crop}",
        f"data.val_size={args.crop}",
        "data.val_count=2",
        f"data.batch_size={args.batch}",
        f"data.num_workers={args.workers}",
        f"task.steps={args.steps}",
        f"task.val_every={args.steps}",
        "task.checkpoint_every=0",
        "task.log_every=1",
        f"trainer.devices={processes}",
        f"trainer.strategy={'ddp' if processes > 1 else 'auto'}",
        f"hydra.run.dir={run_dir}",
        *(["task.style=sample:starry_night"] if args.task == "train_fast" else ["task.styles=sample:styles"]),
        *extra,
    ]
    env = (
        os.environ
        | {"PYTHONPATH": str(ROOT / "src")}
        | ({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {})
    )
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    events = EventAccumulator(str(run_dir / "tensorboard")).Reload()
    steps = sorted(events.Scalars("train/loss"), key=lambda e: e.step)[2:]  # after the first steps: warm-up
    return (steps[-1].step - steps[0].step) * args.batch * processes / (steps[-1].wall_time - steps[0].wall_time)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="one CUDA GPU, fp32 and bf16-mixed, larger sizes")
    parser.add_argument("--task", choices=["train_fast", "train_adain"], default=None, help="default: both on --gpu")
    parser.add_argument("--photos", default=str(SHARED / "hymenoptera" / "train"))
    parser.add_argument("--crop", type=int, default=None, help="default: 64 on CPU, 256 on GPU")
    parser.add_argument("--batch", type=int, default=None, help="per process; default: 4 on CPU, 8 on GPU")
    parser.add_argument("--steps", type=int, default=None, help="default: 12 on CPU, 60 on GPU")
    parser.add_argument("--workers", type=int, default=None, help="loader workers; default: 0 on CPU, 8 on GPU")
    parser.add_argument("--shard-samples", type=int, default=64)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per process (default: torch's; Lightning's DDP: cores / processes)",
    )
    add_warnings_switch(parser)
    args = parser.parse_args()
    quiet(args.warnings)
    gpu = args.gpu
    args.crop, args.batch = args.crop or (256 if gpu else 64), args.batch or (8 if gpu else 4)
    args.steps, args.workers = (
        args.steps or (60 if gpu else 12),
        args.workers if args.workers is not None else (8 if gpu else 0),
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {machine()}")
    print(f"crop {args.crop} px, batch {args.batch} per process, {args.steps} steps, {args.workers} loader workers")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = photos(Path(args.photos), tmp, 64)
        manifest = shards.pack(images.list_images(folder), None, tmp / "shards", args.shard_samples, ())
        sources = {"folder": str(folder), "shards": str(manifest)}
        for name, root in sources.items():
            rate = loader_rate(data.list_images(root), args.crop, args.batch, args.workers, 16)
            print(f"loader alone, {name}: {rate:.1f} images/s")
        tasks = [args.task] if args.task else (["train_fast", "train_adain"] if gpu else ["train_fast"])
        runs = (
            [(p, n, []) for p in (1, 2) for n in sources]
            if not gpu
            else [(1, "shards", [f"precision={p}"]) for p in ("32", "bf16-mixed")]
        )
        for task in tasks:
            args.task = task
            for processes, name, extra in runs:
                run_dir = tmp / f"{task}-{processes}-{name}-{len(extra) and extra[0]}"
                rate = training_rate(
                    sources[name], processes, args, run_dir, [f"trainer.accelerator={'cuda' if gpu else 'cpu'}", *extra]
                )
                print(
                    f"{task}, {processes} process{'es' if processes > 1 else ''}, {name} {' '.join(extra)}: {rate:.1f} images/s"
                )
    print(f"load average at the end: {machine().rsplit('load average ', 1)[1]}")
