"""Cross-page state: the models chosen in the sidebar and the one decision threshold every page shares.

Streamlit forgets a widget's value when the user opens another page (a widget's identity includes its page), so
values that must survive navigation are kept under their own session-state keys and copied into the widgets.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from brainml.bundle import BundleError
from brainml.labels import MODELS_DIR, SYNTHETIC_MODELS_DIR
from brainml.report import decimals

from . import loaders

DEFAULT_DETECTOR = MODELS_DIR / "detector.json"
DEFAULT_CLASSIFIER = MODELS_DIR / "classifier.json"
# The pair trained on BrainML's synthetic slices: the Lab's default, because its cases are synthetic too.
SYNTHETIC_DETECTOR = SYNTHETIC_MODELS_DIR / "detector.json"
SYNTHETIC_CLASSIFIER = SYNTHETIC_MODELS_DIR / "classifier.json"

# The decision threshold shared by Detect, the Threshold explorer and Batch, and the detector it belongs to: a
# threshold tuned for one detector means nothing for another, so choosing another detector resets it.
THRESHOLD = "threshold"
THRESHOLD_DETECTOR = "threshold_detector"
# The slider moves in hundredths (a hundred key presses end to end); the box beside it takes any value typed.
THRESHOLD_STEP = 0.01
THRESHOLD_TYPED_STEP = 0.001

# Sidebar choices that are not card paths.
OTHER_PATH = "other"
NO_CLASSIFIER = "none"

DISCLAIMER = "**Research and teaching tool, not a diagnosis.**"
REPEATED_DISCLAIMER = "A research and teaching tool, not a diagnosis."

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


@dataclass(frozen=True)
class ModelChoice:
    """The card paths the sidebar settled on; ``classifier`` is None for a detector-only cascade."""

    detector: str
    classifier: str | None


def remembered(widget, label: str, *, key: str, default, options=None, **kwargs):
    """Draw ``widget`` under ``key`` and keep its value across pages.

    The kept value comes back as the widget's default (``value=`` or ``index=``), not through session state, so
    the browser shows exactly what the page computes with.

    Args:
        widget: a Streamlit widget function (``st.selectbox``, ``st.slider``, ``st.toggle`` ...).
        default: the value before the user chose one; also used when a kept value is no longer among ``options``.
        options: the widget's options, for widgets that take them (selectbox, radio).
    """
    kept = f"kept_{key}"
    value = st.session_state.get(kept, default)
    if options is not None:
        options = list(options)
        if value not in options:
            value = default if default in options else options[0]
        if key in st.session_state and st.session_state[key] not in options:
            del st.session_state[key]
        kwargs.update(options=options, index=options.index(value))
    else:
        kwargs["value"] = value
    value = widget(label, key=key, **kwargs)
    st.session_state[kept] = value
    return value


def forget_and_set(key: str, value) -> None:
    """Give a :func:`remembered` widget a new value from a callback: the widget forgets its own and starts from
    this one."""
    st.session_state[f"kept_{key}"] = value
    if key in st.session_state:
        del st.session_state[key]


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


ARCHITECTURE_LABELS = {"compact": "compact CNN", "seed-cnn": "small CNN", "mobilenetv2": "MobileNetV2",
                       "efficientnetb0": "EfficientNetB0", "vgg16": "VGG16", "xception": "Xception"}


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
        card = loaders.card(typed)
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
        return loaders.card(path)
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


def current_threshold(models: loaders.Models) -> float:
    """The shared threshold, starting at (and reset to) the detector card's operating point."""
    if st.session_state.get(THRESHOLD_DETECTOR) != models.detector_path or THRESHOLD not in st.session_state:
        st.session_state[THRESHOLD] = models.cascade.default_threshold
        st.session_state[THRESHOLD_DETECTOR] = models.detector_path
    return float(st.session_state[THRESHOLD])


def threshold_for(models: loaders.Models) -> float:
    """The shared threshold when it belongs to ``models``' detector, else that detector card's own; unlike
    :func:`current_threshold` it changes nothing, so a page on other models (the Lab) leaves the shared one be."""
    if st.session_state.get(THRESHOLD_DETECTOR) == models.detector_path and THRESHOLD in st.session_state:
        return float(st.session_state[THRESHOLD])
    return models.cascade.default_threshold


