"""Input files named by local path or by pinned URL (``https://...#sha256=<hex>``), and the one download
loop of the project (torchvision's weights come through it too).

A download has connect and read timeouts (``fetch.timeout_s``), a deadline for the server's answer
(``ANSWER_WITHIN`` x ``fetch.timeout_s``), a minimum rate (``MIN_RATE`` over every
``fetch.timeout_s`` window: a server dripping a byte per read timeout would hold it forever; so a download
ends within ``fetch.max_mb`` / ``MIN_RATE``) and a size limit (``fetch.max_mb``); it streams into a
temporary ``.partial`` file beside its target, hashing as it goes, and renames it only when it is complete
and verified: on any failure (timeout, limit, wrong hash, Ctrl-C) nothing is left in the cache.
Temporary files left by a killed process are cleared on the next download.

Besides paths and pinned URLs, ``resolve`` reads two kinds of names: ``sample:<name>``, an image (or the
folder ``styles``) shipped in the package (``assets/samples``), and ``dataset:<name>[/<subfolder>]``, a dataset
of ``DATASETS`` downloaded once from its official URL, extracted safely (``archives``: every file verified
against the manifest shipped in the package) into the cache, renamed into place only when complete.
``$TRANSFERLAB_MIRROR`` (a base URL) makes every download read ``<mirror>/<file name>`` instead of the
official URL (a proxy, a local mirror), still verified against the same pins.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import os
import shutil
import socket
import ssl
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, NamedTuple
from urllib.parse import urldefrag, urlparse

from transferlab import archives
from transferlab.errors import FetchError

# The entry applies the run's fetch.timeout_s and fetch.max_mb with ``configure``; until then (tests,
# scripts) the values of configs/config.yaml hold, read from there: their one home.
_limits: dict[str, float] = {}
CHUNK = 1 << 20
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
PARTIAL = ".partial"
MIN_RATE = 1024  # bytes per second, averaged over each fetch.timeout_s window
ANSWER_WITHIN = 2  # x fetch.timeout_s: the connection and the server's status line and headers
MIRROR = "TRANSFERLAB_MIRROR"
ASSETS = Path(__file__).resolve().parent / "assets"
SAMPLES = ASSETS / "samples"


class Dataset(NamedTuple):
    url: str  # the official archive (its contents are pinned by the manifest, not its bytes)
    prefix: str  # the dataset's folder inside the archive
    manifest: str  # in assets/: sha256sum lines of every file the dataset is made of
    limits: archives.Limits


# The archive's own SHA-256 is published nowhere we could read; its 398 files are pinned instead, from a
# byte-identical copy (assets/samples/SOURCES.md).
DATASETS = {
    "hymenoptera": Dataset(
        "https://download.pytorch.org/tutorial/hymenoptera_data.zip",
        "hymenoptera_data/",
        "hymenoptera.sha256",
        archives.Limits(max_files=2000, max_bytes=200 * 2**20, max_ratio=20),
    ),
}


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
    """Remove ``*.partial`` files and folders not written to for ``older_than_s`` (a live download writes
    at least once per read timeout, so these belong to killed processes; ours and torch.hub's)."""
    now = time.time()
    for path in directory.glob(f"*{PARTIAL}"):
        try:
            if now - path.stat().st_mtime > older_than_s:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        except OSError:
            pass  # another process removed or renamed it first


def mirrored(url: str) -> str:
    """``url``, or its file on the mirror ``$TRANSFERLAB_MIRROR`` names (the pins still apply); a FetchError
    when the mirror is not an http(s) URL with a host (a path or ``file://`` would bypass the timeouts)."""
    base = os.environ.get(MIRROR, "").strip()
    if not base:
        return url
    try:
        parts = urlparse(base)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and (parts.port or 1) > 0
        valid = valid and base.isprintable() and " " not in base  # urllib refuses control characters later
    except ValueError:  # an unclosed [IPv6] bracket, a port that is no number
        valid = False
    if not valid:
        raise FetchError(
            f"${MIRROR}={base!r} is not an http:// or https:// URL with a host; set it to the base URL of a server "
            f"that holds {_name(url)} (python -m http.server serves a folder), or unset it"
        )
    return f"{base.rstrip('/')}/{_name(url)}"


def download(
    url: str,
    target: Path,
    key: str,
    sha256_prefix: str | None = None,
    timeout_s: float | None = None,
    max_mb: float | None = None,
    local: str | None = None,
) -> Path:
    """Download ``url`` to ``target`` (verified against ``sha256_prefix`` if given); a one-line FetchError
    on an unreachable server, an HTTP error, a silent server (``timeout_s`` per connect and per read),
    more than ``max_mb`` MB, or a wrong hash, whose fix names a local ``local`` (default: the URL's file name).
    Nothing is left behind on failure."""
    url = mirrored(url)
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
        raise failure(exc, url, target, key, timeout_s, max_bytes, local) from None
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


def failure(
    exc: Exception, url: str, target: Path, key: str, timeout_s: float, max_bytes: int, local: str | None = None
) -> Exception:
    """The one-line error for a download of ``url`` into ``target`` that failed with ``exc``: a FetchError
    naming ``key`` and the fix, or a full disk's OSError naming ``target`` (the entry's one line)."""
    local = local or _name(url)
    if isinstance(exc, _TooSlowError):
        return FetchError(
            f"{key}: {url} sends too slowly ({exc}; under {MIN_RATE // 1024} KB/s over fetch.timeout_s="
            f"{timeout_s:g} s); try again later, or use a local file, e.g. {key}=/path/to/{local}"
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
            f"fetch.timeout_s, or use a local file, e.g. {key}=/path/to/{local}"
        )
    return FetchError(
        f"{key}: could not fetch {url} ({reason}). Fix: connect to the internet once, set ${MIRROR} to a "
        f"server that holds {_name(url)}, or use a local file, e.g. {key}=/path/to/{local}"
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
        response = opener(Handler(), SecureHandler()).open(request, timeout=timeout_s)
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


def opener(*handlers: urllib.request.BaseHandler) -> urllib.request.OpenerDirector:
    """urllib's opener with ``handlers`` for http and https and nothing else: ``build_opener`` adds ftp:,
    file: and data: too, and a server's redirect to ftp:// would be followed (around the watchdog)."""
    director = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),  # $https_proxy and the like, as build_opener reads them
        urllib.request.UnknownHandler(),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPRedirectHandler(),
        urllib.request.HTTPErrorProcessor(),
        *handlers,
    ):
        director.add_handler(handler)
    return director


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
    """The local file or folder for ``source``: a path as it is, a pinned URL fetched into the cache first
    (``timeout_s`` and ``max_mb`` default to the run's ``fetch.timeout_s`` and ``fetch.max_mb``), a bundled
    ``sample:<name>``, a ``dataset:<name>[/<subfolder>]`` fetched and extracted into the cache first."""
    kind, _, name = source.partition(":")
    if kind == "sample":
        return sample(name, key)
    if kind == "dataset":
        return dataset(name, key, cache_dir or default_cache_dir())
    if not is_url(source):
        if has_scheme(source):
            raise FetchError(
                f"{key}={source!r}: only local paths and pinned https:// or http:// URLs are read (and the "
                "names sample:<name>, dataset:<name>); download it and pass its path"
            )
        return Path(source).expanduser()
    url, digest = pinned(source, key)
    cache_dir = cache_dir or default_cache_dir()
    target = cache_dir / f"{digest[:16]}-{_name(url)}"
    if target.is_file() and sha256_of(target) == digest:
        return target
    return download(url, target, key, digest, timeout_s, max_mb)


