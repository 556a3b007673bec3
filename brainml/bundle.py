"""A model bundle: ``NAME.keras`` plus its card ``NAME.json``, which holds everything the app needs without guessing."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import __version__
from .preprocess import PrepSpec

SCHEMA_VERSION = 1
SYNTHETIC_NOTICE = (
    "Trained on BrainML's synthetic MRI slices only: a demonstration of the method, not a diagnosis. "
    "It has never been validated on patients."
)


# How a type classifier's output reads as a detector's: the tumor classes' share of the probability.
VIEW_RULE = "P(tumor) = 1 - P(notumor)"
# What the ONNX import wrote before the card had one shape for a view: "NAME: P(tumor) = 1 - P(notumor), computed as
# ...". Read so that those cards keep running as one network.
_VIEW_SENTENCE = re.compile(
    r"(?P<classifier>[\w.-]+)\s*:\s*P\(tumor\)\s*=\s*1\s*-\s*P\(notumor\)"
    r"(?:\s*,\s*computed as\s+(?P<computed_as>.+?))?\s*"
)


@dataclass(frozen=True)
class DetectorView:
    """A detector that is a type classifier read as P(tumor) = 1 - P(notumor): the classifier's own layers and
    weights, no training of its own (``train --from-classifier`` and the ONNX import make such detectors).

    Kept in the detector's card as ``provenance["derived_from"]``; the cascade then runs the classifier once for
    both the verdict and the type (:func:`brainml.predict.is_view_of`). A detector whose card holds none is a network
    of its own, and the cascade runs both.

    Attributes:
        classifier: the classifier card's ``name``.
        rule: how the classifier's output is read; the cascade knows only :data:`VIEW_RULE`.
        computed_as: how the detector's graph computes the rule, where that is worth telling.
        seconds: how long reading the classifier took (``train --from-classifier``).
        classifier_sha256: the SHA-256 of the classifier's ``.keras`` file the view was read from. While the file
            still has it, the view holds that classifier's weights, known without loading either network.
    """

    classifier: str
    rule: str = VIEW_RULE
    computed_as: str | None = None
    seconds: float | None = None
    classifier_sha256: str | None = None

    def to_dict(self) -> dict:
        return {key: value for key, value in asdict(self).items() if value is not None}

    @classmethod
    def read(cls, derived_from) -> "DetectorView | None":
        """The view a card's ``derived_from`` describes, or None when it describes none.

        Takes the dict :meth:`to_dict` writes and the sentence earlier imports wrote; anything else (another
        sentence, a dict that names no classifier, another rule) is "not a view", never an error.
        """
        if isinstance(derived_from, str):
            sentence = _VIEW_SENTENCE.fullmatch(derived_from.strip())
            return cls(sentence["classifier"], computed_as=sentence["computed_as"]) if sentence else None
        if not isinstance(derived_from, dict):
            return None
        classifier, rule = derived_from.get("classifier"), derived_from.get("rule", VIEW_RULE)
        if not isinstance(classifier, str) or not classifier or rule != VIEW_RULE:
            return None
        computed_as, seconds = derived_from.get("computed_as"), derived_from.get("seconds")
        sha256 = derived_from.get("classifier_sha256")
        return cls(classifier, rule,
                   computed_as if isinstance(computed_as, str) else None,
                   float(seconds) if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) else None,
                   sha256 if isinstance(sha256, str) else None)


class BundleError(ValueError):
    """A model card or model file that cannot be used, with the file named and what to do."""


@dataclass
class ModelCard:
    """What a model is, how to feed it, and how it performed on held-out data.

    ``held_out_labels``/``held_out_scores`` are the test-split labels and the model's scores (P(tumor) for a
    detector, class probabilities for a classifier); the threshold explorer sweeps them.
    """

    name: str
    task: str  # "detect" or "classify"
    class_names: list[str]
    prep: dict
    architecture: str
    gradcam_layer: str
    # LayerCAM keeps its maps sharp on shallower, finer layers than Grad-CAM (Jiang et al. 2021); None: the
    # Grad-CAM layer. ``explain --choose-layercam-layer`` picks it on held-out slices with lesion masks.
    layercam_layer: str | None = None
    threshold: float | None = None
    threshold_rule: str | None = None
    metrics: dict = field(default_factory=dict)
    validation_metrics: dict = field(default_factory=dict)
    held_out_split: str | None = None
    held_out_labels: list[int] = field(default_factory=list)
    held_out_scores: list = field(default_factory=list)
    provenance: dict = field(default_factory=dict)
    history: dict = field(default_factory=dict)
    # {"data": where it was measured, "per_class": N, "table": {method: {class: {pointing_game, energy_in_mask, n}}}}
    localisation: dict = field(default_factory=dict)
    # {"temperature": T, "test_before": {...}, "test_after": {...}}: T is already baked into the network's logits.
    calibration: dict = field(default_factory=dict)
    # {"file": "NAME.guard.npz", "acceptance": ..., "measured": {...}}: the out-of-distribution guard fitted on this
    # model's features (see brainml.guard); empty when the model has none.
    guard: dict = field(default_factory=dict)
    # {"file": "NAME.tflite", "keras_sha256": ..., "quantization": ...}: the LiteRT engine verdicts run on (see
    # brainml.engine); empty when the model has none and runs through Keras.
    engine: dict = field(default_factory=dict)
    trained_on_synthetic: bool = True
    notice: str = SYNTHETIC_NOTICE
    intended_use: str = "Research and teaching: exploring how a CNN finds tumors in 2D MRI slices. Not for diagnosis."
    limitations: list[str] = field(default_factory=list)
    versions: dict = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    @property
    def prep_spec(self) -> PrepSpec:
        return PrepSpec.from_dict(self.prep)

    @property
    def learned_from(self) -> str:
        """What the model learned from, as people read it: "synthetic MRI slices" or "real MRI data"."""
        return "synthetic MRI slices" if self.trained_on_synthetic else "real MRI data"

    @property
    def detector_view(self) -> DetectorView | None:
        """For a detector read off a type classifier, which one and how (see :class:`DetectorView`); else None."""
        if self.task != "detect" or not isinstance(self.provenance, dict):
            return None
        return DetectorView.read(self.provenance.get("derived_from"))

    def viewed_as_detector(self, **details) -> DetectorView:
        """This type classifier read as a detector, for the ``derived_from`` entry of that detector's card.

        Raises:
            ValueError: this card is not a type classifier with a ``notumor`` class.
        """
        if self.task != "classify" or "notumor" not in self.class_names:
            raise ValueError(f"{self.name} is not a type classifier with a 'notumor' class; no detector reads it.")
        return DetectorView(self.name, **details)

    @property
    def has_held_out(self) -> bool:
        return len(self.held_out_labels) > 0 and len(self.held_out_labels) == len(self.held_out_scores)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict, source: str = "the model card") -> "ModelCard":
        version = values.get("schema_version")
        if not isinstance(version, int):
            raise BundleError(f"{source} has no schema_version; it is not a BrainML model card.")
        if version > SCHEMA_VERSION:
            raise BundleError(
                f"{source} uses card format {version}, newer than this BrainML understands ({SCHEMA_VERSION}). "
                "Upgrade BrainML to use this model."
            )
        missing = [name for name in ("name", "task", "class_names", "prep", "architecture", "gradcam_layer") if name not in values]
        if missing:
            raise BundleError(f"{source} lacks {', '.join(missing)}.")
        if values["task"] not in ("detect", "classify"):
            raise BundleError(f"{source} has task {values['task']!r}; expected 'detect' or 'classify'.")
        known = {key: value for key, value in values.items() if key in cls.__dataclass_fields__}
        return cls(**known)


class ModelBundle:
    """A model card and its Keras network.

    Args:
        model: the loaded network, or None to load it from ``card_path`` the first time :attr:`model` is read (a
            cascade that runs a LiteRT engine never needs it, nor TensorFlow).
    """

    def __init__(self, model, card: ModelCard, card_path: str | os.PathLike):
        self._model = model
        self.card = card
        self.card_path = Path(card_path)
        self._sha256: str | None = None

    @property
    def model(self):
        """The Keras network (``keras.Model``), loaded and checked against the card on first use.

        Raises:
            BundleError: the file cannot be loaded or does not match the card.
        """
        if self._model is None:
            self._model = _load_keras(self.card, self.card_path)
        return self._model

    @property
    def keras_sha256(self) -> str:
        """The SHA-256 of the ``.keras`` file, read once."""
        if self._sha256 is None:
            self._sha256 = file_sha256(self.card_path.with_suffix(".keras"))
        return self._sha256

    @property
    def label(self) -> str:
        kind = "synthetic-data" if self.card.trained_on_synthetic else "real-data"
        return f"{self.card.name} ({self.card.architecture}, {kind})"


def card_path_for(path: str | os.PathLike) -> Path:
    """Accept ``models/detector``, ``models/detector.json`` or ``models/detector.keras``; return the card's path."""
    path = Path(path)
    return path.with_suffix(".json") if path.suffix in (".json", ".keras", "") else Path(f"{path}.json")


