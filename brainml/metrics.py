"""How well a detector or a type classifier works: threshold sweeps, confidence intervals, ROC / PR, calibration.

Pure, vectorised numpy and scikit-learn; no I/O. A detector is judged on ``labels`` (N,) in {0, 1} (1 = tumor) and
``scores`` (N,) = P(tumor); its verdict is "tumor" when ``score >= threshold``. A metric that is undefined on the
data (specificity without a single no-tumor case, precision when nothing is flagged) is ``nan``, never an error
or a warning, and every ``to_dict`` turns ``nan`` into ``None`` so that the result can be written as JSON.

Proportions carry Wilson score intervals (Wilson, 1927, JASA 22:209), which keep their coverage at the small
counts and the 0 % / 100 % rates that screening sets produce, where the textbook normal interval collapses.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from statistics import NormalDist

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

RULE_KINDS = ("min_recall", "youden", "max_accuracy", "max_f1")

# Bootstrap resamples are drawn in blocks of about this many scores, so that memory stays near 16 MB however
# large the test set is.
_BOOTSTRAP_BLOCK = 2_000_000


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


# Lesion diameter bins, as shares of the image side: on a slice of a whole head, 3 % is 5 to 9 mm (with the field
# of view), 12 % and more a large mass.
LESION_SIZE_EDGES = (0.03, 0.06, 0.12)


def rate_by_lesion_size(hits, diameters, edges=LESION_SIZE_EDGES) -> list[dict]:
    """How often the model was right (``hits``, one bool per lesion) in each lesion-size bin, with Wilson 95 %
    intervals: ``[{"bin", "low", "high", "n", "rate", "rate_ci"}]``, smallest lesions first, empty bins kept."""
    hits = np.asarray(hits, dtype=bool)
    diameters = np.asarray(diameters, dtype=float)
    if hits.shape != diameters.shape:
        raise ValueError("hits and diameters must have the same length")
    bins = np.digitize(diameters, edges)
    total = np.bincount(bins, minlength=len(edges) + 1)
    right = np.bincount(bins, weights=hits, minlength=len(edges) + 1).astype(int)
    low_ci, high_ci = wilson_interval(right, total)
    bounds = (0.0, *edges, None)
    rows = []
    for i in range(len(edges) + 1):
        low, high = bounds[i], bounds[i + 1]
        label = f"< {high:.0%}" if i == 0 else (f">= {low:.0%}" if high is None else f"{low:.0%}-{high:.0%}")
        rows.append({"bin": label, "low": low, "high": high, "n": int(total[i]),
                     "rate": float(right[i] / total[i]) if total[i] else None,
                     "rate_ci": [float(low_ci[i]), float(high_ci[i])] if total[i] else None})
    return rows


def rate_by_group(hits, groups, order=None) -> list[dict]:
    """How often the model was right (``hits``) within each group (e.g. MRI contrast), with Wilson 95 %
    intervals: ``[{"group", "n", "rate", "rate_ci"}]`` in ``order`` (default: sorted), empty groups kept."""
    hits = np.asarray(hits, dtype=bool)
    groups = np.asarray(groups)
    if hits.shape != groups.shape:
        raise ValueError("hits and groups must have the same length")
    names = list(order) if order is not None else sorted(set(groups.tolist()))
    index = np.full(groups.shape, -1)
    for i, name in enumerate(names):
        index[groups == name] = i
    kept = index >= 0
    total = np.bincount(index[kept], minlength=len(names))
    right = np.bincount(index[kept], weights=hits[kept], minlength=len(names)).astype(int)
    low_ci, high_ci = wilson_interval(right, total)
    return [{"group": name, "n": int(total[i]), "rate": float(right[i] / total[i]) if total[i] else None,
             "rate_ci": [float(low_ci[i]), float(high_ci[i])] if total[i] else None} for i, name in enumerate(names)]


def wilson_interval(successes, total, confidence: float = 0.95):
    """Wilson score interval for a proportion ``successes / total``.

    Args:
        successes: count(s) of successes; a scalar or an array.
        total: count(s) of trials, broadcastable against ``successes``.
        confidence: two-sided coverage, in (0, 1).

    Returns:
        ``(low, high)``: python floats for scalar input, arrays of the broadcast shape otherwise; ``nan`` where
        ``total`` is 0.

    Raises:
        ValueError: if a count is negative, ``successes > total``, or ``confidence`` is outside (0, 1).
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, not {confidence}")
    successes = np.asarray(successes, dtype=float)
    total = np.asarray(total, dtype=float)
    if (successes < 0).any() or (successes > total).any():
        raise ValueError("wilson_interval needs 0 <= successes <= total")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    n = np.where(total > 0, total, np.nan)
    proportion = successes / n
    shrink = 1 + z**2 / n
    centre = (proportion + z**2 / (2 * n)) / shrink
    half_width = z * np.sqrt(proportion * (1 - proportion) / n + z**2 / (4 * n**2)) / shrink
    # At 0 % and 100 % the bounds are exactly 0 and 1; rounding would leave them a few ulps off.
    low = np.where(successes == 0, 0.0, np.clip(centre - half_width, 0, 1))
    high = np.where(successes == total, 1.0, np.clip(centre + half_width, 0, 1))
    low, high = np.where(total > 0, low, np.nan), np.where(total > 0, high, np.nan)
    if low.ndim == 0:
        return float(low), float(high)
    return low, high


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


def roc_auc_interval(labels, scores, n_boot: int = 1000, seed: int = 0, confidence: float = 0.95):
    """Percentile bootstrap interval for the ROC AUC.

    The bootstrap is stratified (tumor and no-tumor cases are resampled separately, as pROC does), so every
    resample has both classes and the same prevalence. Each resample's AUC is the Mann-Whitney statistic from
    mid-ranks, which counts tied scores as one half. Resamples are computed in blocks of rows, not one by one.

    Args:
        labels: (N,) 0 = no tumor, 1 = tumor. scores: (N,) P(tumor).
        n_boot: number of resamples. seed: seed of the resampling, for a reproducible interval.

    Returns:
        ``(low, high)``; ``(nan, nan)`` with one class only.
    """
    labels, scores = _binary_inputs(labels, scores)
    positives, negatives = scores[labels], scores[~labels]
    if positives.size == 0 or negatives.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    rows_per_block = max(1, _BOOTSTRAP_BLOCK // labels.size)
    aucs = []
    for start in range(0, n_boot, rows_per_block):
        rows = min(rows_per_block, n_boot - start)
        resampled = np.concatenate(
            [rng.choice(positives, (rows, positives.size)), rng.choice(negatives, (rows, negatives.size))], axis=1
        )
        positive_rank_sum = rankdata(resampled, axis=1)[:, : positives.size].sum(axis=1)
        aucs.append((positive_rank_sum - positives.size * (positives.size + 1) / 2) / (positives.size * negatives.size))
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(np.concatenate(aucs), [tail, 100 - tail])
    return float(low), float(high)


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