def set_threshold(value: float) -> None:
    """Set the shared threshold (a callback for preset buttons)."""
    st.session_state[THRESHOLD] = float(min(max(value, 0.0), 1.0))


def _adopt(key: str) -> None:
    if st.session_state.get(key) is not None:
        set_threshold(st.session_state[key])


def threshold_slider(models: loaders.Models, key: str, label: str = "Decision threshold", help: str | None = None,
                     container=st, narrow: bool = False) -> float:
    """A slider bound to the shared threshold, with a box beside it to type a value: moving either on one page
    moves both on every page. When the threshold is not the detector card's, a line says so and offers a reset
    (a threshold set on the explorer otherwise follows the user silently). ``narrow``: give the box more of the
    width, for a slider drawn in a narrow column.

    Returns:
        The threshold after this run's interaction.
    """
    typed_key = f"{key}_typed"
    st.session_state[key] = st.session_state[typed_key] = current_threshold(models)
    # In a narrow column (Detect's right-hand one) a fifth of the width wraps the box's label mid-word.
    slider_column, typed_column = container.columns([3, 2] if narrow else [4, 1], vertical_alignment="bottom")
    slider_column.slider(
        label, min_value=0.0, max_value=1.0, step=THRESHOLD_STEP, format="%.3f", key=key,
        on_change=_adopt, args=(key,),
        help=help or "The verdict is tumor when P(tumor) is at or above this value. Lower it to miss fewer tumors "
                     "(higher recall), raise it for fewer false alarms (higher specificity).",
    )
    typed_column.number_input("Type a threshold", min_value=0.0, max_value=1.0, step=THRESHOLD_TYPED_STEP,
                              format="%.4f", key=typed_key, on_change=_adopt, args=(typed_key,),
                              help="Any value from 0 to 1; the slider follows.")
    threshold = current_threshold(models)
    card_threshold = models.cascade.default_threshold
    if threshold != card_threshold:
        places = max(3, decimals(threshold, card_threshold))
        note, reset = container.columns([3, 2] if narrow else [4, 1], vertical_alignment="center")
        note.caption(f":material/tune: The threshold in use, **{threshold:.{places}f}**, is not the detector card's "
                     f"(**{card_threshold:.{places}f}**): it was moved here or on another page, and every page "
                     "uses it.")
        reset.button("Reset to the card's", key=f"{key}_reset", on_click=set_threshold, args=(card_threshold,),
                     icon=":material/restart_alt:", width="stretch")
    return threshold


def disclaimer(*cards, container=st) -> None:
    """The notice shown wherever a prediction is: what the tool is, and what its models learned from (each card's
    own notice; a detector and a classifier that learned from different data each say so)."""
    cards = [card for card in cards if card is not None]
    notices = list(dict.fromkeys(card.notice for card in cards))
    if len(notices) > 1:
        roles = {"detect": "Detector", "classify": "Type classifier"}
        text = " ".join(f"{roles[card.task]}: {card.notice}" for card in cards)
    else:
        text = notices[0] if notices else ""
    # Cards trained here end their notice with the sentence the bold lead already says; say it once.
    text = text.replace(REPEATED_DISCLAIMER, "").replace("  ", " ").strip()
    container.warning(f"{DISCLAIMER} {text}".strip(), icon=":material/info:")


def page_setup(title: str, icon: str = ":material/neurology:") -> None:
    """Page config shared by every page (wide layout, tab title)."""
    st.set_page_config(page_title=f"{title} · BrainML", page_icon=icon, layout="wide")


def jump_to_clicked_slice(chart_key: str, slider_key: str) -> None:
    """A slice chart's ``on_select``: show the slice whose bar was clicked (the slider follows)."""
    points = (st.session_state.get(chart_key) or {}).get("selection", {}).get("points") or []
    if points:
        st.session_state[slider_key] = int(round(points[0]["x"]))
