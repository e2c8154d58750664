"""export_web: the folder a trained network becomes (per-style and AdaIN), its door's one-line refusals, and the page
used as a user would: served on 127.0.0.1, driven in headless Chromium, an image uploaded, the page's output pixels
equal to ONNX Runtime Python's on the same image within 1 level of 255 (the page rounds its float output to 8 bits;
WASM and the CPU build of ONNX Runtime differ by ~1e-6), a non-image upload answered by a message, the webcam
(Chromium's fake camera) stylized frame after frame."""

from __future__ import annotations

import functools
import http.server
import io
import json
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from test_stylizer import arbitrary_ckpt, per_style_ckpt

from helpers import compose_cfg, make_image, run_cli
from transferlab import fetch, images, main
from transferlab.errors import ConfigError, TransferLabError
from transferlab.fast import web
from transferlab.fast.arbitrary.networks import Pipeline
from transferlab.fast.stylizer import read_network

BROWSER = Path("/usr/bin/chromium")
# Where fetch.resolve keeps the pinned tarball: a test reads it from the cache, never from the network.
CACHED = fetch.default_cache_dir() / f"{web.ORT_SHA256[:16]}-onnxruntime-web-{web.ORT_VERSION}.tgz"


def _missing() -> str | None:
    """Why the page cannot be driven here (None: it can)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return 'playwright is not installed (pip install -e ".[dev]")'
    if not BROWSER.is_file():
        return f"no browser at {BROWSER} (apt install chromium)"
    if not CACHED.is_file():
        return f"onnxruntime-web {web.ORT_VERSION} is not in the cache: run task=export_web once online"
    return None


MISSING = _missing()


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The pinned tarball from the cache, or (no browser test then) a stand-in holding the same file names."""
    if MISSING is None:
        return CACHED, web.ORT_SHA256
    path = tmp_path_factory.mktemp("ort") / "stand-in.tgz"
    with tarfile.open(path, "w:gz") as archive:
        for name in web.ORT_FILES:
            info = tarfile.TarInfo(f"package/dist/{name}")
            info.size = 4
            archive.addfile(info, io.BytesIO(b"stub"))
    return path, fetch.sha256_of(path)


def _export(checkpoint: Path, runtime: tuple[Path, str], out: Path, *overrides: str) -> Path:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(web, "ORT_SHA256", runtime[1])
        cfg = compose_cfg(
            "task=export_web", f"ckpt_path={checkpoint}", f"task.onnxruntime_web={runtime[0]}", *overrides
        )
        main.run_task(cfg, out)
    return out


@pytest.fixture(scope="module")
def per_style(tmp_path_factory, runtime) -> Path:
    root = tmp_path_factory.mktemp("web_fast")
    return _export(per_style_ckpt(root / "fast.ckpt"), runtime, root / "run", "task.size=64")


@pytest.fixture(scope="module")
def arbitrary(tmp_path_factory, runtime) -> Path:
    root = tmp_path_factory.mktemp("web_adain")
    return _export(arbitrary_ckpt(root / "adain.ckpt"), runtime, root / "run", "task.style_size=40")


def test_the_folder_holds_the_page_the_model_and_the_runtime(per_style, arbitrary):
    for run, family, inputs in ((per_style, "per_style", ["image"]), (arbitrary, "arbitrary", ["content", "style"])):
        folder = run / "web"
        page = json.loads((folder / "model.json").read_text())
        assert page["family"] == family and page["onnxruntime_web"] == web.ORT_VERSION
        expected = {"index.html", "app.js", "model.json", "model.onnx", "ort"} | (
            {"style.png"} if page["style"] else set()
        )
        assert {p.name for p in folder.iterdir()} == expected
        assert {p.name for p in (folder / "ort").iterdir()} == {*web.ORT_FILES, "NOTICE.txt"}
        assert [p.name for p in run.iterdir() if p.name.startswith(".web")] == []  # the staging folder is gone
        assert not (run / "model.onnx").exists()
        report = json.loads((run / "export.json").read_text())  # beside the folder: it names local paths
        assert report["onnx"]["within_tolerance"] and report["folder_bytes"] > 0
        session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
        assert [i.name for i in session.get_inputs()][:2] == inputs
    style = images.load_image(arbitrary / "web" / "style.png")
    assert max(style.shape[1:]) == 40  # the bundled sample resized to task.style_size


