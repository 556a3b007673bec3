"""The detector -> classifier cascade and its result, :class:`Diagnosis`."""

from __future__ import annotations

import weakref
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from .bundle import BundleError, ModelBundle, load_bundle
from .engine import SCORES, engine_for
from .guard import IMAGE_STATISTICS, GuardResult, OutOfDistributionGuard, guard_file, image_statistics, slice_features
from .preprocess import CropBox, prepare_batch

_COMPILED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def compiled_call(model):
    """One traced inference function per model. ``model.predict`` per image costs ~50 ms of set-up each call;
    a cached ``tf.function`` with a batch-agnostic signature costs about a millisecond."""
    import tensorflow as tf

    function = _COMPILED.get(model)
    if function is None:
        signature = [tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)]
        function = tf.function(lambda batch: model(batch, training=False), input_signature=signature, reduce_retracing=True)
        _COMPILED[model] = function
    return function


def model_scores(model, inputs: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Run ``model`` on (N, H, W, C) inputs in batches.

    Returns:
        (N,) P(positive) for a one-output detector, (N, C) class probabilities for a classifier.
    """
    call = compiled_call(model)
    outputs = [np.asarray(call(np.ascontiguousarray(inputs[start:start + batch_size], np.float32)))
               for start in range(0, len(inputs), batch_size)]
    if not outputs:
        width = model.output_shape[-1]
        return np.zeros((0,) if width == 1 else (0, width), np.float32)
    scores = np.concatenate(outputs).astype(np.float64)
    return scores[:, 0] if scores.shape[1] == 1 else scores


def network_outputs(bundle: ModelBundle, inputs: np.ndarray, with_features: bool = False):
    """A bundle's outputs on prepared ``inputs`` (as :func:`model_scores` returns them) and, ``with_features``, the
    guard's features; through its LiteRT engine when it has a valid one, else through Keras.

    Returns:
        (scores, features or None).
    """
    engine = engine_for(bundle)
    if engine is None:
        if with_features:
            return slice_features(bundle.model, inputs, batch_size=32)
        return model_scores(bundle.model, inputs, batch_size=32), None
    outputs = engine.run(inputs)
    scores = outputs.pop(SCORES)
    scores = scores[:, 0] if scores.shape[1] == 1 else scores
    return scores, ({**outputs, IMAGE_STATISTICS: image_statistics(inputs).astype(np.float64)} if with_features else None)


@dataclass
class Diagnosis:
    """The cascade's answer for one slice.

    ``type`` is set only when the verdict is tumor; ``type_probabilities`` are computed for every slice so the
    app can show them. ``model_input`` is the slice as the detector saw it and ``crop_box`` where that came from:
    a heatmap of the same slice reuses both instead of preparing it again (neither is part of the JSON).

    When the out-of-distribution guard finds the slice unlike the brain MRI the models learned from,
    ``brain_mri`` is False, ``tumor`` and ``type`` are None and ``note`` says why; ``models_answer`` still holds what
    the models would have said, for a person who asks to see it (not part of the JSON). ``brain_mri`` and
    ``ood_score`` are None when the models have no guard or it was turned off.
    """

    tumor_probability: float
    threshold: float
    tumor: bool | None
    type: str | None
    type_probabilities: dict[str, float]
    models: dict[str, str]
    note: str | None = None
    brain_mri: bool | None = None
    ood_score: float | None = None
    crop_box: CropBox | None = field(default=None, repr=False)
    model_input: np.ndarray | None = field(default=None, repr=False)
    models_answer: "Diagnosis | None" = field(default=None, repr=False)

    @property
    def withheld(self) -> bool:
        """The guard refused this slice: no verdict."""
        return self.brain_mri is False and self.models_answer is not None

    def at(self, threshold: float) -> "Diagnosis":
        """The same slice's diagnosis at another threshold, without running a model again.

        The cascade names a type only when its verdict is tumor, so call it on a diagnosis made at threshold 0.0
        (every slice is then "tumor" and carries its type and note); moving the threshold afterwards only takes
        them away.

        Raises:
            ValueError: this diagnosis was made at a higher threshold with a "no tumor" verdict, so its type is
                unknown.
        """
        if self.withheld:
            return replace(self, threshold=float(threshold), models_answer=self.models_answer.at(threshold))
        tumor = self.tumor_probability >= threshold
        if tumor and not self.tumor and self.type_probabilities:
            raise ValueError("Diagnosis.at needs a diagnosis made at a threshold at or below the new one "
                             f"({self.threshold:.4f} > {threshold:.4f}); run the cascade with threshold=0.0.")
        return replace(self, threshold=float(threshold), tumor=bool(tumor), type=self.type if tumor else None,
                       note=self.note if tumor else None)

    def to_dict(self) -> dict:
        values = asdict(self)
        values.pop("crop_box")
        values.pop("model_input")
        values.pop("models_answer")
        return values


class Cascade:
    """Detector first (tuned for recall), then the type classifier.

    Args:
        detector: a "detect" bundle; its card's threshold is the default operating point.
        classifier: a "classify" bundle, or None for a detector-only cascade.
    """

    def __init__(self, detector: ModelBundle, classifier: ModelBundle | None = None):
        if detector.card.task != "detect":
            raise ValueError(f"{detector.card_path} is a {detector.card.task} model, not a detector.")
        if classifier is not None and classifier.card.task != "classify":
            raise ValueError(f"{classifier.card_path} is a {classifier.card.task} model, not a classifier.")
        self.detector = detector
        self.classifier = classifier
        # A detector read off this very classifier is the same network: run it once and take 1 - P(notumor).
        self._one_network = classifier is not None and is_view_of(detector, classifier)

    @classmethod
    def from_paths(cls, detector_path, classifier_path=None) -> "Cascade":
        """The cascade of two bundles on disk; their Keras networks load only if something needs them (a network
        without an engine, or a heatmap)."""
        return cls(load_bundle(detector_path, lazy=True),
                   load_bundle(classifier_path, lazy=True) if classifier_path else None)

    @property
    def default_threshold(self) -> float:
        threshold = self.detector.card.threshold
        return 0.5 if threshold is None else float(threshold)

    @property
    def model_labels(self) -> dict[str, str]:
        labels = {"detector": self.detector.label}
        if self.classifier is not None:
            labels["classifier"] = self.classifier.label
        return labels

    @property
    def engines(self) -> dict[str, str]:
        """Which engine runs each network of the cascade: "LiteRT" or "Keras" (see :mod:`brainml.engine`)."""
        return {name: "LiteRT" if engine_for(bundle) is not None else "Keras"
                for name, bundle in (("detector", self.detector), ("classifier", self.classifier)) if bundle is not None}

    @property
    def guarded_bundle(self) -> ModelBundle | None:
        """The bundle whose features the out-of-distribution guard was fitted on (the classifier's, else the
        detector's), or None when neither has a guard."""
        for bundle in (self.classifier, self.detector):
            if bundle is not None and bundle.card.guard.get("file"):
                return bundle
        return None

    def run(self, slices: list[np.ndarray], threshold: float | None = None,
            colour_saturations: list[float] | None = None, guard: bool = True) -> list[Diagnosis]:
        """Diagnose each 2D slice (values in [0, 1]) at ``threshold`` (default: the detector card's).

        Args:
            colour_saturations: per slice, the share of clearly coloured pixels in its source
                (``Scan.metadata["colour_saturation"]``); MRI is grey. None: grey sources.
            guard: check each slice against the out-of-distribution guard first (when the models have one).
        """
        threshold = self.default_threshold if threshold is None else float(threshold)
        if not slices:
            return []
        detector_inputs, boxes = prepare_batch(slices, self.detector.card.prep_spec)
        guarded = self.guarded_bundle if guard else None
        outputs, checks = {}, [None] * len(slices)
        for bundle in self._bundles_to_run():
            spec = bundle.card.prep_spec
            inputs = detector_inputs if spec == self.detector.card.prep_spec else prepare_batch(slices, spec)[0]
            outputs[bundle.card.task], features = network_outputs(bundle, inputs, with_features=bundle is guarded)
            if bundle is guarded:
                checks = load_guard(bundle).check(features, colour_saturations)
        type_probabilities = outputs.get("classify")
        if self._one_network:
            tumor_probabilities = 1.0 - type_probabilities[:, self.classifier.card.class_names.index("notumor")]
        else:
            tumor_probabilities = outputs["detect"]
        return [
            self._diagnosis(float(tumor_probabilities[i]), None if type_probabilities is None else type_probabilities[i],
                            threshold, boxes[i], detector_inputs[i], checks[i])
            for i in range(len(slices))
        ]

    def _bundles_to_run(self) -> list[ModelBundle]:
        if self._one_network:
            return [self.classifier]
        return [self.detector] + ([self.classifier] if self.classifier is not None else [])

    def _diagnosis(self, tumor_probability, class_probabilities, threshold, box, model_input,
                   check: GuardResult | None = None) -> Diagnosis:
        answer = self._models_answer(tumor_probability, class_probabilities, threshold, box, model_input)
        if check is None:
            return answer
        if check.brain_mri:
            return replace(answer, brain_mri=True, ood_score=check.ood_score)
        return replace(answer, tumor=None, type=None, brain_mri=False, ood_score=check.ood_score,
                       note=f"This does not look like a brain MRI slice; no verdict. {check.reason}",
                       models_answer=replace(answer, brain_mri=False, ood_score=check.ood_score))

    def _models_answer(self, tumor_probability, class_probabilities, threshold, box, model_input) -> Diagnosis:
        tumor = tumor_probability >= threshold
        probabilities, tumor_type, note = {}, None, None
        if class_probabilities is not None:
            names = self.classifier.card.class_names
            probabilities = {name: float(p) for name, p in zip(names, class_probabilities)}
            tumor_types = {name: p for name, p in probabilities.items() if name != "notumor"}
            if tumor and tumor_types:
                tumor_type = max(tumor_types, key=tumor_types.get)
                if max(probabilities, key=probabilities.get) == "notumor":
                    note = ("The type classifier's most likely class is 'no tumor'; the type shown is the most likely "
                            "tumor type, and the two models disagree on this slice.")
        return Diagnosis(tumor_probability, threshold, bool(tumor), tumor_type, probabilities, self.model_labels, note,
                         crop_box=box, model_input=model_input)


def is_view_of(detector: ModelBundle, classifier: ModelBundle) -> bool:
    """Whether ``detector`` is ``classifier`` read as P(tumor) = 1 - P(notumor), as its card says
    (:attr:`~brainml.bundle.ModelCard.detector_view`: ``train --from-classifier``, the ONNX import), and still holds
    the classifier's weights."""
    view = detector.card.detector_view
    if (view is None or view.classifier != classifier.card.name or detector.card.prep != classifier.card.prep
            or "notumor" not in classifier.card.class_names):
        return False
    if view.classifier_sha256:
        # The view recorded the classifier's file: while that file is unchanged, no network needs loading to know.
        return view.classifier_sha256 == classifier.keras_sha256
    try:
        return all(np.array_equal(weight, detector.model.get_layer("class_logits" if layer.name == "logits" else layer.name)
                                  .get_weights()[index])
                   for layer in classifier.model.layers for index, weight in enumerate(layer.get_weights()))
    except (ValueError, IndexError):  # a layer the detector does not have
        return False


_GUARDS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def load_guard(bundle: ModelBundle) -> OutOfDistributionGuard:
    """The guard stored beside ``bundle`` (``NAME.guard.npz``), read once per loaded bundle.

    Raises:
        BundleError: the card names a guard file that is missing.
    """
    guard = _GUARDS.get(bundle)
    if guard is None:
        path = guard_file(bundle.card_path)
        if not path.is_file():
            raise BundleError(f"{bundle.card_path} names an out-of-distribution guard, but {path} is missing. Run "
                              f"`python -m brainml guard --model {bundle.card_path} --data DIR` to fit it again.")
        guard = _GUARDS[bundle] = OutOfDistributionGuard.load(path)
    return guard
