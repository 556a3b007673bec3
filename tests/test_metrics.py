import json

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, roc_auc_score, roc_curve

from brainml.metrics import (
    RULE_KINDS,
    ThresholdRule,
    ThresholdSweep,
    calibration,
    choose_threshold,
    classifier_report,
    curves,
    detector_report,
    f1_interval,
    group_bootstrap_interval,
    operating_point,
    rate_by_group,
    rate_by_lesion_size,
    roc_auc_interval,
    sweep_thresholds,
    wilson_interval,
)

# Six cases by hand: sorted by score, the truth reads no, no, TUMOR (tied with a no at 0.3), no, TUMOR, TUMOR.
HAND_LABELS = np.array([0, 0, 1, 0, 1, 1])
HAND_SCORES = np.array([0.1, 0.3, 0.3, 0.6, 0.8, 0.9])
# threshold -> (tp, fp, tn, fn), counted by hand with "tumor when score >= threshold".
HAND_COUNTS = {
    0.0: (3, 3, 0, 0),
    0.1: (3, 3, 0, 0),
    0.3: (3, 2, 1, 0),
    0.6: (2, 1, 2, 1),
    0.8: (2, 0, 3, 1),
    0.9: (1, 0, 3, 2),
}

# Nine cases with several ties in the rules' objectives (3 tumors, 6 without):
#   scores 0.1n 0.2n 0.3n 0.35T 0.4n 0.5n 0.6T 0.7n 0.8T
# Youden's J is 1/2 at 0.35 and at 0.6; accuracy 7/9 at 0.6 and 0.8; F1 2/3 at 0.35 and at 0.6.
RULE_LABELS = np.array([0, 0, 0, 1, 0, 0, 1, 0, 1])
RULE_SCORES = np.array([0.1, 0.2, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7, 0.8])


def random_detector(seed=0, n=400):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    # Rounded to two decimals so that many scores tie.
    scores = np.round(np.clip(rng.normal(0.35 + 0.3 * labels, 0.2), 0, 1), 2)
    return labels, scores


def counts(point):
    return point.tp, point.fp, point.tn, point.fn


def assert_json_without_nan(payload):
    json.dumps(payload, allow_nan=False)


def test_wilson_interval_matches_the_published_value_for_8_of_10():
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4)
    assert high == pytest.approx(0.9433, abs=1e-4)
    assert isinstance(low, float)


def test_wilson_interval_at_zero_successes_and_zero_total():
    low, high = wilson_interval(0, 10)
    assert low == 0.0
    assert high == pytest.approx(3.8415 / 13.8415, abs=1e-4)  # z^2 / (n + z^2)
    assert all(np.isnan(wilson_interval(0, 0)))


def test_wilson_interval_is_vectorised():
    low, high = wilson_interval(np.array([8, 0, 3]), np.array([10, 0, 3]))
    assert low[0] == pytest.approx(0.4902, abs=1e-4) and high[0] == pytest.approx(0.9433, abs=1e-4)
    assert np.isnan(low[1]) and np.isnan(high[1])
    assert high[2] == 1.0 and low[2] == pytest.approx(wilson_interval(3, 3)[0])


def test_wilson_interval_rejects_impossible_counts():
    with pytest.raises(ValueError, match="successes <= total"):
        wilson_interval(11, 10)


def test_sweep_counts_match_the_hand_computed_table():
    sweep = sweep_thresholds(HAND_LABELS, HAND_SCORES)
    assert sweep.thresholds[0] == 0.0 and sweep.thresholds[-1] > 1.0
    np.testing.assert_array_equal(sweep.thresholds[:-1], sorted(HAND_COUNTS))
    for index, threshold in enumerate(sorted(HAND_COUNTS)):
        assert (sweep.tp[index], sweep.fp[index], sweep.tn[index], sweep.fn[index]) == HAND_COUNTS[threshold]
    assert (sweep.tp[-1], sweep.fp[-1], sweep.tn[-1], sweep.fn[-1]) == (0, 0, 3, 3)
    assert sweep.n_positive == 3 and sweep.n_negative == 3


