"""The pinned-URL fetcher against an HTTP server on 127.0.0.1: no test touches the network."""

import contextlib
import hashlib
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from transferlab import fetch
from transferlab.errors import FetchError

BODY = b"\x89PNG pretend image bytes" * 100


class Handler(BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self):
        Handler.requests.append(self.path)
        if self.path == "/cut.png":
            # Promise the whole body, send half, hang up.
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY[: len(BODY) // 2])
            self.wfile.flush()
            self.connection.close()
            return
        if self.path.startswith("/huge"):
            # Streams past any limit; /huge-unannounced sends no Content-Length.
            self.send_response(200)
            if self.path == "/huge.png":
                self.send_header("Content-Length", str(100 * 2**20))
            self.end_headers()
            try:
                for _ in range(100):
                    self.wfile.write(b"x" * 2**20)
            except OSError:
                pass  # the client stopped at its limit
            return
        if self.path == "/missing.png":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    Handler.requests = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


SHA = hashlib.sha256(BODY).hexdigest()


def test_pinned_url_is_downloaded_once_and_cached(server, tmp_path):
    path = fetch.resolve(f"{server}/image.png#sha256={SHA}", "task.style", tmp_path)
    assert path.read_bytes() == BODY and path.parent == tmp_path
    assert fetch.resolve(f"{server}/image.png#sha256={SHA}", "task.style", tmp_path) == path
    assert Handler.requests == ["/image.png"]


def test_checksum_mismatch_leaves_nothing_in_the_cache(server, tmp_path):
    with pytest.raises(FetchError, match=r"task.content: http://127.0.0.1:\d+/image.png does not match its checksum"):
        fetch.resolve(f"{server}/image.png#sha256={'0' * 64}", "task.content", tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["cut.png", "missing.png"])
def test_failed_download_leaves_nothing_and_says_how_to_fix(server, tmp_path, name):
    with pytest.raises(FetchError, match=rf"use a local file, e.g. task.style=/path/to/{name}"):
        fetch.resolve(f"{server}/{name}#sha256={SHA}", "task.style", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_corrupted_cache_entry_is_fetched_again(server, tmp_path):
    path = fetch.resolve(f"{server}/image.png#sha256={SHA}", "task.style", tmp_path)
    path.write_bytes(b"bit rot")
    assert fetch.resolve(f"{server}/image.png#sha256={SHA}", "task.style", tmp_path).read_bytes() == BODY
    assert len(Handler.requests) == 2


def test_unpinned_url_is_refused():
    with pytest.raises(FetchError, match="must be pinned"):
        fetch.resolve("https://example.org/a.jpg", "task.style")


def test_local_paths_pass_through(tmp_path):
    assert fetch.resolve(str(tmp_path / "a.jpg"), "task.style") == tmp_path / "a.jpg"


@pytest.fixture
def silent_server():
    """Accepts connections and never answers (issue 10, item 3)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()


def stalled_fetch_error(server: str, folder: Path) -> str:
    """The one-line error of a download from a stalling ``server`` at fetch.timeout_s=0.5, given within
    10 s and leaving nothing in ``folder``."""
    start = time.monotonic()
    with pytest.raises(FetchError) as error:
        fetch.resolve(f"{server}/image.png#sha256={SHA}", "task.style", folder, timeout_s=0.5)
    assert time.monotonic() - start < 10
    assert list(folder.iterdir()) == []
    message = str(error.value)
    assert "\n" not in message
    return message


def test_silent_server_times_out_in_one_line_and_leaves_nothing(silent_server, tmp_path):
    assert "did not answer within fetch.timeout_s=0.5 s" in stalled_fetch_error(silent_server, tmp_path)


def test_configured_timeout_applies_to_every_download(silent_server, tmp_path):
    limits = fetch.limits()
    fetch.configure(0.3, 1)
    try:
        with pytest.raises(FetchError, match="fetch.timeout_s=0.3 s"):
            fetch.resolve(f"{silent_server}/image.png#sha256={SHA}", "task.style", tmp_path)
    finally:
        fetch.configure(*limits)


@pytest.mark.parametrize("name", ["huge.png", "huge-unannounced.png"])
def test_download_stops_at_the_size_limit_and_leaves_nothing(server, tmp_path, name):
    with pytest.raises(FetchError, match=r"larger than the fetch.max_mb=2 MB limit"):
        fetch.resolve(f"{server}/{name}#sha256={SHA}", "task.style", tmp_path, max_mb=2)
    assert list(tmp_path.iterdir()) == []


def test_stale_partial_files_are_cleared_and_fresh_ones_kept(server, tmp_path):
    stale, fresh = tmp_path / ".old.png.abc.partial", tmp_path / ".live.png.def.partial"
    stale.write_bytes(b"left by a killed download")
    fresh.write_bytes(b"another process is writing this")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    fetch.resolve(f"{server}/image.png#sha256={SHA}", "task.style", tmp_path)
    assert not stale.exists() and fresh.exists()


@pytest.mark.parametrize("source", ["s3://bucket/a.png", "file:///etc/passwd", "ftp://host/a.png"])
def test_other_url_schemes_are_refused(source):
    with pytest.raises(FetchError, match="only local paths and pinned https:// or http:// URLs"):
        fetch.resolve(source, "task.style")


@pytest.fixture(params=["body", "headers"])
def dripping_server(request):
    """Sends one byte every 0.2 s forever, under any read timeout (issue 32 item 9): the body after its
    headers, or a header line that never ends."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    stop = threading.Event()

    def drip():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn = listener.accept()[0]
            except OSError:
                continue
            with contextlib.suppress(OSError), conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n")
                if request.param == "body":
                    conn.sendall(b"\r\n")
                else:
                    conn.sendall(b"X-Drip: ")
                while not stop.wait(0.2):
                    conn.sendall(b"x")

    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    listener.close()


def test_a_dripping_server_is_stopped_in_one_line_and_leaves_nothing(dripping_server, tmp_path):
    message = stalled_fetch_error(dripping_server, tmp_path)
    assert "sends too slowly" in message and "fetch.timeout_s=0.5 s" in message


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("fetch.timeout_s=1e308", r"^fetch.timeout_s=1e\+308 is invalid; it must be in \(0, 86400\]$"),
        ("fetch.max_mb=1e308", r"^fetch.max_mb=1e\+308 is invalid; it must be in \(0, 1048576\]$"),
        ("fetch.timeout_s=0", r"^fetch.timeout_s=0 is invalid; it must be a number > 0$"),
    ],
)
def test_fetch_limits_a_timer_or_a_byte_count_cannot_hold_are_refused(override, message):
    from helpers import compose_cfg
    from transferlab import groups
    from transferlab.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        groups.fetch(compose_cfg(override))
