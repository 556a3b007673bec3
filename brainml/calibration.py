"""Temperature scaling (Guo et al., 2017, "On calibration of modern neural networks"): one number T, fitted on the
validation split, that divides the logits so a "90%" means right about nine times in ten.

T is baked into the saved network (the ``logits`` layer's weights and bias divided by T), so every path that reads
the model (the cascade, the detector read off the classifier, Grad-CAM, export) gets calibrated probabilities
without knowing about it. Dividing logits by a positive constant changes no decision of the classifier and no
ranking of the detector, so accuracy and ROC AUC stay exactly as they were.
"""

from __future__ import annotations

import numpy as np

from . import metrics

EPSILON = 1e-7


def logits_from_probabilities(probabilities: np.ndarray) -> np.ndarray:
    """(N,) sigmoid or (N, C) softmax outputs -> logits, up to a per-row constant that softmax ignores."""
    clipped = np.clip(np.asarray(probabilities, np.float64), EPSILON, 1 - EPSILON)
    return np.log(clipped / (1 - clipped)) if clipped.ndim == 1 else np.log(clipped)


def calibrated(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities from ``logits / temperature``: (N,) sigmoid or (N, C) softmax."""
    scaled = np.asarray(logits, np.float64) / temperature
    if scaled.ndim == 1:
        return 1 / (1 + np.exp(-scaled))
    scaled = scaled - scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    probabilities = np.clip(calibrated(logits, temperature), EPSILON, 1 - EPSILON)
    labels = np.asarray(labels, np.int64)
    if probabilities.ndim == 1:
        return float(-np.mean(labels * np.log(probabilities) + (1 - labels) * np.log(1 - probabilities)))
    return float(-np.mean(np.log(probabilities[np.arange(len(labels)), labels])))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T in [0.05, 20] that minimises the negative log-likelihood of ``labels`` (searched on log T)."""
    from scipy.optimize import minimize_scalar

    result = minimize_scalar(lambda log_t: negative_log_likelihood(logits, labels, float(np.exp(log_t))),
                             bounds=(np.log(0.05), np.log(20)), method="bounded")
    return float(np.exp(result.x))


def calibration_summary(labels: np.ndarray, probabilities: np.ndarray) -> dict:
    """ECE and reliability bins of a detector's P(tumor) (N,) or a classifier's top class (N, C)."""
    probabilities = np.asarray(probabilities, np.float64)
    if probabilities.ndim == 1:
        result = metrics.calibration(labels, probabilities)
    else:
        result = metrics.calibration(probabilities.argmax(axis=1) == labels, probabilities.max(axis=1))
    return result.to_dict()


def bake_temperature(model, temperature: float) -> None:
    """Divide the ``logits`` layer's kernel and bias by ``temperature`` in place."""
    layer = model.get_layer("logits")
    layer.set_weights([weight / temperature for weight in layer.get_weights()])


def calibrate_bundle(card_path, data, log=print) -> dict:
    """``python -m brainml calibrate``: fit T on the validation part of the card's own split, bake it into the
    network, and store T with the test split's ECE and reliability bins before and after in the card."""
    from .bundle import load_bundle, save_bundle
    from .datasets import discover, label_index, load_images
    from .evaluate import card_splits
    from .predict import model_scores

    bundle = load_bundle(card_path)
    card = bundle.card
    if card.calibration.get("temperature"):
        raise ValueError(f"{card_path} is already calibrated (T = {card.calibration['temperature']:.3f}); calibrate "
                         "the uncalibrated model instead of scaling twice.")
    splits = card_splits(card, discover(data))
    scores, labels = {}, {}
    for name in ("validation", "test"):
        loaded = load_images(splits[name], card.prep_spec)
        labels[name] = np.array([label_index(s.label, card.task, tuple(card.class_names)) for s in loaded.samples])
        scores[name] = model_scores(bundle.model, loaded.inputs)
    temperature = fit_temperature(logits_from_probabilities(scores["validation"]), labels["validation"])
    bake_temperature(bundle.model, temperature)
    after = calibrated(logits_from_probabilities(scores["test"]), temperature)
    card.calibration = {
        "method": "temperature scaling (Guo et al. 2017), fitted on the validation split",
        "temperature": round(temperature, 4),
        "validation_images": len(labels["validation"]),
        "test_images": len(labels["test"]),
        "test_before": calibration_summary(labels["test"], scores["test"]),
        "test_after": calibration_summary(labels["test"], after),
    }
    save_bundle(bundle.model, card, bundle.card_path)
    log(f"T = {temperature:.3f}; test ECE {card.calibration['test_before']['ece']:.4f} -> "
        f"{card.calibration['test_after']['ece']:.4f}")
    return card.calibration