def save_bundle(model, card: ModelCard, path: str | os.PathLike) -> Path:
    """Write ``PATH.keras`` and ``PATH.json``; returns the card's path."""
    import keras

    card_path = card_path_for(path)
    card_path.parent.mkdir(parents=True, exist_ok=True)
    card.versions = {"brainml": __version__, "keras": keras.__version__, **card.versions}
    # An uncompiled view of the same layers: the file then carries no optimizer state (a third of its size).
    keras.Model(model.input, model.output, name=model.name).save(card_path.with_suffix(".keras"))
    write_card(card, card_path)
    return card_path


def write_card(card: ModelCard, card_path: str | os.PathLike) -> None:
    Path(card_path).write_text(json.dumps(card.to_dict(), indent=1, allow_nan=False) + "\n")


def read_card(path: str | os.PathLike) -> ModelCard:
    card_path = card_path_for(path)
    if not card_path.is_file():
        raise BundleError(f"No model card at {card_path}. Train a model with `python -m brainml train` first.")
    try:
        values = json.loads(card_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BundleError(f"{card_path} is not valid JSON ({error}).") from error
    return ModelCard.from_dict(values, source=str(card_path))


def load_bundle(path: str | os.PathLike, lazy: bool = False) -> ModelBundle:
    """Load a model and its card and check they agree.

    Args:
        lazy: read the card now and the network when it is first used (see :class:`ModelBundle`).
    Raises:
        BundleError: missing files, a card from a newer format, or a card that does not match the model (with
            ``lazy``, the last when the network is first used).
    """
    card = read_card(path)
    card_path = card_path_for(path)
    model_path = card_path.with_suffix(".keras")
    if not model_path.is_file():
        raise BundleError(f"The card {card_path} has no model beside it ({model_path.name} is missing).")
    return ModelBundle(None if lazy else _load_keras(card, card_path), card, card_path)


def file_sha256(path: str | os.PathLike) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _load_keras(card: ModelCard, card_path: Path):
    import keras

    model_path = card_path.with_suffix(".keras")
    try:
        model = keras.saving.load_model(model_path, compile=False)
    except Exception as error:  # Keras raises many types for a bad file
        raise BundleError(f"Could not load {model_path}: {error}") from error
    check_agreement(model, card, card_path)
    return model


def check_agreement(model, card: ModelCard, card_path: Path) -> None:
    expected_input = tuple(card.prep_spec.input_shape)
    actual_input = tuple(model.input_shape[1:])
    if actual_input != expected_input:
        raise BundleError(
            f"{card_path} says the model takes {expected_input} but {card_path.with_suffix('.keras').name} takes "
            f"{actual_input}. The card and the model do not belong together."
        )
    outputs = model.output_shape[-1]
    expected_outputs = 1 if card.task == "detect" else len(card.class_names)
    if outputs != expected_outputs:
        raise BundleError(
            f"{card_path} describes a {card.task} model with {expected_outputs} output(s), but the model has {outputs}."
        )
    layer_names = {layer.name for layer in model.layers}
    for kind, name in (("Grad-CAM", card.gradcam_layer), ("LayerCAM", card.layercam_layer or card.gradcam_layer)):
        if name not in layer_names:
            raise BundleError(f"{card_path} names {kind} layer {name!r}, which the model does not have.")
