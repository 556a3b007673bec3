"""Everything expensive, computed once and cached.

``st.cache_resource`` holds objects shared by every session and never copied: models, explainers and example
cases (none of them is changed after it is made). Decoded uploads stay in their own session (see
:func:`read_upload`). ``st.cache_data`` holds small results that are
copied per call: diagnoses, heatmaps, threshold sweeps. Cache keys include each card's modification time, so
replacing a model file on disk takes effect without restarting the app.

Moving the threshold never reaches a model: a diagnosis is computed once at threshold 0.0 and re-read at any
threshold with :meth:`brainml.predict.Diagnosis.at`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st

from brainml import examples, labels, metrics
from brainml.bundle import BundleError, ModelBundle, ModelCard, card_path_for, load_bundle, read_card
from brainml.engine import engine_for
from brainml.explain import METHODS, method_label  # noqa: F401 - pages read both through loaders
from brainml.io import Scan, ScanError, read_scan
from brainml.predict import Cascade, Diagnosis
from brainml.volume import VolumeScores, score_stack, stack_along
from ui import imaging


def _stamp(path: str) -> float:
    """The card's modification time: part of every cache key, so a retrained model replaces the cached one."""
    try:
        return card_path_for(path).stat().st_mtime
    except OSError:
        return 0.0


@st.cache_data(ttl=30, show_spinner=False)
def model_cards(models_dir: str) -> dict[str, ModelCard]:
    """Every readable model card in ``models_dir`` and its subfolders (``models/synthetic/``), by path, the folder's
    own first; unreadable ones are left out (the picker cannot offer them, and the sidebar explains typed paths
    that fail)."""
    cards = {}
    folder = Path(models_dir)
    for path in [*sorted(folder.glob("*.json")), *sorted(folder.glob("*/*.json"))]:
        try:
            cards[str(path)] = read_card(path)
        except BundleError:
            continue
    return cards


