"""Image datasets as WebDataset shards: POSIX tar files whose samples are ``<key>.<ext>`` (an image file's bytes
as they were) and, for an ImageFolder, ``<key>.cls`` (its class index), written by ``task=pack`` with a
manifest (``shards.json``: each shard's name, SHA-256, size, sample count and labels; the classes) and the same
checksums as ``shards.sha256`` (``sha256sum -c`` reads it).

WebDataset rather than LitData: its shards are plain tar files that any tool reads (tar, WebDataset pipelines,
other frameworks), and we use only its tar writer and reader, three small dependencies (braceexpand, numpy,
pyyaml); LitData's chunks need LitData to read, and it brings its own cloud downloaders (boto3, obstore),
which would bypass the fetcher's pins, timeouts and size limit.

A manifest is named by a local path or a pinned URL (``https://.../shards.json#sha256=<hex>``); its shards are
named relative to it. Each shard is read whole when a sample of it is first needed (a URL through
``fetch.resolve``, pinned by the manifest's hash: timeouts, size limit, cache) and verified against the
manifest's SHA-256; the last few are held in memory. A shard that cannot be fetched, does not match its hash
or is not a whole tar file is bad: each of its samples raises ImageError (the shard is logged once), which the
readers count against ``data.max_bad_fraction`` as they count unreadable files.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urldefrag, urljoin

from torch import Tensor

from transferlab import checks, fetch, images
from transferlab.errors import DataError, FetchError, ImageError
from transferlab.files import atomic_write, write_json

if TYPE_CHECKING:
    from PIL import Image  # images is the one module that decodes

log = logging.getLogger(__name__)

MANIFEST = "shards.json"
CHECKSUMS = "shards.sha256"
FORMAT = "transferlab-shards/1"
KEY_DIGITS = 9


@dataclass(frozen=True, order=True)
class Member:
    """Sample ``index`` of the shard at ``shard`` (a local path or a URL) whose SHA-256 is ``sha256``."""

    shard: str
    index: int
    sha256: str
    label: int | None = None

    def __str__(self) -> str:
        return f"{self.shard}[{self.index}]"


def is_manifest(source: str | Path) -> bool:
    """Whether ``source`` names a shard manifest (``*.json``, a path or a URL) rather than a folder."""
    return urldefrag(str(source))[0].endswith(".json")


def _require() -> Any:
    checks.requires("sharded data (a shards.json manifest)", ["webdataset"], "shards")
    import webdataset

    return webdataset


def read_manifest(source: str, key: str) -> tuple[list[Member], tuple[str, ...], str]:
    """The samples of the manifest ``source`` (a local path or a pinned URL), in shard order, its classes
    and its SHA-256 (what a run read: its resume fingerprint). A shard without a 64-digit hash is refused."""
    _require()
    local = fetch.resolve(source, key)
    if not local.is_file():
        raise DataError(f"{key}={source} does not exist; pack a folder into shards with task=pack")
    try:
        manifest = json.loads(local.read_text())
        shards, classes = manifest["shards"], tuple(manifest.get("classes") or ())
        if manifest.get("format") != FORMAT:
            raise ValueError(f"format is {manifest.get('format')!r}, not {FORMAT!r}")
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{key}={source} is not a shard manifest ({exc}); write one with task=pack") from None
    base = urldefrag(source)[0] if fetch.is_url(source) else local.parent
    members = []
    for i, shard in enumerate(shards):
        digest, name = str(shard.get("sha256", "")), str(shard.get("name", ""))
        if len(digest) != 64 or not name or "/" in name or name.startswith("."):
            raise DataError(
                f"{key}={source}: shard {i} ({name or 'unnamed'}) has no sha256 of 64 hex digits or no plain "
                "file name; every shard is verified against its manifest: pack the data again with task=pack"
            )
        where = urljoin(str(base), name) if isinstance(base, str) else str(base / name)
        labels = shard.get("labels") or [None] * int(shard["samples"])
        members += [Member(where, j, digest, label) for j, label in enumerate(labels)]
    if not members:
        raise DataError(f"{key}={source} lists no samples; pack a folder of images with task=pack")
    return members, classes, fetch.sha256_of(local)


class ShardCache:
    """The last ``keep`` shards read, whole (a bad one: its error), most recently used last. Each reader keeps
    its own (a content and a style stream do not evict each other's), and a copy sent to a data-loader
    worker starts empty."""

    def __init__(self, keep: int = 2) -> None:
        self.keep = max(keep, 1)
        self.held: OrderedDict[tuple[str, str], list[bytes] | ImageError] = OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        return {"keep": self.keep, "held": OrderedDict()}

    def read(self, member: Member) -> Image.Image:
        """The image of ``member`` in RGB, its shard read when first needed; ImageError when the shard or the
        image is bad."""
        key = (member.shard, member.sha256)
        held = self.held.get(key)
        if held is None:
            held = self.held[key] = _read_shard(member.shard, member.sha256)
            while len(self.held) > self.keep:
                self.held.popitem(last=False)
        self.held.move_to_end(key)
        if isinstance(held, ImageError):
            raise held
        if member.index >= len(held):
            raise ImageError(f"shard {member.shard} holds {len(held)} samples, not {member.index + 1}; pack it again")
        return images.decode_rgb(held[member.index], str(member))

    def load(self, member: Member) -> Tensor:
        """The image of ``member`` as ``images.load_image`` reads a file."""
        return images.to_tensor(self.read(member))


def _read_shard(shard: str, sha256: str) -> list[bytes] | ImageError:
    """The image bytes of each sample of ``shard`` in order, or the ImageError that makes it bad (logged)."""
    try:
        if fetch.is_url(shard):
            data = fetch.resolve(f"{shard}#sha256={sha256}", "data.root").read_bytes()  # verified by the fetcher
        else:
            data = Path(shard).read_bytes()
            if hashlib.sha256(data).hexdigest() != sha256:
                raise ValueError("its SHA-256 is not the manifest's: changed or truncated")
        return samples(data, shard)
    except (OSError, ValueError, FetchError) as exc:
        error = ImageError(f"shard {shard} is bad ({exc}); its samples are skipped")
        log.warning("%s", error)
        return error


def samples(data: bytes, name: str) -> list[bytes]:
    """The image bytes of each sample in the tar file ``data`` (WebDataset's reader), in order."""
    tariterators = _require().tariterators
    try:
        files = tariterators.tar_file_expander([{"stream": io.BytesIO(data), "url": name}])
        grouped = list(tariterators.group_by_keys(files))
    except Exception as exc:  # noqa: BLE001 - tarfile and WebDataset raise many kinds for a broken tar
        raise ValueError(
            f"not a whole tar file: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None
    found = []
    for sample in grouped:
        image = [v for k, v in sample.items() if images.is_image_name(f"sample.{k}")]
        if len(image) != 1:
            raise ValueError(f"sample {sample['__key__']} holds {len(image)} images, not 1")
        found.append(image[0])
    return found


def pack(files: list[Path], labels: list[int] | None, out: Path, per_shard: int, classes: tuple[str, ...]) -> Path:
    """Write ``files`` (with their class ``labels``, indices into ``classes``) as shards of ``per_shard``
    samples into ``out`` (the bytes as they are, in order), each written atomically, then the manifest and
    the checksums; returns the manifest's path. The same files give the same shards, byte for byte."""
    wds = _require()
    entries = []
    for first in range(0, len(files), per_shard):
        name = f"shard-{first // per_shard:06d}.tar"
        chunk = range(first, min(first + per_shard, len(files)))
        with atomic_write(out / name) as f:
            writer = wds.TarWriter(f, mtime=0.0, encoder=False)  # mtime 0: the same bytes each time
            for i in chunk:
                sample = {"__key__": f"{i:0{KEY_DIGITS}d}", files[i].suffix.lower().lstrip("."): files[i].read_bytes()}
                if labels is not None:
                    sample["cls"] = str(labels[i]).encode()
                writer.write(sample)
            writer.close()
        entry = {"name": name, "sha256": fetch.sha256_of(out / name), "bytes": (out / name).stat().st_size}
        entries.append(entry | {"samples": len(chunk)} | ({"labels": labels[first : chunk.stop]} if labels else {}))
    with atomic_write(out / CHECKSUMS, "w") as f:
        f.write("".join(f"{e['sha256']}  {e['name']}\n" for e in entries))
    write_json({"format": FORMAT, "classes": list(classes), "samples": len(files), "shards": entries}, out / MANIFEST)
    return out / MANIFEST
