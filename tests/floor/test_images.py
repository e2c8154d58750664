import io
import os

import pytest
import torch
from PIL import Image

from helpers import make_image
from transferlab import images
from transferlab.errors import ImageError


@pytest.mark.parametrize(
    "name,mode",
    [
        ("gray.png", "L"),
        ("rgba.png", "RGBA"),
        ("la.png", "LA"),
        ("palette.png", "P"),
        ("cmyk.jpg", "CMYK"),
        ("cmyk.tiff", "CMYK"),
        ("photo.webp", "RGB"),
        ("photo.tiff", "RGB"),
        ("photo.bmp", "RGB"),
    ],
)
def test_modes_and_formats_become_rgb_in_0_1(tmp_path, name, mode):
    path = make_image(tmp_path / name, size=(40, 30), mode=mode)
    image = images.load_image(path)
    assert image.shape == (3, 30, 40) and image.dtype == torch.float32
    assert image.min() >= 0 and image.max() <= 1 and image.std() > 0.05


def test_transparent_pixels_are_shown_on_white(tmp_path):
    path = tmp_path / "clear.png"
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(path)
    assert images.load_image(path).min() == 1


def test_16_bit_grayscale_keeps_its_range(tmp_path):
    path = tmp_path / "deep.png"
    ramp = torch.linspace(0, 65535, 64 * 64).reshape(64, 64).numpy().astype("uint16")
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode == "I;16"
    image = images.load_image(path)
    assert image.max() > 0.95 and image.min() < 0.05  # not clipped to white


def test_animated_gif_uses_its_first_frame(tmp_path):
    path = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    image = images.load_image(path)
    assert image[0].mean() > 0.9 and image[2].mean() < 0.1


def test_exif_orientation_is_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, displayed rotated 90 degrees clockwise
    Image.new("RGB", (40, 20), "white").save(path, exif=exif)
    assert images.load_image(path).shape == (3, 40, 20)


def test_resize_long_side(tmp_path):
    path = make_image(tmp_path / "a.png", size=(80, 40))
    assert images.load_image(path, size=32).shape == (3, 16, 32)


@pytest.mark.parametrize(
    "setup,message",
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.write_bytes(b""), "is empty"),
        (lambda p: p.write_text("hello, not an image"), "not an image format"),
        (lambda p: p.write_text('<svg xmlns="http://www.w3.org/2000/svg"/>'), "SVG is vector art"),
    ],
    ids=["missing", "empty", "text", "svg"],
)
def test_bad_files_give_one_clear_error(tmp_path, setup, message):
    path = tmp_path / ("bad.svg" if "SVG" in message else "bad.png")
    setup(path)
    with pytest.raises(ImageError, match=message):
        images.load_image(path)


def test_truncated_image_is_refused(tmp_path):
    good = make_image(tmp_path / "good.jpg", size=(64, 64))
    bad = tmp_path / "truncated.jpg"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ImageError, match="damaged or truncated"):
        images.load_image(bad)


