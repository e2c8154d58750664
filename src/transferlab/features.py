"""Any torchvision classification network as a frozen loss network, its layers addressed by torchvision's node
names (``layer3``, ``features.5``, ``layer2.1.relu_1``: ``get_graph_node_names``, or a module's path for its
last node), and the softmax transformation of features of Wang et al. (CVPR 2021).

VGG keeps its paper names (``backbone.VGGFeatures``); every other family goes through ``NodeFeatures``, which
``create_feature_extractor`` truncates after the deepest layer in use. Images outside are RGB in [0, 1]: the
encoder owns the normalization its weights expect, as ``VGGFeatures`` does.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Iterable

import torch
from torch import Tensor, nn
from torchvision import models
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

from transferlab import backbone, winograd

TRANSFORMS = ("none", "softmax")
# The families whose features are [B, C, H, W] maps at every stage, so that Gram matrices and content
# features mean what they mean for VGG (Swin's and ViT's are tokens), that trace with torch.fx, and that
# build on the meta device to be traced (RegNet computes its widths from tensors at construction).
FAMILIES = ("resnet", "resnext", "wide_resnet", "mobilenet_v3", "efficientnet", "convnext", "alexnet")
ARCHS = tuple(name for name in models.list_models(module=models) if name.startswith(FAMILIES))


def softmax(features: Tensor, temperature: float) -> Tensor:
    """Wang et al.'s softmax transformation: ``N softmax(F / T)`` over all ``N = C H W`` activations of each
    image. Scaled by ``N`` (their code leaves it out and weighs the style loss 1e17): the transformed
    activations then average 1 at every image size, so that the Gram targets of a style at another size
    (``task.style_scale``, coarse scales) still match and the loss weights stay in VGG's range. In fp32:
    ``exp`` in bf16 would lose the small activations the transformation is there to keep."""
    z = features.float() / temperature
    return torch.exp(z - torch.logsumexp(z, dim=(1, 2, 3), keepdim=True)) * z[0].numel()


def is_node_arch(arch: str) -> bool:
    """Whether ``arch``'s layers are addressed by node names (every family here but VGG)."""
    return arch in ARCHS


@functools.cache
def node_names(arch: str) -> tuple[str, ...]:
    """``arch``'s layer names in forward order: torchvision's node names (eval mode) and each module path
    above them (``layer3``: the output of its last node); the network is built on the meta device (no
    weights, no memory) to be traced."""
    with torch.device("meta"):
        network = models.get_model(arch, weights=None)
    names: dict[str, None] = {}
    for node in get_graph_node_names(network.eval())[1]:
        parts = node.split(".")
        names.update({".".join(parts[: i + 1]): None for i in range(len(parts))})
    return tuple(name for name in names if name != "x")


def unknown_layer(arch: str, layers: Iterable[str]) -> str | None:
    """The message for the first of ``layers`` that is no layer of ``arch`` (None: all are), naming the
    closest names: ``... 'layr3' is not a layer of resnet50; close names: layer3, layer2, layer4``."""
    valid = node_names(arch)
    for layer in layers:
        if layer not in valid:
            close = difflib.get_close_matches(layer, valid, n=5, cutoff=0.5) or [n for n in valid if "." not in n]
            return f"{layer!r} is not a layer of {arch}; close names: {', '.join(close)}"
    return None


