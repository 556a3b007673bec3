"""Knowing when not to answer, as the user sees it: a slice the out-of-distribution guard refuses gets no verdict
(Detect, Batch), and the model card shows the guard, the calibration and the split behind the numbers."""

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from app_helpers import markdown_text, problems
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
SYNTHETIC = ROOT / "models" / "synthetic"
WITHHELD = "This does not look like a brain MRI slice; no verdict"
GUARD_CARD = {
    "rule": "accept 100.0% of the validation slices (test fixture); refuse sources with coloured pixels",
    "acceptance": 1.0,
    "test_accepted": {"rate": 0.99, "n": 400, "rate_ci": [0.975, 0.996]},
    "non_brain_withheld": {"rate": 0.9, "n": 40, "rate_ci": [0.77, 0.96],
                           "by_kind": {"photo": {"withheld": 8, "n": 8}, "chart": {"withheld": 7, "n": 8},
                                       "text_page": {"withheld": 6, "n": 8}}},
}
BY_SOURCE = {"groups": ["figshare", "br35h"],
             "measures": {"recall": [{"group": "figshare", "n": 300, "rate": 0.97, "rate_ci": [0.94, 0.98]},
                                     {"group": "br35h", "n": 200, "rate": 0.9, "rate_ci": [0.85, 0.94]}],
                          "specificity": [{"group": "figshare", "n": 0, "rate": None, "rate_ci": None},
                                          {"group": "br35h", "n": 150, "rate": 0.8, "rate_ci": [0.73, 0.86]}]}}
SPLIT = {"mode": "groups", "rule": "group-disjoint over the whole set (test fixture)", "groups_from": "near-duplicate "
         "clusters", "groups": 5123, "test_images_sharing_a_group_with_train": 0,
         "official_test_images_sharing_a_group_with_official_training": 217, "official_test_images": 1311}


@pytest.fixture(scope="session")
def guarded_pair(tmp_path_factory) -> tuple[Path, Path]:
    """The synthetic pair with a guard fitted on a few synthetic slices (the examples among them, so they pass),
    a calibration record and, on the detector, a breakdown by source and a split description."""
    from brainml import synth
    from brainml.bundle import load_bundle
    from brainml.calibration import calibration_summary
    from brainml.examples import EXAMPLES, example_case
    from brainml.guard import fit_guard, guard_file, slice_features
    from brainml.preprocess import prepare_batch

    folder = tmp_path_factory.mktemp("guarded")
    for name in ("detector", "classifier"):
        for suffix in (".json", ".keras"):
            shutil.copy(SYNTHETIC / f"{name}{suffix}", folder / f"{name}{suffix}")
    classifier_path, detector_path = folder / "classifier.json", folder / "detector.json"
    bundle = load_bundle(classifier_path)
    examples = [example_case(example.key).image for example in EXAMPLES]
    train = [case.image for case in synth.sample_cases(24, seed=11)] + examples
    validation = [case.image for case in synth.sample_cases(12, seed=12)] + examples
    features = {name: slice_features(bundle.model, prepare_batch(images, bundle.card.prep_spec)[0])[1]
                for name, images in (("train", train), ("validation", validation))}
    guard = fit_guard(features["train"], features["validation"], acceptance=1.0)
    guard.threshold *= 1.5  # a margin, so an example scored alone (another batch, other rounding) still passes
    guard.save(guard_file(classifier_path))

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    scores = np.clip(labels * 0.6 + rng.uniform(0, 0.4, 300), 0, 1)
    calibration = {"method": "temperature scaling (Guo et al. 2017), fitted on the validation split",
                   "temperature": 1.7321, "validation_images": 300, "test_images": 300,
                   "test_before": calibration_summary(labels, scores),
                   "test_after": calibration_summary(labels, np.clip(labels * 0.5 + rng.uniform(0, 0.5, 300), 0, 1))}
    card = json.loads(classifier_path.read_text())
    card.update(guard={"file": guard_file(classifier_path).name, **GUARD_CARD}, calibration=calibration)
    classifier_path.write_text(json.dumps(card))
    card = json.loads(detector_path.read_text())
    card["metrics"]["by_source"] = BY_SOURCE
    card["provenance"]["split"] = SPLIT
    detector_path.write_text(json.dumps(card))
    return detector_path, classifier_path


@pytest.fixture(scope="session")
def chart_png() -> bytes:
    """A colourful bar chart saved as PNG: not a brain MRI slice, whatever the network makes of it."""
    picture = np.full((200, 240, 3), 255, np.uint8)
    for i, colour in enumerate(((214, 64, 78), (47, 126, 193), (91, 158, 90), (229, 160, 42))):
        picture[60 + 30 * i:200, 20 + 55 * i:60 + 55 * i] = colour
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    return buffer.getvalue()


