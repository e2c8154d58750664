"""The AdaIN tasks: train_adain (metrics, checkpoints, preview grid, exact resume), apply_adain (controls,
style codes once), export_adain (ONNX and torch.export parity), each for the VGG19 decoder and the light
network; the controls at image level, bad input in one line, configs that compose. Random weights, 32-64 px
images, 2 training steps."""

import json

import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from helpers import (
    ADAIN_LIGHT,
    ADAIN_TINY,
    ROOT,
    adain_train_cfg,
    apply_outputs,
    check_dashboard,
    compose_cfg,
    dashboard,
    hparams_columns,
    lively,
    make_image,
    sweep_in_process,
    tile_mean,
)
from transferlab import images, main, sweep
from transferlab.errors import ConfigError, DataError, WeightsError
from transferlab.fast.arbitrary import ops as A
from transferlab.fast.arbitrary.module import preview_cards, preview_grid
from transferlab.fast.arbitrary.networks import AdaINNet
from transferlab.fast.arbitrary.settings import ApplyAdaINSettings, TrainAdaINSettings
from transferlab.fast.stylizer import read_network

ENCODERS = {"vgg19": (), "light": ADAIN_LIGHT}


@pytest.fixture(scope="module", params=list(ENCODERS))
def encoder(request):
    """Each test of a trained network runs for the VGG19 decoder and for the light network."""
    return ENCODERS[request.param]


@pytest.fixture(scope="module")
def trained(photos, styles, encoder, tmp_path_factory):
    out = tmp_path_factory.mktemp("adain")
    main.run_task(adain_train_cfg(photos, styles, *encoder), out)
    return out


