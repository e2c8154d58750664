"""Style from words: the text losses against their definitions, stylize with a prompt through a colour model of
our own (whose meaning is known) and through a random-init open_clip model (transferlab-tiny), and the door's
one-line refusals."""

import json
import pickle

import pytest
import torch
import torch.nn.functional as F
from colour_clip import ColourClip, blueness, redness

from helpers import compose_cfg, sweep_in_process
from transferlab import images, main, text, textloss
from transferlab.errors import ConfigError, WeightsError
from transferlab.style import task as stylize
from transferlab.style.settings import StyleSettings

pytest.importorskip("open_clip")

# VGG only to johnson's content layer relu2_2 (a prompt alone has no style layers): a step costs little.
TINY = ("text=tiny", "loss.text_crops=4", "loss.text_crop_size=16", "layers=johnson")


def text_cfg(content_path, prompt, *overrides, size=48, steps=3):
    return compose_cfg(
        "model.weights=null",
        f"task.content={content_path}",
        f"task.style_text='{prompt}'",
        "optimizer=adam",
        f"task.size={size}",
        f"task.steps={steps}",
        "task.image_every=0",
        "trainer.accelerator=cpu",
        *TINY,
        *overrides,
    )


def settings(s, **loss):
    values = {"direction_weight": 1.0, "patch_weight": 1.0, "crops": 4, "crop_size": 16, "distortion": 0.5}
    return textloss.TextLossSettings(**(values | {"threshold": 0.7} | loss))


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: these tensors are too small to split, and on a shared 2-core CPU two threads wait
    on each other at every op (as tests/fast/conftest.py says)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# The loss pieces against their definitions (textloss's docstring).


def test_text_direction_and_directional_cosine_match_their_definitions():
    model = ColourClip()
    t = textloss.text_direction(model, "red", "a photo")
    red, photo = model.encode_text(["red"])[0], model.encode_text(["a photo"])[0]
    expected = red / red.norm() - photo / photo.norm()
    assert torch.allclose(t, expected / expected.norm())
    views, content = torch.randn(5, 4), F.normalize(torch.randn(1, 4), dim=-1)
    d = views / views.norm(dim=1, keepdim=True) - content
    by_hand = 1 - (d @ t) / (d.norm(dim=1) * t.norm())
    assert torch.allclose(textloss.direction_loss(views, content, t), by_hand, atol=1e-6)


def test_patch_rejection_zeroes_the_patches_below_the_threshold_and_keeps_them_in_the_mean():
    losses = torch.tensor([0.1, 0.69, 0.7, 1.5])
    assert textloss.rejected(losses, 0.7).tolist() == pytest.approx([0.0, 0.0, 0.7, 1.5])
    model = ColourClip()
    loss = textloss.TextLoss(model, textloss.text_direction(model, "red", "a photo"), settings(None))
    image, content = torch.rand(2, 3, 24, 24), torch.rand(2, 3, 24, 24)
    torch.manual_seed(3)
    parts = loss.parts(image, content)
    torch.manual_seed(3)
    patches = textloss.patch_views(image, 4, 16, 0.5, model.input_size)
    source = F.normalize(model.encode_image(F.interpolate(content, size=16, mode="bilinear", antialias=True)), dim=-1)
    per_patch = textloss.direction_loss(model.encode_image(patches), source.repeat_interleave(4, 0), loss.direction)
    assert float(parts["text_patch"]) == pytest.approx(float(torch.where(per_patch >= 0.7, per_patch, 0).mean()))
    seen = F.interpolate(image, size=16, mode="bilinear", antialias=True)
    assert float(parts["text_direction"]) == pytest.approx(
        float(textloss.direction_loss(model.encode_image(seen), source, loss.direction).mean())
    )