def test_alpha_as_an_input_gives_what_export_adain_bakes_in(arbitrary):
    """The page's alpha slider feeds the model what apply_adain's and export_adain's task.alpha mean."""
    _, net, _ = read_network(arbitrary.parent / "adain.ckpt", family="arbitrary")
    g = torch.Generator().manual_seed(0)
    content, style = torch.rand(1, 3, 40, 56, generator=g), torch.rand(1, 3, 32, 32, generator=g)
    for alpha in (0.0, 0.3, 1.0):
        with torch.inference_mode():
            expected = Pipeline(net, alpha)(content, style).numpy()
        got = _onnx(
            arbitrary / "web", content=content.numpy(), style=style.numpy(), alpha=np.array([alpha], np.float32)
        )
        assert np.abs(got - expected[0]).max() < 1e-4


def test_an_interrupted_export_leaves_no_folder(runtime, tmp_path, monkeypatch):
    """Ctrl-C while the runtime is copied: neither web/ nor its staging folder is left."""

    def exported(network, example, check, signature, options, output_dir, report):
        (output_dir / "model.onnx").write_bytes(b"model")
        return {**report, "onnx": {"max_abs_diff": 0.0}}

    def interrupted(tarball, folder):
        folder.mkdir()
        raise KeyboardInterrupt

    monkeypatch.setattr(web.exporter, "export", exported)
    monkeypatch.setattr(web, "copy_runtime", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _export(per_style_ckpt(tmp_path / "fast.ckpt"), runtime, tmp_path / "run")
    assert not list((tmp_path / "run").glob("*web*"))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["task.size=4"], r"task.size=4 is invalid"),
        (["task.style_size=8"], r"task.style_size=8 is invalid"),
        (
            ["task.onnxruntime_web=missing.tgz"],
            r"task.onnxruntime_web=missing.tgz does not exist; give onnxruntime-web-",
        ),
        (["task.style=missing.png"], r"missing.png does not exist \(task.style\)"),
    ],
)
def test_bad_keys_are_one_line(overrides, message, tmp_path):
    ckpt = per_style_ckpt(tmp_path / "fast.ckpt")
    with pytest.raises(TransferLabError, match=message) as info:
        main.run_task(compose_cfg("task=export_web", f"ckpt_path={ckpt}", *overrides), tmp_path / "run")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "run" / "web").exists()


def test_a_per_style_network_refuses_a_style_and_another_tarball_is_refused(tmp_path):
    ckpt = per_style_ckpt(tmp_path / "fast.ckpt")
    style = make_image(tmp_path / "style.png")
    with pytest.raises(ConfigError, match=r"is a per-style network \(its style is trained in\): drop task.style"):
        main.run_task(compose_cfg("task=export_web", f"ckpt_path={ckpt}", f"task.style={style}"), tmp_path / "a")
    (tmp_path / "other.tgz").write_bytes(b"not the release")
    with pytest.raises(ConfigError, match=rf"other.tgz is not onnxruntime-web {web.ORT_VERSION} \(its sha256"):
        main.run_task(
            compose_cfg("task=export_web", f"ckpt_path={ckpt}", f"task.onnxruntime_web={tmp_path / 'other.tgz'}"),
            tmp_path / "b",
        )
    assert not (tmp_path / "b" / "web").exists()


@pytest.mark.slow
def test_bad_keys_exit_2_naming_each(tmp_path):
    result = run_cli(
        "task=export_web", "ckpt_path=missing.ckpt", "task.size=2", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path
    )
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert any("ckpt_path=missing.ckpt" in line for line in lines) and any("task.size=2" in line for line in lines)
    assert "Traceback" not in result.stderr