def test_run_writes_metrics_checkpoints_and_the_grid(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["task"] == "train_adain" and metrics["steps"] == 2 and metrics["weights"] == "random"
    assert {"val/loss", "val/content", "val/style", "val/style_relu1_1"} <= set(metrics)
    assert all((trained / "checkpoints" / f"{n}.ckpt").is_file() for n in ("step1", "step2", "last"))
    events = EventAccumulator(str(trained / "tensorboard")).Reload()
    # TensorBoard: the 2 photos (after a blank), then each of the 2 styles and its 2 outputs, 3 tiles of 24 px a row
    assert events.Tags()["images"] == ["visuals/val/photos", "visuals/val/style_0", "visuals/val/style_1"]
    card = events.Images("visuals/val/style_1")[-1]
    assert (card.height, card.width) == (26 + 2, 3 * 26 + 2)
    grid = Image.open(trained / "val_grid.png")  # the contact sheet's: a header row, then a row per style
    assert grid.size == (3 * 26 + 2, 3 * 26 + 2)
    assert "train/style_relu4_1" in events.Tags()["scalars"]


def test_preview_grid_has_the_photos_across_and_the_styles_down():
    """8 photos (the default data.val_count) in 2 batches, 4 styles: a header row of the photos, then per style
    the style and its 8 stylizations: 9 x 5 tiles, wider than tall (TensorBoard's card is)."""
    styles = torch.stack([torch.full((3, 20, 20), 0.1 * (j + 1)) for j in range(4)])
    batch = [torch.full((4, 3, 20, 20), 0.9)]
    tiles = [torch.full((4, 3, 20, 20), 0.1 * (j + 1)) for j in range(4)] + batch  # a batch: 4 outputs, photos
    grid = preview_grid(tiles * 2, styles, 16)
    assert grid.shape == (3, 5 * 18 + 2, 9 * 18 + 2)
    assert [tile_mean(grid, 0, c, 16) for c in (0, 1, 8)] == [1, 0.9, 0.9]  # blank, then the photos
    assert [tile_mean(grid, r, c, 16) for r in (1, 4) for c in (0, 1, 8)] == [
        0.1,
        0.1,
        0.1,
        0.4,
        0.4,
        0.4,
    ]  # a style, its outputs


def test_preview_cards_keep_three_tiles_across():
    """8 photos, 4 styles of 128 px: TensorBoard gets the photos (after a blank) and each style before its
    8 outputs, 3 x 3 tiles each (about 128 px a tile in its card), the photos' image first."""
    styles = torch.stack([torch.full((3, 20, 20), 0.1 * (j + 1)) for j in range(4)])
    batch = [torch.full((4, 3, 20, 20), 0.9)]
    tiles = [torch.full((4, 3, 20, 20), 0.1 * (j + 1)) for j in range(4)] + batch
    cards = preview_cards(tiles * 2, styles, 128)
    assert list(cards) == sorted(cards) == ["visuals/val/photos", *(f"visuals/val/style_{k}" for k in range(4))]
    assert {c.shape for c in cards.values()} == {(3, 3 * 130 + 2, 3 * 130 + 2)}
    assert [tile_mean(cards["visuals/val/photos"], r, c, 128) for r, c in ((0, 0), (0, 1), (2, 2))] == [1, 0.9, 0.9]
    assert [tile_mean(cards["visuals/val/style_2"], r, c, 128) for r, c in ((0, 0), (2, 2))] == [0.3, 0.3]


def test_dashboard_opens_on_the_losses_and_hparams_show_what_matters(trained):
    """train/ and val/ first, the grid under visuals/ at the validation's step (2 steps, validated once);
    HParams: the settings that tell runs apart, random weights named."""
    check_dashboard(trained, ["train", "val"], single=("val/",))
    events = dashboard(trained)
    assert [s.step for s in events.Scalars("val/loss")] == [2] == [s.step for s in events.Images("visuals/val/photos")]
    hp = OmegaConf.load(trained / "tensorboard" / "hparams" / "hparams.yaml")
    assert hp["model.weights"] == "random" and {"task.arch", "task.encoder", "loss.style_weight"} <= set(hp)
    assert len(hparams_columns(trained)) <= 20


def test_resume_is_exact(trained, encoder, photos, styles, tmp_path):
    resume = f"ckpt_path={trained / 'checkpoints' / 'step1.ckpt'}"
    main.run_task(adain_train_cfg(photos, styles, *encoder, resume), tmp_path)
    a = read_network(trained / "checkpoints" / "last.ckpt", family="arbitrary")[1].state_dict()
    b = read_network(tmp_path / "checkpoints" / "last.ckpt", family="arbitrary")[1].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_sweep_of_two_jobs_writes_a_contact_sheet(photos, styles, tmp_path):
    """A tile per job (its final validation grid), captioned by its result; HParams lead with the swept key."""
    common = [*ADAIN_TINY, f"data.root={photos}", f"task.styles={styles}", "task.checkpoint_every=0"]
    sheet = Image.open(sweep_in_process(tmp_path, common, "loss.style_weight", ["1", "10"]))
    assert sheet.width == 2 * 256
    assert images.open_rgb(tmp_path / "0" / "val_grid.png").size == (3 * 26 + 2, 3 * 26 + 2)
    assert sweep.labels(sweep.job_dirs(tmp_path))[1][0] == "loss.style_weight=10"
    assert hparams_columns(tmp_path / "0")[0] == "* loss.style_weight"


def test_resume_from_another_family_or_with_other_styles_is_refused(trained, encoder, photos, styles, tmp_path):
    """Issue 32 items 1-2: train_adain checks its checkpoint and fingerprint (style folder, data, network)
    before Lightning; before, a train_fast checkpoint was a traceback and other styles were accepted."""
    ckpt = torch.load(trained / "checkpoints" / "step1.ckpt", weights_only=True)
    ckpt["train_fast"] = ckpt.pop("train_adain")
    torch.save(ckpt, tmp_path / "fast.ckpt")
    with pytest.raises(WeightsError, match=r"not written by a task=train_adain run"):
        main.run_task(adain_train_cfg(photos, styles, *encoder, f"ckpt_path={tmp_path / 'fast.ckpt'}"), tmp_path / "a")
    other = tmp_path / "styles"
    make_image(other / "s0.png", size=(44, 40), seed=1)
    make_image(other / "s1.png", size=(48, 40), seed=2)
    resume = f"ckpt_path={trained / 'checkpoints' / 'step1.ckpt'}"
    with pytest.raises(ConfigError, match=r"was made with other task.styles\b"):
        main.run_task(adain_train_cfg(photos, other, *encoder, resume), tmp_path / "b")
    with pytest.raises(ConfigError, match=r"was made with other loss\b"):
        main.run_task(adain_train_cfg(photos, styles, *encoder, resume, "loss.style_weight=3"), tmp_path / "c")


@pytest.fixture(scope="module")
def net():
    net = AdaINNet().eval()
    net.load_state_dict(lively(net.state_dict()))
    return net


def test_image_level_controls(net):
    """alpha=0 decodes the content's own features; a zero strength map equals alpha=0; a zero mask
    leaves its style out; any size in, the same size out."""
    g = torch.Generator().manual_seed(1)
    content = torch.rand(2, 3, 37, 29, generator=g)
    a, b = (net.code(torch.rand(1, 3, 32, 40, generator=g) * k) for k in (1.0, 0.3))
    with torch.no_grad():
        plain = net.stylize(content, [a], alpha=0.0)
        assert plain.shape == content.shape
        padded = torch.nn.functional.pad(content, (0, 3, 0, 3), mode="replicate")
        decoded = net.decoder(net.encode(padded)["relu4_1"])[..., :37, :29].clamp(0, 1)
        exact = {"atol": 1e-6, "rtol": 0}
        torch.testing.assert_close(plain, decoded, **exact)
        zero = torch.zeros(1, 1, 9, 7)
        torch.testing.assert_close(net.stylize(content, [a], strength=zero), plain, **exact)
        masked = net.stylize(content, [a, b], masks=[torch.ones(1, 1, 5, 5), zero])
        torch.testing.assert_close(masked, net.stylize(content, [a]), **exact)
        # the comparisons above are not vacuous: style and alpha change the image
        assert (net.stylize(content, [b]) - masked).abs().max() > 1e-2
        assert (plain - masked).abs().max() > 1e-2


def test_blend_weights_sum_to_one_and_blend_the_codes(photos, styles):
    cfg = compose_cfg(
        "task=apply_adain", f"ckpt_path={ROOT / 'pyproject.toml'}", "task.input=x.png", "task.style=[a.png,b.png]"
    )
    with pytest.raises(Exception, match="is not a .ckpt or .onnx file"):
        ApplyAdaINSettings.from_cfg(cfg)
    ckpt = photos / "fake.ckpt"
    ckpt.write_bytes(b"")
    a, b = (make_image(photos.parent / f"{name}.png") for name in "ab")  # the door checks the files exist
    cfg = compose_cfg(
        "task=apply_adain",
        f"ckpt_path={ckpt}",
        f"task.input={a}",
        f"task.style=[{a},{b}]",
        "task.style_weights=[2,6]",
    )
    assert ApplyAdaINSettings.from_cfg(cfg).style_weights == (0.25, 0.75)


def test_apply_with_masks_strength_and_colour_keeps_sizes(trained, styles, tmp_path):
    make_image(tmp_path / "in" / "a.png", size=(33, 21), seed=1)
    make_image(tmp_path / "in" / "sub" / "b.jpg", size=(40, 51), seed=2)
    mask = make_image(tmp_path / "mask.png", size=(20, 20), seed=3)
    cfg = compose_cfg(
        "task=apply_adain",
        f"ckpt_path={trained / 'checkpoints' / 'last.ckpt'}",
        f"task.input={tmp_path / 'in'}",
        f"task.style=[{styles / 's0.png'},{styles / 's1.png'}]",
        f"task.style_masks=[{mask},{mask}]",
        f"task.strength_map={mask}",
        "task.style_size=32",
        "task.alpha=0.7",
        "task.color=luminance",
        "trainer.accelerator=cpu",
    )
    main.run_task(cfg, tmp_path / "run")
    assert len(apply_outputs(tmp_path / "run")) == 2
    report = json.loads((tmp_path / "run" / "apply.json").read_text())
    assert report["alpha"] == 0.7 and report["style_weights"] is None and len(report["style_masks"]) == 2


@pytest.mark.slow  # two exports of the whole pipeline: about 10 s
def test_export_parity_onnx_and_torch_export(trained, tmp_path):
    checkpoint = torch.load(trained / "checkpoints" / "last.ckpt", weights_only=True)
    checkpoint["state_dict"] = lively(checkpoint["state_dict"])  # outputs that differ between inputs
    torch.save(checkpoint, tmp_path / "lively.ckpt")
    net = read_network(tmp_path / "lively.ckpt", family="arbitrary")[1]
    with torch.no_grad():
        x = net.stylize(torch.rand(2, 3, 32, 32), [net.code(torch.rand(1, 3, 32, 32))])
    assert x.std() > 1e-2 and 0 < x.mean() < 1
    cfg = compose_cfg("task=export_adain", f"ckpt_path={tmp_path / 'lively.ckpt'}")
    main.run_task(cfg, tmp_path)
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert report["check_shape"] == [[3, 3, 67, 45], [1, 3, 50, 61]]
    assert report["onnx"]["max_abs_diff"] < 1e-4 and report["pt2"]["max_abs_diff"] < 1e-4
    assert json.loads((tmp_path / "export.json").read_text())["inputs"]["style"]["shape"] == [1, 3, "h", "w"]


@pytest.mark.parametrize(
    "override,message",
    [
        ("model=vgg16", r"model.arch='vgg16': the AdaIN decoder mirrors VGG19; use model=vgg19"),
        ("data.crop=36", r"data.crop=36 is invalid; it must be a multiple of 8"),
        ("+layers.content.relu3_1=1", r"layers.content=\['relu4_1', 'relu3_1'\]: AdaIN's content target is relu4_1"),
        ("+layers.style.relu5_1=1", r"layers.style: relu5_1 lie past relu4_1"),
        (
            "task.arch=adaattn",
            r"layers.content=\['relu4_1'\]: AdaAttN's content target is relu2_1, .*; use layers=adaattn",
        ),
        (
            "task.arch=sanet layers=sanet +layers.style.relu5_2=1",
            r"layers.style: relu5_2 lie past relu5_1, where task.arch=sanet",
        ),
        ("task.style_resize=16", r"task.style_resize=16 is invalid; it must be an integer >= 256"),
        ("optimizer=sgd", r"optimizer.name='sgd' is invalid"),
    ],
)
def test_bad_train_config_is_one_line(override, message):
    cfg = compose_cfg("task=train_adain", "data.root=x", "task.styles=y", *override.split())
    with pytest.raises(Exception, match=message) as info:
        TrainAdaINSettings.from_cfg(cfg)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["task.style_weights=[1,1]", "task.style_masks=[m.png,m.png]"], r"style_weights and task.style_masks both"),
        (["task.style_weights=[1]"], r"task.style_weights has 1 values for 2 styles"),
        (["task.style_masks=[m.png]"], r"task.style_masks has 1 masks for 2 styles"),
        (["task.alpha=1.5"], r"task.alpha=1.5 is invalid; it must be in \[0, 1\]"),
        (["task.style=[]"], r"task.style is empty"),
        (["task.color=sepia"], r"task.color='sepia' is invalid"),
    ],
)
def test_bad_apply_config_is_one_line(overrides, message, photos):
    ckpt = photos / "fake.ckpt"
    ckpt.write_bytes(b"")
    cfg = compose_cfg(
        "task=apply_adain", f"ckpt_path={ckpt}", "task.input=x.png", "task.style=[a.png,b.png]", *overrides
    )
    with pytest.raises(Exception, match=message) as info:
        ApplyAdaINSettings.from_cfg(cfg)
    assert "\n" not in str(info.value)


