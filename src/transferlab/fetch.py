"""Input files named by local path or by pinned URL (``https://...#sha256=<hex>``), and the one download
loop of the project (torchvision's weights come through it too).

A download has connect and read timeouts (``fetch.timeout_s``), a deadline for the server's answer
(``ANSWER_WITHIN`` x ``fetch.timeout_s``), a minimum rate (``MIN_RATE`` over every
``fetch.timeout_s`` window: a server dripping a byte per read timeout would hold it forever; so a download
ends within ``fetch.max_mb`` / ``MIN_RATE``) and a size limit (``fetch.max_mb``); it streams into a
temporary ``.partial`` file beside its target, hashing as it goes, and renames it only when it is complete
and verified: on any failure (timeout, limit, wrong hash, Ctrl-C) nothing is left in the cache.
Temporary files left by a killed process are cleared on the next download.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import os
import socket
import ssl
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urldefrag, urlparse

from transferlab.errors import FetchError

# The entry applies the run's fetch.timeout_s and fetch.max_mb with ``configure``; until then (tests,
# scripts) the values of configs/config.yaml hold, read from there: their one home.
_limits: dict[str, float] = {}
CHUNK = 1 << 20
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
PARTIAL = ".partial"
MIN_RATE = 1024  # bytes per second, averaged over each fetch.timeout_s window
ANSWER_WITHIN = 2  # x fetch.timeout_s: the connection and the server's status line and headers


def configure(timeout_s: float, max_mb: float) -> None:
    """Set the timeout and size limit of every later download in this process (the entry does it)."""
    if not (timeout_s > 0 and max_mb > 0):
        raise ValueError(f"timeout_s={timeout_s} and max_mb={max_mb} must be > 0")
    _limits.update(timeout_s=float(timeout_s), max_mb=float(max_mb))


def limits() -> tuple[float, float]:
    if not _limits:
        import yaml

        from transferlab import CONFIGS

        defaults = yaml.safe_load((CONFIGS / "config.yaml").read_text())["fetch"]
        configure(defaults["timeout_s"], defaults["max_mb"])
    return _limits["timeout_s"], _limits["max_mb"]


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "transferlab"


def is_url(source: str) -> bool:
    return urlparse(source).scheme in ("http", "https")


def has_scheme(source: str) -> bool:
    """Whether ``source`` names something by URL (``http:``, ``s3:``, ``file:``, ...), not by local path."""
    return len(urlparse(str(source)).scheme) > 1 and "://" in str(source)  # "C:\\x" is a drive, not a scheme


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pinned(source: str, key: str) -> tuple[str, str]:
    """Split ``URL#sha256=HEX`` into the URL and the checksum."""
    url, fragment = urldefrag(source)
    name, _, digest = fragment.partition("=")
    if name != "sha256" or len(digest) != 64:
        raise FetchError(
            f"{key}={source!r}: a URL must be pinned by its checksum, as URL#sha256=<64 hex digits>, "
            "so that what is downloaded can be verified"
        )
    return url, digest.lower()


def clear_stale(directory: Path, older_than_s: float) -> None:
    """Remove ``*.partial`` files not written to for ``older_than_s`` (a live download writes at least
    once per read timeout, so these belong to killed processes; ours and torch.hub's)."""
    now = time.time()
    for path in directory.glob(f"*{PARTIAL}"):
        try:
            if now - path.stat().st_mtime > older_than_s:
                path.unlink()
        except OSError:
            pass  # another process removed or renamed it first


