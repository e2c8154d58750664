"""Any torchvision classification model as a network to fine-tune: its weights, a new last layer,
its parts in forward order (for freezing by stage), and the split into a frozen prefix and the
rest (for caching the prefix's output).

A network is read as an ordered list of *units*: the children of its top-level ``features`` (VGG,
MobileNet, EfficientNet, ConvNeXt) or its top-level children (ResNet: conv1, bn1, ..., layer4),
then the pooling, then the hidden layers of the classifier, then the *head* (the last
``nn.Linear``, replaced for the new classes). VGG's units also answer to the paper's names
(conv4_3, relu7).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torchvision import models

from transferlab import backbone

# The torchvision families whose forward() runs their children in order (checked: the body / classifier
# split reproduces the network), which freezing by unit and the feature cache rely on. Others pool or
# reshape inside forward() (DenseNet, MobileNetV2, ShuffleNet, MNASNet, ViT), have auxiliary outputs
# (GoogLeNet, Inception) or no linear head (SqueezeNet).
FAMILIES = (
    "vgg",
    "resnet",
    "resnext",
    "wide_resnet",
    "mobilenet_v3",
    "efficientnet",
    "convnext",
    "regnet",
    "alexnet",
    "swin",
)
ARCHS = tuple(name for name in models.list_models(module=models) if name.startswith(FAMILIES))
FREEZE_WORDS = ("auto", "features", "all")
# torchvision's VGG classifier: Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear (fc8: the logits).
VGG_CLASSIFIER = ("fc6", "relu6", "dropout6", "fc7", "relu7", "dropout7", "fc8")


def is_vgg(arch: str) -> bool:
    return arch in backbone.ARCHS


def build(
    arch: str, weights: str | None, normalization: str, num_classes: int, dropout: float | None
) -> tuple[nn.Module, backbone.Normalization]:
    """torchvision's ``arch`` with its weights, its dropout layers at ``dropout`` (None: the
    architecture's own), and a new last layer."""
    model, norm = backbone.build_classifier(arch, weights, normalization)
    for module in model.modules():
        if isinstance(module, nn.Dropout) and dropout is not None:
            module.p = dropout
    path = head_path(model)
    old = model.get_submodule(path)
    head = nn.Linear(old.in_features, num_classes)
    # torchvision's own initialization of VGG's linear layers.
    nn.init.normal_(head.weight, 0, 0.01)
    nn.init.zeros_(head.bias)
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent), name, head)
    return model, norm


def head_path(network: nn.Module) -> str:
    """The module path of the last ``nn.Linear``: the layer that gives the logits."""
    return [name for name, m in network.named_modules() if isinstance(m, nn.Linear)][-1]


@dataclass(frozen=True)
class Units:
    """A network's units in forward order (module paths); ``n_body`` of them come before the classifier."""

    paths: tuple[str, ...]
    n_body: int
    aliases: dict[str, str]  # VGG's paper names -> paths


def units(network: nn.Module, arch: str) -> Units:
    head = head_path(network)
    container = head.rpartition(".")[0]  # "" when the head is a top-level child (ResNet's fc)
    body: list[str] = []
    for name, child in network.named_children():
        if name == "features":
            body += [f"features.{n}" for n, _ in child.named_children()]
        elif name != (container or head).split(".")[0]:
            body.append(name)
    hidden = [f"{container}.{n}" for n, _ in network.get_submodule(container).named_children()] if container else []
    paths = (*body, *(p for p in hidden if p != head), head)
    aliases: dict[str, str] = {}
    if is_vgg(arch):
        aliases = {name: f"features.{i}" for i, name in enumerate(backbone.layer_names(arch))}
        aliases |= {name: f"classifier.{i}" for i, name in enumerate(VGG_CLASSIFIER)}
    return Units(paths, len(body), aliases)


def weighted_body(network: nn.Module, u: Units) -> list[int]:
    """Indices of the body's units that have parameters (VGG: its conv layers)."""
    return [i for i, p in enumerate(u.paths[: u.n_body]) if any(True for _ in network.get_submodule(p).parameters())]


