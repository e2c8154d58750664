"""Sharded data: task=pack writes WebDataset shards, a manifest and checksums; they read back (from a folder
or a pinned URL) as the files did; a bad shard is skipped within data.max_bad_fraction; bad inputs one line."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from helpers import compose_cfg, make_image
from transferlab import groups, images, main, shards
from transferlab.errors import ConfigError, DataError, FetchError
from transferlab.fast import data
from transferlab.pack import PackSettings


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("folder")
    for i in range(7):
        make_image(root / f"sub{i % 2}" / f"{i}.{'png' if i % 3 else 'jpg'}", size=(36 + 2 * i, 32), seed=i)
    return root


@pytest.fixture(scope="module")
def packed(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("packed")
    main.run_task(compose_cfg("task=pack", f"task.input={folder}", "task.shard_samples=3"), out)
    return out / "shards"


def test_pack_writes_shards_a_manifest_and_checksums_that_read_back_as_the_files(folder, packed):
    manifest = json.loads((packed / shards.MANIFEST).read_text())
    assert [s["samples"] for s in manifest["shards"]] == [3, 3, 1]
    sums = (packed / shards.CHECKSUMS).read_text().splitlines()
    assert sums == [
        f"{hashlib.sha256((packed / s['name']).read_bytes()).hexdigest()}  {s['name']}" for s in manifest["shards"]
    ]
    members = data.list_images(packed / shards.MANIFEST)
    files = data.list_images(folder)
    assert len(members) == len(files) == 7
    for member, path in zip(members, files):
        assert torch.equal(data.load(member), images.load_image(path))


def test_image_folder_splits_are_packed_apart_with_labels(tmp_path):
    for split, n in (("train", 2), ("val", 1)):
        for c in ("ants", "bees"):
            for i in range(n):
                make_image(tmp_path / "in" / split / c / f"{i}.png", seed=i)
    main.run_task(compose_cfg("task=pack", f"task.input={tmp_path / 'in'}", "task.classes=true"), tmp_path / "run")
    members, classes, _ = shards.read_manifest(str(tmp_path / "run" / "shards" / "val" / shards.MANIFEST), "data.root")
    assert classes == ("ants", "bees") and [m.label for m in members] == [0, 1]


def test_shards_read_through_a_pinned_url(packed, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(packed))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/{shards.MANIFEST}"
        with pytest.raises(FetchError, match=r"data.root=.*must be pinned by its checksum"):
            groups.folder_or_shards(url, "data.root")  # the door refuses it in one line
        digest = hashlib.sha256((packed / shards.MANIFEST).read_bytes()).hexdigest()
        members = data.list_images(f"{url}#sha256={digest}")
        assert members[0].shard.startswith("http://127.0.0.1") and len(members) == 7
        assert torch.equal(data.load(members[4]), data.load(data.list_images(packed / shards.MANIFEST)[4]))
    finally:
        httpd.shutdown()


def test_a_truncated_shard_is_reported_and_skipped_within_the_bad_fraction(packed, tmp_path, caplog):
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in packed.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    (bad / "shard-000001.tar").write_bytes((packed / "shard-000001.tar").read_bytes()[:1000])
    members = data.list_images(bad / shards.MANIFEST)
    with caplog.at_level(logging.WARNING):
        crops = data.ContentCrops(members, 16, 14, seed=0, max_bad=0.5)
        assert all(crops[i].shape == (3, 16, 16) for i in range(14))
    warned = [r.getMessage() for r in caplog.records if "shard-000001.tar" in r.getMessage()]
    assert len(warned) == 1 and "is bad" in warned[0]
    strict = data.ContentCrops(members, 16, 14, seed=0, max_bad=0.0)
    with pytest.raises(DataError, match=r"1 of 7 content photos are unreadable .*shard-000001.tar\[\d\]"):
        [strict[i] for i in range(14)]


def test_a_shard_without_a_hash_in_its_manifest_is_one_line(packed, tmp_path):
    manifest = json.loads((packed / shards.MANIFEST).read_text())
    del manifest["shards"][1]["sha256"]
    (tmp_path / shards.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=r"shard 1 \(shard-000001.tar\) has no sha256"):
        data.list_images(tmp_path / shards.MANIFEST)


def test_shards_pass_in_windows_each_pass_in_a_new_order(packed):
    members = data.list_images(packed / shards.MANIFEST)
    crops = data.ContentCrops(members, 16, 14, seed=0, window=1)
    first, second = crops.order(0).tolist(), crops.order(1).tolist()
    assert sorted(first) == sorted(second) == list(range(7)) and first != second
    shard_of = [m.shard for m in members]
    runs = [shard_of[i] for i in first]
    assert sum(a != b for a, b in zip(runs, runs[1:])) == 2  # window 1: one shard after another


def test_without_webdataset_packing_and_reading_shards_is_one_line_naming_the_extra(packed, monkeypatch):
    monkeypatch.setitem(sys.modules, "webdataset", None)  # its import raises ImportError
    extra = 'pip install "transferlab\\[shards\\]"'
    with pytest.raises(ConfigError, match=f"task=pack needs webdataset .*; {extra}"):
        PackSettings.from_cfg(compose_cfg("task=pack", f"task.input={packed}"))
    with pytest.raises(ConfigError, match=f"sharded data .* needs webdataset .*; {extra}"):
        data.list_images(packed / shards.MANIFEST)