def test_bad_files_are_one_line(photos, styles, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"task.styles=.*empty holds no images") as info:
        main.run_task(adain_train_cfg(photos, tmp_path / "empty"), tmp_path / "run")
    assert "\n" not in str(info.value)
    torch.save({"weight": torch.zeros(1)}, tmp_path / "plain.ckpt")
    cfg = compose_cfg(
        "task=apply_adain",
        f"ckpt_path={tmp_path / 'plain.ckpt'}",
        f"task.input={photos}",
        f"task.style={styles}/s0.png",
    )
    with pytest.raises(WeightsError, match="is not a train_adain checkpoint") as info:
        main.run_task(cfg, tmp_path / "run2")
    assert "\n" not in str(info.value)


def test_configs_compose_and_the_experiment_paths_exist(hymenoptera):
    for task in ("train_adain", "apply_adain", "export_adain"):
        assert compose_cfg(f"task={task}").task.name == task
    s = TrainAdaINSettings.from_cfg(compose_cfg("experiment=adain_hymenoptera"))
    assert s.weights == "IMAGENET1K_V1" and list(s.style_layers) == ["relu1_1", "relu2_1", "relu3_1", "relu4_1"]
    assert s.style_weight == 40.0 and abs(sum(s.style_layers.values()) - 1) < 1e-9
    assert s.photos.root.is_dir() and s.styles.is_dir()  # the fetched dataset and the bundled paintings
    assert len(list(s.styles.glob("*.jpg"))) == 5


