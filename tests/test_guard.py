"""The out-of-distribution guard: fitted on brain slices, it refuses what is not one, and says why."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from brainml import guard, nonbrain
from brainml.guard import OutOfDistributionGuard, fit_guard


def clusters(n, seed, shift=0.0):
    rng = np.random.default_rng(seed)
    return {"layer_a": rng.normal(shift, 1.0, (n, 6)), "layer_b": rng.normal(0, 1.0, (n, 4)) + shift * 0.1}


def test_threshold_accepts_the_stated_share_of_held_out_slices_and_refuses_far_ones():
    fitted = fit_guard(clusters(2000, 0), clusters(1000, 1), acceptance=0.99)
    accepted = np.mean([r.brain_mri for r in fitted.check(clusters(4000, 2))])
    assert 0.975 < accepted < 0.998  # near the 99% chosen on other held-out points
    far = fitted.check(clusters(50, 3, shift=6.0))
    assert not any(r.brain_mri for r in far)
    assert all(r.ood_score > 1 and "farther from the MRI slices" in r.reason for r in far)


def test_a_coloured_source_is_refused_whatever_its_features():
    fitted = fit_guard(clusters(500, 0), clusters(500, 1))
    features = clusters(2, 2)
    results = fitted.check(features, colour_saturations=[0.0, 0.6])
    assert results[1].brain_mri is False and "60% of its pixels are coloured" in results[1].reason
    assert results[0].reason is None or results[0].brain_mri is False  # the grey one is judged by its features


def test_saved_guard_scores_the_same(tmp_path):
    fitted = fit_guard(clusters(500, 0), clusters(500, 1))
    fitted.save(tmp_path / "g.guard.npz")
    loaded = OutOfDistributionGuard.load(tmp_path / "g.guard.npz")
    probe = clusters(20, 5, shift=1.0)
    np.testing.assert_allclose(loaded.scores(probe), fitted.scores(probe))
    assert (loaded.threshold, loaded.acceptance) == (fitted.threshold, fitted.acceptance)


def test_image_statistics_tell_a_page_of_text_from_a_head():
    from brainml.examples import EXAMPLES, example_case
    from brainml.preprocess import PrepSpec, prepare_batch

    text = [image.image for image in nonbrain.corpus(per_kind=2) if image.kind == "text"]
    text = [t if t.ndim == 2 else t.mean(axis=-1) for t in text]
    heads = [example_case(example.key).image for example in EXAMPLES[:2]]
    stats = guard.image_statistics(prepare_batch(heads + text, PrepSpec(size=64))[0])
    symmetry = stats[:, 3]
    assert stats.shape == (len(heads) + len(text), 8)
    assert symmetry[:2].min() > symmetry[2:].max()  # heads are nearly mirror-symmetric, text is not


def test_non_brain_corpus_is_varied_and_deterministic():
    first, second = nonbrain.corpus(per_kind=3, seed=0), nonbrain.corpus(per_kind=3, seed=0)
    kinds = {image.kind for image in first}
    assert {"photo", "text", "chart", "noise", "circuit board", "chest radiograph", "knee MRI"} <= kinds
    assert all(np.array_equal(a.image, b.image) for a, b in zip(first, second))
    assert any(image.image.ndim == 3 for image in first) and any(image.image.ndim == 2 for image in first)


@pytest.fixture(scope="module")
def guarded_models(tmp_path_factory):
    """The synthetic pair, copied, with a guard fitted on synthetic brain slices (made by the project's generator)."""
    from brainml import synth
    from brainml.bundle import load_bundle, write_card
    from brainml.preprocess import prepare_batch

    folder = tmp_path_factory.mktemp("guarded")
    for name in ("detector", "classifier"):
        for suffix in (".json", ".keras"):
            shutil.copy(f"models/synthetic/{name}{suffix}", folder / f"{name}{suffix}")
    classifier = load_bundle(folder / "classifier.json")
    rng = np.random.default_rng(0)
    slices = [synth.generate_case(rng, ("glioma", "notumor")[i % 2]).image for i in range(160)]
    inputs = prepare_batch(slices, classifier.card.prep_spec)[0]
    features = guard.slice_features(classifier.model, inputs)[1]
    fitted = fit_guard({k: v[:120] for k, v in features.items()}, {k: v[120:] for k, v in features.items()}, 0.99)
    fitted.save(guard.guard_file(folder / "classifier.json"))
    classifier.card.guard = {"file": guard.guard_file(folder / "classifier.json").name, "acceptance": 0.99}
    write_card(classifier.card, folder / "classifier.json")
    return folder


def predict_json(folder, *files, extra=()):
    output = subprocess.run(
        [sys.executable, "-m", "brainml", "predict", "--json", "--detector", str(folder / "detector.json"),
         "--classifier", str(folder / "classifier.json"), *extra, *map(str, files)],
        capture_output=True, text=True, check=True).stdout
    return [json.loads(line) for line in output.splitlines()]


def test_predict_json_withholds_a_verdict_for_a_photo_and_gives_one_for_a_brain_slice(guarded_models, tmp_path):
    import matplotlib.cbook as cbook
    from PIL import Image

    from brainml import synth

    brain = synth.generate_case(np.random.default_rng(99), "glioma").image
    Image.fromarray((brain * 255).astype(np.uint8)).save(tmp_path / "brain.png")
    with cbook.get_sample_data("grace_hopper.jpg") as handle:
        (tmp_path / "photo.jpg").write_bytes(handle.read())
    brain_record, photo_record = predict_json(guarded_models, tmp_path / "brain.png", tmp_path / "photo.jpg")
    assert brain_record["brain_mri"] is True and brain_record["tumor"] in (True, False)
    assert brain_record["ood_score"] <= 1.0
    assert photo_record["brain_mri"] is False
    assert photo_record["tumor"] is None and photo_record["type"] is None
    assert photo_record["note"].startswith("This does not look like a brain MRI slice; no verdict.")
    assert photo_record["ood_score"] > 1.0
    # --no-guard answers anyway, and says nothing about the guard.
    (unguarded,) = predict_json(guarded_models, tmp_path / "photo.jpg", extra=("--no-guard",))
    assert unguarded["tumor"] in (True, False) and unguarded["brain_mri"] is None


def test_withheld_diagnosis_keeps_the_models_answer_at_any_threshold(guarded_models):
    from brainml.predict import Cascade

    cascade = Cascade.from_paths(guarded_models / "detector.json", guarded_models / "classifier.json")
    noise = np.random.default_rng(0).random((128, 128)).astype(np.float32)
    (diagnosis,) = cascade.run([noise], threshold=0.0)
    assert diagnosis.withheld and diagnosis.tumor is None
    assert diagnosis.models_answer.tumor is True  # at threshold 0 the models call everything a tumor
    moved = diagnosis.at(1.0)
    assert moved.withheld and moved.tumor is None and moved.models_answer.threshold == 1.0
    assert "models_answer" not in diagnosis.to_dict() and diagnosis.to_dict()["brain_mri"] is False
