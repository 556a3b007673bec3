"""ROC and precision-recall curves, and reliability (calibration) diagrams."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from ._arrays import _binary_inputs, _jsonable, _ratio


@dataclass(frozen=True)
class Curves:
    """ROC and precision-recall curves (scikit-learn's), with their areas.

    Attributes:
        roc_fpr, roc_tpr, roc_thresholds: (R,) points of the ROC curve; the first threshold is +inf.
        roc_auc: area under the ROC curve.
        pr_precision, pr_recall: (P + 1,) points of the PR curve; pr_thresholds: (P,).
        average_precision: the step-wise area under the PR curve.
        With one class only, every array is empty and both areas are nan.
    """

    roc_fpr: np.ndarray
    roc_tpr: np.ndarray
    roc_thresholds: np.ndarray
    roc_auc: float
    pr_precision: np.ndarray
    pr_recall: np.ndarray
    pr_thresholds: np.ndarray
    average_precision: float

    def to_dict(self) -> dict:
        return _jsonable(asdict(self))


def curves(labels, scores) -> Curves:
    """ROC and PR curves of a detector; labels (N,) in {0, 1}, scores (N,) P(tumor)."""
    labels, scores = _binary_inputs(labels, scores)
    if labels.all() or not labels.any():
        empty = np.empty(0)
        return Curves(empty, empty, empty, math.nan, empty, empty, empty, math.nan)
    fpr, tpr, roc_thresholds = roc_curve(labels, scores)
    precision, recall, pr_thresholds = precision_recall_curve(labels, scores)
    return Curves(
        fpr, tpr, roc_thresholds, float(roc_auc_score(labels, scores)),
        precision, recall, pr_thresholds, float(average_precision_score(labels, scores)),
    )


@dataclass(frozen=True)
class Calibration:
    """A reliability diagram and its expected calibration error.

    Attributes:
        bin_edges: (B + 1,) equal-width edges over [0, 1]; bin i holds confidences in [edge_i, edge_i+1), the last
            bin also holds 1.0.
        bin_confidence: (B,) mean confidence in each bin; nan where empty.
        bin_accuracy: (B,) fraction of positives (or of correct answers) in each bin; nan where empty.
        bin_count: (B,) int cases per bin.
        ece: expected calibration error, sum over bins of count / N * |accuracy - confidence|.
    """

    bin_edges: np.ndarray
    bin_confidence: np.ndarray
    bin_accuracy: np.ndarray
    bin_count: np.ndarray
    ece: float

    def to_dict(self) -> dict:
        return _jsonable(asdict(self))


def calibration(labels, scores, n_bins: int = 10) -> Calibration:
    """Reliability bins and ECE (Guo et al., 2017, "On calibration of modern neural networks").

    For a detector pass the labels and P(tumor). For a multi-class classifier pass ``labels = (predicted ==
    true)`` and ``scores = max probability``: the diagram then compares confidence with the rate of correct
    answers, as in Guo et al.

    Args:
        labels: (N,) in {0, 1}. scores: (N,) in [0, 1]. n_bins: number of equal-width bins.
    """
    labels, scores = _binary_inputs(labels, scores)
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, not {n_bins}")
    if scores.min() < 0 or scores.max() > 1:
        raise ValueError("calibration needs scores that are probabilities in [0, 1]")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.searchsorted(edges, scores, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    confidence = _ratio(np.bincount(bins, weights=scores, minlength=n_bins), count)
    accuracy = _ratio(np.bincount(bins, weights=labels, minlength=n_bins), count)
    gaps = np.where(count > 0, np.abs(accuracy - confidence), 0.0)
    return Calibration(edges, confidence, accuracy, count, float(np.sum(count / labels.size * gaps)))