def test_sanet_stylizes_with_attention_and_blends_its_targets():
    """A SANet network's stylize attends over each style's relu4_1 map; weights blend the per-style targets."""
    torch.manual_seed(0)
    net = AdaINNet(arch="sanet").eval()
    net.load_state_dict(lively(net.state_dict()))
    g = torch.Generator().manual_seed(2)
    content = torch.rand(1, 3, 32, 40, generator=g)
    styles = [torch.rand(1, 3, 32, 32, generator=g) * k for k in (1.0, 0.3)]
    with torch.no_grad():
        a, b = (net.code(s) for s in styles)
        c = net.encode(content)
        fa, fb = (net.attention(c, net.encode(s))["relu4_1"] for s in styles)
        torch.testing.assert_close(net.stylize(content, [a]), net.decoder(fa).clamp(0, 1))
        blended = net.decoder(0.25 * fa + 0.75 * fb).clamp(0, 1)
        torch.testing.assert_close(net.stylize(content, [a, b], masks=A.blend_masks([1, 3])), blended)
        assert (net.stylize(content, [a]) - net.stylize(content, [b])).abs().max() > 1e-2


@pytest.mark.slow  # a training run, an apply and two exports: about 15 s each
@pytest.mark.parametrize("arch", ["sanet", "adaattn"])
def test_attention_archs_are_task_options_end_to_end(arch, photos, styles, tmp_path):
    papers = (f"task.arch={arch}", f"layers={arch}", f"loss={arch}", "task.checkpoint_every=0")
    main.run_task(adain_train_cfg(photos, styles, *papers), tmp_path / "train")
    ckpt = tmp_path / "train" / "checkpoints" / "last.ckpt"
    assert read_network(ckpt, family="arbitrary")[1].attention is not None
    cfg = compose_cfg(
        "task=apply_adain",
        f"ckpt_path={ckpt}",
        f"task.input={photos}",
        f"task.style=[{styles / 's0.png'},{styles / 's1.png'}]",
        "task.style_weights=[1,3]",
        "task.style_size=32",
        "trainer.accelerator=cpu",
    )
    main.run_task(cfg, tmp_path / "apply")
    assert apply_outputs(tmp_path / "apply")
    main.run_task(compose_cfg("task=export_adain", f"ckpt_path={ckpt}"), tmp_path / "export")
    report = json.loads((tmp_path / "export" / "export.json").read_text())
    assert report["onnx"]["max_abs_diff"] < 1e-4 and report["pt2"]["max_abs_diff"] < 1e-4


