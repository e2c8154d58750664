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
from transferlab.files import atomic_write

# The most pixels a frame may declare before it is decoded: Pillow's decompression-bomb limit, which
# images.open_rgb holds every image (and so every frame of a frame folder) to. 8K UHD is 33 million.
MAX_FRAME_PIXELS = 89_478_485


@dataclass(frozen=True)
class VideoInfo:
    """What the output must reproduce: frame rate, size as displayed, and whether there is audio to carry over."""

    fps: Fraction
    width: int
    height: int
    frames: int | None  # as the container says (None when it does not say)
    has_audio: bool


def _frame_files(folder: Path) -> list[Path]:
    return images.list_images(folder, recursive=False)  # natural order: frame_2 before frame_10


def _check_source(path: Path) -> None:
    if not path.exists():
        raise VideoError(f"{path}: no such video file or frame folder; check task.input")
    _check_kind(path)


def _check_kind(path: Path) -> None:
    if path.exists() and not (path.is_file() or path.is_dir()):
        # A FIFO or a device would block the reader or never end.
        raise VideoError(f"{path}: not a regular file or folder (a FIFO, device or socket); give a video file")


def _check_pixels(path: Path, width: int, height: int, what: str) -> None:
    if width * height > MAX_FRAME_PIXELS:
        raise VideoError(
            f"{path}: {what} is {width}x{height}, over {MAX_FRAME_PIXELS:,} pixels, too large to decode safely "
            "(a decompression bomb?); downscale the video first"
        )


def _guarded(stream: av.video.stream.VideoStream) -> av.video.stream.VideoStream:
    """``stream`` with FFmpeg's decoder refusing frames over the limit before it allocates them: a header
    a decoder reads only as it decodes (a JPEG in an MJPEG stream) is checked there."""
    stream.codec_context.options = {"max_pixels": str(MAX_FRAME_PIXELS)}
    return stream


def _quarter_turns(frame: av.VideoFrame) -> int:
    """Counterclockwise quarter turns that show ``frame`` upright (its display matrix; a phone's portrait clip)."""
    return round(frame.rotation / 90) % 4


def probe(path: Path, folder_fps: float = 25.0) -> VideoInfo:
    """Frame rate, displayed size and audio of a video file or a folder of frames; raises ``VideoError``
    in one line. A file's first frame is decoded for its rotation, after its declared size is checked."""
    path = Path(path)
    _check_source(path)
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
            stream = _guarded(container.streams.video[0])
            _check_pixels(path, stream.width, stream.height, "its frame size")
            first = next(container.decode(stream), None)
            if first is None:
                raise VideoError(f"{path}: holds zero frames; give a video with at least one frame")
            _check_pixels(path, first.width, first.height, "its first frame")
            w, h = (first.height, first.width) if _quarter_turns(first) % 2 else (first.width, first.height)
            rate = stream.average_rate or stream.guessed_rate or Fraction(25)
            return VideoInfo(Fraction(rate), w, h, stream.frames or None, bool(container.streams.audio))
    except av.error.FFmpegError as exc:
        raise VideoError(
            f"{path}: not a readable video ({exc.strerror or exc}; frames over {MAX_FRAME_PIXELS:,} pixels are not "
            "decoded); give a video file or a frame folder"
        ) from None


def to_tensor(frame: av.VideoFrame) -> Tensor:
    """``[3, H, W]`` in [0, 1], upright as the frame's display matrix says."""
    image = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1).float().div_(255)
    return torch.rot90(image, _quarter_turns(frame), dims=(1, 2)).contiguous()


