"""The pinned-URL fetcher against an HTTP server on 127.0.0.1: no test touches the network."""

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from transferlab import fetch
from transferlab.errors import ConfigError, FetchError

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
    with pytest.raises(FetchError, match=r"task.content: could not fetch .*invalid hash value"):
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
    with pytest.raises(ConfigError, match="must be pinned"):
        fetch.resolve("https://example.org/a.jpg", "task.style")


def test_local_paths_pass_through(tmp_path):
    assert fetch.resolve(str(tmp_path / "a.jpg"), "task.style") == tmp_path / "a.jpg"
