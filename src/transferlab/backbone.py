"""VGG16/VGG19 addressed by the paper's layer names, with the weights and input normalization they need.

Images outside this module are RGB float tensors in [0, 1]; ``VGGFeatures`` owns the
normalization its weights expect, so callers never normalize by hand.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision import models
from torchvision.models import vgg

from transferlab import checkpoints, fetch, winograd
from transferlab.errors import FetchError, WeightsError

# Convolutions per block; these are torchvision's configurations "D" and "E".
BLOCKS = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
ARCHS = tuple(BLOCKS)
POOLINGS = ("max", "avg")
_TORCHVISION_CFG = {"vgg16": "D", "vgg19": "E"}

log = logging.getLogger(__name__)


def layer_names(arch: str) -> list[str]:
    """Names of ``features`` modules in order: conv1_1, relu1_1, ..., pool1, conv2_1, ..."""
    if arch not in BLOCKS:
        raise ValueError(f"architecture {arch!r} is not one of {ARCHS}")
    names = []
    for block, convs in enumerate(BLOCKS[arch], start=1):
        for i in range(1, convs + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    return names


def feature_spec(arch: str) -> list[int | str]:
    """torchvision's layer list of ``arch``'s ``features``: conv output channels, and "M" for each pooling."""
    layer_names(arch)  # raises for an unknown architecture
    return list(vgg.cfgs[_TORCHVISION_CFG[arch]])


def deepest(arch: str, layers: Iterable[str]) -> str:
    """The layer of ``layers`` that comes last in ``arch``: how far the backbone has to run."""
    names = layer_names(arch)
    return max(layers, key=names.index)


def min_side(arch: str, layers: Iterable[str]) -> int:
    """The shortest image side (px) that keeps every feature map up to the deepest of ``layers`` non-empty."""
    names = layer_names(arch)
    pools = sum(1 for name in names[: names.index(deepest(arch, layers))] if name.startswith("pool"))
    return 2**pools


def weight_names(arch: str) -> list[str]:
    """torchvision's weight names for ``arch`` (``DEFAULT`` included)."""
    return [w.name for w in models.get_model_weights(arch)] + ["DEFAULT"]


@dataclass(frozen=True)
class ModelSettings:
    """``model.*`` checked: which network, its weights (a torchvision name, a file, or None for random),
    pooling, input normalization (auto: the weights' own), the scale of its features, and the transformation
    of its features (``features.TRANSFORMS``: stylize's softmax of Wang et al., at ``temperature``)."""

    arch: str
    weights: str | None
    pooling: str
    normalization: str
    feature_scale: float
    feature_transform: str = "none"
    temperature: float = 1.0


