"""The one exporter: a network as ONNX (dynamo exporter), a ``torch.export`` program (.pt2) and an int8 ONNX
model, each run on a check input other than the traced example and compared with PyTorch by one rule.

Every export task (export, export_fast, export_adain) names its formats alike (``onnx``, ``pt2``, ``int8``),
is checked by the same tolerance (``|a - b| <= atol + rtol * |b|`` elementwise; NaN fails it) and writes
``export.json`` alike: the task's own description of inputs and output, ``check_shape``, ``tolerance`` and
one entry per format (``file``, ``bytes``, ``max_abs_diff``, ``within_tolerance``). int8 is reported, not
bounded. Files are written whole or not at all (a full disk or Ctrl-C leaves no partial or temporary file).
"""

from __future__ import annotations

import io
import logging
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor, nn
from torch.export import ExportedProgram

from transferlab import checks
from transferlab.errors import ConfigError, ExportError
from transferlab.files import atomic_write, write_json
from transferlab.result import TaskResult, settings_hparams

log = logging.getLogger(__name__)

FORMATS = ("onnx", "pt2", "int8")
FILES = {"onnx": "model.onnx", "pt2": "model.pt2", "int8": "model.int8.onnx"}
ONNX_MODULES = ("onnx", "onnxscript", "onnxruntime")  # the export extra; reading a model needs onnx, onnxruntime
# torch.export guards every dynamic dimension with this bound; a larger check input fails its guard.
MAX_SIDE = 16384
MAX_BATCH = 1024
# The opsets torch's dynamo exporter writes (torch.onnx's ONNX_MIN_OPSET..ONNX_MAX_OPSET for the dynamo
# path); beyond them it falls back to 18 without saying so.
OPSETS = (18, 23)

Example = tuple[Tensor, ...]


@dataclass(frozen=True)
class ExportOptions:
    formats: tuple[str, ...]
    opset: int
    atol: float
    rtol: float

    @classmethod
    def from_cfg(cls, task: DictConfig) -> ExportOptions:
        """``task.formats``, ``task.opset``, ``task.atol`` and ``task.rtol`` of any export task."""
        given = checks.as_list(task.formats)  # task.formats=onnx is one format, not the letters o, n, n, x
        if not given:
            raise ConfigError(f"task.formats=[] exports nothing; list some of {', '.join(FORMATS)}")
        formats = tuple(dict.fromkeys(checks.choice(f, FORMATS, "task.formats") for f in given))
        if "int8" in formats and "onnx" not in formats:
            raise ConfigError("task.formats: int8 quantizes the ONNX model; list onnx too")
        if "onnx" in formats:  # torch's dynamo exporter writes it with onnxscript; its check runs onnxruntime
            checks.requires("task.formats=onnx (ONNX export)", ONNX_MODULES)
        opset = checks.at_least(task.opset, OPSETS[0], "task.opset")
        if opset > OPSETS[1]:
            raise ConfigError(
                f"task.opset={opset} is invalid; torch's ONNX exporter writes opsets {OPSETS[0]}-{OPSETS[1]}"
            )
        return cls(
            formats, opset, checks.non_negative(task.atol, "task.atol"), checks.non_negative(task.rtol, "task.rtol")
        )


def side_pair(values: Any, key: str, min_side: int) -> tuple[int, int]:
    """A ``[height, width]`` a traced program accepts: each side in [``min_side``, MAX_SIDE]."""
    sides = tuple(checks.at_least(v, min_side, key) for v in values)
    if len(sides) != 2:
        raise ConfigError(f"{key}={list(values)} is invalid; give [height, width]")
    return side(sides[0], key), side(sides[1], key)


def side(value: int, key: str) -> int:
    if value > MAX_SIDE:
        raise ConfigError(f"{key}={value} is invalid; an exported program accepts sides up to {MAX_SIDE} px")
    return value


def image_dims(min_side: int, prefix: str = "", batch: bool = True) -> dict[int, torch.export.Dim]:
    """Dynamic dims of an ``[N, 3, H, W]`` input: N (if ``batch``), H and W in [``min_side``, MAX_SIDE]."""
    dims = {
        2: torch.export.Dim(f"{prefix}height", min=min_side, max=MAX_SIDE),
        3: torch.export.Dim(f"{prefix}width", min=min_side, max=MAX_SIDE),
    }
    return {0: torch.export.Dim("batch", min=1, max=MAX_BATCH), **dims} if batch else dims


