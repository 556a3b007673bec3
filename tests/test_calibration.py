"""Temperature scaling: fitted on validation scores, baked into the network, decisions unchanged."""

import numpy as np

from brainml import calibration


def overconfident(n, temperature, seed, classes=4):
    """Logits whose labels were drawn from softmax(logits / temperature): the right T is ``temperature``."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 4, (n, classes))
    probabilities = calibration.calibrated(logits, temperature)
    labels = np.array([rng.choice(classes, p=p) for p in probabilities])
    return logits, labels


def test_fit_temperature_recovers_the_temperature_that_made_the_labels():
    logits, labels = overconfident(4000, 2.5, seed=0)
    assert abs(calibration.fit_temperature(logits, labels) - 2.5) < 0.25


def test_temperature_lowers_the_expected_calibration_error_on_other_data():
    logits, labels = overconfident(3000, 3.0, seed=1)
    temperature = calibration.fit_temperature(logits, labels)
    test_logits, test_labels = overconfident(3000, 3.0, seed=2)
    before = calibration.calibration_summary(test_labels, calibration.calibrated(test_logits, 1.0))["ece"]
    after = calibration.calibration_summary(test_labels, calibration.calibrated(test_logits, temperature))["ece"]
    assert after < before / 2


def test_binary_scores_are_calibrated_the_same_way():
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 5, 4000)
    labels = (rng.random(4000) < calibration.calibrated(logits, 2.0)).astype(int)
    recovered = calibration.logits_from_probabilities(calibration.calibrated(logits, 1.0))
    assert abs(calibration.fit_temperature(recovered, labels) - 2.0) < 0.3


def test_baked_temperature_gives_the_calibrated_probabilities_and_the_same_decisions():
    from brainml.models import build_model
    from brainml.predict import model_scores

    model = build_model("compact", (32, 32, 1), 4)
    layer = model.get_layer("logits")
    layer.set_weights([np.random.default_rng(0).normal(0, 0.5, w.shape) for w in layer.get_weights()])
    inputs = np.random.default_rng(1).random((16, 32, 32, 1)).astype(np.float32)
    before = model_scores(model, inputs)
    calibration.bake_temperature(model, 2.0)
    after = model_scores(model, inputs)
    expected = calibration.calibrated(calibration.logits_from_probabilities(before), 2.0)
    np.testing.assert_allclose(after, expected, atol=1e-4)
    assert np.array_equal(after.argmax(axis=1), before.argmax(axis=1))
