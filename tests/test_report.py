import base64
import csv
import html
import io
from datetime import datetime, timezone

from brainml import report
from brainml.bundle import ModelCard
from brainml.metrics import OperatingPoint
from brainml.predict import Diagnosis

PROBABILITIES = {"glioma": 0.1, "meningioma": 0.7, "notumor": 0.15, "pituitary": 0.05}
MODELS = {"detector": "detector (compact, synthetic-data)", "classifier": "classifier (compact, synthetic-data)"}


def first_pass(probability: float = 0.8, note: str | None = None) -> Diagnosis:
    """A diagnosis as the cascade makes it at threshold 0.0: always tumor, always with a type."""
    return Diagnosis(probability, 0.0, True, "meningioma", dict(PROBABILITIES), dict(MODELS), note)


def card(task: str = "detect", **values) -> ModelCard:
    defaults = dict(name=task == "detect" and "detector" or "classifier", task=task,
                    class_names=["notumor", "tumor"] if task == "detect" else list(PROBABILITIES),
                    prep={"size": 128}, architecture="compact", gradcam_layer="last_conv_relu")
    return ModelCard(**{**defaults, **values})


def test_decimals_grow_until_two_close_numbers_read_differently():
    assert report.decimals(0.8731, 0.55) == 3
    assert report.decimals(0.549989, 0.549988) == 6
    assert report.decimals(0.55, 0.55) == 3
    assert report.decimals(0.5500001, 0.55, most=6) == 6
    # A confident model against the slider's top: 1 - 1e-12 must not read "1.000000000 < 1.000000000".
    places = report.decimals(1 - 1e-12, 1.0)
    assert f"{1 - 1e-12:.{places}f}" != f"{1.0:.{places}f}"


def test_verdict_text():
    assert report.verdict_text(first_pass().at(0.5)) == "Tumor likely (meningioma)"
    assert report.verdict_text(first_pass().at(0.9)) == "No tumor found"


def test_html_report_records_result_models_threshold_image_and_disclaimer():
    detector = card(threshold=0.42, threshold_rule="highest specificity with recall >= 0.98 on validation",
                    metrics={"n": 200, "recall": 0.97, "recall_ci": [0.93, 0.99], "roc_auc": 0.95},
                    held_out_split="test split of synth-2026")
    classifier = card("classify", metrics={"n": 200, "accuracy": 0.9, "accuracy_ci": [0.85, 0.93]})
    point = OperatingPoint.from_counts(0.5, tp=90, fp=5, tn=95, fn=10)
    png = b"\x89PNG\r\n\x1a\nfake"
    page = report.html_report(
        first_pass(0.8).at(0.5), detector, classifier, overlay_png=png,
        heatmap="Grad-CAM of the detector's tumor score", scan="uploaded PNG, 256 × 256 pixels",
        operating_point=point, created=datetime(2026, 1, 2, 3, 4, tzinfo=timezone.utc),
    )
    assert page.startswith("<!doctype html>")
    assert "Research and teaching tool, not a diagnosis." in page and html.escape(detector.notice) in page
    assert "Tumor likely (meningioma)" in page
    assert "0.800" in page and "0.500" in page
    assert f"data:image/png;base64,{base64.b64encode(png).decode()}" in page
    assert "Recall (sensitivity)</th><td>97.0% (93.0% – 99.0%)" in page
    assert "highest specificity with recall &gt;= 0.98 on validation" in page
    assert "TP 90 · FP 5 · TN 95 · FN 10" in page
    assert "Type classifier" in page and "90.0% (85.0% – 93.0%)" in page
    assert "2026-01-02 03:04 UTC" in page


def test_html_report_escapes_what_it_is_given_and_holds_no_file_name():
    diagnosis = first_pass(0.2).at(0.5)
    page = report.html_report(diagnosis, card(name="<script>alert(1)</script>"), scan="DICOM, 512 × 512")
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "No tumor found" in page
    assert "base64" not in page  # no image was given
    assert "holds no patient data" in page


def test_batch_rows_summary_and_csv():
    rows = [
        report.batch_row("a.png", first_pass(0.8), 0.5),
        report.batch_row("b.nii.gz", first_pass(0.3), 0.5, slice_index=40),
        report.batch_row("notes.png", "This file holds text, not an image or a scan.", 0.5),
    ]
    assert [row.verdict for row in rows] == ["tumor", "no tumor", "unreadable"]
    assert rows[0].type == "meningioma" and rows[1].type is None
    assert report.batch_summary(rows) == {"files": 3, "tumor": 1, "no tumor": 1, "not a brain MRI slice": 0,
                                          "unreadable": 1}
    table = list(csv.DictReader(io.StringIO(report.batch_csv(rows, 0.5, MODELS))))
    assert [line["file"] for line in table] == ["a.png", "b.nii.gz", "notes.png"]
    assert table[1]["slice"] == "40" and table[0]["slice"] == ""
    assert table[2]["error"] == "This file holds text, not an image or a scan."
    assert table[2]["tumor_probability"] == "" and table[2]["verdict"] == "unreadable"
    assert {line["threshold"] for line in table} == {"0.500000"}
    assert table[0]["detector"] == MODELS["detector"]


def test_a_slice_the_guard_refused_is_marked_and_counted_apart():
    refused = Diagnosis(0.9, 0.0, None, None, dict(PROBABILITIES), dict(MODELS),
                        "This does not look like a brain MRI slice; no verdict. Its pixels are coloured.",
                        brain_mri=False, ood_score=3.2, models_answer=first_pass(0.9))
    rows = [report.batch_row("chart.png", refused, 0.5), report.batch_row("a.png", first_pass(0.8), 0.5)]
    assert rows[0].verdict == "not a brain MRI slice" and rows[0].tumor_probability is None
    assert report.batch_summary(rows)["tumor"] == 1 and report.batch_summary(rows)["not a brain MRI slice"] == 1
    assert report.verdict_text(refused.at(0.5)) == report.WITHHELD
    page = report.html_report(refused.at(0.5), card())
    assert report.WITHHELD in page and "Its pixels are coloured." in page and "3.20" in page


def test_the_report_reads_areas_as_decimals_and_class_names_as_words():
    detector = card(metrics={"n": 200, "roc_auc": 0.9659, "roc_auc_ci": [0.959, 0.972], "recall": 0.97})
    page = report.html_report(first_pass(0.8).at(0.5), detector)
    assert "ROC AUC</th><td>0.966 (0.959 – 0.972)" in page and "96.6%" not in page
    assert "No tumor 15.0%" in page and "notumor" not in page


def test_metric_rows_keep_the_cards_order_and_intervals():
    rows = report.metric_rows({"specificity": 0.8, "recall": 0.95, "recall_ci": [0.9, 0.98], "npv_ci": [None, None]})
    assert rows == [
        {"name": "recall", "metric": "Recall (sensitivity)", "value": 0.95, "ci_low": 0.9, "ci_high": 0.98},
        {"name": "specificity", "metric": "Specificity", "value": 0.8, "ci_low": None, "ci_high": None},
    ]


def test_localisation_rows_put_the_pooled_row_first():
    table = {"gradcam": {"glioma": {"pointing_game": 1.0, "energy_in_mask": 0.5, "n": 2},
                         "all": {"pointing_game": 0.5, "energy_in_mask": 0.3, "n": 4}}}
    rows = report.localisation_rows(table)
    assert [(row["method"], row["class"]) for row in rows] == [("gradcam", "all"), ("gradcam", "glioma")]
    assert rows[0]["pointing_game"] == 0.5