def test_decompression_bombs_are_refused(tmp_path, monkeypatch):
    path = make_image(tmp_path / "big.png", size=(64, 64))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 64 - 1)  # just over the limit: Pillow only warns
    with pytest.raises(ImageError, match="too large to decode safely"):
        images.load_image(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # far over: Pillow raises
    with pytest.raises(ImageError, match="too large to decode safely"):
        images.load_image(path)


@pytest.mark.parametrize("limit", [64 * 64 - 1, 100], ids=["warned", "raised"])
def test_a_doors_header_check_refuses_a_bomb_in_one_line(tmp_path, monkeypatch, recwarn, limit):
    path = make_image(tmp_path / "big.png", size=(64, 64))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    with pytest.raises(ImageError, match=r"too large to decode safely .* \(task.strength_map\); downscale it first"):
        images.check_input(path, "task.strength_map")
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


def test_save_image_is_atomic_and_round_trips(tmp_path, monkeypatch):
    image = torch.rand(3, 20, 30)
    path = images.save_image(image, tmp_path / "out" / "final.png")
    torch.testing.assert_close(images.load_image(path), image, atol=1 / 255, rtol=0)

    def crash(self, fp, *args, **kwargs):
        fp.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        images.save_image(image, tmp_path / "out" / "second.png")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["final.png"]


def test_contact_sheet_lays_out_captioned_tiles():
    tiles = [(Image.new("RGB", (64, 32), "red"), ["a=1", "loss 2"]), (Image.new("RGB", (32, 64), "blue"), ["a=2"])]
    sheet = images.contact_sheet(tiles, tile=64, columns=4)
    assert sheet.size == (128, 64 + 2 * 14 + 7)  # 11 px TrueType labels, 14 px lines
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")


@pytest.mark.parametrize("tile", [64, 128, 256, 512])
def test_contact_sheet_labels_are_truetype_and_scale_with_the_tile(tile):
    sheet = images.contact_sheet([(Image.new("RGB", (tile, tile), "white"), ["loss.style_weight=1e3"])], tile=tile)
    caption = torch.tensor(list(sheet.crop((0, tile, tile, sheet.height)).convert("L").getdata()))
    caption = caption.view(sheet.height - tile, tile) < 128
    rows, cols = caption.any(dim=1).nonzero(), caption.any(dim=0).nonzero()
    text_height = int(rows.max() - rows.min() + 1)
    # Pillow's bundled font at tile / 15 px (>= 11): about 11 px tall glyphs at 128 px tiles, 17 at 256.
    assert text_height >= max(8, tile // 24)
    assert text_height <= sheet.height - tile
    assert int(cols.max()) < tile  # the label stays inside its tile at every size


def test_the_lister_orders_names_naturally_and_skips_hidden_and_other_files(tmp_path):
    """Issue 32 item 10 and issue 23 item 4: one lister, one extension list, frame_2 before frame_10."""
    for name in ("frame_10.png", "frame_2.png", "frame_1.jpg", ".hidden.png", "notes.txt", "sub/frame_3.png"):
        make_image(tmp_path / name) if name.endswith((".png", ".jpg")) else (tmp_path / name).write_text("x")
    assert [p.name for p in images.list_images(tmp_path, recursive=False)] == [
        "frame_1.jpg",
        "frame_2.png",
        "frame_10.png",
    ]
    assert [p.relative_to(tmp_path).as_posix() for p in images.list_images(tmp_path)][-1] == "sub/frame_3.png"
    assert images.natural_key("a10b2") > images.natural_key("a2b10")


def test_the_lister_follows_each_folder_once(tmp_path):
    """Symlink loops (a link to a parent, a link to itself) and a dangling link add nothing and end."""
    make_image(tmp_path / "cls" / "a.png")
    (tmp_path / "cls" / "loop").symlink_to(tmp_path / "cls")
    (tmp_path / "cls" / "self").symlink_to(tmp_path / "cls" / "self")
    (tmp_path / "cls" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (tmp_path / "elsewhere").mkdir()
    make_image(tmp_path / "elsewhere" / "b.png")
    (tmp_path / "cls" / "linked").symlink_to(tmp_path / "elsewhere")
    assert [p.name for p in images.list_images(tmp_path / "cls")] == ["a.png", "b.png"]


def test_a_doors_check_names_an_empty_file_and_a_pipe(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty.png is empty \(0 bytes\) \(task.content\); replace it"):
        images.check_input(tmp_path / "empty.png", "task.content")
    os.mkfifo(tmp_path / "pipe.png")
    with pytest.raises(ImageError, match=r"pipe.png is not a regular file \(a pipe, device or socket\) \(task.style"):
        images.check_input(tmp_path / "pipe.png", "task.style")
    with pytest.raises(ImageError, match=r"pipe.png is not a regular file \(a pipe, device or socket\); check"):
        images.open_rgb(tmp_path / "pipe.png")


def test_a_dataset_given_for_an_image_is_refused_before_it_is_fetched(tmp_path, monkeypatch):
    from transferlab import fetch

    monkeypatch.setattr(fetch, "fetch_dataset", lambda *args: pytest.fail("fetched"))
    with pytest.raises(ImageError, match=r"^task.content=dataset:hymenoptera is a dataset, a folder of images; give"):
        images.input_file("dataset:hymenoptera", "task.content")
    with pytest.raises(ImageError, match=r"^task.style=dataset:hymenoptera/train is a dataset"):
        images.check_source("dataset:hymenoptera/train", "task.style")
    images.check_source("dataset:hymenoptera/train", "task.input", folder=True)  # the task fetches it


def test_an_unreadable_image_is_named_as_unreadable(tmp_path, monkeypatch):
    path = make_image(tmp_path / "locked.png")

    def denied(fp, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(fp))  # chmod 000 does not stop root, who runs tests

    monkeypatch.setattr(Image, "open", denied)
    with pytest.raises(ImageError, match=r"locked.png cannot be read: permission denied \(task.style\); fix its"):
        images.check_input(path, "task.style")
    with pytest.raises(ImageError, match=r"locked.png cannot be read: permission denied; fix its permissions"):
        images.open_rgb(path)


@pytest.mark.parametrize("source", [None, {"a": 1}, ["a.png"]])
def test_an_entry_that_is_no_path_is_named_as_such(source):
    with pytest.raises(ImageError, match=r"^task.style\[0\]=.* is not a path; give one image file"):
        images.input_file(source, "task.style[0]")
