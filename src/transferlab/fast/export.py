"""Export an image-to-image network ([N, 3, H, W] RGB in [0, 1] in and out, any N, H, W) for
deployment: ONNX (dynamo exporter, dynamic batch, height and width), a ``torch.export`` program
(.pt2), and int8 dynamic quantization of the ONNX model for ONNX Runtime. Each is checked by
running it. Generic: any such network (per-style or arbitrary-style) exports through these.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from transferlab.files import atomic_write

log = logging.getLogger(__name__)


def _dynamic(min_side: int) -> tuple[dict[int, torch.export.Dim], ...]:
    return (
        {
            0: torch.export.Dim("batch", min=1, max=1024),
            2: torch.export.Dim("height", min=min_side, max=16384),
            3: torch.export.Dim("width", min=min_side, max=16384),
        },
    )


def export_program(network: nn.Module, example: Tensor, path: Path, min_side: int = 8) -> Callable[[Tensor], Tensor]:
    """Save a ``torch.export`` program to ``path`` (.pt2); returns the reloaded program as a function."""
    program = torch.export.export(network.eval(), (example,), dynamic_shapes=_dynamic(min_side))
    with atomic_write(path) as f:
        torch.export.save(program, f)
    loaded = torch.export.load(str(path)).module()
    return lambda x: loaded(x)


def export_onnx(
    network: nn.Module, example: Tensor, path: Path, opset: int = 18, min_side: int = 8
) -> Callable[[Tensor], Tensor]:
    """Save an ONNX model with input ``image`` and output ``stylized`` to ``path``; returns an ONNX
    Runtime session on the written file as a function."""
    for noisy in ("onnxscript", "onnx_ir"):  # their INFO lines list every graph pass
        logging.getLogger(noisy).setLevel(logging.WARNING)
    program = torch.onnx.export(
        network.eval(),
        (example,),
        dynamo=True,
        input_names=["image"],
        output_names=["stylized"],
        dynamic_shapes=_dynamic(min_side),
        opset_version=opset,
        verbose=False,
    )
    with atomic_write(path) as f:
        f.write(program.model_proto.SerializeToString())
    return onnx_runner(path)


def onnx_runner(path: Path, threads: int = 0) -> Callable[[Tensor], Tensor]:
    """An ONNX Runtime CPU session on ``path`` as a tensor function (``threads`` 0: ORT's default)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: torch.from_numpy(session.run(None, {name: x.detach().float().cpu().numpy()})[0])


def quantize_int8(source: Path, path: Path) -> Callable[[Tensor], Tensor]:
    """int8 weights (dynamic quantization: activations quantized at run time, no calibration data)
    of the ONNX model ``source``, written to ``path``; returns a session on it."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = path.with_name(path.name + ".tmp")
    quantize_dynamic(str(source), str(tmp), weight_type=QuantType.QInt8, op_types_to_quantize=["Conv"])
    tmp.replace(path)
    return onnx_runner(path)


def run(cfg: Any, output_dir: Path) -> dict[str, Any]:
    """The export_fast task: model.onnx, model.pt2 and model.int8.onnx from a train_fast checkpoint,
    each run against PyTorch at an odd size; export.json records the errors, sizes and the int8 cost."""
    import os

    from transferlab.errors import ExportError
    from transferlab.fast.module import load_network
    from transferlab.fast.settings import ExportSettings
    from transferlab.files import write_json

    s = ExportSettings.from_cfg(cfg)
    network, spec = load_network(s.checkpoint)
    g = torch.Generator().manual_seed(s.seed)
    example = torch.rand(2, 3, s.example_size, s.example_size, generator=g)
    check = torch.rand(3, 3, *s.check_size, generator=g)  # other batch and odd size: dynamic dims exercised
    with torch.inference_mode():
        expected = network(check)
    files = {"onnx": output_dir / "model.onnx", "pt2": output_dir / "model.pt2", "int8": output_dir / "model.int8.onnx"}
    report: dict[str, Any] = {
        "checkpoint": str(s.checkpoint.resolve()),
        "network": spec,
        "input": {"name": "image", "shape": ["N", 3, "H", "W"], "dtype": "float32", "values": "RGB in [0, 1]"},
        "output": {"name": "stylized", "shape": ["N", 3, "H", "W"], "values": "RGB in [0, 1]"},
        "check_shape": list(check.shape),
        "atol": s.atol,
    }
    for name in s.formats:
        with torch.no_grad():
            if name == "onnx":
                runner = export_onnx(network, example, files[name], s.opset)
            elif name == "pt2":
                runner = export_program(network, example, files[name])
            else:
                runner = quantize_int8(files["onnx"], files[name])
            error = float((runner(check) - expected).abs().max())
        report[name] = {"file": files[name].name, "max_abs_diff": error, "bytes": os.path.getsize(files[name])}
        print(f"export_fast {name}: {files[name]} max |diff| vs PyTorch {error:.3g}")
        if name != "int8" and error > s.atol:
            write_json(report, output_dir / "export.json")
            raise ExportError(f"{name} export {files[name]} differs from PyTorch by {error:.3g} > task.atol={s.atol}")
    write_json(report, output_dir / "export.json")
    return report
