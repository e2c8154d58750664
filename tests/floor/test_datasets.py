"""Named data: bundled samples, and datasets fetched once from an HTTP server on 127.0.0.1 (standing in for the
official URL through $TRANSFERLAB_MIRROR), extracted safely against a manifest; no test touches the network."""

from __future__ import annotations

import functools
import hashlib
import os
import stat
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from transferlab import archives, fetch
from transferlab.errors import FetchError

FILES = {"train/a/1.jpg": b"one" * 100, "train/b/2.jpg": b"two" * 100, "val/a/3.jpg": b"three" * 100}
LIMITS = archives.Limits(max_files=20, max_bytes=10_000, max_ratio=50)


def make_zip(path: Path, members: dict[str, bytes], prefix: str = "toy_data/") -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(prefix + name, data)
    return path


def manifest_of(members: dict[str, bytes]) -> dict[str, str]:
    return {name: hashlib.sha256(data).hexdigest() for name, data in members.items()}


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """A dataset ``toy`` whose archive ``toy_data.zip`` is served from ``tmp_path/served`` as the mirror."""
    served = tmp_path / "served"
    served.mkdir()
    manifest = tmp_path / "toy.sha256"
    manifest.write_text("".join(f"{digest}  {name}\n" for name, digest in manifest_of(FILES).items()))
    spec = fetch.Dataset("https://example.invalid/files/toy_data.zip", "toy_data/", str(manifest), LIMITS)
    monkeypatch.setitem(fetch.DATASETS, "toy", spec)
    requests: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(served)))
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    monkeypatch.setenv(fetch.MIRROR, f"http://127.0.0.1:{server.server_address[1]}/mirror/")
    served.joinpath("mirror").mkdir()
    yield served / "mirror", requests, tmp_path / "cache"
    server.shutdown()
    server.server_close()


def leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in (cache / "datasets").iterdir()) if (cache / "datasets").is_dir() else []


def test_dataset_is_fetched_through_the_mirror_once_and_then_read_from_the_cache(toy):
    served, requests, cache = toy
    make_zip(served / "toy_data.zip", {**FILES, "extra.txt": b"not pinned"})
    root = fetch.resolve("dataset:toy", "data.root", cache_dir=cache)
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) == sorted(FILES)
    assert requests == ["/mirror/toy_data.zip"] and leftovers(cache) == [root.name]  # no archive, no extra file
    assert fetch.resolve("dataset:toy/train", "data.root", cache_dir=cache) == root / "train"
    (served / "toy_data.zip").unlink()
    assert fetch.resolve("dataset:toy", "data.root", cache_dir=cache) == root and len(requests) == 1  # no network


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({"../evil.jpg": b"x"}, "points outside its folder"),
        ({"a/../../evil.jpg": b"x"}, "points outside its folder"),
        ({"/etc/evil.jpg": b"x"}, "points outside its folder"),
        ({f"f{i}.jpg": b"x" for i in range(25)}, "25 entries, over the limit of 20"),
        ({"big.bin": b"\0" * 20_000}, "over the limit of 0.00953674 MB"),
        ({"zeros.bin": b"\0" * 9_000}, "zip bomb"),
        ({**FILES, "train/a/1.jpg": b"changed"}, "does not match its pinned sha256"),
        ({"train/a/1.jpg": FILES["train/a/1.jpg"]}, "lacks 2 of the 3 pinned files"),
    ],
)
def test_unsafe_or_changed_archives_are_refused_in_one_line_and_leave_nothing(toy, members, message):
    served, _, cache = toy
    make_zip(served / "toy_data.zip", members, prefix="" if members and "/etc" in next(iter(members)) else "toy_data/")
    with pytest.raises(FetchError, match=message) as info:
        fetch.resolve("dataset:toy", "data.root", cache_dir=cache)
    assert "\n" not in str(info.value) and str(info.value).startswith("data.root: ")
    assert leftovers(cache) == []


def test_symlink_member_is_refused(toy):
    served, _, cache = toy
    with zipfile.ZipFile(served / "toy_data.zip", "w") as zf:
        link = zipfile.ZipInfo("toy_data/train/a/1.jpg")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(FetchError, match="is a link or a special file"):
        fetch.resolve("dataset:toy", "data.root", cache_dir=cache)
    assert leftovers(cache) == []