def read_frames(path: Path, hw: tuple[int, int] | None = None) -> Iterator[Tensor]:
    """``[3, H, W]`` frames in [0, 1], one at a time, each resized to ``hw = (H, W)`` (None: as they
    are; a stream or folder whose frames change size needs it); raises ``VideoError`` on zero frames,
    a frame too large to decode safely, or a codec that cannot be decoded."""
    path = Path(path)
    _check_kind(path)
    count = 0
    if path.is_dir():
        for file in _frame_files(path):
            try:
                frame = images.load_image(file)
            except ImageError as exc:
                raise VideoError(str(exc)) from None
            yield frame if hw is None else images.resize(frame, hw)
            count += 1
    else:
        try:
            with av.open(str(path)) as container:
                stream = _guarded(container.streams.video[0])
                stream.thread_type = "AUTO"
                for frame in container.decode(stream):
                    _check_pixels(path, frame.width, frame.height, f"frame {count}")
                    image = to_tensor(frame)
                    yield image if hw is None else images.resize(image, hw)
                    count += 1
        except av.error.FFmpegError as exc:
            what = "is not a readable video or holds zero frames" if count == 0 else f"cannot decode frame {count}"
            raise VideoError(
                f"{path}: {what} ({exc.strerror or exc}; frames over {MAX_FRAME_PIXELS:,} pixels are not decoded); "
                "re-encode the video (e.g. to H.264)"
            ) from None
    if count == 0:
        raise VideoError(f"{path}: holds zero frames; give a video with at least one frame")


def write_video(frames: Iterator[Tensor], path: Path, fps: Fraction, audio_from: Path | None = None) -> int:
    """Encode ``frames`` as H.264 (yuv420p; odd sizes are padded by one pixel) at ``fps`` into the MP4
    ``path``, remuxing the audio stream of ``audio_from`` unchanged when it has one. Written atomically
    (``files.atomic_write``): a full disk, a crash, Ctrl-C or SIGTERM leave no half video and no
    temporary file. Returns the number of frames."""
    path = Path(path)
    try:
        with atomic_write(path) as f, av.open(f, "w", format="mp4") as out:
            return _encode(out, frames, path, fps, audio_from)
    except av.error.PyAVCallbackError as exc:
        # A failed write of the file object (a full disk) reaches here wrapped by PyAV: the entry says
        # what a full disk means only for the OSError itself.
        if isinstance(exc.__context__, OSError):
            raise OSError(exc.__context__.errno, exc.__context__.strerror, str(path)) from None
        raise


def _encode(
    out: av.container.OutputContainer, frames: Iterator[Tensor], path: Path, fps: Fraction, audio_from: Path | None
) -> int:
    source = av.open(str(audio_from)) if audio_from is not None else None
    try:
        audio_in = source.streams.audio[0] if source is not None and source.streams.audio else None
        audio_out, transcode = _audio_stream(out, audio_in) if audio_in is not None else (None, False)
        stream, count = None, 0
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
            _copy_audio(source, audio_in, out, audio_out, transcode)
        return count
    finally:
        if source is not None:
            source.close()


def _audio_stream(
    out: av.container.OutputContainer, audio_in: av.audio.stream.AudioStream
) -> tuple[av.stream.Stream, bool]:
    """The output's audio stream, and whether it is re-encoded: the input's codec as it is where MP4
    holds it, else AAC (an AVI's ADPCM or a MOV's mu-law: MP4 has no place for them)."""
    try:
        return out.add_stream_from_template(audio_in), False
    except ValueError:
        aac = out.add_stream("aac", rate=audio_in.rate)
        aac.layout = (
            f"{audio_in.layout.nb_channels}c"  # the default order: "1 channels" (unordered) leaves AAC unopened
        )
        return aac, True


def _copy_audio(
    source: av.container.InputContainer,
    audio_in: av.audio.stream.AudioStream,
    out: av.container.OutputContainer,
    audio_out: av.stream.Stream,
    transcode: bool,
) -> None:
    if transcode:
        for frame in source.decode(audio_in):
            frame.pts = None  # the encoder numbers its own samples
            out.mux(audio_out.encode(frame))
        out.mux(audio_out.encode())
        return
    for packet in source.demux(audio_in):
        if packet.dts is None:
            continue  # the demuxer's flush packet
        packet.stream = audio_out
        out.mux(packet)
