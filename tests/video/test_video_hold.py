"""Crafted and careless inputs to the video task (issue 32): bombs, FIFOs, frames that change size,
rotation, frame order, bad keys, memory and disk beyond what there is, resume, a full disk, signals."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from tests.helpers import ROOT, assert_quiet, compose_cfg, make_image, run_cli
from tests.video.conftest import pan_frames, textured, variable_size_clip, write_clip
from tests.video.test_video_task import SHALLOW, video_cfg
from transferlab import images
from transferlab.errors import ConfigError, VideoError
from transferlab.main import run_task
from transferlab.video import io
from transferlab.video.settings import VideoSettings


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_a_declared_frame_size_beyond_the_limit_is_refused_before_decoding(tmp_path: Path) -> None:
    """A 1 KB YUV4MPEG file whose header declares 16000x16000 frames (1 GB as 8-bit RGB, 3 GB as floats)."""
    bomb = tmp_path / "bomb.y4m"
    bomb.write_bytes(b"YUV4MPEG2 W16000 H16000 F10:1 Ip A1:1 C420jpeg\nFRAME\n" + bytes(1000))
    with pytest.raises(VideoError) as err:
        io.probe(bomb)
    assert "16000x16000" in one_line(err) and "too large to decode safely" in str(err.value)


def test_frames_that_grow_past_the_limit_midstream_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clip = variable_size_clip(tmp_path / "grows.ts", pan_frames(n=6, h=32, w=40), pan_frames(n=2, h=96, w=128))
    # 40x32 passes (H.264's decoder counts its padded 64x48), 128x96 does not
    monkeypatch.setattr(io, "MAX_FRAME_PIXELS", 4000)
    assert (io.probe(clip).width, io.probe(clip).height) == (40, 32)
    with pytest.raises(VideoError) as err:
        list(io.read_frames(clip))
    assert "4,000 pixels" in one_line(err) and "cannot decode frame" in str(err.value)


def test_frames_of_changing_size_are_resized_to_the_first(tmp_path: Path, tiny_network: Path) -> None:
    """OpenCV's flow needs two frames of one size (``I0.sameSize(I1)``): each frame takes the first's."""
    clip = variable_size_clip(tmp_path / "changes.ts", pan_frames(n=2), pan_frames(n=2, h=32, w=40))
    assert [tuple(f.shape) for f in io.read_frames(clip, (48, 64))] == [(3, 48, 64)] * 4
    out = tmp_path / "run"
    run_task(video_cfg(clip, None, "task.method=fast", f"task.network={tiny_network}"), out)
    info = io.probe(out / "stylized.mp4")
    assert (info.width, info.height) == (64, 48) and sum(1 for _ in io.read_frames(out / "stylized.mp4")) == 4
    folder = tmp_path / "mixed"
    for i, size in enumerate([(64, 48), (40, 32), (64, 48)]):
        make_image(folder / f"{i}.png", size, seed=i)
    out = tmp_path / "run_folder"
    run_task(video_cfg(folder, None, "task.method=fast", f"task.network={tiny_network}"), out)
    assert json.loads((out / "metrics.json").read_text())["frames"] == 3


def test_a_fifo_as_input_is_refused_instead_of_hanging(tmp_path: Path, style_image: Path) -> None:
    fifo = tmp_path / "clip.mp4"
    os.mkfifo(fifo)
    outcome: list[BaseException | None] = []

    def attempt() -> None:
        try:
            run_task(video_cfg(fifo, style_image), tmp_path / "run")
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            outcome.append(exc)

    reader = threading.Thread(target=attempt, daemon=True)
    reader.start()
    reader.join(timeout=30)
    if reader.is_alive():  # the reader blocks opening the FIFO: a writer releases it
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(timeout=10)
        pytest.fail("the video reader hung on a FIFO")
    assert isinstance(outcome[0], VideoError) and "FIFO" in str(outcome[0]) and "\n" not in str(outcome[0])


def test_a_rotated_clip_comes_out_upright(tmp_path: Path, tiny_network: Path) -> None:
    """A phone held upright records landscape frames and a display matrix of -90 degrees (turn clockwise)."""
    frames = [textured(48, 64, seed=t) * 0.5 for t in range(2)]
    for f in frames:
        f[:, :12, :12] = 1.0  # a white corner at the stored top left: upright, it is the top right
    clip = write_clip(tmp_path / "portrait.mp4", frames, rotation=-90)
    info = io.probe(clip)
    assert (info.width, info.height) == (48, 64)
    upright = next(io.read_frames(clip))
    assert upright.shape == (3, 64, 48)
    assert upright[:, 2:10, -10:-2].mean() > 0.9 and upright[:, 2:10, 2:10].mean() < 0.7
    out = tmp_path / "run"
    run_task(video_cfg(clip, None, "task.method=fast", f"task.network={tiny_network}", "task.baseline=false"), out)
    written = io.probe(out / "stylized.mp4")
    assert (written.width, written.height) == (48, 64)


def test_a_frame_folder_is_read_in_the_order_of_its_numbers(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    for i in range(1, 13):  # frame_1 ... frame_12: in string order frame_10 would come second
        images.save_image(torch.full((3, 8, 8), i / 20), folder / f"frame_{i}.png")
    levels = [round(float(f.mean()) * 20) for f in io.read_frames(folder)]
    assert levels == list(range(1, 13))


def test_bad_keys_are_one_line(pan_clip: Path, style_image: Path) -> None:
    for override, key in (
        ("task.long_term=[1,a]", "task.long_term"),
        ("task.long_term=[]", "task.long_term"),
        ("task.long_term=[1,2.5]", "task.long_term"),
        ("task.fps=1e9", "task.fps"),
        ("task.fps=0.001", "task.fps"),
        ("task.memory_check=maybe", "task.memory_check"),
    ):
        with pytest.raises(ConfigError, match=key) as err:
            VideoSettings.from_cfg(video_cfg(pan_clip, style_image, override))
        one_line(err)


@pytest.mark.parametrize("method", ["optimize", "fast"])
def test_a_size_beyond_memory_is_refused_at_the_door(
    method: str, pan_clip: Path, style_image: Path, tiny_network: Path
) -> None:
    extra = ("task.method=fast", f"task.network={tiny_network}") if method == "fast" else ()
    with pytest.raises(ConfigError, match=r"task.size=200000 .* GiB at its peak") as err:
        VideoSettings.from_cfg(video_cfg(pan_clip, style_image, "task.size=200000", *extra))
    one_line(err)
    VideoSettings.from_cfg(video_cfg(pan_clip, style_image, "task.size=200000", "task.memory_check=false", *extra))


def test_long_term_distances_are_counted_in_the_memory_check(tmp_path: Path, style_image: Path) -> None:
    """``long_term=[1,100000]`` holds up to 100000 frames: refused where the video may be that long (an
    MPEG-TS stream does not say how many frames it has); a clip that says it is short holds its length."""
    clip = variable_size_clip(tmp_path / "stream.ts", pan_frames(n=2))
    with pytest.raises(ConfigError, match="holding up to 100000 earlier frames") as err:
        VideoSettings.from_cfg(video_cfg(clip, style_image, "task.size=512", "task.long_term=[1,100000]"))
    one_line(err)
    short = write_clip(tmp_path / "short.mp4", pan_frames(n=2))
    VideoSettings.from_cfg(video_cfg(short, style_image, "task.size=512", "task.long_term=[1,100000]"))


def test_a_run_that_would_fill_the_disk_is_refused_before_its_first_frame(
    small_disk: Path, tmp_path: Path, tiny_network: Path
) -> None:
    clip = write_clip(tmp_path / "long.mp4", [textured(48, 64, seed=t) for t in range(12)])
    free = shutil.disk_usage(small_disk).free
    (small_disk / "filler").write_bytes(bytes(free - 100 * 1024))
    out = small_disk / "run"
    out.mkdir()
    with pytest.raises(VideoError, match="GiB free") as err:
        run_task(video_cfg(clip, None, "task.method=fast", f"task.network={tiny_network}"), out)
    one_line(err)
    assert not list(out.rglob("*.png"))


def test_a_full_disk_while_writing_the_video_leaves_no_partial_file(small_disk: Path) -> None:
    free = shutil.disk_usage(small_disk).free
    (small_disk / "filler").write_bytes(bytes(free - 40 * 1024))
    noise = (torch.rand(3, 96, 128, generator=torch.Generator().manual_seed(t)) for t in range(20))
    with pytest.raises(OSError) as err:
        io.write_video(noise, small_disk / "stylized.mp4", Fraction(10))
    assert err.value.errno == 28 and err.value.filename == str(small_disk / "stylized.mp4")
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]


def test_ctrl_c_while_writing_the_video_leaves_no_temporary_file(tmp_path: Path) -> None:
    def frames():
        for t in range(60):  # enough for the encoder to have written packets (it holds back about 40)
            yield torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(t))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        io.write_video(frames(), tmp_path / "stylized.mp4", Fraction(10))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_sigterm_while_writing_the_video_leaves_no_temporary_file(tmp_path: Path) -> None:
    """SIGTERM raised as the entry raises it (``KeyboardInterrupt`` from its handler, the exit status and line
    are the entry's: tests/e2e/test_signals.py) while the video is written: no partial or temporary file."""
    script = (
        "import os, signal, sys, torch\n"
        "from fractions import Fraction\n"
        "from pathlib import Path\n"
        "from transferlab.video import io\n"
        "def stop(signum, frame):\n"
        "    raise KeyboardInterrupt\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "def frames():\n"
        "    for i in range(5):\n"
        "        if i == 2:\n"
        "            os.kill(os.getpid(), signal.SIGTERM)\n"
        "        yield torch.rand(3, 32, 32)\n"
        "out = Path(sys.argv[1])\n"
        "try:\n"
        "    io.write_video(frames(), out / 'stylized.mp4', Fraction(10))\n"
        "except KeyboardInterrupt:\n"
        "    sys.exit(143)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        env={**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 143, done.stderr
    assert list(tmp_path.iterdir()) == []


def test_ckpt_path_resumes_only_this_runs_progress(tmp_path: Path, pan_clip: Path, style_image: Path) -> None:
    out = tmp_path / "run"
    cfg = video_cfg(pan_clip, style_image, "task.baseline=false", "task.max_frames=2")
    run_task(cfg, out)
    progress = out / "progress.json"
    run_task(video_cfg(pan_clip, style_image, "task.baseline=false", f"ckpt_path={progress}"), out)
    assert json.loads((out / "metrics.json").read_text())["frames"] == 4
    for ckpt, match in (
        (out / "metrics.json", "continues from the progress.json"),
        (tmp_path / "progress.json", "continues from the progress.json"),  # does not exist
    ):
        with pytest.raises(ConfigError, match=match):
            VideoSettings.from_cfg(video_cfg(pan_clip, style_image, f"ckpt_path={ckpt}"))
    with pytest.raises(ConfigError, match="belongs to another input or config"):
        VideoSettings.from_cfg(video_cfg(pan_clip, style_image, "task.steps=5", f"ckpt_path={progress}"))
    progress.write_text("{not json")  # edited by hand: started over, in one piece
    run_task(video_cfg(pan_clip, style_image, "task.baseline=false", "task.max_frames=1"), out)
    assert json.loads(progress.read_text())["done"] == 1
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(VideoError, match="is not the progress.json of this run's directory"):
        run_task(video_cfg(pan_clip, style_image, "task.baseline=false", f"ckpt_path={progress}"), other)


@pytest.mark.slow
def test_the_cli_resumes_a_video_run_in_its_own_directory(tmp_path: Path, pan_clip: Path, style_image: Path) -> None:
    """The README's resume: the occupied-run-dir check lets the run in with its progress.json as ckpt_path."""
    run_dir = tmp_path / "run"
    args = [
        "task=video",
        "model.weights=null",
        *SHALLOW,
        f"task.input={pan_clip}",
        f"task.style={style_image}",
        "task.steps=2",
        "task.first_steps=2",
        "task.baseline=false",
        "trainer.accelerator=cpu",
        f"hydra.run.dir={run_dir}",
    ]
    first = run_cli(*args, "task.max_frames=2", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    refused = run_cli(*args, cwd=tmp_path)
    assert refused.returncode == 2 and "already holds a run" in refused.stderr
    resumed = run_cli(*args, f"ckpt_path={run_dir / 'progress.json'}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert_quiet(resumed, run_dir)
    logged = resumed.stderr + "".join(log.read_text() for log in run_dir.glob("*.log"))
    assert "resuming: 2 frames already finished" in logged
    assert json.loads((run_dir / "metrics.json").read_text())["frames"] == 4


def test_frames_too_thin_for_the_stylizer_are_refused_at_the_door(tmp_path: Path, tiny_network: Path) -> None:
    """Gatys' layers pool four times before relu5_1 (16 px); the fast networks need 8 px."""
    clip = write_clip(tmp_path / "strip.mp4", [textured(8, 160, seed=t) for t in range(2)])
    style = make_image(tmp_path / "style.png", (40, 40))
    gatys = compose_cfg("task=video", "model.weights=null", f"task.input={clip}", f"task.style={style}")
    with pytest.raises(ConfigError, match="below the 16 px that relu5_1 needs") as err:
        VideoSettings.from_cfg(gatys)
    one_line(err)
    thin_style = make_image(tmp_path / "thin_style.png", (400, 8))
    with pytest.raises(ConfigError, match="task.style=.*relu5_1") as err:
        VideoSettings.from_cfg(
            compose_cfg(
                "task=video",
                "model.weights=null",
                f"task.input={tmp_path / 'strip.mp4'}",
                f"task.style={thin_style}",
                "task.size=640",
            )
        )
    strip = write_clip(tmp_path / "strip6.mp4", [textured(6, 160, seed=t) for t in range(2)])
    with pytest.raises(ConfigError, match="8 px that the network needs"):
        VideoSettings.from_cfg(video_cfg(strip, None, "task.method=fast", f"task.network={tiny_network}"))


def test_audio_that_mp4_cannot_hold_is_reencoded(tmp_path: Path) -> None:
    """An AVI's ADPCM sound (old cameras): MP4 has no place for it; the frames stylized so far must not be lost."""
    source = tmp_path / "camera.avi"
    with av.open(str(source), "w") as out:
        video = out.add_stream("libx264", rate=10)
        video.width = video.height = 32
        video.pix_fmt = "yuv420p"
        sound = out.add_stream("adpcm_ms", rate=16000)
        sound.layout = "mono"
        for _ in range(3):
            out.mux(video.encode(av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")))
        out.mux(video.encode())
        n = sound.codec_context.frame_size
        for start in range(0, 4800, n):
            chunk = av.AudioFrame.from_ndarray(np.zeros((1, n), np.int16), format="s16", layout="mono")
            chunk.sample_rate, chunk.pts = 16000, start
            out.mux(sound.encode(chunk))
        out.mux(sound.encode())
    written = tmp_path / "stylized.mp4"
    assert io.write_video(iter(pan_frames(n=3)), written, Fraction(10), source) == 3
    assert io.probe(written).has_audio
