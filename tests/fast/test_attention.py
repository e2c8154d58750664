"""Issue 26: attention through the fused kernel (equal to the full matrix, never holding it), SANet and AdaAttN
train, resume exactly, take every control and run in a video. Random weights, 32-48 px images."""

import json

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from helpers import adain_train_cfg, compose_cfg, lively, make_image
from transferlab import main
from transferlab.fast.arbitrary import attention
from transferlab.fast.arbitrary import ops as A
from transferlab.fast.arbitrary.networks import AdaINNet
from transferlab.fast.stylizer import read_network


def full_matrix(q, k, v):
    """Today's-before attention, in float64: the whole ``HW x hw`` matrix, softmax over style positions."""
    flat = lambda x: x.double().flatten(2).transpose(1, 2)  # noqa: E731
    out = torch.softmax(flat(q) @ flat(k).transpose(1, 2), -1) @ flat(v)
    return out.transpose(1, 2).reshape(q.shape[0], v.shape[1], *q.shape[2:]).float()


@pytest.mark.parametrize("cq,cv", [(7, 5), (4, 9)])
def test_attention_equals_the_full_matrix_on_the_fused_kernel_alone(cq, cv):
    """Unequal query/value channels (AdaAttN's), a style batch of 1 for two contents, unscaled logits; only the
    fused kernel allowed (no full-matrix fallback): equal to the full matrix to float precision, and so are
    the attended mean and std."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (
        torch.randn(2, cq, 5, 6, generator=g),
        torch.randn(1, cq, 4, 7, generator=g),
        torch.randn(1, cv, 4, 7, generator=g),
    )
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        out = attention.attend(q, k, v)
        mean, std = attention.attended_mean_std(q, k, v)
        q.requires_grad_(True)
        attention.attend(q, k, v).sum().backward()  # the fused backward too
    torch.testing.assert_close(out, full_matrix(q, k, v), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(mean, out, rtol=1e-5, atol=1e-6)
    var = (full_matrix(q, k, v.square()) - full_matrix(q, k, v).square()).clamp_min(0) + A.EPS
    # E[v²] - M² cancels in float32: the std is as close as that allows, not to the last bit
    torch.testing.assert_close(std, var.sqrt(), rtol=1e-3, atol=1e-4)


def test_adaattn_stylizes_with_every_control():
    """alpha=0 decodes the content's own features at both decoder levels; a zero strength map is alpha=0; a
    zero mask leaves its style out; weights blend the per-style targets at each level; styles differ."""
    torch.manual_seed(0)
    net = AdaINNet(arch="adaattn").eval()
    net.load_state_dict(lively(net.state_dict()))
    g = torch.Generator().manual_seed(2)
    content = torch.rand(1, 3, 37, 43, generator=g)
    a, b = (net.code(torch.rand(1, 3, 32, 40, generator=g) * k) for k in (1.0, 0.3))
    ones, zeros = torch.ones(1, 1, 8, 8), torch.zeros(1, 1, 8, 8)
    close = lambda a, b: torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)  # noqa: E731 (oneDNN's order)
    with torch.no_grad():
        feats = net.encode(net.padded(content)[0])
        own = net.decode({k: feats[k] for k in ("relu4_1", "relu3_1")})
        own = torch.nn.functional.pad(own, (0, -5, 0, -3)).clamp(0, 1)
        close(net.stylize(content, [a], alpha=0.0), own)
        close(net.stylize(content, [a], strength=zeros), own)
        close(net.stylize(content, [a, b], masks=[ones, zeros]), net.stylize(content, [a]))
        ta, tb = (net.transform(feats, code) for code in (a, b))
        blended = net.decode({k: 0.25 * ta[k] + 0.75 * tb[k] for k in ta})
        blended = torch.nn.functional.pad(blended, (0, -5, 0, -3)).clamp(0, 1)
        close(net.stylize(content, [a, b], masks=A.blend_masks([1, 3])), blended)
        assert (net.stylize(content, [a]) - net.stylize(content, [b])).abs().max() > 1e-2


# SANet's training and export also run in test_adain_tasks' slow end-to-end test: its resume is slow here too.
@pytest.mark.parametrize("arch", [pytest.param("sanet", marks=pytest.mark.slow), "adaattn"])
def test_attention_archs_train_with_their_papers_terms_and_resume_exactly(arch, photos, styles, tmp_path):
    papers = (f"task.arch={arch}", f"layers={arch}", f"loss={arch}")
    main.run_task(adain_train_cfg(photos, styles, *papers), tmp_path / "a")
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert ("val/identity" in metrics) == (arch == "sanet") and "val/style_relu5_1" in metrics
    resume = f"ckpt_path={tmp_path / 'a' / 'checkpoints' / 'step1.ckpt'}"
    main.run_task(adain_train_cfg(photos, styles, *papers, resume), tmp_path / "b")
    a = read_network(tmp_path / "a" / "checkpoints" / "last.ckpt", family="arbitrary")[1].state_dict()
    b = read_network(tmp_path / "b" / "checkpoints" / "last.ckpt", family="arbitrary")[1].state_dict()
    assert any(k.startswith("attention.") for k in a) and all(torch.equal(a[k], b[k]) for k in a)


def test_adaattn_runs_in_a_video_with_blended_styles(tmp_path):
    from tests.video.conftest import square_frames, write_clip

    torch.manual_seed(0)
    spec = {"arch": "adaattn", "weights": None, "normalization": "imagenet", "pooling": "max"}
    spec |= {"style_layers": {"relu2_1": 0.5, "relu5_1": 0.5}, "encoder": "vgg19", "width": 1.0}
    state = {f"net.{k}": v for k, v in AdaINNet(**spec).state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"network": spec}}, tmp_path / "adaattn.ckpt")
    clip = write_clip(tmp_path / "square.mp4", square_frames(n=2))
    styles = [make_image(tmp_path / f"s{i}.png", (40, 36), seed=i) for i in range(2)]
    overrides = ("task=video", f"task.input={clip}", "task.method=fast", f"task.network={tmp_path / 'adaattn.ckpt'}")
    blend = (f"task.style=[{styles[0]},{styles[1]}]", "task.style_weights=[1,3]")
    main.run_task(compose_cfg(*overrides, *blend, "trainer.accelerator=cpu", "model.weights=null"), tmp_path / "run")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (metrics["method"], metrics["frames"]) == ("fast", 2)