# --- the page in a browser ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if MISSING:
        pytest.skip(f"no browser test: {MISSING}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # A fake camera (a moving test pattern) that the page may open without asking.
        fake_camera = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
        chromium = p.chromium.launch(executable_path=str(BROWSER), args=fake_camera)
        yield chromium
        chromium.close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def serve() -> Iterator:
    """``serve(folder)``: the folder's URL on 127.0.0.1, as python -m http.server serves it."""
    servers = []

    def start(folder: Path) -> str:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _open(browser, url: str):
    page = browser.new_page()
    page.goto(url + "?backend=wasm")  # WASM: what every browser has; the WebGPU path needs a GPU
    page.wait_for_selector("body[data-state]", state="attached", timeout=120_000)
    assert page.get_attribute("body", "data-state") == "ready", page.inner_text("#error")
    return page


def _upload(page, path: Path, frames: int) -> None:
    page.set_input_files("#content-file", str(path))
    page.wait_for_selector(f"body[data-frames='{frames}'], body[data-state='error']", state="attached", timeout=60_000)


def _output(page) -> np.ndarray:
    """The page's stylized canvas as ``[3, H, W]`` 0-255 integers."""
    data = page.evaluate(
        "() => { const c = document.getElementById('output'); const pixels = c.getContext('2d')"
        ".getImageData(0, 0, c.width, c.height).data; return Array.from(pixels).concat([c.width, c.height]); }"
    )
    w, h = data[-2:]
    return np.array(data[:-2], np.int64).reshape(h, w, 4)[..., :3].transpose(2, 0, 1)


def _onnx(folder: Path, **feeds: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0][0]


def _pixels(path: Path) -> np.ndarray:
    return images.load_image(path).unsqueeze(0).numpy()


def test_the_page_stylizes_an_upload_as_onnxruntime_does(browser, serve, per_style, tmp_path):
    page = _open(browser, serve(per_style / "web"))
    fake = tmp_path / "photo.png"
    fake.write_text("<script>document.title = 'ran'</script>")  # not an image: a message, not a broken page
    _upload(page, fake, 1)
    assert "“photo.png” is not an image this browser can decode" in page.inner_text("#error")
    assert page.title() == "transferlab stylizer"
    content = make_image(tmp_path / "content.png", size=(60, 44), seed=5)
    _upload(page, content, 1)
    assert page.get_attribute("body", "data-state") == "done" and not page.is_visible("#error")
    expected = _onnx(per_style / "web", image=_pixels(content)) * 255
    got = _output(page)
    assert got.shape == expected.shape and np.abs(got - expected).max() <= 1.0
    assert "frames per second" in page.inner_text("#timing")
    page.select_option("#size", index=0)  # task.size=64: the camera's 640 x 480 at 64 x 48
    page.click("#webcam")  # frames keep coming from the camera until it is stopped
    deadline, frames = time.monotonic() + 60, int(page.get_attribute("body", "data-frames"))
    while int(page.get_attribute("body", "data-frames")) < frames + 3 and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert int(page.get_attribute("body", "data-frames")) >= frames + 3 and _output(page).shape[1:] == (48, 64)
    page.click("#webcam")
    assert page.inner_text("#webcam") == "Start webcam"


def test_the_adain_page_takes_alpha_and_strength_as_onnxruntime_does(browser, serve, arbitrary, tmp_path):
    page = _open(browser, serve(arbitrary / "web"))
    assert page.is_visible("#alpha") and page.is_visible("#style-file")
    page.fill("#alpha", "0.5")
    page.fill("#strength", "0.75")
    content = make_image(tmp_path / "content.png", size=(52, 40), seed=6)
    _upload(page, content, 1)
    assert page.get_attribute("body", "data-state") == "done", page.inner_text("#error")
    c = _pixels(content)
    style = _pixels(arbitrary / "web" / "style.png")
    stylized = _onnx(arbitrary / "web", content=c, style=style, alpha=np.array([0.5], np.float32))
    expected = (c[0] + 0.75 * (stylized - c[0])) * 255
    assert np.abs(_output(page) - expected).max() <= 1.0