class NodeFeatures(nn.Module):
    """A frozen torchvision network that runs only up to the deepest requested node.

    ``forward`` takes a batch of [0, 1] RGB images and returns ``{layer: activation}`` for the requested
    layers, through ``transform`` (``softmax``: see ``softmax``; ``none``: as they are). Always in eval mode:
    batch norms use their running statistics, dropout and stochastic depth are off."""

    def __init__(
        self,
        network: nn.Module,
        arch: str,
        layers: Iterable[str],
        normalization: backbone.Normalization,
        transform: str = "none",
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        layers = list(dict.fromkeys(layers))
        if not layers:
            raise ValueError(f"no layers requested from {arch}; name at least one layer")
        problem = unknown_layer(arch, layers)
        if problem:
            raise ValueError(problem)
        if transform not in TRANSFORMS or temperature <= 0:
            raise ValueError(
                f"feature transform {transform!r} at temperature {temperature}: choose {TRANSFORMS}, T > 0"
            )
        for module in network.modules():
            if isinstance(module, nn.ReLU):
                # A returned activation must survive the ReLU after it (torchvision's ReLUs run in place).
                module.inplace = False
        self.normalize = backbone.Normalize(normalization)
        extractor = create_feature_extractor(network.eval(), {layer: layer for layer in layers})
        # Channels-last: oneDNN's CPU convolutions (and cuDNN's with tensor cores) run faster in NHWC.
        self.extractor = extractor.to(memory_format=torch.channels_last)
        self.arch, self.layers = arch, layers
        self.transform, self.temperature = transform, temperature
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> NodeFeatures:
        # Always frozen and in eval mode, whatever Lightning asks of its parent module.
        return super().train(False)

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        out = self.extractor(self.normalize(image).contiguous(memory_format=torch.channels_last))
        if self.transform == "softmax":
            return {layer: softmax(value, self.temperature) for layer, value in out.items()}
        return dict(out)


class Transformed(nn.Module):
    """A VGG encoder's features through ``softmax`` at ``temperature`` (``model.feature_transform=softmax``)."""

    def __init__(self, encoder: backbone.VGGFeatures, temperature: float) -> None:
        super().__init__()
        self.encoder, self.temperature = encoder, temperature
        self.layers = encoder.layers

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        return {layer: softmax(value, self.temperature) for layer, value in self.encoder(image).items()}


Encoder = backbone.VGGFeatures | NodeFeatures | Transformed


def encoders(
    model: backbone.ModelSettings, layer_sets: Iterable[Iterable[str]], fast_convs: winograd.Mode
) -> list[Encoder]:
    """The loss network ``model.*`` describes, built once with its weights (the one weights loader) and their
    normalization, as one frozen encoder per set of ``layer_sets`` over the same weights, through
    ``model.feature_transform``; ``fast_convs``: VGG's Winograd convolutions (``backbone.build_features``)."""
    if is_node_arch(model.arch):
        network, norm = backbone.build_classifier(model.arch, model.weights, model.normalization)
        transform = (model.feature_transform, model.temperature)
        return [NodeFeatures(network, model.arch, layers, norm, *transform) for layers in layer_sets]
    vgg, norm = backbone.build_features(model.arch, model.weights, model.pooling, model.normalization, fast_convs)
    out = [backbone.VGGFeatures(vgg, model.arch, layers, norm, model.feature_scale) for layers in layer_sets]
    return [Transformed(e, model.temperature) for e in out] if model.feature_transform == "softmax" else out


# The children of these top-level modules are a network's stages (VGG, MobileNet, EfficientNet, ConvNeXt; RegNet).
STAGE_CONTAINERS = ("features", "trunk_output")
HEADS = ("avgpool", "flatten", "fc", "classifier")


@functools.cache
def stage_ends(arch: str) -> tuple[str, ...]:
    """The last unit at each resolution of ``arch`` (ResNet-50: relu, layer1, layer2, layer3, layer4): the
    network's fixed ruler for the quality figures, as VGG's is quality.REFERENCE_LAYERS. Units are the
    top-level modules before the head, a stage container's children in its place; their strides come
    from a pass on the meta device (shapes only)."""
    with torch.device("meta"):
        network = models.get_model(arch, weights=None).eval()
        units = []
        for name, child in network.named_children():
            if name in STAGE_CONTAINERS:
                units += [f"{name}.{n}" for n, _ in child.named_children()]
            elif name not in HEADS:
                units.append(name)
        side = 64
        shapes = create_feature_extractor(network, {u: u for u in units})(torch.empty(1, 3, side, side))
    ends: dict[int, str] = {}
    for unit in units:
        ends[shapes[unit].shape[-1]] = unit  # a later unit at the same resolution replaces the earlier
    return tuple(ends.values())
