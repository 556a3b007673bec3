import numpy as np
import plotly.graph_objects as go
import pytest

from brainml import charts, labels, metrics
from brainml.preprocess import CropBox

LABELS = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
SCORES = np.array([0.05, 0.2, 0.35, 0.6, 0.4, 0.55, 0.7, 0.8, 0.9, 0.95])


@pytest.fixture
def sweep():
    return metrics.sweep_thresholds(LABELS, SCORES)


def test_type_probabilities_puts_the_likeliest_on_top_and_colours_the_chosen_type():
    figure = charts.type_probabilities({"glioma": 0.7, "meningioma": 0.2, "notumor": 0.06, "pituitary": 0.04}, "glioma")
    bar = figure.data[0]
    assert list(bar.y) == ["Pituitary", "No tumor", "Meningioma", "Glioma"]  # plotly draws the last bar on top
    assert list(bar.text) == ["4.0%", "6.0%", "20.0%", "70.0%"]
    assert bar.marker.color[-1] == charts.TUMOR_COLOUR
    assert set(bar.marker.color[:-1]) == {charts.NEUTRAL_COLOUR}


def test_confusion_matrix_shows_counts_and_row_shares_and_survives_an_empty_row():
    figure = charts.confusion_matrix([[8, 2], [0, 0]], ["notumor", "tumor"])
    heat = figure.data[0]
    assert np.allclose(heat.z, [[0.8, 0.2], [0.0, 0.0]])
    assert heat.text[0][0] == "8<br>80%"
    assert list(heat.x) == ["No tumor", "Tumor"]
    assert figure.layout.yaxis.autorange == "reversed"  # truth rows read top to bottom


def test_detector_confusion_matrix_matches_the_operating_point(sweep):
    point = sweep.at(0.5)
    figure = charts.detector_confusion_matrix(point)
    assert figure.data[0].text[1][1].startswith(f"{point.tp}<br>")
    assert figure.data[0].text[0][1].startswith(f"{point.fp}<br>")


def test_threshold_curves_draw_each_metric_and_mark_the_threshold(sweep):
    figure = charts.threshold_curves(sweep, 0.42)
    assert [trace.name for trace in figure.data] == ["Recall (sensitivity)", "Specificity", "Precision (PPV)", "F1",
                                                     "Accuracy"]
    assert max(max(trace.x) for trace in figure.data) == 1.0  # the "flag nothing" candidate above 1 is drawn at 1
    assert np.allclose(figure.data[0].y, sweep.recall)
    line = figure.layout.shapes[0]
    assert line.x0 == line.x1 == pytest.approx(0.42)


def test_score_distribution_overlays_both_classes_with_their_counts():
    figure = charts.score_distribution(LABELS, SCORES, 0.5)
    assert [trace.name for trace in figure.data] == ["No tumor (n=4)", "Tumor (n=6)"]
    assert figure.layout.barmode == "overlay"
    assert figure.layout.shapes[0].x0 == pytest.approx(0.5)


def test_roc_and_pr_mark_the_operating_point(sweep):
    point = sweep.at(0.5)
    summary = metrics.curves(LABELS, SCORES)
    roc = charts.roc(summary, point)
    marker = roc.data[-1]
    assert (marker.x[0], marker.y[0]) == pytest.approx((1 - point.specificity, point.recall))
    assert f"AUC {summary.roc_auc:.3f}" in roc.layout.title.text
    pr = charts.precision_recall(summary, point)
    assert (pr.data[-1].x[0], pr.data[-1].y[0]) == pytest.approx((point.recall, point.precision))
    assert pr.data[0].y[0] == pytest.approx(0.6)  # the prevalence baseline: 6 tumors in 10


def test_roc_without_both_classes_has_no_area_in_its_title():
    summary = metrics.curves([1, 1, 1], [0.2, 0.5, 0.9])
    assert charts.roc(summary).layout.title.text == "ROC curve"


def test_reliability_draws_empty_bins_as_zero_and_names_the_ece():
    calibration = metrics.calibration(LABELS, SCORES, n_bins=5)
    figure = charts.reliability(calibration)
    bars = figure.data[1]
    assert len(bars.x) == 5
    assert np.all(np.isfinite(bars.y))
    assert f"ECE {calibration.ece:.3f}" in figure.layout.title.text
    assert list(bars.customdata) == list(calibration.bin_count)


def test_training_history_has_a_panel_per_quantity_with_dashed_validation():
    history = {"loss": [0.9, 0.5, 0.3], "val_loss": [1.0, 0.6, 0.5], "auc": [0.6, 0.8, 0.9],
               "val_auc": [0.55, 0.75, 0.85], "learning_rate": [0.002] * 3}
    figure = charts.training_history(history)
    assert [annotation.text for annotation in figure.layout.annotations] == ["Loss", "AUC"]
    assert len(figure.data) == 4
    dashes = {trace.name: trace.line.dash for trace in figure.data}
    assert dashes == {"training": "solid", "validation": "dash"}


def test_training_history_without_epochs_says_so():
    assert charts.training_history({}).layout.title.text == "No training history in this card"


def test_localisation_reads_the_pooled_row_of_each_method():
    table = {"gradcam": {"all": {"pointing_game": 0.9, "energy_in_mask": 0.4, "n": 10},
                         "glioma": {"pointing_game": 1.0, "energy_in_mask": 0.5, "n": 4}},
             "layercam": {"all": {"pointing_game": 0.7, "energy_in_mask": 0.3, "n": 10}}}
    figure = charts.localisation(table)
    pointing, energy = figure.data
    assert list(pointing.x) == ["Grad-CAM", "LayerCAM"]
    assert list(pointing.y) == [0.9, 0.7] and list(energy.y) == [0.4, 0.3]
    assert list(pointing.text) == ["90%", "70%"]


def test_scan_with_box_outlines_the_crop_box_over_the_slice():
    image = np.zeros((40, 60))
    figure = charts.scan_with_box(image, CropBox(top=5, left=10, bottom=35, right=50))
    rect = figure.layout.shapes[0]
    assert (rect.x0, rect.x1, rect.y0, rect.y1) == (9.5, 49.5, 4.5, 34.5)
    assert figure.layout.yaxis.range == (39.5, -0.5)  # row 0 at the top, as on screen


def test_heat_map_shows_the_map_with_its_values():
    heat = np.linspace(0, 1, 64).reshape(8, 8)
    figure = charts.heat_map(heat, "inferno")
    assert isinstance(figure.data[0], go.Heatmap)
    assert np.allclose(figure.data[0].z, heat)
    assert (figure.data[0].zmin, figure.data[0].zmax) == (0, 1)


def test_class_label_reads_like_english():
    assert labels.class_label("notumor") == "No tumor"
    assert labels.class_label("glioma") == "Glioma"
    assert labels.class_label("my_class") == "My class"
