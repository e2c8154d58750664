"""train_fast with a prompt in place of the style image (a random-init tiny open_clip): the network trains, its
checkpoint leaves CLIP out and exports as a painting's does; a bad prompt is one line."""

import json

import pytest
import torch

from helpers import compose_cfg
from transferlab import main
from transferlab.errors import ConfigError
from transferlab.fast.settings import TrainSettings

pytest.importorskip("open_clip")

from tests.fast.conftest import TINY  # noqa: E402

PROMPT = [
    "task.style_text='an oil painting'",
    "text=tiny",
    "loss.text_crops=2",
    "loss.text_crop_size=16",
    "layers=johnson",
]


def test_a_prompt_trains_a_network_that_exports(photos, tmp_path):
    train = tmp_path / "train"
    main.run_task(compose_cfg(*TINY, f"data.root={photos}", *PROMPT, "task.steps=2"), train)
    metrics = json.loads((train / "metrics.json").read_text())
    assert metrics["text_weights"] == "random" and metrics["val/text_direction"] > 0
    state = torch.load(train / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert not any(k.startswith(("text.", "perceptual.encoder.")) for k in state)
    assert json.loads((train / "result.json").read_text())["caption"][0] == '"an oil painting"'
    export = tmp_path / "export"
    ckpt = train / "checkpoints" / "last.ckpt"
    main.run_task(compose_cfg("task=export_fast", f"ckpt_path={ckpt}", "task.formats=[pt2]"), export)
    assert (export / "model.pt2").is_file()


def test_a_prompt_alone_has_no_style_layers_and_an_empty_prompt_is_one_line(photos):
    s = TrainSettings.from_cfg(compose_cfg(*TINY, f"data.root={photos}", *PROMPT))
    assert s.style is None and s.style_layers == {} and s.text.prompt == "an oil painting"
    with pytest.raises(ConfigError, match="task.style_text='' is empty"):
        TrainSettings.from_cfg(compose_cfg(*TINY, f"data.root={photos}", *PROMPT, "task.style_text=''"))
