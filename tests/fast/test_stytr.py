"""The transformer arbitrary-style network (task.arch=stytr, fast/arbitrary/stytr.py): attention through
scaled_dot_product_attention equal to the full matrix, any image size, alpha and the maps blending with the
content's own reconstruction, the loss terms; the task end to end (train, exact resume, apply with every
control, export parity at an odd size, video). Random weights, 32-64 px."""

import json

import pytest
import torch
from torch.nn import functional as F

from helpers import adain_train_cfg, apply_outputs, compose_cfg, make_image
from tests.video.conftest import pan_frames, write_clip
from transferlab import main
from transferlab.errors import ConfigError
from transferlab.fast.arbitrary import ops as A
from transferlab.fast.arbitrary.settings import TrainAdaINSettings
from transferlab.fast.arbitrary.stytr import Attention, StyTrNet
from transferlab.fast.stylizer import read_network

# 32 channels, 4 heads; the identity terms (off by default for every arch) as the experiment sets them
STYTR = ("task.arch=stytr", "task.width=0.0625", "loss.identity_weight=140", "loss.identity_features_weight=10")


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return StyTrNet(width=0.0625, loss_net=False).eval()


def test_attention_equals_the_full_matrix():
    torch.manual_seed(0)
    attn = Attention(16, 4)
    q, kv = torch.randn(2, 7, 16), torch.randn(2, 5, 16)
    split = lambda x: x.unflatten(-1, (4, 4)).transpose(1, 2)  # noqa: E731
    weights = torch.softmax(split(attn.q(q)) @ split(attn.k(kv)).transpose(-1, -2) / 2, dim=-1)
    full = attn.out((weights @ split(attn.v(kv))).transpose(1, 2).flatten(2))
    torch.testing.assert_close(attn(q, kv, kv), full)


def test_any_size_each_image_on_its_own(net):
    """Odd sizes are padded to the patch multiple and cropped back; an image's output does not depend on the
    others in its batch; a thin style (its tokens only) works as well."""
    g = torch.Generator().manual_seed(1)
    content = torch.rand(2, 3, 37, 45, generator=g)
    with torch.no_grad():
        code = net.code(torch.rand(1, 3, 16, 50, generator=g))
        out = net.stylize(content, [code])
        assert out.shape == content.shape and out.min() >= 0 and out.max() <= 1
        torch.testing.assert_close(net.stylize(content[1:], [code]), out[1:], atol=1e-5, rtol=1e-5)
        other = net.code(torch.rand(1, 3, 40, 40, generator=g) * 0.3)
        assert (net.stylize(content, [other]) - out).abs().max() > 1e-3


def test_alpha_and_maps_blend_with_the_contents_own_reconstruction(net):
    """alpha 0 is the content attending to itself (what the identity loss trains to give back the content);
    a strength map of ones is no map; two styles by weights blend the decoder's features."""
    g = torch.Generator().manual_seed(2)
    content = torch.rand(1, 3, 32, 40, generator=g)
    styles = [torch.rand(1, 3, 32, 32, generator=g) * k for k in (1.0, 0.3)]
    with torch.no_grad():
        a, b = (net.code(s) for s in styles)
        c = net.content_tokens(content)
        itself = net.upsampler(net.decode(c, net.style_tokens(content))).clamp(0, 1)
        torch.testing.assert_close(net.stylize(content, [a], alpha=0.0), itself)
        full = net.stylize(content, [a])
        torch.testing.assert_close(net.stylize(content, [a], strength=torch.ones(1, 1, 5, 5)), full)
        mixed = net.upsampler(0.25 * net.decode(c, a.features) + 0.75 * net.decode(c, b.features)).clamp(0, 1)
        torch.testing.assert_close(net.stylize(content, [a, b], masks=A.blend_masks([1, 3])), mixed)
        with pytest.raises(ValueError, match="no shared content statistics"):
            net.stylize(content, [a], content_stats=A.mean_std(content))


