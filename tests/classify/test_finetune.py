"""Fine-tuning, resume, test split, predict, export and extract on generated 32 px images with random VGG16 weights."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torchmetrics.classification import MulticlassAccuracy
from torchmetrics.functional.classification import multiclass_confusion_matrix

from helpers import CLASSES, FAST, compose_cfg, hparams_columns, make_dataset, make_image, sweep_in_process
from transferlab import main, sweep
from transferlab.classify import data, finetune, metrics, settings
from transferlab.classify import module as classifier
from transferlab.classify.settings import FinetuneSettings
from transferlab.errors import ConfigError, DataError, WeightsError

# Pure functions ---------------------------------------------------------------------------------


def test_accuracy_micro_and_macro_differ_on_imbalanced_data() -> None:
    targets = torch.tensor([0] * 8 + [1] * 2)
    preds = torch.zeros(10, dtype=torch.long)  # always class 0
    counts = multiclass_confusion_matrix(preds, targets, 2)
    assert counts.tolist() == [[8, 0], [2, 0]]
    acc = metrics.accuracies(counts, ["a", "b"])
    assert acc == {"acc_micro": 0.8, "acc_macro": 0.5, "acc_a": 1.0, "acc_b": 0.0}


def test_macro_accuracy_leaves_out_classes_without_samples_unlike_torchmetrics() -> None:
    """A class with no samples but false positives: torchmetrics counts it as 0 in the macro mean, we
    leave it out (the mean of the recalls of the classes that have samples)."""
    targets = torch.tensor([0, 0, 1, 1])
    preds = torch.tensor([0, 2, 1, 1])  # class 2 has no samples, one false positive
    ours = metrics.accuracies(multiclass_confusion_matrix(preds, targets, 3), ["a", "b", "c"])["acc_macro"]
    theirs = float(MulticlassAccuracy(3, average="macro")(preds, targets))
    assert ours == pytest.approx(0.75) and theirs == pytest.approx(0.5)


def test_stratified_split_is_per_class_and_seeded() -> None:
    targets = [0] * 10 + [1] * 5
    train, val = data.stratified_split(targets, 0.2, seed=3)
    assert sorted(train + val) == list(range(15))
    assert [targets[i] for i in val].count(0) == 2 and [targets[i] for i in val].count(1) == 1
    assert data.stratified_split(targets, 0.2, seed=3) == (train, val)
    assert data.stratified_split(targets, 0.2, seed=4) != (train, val)


def test_balanced_class_weights() -> None:
    assert settings.class_weights("balanced", ["a", "b"], [0, 0, 0, 1]) == [4 / 6, 2.0]
    assert settings.class_weights((1.0, 3.0), ["a", "b"], [0, 1]) == [1.0, 3.0]
    with pytest.raises(ConfigError, match="one weight per class"):
        settings.class_weights((1.0,), ["a", "b"], [0, 1])


def test_every_finetune_config_composes() -> None:
    for overrides in (
        ["task=finetune", "optimizer=adam"],
        ["task=finetune", "optimizer=adamw", "scheduler=none"],
        ["task=finetune", "scheduler=step"],
        ["experiment=hymenoptera"],
        ["task=predict"],
        ["task=export"],
        ["task=extract"],
        ["task=finetune", "launcher=joblib"],
    ):
        cfg = compose_cfg(*overrides)
        assert cfg.task.name in ("finetune", "predict", "export", "extract")
    cfg = compose_cfg("task=finetune")
    assert cfg.optimizer.name == "sgd" and "lr" not in cfg.optimizer and cfg.scheduler.name == "cosine"
    assert (
        FinetuneSettings.from_cfg(compose_cfg(*FAST, "task.lr=0.05", "data.root=x")).optimizer.lr == 0.05
    )  # one home: task.lr
    assert compose_cfg().optimizer.name == "lbfgs"  # stylize keeps its optimizer
    assert compose_cfg("experiment=hymenoptera").scheduler.name == "step"


# Bad input --------------------------------------------------------------------------------------


def load(root: Path, *overrides: str) -> data.Splits:
    cfg = compose_cfg("task=finetune", f"data.root={root}", *overrides)
    return data.load(settings.data_settings(cfg.data), cfg.seed)


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load(tmp_path / "nowhere")


def test_empty_class_folder(tmp_path: Path) -> None:
    make_dataset(tmp_path, {"train": 2, "val": 1})
    (tmp_path / "train" / "wasps").mkdir()
    (tmp_path / "val" / "wasps").mkdir()
    with pytest.raises(DataError, match=r"train/wasps has no readable images"):
        load(tmp_path)


def test_val_class_missing_from_train(tmp_path: Path) -> None:
    make_dataset(tmp_path, {"train": 2, "val": 1})
    make_image(tmp_path / "val" / "wasps" / "0.png")
    with pytest.raises(DataError, match="class folders the train set lacks: wasps"):
        load(tmp_path)


def test_fewer_than_two_classes(tmp_path: Path) -> None:
    make_dataset(tmp_path, {"train": 2}, classes=("ants",))
    with pytest.raises(DataError, match="at least two"):
        load(tmp_path)


def test_bad_files_are_named_and_skipped_or_stop_the_run(dataset: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        splits = load(dataset, "data.max_bad_fraction=0.2")
    assert len(splits.train) == 12
    assert "skipped 2 of 14 files" in caplog.text and "notes.txt" in caplog.text and "broken.jpg" in caplog.text
    with pytest.raises(DataError, match=r"2 of 14 files are not readable images .*raise data.max_bad_fraction"):
        load(dataset, "data.max_bad_fraction=0.1")


def test_one_folder_is_split_stratified(tmp_path: Path) -> None:
    make_dataset(tmp_path, {"train": 5})  # train/ only: no val/
    splits = load(tmp_path, "data.val_fraction=0.4")
    assert splits.classes == list(CLASSES)
    assert len(splits.val) == 4 and len(splits.train) == 6 and splits.test is None
    assert sorted(t for _, t in splits.val) == [0, 0, 1, 1]


def test_config_errors_before_any_work(tmp_path: Path) -> None:
    for override, match in [
        ("optimizer=lbfgs", "optimizer.name='lbfgs' is invalid"),
        ("task.freeze=conv9_1", "task.freeze='conv9_1' is invalid"),
        ("precision=16-mixed", "needs a CUDA GPU"),
        ("task.dropout=1.5", "task.dropout=1.5 is invalid"),
    ]:
        with pytest.raises(ConfigError, match=match):
            FinetuneSettings.from_cfg(compose_cfg(*FAST, f"data.root={tmp_path}", override))


def test_foreign_checkpoints_are_refused(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="not a readable PyTorch state dict or checkpoint that loads safely"):
        classifier.read_checkpoint(garbage)
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"lr": 1}}, other)
    with pytest.raises(WeightsError, match="not a transferlab finetune checkpoint"):
        classifier.read_checkpoint(other)
    pickled = tmp_path / "pickled.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": logging.getLogger("x")}, pickled)
    with pytest.raises(WeightsError, match="weights_only=True"):
        classifier.read_checkpoint(pickled)


# Training and what uses its checkpoints ---------------------------------------------------------


def test_finetune_writes_checkpoints_metrics_and_images(trained: Path) -> None:
    assert json.loads((trained / "classes.json").read_text()) == list(CLASSES)
    assert (trained / "checkpoints" / "best.ckpt").is_file() and (trained / "checkpoints" / "last.ckpt").is_file()
    result = json.loads((trained / "metrics.json").read_text())
    assert result["epochs"] == 2 and len(result["epoch_time_s"]) == 2
    for split, n in (("val", 6), ("test", 4)):
        assert sum(map(sum, result[split]["confusion_matrix"])) == n
        assert {"loss", "acc_micro", "acc_macro", "acc_ants", "acc_bees"} <= set(result[split])
        assert (trained / f"confusion_matrix_{split}.png").is_file()
    events = EventAccumulator(str(trained / "tensorboard")).Reload()
    tags = set(events.Tags()["scalars"]) | set(events.Tags()["images"])
    for tag in (
        "train/loss",
        "train/acc_macro",
        "val/loss",
        "val/acc_micro",
        "val/acc_macro",
        "val_class/acc_ants",
        "train/lr_head",
        "train/lr_backbone",
        "visuals/val_confusion_matrix",
    ):
        assert tag in tags, tag
    # The best checkpoint's figures: only in the HParams session's sub-run; the test split's only in
    # metrics.json (issue 29: one point each, charts of a single point).
    assert not [t for t in events.Tags()["scalars"] if t.startswith(("best_val/", "test/", "final/"))]
    session = EventAccumulator(str(trained / "tensorboard" / "hparams")).Reload()
    assert any(m.plugin_data.plugin_name == "hparams" for m in session.summary_metadata.values())
    assert "val/acc_macro" in session.Tags()["scalars"] and "test/acc_macro" not in session.Tags()["scalars"]
    ckpt = classifier.read_checkpoint(trained / "checkpoints" / "best.ckpt")  # weights_only=True
    assert ckpt["hyper_parameters"]["classes"] == list(CLASSES)


def test_sweep_of_two_jobs_writes_a_contact_sheet(tmp_path: Path) -> None:
    """A tile per job (its validation confusion matrix), captioned by its result; HParams lead with the swept key."""
    root = make_dataset(tmp_path / "data", {"train": 2, "val": 1})  # one batch an epoch, no test split
    common = [*FAST, f"data.root={root}", "task.epochs=1", "task.misclassified=0"]
    sheet = Image.open(sweep_in_process(tmp_path / "sweep", common, "task.lr", ["0.01", "0.001"]))
    assert sheet.width == 2 * 256
    best = json.loads((tmp_path / "sweep" / "1" / "metrics.json").read_text())["best_score"]
    labels = sweep.labels(sweep.job_dirs(tmp_path / "sweep"))
    assert labels[1][:2] == ["task.lr=0.001", f"best val/acc_macro {best:.4g}"]
    assert hparams_columns(tmp_path / "sweep" / "0")[0] == "* task.lr"


def test_frozen_batch_norms_keep_their_statistics_through_training(trained: Path, dataset: Path) -> None:
    """Lightning never calls the module's train(): the frozen units' batch norms must stay in eval mode anyway."""
    cfg = compose_cfg(*FAST, f"data.root={dataset}", "data.max_bad_fraction=0.2")
    initial = finetune.build(FinetuneSettings.from_cfg(cfg))[0].state_dict()  # the run's seeded start
    state = torch.load(trained / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    frozen = [k for k in initial if k.startswith("network.layer3.") and ".bn" in k]
    assert torch.equal(state["network.layer3.0.conv1.weight"], initial["network.layer3.0.conv1.weight"])
    for key in frozen:
        assert torch.equal(state[key], initial[key]), key
    assert not torch.equal(state["network.layer4.0.bn1.running_mean"], initial["network.layer4.0.bn1.running_mean"])


@pytest.mark.slow
def test_resume_matches_an_uninterrupted_run(trained: Path, dataset: Path, tmp_path: Path) -> None:
    common = [*FAST, f"data.root={dataset}", "data.max_bad_fraction=0.2"]
    main.run_task(compose_cfg(*common, "task.epochs=1"), tmp_path)
    main.run_task(compose_cfg(*common, f"ckpt_path={tmp_path / 'checkpoints' / 'last.ckpt'}"), tmp_path)
    resumed = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    straight = torch.load(trained / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert resumed.keys() == straight.keys()
    for key in straight:
        assert torch.equal(resumed[key], straight[key]), key
    assert (
        json.loads((tmp_path / "metrics.json").read_text())["val"]
        == json.loads((trained / "metrics.json").read_text())["val"]
    )


def test_resume_refuses_other_classes(trained: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="trained on 2 classes"):
        settings.check_resume(trained / "checkpoints" / "last.ckpt", "resnet18", ["a", "b", "c"], {})
    # best.ckpt is weights only (smaller): resuming from it is refused in one line.
    with pytest.raises(ConfigError, match="holds weights only .*resume from checkpoints/last.ckpt"):
        settings.check_resume(trained / "checkpoints" / "best.ckpt", "resnet18", list(CLASSES), {})


def test_resume_refuses_other_settings_through_the_floor_fingerprint(trained: Path, dataset: Path) -> None:
    """Issue 32 item 2 for finetune: the run's settings are recorded in last.ckpt and compared on a resume."""
    last = trained / "checkpoints" / "last.ckpt"
    common = [*FAST, f"data.root={dataset}", "data.max_bad_fraction=0.2"]
    same = FinetuneSettings.from_cfg(compose_cfg(*common, "task.epochs=5", "data.num_workers=1")).fingerprint()
    settings.check_resume(last, "resnet18", list(CLASSES), same)  # more epochs, other workers: accepted
    for override, key in (("task.label_smoothing=0.1", "task"), ("seed=7", "seed"), ("data.batch_size=3", "data")):
        other = FinetuneSettings.from_cfg(compose_cfg(*common, override)).fingerprint()
        with pytest.raises(ConfigError, match=rf"was made with other {key}\b"):
            settings.check_resume(last, "resnet18", list(CLASSES), other)


