"""The LiteRT engine verdicts run on: built from a bundle, the same answers as Keras, refused once the model file
changes, and a verdict without TensorFlow."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from brainml.bundle import load_bundle
from brainml.examples import EXAMPLES, example_case
from brainml.predict import Cascade, is_view_of

ROOT = Path(__file__).resolve().parents[1]
SYNTHETIC = ROOT / "models" / "synthetic"


@pytest.fixture(scope="module")
def copied_pair(tmp_path_factory) -> Path:
    """The synthetic pair copied without its engines, so tests can build, break and remove them."""
    folder = tmp_path_factory.mktemp("pair")
    for name in ("detector", "classifier"):
        shutil.copy(SYNTHETIC / f"{name}.keras", folder / f"{name}.keras")
        card = json.loads((SYNTHETIC / f"{name}.json").read_text())
        card["engine"] = {}
        (folder / f"{name}.json").write_text(json.dumps(card))
    return folder


def test_an_engine_gives_the_verdicts_keras_gives(copied_pair):
    from brainml.engine import build_engine

    keras_cascade = Cascade.from_paths(copied_pair / "detector.json", copied_pair / "classifier.json")
    assert keras_cascade.engines == {"detector": "Keras", "classifier": "Keras"}
    slices = [example_case(example.key).image for example in EXAMPLES]
    expected = keras_cascade.run(slices, threshold=0.0)
    for name in ("detector", "classifier"):
        path = build_engine(load_bundle(copied_pair / f"{name}.json"))
        assert path == copied_pair / f"{name}.tflite" and path.stat().st_size > 100_000
        record = json.loads((copied_pair / f"{name}.json").read_text())["engine"]
        assert record["file"] == f"{name}.tflite" and record["quantization"] == "none" and len(record["keras_sha256"]) == 64
    engine_cascade = Cascade.from_paths(copied_pair / "detector.json", copied_pair / "classifier.json")
    assert engine_cascade.engines == {"detector": "LiteRT", "classifier": "LiteRT"}
    answers = engine_cascade.run(slices, threshold=0.0)
    np.testing.assert_allclose([a.tumor_probability for a in answers], [e.tumor_probability for e in expected], atol=1e-5)
    for answer, reference in zip(answers, expected):
        assert answer.type == reference.type
        assert answer.type_probabilities == pytest.approx(reference.type_probabilities, abs=1e-5)


def test_an_engine_built_from_another_model_file_is_not_used(copied_pair, tmp_path):
    from brainml.engine import build_engine, engine_for

    for suffix in (".json", ".keras"):
        shutil.copy(copied_pair / f"classifier{suffix}", tmp_path / f"classifier{suffix}")
    build_engine(load_bundle(tmp_path / "classifier.json"))
    assert engine_for(load_bundle(tmp_path / "classifier.json", lazy=True)) is not None
    # The model is replaced (here by the detector's file) and its card kept: the engine no longer describes it.
    shutil.copy(copied_pair / "detector.keras", tmp_path / "classifier.keras")
    assert engine_for(load_bundle(tmp_path / "classifier.json", lazy=True)) is None
    (tmp_path / "classifier.tflite").unlink()
    shutil.copy(copied_pair / "classifier.keras", tmp_path / "classifier.keras")
    assert engine_for(load_bundle(tmp_path / "classifier.json", lazy=True)) is None  # named, but missing


def test_a_verdict_on_the_default_pair_loads_no_tensorflow():
    """The engines answer on their own: TensorFlow loads only when a heatmap (or a model without an engine) needs it."""
    script = ("import sys\nfrom brainml.io import read_scan\nfrom brainml.predict import Cascade\n"
              "cascade = Cascade.from_paths('models/detector.json', 'models/classifier.json')\n"
              "diagnosis = cascade.run([read_scan('brainml/assets/examples/real-glioma-1.jpg').image])[0]\n"
              "print(cascade.engines['classifier'], diagnosis.tumor is not None, 'tensorflow' in sys.modules)")
    completed = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.split() == ["LiteRT", "True", "False"]


def test_a_view_recorded_against_another_classifier_file_is_not_taken_for_one_network(tmp_path):
    for name in ("detector", "classifier"):
        for suffix in (".json", ".keras"):
            shutil.copy(ROOT / "models" / f"{name}{suffix}", tmp_path / f"{name}{suffix}")
    detector = load_bundle(tmp_path / "detector.json", lazy=True)
    classifier = load_bundle(tmp_path / "classifier.json", lazy=True)
    assert detector.card.detector_view.classifier_sha256 == classifier.keras_sha256
    assert is_view_of(detector, classifier) and detector._model is None  # known from the files alone
    card = json.loads((tmp_path / "detector.json").read_text())
    card["provenance"]["derived_from"]["classifier_sha256"] = "0" * 64
    (tmp_path / "detector.json").write_text(json.dumps(card))
    assert not is_view_of(load_bundle(tmp_path / "detector.json", lazy=True), classifier)


def test_evaluate_with_the_engine_needs_one(copied_pair, tmp_path):
    from brainml.evaluate import evaluate_bundle

    for suffix in (".json", ".keras"):
        shutil.copy(copied_pair / f"classifier{suffix}", tmp_path / f"classifier{suffix}")
    raw = json.loads((tmp_path / "classifier.json").read_text())
    raw["engine"] = {}
    (tmp_path / "classifier.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="has no LiteRT engine built from its current .keras file"):
        evaluate_bundle(load_bundle(tmp_path / "classifier.json"), tmp_path, "held-out", engine="litert")
