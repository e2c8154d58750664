"""The one loader of every stylizer file: a train_fast or train_adain checkpoint, or an export_fast or export_adain
ONNX model, becomes one ``Stylizer`` (``[N, 3, H, W]`` RGB in [0, 1] to the same shape), so that apply and video
take either family. Checkpoints go through the floor's one ``weights_only`` loader; every hyperparameter is
checked by the rules of the config that made it before anything is built, and NaN or infinite weights are
refused. An ONNX model is checked against the stylizer contract before it runs, with its memory bounded by an
arena limit and each run by a watchdog."""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from transferlab import backbone, checkpoints, checks, fetch, images
from transferlab.errors import ConfigError, ImageError, WeightsError
from transferlab.fast.arbitrary import networks as arbitrary
from transferlab.fast.per_style import networks as per_style

log = logging.getLogger(__name__)

FAMILIES = {"per_style": "a train_fast checkpoint (.ckpt)", "arbitrary": "a train_adain checkpoint (.ckpt)"}
EXPORTS = {"per_style": "an export_fast model.onnx", "arbitrary": "an export_adain model.onnx"}
STYLIZER_FILE = "a train_fast or train_adain checkpoint (.ckpt), or an export_fast or export_adain model.onnx"
# The inputs of an exported stylizer, by family: what export_fast and export_adain write.
ONNX_INPUTS = {("image",): "per_style", ("content", "style"): "arbitrary"}
MIN_SIZES = {"per_style": per_style.MIN_SIZE, "arbitrary": arbitrary.MIN_SIZE}
# An ONNX model is code from its author: its allocations are bounded (ONNX Runtime's arena, shared by the
# process's sessions) and each run is stopped after ONNX_TIMEOUT_S (an endless Loop would hang the task).
ONNX_MEMORY_FRACTION = 0.5
ONNX_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Stylizer:
    """Any stylizer as one callable: ``stylizer(batch)``, ``[N, 3, H, W]`` in [0, 1] to the same shape on the
    CPU; ``family`` per_style or arbitrary; ``min_size`` the smallest side it takes."""

    run: Callable[[Tensor], Tensor]
    family: str
    min_size: int

    def __call__(self, batch: Tensor) -> Tensor:
        return self.run(batch)


def load(
    path: Path,
    key: str = "ckpt_path",
    device: str = "cpu",
    style: Tensor | None = None,
    style_key: str = "task.style",
    family: str | None = None,
) -> Stylizer:
    """The stylizer in ``path`` (.ckpt or .onnx; errors name ``key``; only ``family``'s when given); an
    arbitrary-style one stylizes with ``style`` (``[1, 3, h, w]``, see ``style_image``), which a per-style one
    refuses (``style_key`` in messages). ONNX models run on the CPU."""
    if path.suffix.lower() == ".onnx":
        family, run = _onnx(path, key, style, style_key, family)
    else:
        family, network, _ = read_network(path, key, family)
        style_fits(family, style, key, path, style_key)
        network = network.to(device)
        if family == "arbitrary":
            with torch.inference_mode():  # the style's code once, not per batch
                codes = [network.code(style.to(device))]

            def run(batch: Tensor) -> Tensor:
                return network.stylize(batch.to(device), codes)
        else:

            def run(batch: Tensor) -> Tensor:
                return network(batch.to(device))

    def stylize(batch: Tensor) -> Tensor:
        with torch.inference_mode():
            return run(batch).float().cpu()

    return Stylizer(stylize, family, MIN_SIZES[family])


def style_fits(family: str, style: Tensor | None, key: str, path: Path, style_key: str) -> None:
    """An arbitrary-style network needs a style; a per-style one has its own and refuses another."""
    if family == "arbitrary" and style is None:
        raise ConfigError(f"{key}={path} is an arbitrary-style network: give {style_key}=<a style image>")
    if family == "per_style" and style is not None:
        raise ConfigError(
            f"{key}={path} is a per-style network (its style is trained in): drop {style_key}, or give "
            "a train_adain checkpoint or an export_adain model.onnx"
        )


