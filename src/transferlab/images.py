"""Load, validate, resize and save images: the only module that touches PIL.

Images leave this module as RGB float tensors ``[3, H, W]`` in [0, 1], in their displayed
orientation, whatever the file's mode (grayscale, palette, alpha, CMYK, 16-bit) or format.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError
from torch import Tensor
from torchvision.transforms.functional import pil_to_tensor, to_pil_image

from transferlab.errors import ImageError
from transferlab.files import atomic_write, not_a_file

# The image files every task reads from a folder (open_rgb decodes them all; of a GIF, its first frame).
EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")


def is_image_name(path: str | Path) -> bool:
    return Path(path).suffix.lower() in EXTENSIONS


def natural_key(path: str | Path) -> list[str | int]:
    """Sort key that orders the numbers in names by value: ``frame_2`` before ``frame_10``."""
    return [int(t) if i % 2 else t for i, t in enumerate(re.split(r"(\d+)", str(path)))]


def files_under(root: str | Path, recursive: bool = True) -> list[Path]:
    """Every file in the folder ``root`` (and its subfolders when ``recursive``), hidden names left out,
    in natural order. Symlinks are followed, each folder once (by device and inode): a link loop or a
    second link to a folder adds nothing, and a dangling link is no file."""
    seen: set[tuple[int, int]] = set()
    found: list[Path] = []
    pending = [Path(root)]
    while pending:
        folder = pending.pop()
        stat = folder.stat()
        if (stat.st_dev, stat.st_ino) in seen:
            continue
        seen.add((stat.st_dev, stat.st_ino))
        try:
            entries = list(os.scandir(folder))
        except PermissionError:
            continue  # an unreadable folder holds nothing we can read (as os.walk and rglob skip it)
        for entry in entries:
            if entry.name.startswith("."):
                continue  # .DS_Store, editor swap files, our own temporary files
            try:
                is_dir, is_file = entry.is_dir(), entry.is_file()
            except OSError:
                continue  # a link to itself (ELOOP): nothing there
            if is_dir and recursive:
                pending.append(Path(entry.path))
            elif is_file:
                found.append(Path(entry.path))
    return sorted(found, key=lambda p: natural_key(p.relative_to(root)))


def list_images(root: str | Path, recursive: bool = True) -> list[Path]:
    """The image files (``EXTENSIONS``) of ``files_under(root, recursive)``, in natural order."""
    return [p for p in files_under(root, recursive) if is_image_name(p)]


def listing_digest(files: list[Path], root: str | Path) -> str:
    """sha256 of the names (relative to ``root``) and sizes of ``files``: which images a run read, cheaply
    (a resume fingerprint; the folder may move)."""
    lines = "".join(f"{p.relative_to(root).as_posix()}\t{p.stat().st_size}\n" for p in files)
    return hashlib.sha256(lines.encode()).hexdigest()


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # Pillow's convert("RGB") clips 16/32-bit values at 255; rescale to 8 bits first.
        top = 65535 if image.mode.startswith("I;16") else max(image.getextrema()[1], 1)
        image = image.point(lambda v: v * (255 / top)).convert("L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels carry arbitrary colours; show them on white, as a viewer does.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


# Where a missing input image can come from instead; the example experiments name images that work anywhere.
INPUT_HINT = (
    "give a local image file (a relative path starts where you run the command) or a pinned URL "
    "(https://...#sha256=<hex>), or run an example: experiment=vangogh"
)


def check_input(path: str | Path, key: str) -> Path:
    """``path`` (the value of ``key``) is a file whose header Pillow reads as an image: the cheap check a
    door runs on every input image before any work (``open_rgb`` decodes it later)."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"image {path} {not_a_file(path)} ({key}); {INPUT_HINT}")
    if path.stat().st_size == 0:  # a failed download or copy: say so rather than "not an image format"
        raise ImageError(f"image {path} is empty (0 bytes) ({key}); replace it with a real image")
    try:
        with bombs_refused(path, key), Image.open(path):
            pass  # the header only: its declared size is checked, nothing is decoded
    except PermissionError:
        raise ImageError(f"image {path} cannot be read: permission denied ({key}); fix its permissions") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise ImageError(f"image {path} is not an image format Pillow can read ({key}); {INPUT_HINT}") from None
    return path


