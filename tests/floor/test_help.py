"""transferlab --help is our own page: tasks, groups, keys with valid values, examples, optimizers per task."""

import re

from helpers import ROOT, run_cli


def test_help_page_lists_tasks_groups_keys_and_examples(tmp_path):
    result = run_cli("--help", cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    page = result.stdout
    assert "powered by Hydra" not in page
    tasks = sorted(p.stem for p in (ROOT / "configs" / "task").glob("*.yaml"))
    listed = re.findall(r"^  (\w+)  ", page.split("== Tasks")[1].split("==")[1], flags=re.M)
    assert sorted(listed) == tasks  # every task config, and only those
    assert "stylize: lbfgs (default), adam" in page and "finetune: sgd (default), adam, adamw" in page
    experiments = ", ".join(sorted(p.stem for p in (ROOT / "configs" / "experiment").glob("*.yaml")))
    assert "optimizer: adam, adamw, lbfgs, sgd" in page and f"experiment: {experiments}" in page
    for key in ("precision", "task.init", "task.color", "task.image_every", "task.freeze", "loss.temporal_weight"):
        assert key in page
    assert "content | noise | style" in page and "32 | bf16-mixed | 16-mixed" in page
    assert len(re.findall(r"^  transferlab ", page, flags=re.M)) == 3