def test_operating_point_between_scores_and_its_derived_metrics():
    point = operating_point(HAND_LABELS, HAND_SCORES, 0.5)  # same verdicts as at 0.6
    assert counts(point) == (2, 1, 2, 1) and point.n == 6
    assert point.recall == pytest.approx(2 / 3)
    assert point.specificity == pytest.approx(2 / 3)
    assert point.precision == pytest.approx(2 / 3)
    assert point.npv == pytest.approx(2 / 3)
    assert point.accuracy == pytest.approx(4 / 6)
    assert point.balanced_accuracy == pytest.approx(2 / 3)
    assert point.f1 == pytest.approx(4 / 6)
    assert point.recall_ci == pytest.approx(wilson_interval(2, 3))
    assert point.accuracy_ci == pytest.approx(wilson_interval(4, 6))
    np.testing.assert_array_equal(point.confusion_matrix(), [[2, 1], [1, 2]])


def test_a_threshold_equal_to_a_score_flags_that_score():
    assert counts(operating_point(HAND_LABELS, HAND_SCORES, 0.3)) == (3, 2, 1, 0)
    assert counts(operating_point(HAND_LABELS, HAND_SCORES, 0.30001)) == (2, 1, 2, 1)


def test_sweep_at_matches_operating_point():
    labels, scores = random_detector(seed=1)
    sweep = sweep_thresholds(labels, scores)
    for threshold in [-0.5, 0.0, 0.05, 0.33, 0.35, 0.5, 0.999, 1.0, 1.5, *scores[:5]]:
        assert sweep.at(threshold).to_dict() == operating_point(labels, scores, threshold).to_dict()


def test_sweep_agrees_with_sklearn_confusion_matrix_at_random_thresholds():
    rng = np.random.default_rng(2)
    for seed in range(3):
        labels, scores = random_detector(seed=seed)
        sweep = sweep_thresholds(labels, scores)
        for threshold in [*rng.uniform(0, 1, 8), *rng.choice(scores, 4)]:
            tn, fp, fn, tp = confusion_matrix(labels, scores >= threshold, labels=[0, 1]).ravel()
            assert counts(sweep.at(threshold)) == (tp, fp, tn, fn)


def test_sweep_agrees_with_sklearn_roc_curve_at_every_score():
    labels, scores = random_detector(seed=3)
    fpr, tpr, thresholds = roc_curve(labels, scores, drop_intermediate=False)
    sweep = sweep_thresholds(labels, scores)
    index = np.searchsorted(sweep.thresholds, thresholds[1:])  # sklearn's first threshold is +inf
    np.testing.assert_array_equal(sweep.thresholds[index], thresholds[1:])
    np.testing.assert_allclose(sweep.recall[index], tpr[1:])
    np.testing.assert_allclose(1 - sweep.specificity[index], fpr[1:])


def test_tied_scores_all_land_on_the_same_side():
    labels = np.array([0, 1, 0, 1, 1])
    sweep = sweep_thresholds(labels, np.full(5, 0.5))
    np.testing.assert_array_equal(sweep.tp, [3, 3, 0])
    np.testing.assert_array_equal(sweep.fp, [2, 2, 0])
    assert sweep.thresholds[1] == 0.5
    assert curves(labels, np.full(5, 0.5)).roc_auc == 0.5
    assert roc_auc_interval(labels, np.full(5, 0.5), n_boot=50) == (0.5, 0.5)


