"""Input files named by local path or by pinned URL (``https://...#sha256=<hex>``).

A pinned URL is downloaded once into the cache, verified, and reused; a download that fails
or does not match its checksum leaves nothing in the cache.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from urllib.parse import urldefrag, urlparse

import torch

from transferlab.errors import ConfigError, FetchError


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "transferlab"


def is_url(source: str) -> bool:
    return urlparse(source).scheme in ("http", "https")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pinned(source: str, key: str) -> tuple[str, str]:
    """Split ``URL#sha256=HEX`` into the URL and the checksum."""
    url, fragment = urldefrag(source)
    name, _, digest = fragment.partition("=")
    if name != "sha256" or len(digest) != 64:
        raise ConfigError(
            f"{key}={source!r}: a URL must be pinned by its checksum, as URL#sha256=<64 hex digits>, "
            "so that what is downloaded can be verified"
        )
    return url, digest.lower()


def resolve(source: str, key: str, cache_dir: Path | None = None) -> Path:
    """The local file for ``source``: a path as it is, a pinned URL fetched into the cache first."""
    if not is_url(source):
        return Path(source).expanduser()
    url, digest = pinned(source, key)
    cache_dir = cache_dir or default_cache_dir()
    target = cache_dir / f"{digest[:16]}-{os.path.basename(urlparse(url).path)}"
    if target.is_file() and sha256_of(target) == digest:
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    try:
        # Downloads to a temporary name, checks the hash, then renames: never a partial file.
        torch.hub.download_url_to_file(url, str(target), hash_prefix=digest, progress=False)
    except Exception as exc:  # noqa: BLE001 - network, HTTP and checksum failures all need the same fix
        raise FetchError(
            f"{key}: could not fetch {url} ({exc}). Fix: connect to the internet once, "
            f"or use a local file, e.g. {key}=/path/to/{os.path.basename(urlparse(url).path)}"
        ) from None
    return target
