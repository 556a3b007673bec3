"""A new user's complaints, each as the user met it, and what the app shows now (AppTest, known inputs)."""

import base64
import json
import re

import numpy as np
import pytest
from app_helpers import (PAGES, THRESHOLD, batch_table, captions, headlines, images, markdown_text, problems,
                         use_synthetic_pair, verdict_of)

from brainml.bundle import read_card


def figure(at, title_start: str) -> dict:
    """The plotly figure on the page whose title starts with ``title_start``, as the browser receives it."""
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        if ((spec["layout"].get("title") or {}).get("text") or "").startswith(title_start):
            return spec
    raise AssertionError(f"no chart titled {title_start!r}")


def array(value) -> np.ndarray:
    """A plotly JSON array, plain or base64-typed ({"dtype", "bdata", "shape"})."""
    if isinstance(value, dict) and "bdata" in value:
        data = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        if isinstance(shape, str):
            shape = tuple(int(side) for side in shape.split(","))
        return data.reshape(shape) if shape else data
    return np.asarray(value)


def shown_detector_card(at):
    return read_card(at.radio(key="sidebar_detector").value)


# 1 ------------------------------------------------------------------------------------------------------------


def test_the_histogram_counts_scores_of_exactly_one_on_the_axis_and_says_why_they_stay_tumor(open_page):
    at = open_page("explorer")
    use_synthetic_pair(at)
    card = shown_detector_card(at)
    labels, scores = np.array(card.held_out_labels), np.array(card.held_out_scores)
    spec = figure(at, "Held-out P(tumor) by true class")
    for trace, label in zip(spec["data"], (0, 1)):
        centres, widths, counts = array(trace["x"]), array(trace["width"]), array(trace["y"])
        assert centres.max() + widths.max() / 2 <= 1.0 + 1e-9  # no bar beyond the axis
        assert counts.sum() == (labels == label).sum()  # every score is drawn, those of exactly 1.0 included
        assert counts[-1] == ((scores >= 1 - 1 / len(counts)) & (labels == label)).sum()
    saturated = int((scores >= 1.0).sum())
    assert saturated > 0, "the synthetic detector's held-out scores saturate; this test needs some that do"
    assert (f"{saturated} held-out scores are exactly 1.000" in captions(at)
            and "they stay tumor even at threshold 1.000" in captions(at))
    # The sweep reads "tumor when P ≥ threshold": at 1.0 exactly the saturated tumors are found.
    at.number_input(key="explorer_threshold_typed").set_value(1.0).run()
    recall = {metric.label: metric.value for metric in at.metric}["Recall (sensitivity)"]
    assert recall == f"{np.mean(scores[labels == 1] >= 1.0):.1%}"


# 2 ------------------------------------------------------------------------------------------------------------


def test_batch_shows_p_against_the_threshold_with_the_digits_that_tell_them_apart(open_page):
    at = open_page("batch")
    use_synthetic_pair(at)
    at.toggle(key="batch_use_examples").set_value(True).run()
    table = batch_table(at)
    probability = float(table["tumor_probability"][table["tumor_probability"] < 0.999].max())
    # A threshold a hair above a P(tumor): the same to three decimals, and that verdict is "no tumor".
    at.number_input(key="batch_threshold_typed").set_value(probability + 2e-7).run()
    assert problems(at) == []
    table = batch_table(at)
    for comparison, verdict in zip(table["comparison"], table["verdict"]):
        shown_p, relation, shown_threshold = comparison.split(" ")
        assert (relation == "≥") == (verdict == "tumor") == (float(shown_p) >= float(shown_threshold))
        assert shown_p != shown_threshold
    assert "no tumor" in list(table["verdict"])


# 3 ------------------------------------------------------------------------------------------------------------


def test_a_threshold_carried_from_another_page_is_shown_with_a_reset(open_page):
    at = open_page("explorer")
    use_synthetic_pair(at)
    at.slider(key="explorer_threshold").set_value(0.3).run()
    at.switch_page(PAGES["detect"]).run()
    card_threshold = shown_detector_card(at).threshold
    assert at.slider(key="detect_threshold").value == pytest.approx(0.3)
    assert "is not the detector card's" in captions(at) and f"**{card_threshold:.3f}**" in captions(at)
    at.button(key="detect_threshold_reset").click().run()
    assert at.session_state[THRESHOLD] == pytest.approx(card_threshold)
    assert at.slider(key="detect_threshold").value == pytest.approx(card_threshold)
    assert "is not the detector card's" not in captions(at)
    assert "detect_threshold_reset" not in [button.key for button in at.button]


# 4 ------------------------------------------------------------------------------------------------------------