def style_image(source: str, key: str, size: int | None) -> Tensor:
    """The style image ``source`` (a local path or pinned URL) as ``[1, 3, h, w]``, its long side resized to
    ``size``; an ImageError in one line when a side falls below what an arbitrary-style network takes."""
    image = images.load_image(fetch.resolve(source, key), size)
    h, w = image.shape[-2:]
    if min(h, w) < arbitrary.MIN_SIZE:
        raise ImageError(
            f"{key}={source} is {w}x{h} px at long side {size or max(h, w)}; a style needs at least "
            f"{arbitrary.MIN_SIZE} px a side: give a less thin image or a larger style size"
        )
    return image.unsqueeze(0)


def read_network(
    path: str | Path, key: str = "ckpt_path", family: str | None = None, loss_net: bool = False
) -> tuple[str, nn.Module, dict[str, Any]]:
    """The family, trained network (eval mode) and checked ``network`` hyperparameters of a train_fast or
    train_adain checkpoint (only ``family``'s when given). A light arbitrary-style network is built without
    its training-only parts unless ``loss_net`` (to score it)."""
    expected = FAMILIES[family] if family else "a train_fast checkpoint or a train_adain checkpoint (.ckpt)"
    hp, state = checkpoints.read_trained(path, key, expected)
    spec = hp.get("network")
    arch = spec.get("arch") if isinstance(spec, dict) else None
    found = "per_style" if arch in per_style.ARCHS else "arbitrary" if arch in arbitrary.ARCHS else None
    if found is None:
        raise WeightsError(f"{key}={path} is not {expected} (no network hyperparameters we know); give {expected}")
    if family and found != family:
        raise WeightsError(f"{key}={path} is {FAMILIES[found]}, not {expected}; give {expected}")
    what = f"{key}={path}"
    try:
        spec = _per_style_spec(spec) if found == "per_style" else _arbitrary_spec(spec)
    except ConfigError as exc:
        raise WeightsError(
            f"{what}: its weights do not fit the network it names ({exc}); give {FAMILIES[found]}"
        ) from None
    if found == "per_style":
        network = checkpoints.load_weights(per_style.build_network(**spec), state, "network.", what, expected)
    else:
        skip = () if loss_net else (f"net.{arbitrary.TRAINING_ONLY}.",)
        built = arbitrary.build(**spec, loss_net=loss_net)
        network = checkpoints.load_weights(built, state, "net.", what, expected, skip)
    return found, network, spec


def _per_style_spec(spec: dict[str, Any]) -> dict[str, Any]:
    from transferlab.fast.settings import NetworkSettings  # the door's rules for the fastnet group

    _known_keys(spec, ("arch", "width", "blocks"))
    s = NetworkSettings.from_values(spec, "network")
    return {"arch": s.arch, "width": s.width, "blocks": s.blocks}


