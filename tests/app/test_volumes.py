"""Volumes on the pages: Detect opens a volume on its most suspicious slice with a strip chart of P(tumor) along the
slices; a click or the slider moves to a slice; Batch gives a volume one row; the Lab compares with the truth."""

import json

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app_helpers import ROOT, batch_table, headlines, problems, use_synthetic_pair
from brainml.io import read_scan
from brainml.predict import Cascade
from brainml.volume import score_volume

EXAMPLE = "volume-glioma"


@pytest.fixture(scope="module")
def example_scores():
    """The default pair's answers on the example volume, from the library (the page must show the same)."""
    from brainml.example_volume import NAME, example_volume

    scan = read_scan(example_volume().nifti_bytes(), name=NAME)
    cascade = Cascade.from_paths(ROOT / "models" / "detector.json", ROOT / "models" / "classifier.json")
    return score_volume(cascade, scan), cascade.default_threshold


def strip_chart(at) -> dict:
    chart = next(element for element in at.get("plotly_chart") if element.proto.id.endswith("detect_strip"))
    return json.loads(chart.proto.spec)


def current_line(spec: dict) -> float:
    """The x of the chart's solid vertical line: the slice on show."""
    return next(shape["x0"] for shape in spec["layout"]["shapes"] if shape["type"] == "line" and shape["x0"] == shape["x1"])


def threshold_line(spec: dict) -> float:
    return next(shape["y0"] for shape in spec["layout"]["shapes"] if shape["type"] == "line" and shape["y0"] == shape["y1"])


def open_example_volume(open_page):
    at = open_page("detect")
    at.selectbox(key="detect_example").set_value(EXAMPLE).run()
    assert problems(at) == [] and at.error == []
    return at


def test_detect_opens_the_example_volume_on_its_most_suspicious_slice(open_page, example_scores):
    scores, threshold = example_scores
    at = open_example_volume(open_page)
    best = scores.slice_of_max
    assert at.slider(key="detect_slice").value == best
    assert (at.slider(key="detect_slice").min, at.slider(key="detect_slice").max) == (0, scores.n_slices - 1)
    expected = scores.at(threshold)
    assert f"**Volume:** {expected.verdict_text()}" in [element.value for element in at.markdown]
    spec = strip_chart(at)
    assert current_line(spec) == best
    assert threshold_line(spec) == pytest.approx(threshold)
    # The verdict beside the picture is the most suspicious slice's.
    assert headlines(at)[0].endswith("Tumor likely (" + expected.slices[best].diagnosis.type + ")]")
    summary = expected.summary()
    assert any(element.label == f"Every slice: {summary['n_scored'] - summary['n_withheld']} with a verdict, "
               f"{summary['n_withheld']} withheld by the guard, {summary['n_skipped']} skipped" for element in at.expander)
    table = next(frame.value for frame in at.dataframe if "Slice" in frame.value.columns)
    assert len(table) == scores.n_slices
    assert table["P(tumor)"][best] == pytest.approx(scores.tumor_probabilities[best])


def test_the_slider_moves_the_slice_the_chart_marks_and_the_verdict(open_page, example_scores):
    scores, threshold = example_scores
    at = open_example_volume(open_page)
    quiet = int(np.nanargmin(scores.tumor_probabilities))
    at.slider(key="detect_slice").set_value(quiet).run()
    assert problems(at) == []
    assert current_line(strip_chart(at)) == quiet
    assert "No tumor found" in headlines(at)[0]
    assert f"axial slice {quiet} of 0–{scores.n_slices - 1}" in at.session_state["detect_last"]["scan"]
    assert at.session_state["detect_last"]["tumor_probability"] == pytest.approx(scores.tumor_probabilities[quiet])


def test_a_click_on_a_bar_shows_that_slice():
    def page():
        import streamlit as st

        from ui import state

        st.session_state.setdefault("chart", {"selection": {"points": [{"x": 41, "y": 0.3}]}})
        state.jump_to_clicked_slice("chart", "slice")
        st.slider("Slice", 0, 99, key="slice")

    at = AppTest.from_function(page)
    at.run()
    assert at.slider(key="slice").value == 41


def test_an_uploaded_volume_can_be_cut_along_another_plane(open_page, nifti_volume):
    at = open_page("detect")
    at.radio(key="detect_source").set_value("Upload a scan").run()
    at.file_uploader(key="detect_upload").set_value(("head.nii.gz", nifti_volume, "application/gzip")).run()
    assert problems(at) == []
    assert at.slider(key="detect_slice").max == 4
    at.selectbox(key="detect_plane").set_value("coronal").run()
    assert problems(at) == [] and at.error == []
    # 96 rows become 96 coronal slices; the chart and the slider follow the new stack.
    assert at.slider(key="detect_slice").max == 95
    assert "coronal slice" in at.session_state["detect_last"]["scan"]


def test_batch_gives_a_volume_one_row_its_most_suspicious_slice_and_a_per_slice_table(open_page, nifti_volume, scan_png):
    at = open_page("batch")
    use_synthetic_pair(at)
    at.file_uploader(key="batch_upload").set_value([
        ("head.nii.gz", nifti_volume, "application/gzip"), ("scan.png", scan_png, "image/png")]).run()
    assert problems(at) == []
    table = batch_table(at)
    assert list(table["file"]) == ["head.nii.gz", "scan.png"]
    cascade = Cascade.from_paths(ROOT / "models" / "synthetic" / "detector.json",
                                 ROOT / "models" / "synthetic" / "classifier.json")
    scores = score_volume(cascade, read_scan(nifti_volume, name="head.nii.gz"))
    assert table["slice"][0] == scores.slice_of_max
    slices = next(frame.value for frame in at.dataframe if "Slice" in frame.value.columns)
    assert list(slices["Slice"]) == list(range(5))
    assert "batch_volume_0_csv" in [button.key for button in at.get("download_button")]


def test_the_lab_compares_the_volume_with_where_the_tumor_is(open_page):
    from brainml.example_volume import example_volume

    at = open_page("lab")
    first, last = example_volume().lesion_slices
    text = "\n".join(element.value for element in at.markdown)
    assert f"with a glioma on axial slices **{first}–{last}**" in text
    best = at.slider(key="lab_volume_slice").value
    inside = "inside" if first <= best <= last else "outside"
    assert f"The most suspicious slice, **{best}**, is **{inside}** the tumor." in text


def test_batch_examples_end_with_the_example_volume_as_one_row(open_page, example_scores):
    from brainml.example_volume import NAME

    scores, threshold = example_scores
    at = open_page("batch")
    at.toggle(key="batch_use_examples").set_value(True).run()
    assert problems(at) == []
    table = batch_table(at)
    assert len(table) == 9 and table["file"].iloc[-1] == NAME
    assert table["slice"].iloc[-1] == scores.slice_of_max
    assert table["verdict"].iloc[-1] == ("tumor" if scores.at(threshold).summary()["tumor"] else "no tumor")
    assert any(element.value == f"**{NAME}:** {scores.at(threshold).verdict_text()}" for element in at.markdown)
