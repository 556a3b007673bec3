"""Confidence intervals: Wilson score intervals for proportions (Wilson, 1927, JASA 22:209), which keep their
coverage at small counts and at 0 % / 100 %; bootstrap intervals for ROC AUC and F1, and for a rate whose answers
cluster by patient; and right-answer rates by lesion size or by group, each with its interval."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
from scipy.stats import rankdata

from ._arrays import _binary_inputs

# Bootstrap resamples are drawn in blocks of about this many scores, so that memory stays near 16 MB however
# large the test set is.
_BOOTSTRAP_BLOCK = 2_000_000


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


def group_bootstrap_interval(hits, groups, n_boot: int = 2000, seed: int = 0, confidence: float = 0.95):
    """Percentile bootstrap interval for a right-answer rate whose answers cluster: whole groups (patients, or
    clusters of near-copies) are resampled with replacement, not single slices.

    Slices of one patient are not independent: a model that mistypes one patient's tumor mistypes most of its
    slices. Wilson's interval counts them as independent trials and is then too narrow; this one is about as wide
    when errors are spread, and wider when they gather in a few patients.

    Args:
        hits: (N,) bool, one answer per slice. groups: (N,) each slice's group.

    Returns:
        ``(low, high)`` of the slice-level rate; ``(nan, nan)`` without slices or with a single group.
    """
    hits = np.asarray(hits, dtype=bool)
    groups = np.asarray(groups)
    if hits.shape != groups.shape:
        raise ValueError("hits and groups must have the same length")
    _, group_of = np.unique(groups, return_inverse=True)
    n_groups = int(group_of.max()) + 1 if hits.size else 0
    if n_groups < 2:
        return math.nan, math.nan
    right = np.bincount(group_of, weights=hits, minlength=n_groups)
    total = np.bincount(group_of, minlength=n_groups)
    drawn = np.random.default_rng(seed).integers(0, n_groups, (n_boot, n_groups))
    rates = right[drawn].sum(axis=1) / total[drawn].sum(axis=1)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(rates, [tail, 100 - tail])
    return float(low), float(high)


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