def check_source(source: Any, key: str, folder: bool = False) -> None:
    """A door's check of ``key``'s input given as a local path, a bundled ``sample:<name>`` or a pinned URL: a
    local one must be an image file (or, with ``folder``, a folder); a URL or a ``dataset:`` (where a folder
    may be given) is the task's to fetch and check (fetching is work)."""
    from transferlab import fetch

    text = str(source)
    if fetch.is_url(text) or (folder and text.startswith("dataset:")):
        return
    if not (folder and fetch.resolve(text, key).is_dir()):  # a local path or a bundled sample: no download
        input_file(text, key)


def input_file(source: Any, key: str) -> Path:
    """``key``'s image file: a local path, a bundled ``sample:<name>`` or a pinned URL (fetched once into the
    cache), checked to be an image; a ``dataset:`` (a folder) is refused before anything is fetched."""
    from transferlab import fetch

    if source is None or isinstance(source, Mapping) or (isinstance(source, Sequence) and not isinstance(source, str)):
        raise ImageError(f"{key}={source!r} is not a path; give one image file (a local path, a pinned URL or sample:)")
    text = str(source)
    if text.startswith("dataset:"):
        raise ImageError(
            f"{key}={text} is a dataset, a folder of images; give one image file (a local path, a pinned URL or "
            "sample:<name>)"
        )
    return check_input(fetch.resolve(text, key), key)


@contextmanager
def bombs_refused(path: Path, key: str = "") -> Iterator[None]:
    """Inside: opening ``path`` with a declared size over Pillow's limit is one ImageError (naming ``key``),
    not Pillow's warning (between its limit and twice it) or its exception (beyond)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise ImageError(
            f"image {path} is too large to decode safely (over {Image.MAX_IMAGE_PIXELS:,} pixels, "
            f"Pillow's decompression-bomb limit){f' ({key})' if key else ''}; downscale it first"
        ) from None


def open_rgb(path: str | Path) -> Image.Image:
    """Decode ``path`` fully into an RGB PIL image, or raise one ImageError that says why not."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"image {path} {not_a_file(path)}; check the path")
    if path.stat().st_size == 0:
        raise ImageError(f"image {path} is empty (0 bytes); replace it with a real image")
    try:
        return _decode(path, path)
    except PermissionError:
        raise ImageError(f"image {path} cannot be read: permission denied; fix its permissions") from None


def decode_rgb(data: bytes, name: str) -> Image.Image:
    """The image file held in ``data`` (a shard's sample ``name``) as ``open_rgb`` reads a file."""
    if not data:
        raise ImageError(f"image {name} is empty (0 bytes); pack the dataset again")
    return _decode(io.BytesIO(data), Path(name))


def _decode(source: Path | io.BytesIO, path: Path) -> Image.Image:
    """Decode ``source`` (named ``path`` in messages) fully into RGB, or raise one ImageError that says why not."""
    try:
        with bombs_refused(path), Image.open(source) as image:
            image.seek(0)  # first frame of an animated GIF/WebP
            image = ImageOps.exif_transpose(image)
            image.load()
            return _to_rgb(image)
    except UnidentifiedImageError:
        hint = " (SVG is vector art: render it to PNG first)" if path.suffix.lower() == ".svg" else ""
        raise ImageError(f"image {path} is not an image format Pillow can read{hint}") from None
    except PermissionError:
        raise
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"image {path} is damaged or truncated ({exc}); replace the file") from None


def to_tensor(image: Image.Image) -> Tensor:
    return pil_to_tensor(image).float().div_(255).contiguous()  # PIL gives an HWC view


def from_pil(image: Image.Image) -> Tensor:
    """``[3, H, W]`` float RGB in [0, 1] of an image in memory, any mode converted as ``open_rgb`` converts a file's."""
    return to_tensor(_to_rgb(image))


def load_image(path: str | Path, size: int | None = None) -> Tensor:
    """``[3, H, W]`` float RGB in [0, 1]; with ``size``, resized so that its long side is ``size``."""
    image = to_tensor(open_rgb(path))
    return image if size is None else resize_long_side(image, size)


def load_map(path: str | Path) -> Tensor:
    """A grayscale control map (mask, strength map) ``[1, H, W]`` in [0, 1]: the mean of its RGB channels."""
    return load_image(path).mean(dim=0, keepdim=True)


def resize_long_side(image: Tensor, size: int) -> Tensor:
    h, w = image.shape[-2:]
    scale = size / max(h, w)
    return resize(image, (max(1, round(h * scale)), max(1, round(w * scale))))