def _arbitrary_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The rules of train_adain's door (arbitrary/settings.py) for what it saved; ``weights`` must be null:
    the checkpoint holds every weight, and a name would download one."""
    known = ("arch", "weights", "normalization", "pooling", "style_layers", "encoder", "width", "content_layers")
    _known_keys(spec, known)
    arch = checks.choice(spec.get("arch"), arbitrary.ARCHS, "network.arch")
    encoder = checks.choice(spec.get("encoder"), arbitrary.ENCODERS, "network.encoder")
    if encoder == "light" and arch != "adain":
        why = "the transformer has its own encoder" if arch == "stytr" else "runs in VGG19's relu4_1 space and deeper"
        raise ConfigError(f"network.arch={arch} with network.encoder=light: {arbitrary.ARCH_NAMES[arch]} {why}")
    width = checks.positive(spec.get("width"), "network.width")
    if width > 1:
        raise ConfigError(f"network.width={width} is invalid; it must be in (0, 1]")
    if spec.get("weights") is not None:
        raise ConfigError(f"network.weights={spec['weights']!r} is invalid; it must be null")
    deepest = "relu4_1" if arch == "adain" else "relu5_1"
    names = backbone.layer_names("vgg19")
    layers = {}
    for key in ("style_layers", "content_layers"):
        given = spec.get(key)
        if key == "content_layers" and given is None:  # before issue 26: the arch's own
            continue
        if not isinstance(given, dict) or not given:
            raise ConfigError(f"network.{key}={given!r} is invalid; give {{layer: weight}} up to {deepest}")
        checks.vgg_layers("vgg19", given, f"network.{key}")
        deeper = [layer for layer in given if names.index(layer) > names.index(deepest)]
        if deeper:
            raise ConfigError(f"network.{key}: {', '.join(deeper)} lie past {deepest}, where the encoder ends")
        layers[key] = checks.layer_weights(given, f"network.{key}")
    fixed = arbitrary.CONTENT_LAYERS.get(arch)  # the transformer's are free
    if fixed is not None and sorted(layers.get("content_layers", fixed)) != sorted(fixed):
        raise ConfigError(f"network.content_layers must be {', '.join(fixed)} for {arch}")
    return {
        "arch": arch,
        "encoder": encoder,
        "width": width,
        "weights": None,
        "pooling": checks.choice(spec.get("pooling"), ["max", "avg"], "network.pooling"),
        "normalization": checks.choice(
            spec.get("normalization"), list(backbone.NORMALIZATIONS), "network.normalization"
        ),
        **layers,
    }


def _known_keys(spec: dict[str, Any], known: tuple[str, ...]) -> None:
    unknown = [k for k in spec if k not in known]
    if unknown:
        raise ConfigError(f"network holds {', '.join(map(repr, unknown))}, which no network of this family takes")


def _onnx(
    path: Path, key: str, style: Tensor | None, style_key: str, family: str | None
) -> tuple[str, Callable[[Tensor], Tensor]]:
    """The family of the exported stylizer in ``path`` (checked against the contract) and its run function."""
    found = onnx_contract(path, key)
    if family and found != family:
        raise WeightsError(f"{key}={path} is {EXPORTS[found]}, not {EXPORTS[family]}; give {EXPORTS[family]}")
    family = found
    style_fits(family, style, key, path, style_key)
    session = onnx_session(path, key)
    if family == "arbitrary":
        return family, lambda batch: session(batch, style)
    return family, session


def onnx_contract(path: Path, key: str) -> str:
    """The family of the ONNX model in ``path``: its inputs and output must be a stylizer's (export_fast's
    ``image`` or export_adain's ``content`` and ``style``, float ``[N, 3, H, W]`` each, output the same) and
    its weights finite; a WeightsError in one line otherwise (another network, a classifier export)."""
    import onnx
    from onnx import numpy_helper

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - any parse failure means the same to the user
        raise WeightsError(
            f"{key}={path} is not a readable ONNX model of this task: {_first_line(exc)}; give {STYLIZER_FILE}"
        ) from None
    graph = model.graph
    weights = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in weights]
    names = tuple(i.name for i in inputs)
    family = ONNX_INPUTS.get(names)
    if family is None or len(graph.output) != 1:
        raise WeightsError(
            f"{key}={path}: its inputs are ({', '.join(names)}) and it has {len(graph.output)} outputs; a stylizer "
            f"takes image (export_fast) or content and style (export_adain) to one image; give {STYLIZER_FILE}"
        )
    for value in [*inputs, graph.output[0]]:
        _image_shaped(value, key, path)
    for tensor in graph.initializer:
        array = numpy_helper.to_array(tensor)
        if array.dtype.kind == "f" and not torch.from_numpy(array.copy()).isfinite().all():
            raise WeightsError(
                f"{key}={path}: weight {tensor.name} holds NaN or infinite values (exported from a diverged "
                "training); export a checkpoint from before it diverged"
            )
    return family


def _image_shaped(value: Any, key: str, path: Path) -> None:
    """``value`` (an input or output of the graph) is float and ``[N, 3, H, W]`` (symbolic dims allowed)."""
    from onnx import TensorProto

    t = value.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else "?" for d in t.shape.dim] if t.HasField("shape") else None
    if t.elem_type != TensorProto.FLOAT or dims is None or len(dims) != 4 or dims[1] not in (3, "?"):
        shape = "no shape" if dims is None else f"shape [{', '.join(map(str, dims))}]"
        raise WeightsError(
            f"{key}={path}: {value.name} has {shape} and element type {TensorProto.DataType.Name(t.elem_type)}, "
            f"not float [N, 3, H, W] (an RGB image); give {STYLIZER_FILE}"
        )


@cache
def _bounded_arena() -> int:
    """Register ONNX Runtime's CPU arena (for the process's sessions that use it) with its limit, once."""
    import onnxruntime as ort

    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: assume 16 GiB
        total = 16 << 30
    limit = int(total * ONNX_MEMORY_FRACTION)
    info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    ort.create_and_register_allocator(info, ort.OrtArenaCfg(limit, -1, -1, -1))
    log.info(
        "ONNX models run with at most %.1f GiB (ONNX Runtime's arena) and %g s a batch", limit / 2**30, ONNX_TIMEOUT_S
    )
    return limit


def onnx_session(path: Path, key: str, timeout_s: float | None = None) -> Callable[..., Tensor]:
    """An ONNX Runtime CPU session on the checked model ``path`` as a tensor function of its inputs in order,
    its memory bounded by the arena and each run stopped after ``timeout_s`` (default ``ONNX_TIMEOUT_S``);
    any failure (an allocation past the limit, the watchdog, a kernel error, an output of another shape or
    not finite) is a WeightsError in one line."""
    import onnxruntime as ort

    limit = _bounded_arena()
    timeout_s = ONNX_TIMEOUT_S if timeout_s is None else timeout_s
    options = ort.SessionOptions()
    options.add_session_config_entry("session.use_env_allocators", "1")
    options.log_severity_level = 4  # its errors reach the user as our one line, not as log spam
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - any ORT load failure means the same to the user
        raise WeightsError(
            f"{key}={path}: ONNX Runtime cannot load it: {_first_line(exc)}; give {STYLIZER_FILE}"
        ) from None
    names = [i.name for i in session.get_inputs()]

    def run(*xs: Tensor) -> Tensor:
        feed = {name: x.detach().float().cpu().numpy() for name, x in zip(names, xs)}
        run_options = ort.RunOptions()
        watchdog = threading.Timer(timeout_s, setattr, (run_options, "terminate", True))
        watchdog.start()
        try:
            out = torch.from_numpy(session.run(None, feed, run_options)[0])
        except Exception as exc:  # noqa: BLE001 - the model's own failure, whatever ORT calls it
            if run_options.terminate:
                raise WeightsError(
                    f"{key}={path}: one batch ran past {timeout_s:g} s and was stopped (a model that loops "
                    "without end, or far too large images); check the model or give smaller images"
                ) from None
            raise WeightsError(
                f"{key}={path} failed to run (memory limit {limit / 2**30:.1f} GiB): {_ort_reason(exc)}"
            ) from None
        finally:
            watchdog.cancel()
        if out.shape != xs[0].shape:
            raise WeightsError(
                f"{key}={path} turned a batch of {list(xs[0].shape)} into {list(out.shape)}, not an image "
                "of the same size; give a stylizer"
            )
        if not bool(out.isfinite().all()):  # written out, NaN would be black pixels
            raise WeightsError(f"{key}={path} gave NaN or infinite values; give a stylizer that was exported sound")
        return out

    return run


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:400] if text else type(exc).__name__


def _ort_reason(exc: BaseException) -> str:
    """ONNX Runtime's run error as the node and its status, without the source path and C++ signature."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    found = re.search(r"while running (\S+) node.*?Status Message: (.*)", text)
    if found is None:
        return text
    node, status = found.groups()
    status = re.sub(r"^\S+:\d+ [^)]*\) ", "", status)  # /onnxruntime_src/...cc:360 void* f(...)
    return f"its {node} node: {status}"
