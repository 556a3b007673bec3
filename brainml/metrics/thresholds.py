"""Threshold sweeps and the rules that choose an operating point: every threshold's confusion matrix and rates at
once, the operating point at one threshold, and rules such as "highest specificity with recall >= 0.98"."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from ._arrays import _binary_inputs, _jsonable, _rates
from .intervals import wilson_interval

RULE_KINDS = ("min_recall", "youden", "max_accuracy", "max_f1")


@dataclass(frozen=True)
class OperatingPoint:
    """A detector's metrics at one threshold; each proportion with its Wilson 95 % interval.

    Attributes:
        threshold: the verdict is "tumor" when ``score >= threshold``.
        tp, fp, tn, fn, n: counts of the confusion matrix and their total.
        recall: sensitivity, tp / (tp + fn). specificity: tn / (tn + fp). precision: tp / (tp + fp).
        npv: negative predictive value, tn / (tn + fn). accuracy: (tp + tn) / n.
        balanced_accuracy: (recall + specificity) / 2. f1: 2 tp / (2 tp + fp + fn).
        recall_ci, specificity_ci, precision_ci, npv_ci, accuracy_ci: ``(low, high)``.
    """

    threshold: float
    tp: int
    fp: int
    tn: int
    fn: int
    n: int
    recall: float
    specificity: float
    precision: float
    npv: float
    accuracy: float
    balanced_accuracy: float
    f1: float
    recall_ci: tuple[float, float]
    specificity_ci: tuple[float, float]
    precision_ci: tuple[float, float]
    npv_ci: tuple[float, float]
    accuracy_ci: tuple[float, float]

    @classmethod
    def from_counts(cls, threshold: float, tp: int, fp: int, tn: int, fn: int) -> "OperatingPoint":
        tp, fp, tn, fn = int(tp), int(fp), int(tn), int(fn)
        rates = {name: float(value) for name, value in _rates(tp, fp, tn, fn).items()}
        return cls(
            threshold=float(threshold), tp=tp, fp=fp, tn=tn, fn=fn, n=tp + fp + tn + fn, **rates,
            recall_ci=wilson_interval(tp, tp + fn),
            specificity_ci=wilson_interval(tn, tn + fp),
            precision_ci=wilson_interval(tp, tp + fp),
            npv_ci=wilson_interval(tn, tn + fn),
            accuracy_ci=wilson_interval(tp + tn, tp + fp + tn + fn),
        )

    def confusion_matrix(self) -> np.ndarray:
        """(2, 2) int array ``[[tn, fp], [fn, tp]]``: rows are the truth (no tumor, tumor), columns the verdict."""
        return np.array([[self.tn, self.fp], [self.fn, self.tp]])

    def to_dict(self) -> dict:
        return _jsonable(asdict(self))


def operating_point(labels, scores, threshold: float) -> OperatingPoint:
    """Metrics of a detector at one threshold.

    Args:
        labels: (N,) 0 = no tumor, 1 = tumor.
        scores: (N,) P(tumor).
        threshold: the verdict is "tumor" when ``score >= threshold``.
    """
    labels, scores = _binary_inputs(labels, scores)
    flagged = scores >= threshold
    tp = int(np.count_nonzero(flagged & labels))
    fp = int(np.count_nonzero(flagged & ~labels))
    fn = int(np.count_nonzero(~flagged & labels))
    return OperatingPoint.from_counts(threshold, tp, fp, labels.size - tp - fp - fn, fn)


@dataclass
class ThresholdSweep:
    """A binary detector's confusion matrix at every threshold that changes it.

    Attributes:
        thresholds: (T,) strictly ascending candidate thresholds (verdict "tumor" when ``score >= threshold``).
        tp, fp, tn, fn: (T,) int counts at each threshold.
        recall, specificity, precision, npv, accuracy, balanced_accuracy, f1: (T,) float, derived from the counts
            as in :class:`OperatingPoint`; ``nan`` where undefined.
    """

    thresholds: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    tn: np.ndarray
    fn: np.ndarray
    recall: np.ndarray = field(init=False, repr=False)
    specificity: np.ndarray = field(init=False, repr=False)
    precision: np.ndarray = field(init=False, repr=False)
    npv: np.ndarray = field(init=False, repr=False)
    accuracy: np.ndarray = field(init=False, repr=False)
    balanced_accuracy: np.ndarray = field(init=False, repr=False)
    f1: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        self.thresholds = np.asarray(self.thresholds, dtype=float)
        for name in ("tp", "fp", "tn", "fn"):
            counts = np.asarray(getattr(self, name), dtype=np.int64)
            if counts.shape != self.thresholds.shape:
                raise ValueError(f"{name} has shape {counts.shape}; thresholds have shape {self.thresholds.shape}")
            setattr(self, name, counts)
        if self.thresholds.ndim != 1 or self.thresholds.size == 0 or (np.diff(self.thresholds) <= 0).any():
            raise ValueError("thresholds must be a non-empty, strictly ascending 1-D array")
        for name, values in _rates(self.tp, self.fp, self.tn, self.fn).items():
            setattr(self, name, values)

    @property
    def n_positive(self) -> int:
        return int(self.tp[0] + self.fn[0])

    @property
    def n_negative(self) -> int:
        return int(self.tn[0] + self.fp[0])

    def at(self, threshold: float) -> OperatingPoint:
        """The operating point at any threshold, by binary search over the candidates (O(log T)).

        No score lies strictly between two neighbouring candidates, so the counts at ``threshold`` are those of the
        first candidate at or above it; past the last candidate (which flags nothing) they are the last's.
        """
        index = min(int(np.searchsorted(self.thresholds, threshold, side="left")), self.thresholds.size - 1)
        return OperatingPoint.from_counts(
            threshold, self.tp[index], self.fp[index], self.tn[index], self.fn[index]
        )

    def to_dict(self) -> dict:
        return _jsonable({item.name: getattr(self, item.name) for item in fields(self)})


def sweep_thresholds(labels, scores) -> ThresholdSweep:
    """Sweep every threshold at which a detector's confusion matrix changes.

    The candidates are the distinct scores plus 0.0 and a value just above ``max(1, max(scores))``, so the
    all-tumor and the no-tumor operating points are always present. Cases with equal scores always fall on the
    same side of a threshold. Cost O(N log N): one sort and a binary search per class.

    Args:
        labels: (N,) 0 = no tumor, 1 = tumor.
        scores: (N,) P(tumor), usually in [0, 1].

    Returns:
        A :class:`ThresholdSweep` over T <= N + 2 thresholds.
    """
    labels, scores = _binary_inputs(labels, scores)
    above_all = np.nextafter(max(1.0, float(scores.max())), np.inf)
    thresholds = np.unique(np.concatenate([scores, [0.0, above_all]]))
    positive_scores = np.sort(scores[labels])
    negative_scores = np.sort(scores[~labels])
    # Cases below a threshold are called "no tumor": side="left" counts the scores strictly below it.
    fn = np.searchsorted(positive_scores, thresholds, side="left")
    tn = np.searchsorted(negative_scores, thresholds, side="left")
    return ThresholdSweep(thresholds, positive_scores.size - fn, negative_scores.size - tn, tn, fn)


@dataclass(frozen=True)
class ThresholdRule:
    """How the detector's operating threshold is chosen, always on validation data (never on the test set).

    Attributes:
        kind: "min_recall": the highest specificity among thresholds with recall >= ``recall_target``;
            "youden": the highest Youden's J = recall + specificity - 1; "max_accuracy"; "max_f1".
            Ties go to the highest threshold (fewest false alarms for the same score).
        recall_target: the recall a "min_recall" rule must keep, in (0, 1].
    """

    kind: str = "min_recall"
    recall_target: float = 0.98

    def __post_init__(self):
        if self.kind not in RULE_KINDS:
            raise ValueError(f"threshold rule must be one of {RULE_KINDS}, not {self.kind!r}")
        if not 0 < self.recall_target <= 1:
            raise ValueError(f"recall_target must be in (0, 1], not {self.recall_target}")

    def describe(self) -> str:
        """One line for the model card, e.g. "highest specificity with recall >= 0.98 on validation"."""
        return {
            "min_recall": f"highest specificity with recall >= {self.recall_target:g} on validation",
            "youden": "highest Youden's J (recall + specificity - 1) on validation",
            "max_accuracy": "highest accuracy on validation",
            "max_f1": "highest F1 on validation",
        }[self.kind]

    def to_dict(self) -> dict:
        return {"kind": self.kind, "recall_target": self.recall_target, "description": self.describe()}

    def choose(self, sweep: ThresholdSweep) -> float:
        """Apply the rule to a sweep and return the chosen threshold.

        If no threshold reaches ``recall_target`` (impossible on a sweep from :func:`sweep_thresholds` with a
        tumor case in it, whose 0.0 candidate flags everything, but possible on a coarser hand-made grid), the
        rule falls back to the highest recall, at the lowest threshold that reaches it, to keep a margin for
        tumors that validation did not contain.

        Raises:
            ValueError: if the rule's objective is undefined at every threshold (one class only).
        """
        if self.kind == "min_recall":
            reaches_target = sweep.recall >= self.recall_target
            if reaches_target.any():
                chosen = _threshold_maximising(sweep.thresholds, sweep.specificity, reaches_target)
            else:
                chosen = _threshold_maximising(sweep.thresholds, sweep.recall, highest=False)
        else:
            objective = {
                "youden": sweep.recall + sweep.specificity - 1,
                "max_accuracy": sweep.accuracy,
                "max_f1": sweep.f1,
            }[self.kind]
            chosen = _threshold_maximising(sweep.thresholds, objective)
        if chosen is None:
            raise ValueError(_one_class_message(self, sweep))
        return chosen


def _one_class_message(rule: ThresholdRule, sweep: ThresholdSweep) -> str:
    return (
        f"cannot choose a threshold by {rule.describe()!r}: the validation labels hold {sweep.n_positive} tumor "
        f"and {sweep.n_negative} no-tumor cases; both classes are needed"
    )


def _threshold_maximising(thresholds, objective, allowed=None, highest: bool = True) -> float | None:
    """The highest (or lowest) threshold where ``objective`` is maximal among the allowed, defined entries.

    Returns None when no allowed entry is defined.
    """
    usable = ~np.isnan(objective) if allowed is None else allowed & ~np.isnan(objective)
    if not usable.any():
        return None
    objective = np.where(usable, objective, -np.inf)
    # The tolerance: sums such as recall + specificity that are equal in exact arithmetic may differ in the last
    # bit, and such ties must still be broken by the threshold.
    best = np.flatnonzero(objective >= objective.max() - 1e-12)
    return float(thresholds[best[-1] if highest else best[0]])


def choose_threshold(labels, scores, rule: ThresholdRule = ThresholdRule()) -> float:
    """Choose a detector's operating threshold on validation data by ``rule`` (see :meth:`ThresholdRule.choose`).

    Args:
        labels: (N,) validation labels, 0 = no tumor, 1 = tumor.
        scores: (N,) validation P(tumor).

    Raises:
        ValueError: unless the labels hold both classes.
    """
    sweep = sweep_thresholds(labels, scores)
    if sweep.n_positive == 0 or sweep.n_negative == 0:
        raise ValueError(_one_class_message(rule, sweep))
    return rule.choose(sweep)


def f1_interval(labels, scores, threshold: float, n_boot: int = 1000, seed: int = 0, confidence: float = 0.95):
    """Percentile bootstrap interval for F1 at a fixed threshold.

    Stratified like :func:`roc_auc_interval`. Resampling P tumor cases with replacement and counting those flagged
    is a Binomial(P, recall) draw (likewise false alarms among the no-tumor cases), so the whole bootstrap is two
    vectorised binomial draws: exact, and O(n_boot) whatever N is.

    Returns:
        ``(low, high)``; ``(nan, nan)`` without tumor cases, where F1 is undefined or trivially 0.
    """
    point = operating_point(labels, scores, threshold)
    n_positive, n_negative = point.tp + point.fn, point.tn + point.fp
    if n_positive == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    tp = rng.binomial(n_positive, point.tp / n_positive, n_boot)
    fp = rng.binomial(n_negative, point.fp / n_negative, n_boot) if n_negative else np.zeros(n_boot, int)
    f1 = 2 * tp / (2 * tp + fp + (n_positive - tp))
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(f1, [tail, 100 - tail])
    return float(low), float(high)