def display_path(path: str) -> str:
    """A card path as people read it: relative to the app's folder when it lies inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path(__file__).resolve().parents[1]))
    except ValueError:
        return str(path)


def cached_card(path: str) -> ModelCard:
    """One card, read fresh (cards are small); raises BundleError."""
    return read_card(path)


@st.cache_resource(show_spinner="Loading the model…", max_entries=8)
def _bundle(path: str, stamp: float) -> ModelBundle:
    bundle = load_bundle(path, lazy=True)
    if engine_for(bundle) is None:
        bundle.model  # no engine: Keras runs every verdict, so load (and check) the network now
    # With an engine, TensorFlow and the Keras network load when the first heatmap needs them; the engine was built
    # from this very .keras file (its SHA-256 matches), which was checked against the card then.
    return bundle


def bundle(path: str) -> ModelBundle:
    """The bundle at ``path``, loaded once per process; raises BundleError."""
    return _bundle(path, _stamp(path))


@dataclass(frozen=True)
class Models:
    """The models a page works with: the cascade, its two bundles and their card paths."""

    cascade: Cascade
    detector_path: str
    classifier_path: str | None

    @property
    def detector(self) -> ModelBundle:
        return self.cascade.detector

    @property
    def classifier(self) -> ModelBundle | None:
        return self.cascade.classifier

    @property
    def cards(self) -> tuple[ModelCard, ...]:
        """The detector's card, then the classifier's when there is one."""
        return tuple(bundle.card for bundle in (self.detector, self.classifier) if bundle is not None)

    @property
    def key(self) -> tuple:
        """What identifies these models in a cache key."""
        return (self.detector_path, _stamp(self.detector_path), self.classifier_path,
                _stamp(self.classifier_path) if self.classifier_path else 0.0)


@st.cache_resource(show_spinner=False, max_entries=8)
def _cascade(detector_path: str, detector_stamp: float, classifier_path: str | None, classifier_stamp: float) -> Cascade:
    detector = _bundle(detector_path, detector_stamp)
    classifier = _bundle(classifier_path, classifier_stamp) if classifier_path else None
    return Cascade(detector, classifier)


def load_pair(detector_path: str, classifier_path: str | None) -> Models:
    """Load (once) and pair the chosen models; raises BundleError or ValueError with a message for people."""
    cascade = _cascade(detector_path, _stamp(detector_path), classifier_path,
                       _stamp(classifier_path) if classifier_path else 0.0)
    return Models(cascade, detector_path, classifier_path)


def warm_up(models: Models) -> None:
    """Load what a first verdict and a first heatmap need (each network's engine; TensorFlow and the detector's
    explainer), so that the first scan does not wait for them."""
    for bundle in (models.detector, models.classifier):
        if bundle is not None:
            engine_for(bundle)
    _explainer(models.detector_path, _stamp(models.detector_path))


def models_or_stop(choice) -> Models:
    """:func:`models` for a page: a model that cannot be loaded stops the page with its reason."""
    try:
        return load_pair(choice.detector, choice.classifier)
    except (BundleError, ValueError) as error:
        st.error(f"The chosen models cannot be used: {error}")
        st.stop()


def import_model(source: str, models_dir: str) -> list[Path]:
    """Import a model from elsewhere into ``models_dir`` (see :func:`brainml.onnx_import.import_model`) and forget
    the cached list of cards, so the sidebar offers it at once.

    Raises:
        BundleError: the reason the import was refused, written for the user.
    """
    from brainml import onnx_import

    written = onnx_import.import_model(source, models_dir)
    model_cards.clear()
    return written


# --- scans ----------------------------------------------------------------------------------------------------


# Decoded uploads live in their own session's state, never in a cache shared between sessions, and go when the
# session ends. The oldest go first once a session holds this many (a batch of a few dozen files fits).
UPLOADS_KEPT = 64


def _session_scan(key: tuple, data: bytes, name: str) -> Scan:
    store = st.session_state.setdefault("uploaded_scans", {})
    if key not in store:
        scan = read_scan(data, name=name)  # a ScanError is not kept: the same file gives the same message again
        while len(store) >= UPLOADS_KEPT:
            store.pop(next(iter(store)))
        store[key] = scan
    return store[key]


def read_upload(upload) -> Scan:
    """Decode an ``st.file_uploader`` file (or a :class:`KeptUpload`) once per session; raises ScanError with the
    reader's message."""
    return _session_scan((upload.file_id,), upload.getvalue(), upload.name)


@dataclass(frozen=True)
class KeptUpload:
    """An uploaded file's name and bytes, kept in the session: a file uploader forgets its file when the user
    opens another page, and the file should still be there on coming back."""

    name: str
    data: bytes
    file_id: str

    def getvalue(self) -> bytes:
        return self.data


def kept_upload(upload, key: str) -> KeptUpload | None:
    """The file in the uploader ``key``, or the one it held before the user left the page; None when there is
    neither. Give the uploader ``on_change=forget_removed_upload, args=(key,)`` so that removing the file forgets
    it."""
    if upload is not None:
        st.session_state[f"{key}_kept"] = KeptUpload(upload.name, upload.getvalue(), upload.file_id)
    return st.session_state.get(f"{key}_kept")


def forget_removed_upload(key: str) -> None:
    """The uploader's ``on_change``: a file the user removed is forgotten (a page switch runs no callback)."""
    if st.session_state.get(key) is None:
        forget_upload(key)


def forget_upload(key: str) -> None:
    st.session_state.pop(f"{key}_kept", None)


@dataclass(frozen=True)
class BatchItem:
    """One file of a batch after reading: its name and its scan, or the reader's message."""

    name: str
    scan: Scan | None = None
    error: str | None = None


def batch_items(uploads) -> list[BatchItem]:
    """Read every uploaded file; a zip of separate scans becomes one item per file inside (a zip holding a DICOM
    series stays one item, the series). Files that cannot be read become items with the reader's message."""
    items = []
    for upload in uploads:
        try:
            scan = read_upload(upload)
        except ScanError as error:
            items.append(BatchItem(upload.name, error=error.message))
            continue
        if "zip_member" not in scan.metadata:
            items.append(BatchItem(upload.name, scan))
            continue
        for member, blob in scan.members:
            name = f"{upload.name}/{member}"
            try:
                items.append(BatchItem(name, _session_scan((upload.file_id, member), blob, member)))
            except ScanError as error:
                items.append(BatchItem(name, error=error.message))
    return items


