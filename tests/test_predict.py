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