def test_truncated_archive_is_refused(toy):
    served, _, cache = toy
    data = make_zip(served / "full.zip", FILES).read_bytes()
    (served / "toy_data.zip").write_bytes(data[: len(data) // 2])
    with pytest.raises(FetchError, match="is not a readable zip archive") as info:
        fetch.resolve("dataset:toy", "data.root", cache_dir=cache)
    assert "\n" not in str(info.value) and leftovers(cache) == []


def test_corrupt_member_is_refused(toy):
    served, _, cache = toy
    data = bytearray(make_zip(served / "full.zip", FILES).read_bytes())
    at = data.index(b"toy_data/train/a/1.jpg") + len("toy_data/train/a/1.jpg") + 2
    data[at : at + 4] = b"\xff\xfe\xfd\xfc"  # inside the first member's compressed bytes
    (served / "toy_data.zip").write_bytes(bytes(data))
    with pytest.raises(FetchError, match="not a readable zip archive|does not match its pinned sha256"):
        fetch.resolve("dataset:toy", "data.root", cache_dir=cache)
    assert leftovers(cache) == []


def test_stale_partial_folders_of_killed_fetches_are_cleared(toy):
    served, _, cache = toy
    make_zip(served / "toy_data.zip", FILES)
    stale = cache / "datasets" / ".toy-0123.abc.partial"
    (stale / "train").mkdir(parents=True)
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    root = fetch.resolve("dataset:toy", "data.root", cache_dir=cache)
    assert leftovers(cache) == [root.name]


def test_of_two_processes_fetching_at_once_the_second_uses_the_first_ones_copy(toy, monkeypatch):
    served, _, cache = toy
    make_zip(served / "toy_data.zip", FILES)
    extract = archives.extract

    def another_process_finishes_first(archive, dest, *args):
        extract(archive, dest, *args)
        (fetch.dataset_dir("toy", cache / "datasets") / "train").mkdir(parents=True)

    monkeypatch.setattr(archives, "extract", another_process_finishes_first)
    root = fetch.resolve("dataset:toy", "data.root", cache_dir=cache)
    assert leftovers(cache) == [root.name] and [p.name for p in root.iterdir()] == ["train"]


def test_ctrl_c_while_extracting_leaves_nothing(toy, monkeypatch):
    served, _, cache = toy
    make_zip(served / "toy_data.zip", FILES)

    def interrupted(zf, info, target, digest, key):
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(archives, "write_verified", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fetch.resolve("dataset:toy", "data.root", cache_dir=cache)
    assert leftovers(cache) == []


def test_unreachable_server_names_the_fix(toy, monkeypatch):
    _, _, cache = toy
    monkeypatch.setenv(fetch.MIRROR, "http://127.0.0.1:9/")  # the discard port: refused
    with pytest.raises(FetchError, match=r"could not fetch http://127.0.0.1:9/toy_data.zip .*TRANSFERLAB_MIRROR"):
        fetch.resolve("dataset:toy", "data.root", cache_dir=cache)
    assert leftovers(cache) == []


def test_unknown_names_list_the_known_ones(tmp_path):
    with pytest.raises(FetchError, match="no dataset 'ants'; choose one of dataset:hymenoptera"):
        fetch.resolve("dataset:ants", "data.root", cache_dir=tmp_path)
    with pytest.raises(FetchError, match="sample:starry_night") as info:
        fetch.resolve("sample:starry", "task.style")
    assert "\n" not in str(info.value)


def test_bundled_samples_and_the_shipped_manifest():
    assert fetch.resolve("sample:tubingen", "task.content").is_file()
    styles = fetch.resolve("sample:styles", "task.styles")
    assert sorted(p.stem for p in styles.glob("*.jpg")) == [
        "composition_vii",
        "great_wave_off_kanagawa",
        "shipwreck_of_the_minotaur",
        "starry_night",
        "the_scream",
    ]
    manifest = archives.read_manifest(fetch.ASSETS / fetch.DATASETS["hymenoptera"].manifest)
    assert len(manifest) == 398 and "train/ants/ant photos.jpg" in manifest
    here = Path(__file__).resolve()
    shared = next(
        (p / "shared/data/hymenoptera" for p in here.parents if (p / "shared/data/hymenoptera").is_dir()), None
    )
    if shared:  # the byte-identical copy the manifest was computed from (the project's workspace)
        files = {p.relative_to(shared).as_posix(): p for p in shared.rglob("*") if p.is_file()}
        assert sorted(files) == sorted(manifest)
        assert all(hashlib.sha256(files[name].read_bytes()).hexdigest() == manifest[name] for name in manifest)


@pytest.mark.parametrize(
    "mirror", ["notaurl", "/srv/mirror", "file:///srv/mirror", "ftp://host/", "http://", "http://[::1"]
)
def test_a_mirror_that_is_not_an_http_url_is_refused_in_one_line(toy, monkeypatch, mirror):
    _, requests, cache = toy
    monkeypatch.setenv(fetch.MIRROR, mirror)
    with pytest.raises(FetchError, match=r"^\$TRANSFERLAB_MIRROR=.* is not an http:// or https:// URL") as info:
        fetch.resolve("dataset:toy", "data.root", cache_dir=cache)
    assert "\n" not in str(info.value) and requests == [] and leftovers(cache) == []


def test_a_mirror_that_sends_a_page_instead_of_the_archive_is_named(toy):
    served, _, cache = toy
    (served / "toy_data.zip").write_text("<html>Not here</html>")
    with pytest.raises(FetchError, match=r"what http://127.0.0.1:\d+/mirror/toy_data.zip sent is not a readable zip"):
        fetch.resolve("dataset:toy", "data.root", cache_dir=cache)
    assert leftovers(cache) == []


@pytest.mark.parametrize("sub", ["../../x", "train/../../x", "/etc", "\\etc"])
def test_a_subfolder_outside_the_dataset_is_refused_before_fetching(toy, sub):
    _, requests, cache = toy
    with pytest.raises(FetchError, match="name a folder inside the dataset, e.g. dataset:toy/train"):
        fetch.resolve(f"dataset:toy/{sub}", "data.root", cache_dir=cache)
    assert requests == []


@pytest.mark.parametrize("sub", ["test", "train/a/1.jpg"])
def test_a_subfolder_the_dataset_lacks_lists_its_folders(toy, sub):
    served, _, cache = toy
    make_zip(served / "toy_data.zip", FILES)
    with pytest.raises(FetchError, match=f"the dataset has no folder '{sub}'; its folders: train, val"):
        fetch.resolve(f"dataset:toy/{sub}", "data.root", cache_dir=cache)


def plant_link(root: Path) -> None:
    (root / "train" / "a" / "4.jpg").symlink_to("/etc/passwd")


def replace_folder_by_link(root: Path) -> None:
    (root / "val").rename(root.parent / "elsewhere")
    (root / "val").symlink_to(root.parent / "elsewhere")


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        (lambda root: (root / "train/a/1.jpg").unlink(), "train/a/1.jpg is missing"),
        (lambda root: (root / "train/a/1.jpg").write_bytes(b"other"), "train/a/1.jpg was changed"),
        (lambda root: (root / "train/a/9.jpg").write_bytes(b"new"), "train/a/9.jpg was added"),
        (plant_link, "train/a/4.jpg is a link or a special file"),
        (lambda root: os.mkfifo(root / "train/a/1.jpg.fifo"), "train/a/1.jpg.fifo is a link or a special file"),
        (replace_folder_by_link, "val is a link"),
    ],
)
def test_a_cached_dataset_changed_after_it_was_fetched_is_refused(toy, tamper, problem):
    served, requests, cache = toy
    make_zip(served / "toy_data.zip", FILES)
    root = fetch.resolve("dataset:toy", "data.root", cache_dir=cache)
    tamper(root)
    with pytest.raises(FetchError, match=f"the cached dataset .* changed after it was fetched \\({problem}") as info:
        fetch.resolve("dataset:toy/train", "data.root", cache_dir=cache)
    assert "delete that folder to fetch it again" in str(info.value) and len(requests) == 1


def test_hidden_files_a_file_browser_leaves_in_a_cached_dataset_are_no_change(toy):
    served, requests, cache = toy
    make_zip(served / "toy_data.zip", FILES)
    root = fetch.resolve("dataset:toy", "data.root", cache_dir=cache)
    (root / "train" / ".DS_Store").write_bytes(b"finder")
    assert fetch.resolve("dataset:toy/train", "data.root", cache_dir=cache) == root / "train" and len(requests) == 1


@pytest.mark.parametrize("target", ["ftp://127.0.0.1:9/toy_data.zip", "file:///etc/passwd"])
def test_a_redirect_to_anything_but_http_is_not_followed(toy, monkeypatch, target):
    _, _, cache = toy

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    monkeypatch.setenv(fetch.MIRROR, f"http://127.0.0.1:{server.server_address[1]}/")
    try:
        with pytest.raises(FetchError, match=r"could not fetch .*(unknown url type: ftp|Redirection to url)") as info:
            fetch.resolve("dataset:toy", "data.root", cache_dir=cache)
    finally:
        server.shutdown()
        server.server_close()
    assert "\n" not in str(info.value) and leftovers(cache) == []
