"""The extract task: named layers' features for every image in a folder, in one file per run.

Writes features.pt, ``{"layers": {name: Tensor[N, ...]}, "files": [...]}`` (load it with
``torch.load(path, weights_only=True)``), and manifest.csv mapping each row to its file.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

from transferlab import backbone
from transferlab.classify import data, networks, settings
from transferlab.classify import module as classifier
from transferlab.classify.settings import ExtractSettings
from transferlab.files import atomic_write
from transferlab.result import TaskResult, settings_hparams

log = logging.getLogger(__name__)


def nodes(network: nn.Module, arch: str) -> dict[str, str]:
    """Layer name -> torchvision node: VGG's paper names (conv1_1 ... pool5, fc6 ... fc8), else the
    network's units (``layer4``, ``avgpool``, ``fc`` for a ResNet: a module's output) and torchvision's
    own node names (``flatten``, ``layer4.1.relu_1``)."""
    u = networks.units(network, arch)
    if u.aliases:
        return u.aliases
    return {name: name for name in [*u.paths, *get_graph_node_names(network)[1]] if name != "x"}


def run(cfg: DictConfig, output_dir: Path) -> TaskResult:
    s = ExtractSettings.from_cfg(cfg)
    if s.checkpoint is not None:
        module = classifier.load(s.checkpoint)
        arch, network, normalize = module.hparams.arch, module.network, module.normalize
        sizes = dict(module.hparams.preprocessing)
    else:
        arch = s.model.arch
        network, norm = backbone.build_classifier(arch, s.model.weights, s.model.normalization)
        normalize = backbone.Normalize(norm)
        sizes = settings.preprocessing(s.model, None, None)
    sizes = {"resize": s.resize_size or sizes["resize"], "crop": s.crop_size or sizes["crop"]}
    names = nodes(network, arch)
    settings.extract_layers(s.layers, list(names), arch)
    for m in network.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False  # an in-place ReLU would overwrite the conv output we return
    # Traced only up to the deepest requested layer.
    extractor = create_feature_extractor(network.eval(), {names[layer]: layer for layer in s.layers})
    model = nn.Sequential(normalize, extractor).to(s.device)
    names_out, loader = data.image_loader(s.images, sizes)
    chunks: dict[str, list[torch.Tensor]] = {layer: [] for layer in s.layers}
    with torch.inference_mode():
        for batch in loader:
            for layer, value in model(batch.to(s.device)).items():
                if s.pool and value.dim() == 4:
                    value = value.mean(dim=(2, 3))
                chunks[layer].append(value.float().cpu())
    features = {layer: torch.cat(parts) for layer, parts in chunks.items()}
    with atomic_write(output_dir / "features.pt") as f:
        torch.save({"layers": features, "files": names_out, "arch": arch, "pooled": s.pool, **sizes}, f)
    with atomic_write(output_dir / "manifest.csv", "w") as f:
        writer = csv.writer(f)
        writer.writerow(["row", "file"])
        writer.writerows(enumerate(names_out))
    shapes = ", ".join(f"{layer} {tuple(v.shape)}" for layer, v in features.items())
    log.info("features of %d images (%s): %s", len(names_out), shapes, output_dir / "features.pt")
    return TaskResult(
        metrics={
            "images": len(names_out),
            "arch": arch,
            "pooled": s.pool,
            **sizes,
            "layers": {layer: list(v.shape) for layer, v in features.items()},
        },
        objective=None,
        caption=(f"{len(names_out)} images, {arch}", shapes),
        hparams=settings_hparams(s),
    )