def sample_names() -> list[str]:
    return sorted([p.name for p in SAMPLES.iterdir() if p.is_dir()] + [p.stem for p in SAMPLES.glob("*/*.jpg")])


def sample(name: str, key: str) -> Path:
    """The bundled image ``name`` (a file stem under assets/samples), or the bundled folder ``name``."""
    if name in sample_names():
        return SAMPLES / name if (SAMPLES / name).is_dir() else next(SAMPLES.glob(f"*/{name}.jpg"))
    raise FetchError(
        f"{key}=sample:{name} is not a bundled sample; choose one of sample:{', sample:'.join(sample_names())}"
    )


def dataset(spec: str, key: str, cache_dir: Path) -> Path:
    """The folder of ``spec`` (``name`` or ``name/subfolder``), the dataset fetched into the cache first."""
    name, _, subfolder = spec.partition("/")
    if name not in DATASETS:
        raise FetchError(
            f"{key}=dataset:{spec}: no dataset {name!r}; choose one of dataset:{', dataset:'.join(DATASETS)}"
        )
    if subfolder.startswith("/") or "\\" in subfolder or ".." in PurePosixPath(subfolder).parts:
        raise FetchError(f"{key}=dataset:{spec}: name a folder inside the dataset, e.g. dataset:{name}/train")
    found = fetch_dataset(name, key, cache_dir / "datasets")
    if not (found / subfolder).is_dir():
        folders = sorted(p.name for p in found.iterdir() if p.is_dir())
        raise FetchError(
            f"{key}=dataset:{spec}: the dataset has no folder {subfolder!r}; its folders: {', '.join(folders)}"
        )
    return found / subfolder if subfolder else found