def test_perfectly_separable_scores():
    labels = np.array([0, 0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    summary = curves(labels, scores)
    assert summary.roc_auc == 1.0 and summary.average_precision == 1.0
    assert roc_auc_interval(labels, scores, n_boot=100) == (1.0, 1.0)
    for kind in RULE_KINDS:
        assert choose_threshold(labels, scores, ThresholdRule(kind)) == 0.7
    point = operating_point(labels, scores, 0.7)
    assert (point.recall, point.specificity, point.f1) == (1.0, 1.0, 1.0)


@pytest.mark.filterwarnings("error")
def test_all_positive_labels_give_nan_not_errors_or_warnings():
    labels, scores = np.ones(4, int), np.array([0.2, 0.4, 0.6, 0.8])
    sweep = sweep_thresholds(labels, scores)
    np.testing.assert_allclose(sweep.recall, [1, 1, 0.75, 0.5, 0.25, 0])
    assert np.isnan(sweep.specificity).all() and np.isnan(sweep.balanced_accuracy).all()
    assert sweep.precision[-1] != sweep.precision[-1]  # nothing flagged: precision undefined
    point = sweep.at(0.5)
    assert point.npv == 0.0 and np.isnan(point.specificity) and all(np.isnan(point.specificity_ci))
    summary = curves(labels, scores)
    assert np.isnan(summary.roc_auc) and np.isnan(summary.average_precision) and summary.roc_fpr.size == 0
    assert all(np.isnan(roc_auc_interval(labels, scores)))
    report = detector_report(labels, scores, 0.5, n_boot=50)
    assert report["specificity"] is None and report["roc_auc"] is None and report["recall"] == 0.5
    assert report["n_positive"] == 4 and report["n_negative"] == 0
    assert_json_without_nan(report)
    assert_json_without_nan(sweep.to_dict())
    assert_json_without_nan(summary.to_dict())


@pytest.mark.filterwarnings("error")
def test_all_negative_labels_give_nan_not_errors_or_warnings():
    labels, scores = np.zeros(4, int), np.array([0.2, 0.4, 0.6, 0.8])
    sweep = sweep_thresholds(labels, scores)
    assert np.isnan(sweep.recall).all()
    np.testing.assert_allclose(sweep.specificity, [0, 0, 0.25, 0.5, 0.75, 1])
    report = detector_report(labels, scores, 0.5, n_boot=50)
    assert report["recall"] is None and report["recall_ci"] == [None, None] and report["f1_ci"] == [None, None]
    assert report["specificity"] == 0.5 and report["confusion_matrix"] == [[2, 2], [0, 0]]
    assert_json_without_nan(report)
    assert_json_without_nan(operating_point(labels, scores, 0.9).to_dict())


def test_choose_threshold_by_each_rule_with_ties_going_to_the_highest_threshold():
    def choose(kind, recall_target=0.98):
        return choose_threshold(RULE_LABELS, RULE_SCORES, ThresholdRule(kind, recall_target))

    assert choose("min_recall") == 0.35  # the highest threshold keeping all three tumors
    assert choose("min_recall", 0.6) == 0.6  # recall 2/3 with specificity 5/6
    assert choose("min_recall", 0.3) == 0.8  # recall 1/3 with specificity 1
    assert choose("youden") == 0.6  # J = 1/2 at 0.35 and 0.6
    assert choose("max_accuracy") == 0.8  # 7/9 at 0.6 and 0.8
    assert choose("max_f1") == 0.6  # 2/3 at 0.35 and 0.6


def test_each_rule_maximises_its_objective_on_random_data():
    labels, scores = random_detector(seed=4)
    points = [operating_point(labels, scores, t) for t in sweep_thresholds(labels, scores).thresholds]
    objectives = {
        "youden": lambda p: p.recall + p.specificity - 1,
        "max_accuracy": lambda p: p.accuracy,
        "max_f1": lambda p: p.f1,
        "min_recall": lambda p: p.specificity if p.recall >= 0.9 else -1,
    }
    for kind, objective in objectives.items():
        chosen = choose_threshold(labels, scores, ThresholdRule(kind, 0.9))
        best = max(objective(p) for p in points)
        winners = [p.threshold for p in points if objective(p) >= best - 1e-12]
        assert chosen == max(winners)


def test_min_recall_falls_back_to_the_lowest_threshold_with_the_highest_recall():
    # A coarse grid whose lowest threshold already misses tumors, so no threshold reaches recall 0.9.
    sweep = ThresholdSweep(
        thresholds=[0.3, 0.5, 0.7], tp=[8, 8, 5], fp=[4, 2, 0], tn=[6, 8, 10], fn=[2, 2, 5]
    )
    assert ThresholdRule("min_recall", 0.9).choose(sweep) == 0.3
    assert ThresholdRule("min_recall", 0.8).choose(sweep) == 0.5


def test_choose_threshold_needs_both_classes():
    with pytest.raises(ValueError, match="hold 0 tumor and 4 no-tumor cases; both classes are needed"):
        choose_threshold(np.zeros(4), np.linspace(0, 1, 4), ThresholdRule())


def test_threshold_rule_describes_itself_and_rejects_bad_settings():
    assert ThresholdRule().describe() == "highest specificity with recall >= 0.98 on validation"
    assert ThresholdRule("youden").describe() == "highest Youden's J (recall + specificity - 1) on validation"
    assert ThresholdRule("max_f1").to_dict()["kind"] == "max_f1"
    with pytest.raises(ValueError, match="threshold rule must be one of"):
        ThresholdRule("best")
    with pytest.raises(ValueError, match="recall_target must be in"):
        ThresholdRule(recall_target=1.5)


def test_curves_match_sklearn_and_serialise():
    labels, scores = random_detector(seed=5)
    summary = curves(labels, scores)
    assert summary.roc_auc == pytest.approx(roc_auc_score(labels, scores))
    assert summary.roc_thresholds[0] == np.inf
    payload = summary.to_dict()
    assert payload["roc_thresholds"][0] is None
    assert_json_without_nan(payload)


def test_roc_auc_interval_is_reproducible_and_brackets_the_auc():
    labels, scores = random_detector(seed=6)
    auc = roc_auc_score(labels, scores)
    low, high = roc_auc_interval(labels, scores, n_boot=500, seed=3)
    assert low < auc < high
    assert 0.02 < high - low < 0.2
    assert roc_auc_interval(labels, scores, n_boot=500, seed=3) == (low, high)


def test_f1_interval_brackets_f1():
    labels, scores = random_detector(seed=7)
    f1 = operating_point(labels, scores, 0.5).f1
    low, high = f1_interval(labels, scores, 0.5)
    assert low < f1 < high and high - low < 0.2


def test_calibration_ece_on_a_hand_computed_case():
    # bin [0.0, 0.1): confidence 0.05, 0 of 1 positive  -> gap 0.05
    # bin [0.1, 0.2): confidence 0.15, 1 of 2 positive  -> gap 0.35
    # bin [0.9, 1.0]: confidence 0.95, 1 of 1 positive  -> gap 0.05
    result = calibration([0, 1, 0, 1], [0.05, 0.15, 0.15, 0.95], n_bins=10)
    assert result.ece == pytest.approx((0.05 + 2 * 0.35 + 0.05) / 4)
    np.testing.assert_array_equal(result.bin_count, [1, 2, 0, 0, 0, 0, 0, 0, 0, 1])
    assert result.bin_confidence[1] == pytest.approx(0.15) and result.bin_accuracy[1] == 0.5
    assert np.isnan(result.bin_accuracy[2])
    payload = result.to_dict()
    assert payload["bin_accuracy"][2] is None
    assert_json_without_nan(payload)


def test_calibration_puts_edges_in_the_upper_bin_and_one_in_the_last():
    np.testing.assert_array_equal(calibration([0, 0, 1], [0.0, 0.1, 1.0], n_bins=10).bin_count,
                                  [1, 1, 0, 0, 0, 0, 0, 0, 0, 1])


def test_calibration_agrees_with_sklearn():
    rng = np.random.default_rng(8)
    scores = rng.uniform(0, 1, 300)
    labels = rng.uniform(0, 1, 300) < scores
    result = calibration(labels, scores, n_bins=8)
    accuracy, confidence = calibration_curve(labels, scores, n_bins=8)
    filled = result.bin_count > 0
    np.testing.assert_allclose(result.bin_accuracy[filled], accuracy)
    np.testing.assert_allclose(result.bin_confidence[filled], confidence)


def test_calibration_needs_probabilities():
    with pytest.raises(ValueError, match="probabilities in \\[0, 1\\]"):
        calibration([0, 1], [0.5, 1.5])


def test_detector_report_on_the_hand_example():
    report = detector_report(HAND_LABELS, HAND_SCORES, 0.6, n_boot=200)
    assert report["task"] == "detect" and report["n"] == 6 and report["threshold"] == 0.6
    assert report["confusion_matrix"] == [[2, 1], [1, 2]]
    assert report["recall"] == pytest.approx(2 / 3) and report["specificity"] == pytest.approx(2 / 3)
    assert report["roc_auc"] == pytest.approx(roc_auc_score(HAND_LABELS, HAND_SCORES))
    for name in ("recall", "specificity", "precision", "npv", "accuracy", "f1", "roc_auc"):
        low, high = report[f"{name}_ci"]
        assert low <= report[name] <= high, name
    assert {"balanced_accuracy", "average_precision", "ece", "n_positive", "n_negative"} <= report.keys()
    assert_json_without_nan(report)


def three_class_case():
    # Truth:     g g g m m p p p      Predicted: g g m m m p p g
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    predicted = np.array([0, 0, 1, 1, 1, 2, 2, 0])
    probabilities = np.full((8, 3), 0.1)
    probabilities[np.arange(8), predicted] = 0.8
    return labels, predicted, probabilities


def test_classifier_report_on_a_hand_made_three_class_case():
    labels, predicted, probabilities = three_class_case()
    report = classifier_report(labels, probabilities, ["glioma", "meningioma", "pituitary"])
    assert report["task"] == "classify" and report["n"] == 8
    assert report["confusion_matrix"] == [[2, 1, 0], [0, 2, 0], [1, 0, 2]]
    assert report["accuracy"] == 0.75
    assert report["accuracy_ci"] == pytest.approx(wilson_interval(6, 8))
    glioma, meningioma, pituitary = (report["per_class"][name] for name in report["class_names"])
    assert glioma["precision"] == pytest.approx(2 / 3) and glioma["recall"] == pytest.approx(2 / 3)
    assert meningioma["precision"] == pytest.approx(2 / 3) and meningioma["recall"] == 1.0
    assert pituitary["precision"] == 1.0 and pituitary["recall"] == pytest.approx(2 / 3)
    assert [glioma["f1"], meningioma["f1"], pituitary["f1"]] == pytest.approx([2 / 3, 0.8, 0.8])
    assert [glioma["support"], meningioma["support"], pituitary["support"]] == [3, 2, 3]
    assert meningioma["recall_ci"] == pytest.approx(wilson_interval(2, 2))
    assert report["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 0.8) / 3)
    assert report["weighted_f1"] == pytest.approx((3 * 2 / 3 + 2 * 0.8 + 3 * 0.8) / 8)
    assert report["ece"] == pytest.approx(0.05)  # every confidence 0.8, 6 of 8 right
    precision, recall, f1, support = precision_recall_fscore_support(labels, predicted)
    assert [report["per_class"][name]["f1"] for name in report["class_names"]] == pytest.approx(f1)
    assert_json_without_nan(report)


def test_classifier_report_with_a_class_never_seen():
    labels, _, probabilities = three_class_case()
    probabilities = np.column_stack([probabilities, np.zeros(8)])
    report = classifier_report(labels, probabilities, ["glioma", "meningioma", "pituitary", "other"])
    other = report["per_class"]["other"]
    assert other["support"] == 0 and other["precision"] is None and other["f1"] is None
    assert other["recall_ci"] == [None, None]
    assert report["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 0.8) / 3)
    assert_json_without_nan(report)


def test_classifier_report_checks_shapes():
    with pytest.raises(ValueError, match="probabilities must have shape \\(N, 2\\)"):
        classifier_report([0, 1], np.eye(3)[:2], ["a", "b"])


def test_bad_detector_inputs_are_explained():
    with pytest.raises(ValueError, match="labels must be 0 \\(no tumor\\) or 1 \\(tumor\\)"):
        sweep_thresholds([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="same length"):
        sweep_thresholds([0, 1], [0.1])
    with pytest.raises(ValueError, match="NaN or infinity"):
        sweep_thresholds([0, 1], [0.1, np.nan])


def test_sweep_lookup_agrees_with_counting_at_any_slider_position():
    # The slider asks for thresholds between candidates; the binary search must give the counts a direct
    # comparison of every score gives (its speed is in `python -m brainml bench`, "threshold slider move").
    rng = np.random.default_rng(9)
    labels = rng.integers(0, 2, 2000)
    scores = np.round(rng.uniform(0, 1, 2000), 3)  # rounding makes ties
    sweep = sweep_thresholds(labels, scores)
    for threshold in np.concatenate([rng.uniform(0, 1, 200), np.unique(scores)[:50], [0.0, 1.0, 1.5]]):
        flagged = scores >= threshold
        point = sweep.at(threshold)
        assert (point.tp, point.fp) == (np.sum(flagged & (labels == 1)), np.sum(flagged & (labels == 0)))
        assert (point.fn, point.tn) == (np.sum(~flagged & (labels == 1)), np.sum(~flagged & (labels == 0)))


def test_rate_by_lesion_size_counts_each_bin_by_hand():
    # Diameters (share of the side) and whether each lesion was caught; bins < 3 %, 3-6 %, 6-12 %, >= 12 %.
    diameters = [0.01, 0.02, 0.03, 0.05, 0.07, 0.2, 0.3]
    hits = [False, True, True, True, False, True, True]
    rows = rate_by_lesion_size(hits, diameters)
    assert [row["bin"] for row in rows] == ["< 3%", "3%-6%", "6%-12%", ">= 12%"]
    assert [row["n"] for row in rows] == [2, 2, 1, 2]
    assert [row["rate"] for row in rows] == [0.5, 1.0, 0.0, 1.0]
    assert rows[0]["rate_ci"] == pytest.approx(list(wilson_interval(1, 2)))
    empty = rate_by_lesion_size([True], [0.5])
    assert empty[0]["n"] == 0 and empty[0]["rate"] is None and empty[-1]["rate"] == 1.0
    with pytest.raises(ValueError):
        rate_by_lesion_size([True, False], [0.1])


def test_rate_by_group_counts_each_group_by_hand_and_keeps_empty_ones():
    groups = ["T2", "T1", "T2", "T2", "FLAIR"]
    hits = [True, False, False, True, True]
    rows = rate_by_group(hits, groups, order=["T1", "T1c", "T2", "FLAIR"])
    assert [row["group"] for row in rows] == ["T1", "T1c", "T2", "FLAIR"]
    assert [row["n"] for row in rows] == [1, 0, 3, 1]
    assert [row["rate"] for row in rows] == [0.0, None, pytest.approx(2 / 3), 1.0]
    assert rows[2]["rate_ci"] == pytest.approx(list(wilson_interval(2, 3))) and rows[1]["rate_ci"] is None
    assert [row["group"] for row in rate_by_group(hits, groups)] == ["FLAIR", "T1", "T2"]
    with pytest.raises(ValueError):
        rate_by_group([True], ["T1", "T2"])


def test_group_bootstrap_interval_widens_when_errors_gather_in_a_few_patients():
    # 40 patients of 20 slices, 90% right either way: spread over every patient, or every wrong slice in 4 patients.
    groups = np.repeat(np.arange(40), 20)
    spread = np.tile(np.arange(20) >= 2, 40)
    gathered = groups >= 4
    wilson = wilson_interval(720, 800)
    low, high = group_bootstrap_interval(spread, groups)
    assert low <= 0.9 <= high and high - low <= 1.5 * (wilson[1] - wilson[0])
    low_g, high_g = group_bootstrap_interval(gathered, groups)
    assert low_g <= 0.9 <= high_g and high_g - low_g > 3 * (wilson[1] - wilson[0])
    assert group_bootstrap_interval(gathered, groups) == (low_g, high_g)  # seeded
    assert all(np.isnan(group_bootstrap_interval([True, False], ["a", "a"])))
    with pytest.raises(ValueError):
        group_bootstrap_interval([True], ["a", "b"])
