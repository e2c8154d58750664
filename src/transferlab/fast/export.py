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
from torch.export import ExportedProgram

from transferlab.files import atomic_write

log = logging.getLogger(__name__)


Example = Tensor | tuple[Tensor, ...]


def _dynamic(min_side: int) -> tuple[dict[int, torch.export.Dim], ...]:
    return (
        {
            0: torch.export.Dim("batch", min=1, max=1024),
            2: torch.export.Dim("height", min=min_side, max=16384),
            3: torch.export.Dim("width", min=min_side, max=16384),
        },
    )


def _args(example: Example) -> tuple[Tensor, ...]:
    return example if isinstance(example, tuple) else (example,)


def trace(network: nn.Module, example: Example, min_side: int = 8, dynamic_shapes: Any = None) -> ExportedProgram:
    """``network`` traced by ``torch.export`` on ``example`` (one input or a tuple of them);
    ``dynamic_shapes`` defaults to dynamic N, H, W of one input."""
    return torch.export.export(network.eval(), _args(example), dynamic_shapes=dynamic_shapes or _dynamic(min_side))


def export_program(
    network: nn.Module | ExportedProgram, example: Example, path: Path, min_side: int = 8, dynamic_shapes: Any = None
) -> Callable[..., Tensor]:
    """Save a ``torch.export`` program (of ``network``, or an already traced one) to ``path`` (.pt2);
    returns the reloaded program as a function."""
    if not isinstance(network, ExportedProgram):
        network = trace(network, example, min_side, dynamic_shapes)
    with atomic_write(path) as f:
        torch.export.save(network, f)
    loaded = torch.export.load(str(path)).module()
    return lambda *x: loaded(*x)


def export_onnx(
    network: nn.Module | ExportedProgram,
    example: Example,
    path: Path,
    opset: int = 18,
    min_side: int = 8,
    input_names: tuple[str, ...] = ("image",),
    dynamic_shapes: Any = None,
) -> Callable[..., Tensor]:
    """Save an ONNX model with inputs ``input_names`` (default ``image``) and output ``stylized`` to
    ``path`` (from ``network``, or from its traced program, which keeps its dynamic dims and saves a
    second trace); returns an ONNX Runtime session on the written file as a function."""
    for noisy in ("onnxscript", "onnx_ir"):  # their INFO lines list every graph pass
        logging.getLogger(noisy).setLevel(logging.WARNING)
    traced = isinstance(network, ExportedProgram)
    program = torch.onnx.export(
        network if traced else network.eval(),
        _args(example),
        dynamo=True,
        input_names=list(input_names),
        output_names=["stylized"],
        dynamic_shapes=None if traced else dynamic_shapes or _dynamic(min_side),
        opset_version=opset,
        verbose=False,
    )
    with atomic_write(path) as f:
        f.write(program.model_proto.SerializeToString())
    return onnx_runner(path)


def onnx_runner(path: Path, threads: int = 0, inputs: tuple[str, ...] | None = None) -> Callable[..., Tensor]:
    """An ONNX Runtime CPU session on ``path`` as a tensor function of its inputs in order
    (``threads`` 0: ORT's default); a ValueError when ``inputs`` are given and the model's differ."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    if inputs is not None and tuple(names) != inputs:
        raise ValueError(f"its inputs are {', '.join(names)}, not {', '.join(inputs)}")

    def run(*xs: Tensor) -> Tensor:
        feed = {name: x.detach().float().cpu().numpy() for name, x in zip(names, xs)}
        return torch.from_numpy(session.run(None, feed)[0])

    return run


def export_checked(
    network: nn.Module,
    example: Example,
    check: Example,
    formats: tuple[str, ...],
    output_dir: Path,
    opset: int,
    atol: float,
    report: dict[str, Any],
    label: str,
    **export_kwargs: Any,
) -> dict[str, Any]:
    """Export ``network`` in each of ``formats`` (onnx, pt2, int8) into ``output_dir``, run each on
    ``check`` (other sizes than ``example``: the dynamic dims are exercised) against PyTorch, print and
    record the max |diff| in ``report``, written as export.json; an ExportError past ``atol`` (int8
    is reported, not bounded). ``export_kwargs`` go to both exporters (``dynamic_shapes``, ...)."""
    import os

    from transferlab.errors import ExportError
    from transferlab.files import write_json

    with torch.inference_mode():
        expected = network.eval()(*_args(check))
    files = {"onnx": output_dir / "model.onnx", "pt2": output_dir / "model.pt2", "int8": output_dir / "model.int8.onnx"}
    report = {**report, "check_shape": [list(x.shape) for x in _args(check)], "atol": atol}
    if not isinstance(check, tuple):
        report["check_shape"] = report["check_shape"][0]
    program_kwargs = {k: v for k, v in export_kwargs.items() if k != "input_names"}
    # One trace serves both formats.
    program = trace(network, example, **program_kwargs) if {"onnx", "pt2"} <= set(formats) else network
    for name in formats:
        with torch.no_grad():
            if name == "onnx":
                runner = export_onnx(program, example, files[name], opset, **export_kwargs)
            elif name == "pt2":
                runner = export_program(program, example, files[name], **program_kwargs)
            else:
                runner = quantize_int8(files["onnx"], files[name])
            error = float((runner(*_args(check)) - expected).abs().max())
        report[name] = {"file": files[name].name, "max_abs_diff": error, "bytes": os.path.getsize(files[name])}
        print(f"{label} {name}: {files[name]} max |diff| vs PyTorch {error:.3g}")
        if name != "int8" and error > atol:
            write_json(report, output_dir / "export.json")
            raise ExportError(f"{name} export {files[name]} differs from PyTorch by {error:.3g} > task.atol={atol}")
    write_json(report, output_dir / "export.json")
    return report


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
    from transferlab.fast.settings import ExportSettings
    from transferlab.fast.stylizer import read_network

    s = ExportSettings.from_cfg(cfg)
    _, network, spec = read_network(s.checkpoint, family="per_style")
    g = torch.Generator().manual_seed(s.seed)
    example = torch.rand(2, 3, s.example_size, s.example_size, generator=g)
    check = torch.rand(3, 3, *s.check_size, generator=g)  # other batch and odd size: dynamic dims exercised
    report: dict[str, Any] = {
        "checkpoint": str(s.checkpoint.resolve()),
        "network": spec,
        "input": {"name": "image", "shape": ["N", 3, "H", "W"], "dtype": "float32", "values": "RGB in [0, 1]"},
        "output": {"name": "stylized", "shape": ["N", 3, "H", "W"], "values": "RGB in [0, 1]"},
    }
    return export_checked(network, example, check, s.formats, output_dir, s.opset, s.atol, report, "export_fast")