@dataclass(frozen=True)
class Normalization:
    """How a [0, 1] RGB image becomes the input the weights were trained on: ``(x[channels] - mean) / std``."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    bgr: bool = False


IMAGENET = Normalization(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
# Caffe-trained VGG: BGR channel order, 0-255 range, per-channel mean subtracted, no scaling.
CAFFE = Normalization(mean=(103.939 / 255, 116.779 / 255, 123.68 / 255), std=(1 / 255, 1 / 255, 1 / 255), bgr=True)
NORMALIZATIONS = {"imagenet": IMAGENET, "caffe": CAFFE}


class Normalize(nn.Module):
    def __init__(self, normalization: Normalization) -> None:
        super().__init__()
        self.bgr = normalization.bgr
        self.register_buffer("mean", torch.tensor(normalization.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(normalization.std).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: Tensor) -> Tensor:
        if self.bgr:
            image = image.flip(1)
        return (image - self.mean) / self.std


class VGGFeatures(nn.Module):
    """Frozen VGG feature stack that runs only up to the deepest requested layer.

    ``forward`` takes a batch of [0, 1] RGB images and returns ``{layer name: activation}``
    for the requested layers, divided by ``feature_scale``, in channels-last memory format.
    """

    def __init__(
        self,
        features: nn.Sequential,
        arch: str,
        layers: Iterable[str],
        normalization: Normalization,
        feature_scale: float = 1.0,
    ) -> None:
        super().__init__()
        layers = list(dict.fromkeys(layers))
        if not layers:
            raise ValueError("no layers requested from the VGG backbone; name at least one layer")
        unknown = sorted(set(layers) - set(layer_names(arch)))
        if unknown:
            raise ValueError(f"layers {unknown} are not layers of {arch}")
        names = layer_names(arch)
        depth = max(names.index(layer) for layer in layers) + 1
        # In-place ReLU saves a full-size write and its memory; only a returned conv activation must
        # survive. (A conv does not keep its output for backward, so autograd allows it.) Each encoder
        # gets its own ReLUs (they hold no weights): encoders sharing ``features`` may differ here.
        modules = [
            nn.ReLU(inplace=names[i - 1] not in layers) if isinstance(m, nn.ReLU) else m
            for i, m in enumerate(list(features)[:depth])
        ]
        self.normalize = Normalize(normalization)
        # Channels-last: oneDNN's CPU convolutions (and cuDNN's with tensor cores) run faster in
        # NHWC, most of all the full-resolution first block and the input gradient of conv1_1.
        self.stack = nn.Sequential(*modules).to(memory_format=torch.channels_last)
        self.names = names[:depth]
        self.layers = layers
        # Activations are divided by this so that loss weights carry over between weight sets
        # whose activations differ in magnitude (Caffe-converted VGG runs ~224x larger).
        self.feature_scale = feature_scale
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGGFeatures:
        # Always frozen and in eval mode, whatever Lightning asks of its parent module.
        return super().train(False)

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        x = self.normalize(image).contiguous(memory_format=torch.channels_last)
        wanted = set(self.layers)
        out = {}
        for name, module in zip(self.names, self.stack):
            x = module(x)
            if name in wanted:
                out[name] = x if self.feature_scale == 1 else x / self.feature_scale
        return out


def torchvision_weights(arch: str, name: str) -> models.WeightsEnum:
    enum = models.get_model_weights(arch)
    try:
        return enum[name]
    except KeyError:
        choices = [w.name for w in enum] + ["DEFAULT", "a path to a .pth state dict", "null (random)"]
        raise ValueError(f"model.weights={name!r} is not a {arch} weight set; choose one of {choices}") from None


def is_weights_file(weights: str) -> bool:
    """Whether ``model.weights`` names a file (else a torchvision weight name)."""
    return os.sep in weights or weights.endswith((".pth", ".pt"))


def weights_source(arch: str, weights: str | None) -> str | None:
    """``weights`` as a checkpoint records them, so that they load the same later: a torchvision weight set
    by its own name (``DEFAULT`` resolved), a file by its absolute path; None for random weights."""
    if weights is None:
        return None
    if is_weights_file(weights):
        return str(Path(weights).expanduser().resolve())
    return torchvision_weights(arch, weights).name


def announce_weights(weights: str | None, network: str, product: str, key: str = "model.weights") -> str:
    """``model.weights`` as every task's metrics.json records it (``weights``: "random" for null), and random
    weights said in the log at the task's start: a run that only tests the mechanics must not pass for
    ``product`` (a stylization, a classifier). ``network``: what the weights are of, as the user knows it;
    ``key``: the config key that chose them."""
    if weights is None:
        log.warning("%s=null: random %s weights; the result tests the mechanics, it is not %s", key, network, product)
        return "random"
    return weights


def check_weights(arch: str, weights: str | None, cached: bool) -> None:
    """A door's check of ``model.weights``: a weights file must exist; torchvision's weights, which a run
    downloads when it builds the network, must be in torch hub's cache when ``cached`` (a run refused for
    other problems names them too, so that an offline machine learns every missing input at once)."""
    if weights is None:
        return
    if is_weights_file(weights):
        checkpoints.local_file(weights, "model.weights", f"a {arch} state dict (.pth)")
        return
    spec = torchvision_weights(arch, weights)
    if cached and not hub_file(spec).is_file():
        raise WeightsError(
            f"model.weights={weights}: {arch}'s weights are not in the cache ({hub_file(spec)}); a run downloads "
            f"them from {spec.url}; offline, put that file there (or set TORCH_HOME), or model.weights=null "
            "gives random weights (tests only)"
        )


def hub_file(spec: models.WeightsEnum) -> Path:
    """Where torch hub's cache keeps torchvision's weights ``spec``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(spec.url)


