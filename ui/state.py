"""Cross-page state: the one decision threshold every page shares, widgets that keep their values across pages,
and what every page draws the same way (the page setup, the disclaimer).

Streamlit forgets a widget's value when the user opens another page (a widget's identity includes its page), so
values that must survive navigation are kept under their own session-state keys and copied into the widgets.
"""

from __future__ import annotations

import streamlit as st

from brainml.report import decimals

from . import loaders

# The decision threshold shared by Detect, the Threshold explorer and Batch, and the detector it belongs to: a
# threshold tuned for one detector means nothing for another, so choosing another detector resets it.
THRESHOLD = "threshold"
THRESHOLD_DETECTOR = "threshold_detector"
# The slider moves in hundredths (a hundred key presses end to end); the box beside it takes any value typed.
THRESHOLD_STEP = 0.01
THRESHOLD_TYPED_STEP = 0.001


DISCLAIMER = "**Research and teaching tool, not a diagnosis.**"
REPEATED_DISCLAIMER = "A research and teaching tool, not a diagnosis."


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
