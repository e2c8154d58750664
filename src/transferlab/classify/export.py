"""The export task: a fine-tuned classifier as a torch.export program and ONNX, each checked against PyTorch.

Exported models take a float batch ``[N, 3, crop, crop]`` of RGB in [0, 1] (any N) and return logits;
the normalization is inside them. export.json records the classes, the input and the measured errors.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from transferlab.classify import module as classifier
from transferlab.classify.settings import ExportSettings
from transferlab.errors import ExportError
from transferlab.files import atomic_write, write_json

log = logging.getLogger(__name__)


def export_program(network: nn.Module, example: Tensor, path: Path) -> Callable[[Tensor], Tensor]:
    """A ``torch.export`` program with a dynamic batch dimension, saved as .pt2 and run after loading it back."""
    program = torch.export.export(network, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    with atomic_write(path) as f:
        torch.export.save(program, f)
    loaded = torch.export.load(str(path)).module()
    return lambda x: loaded(x)


def export_onnx(network: nn.Module, example: Tensor, path: Path, opset: int) -> Callable[[Tensor], Tensor]:
    import onnxruntime

    for noisy in ("onnxscript", "onnx_ir"):  # their INFO lines list every graph pass
        logging.getLogger(noisy).setLevel(logging.WARNING)
    program = torch.onnx.export(
        network,
        (example,),
        dynamo=True,
        input_names=["image"],
        output_names=["logits"],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        opset_version=opset,
        verbose=False,
    )
    with atomic_write(path) as f:
        f.write(program.model_proto.SerializeToString())
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {"image": x.numpy()})[0])


def run(cfg: DictConfig, output_dir: Path) -> dict[str, Any]:
    """Writes model.pt2 (torch.export), model.onnx and export.json into ``output_dir``."""
    s = ExportSettings.from_cfg(cfg)
    atol, rtol = s.atol, s.rtol
    module = classifier.load(s.checkpoint)
    network = module.inference_network()
    crop = module.hparams.preprocessing["crop"]
    g = torch.Generator().manual_seed(s.seed)
    example = torch.rand(2, 3, crop, crop, generator=g)
    # A different batch size than the example's shows that the batch dimension stays dynamic.
    check = torch.rand(3, 3, crop, crop, generator=g)
    with torch.inference_mode():
        expected = network(check)
    report: dict[str, Any] = {
        "checkpoint": str(s.checkpoint.resolve()),
        "classes": module.classes,
        "input": {
            "shape": ["N", 3, crop, crop],
            "dtype": "float32",
            "values": "RGB in [0, 1]; normalization is inside the model",
        },
        "output": "logits [N, classes]",
        "tolerance": {"atol": atol, "rtol": rtol},
    }
    files = {"export": output_dir / "model.pt2", "onnx": output_dir / "model.onnx"}
    for name in s.formats:
        with torch.no_grad():
            run_exported = (
                export_program(network, example, files[name])
                if name == "export"
                else export_onnx(network, example, files[name], s.opset)
            )
            got = run_exported(check)
        error = float((got - expected).abs().max())
        ok = torch.allclose(got, expected, atol=atol, rtol=rtol)
        report[name] = {
            "file": files[name].name,
            "max_abs_diff": error,
            "within_tolerance": ok,
            "bytes": os.path.getsize(files[name]),
        }
        log.info("%s: %s, max |diff| %.3g vs PyTorch (atol %g, rtol %g)", name, files[name], error, atol, rtol)
        if not ok:
            write_json(report, output_dir / "export.json")
            raise ExportError(
                f"{name} export {files[name]} differs from PyTorch by up to {error:.3g} "
                f"(atol {atol}, rtol {rtol}); see export.json"
            )
    write_json(report, output_dir / "export.json")
    return report
