"""Tests for brainml.predict: a diagnosis re-read at another threshold without running a model again."""

import pytest

from brainml.predict import Diagnosis

PROBABILITIES = {"glioma": 0.1, "meningioma": 0.7, "notumor": 0.15, "pituitary": 0.05}
MODELS = {"detector": "detector (compact, synthetic-data)", "classifier": "classifier (compact, synthetic-data)"}


def first_pass(probability: float = 0.8, note: str | None = None) -> Diagnosis:
    """A diagnosis as the cascade makes it at threshold 0.0: always tumor, always with a type."""
    return Diagnosis(probability, 0.0, True, "meningioma", dict(PROBABILITIES), dict(MODELS), note)


def test_at_a_threshold_below_keeps_the_type():
    result = first_pass(0.8).at(0.5)
    assert (result.tumor, result.type, result.threshold) == (True, "meningioma", 0.5)


def test_at_a_threshold_above_drops_the_type_and_the_note():
    result = first_pass(0.8, note="the models disagree").at(0.9)
    assert (result.tumor, result.type, result.note) == (False, None, None)
    assert result.type_probabilities == PROBABILITIES  # still there, for the chart
    assert result.tumor_probability == 0.8


def test_at_counts_a_probability_equal_to_the_threshold_as_tumor():
    assert first_pass(0.5).at(0.5).tumor


def test_at_refuses_a_no_tumor_diagnosis_it_cannot_complete():
    cleared = Diagnosis(0.3, 0.5, False, None, dict(PROBABILITIES), dict(MODELS))
    with pytest.raises(ValueError, match="threshold=0.0"):
        cleared.at(0.2)


def test_a_detector_read_off_the_classifier_runs_one_network_with_the_same_scores(monkeypatch):
    """The default models: the detector is the classifier's P(tumor) = 1 - P(notumor), so the cascade runs once."""
    import numpy as np

    from brainml import predict
    from brainml.bundle import load_bundle
    from brainml.examples import EXAMPLES, example_case

    detector, classifier = load_bundle("models/synthetic/detector.json"), load_bundle("models/synthetic/classifier.json")
    slices = [example_case(example.key).image for example in EXAMPLES]
    inputs, _ = predict.prepare_batch(slices, detector.card.prep_spec)
    own_scores = predict.model_scores(detector.model, inputs)
    calls = []
    counting = predict.network_outputs
    monkeypatch.setattr(predict, "network_outputs",
                        lambda bundle, *args, **kw: calls.append(bundle) or counting(bundle, *args, **kw))
    cascade = predict.Cascade(detector, classifier)
    results = cascade.run(slices)
    assert calls == [classifier]
    np.testing.assert_allclose([r.tumor_probability for r in results], own_scores, atol=1e-5)
    # Another classifier (here: one whose weights were changed) is not taken for the detector's own.
    other = load_bundle("models/synthetic/classifier.json")
    layer = other.model.get_layer("logits")
    layer.set_weights([weight + 1.0 for weight in layer.get_weights()])
    assert predict.is_view_of(detector, classifier) and not predict.is_view_of(detector, other)


def test_a_diagnosis_carries_the_input_the_detector_saw_and_a_heatmap_reuses_it():
    import numpy as np

    from brainml.bundle import load_bundle
    from brainml.examples import example_case
    from brainml.explain.core import heatmap
    from brainml.predict import Cascade
    from brainml.preprocess import prepare

    detector, classifier = load_bundle("models/synthetic/detector.json"), load_bundle("models/synthetic/classifier.json")
    image = example_case("glioma").image
    diagnosis = Cascade(detector, classifier).run([image], threshold=0.0)[0]
    tensor, box = prepare(image, detector.card.prep_spec)
    np.testing.assert_array_equal(diagnosis.model_input, tensor)
    assert diagnosis.crop_box == box
    assert "model_input" not in diagnosis.to_dict() and "crop_box" not in diagnosis.to_dict()
    reused = heatmap(detector, image, "gradcam", prepared=(diagnosis.model_input, diagnosis.crop_box))
    fresh = heatmap(detector, image, "gradcam")
    np.testing.assert_allclose(reused.map, fresh.map, atol=1e-6)
    assert reused.crop_box == fresh.crop_box
