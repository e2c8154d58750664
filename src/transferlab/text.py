"""Style from words: the ``text`` config group (which CLIP model, which weights), the prompts and the
``loss.text_*`` settings, checked once (``settings``), and the CLIP model built from them (``build``).

open_clip (the optional extra ``text``) does the model and the tokenizer: ``text.model`` is one of its
model names (``open_clip.list_models()``), or ``transferlab-tiny``, a model of a few layers registered from
``text_models/`` for tests and timing the mechanics. ``text.weights``: one of open_clip's pretrained tags
for that model (open_clip downloads them into its cache on first use), a local ``.pt``/``.pth`` state dict
(read by the one ``weights_only=True`` loader, transferlab/checkpoints.py), or null: random weights,
announced. The losses themselves are transferlab/textloss.py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor, nn

from transferlab import backbone, checkpoints, checks, groups
from transferlab.errors import ConfigError, WeightsError
from transferlab.textloss import TextLoss, TextLossSettings, text_direction

log = logging.getLogger(__name__)

EXTRA = "text"
MAX_PROMPT_CHARS = 1000  # refused beyond this before tokenizing; open_clip's models read 77 tokens at most
MODELS_DIR = Path(__file__).parent / "text_models"
EXPECTED = "an open_clip state dict (.pt or .pth) for text.model"


@dataclass(frozen=True)
class TextSettings:
    """A run's prompt: ``task.style_text`` against ``task.source_text`` under ``text.model`` with
    ``text.weights`` (a pretrained tag, a local file, or None for random weights)."""

    model: str
    weights: str | None
    prompt: str
    source: str
    loss: TextLossSettings

    def fingerprint(self) -> dict[str, Any]:
        return {
            "text.model": self.model,
            "text.weights": self.weights,
            "prompt": self.prompt,
            "source": self.source,
        } | {f"loss.{k}": v for k, v in asdict(self.loss).items()}


def open_clip() -> Any:
    """open_clip with our model configs registered; one line naming the extra where it is missing."""
    checks.requires("task.style_text (a text prompt)", ("open_clip",), EXTRA)
    import open_clip as library

    if "transferlab-tiny" not in library.list_models():
        library.add_model_config(MODELS_DIR)
    return library


@contextmanager
def quiet() -> Iterator[None]:
    """open_clip logs each step of building a model and its tokenizer at INFO on the root logger."""
    previous = logging.root.manager.disable
    logging.disable(logging.INFO)
    try:
        yield
    finally:
        logging.disable(previous)


def prompt(value: Any, key: str, tokenizer: Any) -> str:
    """A non-empty prompt the model reads whole: at most ``MAX_PROMPT_CHARS`` characters and fewer tokens
    than the tokenizer's context (open_clip's tokenizer would cut the rest off silently)."""
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{key}={value!r} is not text; quote it: {key}='{value}'")
    if value is None or not value.strip():
        raise ConfigError(f"{key}={value!r} is empty; give a prompt, e.g. {key}='a watercolor painting'")
    if len(value) > MAX_PROMPT_CHARS:
        raise ConfigError(
            f"{key} has {len(value)} characters; a prompt may have at most {MAX_PROMPT_CHARS} "
            f"(the CLIP models read at most {tokenizer.context_length} tokens): shorten it"
        )
    tokens = tokenizer([value])
    if int(tokens[0, -1]) != 0:  # the context is full: the tokenizer cut the prompt off (or just fits it)
        raise ConfigError(
            f"{key} fills the model's {tokenizer.context_length}-token context and would be cut off: shorten it "
            f"(about {tokenizer.context_length * 3} characters of plain words fit)"
        )
    return value.strip()


def settings(cfg: DictConfig) -> TextSettings | None:
    """``task.style_text`` with ``task.source_text``, ``text.*`` and ``loss.text_*`` checked; None when the
    task has no prompt (``task.style_text=null``)."""
    task = cfg.task
    if task.get("style_text") is None:
        return None
    library = open_clip()
    name = cfg.text.model
    if not isinstance(name, str) or library.get_model_config(name) is None:
        raise ConfigError(
            f"text.model={name!r} is not an open_clip model; choose one of open_clip.list_models(), "
            "e.g. ViT-B-32, or transferlab-tiny (tests)"
        )
    weights = None if cfg.text.weights is None else str(cfg.text.weights)
    if weights is not None:
        if backbone.is_weights_file(weights):
            checkpoints.local_file(weights, "text.weights", EXPECTED)
        elif weights not in library.list_pretrained_tags_by_model(name):
            tags = library.list_pretrained_tags_by_model(name)
            raise ConfigError(
                f"text.weights={weights!r} is not a pretrained tag of {name}; choose one of "
                f"{tags or 'none (it has no published weights)'}, a path to a .pt state dict, or null (random)"
            )
    with quiet():
        tokenizer = library.get_tokenizer(name)
    return TextSettings(
        model=name,
        weights=weights,
        prompt=prompt(task.style_text, "task.style_text", tokenizer),
        source=prompt(task.source_text, "task.source_text", tokenizer),
        loss=groups.text_loss(cfg),
    )


class OpenClip(nn.Module):
    """An open_clip model behind ``textloss.VisionLanguage``: images in [0, 1] at its input size,
    normalized here as its weights expect; prompts tokenized by its own tokenizer."""

    def __init__(self, model: nn.Module, tokenizer: Any) -> None:
        super().__init__()
        self.model, self.tokenizer = model, tokenizer
        cfg = model.visual.preprocess_cfg
        self.input_size = int(cfg["size"][0] if isinstance(cfg["size"], Sequence) else cfg["size"])
        self.register_buffer("mean", torch.tensor(cfg["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg["std"]).view(1, 3, 1, 1), persistent=False)

    def encode_image(self, images: Tensor) -> Tensor:
        if images.shape[-1] != self.input_size or images.shape[-2] != self.input_size:
            images = F.interpolate(images, size=(self.input_size,) * 2, mode="bilinear", align_corners=False)
        return self.model.encode_image((images - self.mean.to(images.dtype)) / self.std.to(images.dtype))

    def encode_text(self, prompts: Sequence[str]) -> Tensor:
        return self.model.encode_text(self.tokenizer(list(prompts)).to(self.mean.device))


def build(s: TextSettings) -> OpenClip:
    """The model of ``s`` on the CPU, frozen, in eval mode: random weights are drawn from torch's generator."""
    library = open_clip()
    tag = None if s.weights is None or backbone.is_weights_file(s.weights) else s.weights
    try:
        with quiet():
            model = library.create_model(s.model, pretrained=tag, pretrained_text=False, weights_only=True)
            tokenizer = library.get_tokenizer(s.model)
    except Exception as exc:  # noqa: BLE001 - a failed download or cache read: one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(
            f"text.weights={s.weights}: open_clip could not load {s.model}'s weights ({first}); offline, "
            "give a local .pt state dict, or text.weights=null (random; tests only)"
        ) from None
    if s.weights is not None and backbone.is_weights_file(s.weights):
        state = checkpoints.load(s.weights, "text.weights", EXPECTED)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise WeightsError(f"text.weights={s.weights} holds no state dict; give {EXPECTED}")
        checkpoints.load_weights(model, state, "", f"text.weights={s.weights}", EXPECTED)
    return OpenClip(model.eval().requires_grad_(False), tokenizer)


def announce(s: TextSettings | None) -> str | None:
    """``text.weights`` as metrics.json records it (``random`` for null), random weights said as loudly as
    random VGG weights are; None for a run without a prompt."""
    if s is None:
        return None
    return backbone.announce_weights(s.weights, f"CLIP ({s.model})", "a stylization", key="text.weights")


def text_loss(s: TextSettings, model: nn.Module | None = None) -> TextLoss:
    """The run's text loss: ``model`` (any ``textloss.VisionLanguage``; default: ``build(s)``) with the
    direction from ``s.source`` to ``s.prompt``, computed once."""
    model = build(s) if model is None else model
    if s.prompt == s.source:
        log.warning("task.style_text equals task.source_text (%r): no direction, the text terms are 0", s.prompt)
    return TextLoss(model, text_direction(model, s.prompt, s.source), s.loss)
