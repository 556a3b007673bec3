"""The sidebar: links to every page and the choice of models (the detector, and the type classifier paired with
it), kept across pages."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from brainml.bundle import BundleError
from brainml.labels import MODELS_DIR, SYNTHETIC_MODELS_DIR

from . import loaders
from .state import forget_and_set, remembered

DEFAULT_DETECTOR = MODELS_DIR / "detector.json"

DEFAULT_CLASSIFIER = MODELS_DIR / "classifier.json"

# The pair trained on BrainML's synthetic slices: the Lab's default, because its cases are synthetic too.
SYNTHETIC_DETECTOR = SYNTHETIC_MODELS_DIR / "detector.json"

SYNTHETIC_CLASSIFIER = SYNTHETIC_MODELS_DIR / "classifier.json"

# Sidebar choices that are not card paths.
OTHER_PATH = "other"

NO_CLASSIFIER = "none"

# The sidebar's page list (Streamlit's own is switched off in .streamlit/config.toml: it would call the home page
# "streamlit app" after its file).
PAGES = (
    ("streamlit_app.py", "Home", ":material/home:"),
    ("pages/1_Detect.py", "Detect", ":material/search:"),
    ("pages/2_Threshold_explorer.py", "Threshold explorer", ":material/tune:"),
    ("pages/3_Batch.py", "Batch", ":material/table_rows:"),
    ("pages/4_Model_card.py", "Model card", ":material/description:"),
    ("pages/5_Lab.py", "Lab", ":material/science:"),
)

ARCHITECTURE_LABELS = {"compact": "compact CNN", "seed-cnn": "small CNN", "mobilenetv2": "MobileNetV2",
                       "efficientnetb0": "EfficientNetB0", "vgg16": "VGG16", "xception": "Xception"}


@dataclass(frozen=True)
class ModelChoice:
    """The card paths the sidebar settled on; ``classifier`` is None for a detector-only cascade."""

    detector: str
    classifier: str | None


def navigation() -> None:
    """Links to every page, at the top of the sidebar (only when the app runs from streamlit_app.py: page links
    are relative to it, and a page run on its own has no other pages)."""
    context = get_script_run_ctx()
    if context is None or Path(context.main_script_path).name != PAGES[0][0]:
        return
    with st.sidebar:
        st.markdown("### :material/neurology: BrainML")
        for path, label, icon in PAGES:
            st.page_link(path, label=label, icon=icon)
        st.divider()


def card_label(path: str, cards: dict) -> str:
    """A model as the picker lists it: what it learned from, its architecture and its card, e.g.
    "Real MRI · compact CNN (models/detector.json)"."""
    if path == OTHER_PATH:
        return "Another card (type a path)…"
    if path == NO_CLASSIFIER:
        return "None: detector only"
    card = cards.get(path)
    where = loaders.display_path(path)
    if card is None:
        return where
    kind = "Synthetic" if card.trained_on_synthetic else "Real MRI"
    return f"{kind} · {ARCHITECTURE_LABELS.get(card.architecture, card.architecture)} ({where})"


def partner_classifier(detector: str, classifiers: list[str]) -> str | None:
    """The classifier made with ``detector``, by the bundle naming rule: ``detector.json`` goes with
    ``classifier.json``, ``NAME_detector.json`` with ``NAME_classifier.json`` (as ``python -m brainml import``
    writes them); None when ``classifiers`` holds no such card."""
    path = Path(detector)
    stem = path.stem
    if stem == "detector":
        partner = "classifier"
    elif stem.endswith("_detector"):
        partner = stem.removesuffix("_detector") + "_classifier"
    else:
        return None
    candidate = str(path.with_name(f"{partner}{path.suffix}"))
    return candidate if candidate in classifiers else None


def _pair_classifier(prefix: str, classifiers: list[str]) -> None:
    """When the detector changes, bring its own classifier along (the user can still choose another)."""
    partner = partner_classifier(st.session_state[f"{prefix}_detector"], classifiers)
    if partner is not None:
        forget_and_set(f"{prefix}_classifier", partner)


def _learned_from(detector, classifier) -> str:
    """One line on what the chosen models learned from, so the choice between them is an informed one."""
    chosen = [card for card in (detector, classifier) if card is not None]
    if not chosen:
        return ""
    if len({card.learned_from for card in chosen}) > 1:
        return (f"The detector learned from {detector.learned_from}, the type classifier from "
                f"{classifier.learned_from}: the two come from different training data.")
    subject = "These models" if len(chosen) > 1 else "This model"
    return f"{subject} learned from {chosen[0].learned_from}{' only' if chosen[0].trained_on_synthetic else ''}."


def _typed_card(label: str, key: str, task: str) -> str | None:
    typed = remembered(st.text_input, label, key=key, default="", placeholder=f"models/my_{task}.json").strip()
    if not typed:
        st.info("Type the path of a model card (.json) on this server; its .keras file must lie beside it.")
        return None
    try:
        card = loaders.cached_card(typed)
    except BundleError as error:
        st.error(str(error))
        return None
    wanted = "detect" if task == "detector" else "classify"
    if card.task != wanted:
        st.error(f"{typed} is a {card.task} model; choose a {task} card here.")
        return None
    return typed


def _chosen_card(path: str | None, cards: dict):
    if path in (None, NO_CLASSIFIER):
        return None
    if path in cards:
        return cards[path]
    try:
        return loaders.cached_card(path)
    except BundleError:
        return None


def model_picker(prefix: str = "sidebar", defaults: ModelChoice | None = None, note: str | None = None) -> ModelChoice:
    """The sidebar's model picker: every card in ``models/`` and its subfolders, plus any path the user types.

    Args:
        prefix: the session-state prefix of the picker's widgets. Pages that share one choice share the prefix;
            the Lab keeps its own, so its synthetic default does not change the other pages' models.
        defaults: the cards chosen until the user chooses (default: ``models/detector.json`` and
            ``models/classifier.json``); a default that is not there falls back to the first card listed.
        note: a caption under the picker, e.g. why this page starts on other models.
    Returns:
        The detector and classifier cards to use; an unusable typed path falls back to the default models, with
        the reason shown in the sidebar.
    """
    navigation()
    defaults = defaults or ModelChoice(str(DEFAULT_DETECTOR), str(DEFAULT_CLASSIFIER))
    cards = loaders.model_cards(str(MODELS_DIR))
    detectors = [path for path, card in cards.items() if card.task == "detect"]
    classifiers = [path for path, card in cards.items() if card.task == "classify"]
    default_detector = defaults.detector if defaults.detector in detectors else (detectors or [OTHER_PATH])[0]
    default_classifier = defaults.classifier if defaults.classifier in classifiers else (
        partner_classifier(default_detector, classifiers) or (classifiers or [NO_CLASSIFIER])[0])
    label = functools.partial(card_label, cards=cards)
    with st.sidebar:
        st.subheader("Models")
        # Radios, not select boxes: a select box cuts a long label to the sidebar's width, a radio wraps it.
        detector = remembered(
            st.radio, "Detector (tumor / no tumor)", key=f"{prefix}_detector", default=default_detector,
            options=[*detectors, OTHER_PATH], format_func=label,
            help="Every model card in the models/ folder and its subfolders, or one you point to. Choosing a "
                 "detector also chooses the classifier made with it, when there is one.",
            on_change=_pair_classifier, args=(prefix, classifiers),
        )
        if detector == OTHER_PATH:
            detector = _typed_card("Detector card path", f"{prefix}_detector_path", "detector")
            if detector is None and default_detector != OTHER_PATH:
                st.caption(f"Using {loaders.display_path(default_detector)} until then.")
                detector = default_detector
        classifier = remembered(
            st.radio, "Type classifier", key=f"{prefix}_classifier", default=default_classifier,
            options=[*classifiers, NO_CLASSIFIER, OTHER_PATH], format_func=label,
            help="Runs after the detector and names the tumor type.",
        )
        if classifier == OTHER_PATH:
            classifier = _typed_card("Classifier card path", f"{prefix}_classifier_path", "classifier")
            if classifier is None:
                st.caption("Running the detector alone until then.")
        learned = _learned_from(_chosen_card(detector, cards), _chosen_card(classifier, cards))
        if learned:
            st.caption(learned)
        if note:
            st.caption(note)
    if detector is None:
        st.error("No detector is available: the models/ folder holds no detector card. Train one with "
                 "`python -m brainml train --task detect ...` or type the path of a card in the sidebar.")
        st.stop()
    return ModelChoice(detector, None if classifier in (None, NO_CLASSIFIER) else classifier)