def resize(image: Tensor, hw: tuple[int, int]) -> Tensor:
    """Antialiased bicubic resize of a ``[C, H, W]`` or ``[B, C, H, W]`` tensor, clamped to [0, 1]."""
    if tuple(image.shape[-2:]) == tuple(hw):
        return image
    batch = image if image.dim() == 4 else image.unsqueeze(0)
    out = F.interpolate(batch, size=hw, mode="bicubic", antialias=True, align_corners=False).clamp_(0, 1)
    return out if image.dim() == 4 else out.squeeze(0)


def to_pil(image: Tensor) -> Image.Image:
    return to_pil_image(image.detach().float().clamp(0, 1).cpu())


def save_atomic(image: Image.Image, path: str | Path) -> Path:
    """Write ``image`` atomically; the format follows the suffix."""
    with atomic_write(path) as f:
        image.save(f, format=Image.registered_extensions()[Path(path).suffix.lower()])
    return Path(path)


def save_image(image: Tensor, path: str | Path) -> Path:
    """Save a ``[3, H, W]`` [0, 1] tensor atomically; the format follows the suffix."""
    return save_atomic(to_pil(image), path)


def label_font(tile: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled TrueType font (Aileron) at a size that scales with the tile: about 17 px
    text at 256 px tiles, never below 11 px, so dots and digits stay readable at any tile size."""
    return ImageFont.load_default(size=max(11, round(tile / 15)))


def contact_sheet(tiles: list[tuple[Image.Image, list[str]]], tile: int = 256, columns: int = 4) -> Image.Image:
    """A grid of images, each fitted into a ``tile`` square with its caption lines below it."""
    font = label_font(tile)
    size = getattr(font, "size", 11)
    line_height = round(size * 1.25)
    caption_lines = max((len(lines) for _, lines in tiles), default=0)
    cell_w, cell_h = tile, tile + line_height * caption_lines + line_height // 2
    columns = max(1, min(columns, len(tiles)))
    rows = (len(tiles) + columns - 1) // columns
    sheet = Image.new("RGB", (cell_w * columns, cell_h * rows), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (image, lines) in enumerate(tiles):
        x, y = (i % columns) * cell_w, (i // columns) * cell_h
        thumb = ImageOps.contain(image, (tile, tile))
        sheet.paste(thumb, (x + (tile - thumb.width) // 2, y + (tile - thumb.height) // 2))
        for j, line in enumerate(lines):
            draw.text((x + 3, y + tile + 2 + j * line_height), line, fill="black", font=font)
    return sheet


def fits_in(image: Tensor, size: int) -> Tensor:
    """Downscale (never upscale) so that the long side is at most ``size``; for previews."""
    return image if max(image.shape[-2:]) <= size else resize_long_side(image, size)


def shaded_table(
    values: list[list[str]],
    shades: list[list[float]],
    rows: list[str],
    columns: list[str],
    title: str,
    font_size: int = 16,
) -> Image.Image:
    """A table of ``values`` with row and column labels, each cell shaded blue by its ``shades`` entry
    in [0, 1] (white text on the darker half), in the bundled font, readable at full size."""
    font = ImageFont.load_default(size=font_size)
    size = font_size
    cell = max(2.5 * size, max(font.getlength(text) for row in values for text in row) + size)
    column_width = max(cell, max(font.getlength(name) for name in columns) + size)
    left = max(font.getlength(name) for name in rows) + size
    top = 3 * size
    width = round(max(left + column_width * len(columns), font.getlength(title) + size)) + size
    image = Image.new("RGB", (width, round(top + cell * len(rows)) + size), "white")
    draw = ImageDraw.Draw(image)
    draw.text((size // 2, size // 4), title, fill="black", font=font)
    for j, name in enumerate(columns):
        draw.text((left + j * column_width + size // 2, top - 1.4 * size), name, fill="black", font=font)
    for i, name in enumerate(rows):
        y = top + i * cell
        draw.text((size // 2, y + cell / 2 - size / 2), name, fill="black", font=font)
        for j, (text, share) in enumerate(zip(values[i], shades[i])):
            x = left + j * column_width
            shade = round(255 * (1 - share))
            draw.rectangle([x, y, x + column_width - 1, y + cell - 1], fill=(shade, shade, 255), outline=(200,) * 3)
            draw.text(
                (x + size / 2, y + cell / 2 - size / 2), text, fill="white" if share > 0.5 else "black", font=font
            )
    return image