@st.cache_resource(show_spinner=False, max_entries=16)
def example_case(key: str):
    """An example scan and its lesion mask, generated once per process."""
    return examples.example_case(key)


@st.cache_resource(show_spinner=False, max_entries=16)
def real_example_scan(key: str) -> Scan:
    """A real example slice shipped with BrainML, read once per process through the same reader as an upload."""
    return read_scan(examples.find_real_example(key).path)


@st.cache_resource(show_spinner="Making the example volume…", max_entries=1)
def example_volume():
    """The built-in example volume (:mod:`brainml.example_volume`), made once per process."""
    from brainml.example_volume import example_volume as make

    return make()


@st.cache_resource(show_spinner=False, max_entries=1)
def example_volume_scan() -> Scan:
    """The example volume read through the same reader as an uploaded NIfTI file."""
    from brainml.example_volume import NAME

    return read_scan(example_volume().nifti_bytes(), name=NAME)


@st.cache_resource(show_spinner="Generating the case…", max_entries=32)
def lab_case(label: str, contrast: str, plane: str, radius_mm: float | None, position: tuple | None, seed: int):
    """A case made to order for the Lab (see :func:`brainml.examples.made_to_order`), generated once."""
    return examples.made_to_order(label, seed, contrast, plane, radius_mm, position)


# --- results --------------------------------------------------------------------------------------------------


@st.cache_data(show_spinner=False, max_entries=512)
def _diagnose(model_key: tuple, image: np.ndarray, colour_saturation: float) -> Diagnosis:
    detector_path, detector_stamp, classifier_path, classifier_stamp = model_key
    cascade = _cascade(detector_path, detector_stamp, classifier_path, classifier_stamp)
    return cascade.run([image], threshold=0.0, colour_saturations=[colour_saturation])[0]


def diagnose(models: Models, image: np.ndarray, scan: Scan | None = None) -> Diagnosis:
    """The cascade's diagnosis of one slice at threshold 0.0 (so it carries its type); see the module docstring.

    Args:
        scan: the upload the slice comes from, whose share of coloured pixels the out-of-distribution guard
            weighs (MRI is grey); None for the app's own grey examples.
    """
    saturation = float(scan.metadata.get("colour_saturation", 0.0)) if scan is not None else 0.0
    return _diagnose(models.key, np.ascontiguousarray(image, dtype=np.float32), saturation)


@st.cache_data(show_spinner=False, max_entries=32)
def _diagnose_many(model_key: tuple, images: tuple[np.ndarray, ...], colour_saturations: tuple[float, ...]) -> list[Diagnosis]:
    detector_path, detector_stamp, classifier_path, classifier_stamp = model_key
    cascade = _cascade(detector_path, detector_stamp, classifier_path, classifier_stamp)
    return cascade.run(list(images), threshold=0.0, colour_saturations=list(colour_saturations))


def diagnose_many_or_stop(models: Models, images: list[np.ndarray], scans: list[Scan | None]) -> list[Diagnosis]:
    """:func:`diagnose` over many slices in one batched cascade pass (Batch)."""
    saturations = tuple(float(scan.metadata.get("colour_saturation", 0.0)) if scan is not None else 0.0 for scan in scans)
    try:
        return _diagnose_many(models.key, tuple(np.ascontiguousarray(image, dtype=np.float32) for image in images),
                              saturations)
    except BundleError as error:
        st.error(f"The chosen models cannot be used: {error}", icon=":material/error:")
        st.stop()


def diagnose_or_stop(models: Models, image: np.ndarray, scan: Scan | None = None) -> Diagnosis:
    """:func:`diagnose` for a page: models that cannot run (a guard file gone missing) stop the page with the
    reason."""
    try:
        return diagnose(models, image, scan)
    except BundleError as error:
        st.error(f"The chosen models cannot be used: {error}", icon=":material/error:")
        st.stop()


