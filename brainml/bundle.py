"""A model bundle: ``NAME.keras`` plus its card ``NAME.json``, which holds everything the app needs without guessing."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import __version__
from .preprocess import PrepSpec

SCHEMA_VERSION = 1
SYNTHETIC_NOTICE = (
    "Trained on BrainML's synthetic MRI slices only: a demonstration of the method, not a diagnosis. "
    "It has never been validated on patients."
)


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


@dataclass
class ModelBundle:
    model: object  # keras.Model
    card: ModelCard
    card_path: Path

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


def load_bundle(path: str | os.PathLike) -> ModelBundle:
    """Load a model and its card and check they agree.

    Raises:
        BundleError: missing files, a card from a newer format, or a card that does not match the model.
    """
    import keras

    card = read_card(path)
    card_path = card_path_for(path)
    model_path = card_path.with_suffix(".keras")
    if not model_path.is_file():
        raise BundleError(f"The card {card_path} has no model beside it ({model_path.name} is missing).")
    try:
        model = keras.saving.load_model(model_path, compile=False)
    except Exception as error:  # Keras raises many types for a bad file
        raise BundleError(f"Could not load {model_path}: {error}") from error
    check_agreement(model, card, card_path)
    return ModelBundle(model, card, card_path)


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
