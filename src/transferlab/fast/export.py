"""Export an image-to-image network ([N, 3, H, W] RGB in [0, 1] in and out, any N, H, W) for
deployment: ONNX (dynamo exporter, dynamic batch, height and width), a ``torch.export`` program
(.pt2), and int8 dynamic quantization of the ONNX model for ONNX Runtime. Each is checked by
running it. Generic: any such network (per-style or arbitrary-style) exports through these.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

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
