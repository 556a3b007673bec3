"""The committed default pair: real-data models that the app, the CLI and the bench load by default."""

import json
import subprocess
import sys

import numpy as np
import pytest

from brainml import nonbrain
from brainml.examples import REAL_EXAMPLES
from brainml.io import read_scan
from brainml.labels import CLASS_NAMES
from brainml.predict import Cascade
from brainml.preprocess import PrepSpec


@pytest.fixture(scope="module")
def cascade():
    return Cascade.from_paths("models/detector.json", "models/classifier.json")


def test_the_default_pair_is_the_real_data_pair_the_app_expects(cascade):
    detector, classifier = cascade.detector, cascade.classifier
    assert classifier.card.class_names == list(CLASS_NAMES)
    assert detector.card.class_names == ["notumor", "tumor"] and 0 < detector.card.threshold < 1
    assert classifier.card.prep_spec == detector.card.prep_spec == PrepSpec(size=128, channels=1)
    for card in (detector.card, classifier.card):
        assert not card.trained_on_synthetic
        assert card.notice.startswith("Learned from ") and "not measured" in card.notice
        split = card.provenance["split"]
        assert split["mode"] == "groups" and split["test_images_sharing_a_group_with_train"] == 0
        assert card.metrics["split"] == "held-out" and len(card.held_out_labels) == card.metrics["n"]
    assert cascade._one_network  # the detector is the classifier read as 1 - P(notumor)
    assert classifier.card.calibration["temperature"] > 0
    assert classifier.card.calibration["test_after"]["ece"] < classifier.card.calibration["test_before"]["ece"]


def test_each_model_file_is_small_enough_to_host():
    from pathlib import Path

    for name in ("detector", "classifier"):
        assert Path(f"models/{name}.keras").stat().st_size <= 10 * 2**20


def test_the_guard_accepts_every_real_example_and_withholds_the_non_brain_corpus_as_the_card_says(cascade):
    scans = [read_scan(example.path) for example in REAL_EXAMPLES]
    results = cascade.run([scan.image for scan in scans],
                          colour_saturations=[scan.metadata.get("colour_saturation", 0.0) for scan in scans])
    assert all(result.brain_mri for result in results)
    card = cascade.classifier.card.guard
    corpus = nonbrain.corpus(per_kind=8)
    greys = [image.image if image.image.ndim == 2 else image.image @ np.array([0.299, 0.587, 0.114], np.float32)
             for image in corpus]
    from brainml.io.images import colour_saturation

    saturations = [colour_saturation((image.image * 255).astype(np.uint8)) if image.image.ndim == 3 else 0.0
                   for image in corpus]
    withheld = [not result.brain_mri for result in cascade.run(greys, colour_saturations=saturations)]
    assert np.mean(withheld) == pytest.approx(card["non_brain_withheld"]["rate"], abs=1e-9)
    by_kind = {kind: sum(w for w, image in zip(withheld, corpus) if image.kind == kind) for kind in card["non_brain_withheld"]["by_kind"]}
    assert by_kind == {kind: row["withheld"] for kind, row in card["non_brain_withheld"]["by_kind"].items()}


def test_a_real_brain_as_dicom_and_as_nifti_passes_the_guard(tmp_path):
    """A real slice written as DICOM, and the Colin27 head (a real brain) as a NIfTI volume, through predict."""
    import nibabel
    from test_io import dicom_bytes

    slice_ = read_scan(REAL_EXAMPLES[0].path).image
    (tmp_path / "slice.dcm").write_bytes(dicom_bytes((slice_ * 4095).astype(np.uint16)))
    head = np.load("brainml/assets/colin27_head.npz")["t1"]
    nibabel.save(nibabel.Nifti1Image(head.astype(np.int16), np.eye(4)), tmp_path / "head.nii.gz")
    output = subprocess.run([sys.executable, "-m", "brainml", "predict", "--json", str(tmp_path / "slice.dcm"),
                             str(tmp_path / "head.nii.gz")], capture_output=True, text=True, check=True).stdout
    records = [json.loads(line) for line in output.splitlines()]
    assert [record["ok"] for record in records] == [True, True]
    assert [record["brain_mri"] for record in records] == [True, True]
    assert all(record["tumor"] in (True, False) and 0 <= record["ood_score"] <= 1 for record in records)