def load_state_dict(arch: str, weights: str) -> tuple[dict[str, Tensor], Normalization | None]:
    """The state dict for ``weights`` (a torchvision weight name or a file path) and, for
    torchvision weights, the normalization they were trained with."""
    if is_weights_file(weights):
        path = Path(weights).expanduser()
        state = checkpoints.load(path, "model.weights", f"a {arch} state dict (.pth)")
        if not isinstance(state, Mapping):
            raise WeightsError(f"model.weights: {path} holds a {type(state).__name__}, not a state dict")
        return dict(state), None
    spec = torchvision_weights(arch, weights)
    state = checkpoints.load(cached_weights(arch, spec), "model.weights", f"torchvision's {spec} state dict")
    if not isinstance(state, Mapping):
        raise WeightsError(f"model.weights: {spec} holds a {type(state).__name__}, not a state dict")
    mean, std = spec.transforms().mean, spec.transforms().std
    return state, Normalization(mean=tuple(mean), std=tuple(std))


def cached_weights(arch: str, spec: models.WeightsEnum) -> Path:
    """The file of torchvision weights in torch hub's cache (where torchvision keeps it), downloaded
    through ``fetch.download`` when missing (timeouts, verified against the hash prefix in its name,
    limited to the size torchvision records), so that it is then loaded by ``checkpoints.load``."""
    cached = hub_file(spec)
    if cached.is_file():
        return cached
    match = torch.hub.HASH_REGEX.search(cached.name)
    size_mb = spec.meta.get("_file_size")
    try:
        return fetch.download(
            spec.url, cached, "model.weights", match.group(1) if match else None, max_mb=size_mb and size_mb + 1
        )
    except FetchError as exc:
        raise WeightsError(
            f"{arch} weights {spec} are not in the cache ({cached}): {exc}; or download {spec.url} into "
            f"{cached.parent} yourself (or set TORCH_HOME); model.weights=null gives random weights (tests only)"
        ) from None


def _load_into(module: nn.Module, state: Mapping[str, Tensor], arch: str, weights: str) -> None:
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise WeightsError(f"model.weights={weights} does not fit {arch}: {first}") from None


def resolve_normalization(name: str, from_weights: Normalization | None) -> Normalization:
    """``auto`` takes the normalization of torchvision weights, ImageNet otherwise."""
    if name == "auto":
        return from_weights or IMAGENET
    if name not in NORMALIZATIONS:
        raise ValueError(f"model.normalization={name!r} is invalid; choose one of {['auto', *NORMALIZATIONS]}")
    return NORMALIZATIONS[name]


def build_features(
    arch: str,
    weights: str | None,
    pooling: str = "max",
    normalization: str = "auto",
    fast_convs: winograd.Mode = "auto",
) -> tuple[nn.Sequential, Normalization]:
    """VGG's ``features`` stack (no classifier) with its weights and their normalization, for
    optimizing images through it: with ``fast_convs``, its 3x3 convolutions run as Winograd convolutions
    on CPU where that is faster (``winograd.WinogradConv2d``; same parameters and state dict): timed on
    this machine with ``"auto"``, by the fixed rule with True."""
    layer_names(arch)  # raises for an unknown architecture
    features = vgg.make_layers(feature_spec(arch))
    from_weights = None
    if weights is not None:
        state, from_weights = load_state_dict(arch, weights)
        prefix = "features."
        _load_into(features, {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}, arch, weights)
    if pooling == "avg":
        # Gatys et al. found average pooling gives smoother results; VGG's max pools have kernel 2, stride 2.
        features = nn.Sequential(*(nn.AvgPool2d(2, 2) if isinstance(m, nn.MaxPool2d) else m for m in features))
    elif pooling != "max":
        raise ValueError(f"model.pooling={pooling!r} is invalid; choose max or avg")
    if fast_convs:
        timed = fast_convs == "auto"
        features = nn.Sequential(
            *(winograd.WinogradConv2d.of(m, timed) if winograd.pays_off(m, timed) else m for m in features)
        )
    return features, resolve_normalization(normalization, from_weights)


def build_classifier(arch: str, weights: str | None, normalization: str = "auto") -> tuple[nn.Module, Normalization]:
    """A whole torchvision classification model (VGG: features and classifier; or any other, such as
    resnet50) with its weights and their normalization."""
    model = models.get_model(arch, weights=None)
    from_weights = None
    if weights is not None:
        state, from_weights = load_state_dict(arch, weights)
        _load_into(model, state, arch, weights)
    return model, resolve_normalization(normalization, from_weights)