def test_an_empty_heatmap_is_explained_in_words_that_agree_with_the_verdict_and_the_scan_is_shown(open_page,
                                                                                                   monkeypatch):
    from brainml.explain.core import HeatmapResult
    from brainml.preprocess import CropBox
    from ui import loaders

    def empty(models, image, method, target=loaders.TUMOR_TARGET, diagnosis=None):
        blank = np.zeros(image.shape, np.float32)
        return HeatmapResult(blank, np.zeros((128, 128), np.float32), method, "tumor",
                             CropBox(0, 0, image.shape[0], image.shape[1]), True)

    at = open_page("detect")
    use_synthetic_pair(at)
    monkeypatch.setattr(loaders, "heatmap", empty)
    for threshold, verdict, words in ((0.0, "Tumor likely", "That does not weaken the answer"),
                                      (1.0, "No tumor found", "which fits the answer")):
        at.number_input(key="detect_threshold_typed").set_value(threshold).run()
        if verdict == "No tumor found" and at.session_state["detect_last"]["tumor_probability"] >= 1.0:
            continue  # a saturated score stays tumor at 1.0
        assert verdict_of(at) == verdict
        message = " ".join(element.value for element in at.info)
        assert words in message and "common for a confident answer" not in message
        assert images(at)[0].captions[0].startswith("The scan: real example 'Real · glioma (figshare)'")


# 5 ------------------------------------------------------------------------------------------------------------


def test_an_upload_is_still_there_after_visiting_another_page(open_page, scan_png):
    at = open_page("detect")
    at.radio(key="detect_source").set_value("Upload a scan").run()
    at.file_uploader(key="detect_upload").set_value(("my scan.png", scan_png, "image/png")).run()
    before = at.session_state["detect_last"]
    at.switch_page(PAGES["explorer"]).run()
    at.switch_page(PAGES["detect"]).run()
    assert problems(at) == [] and at.error == []
    assert at.radio(key="detect_source").value == "Upload a scan"
    assert at.session_state["detect_last"] == before
    assert images(at)[0].captions[0].startswith("The scan: uploaded PNG")
    assert "**my scan.png**, uploaded earlier in this session" in captions(at)
    at.button(key="detect_forget").click().run()
    assert any("Upload one slice" in element.value for element in at.info) and images(at) == []


# 6 ------------------------------------------------------------------------------------------------------------


def test_the_batch_table_shows_every_row_and_whole_type_names_and_lists_every_file(open_page, monkeypatch,
                                                                                    scan_png, zip_of_scans):
    import streamlit as st

    heights = {}
    real_dataframe = st.dataframe

    def dataframe(data=None, *args, **kwargs):
        heights[kwargs.get("key")] = kwargs.get("height")
        return real_dataframe(data, *args, **kwargs)

    monkeypatch.setattr(st, "dataframe", dataframe)
    at = open_page("batch")
    use_synthetic_pair(at)
    uploads = [(f"scan_{i:02d}.png", scan_png, "image/png") for i in range(12)] + [("two.zip", zip_of_scans,
                                                                                     "application/zip")]
    at.file_uploader(key="batch_upload").set_value(uploads).run()
    assert problems(at) == []
    table = batch_table(at)
    assert len(table) == 14 and heights["batch_table"] == "content"  # the box grows with the rows: no scrolling
    config = json.loads(next(frame for frame in at.dataframe if "verdict" in frame.value.columns).proto.columns)
    assert config["type"]["width"] != "small"
    assert set(table["type"]) - {""} <= {"Glioma", "Meningioma", "Pituitary"}
    files = next(frame.value for frame in at.dataframe if "File" in frame.value.columns)
    assert list(files["File"]) == [name for name, _, _ in uploads] and heights["batch_uploaded_files"] == "content"


# 7 ------------------------------------------------------------------------------------------------------------


def test_smoothgrad_shows_no_grid(open_page):
    at = open_page("detect")
    use_synthetic_pair(at)
    at.selectbox(key="detect_example").set_value("glioma").run()
    at.selectbox(key="detect_method").set_value("smoothgrad").run()
    at.toggle(key="detect_raw").set_value(True).run()
    assert problems(at) == []
    heat = array(next(json.loads(chart.proto.spec) for chart in at.get("plotly_chart")
                      if json.loads(chart.proto.spec)["data"][0]["type"] == "heatmap")["data"][0]["z"])
    power = np.abs(np.fft.fft2(heat - heat.mean())) ** 2
    frequency = np.maximum(np.abs(np.fft.fftfreq(heat.shape[0]))[:, None], np.abs(np.fft.fftfreq(heat.shape[1])))
    # The stride-2 grid put about 8% of the map's energy above 0.2 cycles per pixel; a smooth map has well under 1%.
    assert power[frequency > 0.2].sum() / power.sum() < 0.01


# 8 ------------------------------------------------------------------------------------------------------------


