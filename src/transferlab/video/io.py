"""Video in and out through PyAV (FFmpeg bundled, no system FFmpeg): frames are streamed one at a
time, so memory does not grow with the video's length."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import torch
from torch import Tensor

from transferlab import images
from transferlab.errors import ImageError, VideoError


@dataclass(frozen=True)
class VideoInfo:
    """What the output must reproduce: frame rate, size, and whether there is audio to carry over."""

    fps: Fraction
    width: int
    height: int
    frames: int | None  # as the container says (None when it does not say)
    has_audio: bool


def _frame_files(folder: Path) -> list[Path]:
    return images.list_images(folder, recursive=False)  # natural order: frame_2 before frame_10


def probe(path: Path, folder_fps: float = 25.0) -> VideoInfo:
    """Frame rate, size and audio of a video file or a folder of frames; raises ``VideoError`` in one line."""
    path = Path(path)
    if not path.exists():
        raise VideoError(f"{path}: no such video file or frame folder; check task.input")
    if path.is_dir():
        files = _frame_files(path)
        if not files:
            raise VideoError(f"{path}: the folder holds no frames ({', '.join(images.EXTENSIONS)}); check task.input")
        w, h = images.open_rgb(files[0]).size
        return VideoInfo(Fraction(folder_fps).limit_denominator(1001), w, h, len(files), False)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(f"{path}: has no video stream; give a video file or a folder of frames")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or Fraction(25)
            return VideoInfo(
                Fraction(rate), stream.width, stream.height, stream.frames or None, bool(container.streams.audio)
            )
    except av.error.FFmpegError as exc:
        raise VideoError(
            f"{path}: not a readable video ({exc.strerror or exc}); give a video file or a frame folder"
        ) from None


def to_tensor(frame: av.VideoFrame) -> Tensor:
    return torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1).float().div_(255).contiguous()


def read_frames(path: Path) -> Iterator[Tensor]:
    """``[3, H, W]`` frames in [0, 1], one at a time; raises ``VideoError`` on zero frames or a codec
    that cannot be decoded."""
    path = Path(path)
    count = 0
    if path.is_dir():
        for file in _frame_files(path):
            try:
                yield images.load_image(file)
            except ImageError as exc:
                raise VideoError(str(exc)) from None
            count += 1
    else:
        try:
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                for frame in container.decode(stream):
                    yield to_tensor(frame)
                    count += 1
        except av.error.FFmpegError as exc:
            what = "is not a readable video or holds zero frames" if count == 0 else f"cannot decode frame {count}"
            raise VideoError(f"{path}: {what} ({exc.strerror or exc}); re-encode the video (e.g. to H.264)") from None
    if count == 0:
        raise VideoError(f"{path}: holds zero frames; give a video with at least one frame")


def write_video(frames: Iterator[Tensor], path: Path, fps: Fraction, audio_from: Path | None = None) -> int:
    """Encode ``frames`` as H.264 (yuv420p; odd sizes are padded by one pixel) at ``fps`` into ``path``,
    remuxing the audio stream of ``audio_from`` unchanged when it has one. Written to a temporary
    name and renamed, so a killed run leaves no half video. Returns the number of frames."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    count = 0
    with av.open(str(tmp), "w") as out:
        stream = None
        source = av.open(str(audio_from)) if audio_from is not None else None
        try:
            audio_in = source.streams.audio[0] if source is not None and source.streams.audio else None
            audio_out = out.add_stream_from_template(audio_in) if audio_in is not None else None
            for frame in frames:
                if stream is None:
                    h, w = frame.shape[-2:]
                    stream = out.add_stream("libx264", rate=fps)
                    stream.width, stream.height = w + w % 2, h + h % 2
                    stream.pix_fmt = "yuv420p"
                    stream.options = {"crf": "18"}
                if frame.shape[-2:] != (stream.height, stream.width):
                    frame = torch.nn.functional.pad(
                        frame, (0, stream.width - frame.shape[-1], 0, stream.height - frame.shape[-2]), mode="replicate"
                    )
                array = (frame.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).contiguous().numpy()
                out.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
                count += 1
            if stream is None:
                raise VideoError(f"{path}: no frames to write")
            out.mux(stream.encode())
            if audio_out is not None:
                for packet in source.demux(audio_in):
                    if packet.dts is None:
                        continue  # the demuxer's flush packet
                    packet.stream = audio_out
                    out.mux(packet)
        finally:
            if source is not None:
                source.close()
    tmp.replace(path)
    return count