def download(
    url: str,
    target: Path,
    key: str,
    sha256_prefix: str | None = None,
    timeout_s: float | None = None,
    max_mb: float | None = None,
) -> Path:
    """Download ``url`` to ``target`` (verified against ``sha256_prefix`` if given); a one-line FetchError
    on an unreachable server, an HTTP error, a silent server (``timeout_s`` per connect and per read),
    more than ``max_mb`` MB, or a wrong hash. Nothing is left behind on failure."""
    default_timeout, default_max = limits()
    timeout_s = timeout_s or default_timeout
    max_bytes = int((max_mb or default_max) * 2**20)
    target.parent.mkdir(parents=True, exist_ok=True)
    clear_stale(target.parent, max(600.0, 4 * timeout_s))
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=PARTIAL)
    try:
        digest = hashlib.sha256()
        request = urllib.request.Request(url, headers={"User-Agent": "transferlab"})
        with os.fdopen(fd, "wb") as out, open_url(request, timeout_s) as response:
            receive(response, out, digest, timeout_s, max_bytes)
        if sha256_prefix and not digest.hexdigest().startswith(sha256_prefix.lower()):
            raise FetchError(
                f"{key}: {url} does not match its checksum (expected sha256 {sha256_prefix}..., got "
                f"{digest.hexdigest()}); the file changed or the pin is wrong: fix the pin, or use a local file, "
                f"e.g. {key}=/path/to/{_name(url)}"
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
        return target
    except (
        _TooSlowError,
        _TooLargeError,
        urllib.error.URLError,
        OSError,
        ValueError,
        http.client.HTTPException,
    ) as exc:
        raise failure(exc, url, target, key, timeout_s, max_bytes) from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def receive(response: http.client.HTTPResponse, out: BinaryIO, digest: Any, timeout_s: float, max_bytes: int) -> None:
    """Copy ``response`` into ``out`` and ``digest``; a _TooLargeError beyond ``max_bytes`` (announced or
    arrived), a _TooSlowError under ``MIN_RATE`` over a ``timeout_s`` window, an IncompleteRead when fewer
    bytes than announced arrive."""
    length = response.headers.get("Content-Length")
    if length and length.isdigit() and int(length) > max_bytes:
        raise _TooLargeError(f"the server announces {int(length) / 2**20:.1f} MB")
    size, window_start, window_bytes = 0, time.monotonic(), 0
    # read1: what has arrived (read(n) would wait for n bytes, however slowly they drip).
    while chunk := response.read1(CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise _TooLargeError(f"more than {max_bytes / 2**20:g} MB arrived")
        digest.update(chunk)
        out.write(chunk)
        window_bytes += len(chunk)
        elapsed = time.monotonic() - window_start
        if elapsed >= timeout_s:
            if window_bytes < MIN_RATE * elapsed:
                raise _TooSlowError(f"{window_bytes} bytes in the last {elapsed:.1f} s")
            window_start, window_bytes = time.monotonic(), 0
    if length and length.isdigit() and size != int(length):
        raise http.client.IncompleteRead(b"", int(length) - size)


def failure(exc: Exception, url: str, target: Path, key: str, timeout_s: float, max_bytes: int) -> Exception:
    """The one-line error for a download of ``url`` into ``target`` that failed with ``exc``: a FetchError
    naming ``key`` and the fix, or a full disk's OSError naming ``target`` (the entry's one line)."""
    if isinstance(exc, _TooSlowError):
        return FetchError(
            f"{key}: {url} sends too slowly ({exc}; under {MIN_RATE // 1024} KB/s over fetch.timeout_s="
            f"{timeout_s:g} s); try again later, or use a local file, e.g. {key}=/path/to/{_name(url)}"
        )
    if isinstance(exc, _TooLargeError):
        return FetchError(
            f"{key}: {url} is larger than the fetch.max_mb={max_bytes / 2**20:g} MB limit ({exc}); "
            f"raise fetch.max_mb if the file is expected to be this large, or use a local file"
        )
    # A read that times out raises TimeoutError; a connect that times out, a URLError around one.
    reason = getattr(exc, "reason", None) or exc
    if isinstance(exc, OSError) and exc.errno in DISK_FULL:
        return OSError(exc.errno, os.strerror(exc.errno), str(target))
    if isinstance(reason, TimeoutError):
        return FetchError(
            f"{key}: {url} did not answer within fetch.timeout_s={timeout_s:g} s; try again, raise "
            f"fetch.timeout_s, or use a local file, e.g. {key}=/path/to/{_name(url)}"
        )
    return FetchError(
        f"{key}: could not fetch {url} ({reason}). Fix: connect to the internet once, "
        f"or use a local file, e.g. {key}=/path/to/{_name(url)}"
    )


def open_url(request: urllib.request.Request, timeout_s: float) -> http.client.HTTPResponse:
    """``urlopen`` whose answer (status line and headers) must be complete within ``ANSWER_WITHIN`` x
    ``timeout_s``: read timeouts alone let a server dripping its headers hold a download for days. At the
    deadline a watchdog shuts the connection's sockets (redirects included), which ends the blocked read."""
    sockets: list[socket.socket] = []

    class Connection(http.client.HTTPConnection):
        def connect(self) -> None:
            super().connect()
            sockets.append(self.sock)

    class SecureConnection(http.client.HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            sockets.append(self.sock)

    class Handler(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(Connection, req)

    class SecureHandler(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(SecureConnection, req, context=ssl.create_default_context())

    expired = threading.Event()

    def expire() -> None:
        expired.set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    watchdog = threading.Timer(ANSWER_WITHIN * timeout_s, expire)
    watchdog.start()
    too_slow = _TooSlowError(f"no complete answer within {ANSWER_WITHIN * timeout_s:g} s")
    try:
        response = urllib.request.build_opener(Handler, SecureHandler).open(request, timeout=timeout_s)
    except (urllib.error.URLError, OSError, http.client.HTTPException):
        if expired.is_set():
            raise too_slow from None
        raise
    finally:
        watchdog.cancel()
    if expired.is_set():  # the shut socket ended the headers early: what came is not the answer
        response.close()
        raise too_slow
    return response


class _TooLargeError(Exception):
    pass


class _TooSlowError(Exception):
    pass


def _name(url: str) -> str:
    return os.path.basename(urlparse(url).path) or "file"


def resolve(
    source: str,
    key: str,
    cache_dir: Path | None = None,
    timeout_s: float | None = None,
    max_mb: float | None = None,
) -> Path:
    """The local file for ``source``: a path as it is, a pinned URL fetched into the cache first
    (``timeout_s`` and ``max_mb`` default to the run's ``fetch.timeout_s`` and ``fetch.max_mb``)."""
    if not is_url(source):
        if has_scheme(source):
            raise FetchError(
                f"{key}={source!r}: only local paths and pinned https:// or http:// URLs are read; "
                "download it and pass its path"
            )
        return Path(source).expanduser()
    url, digest = pinned(source, key)
    cache_dir = cache_dir or default_cache_dir()
    target = cache_dir / f"{digest[:16]}-{_name(url)}"
    if target.is_file() and sha256_of(target) == digest:
        return target
    return download(url, target, key, digest, timeout_s, max_mb)
