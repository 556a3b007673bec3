"""The summaries written into model cards: a detector's metrics at its threshold with intervals, a classifier's
accuracy, macro F1, per-class figures and confusion matrix."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    confusion_matrix,
)

from ._arrays import _jsonable, _ratio
from .curves import calibration, curves
from .intervals import roc_auc_interval, wilson_interval
from .thresholds import f1_interval, operating_point


def detector_report(labels, scores, threshold: float, n_boot: int = 1000, seed: int = 0) -> dict:
    """Everything the model card reports about a detector on held-out data, JSON-ready.

    Every headline metric comes with a 95 % interval: Wilson for proportions, stratified bootstrap for ROC AUC and
    F1 (``n_boot`` resamples, ``seed``). Undefined values are None.

    Args:
        labels: (N,) 0 = no tumor, 1 = tumor. scores: (N,) P(tumor) in [0, 1].
        threshold: the operating threshold, chosen beforehand on validation data.
    """
    point = operating_point(labels, scores, threshold)
    summary = curves(labels, scores)
    return _jsonable({
        "task": "detect",
        "n": point.n,
        "threshold": point.threshold,
        "recall": point.recall,
        "recall_ci": point.recall_ci,
        "specificity": point.specificity,
        "specificity_ci": point.specificity_ci,
        "precision": point.precision,
        "precision_ci": point.precision_ci,
        "npv": point.npv,
        "npv_ci": point.npv_ci,
        "accuracy": point.accuracy,
        "accuracy_ci": point.accuracy_ci,
        "f1": point.f1,
        "f1_ci": f1_interval(labels, scores, threshold, n_boot, seed),
        "balanced_accuracy": point.balanced_accuracy,
        "roc_auc": summary.roc_auc,
        "roc_auc_ci": roc_auc_interval(labels, scores, n_boot, seed),
        "average_precision": summary.average_precision,
        "ece": calibration(labels, scores).ece,
        "confusion_matrix": point.confusion_matrix(),
        "n_positive": point.tp + point.fn,
        "n_negative": point.tn + point.fp,
    })


def classifier_report(labels, probabilities, class_names) -> dict:
    """Everything the model card reports about a tumor-type classifier on held-out data, JSON-ready.

    The prediction is the class of highest probability. Per-class precision is None for a class never predicted;
    a class absent from both truth and predictions has F1 None and is left out of the macro average.

    Args:
        labels: (N,) int true class indices in [0, C).
        probabilities: (N, C) class probabilities.
        class_names: C names, in the order of the probability columns.
    """
    labels = np.asarray(labels)
    probabilities = np.asarray(probabilities, dtype=float)
    class_names = [str(name) for name in class_names]
    n_classes = len(class_names)
    if probabilities.ndim != 2 or probabilities.shape[1] != n_classes:
        raise ValueError(f"probabilities must have shape (N, {n_classes}) for {n_classes} classes, "
                         f"not {probabilities.shape}")
    if labels.shape != probabilities.shape[:1] or labels.size == 0:
        raise ValueError(f"labels must have shape ({probabilities.shape[0]},), not {labels.shape}, and not be empty")
    if not np.isin(labels, np.arange(n_classes)).all():
        raise ValueError(f"labels must be class indices 0..{n_classes - 1}")
    predicted = probabilities.argmax(axis=1)
    matrix = confusion_matrix(labels, predicted, labels=np.arange(n_classes))
    tp, support, predicted_count = np.diag(matrix), matrix.sum(axis=1), matrix.sum(axis=0)
    precision, recall = _ratio(tp, predicted_count), _ratio(tp, support)
    f1 = _ratio(2 * tp, support + predicted_count)
    recall_low, recall_high = wilson_interval(tp, support)
    correct = int(tp.sum())
    per_class = {
        name: {
            "precision": precision[index], "recall": recall[index], "f1": f1[index],
            "support": support[index], "recall_ci": (recall_low[index], recall_high[index]),
        }
        for index, name in enumerate(class_names)
    }
    return _jsonable({
        "task": "classify",
        "n": labels.size,
        "accuracy": correct / labels.size,
        "accuracy_ci": wilson_interval(correct, labels.size),
        "macro_f1": float(np.mean(f1[~np.isnan(f1)])),
        "weighted_f1": float(np.sum(np.where(support > 0, f1, 0.0) * support) / labels.size),
        "per_class": per_class,
        "confusion_matrix": matrix,
        "class_names": class_names,
        "ece": calibration(predicted == labels, probabilities.max(axis=1)).ece,
    })