def test_terms_train_the_identity():
    """The loss terms of StyTr²; a few steps on the identity term make content = style reconstruct it (a smooth
    photo: white noise cannot be learnt through 8x8 patches in a few steps)."""
    torch.manual_seed(0)
    net = StyTrNet(width=0.0625, style_layers=("relu1_1", "relu5_1"), content_layers=("relu4_1", "relu5_1"))
    photo = F.interpolate(torch.rand(1, 3, 4, 4), size=(32, 32), mode="bilinear")
    _, terms = net.terms(photo, torch.rand(1, 3, 40, 32), identity=True)
    assert {"content", "style", "style_relu5_1", "identity", "identity_features"} <= set(terms)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(8):
        loss = net.terms(photo, photo, identity=True)[1]["identity"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


@pytest.fixture(scope="module")
def trained(photos, styles, tmp_path_factory):
    out = tmp_path_factory.mktemp("stytr")
    main.run_task(adain_train_cfg(photos, styles, *STYTR, "+layers.style.relu5_1=1"), out)
    return out


def test_trains_and_resumes_exactly(trained, photos, styles, tmp_path):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert {"val/identity", "val/identity_features", "val/style_relu5_1"} <= set(metrics)
    resume = f"ckpt_path={trained / 'checkpoints' / 'step1.ckpt'}"
    main.run_task(adain_train_cfg(photos, styles, *STYTR, "+layers.style.relu5_1=1", resume), tmp_path)
    a = read_network(trained / "checkpoints" / "last.ckpt", family="arbitrary")[1].state_dict()
    b = read_network(tmp_path / "checkpoints" / "last.ckpt", family="arbitrary")[1].state_dict()
    assert isinstance(read_network(trained / "checkpoints" / "last.ckpt")[1], StyTrNet)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ConfigError, match=r"was made with other loss.identity\b"):
        main.run_task(
            adain_train_cfg(photos, styles, *STYTR, "+layers.style.relu5_1=1", resume, "loss.identity_weight=1"),
            tmp_path / "b",
        )


def test_applies_with_every_control(trained, photos, styles, tmp_path):
    masks = [make_image(tmp_path / f"m{i}.png", size=(20, 20), seed=i) for i in range(2)]
    cfg = compose_cfg(
        "task=apply_adain",
        f"ckpt_path={trained / 'checkpoints' / 'last.ckpt'}",
        f"task.input={photos}",
        f"task.style=[{styles / 's0.png'},{styles / 's1.png'}]",
        f"task.style_masks=[{masks[0]},{masks[1]}]",
        "task.strength_map=auto",
        "task.alpha=0.7",
        "task.color=luminance",
        "task.style_size=32",
        "trainer.accelerator=cpu",
    )
    main.run_task(cfg, tmp_path / "apply")
    assert len(apply_outputs(tmp_path / "apply")) == 8


@pytest.mark.slow  # the transformer's export: about 30 s
def test_exports_with_parity_at_an_odd_size(trained, tmp_path):
    ckpt = trained / "checkpoints" / "last.ckpt"
    main.run_task(compose_cfg("task=export_adain", f"ckpt_path={ckpt}", "task.formats=[onnx]"), tmp_path)
    report = json.loads((tmp_path / "export.json").read_text())
    assert report["check_shape"] == [[3, 3, 67, 45], [1, 3, 50, 61]] and report["onnx"]["max_abs_diff"] < 1e-4


def test_runs_in_a_video_with_two_styles_by_masks(trained, styles, tmp_path):
    """Through the one loader's network path (masks need its features); the clip's statistics are refused."""
    clip = write_clip(tmp_path / "clip.mp4", pan_frames(3))
    masks = [make_image(tmp_path / f"m{i}.png", size=(16, 12), seed=i) for i in range(2)]
    common = (
        "task=video",
        f"task.input={clip}",
        "task.method=fast",
        "task.baseline=false",
        "trainer.accelerator=cpu",
        f"task.network={trained / 'checkpoints' / 'last.ckpt'}",
    )
    two = (f"task.style=[{styles / 's0.png'},{styles / 's1.png'}]", f"task.style_masks=[{masks[0]},{masks[1]}]")
    main.run_task(compose_cfg(*common, *two), tmp_path / "run")
    assert len(list((tmp_path / "run" / "frames").glob("*.png"))) == 3
    with pytest.raises(ConfigError, match=r"is a transformer \(StyTr\) network, which normalizes no frame"):
        main.run_task(compose_cfg(*common, f"task.style={styles / 's0.png'}", "task.global_stats=true"), tmp_path / "b")


def test_bad_stytr_settings_are_one_line():
    base = ("task=train_adain", "data.root=x", "task.styles=y", *STYTR)
    for extra, message in (
        (("task.encoder=light",), r"task.arch=stytr with task.encoder=light: .* use task.encoder=vgg19"),
        (("+layers.style.relu5_2=1",), r"layers.style: relu5_2 lie past relu5_1, where the loss network ends"),
    ):
        with pytest.raises(ConfigError, match=message) as info:
            TrainAdaINSettings.from_cfg(compose_cfg(*base, *extra))
        assert "\n" not in str(info.value)


def test_the_experiment_is_the_papers_loss_in_this_projects_normalization(photos, styles):
    cfg = compose_cfg(
        "experiment=stytr_hymenoptera", "model.weights=null", f"data.root={photos}", f"task.styles={styles}"
    )
    s = TrainAdaINSettings.from_cfg(cfg)
    assert (s.arch, s.width, list(s.content_layers), len(s.style_layers)) == ("stytr", 0.25, ["relu4_1", "relu5_1"], 5)
    assert (s.content_weight, s.style_weight, s.identity_weight, s.identity_features_weight) == (
        14,
        50,
        140,
        10,
    )  # the identity terms a mean of two MSEs, as for every arch
