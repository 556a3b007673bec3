"""How well a detector or a type classifier works: threshold sweeps, confidence intervals, ROC / PR, calibration,
and where heatmaps point.

Pure, vectorised numpy and scikit-learn; no I/O. A detector is judged on ``labels`` (N,) in {0, 1} (1 = tumor) and
``scores`` (N,) = P(tumor); its verdict is "tumor" when ``score >= threshold``. A metric that is undefined on the
data (specificity without a single no-tumor case, precision when nothing is flagged) is ``nan``, never an error
or a warning, and every ``to_dict`` turns ``nan`` into ``None`` so that the result can be written as JSON.

One module per concern: ``thresholds`` (sweeps, operating points and the rules that choose one), ``intervals``
(Wilson and bootstrap intervals, by slice or by patient; rates by lesion size or group), ``curves`` (ROC, PR,
reliability), ``reports`` (the summaries model cards hold) and ``localisation`` (pointing game, energy in mask).
"""

from .curves import Calibration, Curves, calibration, curves
from .intervals import (
    LESION_SIZE_EDGES,
    group_bootstrap_interval,
    rate_by_group,
    rate_by_lesion_size,
    roc_auc_interval,
    wilson_interval,
)
from .localisation import POINTING_TOLERANCE_PX, energy_in_mask, pointing_game
from .reports import classifier_report, detector_report
from .thresholds import (
    RULE_KINDS,
    OperatingPoint,
    ThresholdRule,
    ThresholdSweep,
    choose_threshold,
    f1_interval,
    operating_point,
    sweep_thresholds,
)

__all__ = [
    "LESION_SIZE_EDGES",
    "POINTING_TOLERANCE_PX",
    "RULE_KINDS",
    "Calibration",
    "Curves",
    "OperatingPoint",
    "ThresholdRule",
    "ThresholdSweep",
    "calibration",
    "choose_threshold",
    "classifier_report",
    "curves",
    "detector_report",
    "energy_in_mask",
    "f1_interval",
    "group_bootstrap_interval",
    "operating_point",
    "pointing_game",
    "rate_by_group",
    "rate_by_lesion_size",
    "roc_auc_interval",
    "sweep_thresholds",
    "wilson_interval",
]
