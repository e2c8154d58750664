"""What a user sees in the terminal: one tiny run of every task (random weights, 32-64 px, a few steps), each in a
120x40 pseudo-terminal (so that progress bars draw as they do for a user), from a temporary folder holding a tiny
ImageFolder and a frame folder made from the bundled ``sample:`` photos. Each capture is saved as the screen's
text (``<task>.txt``: carriage returns and colours resolved as a terminal would) beside the raw bytes
(``<task>.raw``); the run directories stay under ``OUT/runs`` for TensorBoard.

    python scripts/console_capture.py OUT [TASK ...]
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import re
import shutil
import struct
import sys
import termios
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "src" / "transferlab" / "assets" / "samples"
COLUMNS, ROWS = 120, 40
TINY = ["model.weights=null", "trainer.accelerator=cpu"]
# 32 px training crops; validation at the default size, so that TensorBoard shows its images as a user meets them
PHOTOS = [*TINY, "data.crop=32", "data.val_count=3", "data.batch_size=2", "data.num_workers=0"]


def commands(data: Path, runs: Path) -> dict[str, list[str]]:
    """Each task's command line (after ``python run.py``), in the order that later ones use earlier results."""
    photos, frames, styles = data / "photos", data / "frames", SAMPLES / "styles"
    finetune = runs / "finetune" / "checkpoints" / "best.ckpt"
    fast, adain = runs / "train_fast" / "checkpoints" / "last.ckpt", runs / "train_adain" / "checkpoints" / "last.ckpt"
    tiny_images = ["data.resize_size=36", "data.crop_size=32", "data.batch_size=4", "data.num_workers=0"]
    return {
        "stylize": [
            *TINY,
            "task.content=sample:chelsea",
            "task.style=sample:the_scream",
            "task.size=64",
            "task.steps=8",
        ],
        "finetune": ["task=finetune", "model=resnet18", *TINY, f"data.root={data / 'classes'}", *tiny_images]
        + ["task.epochs=2", "task.misclassified=2"],
        "predict": ["task=predict", f"ckpt_path={finetune}", f"task.input={photos}", "task.num_workers=0"],
        "extract": ["task=extract", f"ckpt_path={finetune}", f"task.input={photos}", "task.num_workers=0"]
        + ["task.layers=[avgpool]"],
        "export": ["task=export", f"ckpt_path={finetune}", "task.formats=[onnx]"],
        "train_fast": ["task=train_fast", *PHOTOS, f"data.root={photos}", "task.style=sample:starry_night"]
        + ["task.steps=4", "task.val_every=2", "task.log_every=1", "task.style_size=64"],
        "apply_fast": ["task=apply_fast", f"ckpt_path={fast}", f"task.input={photos}", "task.size=64"],
        "export_fast": ["task=export_fast", f"ckpt_path={fast}", "task.formats=[onnx]"],
        "train_adain": ["task=train_adain", *PHOTOS, f"data.root={photos}", f"task.styles={styles}"]
        + ["task.steps=4", "task.val_every=2", "task.log_every=1", "task.style_resize=40"],
        "apply_adain": [
            "task=apply_adain",
            f"ckpt_path={adain}",
            f"task.input={photos}",
            "task.style=sample:the_scream",
        ]
        + ["task.size=64", "task.style_size=64"],
        "export_adain": ["task=export_adain", f"ckpt_path={adain}", "task.formats=[onnx]"],
        "video": ["task=video", *TINY, f"task.input={frames}", "task.style=sample:starry_night", "task.size=48"]
        + ["task.steps=3", "task.first_steps=5"],
    }


def make_data(data: Path) -> None:
    """photos/ (the three sample photos at 96 px, each also mirrored and turned upside down: 9 photos),
    classes/{train,val}/{photo name}/ (an ImageFolder of them, rotated copies) and frames/ (six frames of a
    pan across one photo)."""
    (data / "photos").mkdir(parents=True)
    for i, path in enumerate(sorted((SAMPLES / "content").glob("*.jpg"))):
        image = Image.open(path).convert("RGB")
        image.thumbnail((96, 96))
        image.save(data / "photos" / f"{path.stem}.png")
        image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(data / "photos" / f"{path.stem}_mirrored.png")
        image.transpose(Image.Transpose.FLIP_TOP_BOTTOM).save(data / "photos" / f"{path.stem}_upside_down.png")
        for split, count in (("train", 4), ("val", 2)):
            folder = data / "classes" / split / path.stem
            folder.mkdir(parents=True, exist_ok=True)
            for j in range(count):
                image.rotate(7 * j + (split == "val") * 3).save(folder / f"{j}.png")
        if i == 0:
            (data / "frames").mkdir()
            for t in range(6):
                image.crop((2 * t, 0, 2 * t + 64, 48)).save(data / "frames" / f"{t:03d}.png")


def capture(args: list[str], cwd: Path, runs: Path, name: str) -> tuple[bytes, int, float]:
    """``python run.py ARGS`` in a 120x40 pseudo-terminal; its bytes, exit status and seconds."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": str(COLUMNS), "LINES": str(ROWS)}
    argv = [sys.executable, str(ROOT / "run.py"), *args, f"hydra.run.dir={runs / name}"]
    start = time.monotonic()
    pid, fd = pty.fork()
    if pid == 0:  # the child: the run, on the terminal's side
        os.chdir(cwd)
        os.execve(sys.executable, argv, env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    out = bytearray()
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    return bytes(out), os.waitstatus_to_exitcode(status), time.monotonic() - start


def screen(raw: bytes) -> str:
    """The text a terminal keeps of ``raw`` (its scrollback and screen): the cursor moves of progress bars
    (carriage return, line feed, up, erase line) applied, colours dropped, lines wrapped at its width."""
    lines, row, col = [""], 0, 0
    for token in re.split(r"(\x1b\[[0-9;?]*[A-Za-z]|\r|\n)", raw.decode("utf-8", "replace")):
        if token == "\r":
            col = 0
        elif token == "\n":
            row, col = row + 1, 0
            lines += [""] * (row + 1 - len(lines))
        elif token.startswith("\x1b["):
            if token.endswith("A"):  # cursor up N lines
                row = max(0, row - int(token[2:-1] or 1))
            elif token.endswith("K"):  # erase to the end of the line (tqdm clears a bar so)
                lines[row] = lines[row][:col]
        elif token:
            for char in token:
                if col == COLUMNS:  # the terminal wraps
                    row, col = row + 1, 0
                    lines += [""] * (row + 1 - len(lines))
                line = lines[row].ljust(col)
                lines[row] = line[:col] + char + line[col + 1 :]
                col += 1
    return "\n".join(line.rstrip() for line in lines).rstrip() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="a folder for the captures, the runs and their inputs")
    parser.add_argument("tasks", nargs="*", help="only these tasks (default: all, in order)")
    args = parser.parse_args()
    out, wanted = args.out.resolve(), args.tasks
    work = out / "work"
    shutil.rmtree(work, ignore_errors=True)
    make_data(work / "data")
    runs = out / "runs"
    for name, args in commands(work / "data", runs).items():
        if wanted and name not in wanted:
            continue
        shutil.rmtree(runs / name, ignore_errors=True)
        raw, code, seconds = capture(args, work, runs, name)
        (out / f"{name}.raw").write_bytes(raw)
        text = screen(raw)
        (out / f"{name}.txt").write_text(text)
        last = text.rstrip().splitlines()[-1] if text.strip() else ""
        print(f"{name}: exit {code}, {seconds:.0f} s, {len(text.splitlines())} lines; last: {last}", flush=True)


if __name__ == "__main__":
    main()