def test_gif_is_a_dataset_image(tmp_path: Path) -> None:
    make_dataset(tmp_path, {"train": 2, "val": 1})
    make_image(tmp_path / "train" / "ants" / "extra.gif")
    assert len(load(tmp_path).train) == 5


def test_an_empty_validation_split_is_refused_before_training(tmp_path: Path) -> None:
    """A flat layout with one image per class leaves nothing to hold out (issue 10, item 9)."""
    root = tmp_path / "flat"
    for c, name in enumerate(CLASSES):
        make_image(root / name / "0.png", seed=c)
    with pytest.raises(DataError, match="the val split of .* has no images; add a val/ folder") as error:
        load(root)
    assert "\n" not in str(error.value)


def test_a_symlink_loop_in_a_class_folder_adds_nothing(tmp_path: Path) -> None:
    """Issue 32 item 10: torchvision's walk followed the loop until the path was too long (the class 40
    times over) or forever; the project's lister follows each folder once."""
    make_dataset(tmp_path, {"train": 2, "val": 1})
    (tmp_path / "train" / "ants" / "again").symlink_to(tmp_path / "train" / "ants")
    (tmp_path / "train" / "bees" / "self").symlink_to(tmp_path / "train" / "bees" / "self")
    assert len(load(tmp_path).train) == 4


def test_without_save_last_only_the_best_weights_are_kept_and_predict_reads_them(dataset: Path, tmp_path: Path) -> None:
    common = [*FAST, f"data.root={dataset}", "data.max_bad_fraction=0.2", "task.epochs=1", "task.misclassified=0"]
    main.run_task(compose_cfg(*common, "task.save_last=false"), tmp_path / "run")
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == ["best.ckpt"]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["last_checkpoint"] is None
    best = tmp_path / "run" / "checkpoints" / "best.ckpt"
    predict = ["task=predict", f"ckpt_path={best}", f"task.input={dataset / 'val'}", "task.num_workers=0"]
    main.run_task(compose_cfg(*predict, "trainer.accelerator=cpu"), tmp_path / "predict")
    assert json.loads((tmp_path / "predict" / "metrics.json").read_text())["images"] == 6
