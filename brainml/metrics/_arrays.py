"""What the metrics share: checked detector inputs, ratios that give nan rather than warnings, the rates of a
confusion matrix, and values made JSON-ready (nan -> None)."""

from __future__ import annotations

import math

import numpy as np


def _jsonable(value):
    """numpy scalars and arrays -> python numbers and lists; nan and infinities -> None."""
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(item) for item in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def _ratio(numerator, denominator) -> np.ndarray:
    """numerator / denominator, nan where the denominator is 0 (no warning)."""
    numerator = np.asarray(numerator, dtype=float)
    denominator = np.asarray(denominator, dtype=float)
    out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _rates(tp, fp, tn, fn) -> dict[str, np.ndarray]:
    """The derived metrics of a confusion matrix; counts are scalars or arrays of one shape."""
    tp, fp, tn, fn = (np.asarray(count, dtype=float) for count in (tp, fp, tn, fn))
    recall = _ratio(tp, tp + fn)
    specificity = _ratio(tn, tn + fp)
    return {
        "recall": recall,
        "specificity": specificity,
        "precision": _ratio(tp, tp + fp),
        "npv": _ratio(tn, tn + fn),
        "accuracy": _ratio(tp + tn, tp + fp + tn + fn),
        "balanced_accuracy": (recall + specificity) / 2,
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
    }


def _binary_inputs(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    """Check and convert detector inputs: labels (N,) in {0, 1} -> bool, scores (N,) finite -> float64."""
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=float)
    if labels.ndim != 1 or scores.shape != labels.shape:
        raise ValueError(
            f"labels and scores must be 1-D arrays of the same length; got shapes {labels.shape} and {scores.shape}"
        )
    if labels.size == 0:
        raise ValueError("labels and scores are empty: there are no cases to measure")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 (no tumor) or 1 (tumor)")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite numbers; found NaN or infinity")
    return labels.astype(bool), scores
