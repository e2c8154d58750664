"""Classification metrics as pure functions of a confusion matrix (``counts[t, p]``: samples of true
class ``t`` predicted as ``p``, as torchmetrics' MulticlassConfusionMatrix accumulates it).

``acc_micro`` is the share of all samples classified correctly; ``acc_macro`` is the mean of the
per-class accuracies (recall), each class counting once whatever its size, over the classes that
have samples. On imbalanced data the two differ, so both are reported, named so.
"""

from __future__ import annotations

from torch import Tensor


def accuracies(counts: Tensor, classes: list[str]) -> dict[str, float]:
    """``acc_micro``, ``acc_macro`` and ``acc_<class>`` for every class that has samples."""
    counts = counts.double().cpu()
    support = counts.sum(dim=1)
    correct = counts.diagonal()
    present = support > 0
    per_class = correct[present] / support[present]
    out = {
        "acc_micro": float(correct.sum() / support.sum().clamp(min=1)),
        "acc_macro": float(per_class.mean()) if present.any() else 0.0,
    }
    for name, acc in zip([c for c, p in zip(classes, present) if p], per_class.tolist()):
        out[f"acc_{name}"] = acc
    return out