def use_pair(at, detector: Path, classifier: Path) -> None:
    at.radio(key="sidebar_detector").set_value("other").run()
    at.text_input(key="sidebar_detector_path").set_value(str(detector)).run()
    at.radio(key="sidebar_classifier").set_value("other").run()
    at.text_input(key="sidebar_classifier_path").set_value(str(classifier)).run()
    assert problems(at) == [] and at.sidebar.error == []


def headlines(at) -> list[str]:
    return [element.value for element in at.main.markdown if element.value.startswith("### ")]


def test_detect_withholds_the_verdict_on_a_chart_and_shows_the_models_answer_only_when_asked(open_page,
                                                                                            guarded_pair, chart_png):
    at = open_page("detect")
    use_pair(at, *guarded_pair)
    assert any("Tumor likely" in line or "No tumor found" in line for line in headlines(at))  # an example passes

    at.radio(key="detect_source").set_value("Upload a scan").run()
    at.file_uploader(key="detect_upload").set_value(("chart.png", chart_png, "image/png")).run()
    assert problems(at) == [] and at.error == []
    shown = headlines(at)
    assert len(shown) == 1 and WITHHELD in shown[0]
    text = markdown_text(at)
    assert "of its pixels are coloured; MRI slices are grey." in text
    assert "Out-of-distribution score **" in text
    assert "Unguarded" not in text and "P(tumor) **" not in text

    at.button(key="detect_show_anyway").click().run()
    assert problems(at) == []
    text = markdown_text(at)
    assert "Unguarded" in text and "on an image they were not made for" in text
    unguarded = [line for line in text.splitlines() if line.startswith("#### ")]
    assert len(unguarded) == 1 and "Unguarded: " in unguarded[0]
    assert "P(tumor) **" in text
    assert len(headlines(at)) == 1 and WITHHELD in headlines(at)[0]  # still no verdict of its own

    at.button(key="detect_hide_anyway").click().run()
    assert "Unguarded" not in markdown_text(at)


def test_batch_marks_images_the_guard_refuses_and_leaves_them_out_of_the_counts(open_page, guarded_pair, chart_png,
                                                                                scan_png):
    at = open_page("batch")
    use_pair(at, *guarded_pair)
    at.file_uploader(key="batch_upload").set_value([("chart.png", chart_png, "image/png"),
                                                    ("scan.png", scan_png, "image/png")]).run()
    assert problems(at) == []
    table = next(frame.value for frame in at.dataframe if "verdict" in frame.value.columns)
    chart = table[table["file"] == "chart.png"].iloc[0]
    assert chart["verdict"] == "not a brain MRI slice" and chart["comparison"] == "" and chart["type"] == ""
    assert table[table["file"] == "scan.png"].iloc[0]["verdict"] in ("tumor", "no tumor")
    counts = {metric.label: metric.value for metric in at.metric}
    assert counts["Not brain MRI"] == "1" and int(counts["Tumor"]) + int(counts["No tumor"]) == 1


def test_model_card_shows_the_guard_the_calibration_the_sources_and_the_split(open_page, guarded_pair):
    at = open_page("model_card")
    use_pair(at, *guarded_pair)
    assert problems(at) == []
    text = markdown_text(at)
    assert "#### Out-of-distribution guard" in text
    assert "**Rule:** accept 100.0% of the validation slices (test fixture)" in text
    assert "**Test slices accepted:** 99.0% (97.5% – 99.6%, n = 400)" in text
    assert "**Non-brain images withheld:** 90.0% (77.0% – 96.0%, n = 40)" in text
    kinds = next(frame.value for frame in at.dataframe if "Kind of image" in frame.value.columns)
    assert list(kinds["Kind of image"]) == ["Photo", "Chart", "Text page"]
    assert list(kinds["Share withheld"]) == ["100.0%", "87.5%", "75.0%"]

    assert "#### Calibration" in text and "**T = 1.732**" in text
    calibration = json.loads(guarded_pair[1].read_text())["calibration"]
    assert (f"**{calibration['test_before']['ece']:.3f}** before, **{calibration['test_after']['ece']:.3f}** after"
            in text)
    titles = [json.loads(chart.proto.spec)["layout"]["title"]["text"] for chart in at.get("plotly_chart")]
    assert sum(title.startswith("Test split, before · ECE") for title in titles) == 1
    assert sum(title.startswith("Test split, after · ECE") for title in titles) == 1

    sources = next(frame.value for frame in at.dataframe if "Source" in frame.value.columns)
    assert list(sources["Source"]) == ["figshare", "br35h"]
    assert list(sources["Recall"]) == ["97.0%", "90.0%"] and list(sources["Specificity"]) == ["n/a", "80.0%"]
    assert "**Split rule:** group-disjoint over the whole set (test fixture); images grouped by near-duplicate " \
           "clusters (5,123 groups)." in text
    assert "**Test images sharing a group with training:** 0" in text
    assert "**In the data set's own split:** 217 of 1,311 official test images share a group" in text