def dataset_dir(name: str, directory: Path) -> Path:
    """Where the dataset ``name`` is kept in ``directory``: named by its manifest, so a new pin fetches anew."""
    return directory / f"{name}-{sha256_of(ASSETS / DATASETS[name].manifest)[:12]}"


def fetch_dataset(name: str, key: str, directory: Path) -> Path:
    """The extracted dataset ``name`` in ``directory``: there already (no network), or downloaded, extracted
    into a temporary folder and renamed into place when complete and verified (a failure or Ctrl-C leaves
    nothing; of two processes fetching at once, the first to finish wins and the other uses its copy)."""
    spec = DATASETS[name]
    manifest = ASSETS / spec.manifest
    root = dataset_dir(name, directory)
    if root.is_dir() or root.is_symlink() or root.exists():
        verify(root, archives.read_manifest(manifest), key)  # changed since it was fetched?
        return root
    directory.mkdir(parents=True, exist_ok=True)
    clear_stale(directory, 3600.0)
    archive = directory / f".{root.name}.{os.getpid()}.zip{PARTIAL}"
    staging = Path(tempfile.mkdtemp(dir=directory, prefix=f".{root.name}.", suffix=PARTIAL))
    try:
        download(spec.url, archive, key, local=spec.prefix.rstrip("/"))  # the folder it unzips to
        origin = mirrored(spec.url)
        archives.extract(archive, staging, key, archives.read_manifest(manifest), spec.prefix, spec.limits, origin)
        try:
            staging.rename(root)
        except OSError:
            if not root.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        archive.unlink(missing_ok=True)
    return root


def verify(root: Path, manifest: Mapping[str, str], key: str) -> None:
    """``root`` (extracted earlier) still holds exactly the files of ``manifest``, unchanged, and nothing but
    them and their folders (no link, no file added; hidden names, which no lister reads, aside); a FetchError
    naming the first difference otherwise."""
    problem = "" if root.is_dir() and not root.is_symlink() else "it is not a folder"
    found = set()
    for folder, dirs, files in os.walk(root) if not problem else ():
        dirs[:] = [d for d in dirs if not d.startswith(".")]  # hidden names (.DS_Store) are never read
        for name in sorted(n for n in dirs + files if not n.startswith(".")):
            path = Path(folder, name)
            relative = path.relative_to(root).as_posix()
            if path.is_symlink() or not (path.is_dir() or path.is_file()):
                problem = problem or f"{relative} is a link or a special file"
            elif path.is_file():
                found.add(relative)
    extra, missing = sorted(found - set(manifest)), sorted(set(manifest) - found)
    problem = problem or (f"{extra[0]} was added" if extra else f"{missing[0]} is missing" if missing else "")
    for name, digest in manifest.items() if not problem else ():
        if sha256_of(root / name) != digest:
            problem = f"{name} was changed"
            break
    if problem:
        raise FetchError(
            f"{key}: the cached dataset {root} changed after it was fetched ({problem}); delete that folder to "
            "fetch it again"
        )