def test_unknown_arch_is_one_line():
    cfg = compose_cfg("task=train_adain", "data.root=x", "task.styles=y", "task.arch=wct")
    with pytest.raises(Exception, match=r"task.arch='wct' is invalid; choose one of adain, sanet") as info:
        TrainAdaINSettings.from_cfg(cfg)
    assert "\n" not in str(info.value)


@pytest.mark.slow  # one export of the whole pipeline and two applies: about 15 s
def test_apply_from_the_exported_pipeline_matches_the_checkpoint(trained, photos, styles, tmp_path):
    checkpoint = torch.load(trained / "checkpoints" / "last.ckpt", weights_only=True)
    checkpoint["state_dict"] = lively(checkpoint["state_dict"])  # outputs that differ between inputs
    torch.save(checkpoint, tmp_path / "lively.ckpt")
    main.run_task(
        compose_cfg("task=export_adain", f"ckpt_path={tmp_path / 'lively.ckpt'}", "task.formats=[onnx]"), tmp_path
    )
    apply = ("task=apply_adain", f"task.input={photos}", f"task.style={styles / 's0.png'}", "task.style_size=32")
    outputs = {}
    for name in ("lively.ckpt", "model.onnx"):
        cfg = compose_cfg(*apply, f"ckpt_path={tmp_path / name}", "trainer.accelerator=cpu")
        main.run_task(cfg, tmp_path / name.replace(".", "_"))
        outputs[name] = json.loads((tmp_path / name.replace(".", "_") / "apply.json").read_text())["outputs"]
    assert outputs["lively.ckpt"].keys() == outputs["model.onnx"].keys()
    for source in outputs["model.onnx"]:
        a, b = (images.load_image(outputs[n][source]) for n in outputs)
        assert a.shape == b.shape and (a - b).abs().max() <= 2 / 255  # PNG rounding of equal pipelines