@dataclass(frozen=True)
class VolumeView:
    """A volume cut along a plane and windowed (what the page shows), and the cascade's answer for every slice of
    it, made at threshold 0."""

    stack: np.ndarray
    scores: VolumeScores


# A session keeps the scores of its last 64 volumes (small), and the stacks of its last two (a 176-slice 256 x 256
# stack is 46 MB): the one on show and the one before, so switching a setting back costs nothing.
VOLUME_SCORES_KEPT = 64
VOLUME_STACKS_KEPT = 2


def volume_view_or_stop(models: Models, scan: Scan, scan_id: str, plane: str = "axial", level: float = 0.5,
                        width: float = 1.0) -> VolumeView:
    """Every slice of ``scan`` along ``plane``, windowed, scored once per session with a progress bar; models that
    cannot run stop the page with the reason."""
    window = (round(float(level), 4), round(float(width), 4))
    stack = _kept(("volume_stacks", VOLUME_STACKS_KEPT), (scan_id, plane, window),
                  lambda: imaging.rewindow(stack_along(scan, plane), level, width))
    return VolumeView(stack, _kept(("volume_scores", VOLUME_SCORES_KEPT), (models.key, scan_id, plane, window),
                                   lambda: _score_with_progress(models, stack, plane)))


def _kept(store_and_size: tuple[str, int], key: tuple, make):
    """``make()``, kept in this session's ``store`` under ``key``; the oldest entries go first beyond its size."""
    name, size = store_and_size
    store = st.session_state.setdefault(name, {})
    if key not in store:
        value = make()
        while len(store) >= size:
            store.pop(next(iter(store)))
        store[key] = value
    return store[key]


def _score_with_progress(models: Models, stack: np.ndarray, plane: str) -> VolumeScores:
    bar = st.progress(0.0, text=f"Scoring every slice of the volume ({len(stack)} slices)…")
    try:
        scores = score_stack(models.cascade, stack, plane, progress=lambda done, total: bar.progress(
            done / max(total, 1), text=f"Scoring every slice of the volume… {done} of {total}"))
    except BundleError as error:
        st.error(f"The chosen models cannot be used: {error}", icon=":material/error:")
        st.stop()
    bar.empty()
    return scores


@dataclass(frozen=True)
class HeldOut:
    """A detector card's held-out predictions and what the explorer draws from them.

    Attributes:
        labels: (N,) 0 = no tumor, 1 = tumor. scores: (N,) P(tumor).
        sweep: every operating point. curves: ROC and PR. calibration: the reliability diagram.
    """

    labels: np.ndarray
    scores: np.ndarray
    sweep: metrics.ThresholdSweep
    curves: metrics.Curves
    calibration: metrics.Calibration


@st.cache_data(show_spinner=False, max_entries=8)
def _held_out(path: str, stamp: float) -> HeldOut:
    card = read_card(path)
    labels = np.asarray(card.held_out_labels, dtype=int)
    scores = np.asarray(card.held_out_scores, dtype=float)
    return HeldOut(labels, scores, metrics.sweep_thresholds(labels, scores), metrics.curves(labels, scores),
                   metrics.calibration(labels, np.clip(scores, 0.0, 1.0)))


def held_out(models: Models) -> HeldOut | None:
    """The detector card's held-out predictions, swept once; None when the card has none."""
    if not models.detector.card.has_held_out:
        return None
    return _held_out(models.detector_path, _stamp(models.detector_path))


@st.cache_data(show_spinner=False, max_entries=256)
def _f1_interval(path: str, stamp: float, threshold: float) -> tuple[float, float]:
    data = _held_out(path, stamp)
    return metrics.f1_interval(data.labels, data.scores, threshold)


def held_out_f1_interval(models: Models, threshold: float) -> tuple[float, float]:
    """Bootstrap 95% interval of F1 at ``threshold`` on the detector's held-out predictions."""
    return _f1_interval(models.detector_path, _stamp(models.detector_path), round(float(threshold), 6))