@dataclass(frozen=True)
class Signature:
    """Names and dynamic dims of the exported model's inputs (in order) and the name of its output."""

    inputs: tuple[str, ...]
    output: str
    dynamic_shapes: tuple[dict[int, torch.export.Dim], ...]


def within(got: Tensor, expected: Tensor, atol: float, rtol: float) -> bool:
    """The one tolerance rule: same shape and ``|got - expected| <= atol + rtol * |expected|`` everywhere
    (NaN or inf anywhere fails)."""
    return got.shape == expected.shape and bool(torch.isclose(got, expected, rtol=rtol, atol=atol).all())


def export(
    network: nn.Module,
    example: Example,
    check: Example,
    signature: Signature,
    options: ExportOptions,
    output_dir: Path,
    report: dict[str, Any],
    calibration: Sequence[Example] = (),
) -> dict[str, Any]:
    """Export ``network`` in each of ``options.formats`` into ``output_dir``, traced on ``example``, and run
    each on ``check`` (other sizes: the dynamic dims are exercised) against PyTorch; ``report`` (the task's
    description) plus the results is written as export.json and returned; int8 is static (QDQ) with
    ``calibration`` inputs, else dynamic (``quantize_int8``). An ExportError when PyTorch's own
    output is not finite or a format is outside the tolerance (int8 is only reported)."""
    network = network.eval()
    with torch.inference_mode():
        expected = network(*check)
    if not torch.isfinite(expected).all():
        raise ExportError("the network's own output is not finite (NaN or inf weights?); nothing was exported")
    report = {
        **report,
        # One input's shape, or one per input.
        "check_shape": list(check[0].shape) if len(check) == 1 else [list(x.shape) for x in check],
        "tolerance": {"atol": options.atol, "rtol": options.rtol, "rule": "|a - b| <= atol + rtol * |b|"},
    }
    program = trace(network, example, signature)  # one trace serves both formats
    for name in options.formats:
        path = output_dir / FILES[name]
        with torch.no_grad():
            if name == "onnx":
                run = export_onnx(program, example, path, signature, options.opset)
            elif name == "pt2":
                run = save_program(program, path)
            else:
                run = quantize_int8(output_dir / FILES["onnx"], path, calibration)
            got = run(*check)
        ok = within(got, expected, options.atol, options.rtol)
        error = float((got - expected).abs().max()) if got.shape == expected.shape else math.inf
        finite = math.isfinite(error)  # else JSON's null: a wrong shape or NaN or inf in the output
        report[name] = {
            "file": path.name,
            "bytes": os.path.getsize(path),
            "max_abs_diff": error if finite else None,
            "within_tolerance": ok,
        }
        log.info("%s: %s, max |diff| %.3g vs PyTorch (atol %g, rtol %g)", name, path, error, options.atol, options.rtol)
        if not ok and (name != "int8" or not finite):
            write_json(report, output_dir / "export.json")
            how = f"by up to {error:.3g}" if finite else f"(shape {list(got.shape)}, or values not finite)"
            raise ExportError(
                f"{name} export {path} differs from PyTorch {how} (task.atol={options.atol}, "
                f"task.rtol={options.rtol}); see export.json"
            )
    write_json(report, output_dir / "export.json")
    return report


def task_result(report: dict[str, Any], settings: Any) -> TaskResult:
    """An export task's result: export.json's ``report`` as its metrics, no images, the formats and their
    largest differences from PyTorch as its caption, the task's door ``settings`` as its HParams."""
    done = [name for name in FORMATS if name in report]
    diffs = ", ".join(f"{name} {_diff(report[name]['max_abs_diff'])}" for name in done)
    return TaskResult(
        metrics=report,
        objective=None,
        caption=(" ".join(done), f"max |diff| {diffs}"),
        hparams=settings_hparams(settings),
    )


def _diff(value: float | None) -> str:
    return "not finite" if value is None else f"{value:.2g}"


def trace(network: nn.Module, example: Example, signature: Signature) -> ExportedProgram:
    """``network`` traced by ``torch.export`` on ``example`` with ``signature``'s dynamic dims."""
    return torch.export.export(network.eval(), example, dynamic_shapes=signature.dynamic_shapes)