def test_about_this_file_is_a_readable_table(open_page, scan_png):
    at = open_page("detect")
    at.radio(key="detect_source").set_value("Upload a scan").run()
    at.file_uploader(key="detect_upload").set_value(("scan.png", scan_png, "image/png")).run()
    facts = next(frame.value for frame in at.dataframe if "Property" in frame.value.columns)
    rows = dict(zip(facts["Property"], facts["Value"]))
    assert rows["Format"] == "PNG" and rows["Size (pixels)"] == "256 × 256" and rows["Bit depth"] == "8"
    assert at.get("json") == []


# 9 ------------------------------------------------------------------------------------------------------------


def test_the_lab_shows_the_three_steps_alike_and_the_preprocessing_in_words(open_page):
    at = open_page("lab")
    steps = [image.captions[0] for image in images(at) if image.captions and image.captions[0][:3] in
             ("1 ·", "2 ·", "3 ·")]
    assert [caption[:3] for caption in steps] == ["1 ·", "2 ·", "3 ·"]
    table = next(frame.value for frame in at.dataframe if "Step" in frame.value.columns)
    assert list(table["Step"]) == ["1 · Crop", "2 · Resize", "3 · Normalise", "4 · Channels"]
    assert "128 × 128 pixels, bilinear filter" in list(table["Setting"])
    shown = captions(at) + markdown_text(at)
    assert "{'size'" not in shown and "'normalisation'" not in shown


# 10 -----------------------------------------------------------------------------------------------------------


def test_the_sidebar_names_each_model_whole(app):
    detector = app.radio(key="sidebar_detector")  # a radio wraps a long label; a select box cuts it
    assert "Synthetic · compact CNN (models/synthetic/detector.json)" in detector.options
    assert "Synthetic · compact CNN (models/synthetic/classifier.json)" in app.radio(key="sidebar_classifier").options
    assert all("(" in label and label.endswith(")") for label in detector.options[:-1])


def test_the_lab_starts_on_the_synthetic_pair_and_leaves_the_other_pages_choice_alone(app):
    default = app.radio(key="sidebar_detector").value
    app.switch_page(PAGES["lab"]).run()
    assert app.radio(key="lab_models_detector").value.endswith("models/synthetic/detector.json")
    assert app.radio(key="lab_models_classifier").value.endswith("models/synthetic/classifier.json")
    app.switch_page(PAGES["detect"]).run()
    assert app.radio(key="sidebar_detector").value == default


# 11 -----------------------------------------------------------------------------------------------------------


def test_the_model_card_names_the_synthetic_data_and_where_the_metrics_come_from(open_page):
    at = open_page("model_card")
    use_synthetic_pair(at)
    text = markdown_text(at)
    assert "**Data set:** 30,000 synthetic slices made by BrainML's generator (version 4, seed 1, 256 px)" in text
    assert "kaggle-4class" not in text
    assert "**Test metrics above:** measured on data/synth-test-s2026 (n = 2,000), a set made apart from" in text
    per_class = next(frame.value for frame in at.dataframe if "Class" in frame.value.columns)
    assert all(re.fullmatch(r"\d+\.\d%", value) for value in per_class["Recall"])


# 12 -----------------------------------------------------------------------------------------------------------


def test_the_report_reads_like_the_app(open_page, monkeypatch):
    from brainml import report

    made = []
    real_report = report.html_report

    def keep(*args, **kwargs):
        made.append(real_report(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(report, "html_report", keep)
    at = open_page("detect")
    use_synthetic_pair(at)
    page = made[-1]
    card = shown_detector_card(at)
    assert f"ROC AUC</th><td>{card.metrics['roc_auc']:.3f}" in page and f"{card.metrics['roc_auc']:.1%}" not in page
    assert "notumor" not in page and "No tumor" in page
    assert "figure img { width: 100%" in page
    from PIL import Image
    import io

    png = base64.b64decode(re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page).group(1))
    assert max(Image.open(io.BytesIO(png)).size) >= 640


# 13 -----------------------------------------------------------------------------------------------------------


def test_the_threshold_moves_in_hundredths_and_can_be_typed(open_page):
    at = open_page("detect")
    assert at.slider(key="detect_threshold").step == pytest.approx(0.01)
    at.number_input(key="detect_threshold_typed").set_value(0.4242).run()
    assert problems(at) == []
    assert at.slider(key="detect_threshold").value == pytest.approx(0.4242)
    assert at.session_state[THRESHOLD] == pytest.approx(0.4242)
    at.slider(key="detect_threshold").set_value(0.6).run()
    assert at.number_input(key="detect_threshold_typed").value == pytest.approx(0.6)


# Also: every verdict says what the models learned from --------------------------------------------------------


def test_a_verdict_says_what_the_models_learned_from_and_what_that_leaves_unmeasured(open_page):
    at = open_page("detect")
    use_synthetic_pair(at)
    assert headlines(at)
    assert ("These models learned from a set of 30,000 synthetic slices made by BrainML's generator; the test "
            "figures come from the same generator, so how they do on real scans is not measured. A research and "
            "teaching tool, not a diagnosis.") in captions(at)