@st.cache_data(show_spinner=False, max_entries=8)
def _classifier_calibration(path: str, stamp: float) -> metrics.Calibration | None:
    card = read_card(path)
    if not card.has_held_out:
        return None
    labels = np.asarray(card.held_out_labels, dtype=int)
    probabilities = np.asarray(card.held_out_scores, dtype=float)
    return metrics.calibration(probabilities.argmax(axis=1) == labels, np.clip(probabilities.max(axis=1), 0, 1))


def classifier_calibration(path: str) -> metrics.Calibration | None:
    """Confidence against the rate of correct answers on the classifier card's held-out predictions."""
    return _classifier_calibration(path, _stamp(path))


# --- heatmaps -------------------------------------------------------------------------------------------------

DEFAULT_METHOD = "gradcam"
TUMOR_TARGET = "tumor"


def heatmap_targets(models: Models) -> list[str]:
    """What a heatmap can explain: the detector's tumor score, then each class of the type classifier."""
    targets = [TUMOR_TARGET]
    if models.classifier is not None:
        targets += [f"class:{name}" for name in models.classifier.card.class_names]
    return targets


def target_phrase(target: str) -> str:
    """What a heatmap of ``target`` explains, as part of a sentence."""
    if target == TUMOR_TARGET:
        return "the detector's tumor score"
    return f"the classifier's {labels.class_label(target.split(':', 1)[1]).lower()} score"


def target_label(target: str) -> str:
    if target == TUMOR_TARGET:
        return "Detector: tumor score"
    return f"Classifier: {labels.class_label(target.split(':', 1)[1])}"


@st.cache_resource(show_spinner="Preparing the heatmap method…", max_entries=8)
def _explainer(path: str, stamp: float):
    # TensorFlow is imported when the first heatmap is asked for, not when a page imports this module.
    from brainml.explain.core import Explainer

    return Explainer.for_bundle(_bundle(path, stamp))


@st.cache_data(show_spinner="Computing the heatmap…", max_entries=256)
def _heatmap(path: str, stamp: float, image: np.ndarray, method: str, target: str, _prepared=None):
    # ``_prepared`` is left out of the cache key: it is the image itself, as the model's preprocessing made it.
    from brainml.explain.core import heatmap

    return heatmap(_explainer(path, stamp), image, method, target, prepared=_prepared)


def heatmap(models: Models, image: np.ndarray, method: str, target: str = TUMOR_TARGET,
            diagnosis: Diagnosis | None = None):
    """The heatmap of ``target`` (see :func:`heatmap_targets`) on the original slice's grid, computed once.

    Args:
        diagnosis: the cascade's diagnosis of this very slice: the heatmap reuses the input it prepared.
    Returns:
        a :class:`brainml.explain.core.HeatmapResult`.
    """
    image = np.ascontiguousarray(image, dtype=np.float32)
    path = models.detector_path if target == TUMOR_TARGET else models.classifier_path
    explained = TUMOR_TARGET if target == TUMOR_TARGET else target.split(":", 1)[1]
    prepared = None
    if diagnosis is not None and diagnosis.model_input is not None and (
            target == TUMOR_TARGET or models.classifier.card.prep == models.detector.card.prep):
        prepared = (diagnosis.model_input, diagnosis.crop_box)
    return _heatmap(path, _stamp(path), image, method, explained, _prepared=prepared)


@st.cache_data(show_spinner=False, max_entries=8)
def _localisation(path: str, stamp: float, n_cases: int, seed: int) -> dict:
    from brainml.explain.evaluation import localisation_table

    return localisation_table(_explainer(path, stamp), examples.localisation_cases(n_cases, seed))


def localisation(models: Models, n_cases: int, seed: int = 0) -> dict:
    """The detector's localisation table on ``n_cases`` fresh synthetic tumor cases (see
    :func:`brainml.explain.evaluation.localisation_table`); computed once per model."""
    return _localisation(models.detector_path, _stamp(models.detector_path), n_cases, seed)