def save_program(program: ExportedProgram, path: Path) -> Callable[..., Tensor]:
    """Save ``program`` as .pt2; returns the reloaded program as a function."""
    # Serialized in memory first: torch's zip writer aborts the process when a write fails (a full disk).
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    with atomic_write(path) as f:
        f.write(buffer.getbuffer())
    loaded = torch.export.load(str(path)).module()
    return lambda *x: loaded(*x)


def export_onnx(
    program: ExportedProgram | nn.Module, example: Example, path: Path, signature: Signature, opset: int = OPSETS[0]
) -> Callable[..., Tensor]:
    """Save the traced ``program`` (or a network, traced here) as ONNX, its dynamic dims kept; returns an
    ONNX Runtime session on it."""
    if isinstance(program, nn.Module):
        program = trace(program, example, signature)
    for noisy in ("onnxscript", "onnx_ir"):  # their INFO lines list every graph pass
        logging.getLogger(noisy).setLevel(logging.WARNING)
    onnx_program = torch.onnx.export(
        program,
        example,
        dynamo=True,
        input_names=list(signature.inputs),
        output_names=[signature.output],
        opset_version=opset,
        verbose=False,
    )
    model = onnx_program.model_proto
    written = {o.domain: o.version for o in model.opset_import}.get("")
    if written != opset:
        raise ExportError(f"task.opset={opset}: torch's ONNX exporter wrote opset {written}; choose another opset")
    with atomic_write(path) as f:
        f.write(model.SerializeToString())
    return onnx_runner(path)


def quantize_int8(source: Path, path: Path, calibration: Sequence[Example] = ()) -> Callable[..., Tensor]:
    """The ONNX model ``source`` in int8, written to ``path``; returns a session on it. With ``calibration``
    (inputs as the model takes them: real images, whose activations set the scales), static quantization
    in QDQ form: uint8 activations and per-channel int8 weights, which ONNX Runtime fuses into QLinearConv
    (VNNI kernels where the CPU has them). Without, dynamic quantization of the Conv weights (activations
    quantized at run time by ConvInteger, several times slower than fp32 on the CPUs measured)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # The quantizer writes its own file: into a folder beside ``path`` that goes whatever happens, and then
    # through the atomic writer, so that a full disk or Ctrl-C leaves neither a part nor a temporary file.
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".int8.") as tmp:
        staged, prepared = Path(tmp) / path.name, Path(tmp) / "prepared.onnx"
        # ONNX Runtime's pre-processing (shape inference, graph optimization) first, as its quantizer asks.
        quant_pre_process(str(source), str(prepared))
        if calibration:
            quantize_static(
                str(prepared),
                str(staged),
                _Calibration(prepared, calibration),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                per_channel=True,
                op_types_to_quantize=["Conv"],
            )
        else:
            quantize_dynamic(str(prepared), str(staged), weight_type=QuantType.QInt8, op_types_to_quantize=["Conv"])
        with atomic_write(path) as f:
            f.write(staged.read_bytes())
    return onnx_runner(path)


class _Calibration:
    """ONNX Runtime's calibration reader protocol (``get_next``, None at the end) over ``examples``."""

    def __init__(self, model: Path, examples: Sequence[Example]) -> None:
        import onnx

        names = [i.name for i in onnx.load(str(model), load_external_data=False).graph.input]
        self.feeds = iter([{n: x.detach().float().cpu().numpy() for n, x in zip(names, xs)} for xs in examples])

    def get_next(self) -> dict[str, Any] | None:
        return next(self.feeds, None)


def onnx_runner(path: Path, threads: int = 0, inputs: Sequence[str] | None = None) -> Callable[..., Tensor]:
    """An ONNX Runtime CPU session on ``path`` as a tensor function of its inputs in order
    (``threads`` 0: ORT's default); a ValueError when ``inputs`` are given and the model's differ."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    if inputs is not None and tuple(names) != tuple(inputs):
        raise ValueError(f"its inputs are {', '.join(names)}, not {', '.join(inputs)}")

    def run(*xs: Tensor) -> Tensor:
        feed = {name: x.detach().float().cpu().numpy() for name, x in zip(names, xs)}
        return torch.from_numpy(session.run(None, feed)[0])

    return run