def test_crops_without_distortion_are_the_crops_themselves():
    image = torch.rand(2, 3, 20, 30)
    torch.manual_seed(0)
    views = textloss.patch_views(image, 3, 8, 0.0, 8)
    torch.manual_seed(0)
    top, left = torch.randint(0, 13, (6,)), torch.randint(0, 23, (6,))
    crops = [image[i // 3, :, t : t + 8, x : x + 8] for i, (t, x) in enumerate(zip(top.tolist(), left.tolist()))]
    assert views.shape == (6, 3, 8, 8)
    assert torch.allclose(views, torch.stack(crops), atol=1e-5)


def test_a_prompt_equal_to_the_source_has_no_direction_and_zero_terms():
    model = ColourClip()
    loss = textloss.TextLoss(model, textloss.text_direction(model, "a photo", "a photo"), settings(None))
    image = torch.rand(1, 3, 24, 24, requires_grad=True)
    loss.set_content(torch.rand(1, 3, 24, 24))
    value = loss(image)
    assert float(value) == 0 and not value.requires_grad


# Stylize with a prompt, through the colour model: the meaning of the result can be judged.


@pytest.fixture
def colour_model(monkeypatch):
    monkeypatch.setattr(text, "build", lambda s: ColourClip())


def test_the_text_terms_move_the_hue_toward_red_and_keep_the_structure(tmp_path, content_path, colour_model):
    main.run_task(text_cfg(content_path, "red", "task.steps=10", "task.lr=0.01"), tmp_path)
    final, content = images.load_image(tmp_path / "final.png", 48), images.load_image(content_path, 48)
    assert redness(final) > redness(content) + 0.05
    assert json.loads((tmp_path / "metrics.json").read_text())["quality_ssim"] > 0.85
    assert json.loads((tmp_path / "result.json").read_text())["caption"][0] == '"red"'


def test_coarse_to_fine_and_a_strength_map_work_with_a_prompt(tmp_path, content_path, colour_model):
    strength = torch.zeros(1, 40, 48)
    strength[..., 24:] = 1  # the prompt applies on the right half only
    images.save_image(strength.expand(3, -1, -1), tmp_path / "strength.png")
    overrides = ("task.scales=[32]", "task.scale_steps=[3]", f"task.strength_map={tmp_path / 'strength.png'}")
    main.run_task(text_cfg(content_path, "red", *overrides, "task.steps=4", "task.lr=0.02"), tmp_path / "run")
    final, content = images.load_image(tmp_path / "run" / "final.png", 48), images.load_image(content_path, 48)
    assert torch.equal(final[..., :24], content[..., :24])  # zero strength: exactly the content
    assert redness(final[..., 24:]) > redness(content[..., 24:]) + 0.02


def test_luminance_mode_keeps_the_content_colours(tmp_path, content_path, colour_model):
    main.run_task(text_cfg(content_path, "red", "task.color=luminance", "task.lr=0.02"), tmp_path)
    final, content = images.load_image(tmp_path / "final.png", 48), images.load_image(content_path, 48)
    assert abs(redness(final) - redness(content)) < 0.02


def test_the_directional_and_patch_terms_alone_move_the_hue_toward_blue():
    model = ColourClip()
    loss = textloss.TextLoss(model, textloss.text_direction(model, "blue", "a photo"), settings(None))
    content = torch.rand(1, 3, 32, 32)
    loss.set_content(content)
    image = content.clone().requires_grad_()
    optimizer = torch.optim.Adam([image], lr=0.01)
    for _ in range(15):
        optimizer.zero_grad()
        loss(image).backward()
        optimizer.step()
    assert blueness(image.detach()[0]) > blueness(content[0]) + 0.05


def test_a_prompt_equal_to_the_source_text_changes_nothing(tmp_path, content_path, colour_model):
    main.run_task(text_cfg(content_path, "a photo", "task.steps=5"), tmp_path)
    assert json.loads((tmp_path / "metrics.json").read_text())["loss_text"] == 0
    assert torch.equal(images.load_image(tmp_path / "final.png", 48), images.load_image(content_path, 48))


# Through a random-init open_clip model (transferlab-tiny, built from its config: no download).


def test_open_clip_model_shapes_and_dtypes(content_path):
    s = StyleSettings.from_cfg(text_cfg(content_path, "a watercolor painting")).text
    model = text.build(s)
    assert model.input_size == 32 and not any(p.requires_grad for p in model.parameters())
    embedded = model.encode_image(torch.rand(3, 3, 32, 32))
    assert embedded.shape == (3, 32) and embedded.dtype == torch.float32
    assert model.encode_text(["a", "b c"]).shape == (2, 32)
    loss = text.text_loss(s, model)
    loss.set_content(torch.rand(1, 3, 40, 48))
    parts = loss.parts(torch.rand(1, 3, 40, 48))
    assert set(parts) == {"text_direction", "text_patch"} and all(v.shape == () for v in parts.values())


def test_text_loss_decreases_and_is_deterministic_under_a_seed(content_path):
    s = StyleSettings.from_cfg(text_cfg(content_path, "a watercolor painting")).text

    def run():
        torch.manual_seed(0)
        loss = text.text_loss(s)
        image = torch.rand(1, 3, 32, 32).requires_grad_()
        loss.set_content(torch.rand(1, 3, 32, 32))
        optimizer = torch.optim.Adam([image], lr=0.01)
        values = []
        for _ in range(8):
            optimizer.zero_grad()
            value = loss(image)
            value.backward()
            optimizer.step()
            values.append(float(value.detach()))
        return values

    first = run()
    assert first == run()
    assert first[-1] < first[0]


def test_stylize_with_a_prompt_runs_vgg_and_clip_once_per_evaluation(tmp_path, content_path):
    module, _ = stylize.build(StyleSettings.from_cfg(text_cfg(content_path, "a watercolor painting")))
    assert module.perceptual.style_layers == {} and "loss/text" in module.perceptual.extra
    module.on_fit_start()
    calls = {"vgg": 0, "clip": 0}
    module.encoder.register_forward_hook(lambda *a: calls.__setitem__("vgg", calls["vgg"] + 1))
    module.text.model.model.visual.register_forward_hook(lambda *a: calls.__setitem__("clip", calls["clip"] + 1))
    module.text.model.model.token_embedding.register_forward_hook(lambda *a: calls.__setitem__("text", 1))
    terms = module.losses()
    assert calls == {"vgg": 1, "clip": 1}  # and the text tower not at all: the direction was computed once
    assert set(terms) == {"loss/content", "loss/text", "loss/total"}


def test_text_sweep_writes_a_contact_sheet_captioned_by_prompt(tmp_path, content_path):
    common = list(text_cfg_overrides(content_path))
    sheet = sweep_in_process(tmp_path, common, "task.style_text", ["red", "'a blue sea'"])
    assert sheet.is_file()
    captions = [json.loads((tmp_path / str(i) / "result.json").read_text())["caption"][0] for i in range(2)]
    assert captions == ['"red"', '"a blue sea"']
    assert json.loads((tmp_path / "0" / "metrics.json").read_text())["text_weights"] == "random"


def text_cfg_overrides(content_path):
    yield from ("model.weights=null", f"task.content={content_path}", "optimizer=adam", "task.size=32")
    yield from ("task.steps=1", "task.image_every=0", "trainer.accelerator=cpu", *TINY)


# Bad input: one line each, naming the key and the fix.


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["task.style_text=''"], "task.style_text='' is empty; give a prompt"),
        ([f"task.style_text={'x' * 10_000}"], "task.style_text has 10000 characters; a prompt may have at most 1000"),
        ([f"task.style_text='{'paint ' * 150}'"], "task.style_text fills the model's 77-token context"),
        (["task.source_text=' '"], "task.source_text=' ' is empty"),
        (["task.style_text=42"], "task.style_text=42 is not text; quote it: task.style_text='42'"),
        (["text.model=ViT-Nope"], "text.model='ViT-Nope' is not an open_clip model"),
        (["text.model=ViT-B-32", "text.weights=nope"], "text.weights='nope' is not a pretrained tag of ViT-B-32"),
        (["text.weights=/nonexistent/clip.pt"], "text.weights=/nonexistent/clip.pt does not exist"),
        (["optimizer=lbfgs"], "task.style_text needs optimizer=adam"),
        (["task.init=style"], "task.init=style needs a style image"),
        (["task.color=histogram"], "task.color=histogram needs a style image"),
        (["task.style_masks=[m.png]"], "task.style_masks has 1 masks for 0 styles"),
    ],
)
def test_bad_text_inputs_are_one_line(content_path, overrides, message):
    cfg = text_cfg(content_path, "a watercolor painting", *overrides)
    with pytest.raises((ConfigError, WeightsError)) as error:
        StyleSettings.from_cfg(cfg)
    assert message in str(error.value) and "\n" not in str(error.value)


class Exploit:
    def __reduce__(self):
        return (print, ("the weights file ran code",))


@pytest.mark.parametrize("kind", ["corrupt", "malicious", "not a state dict", "wrong shapes"])
def test_bad_weights_files_are_one_line(tmp_path, kind):
    path = tmp_path / "clip.pt"
    if kind == "corrupt":
        path.write_bytes(b"not a torch file")
    elif kind == "malicious":
        path.write_bytes(pickle.dumps(Exploit()))
    else:
        torch.save([1, 2] if kind == "not a state dict" else {"visual.proj": torch.zeros(2)}, path)
    with pytest.raises(WeightsError) as error:
        text.build(text.TextSettings("transferlab-tiny", str(path), "a watercolor painting", "a photo", settings(None)))
    assert f"text.weights={path}" in str(error.value) and "\n" not in str(error.value)
    assert "weights_only=False" not in str(error.value)