def frozen_units(network: nn.Module, arch: str, freeze: int | str) -> int:
    """How many units to freeze from the input for ``task.freeze``: N (the first N units that have
    parameters: VGG's first N conv layers, a ResNet's conv1, bn1, layer1, ...), a unit's name (it
    and all before it), ``auto`` (all but the body's last block: VGG through pool4, a ResNet through
    layer3, MobileNet/EfficientNet/ConvNeXt all but their last ``features`` stage), ``features``
    (everything before the classifier), ``all`` (all but the head) or 0. A ValueError names what is valid."""
    u = units(network, arch)
    if freeze == "all":
        return len(u.paths) - 1
    if freeze == "features":
        return u.n_body
    weighted = weighted_body(network, u)
    kind = "conv layers" if is_vgg(arch) else "units with parameters before the classifier"
    if freeze == "auto":
        return u.paths.index(u.aliases["pool4"]) + 1 if is_vgg(arch) else weighted[-1]
    if isinstance(freeze, int) and not isinstance(freeze, bool):
        if not 0 <= freeze <= len(weighted):
            raise ValueError(f"{freeze} is out of range; {arch} has {len(weighted)} {kind} (0-{len(weighted)})")
        return weighted[freeze - 1] + 1 if freeze else 0
    path = u.aliases.get(str(freeze), str(freeze))
    if path in u.paths[:-1]:
        return u.paths.index(path) + 1
    names = ", ".join(u.aliases or u.paths[:-1])
    raise ValueError(
        f"{freeze!r} is invalid; give a number of {kind} (0-{len(weighted)}), {' or '.join(FREEZE_WORDS)}, "
        f"or a layer name: {names}"
    )


def freeze(network: nn.Module, arch: str, spec: int | str) -> list[nn.Module]:
    """Freeze the units ``spec`` names (see frozen_units); returns them, so that the caller keeps
    their batch norms in eval mode (frozen statistics) whatever mode the rest is in."""
    u = units(network, arch)
    frozen = [network.get_submodule(p) for p in u.paths[: frozen_units(network, arch, spec)]]
    for module in frozen:
        module.requires_grad_(False)
    return frozen


def body_frozen(arch: str, spec: int | str) -> bool:
    """Whether ``spec`` freezes every unit with parameters before the classifier (then the body's
    output can be cached)."""
    with torch.device("meta"):
        network = models.get_model(arch, weights=None)
    u = units(network, arch)
    return frozen_units(network, arch, spec) > weighted_body(network, u)[-1]


class Body(nn.Module):
    """The units before the classifier, from the [0, 1] image to flat feature vectors."""

    def __init__(self, network: nn.Module, arch: str, normalize: nn.Module) -> None:
        super().__init__()
        u = units(network, arch)
        self.normalize = normalize
        self.stack = nn.Sequential(*(network.get_submodule(p) for p in u.paths[: u.n_body]))

    def forward(self, images: Tensor) -> Tensor:
        return self.stack(self.normalize(images)).flatten(1)


def after_body(network: nn.Module, u: Units, features: Tensor) -> Tensor:
    """The units after the body on its flat features: ``after_body(net, u, Body(net)(x)) == net(x)``."""
    x = features
    rest = [network.get_submodule(p) for p in u.paths[u.n_body :]]
    # ConvNeXt's classifier starts with a LayerNorm2d and flattens itself: give it its [N, C, 1, 1].
    if any(isinstance(m, nn.Flatten) for unit in rest for m in unit.modules()):
        x = x[:, :, None, None]
    for unit in rest:
        x = unit(x)
    return x


def feature_bytes(arch: str, crop: int) -> int:
    """Bytes of one image's cached body output (float32) at a ``crop`` px input."""
    with torch.device("meta"):
        network = models.get_model(arch, weights=None).eval()
        out = Body(network, arch, nn.Identity())(torch.empty(1, 3, crop, crop))
    return out.shape[1] * 4
