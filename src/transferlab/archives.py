"""Safe extraction of a downloaded zip archive against a manifest of its files' SHA-256.

The whole central directory is checked before a byte is written: no absolute names or ``..`` parts (zip-slip),
no symbolic links or other special files, at most ``max_files`` entries, at most ``max_bytes`` declared in all and
a declared-to-compressed ratio of at most ``max_ratio`` (a zip bomb). Only the files the manifest names are
extracted (anything else in the archive is skipped), each verified against its pinned hash as it is written, and
every one must be there. zipfile stops reading a member at its declared size, so the declared sizes bound what
is written. Each refusal is one FetchError line naming ``key`` and what is wrong.
"""

from __future__ import annotations

import hashlib
import stat
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from transferlab.errors import FetchError

CHUNK = 1 << 20


class Limits(NamedTuple):
    max_files: int
    max_bytes: int
    max_ratio: float


def read_manifest(path: Path) -> dict[str, str]:
    """``<sha256>  <relative path>`` per line (``sha256sum``'s format; paths may hold spaces)."""
    entries = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name:
            raise ValueError(f"{path}: not a sha256sum line: {line!r}")
        entries[name] = digest
    return entries


def extract(
    archive: Path, dest: Path, key: str, manifest: Mapping[str, str], prefix: str, limits: Limits, origin: str = ""
) -> None:
    """Extract the members ``prefix + name`` of ``archive`` for every ``name`` of ``manifest`` into
    ``dest/name`` (``dest`` exists and is empty), verified; a FetchError on an unsafe, corrupt or changed
    archive (the caller removes ``dest``), naming ``origin`` (where it came from) when given."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            check(members, key, limits)
            wanted = {info.filename[len(prefix) :]: info for info in members if info.filename.startswith(prefix)}
            missing = sorted(set(manifest) - set(wanted))
            if missing:
                raise FetchError(
                    f"{key}: the archive lacks {len(missing)} of the {len(manifest)} pinned files (e.g. "
                    f"{prefix}{missing[0]}); it changed upstream or is incomplete: delete it and fetch again"
                )
            for name, digest in manifest.items():
                write_verified(zf, wanted[name], dest / name, digest, key)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
        raise FetchError(
            f"{key}: what {origin or archive.name} sent is not a readable zip archive ({exc}): a cut download or "
            "another file (an error page?); try again, or check that the server holds the archive itself"
        ) from None


def check(members: list[zipfile.ZipInfo], key: str, limits: Limits) -> None:
    """Refuse the archive before extracting anything (see the module's docstring)."""
    if len(members) > limits.max_files:
        raise FetchError(f"{key}: the archive holds {len(members)} entries, over the limit of {limits.max_files}")
    for info in members:
        name = info.filename
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts:
            raise FetchError(f"{key}: the archive's entry {name!r} points outside its folder; refused")
        kind = stat.S_IFMT(info.external_attr >> 16)  # 0: no Unix type recorded (a plain file)
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise FetchError(f"{key}: the archive's entry {name!r} is a link or a special file; refused")
    declared = sum(info.file_size for info in members)
    if declared > limits.max_bytes:
        raise FetchError(
            f"{key}: the archive unpacks to {declared / 2**20:.1f} MB, over the limit of "
            f"{limits.max_bytes / 2**20:g} MB; refused"
        )
    compressed = sum(info.compress_size for info in members)
    if declared > limits.max_ratio * max(compressed, 1):
        raise FetchError(
            f"{key}: the archive unpacks to {declared / max(compressed, 1):.0f}x its size (a zip bomb?), over the "
            f"limit of {limits.max_ratio:g}x; refused"
        )


def write_verified(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, digest: str, key: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    sha = hashlib.sha256()
    with zf.open(info) as source, target.open("xb") as out:
        while chunk := source.read(CHUNK):
            sha.update(chunk)
            out.write(chunk)
    if sha.hexdigest() != digest:
        raise FetchError(
            f"{key}: {info.filename} in the archive does not match its pinned sha256 ({digest[:16]}..., got "
            f"{sha.hexdigest()[:16]}...); the archive changed upstream: refused"
        )