def test_the_exported_pipeline_takes_one_style_and_no_controls(photos, styles, tmp_path):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not onnx")
    base = ("task=apply_adain", f"ckpt_path={model}", "task.input=x.png")
    cfg = compose_cfg(*base, "task.style=[a.png,b.png]", "task.alpha=0.5")
    with pytest.raises(Exception, match=r"exported pipeline: .*several styles, task.alpha need a train_adain") as info:
        ApplyAdaINSettings.from_cfg(cfg)
    assert "\n" not in str(info.value)
    cfg = compose_cfg(*base[:2], f"task.input={photos}", f"task.style={styles / 's0.png'}")
    with pytest.raises(WeightsError, match="is not a readable ONNX model of this task") as info:
        main.run_task(cfg, tmp_path / "run")
    assert "\n" not in str(info.value)


def test_sizes_beyond_memory_are_refused_before_they_are_allocated(trained, styles, tmp_path, monkeypatch):
    """export_adain's check sizes and apply_adain's style size, against a device with 1 GiB (issue 32 item 7)."""
    from transferlab import memory

    monkeypatch.setattr(memory, "available_memory", lambda device: 2**30)
    ckpt = f"ckpt_path={trained / 'checkpoints' / 'last.ckpt'}"
    sizes = "task.check_size=[12000,12000]"
    with pytest.raises(memory.MemoryLimitError, match=r"task.check_size=\[12000, 12000\], .*: the run needs an"):
        main.run_task(compose_cfg("task=export_adain", ckpt, sizes), tmp_path / "export")
    assert not (tmp_path / "export").exists() or not list((tmp_path / "export").iterdir())
    make_image(tmp_path / "a.png", size=(33, 21), seed=1)
    apply = ("task=apply_adain", ckpt, f"task.input={tmp_path / 'a.png'}", f"task.style={styles / 's0.png'}")
    with pytest.raises(memory.MemoryLimitError, match=r"task.style_size=20000: the run needs an estimated"):
        main.run_task(compose_cfg(*apply, "task.style_size=20000", "trainer.accelerator=cpu"), tmp_path / "apply")
