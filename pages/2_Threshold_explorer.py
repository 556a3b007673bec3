"""Threshold explorer: move the detector's threshold and watch recall trade against specificity on held-out data."""

import math

import streamlit as st

from brainml import charts, labels
from brainml.metrics import ThresholdRule
from ui import loaders, sidebar, state, views

state.page_setup("Threshold explorer")
choice = sidebar.model_picker()
models = loaders.models_or_stop(choice)
card = models.detector.card

st.title("Threshold explorer")
st.caption(f"The detector {views.model_phrase(card)}.")
state.disclaimer(card)
held_out = loaders.held_out(models)
if held_out is None:
    st.info(
        f"The detector card {models.detector_path} holds no held-out predictions to sweep. Add them by scoring the "
        "model on a labelled test set:\n\n"
        f"```bash\npython -m brainml evaluate --model {models.detector_path} --data DATA_DIR --update-card\n```\n\n"
        "`--update-card` stores the test labels and the model's scores in the card; reload this page afterwards.",
        icon=":material/info:",
    )
    st.stop()

sweep = held_out.sweep
st.markdown(
    f"Every number below is measured on the **{sweep.n_positive + sweep.n_negative} held-out images** stored in "
    f"the card ({card.held_out_split or 'test split'}: {sweep.n_positive} with a tumor, {sweep.n_negative} "
    "without). The threshold you set here is the one the Detect and Batch pages use."
)


def preset(rule: ThresholdRule) -> float | None:
    try:
        return rule.choose(sweep)
    except ValueError:  # one class only: the rule is undefined
        return None


presets = [
    ("Card", card.threshold, f"The card's threshold: {card.threshold_rule or 'rule not recorded'}."),
    ("Recall ≥ 98%", preset(ThresholdRule("min_recall", 0.98)),
     "Highest specificity that still finds at least 98% of the tumors here."),
    ("Youden", preset(ThresholdRule("youden")), "Highest recall + specificity − 1."),
    ("Max accuracy", preset(ThresholdRule("max_accuracy")), "Most images right, whatever kind of error."),
]
buttons = st.columns([1, 1, 1, 1, 3])
for column, (label, value, help_text) in zip(buttons, presets):
    column.button(label, key=f"explorer_preset_{label.split()[0].lower()}", on_click=state.set_threshold,
                  args=(value,), disabled=value is None, help=help_text, width="stretch")
buttons[4].caption("Presets other than the card's are chosen on these same held-out images, so the numbers they "
                   "show are optimistic; the card's threshold was chosen on validation data.")

threshold = state.threshold_slider(models, key="explorer_threshold")
point = sweep.at(threshold)
reference = sweep.at(card.threshold) if card.threshold is not None else None
f1_low, f1_high = loaders.held_out_f1_interval(models, threshold)


cells = st.columns(5)
for cell, name, ci in zip(
    cells,
    ("recall", "specificity", "precision", "accuracy", "f1"),
    (point.recall_ci, point.specificity_ci, point.precision_ci, point.accuracy_ci, (f1_low, f1_high)),
):
    value = getattr(point, name)
    delta = None
    if reference is not None and not math.isnan(value) and not math.isnan(getattr(reference, name)):
        change = value - getattr(reference, name)
        delta = f"{change:+.1%} vs card" if abs(change) >= 0.0005 else None
    cell.metric(labels.metric_label(name), labels.percent(value), delta=delta,
                delta_color="off" if name == "f1" else "normal")
    cell.caption(labels.interval(*ci))

st.caption(f"At threshold {threshold:.3f}: {point.tp} tumors found, {point.fn} missed, {point.fp} false alarms, "
           f"{point.tn} correctly cleared.")

last = st.session_state.get("detect_last")
if last and last.get("withheld"):
    st.info(f"The scan on the Detect page ({last['scan']}) does not look like a brain MRI slice: no verdict at any "
            "threshold.", icon=":material/search:")
elif last:
    verdict = "tumor" if last["tumor_probability"] >= threshold else "no tumor"
    st.info(f"The scan on the Detect page ({last['scan']}): {views.probability_line(last['tumor_probability'], threshold)}"
            f" → **{verdict}**.", icon=":material/search:")

left, right = st.columns(2)
left.plotly_chart(charts.detector_confusion_matrix(point), width="stretch", key="explorer_confusion",
                  config={"displayModeBar": False})
right.plotly_chart(charts.score_distribution(held_out.labels, held_out.scores, threshold), width="stretch",
                   key="explorer_distribution", config={"displayModeBar": False})
saturated = held_out.scores >= 1.0
if saturated.any():
    # A float32 sigmoid rounds to exactly 1.0 for a confident call; "tumor when P ≥ threshold" keeps those tumor
    # even at threshold 1, which looks like a broken slider unless it is said.
    right.caption(
        f"{int(saturated.sum())} held-out scores are exactly 1.000 (the network's output saturates): "
        f"{int(saturated[held_out.labels == 1].sum())} of the {sweep.n_positive} tumors and "
        f"{int(saturated[held_out.labels == 0].sum())} of the {sweep.n_negative} others. The last bar holds them. "
        "Since the verdict is tumor when P(tumor) ≥ threshold, they stay tumor even at threshold 1.000."
    )
st.plotly_chart(charts.threshold_curves(sweep, threshold), width="stretch", key="explorer_curves",
                config={"displayModeBar": False})
left, right = st.columns(2)
left.plotly_chart(charts.roc(held_out.curves, point), width="stretch", key="explorer_roc",
                  config={"displayModeBar": False})
right.plotly_chart(charts.precision_recall(held_out.curves, point), width="stretch", key="explorer_pr",
                   config={"displayModeBar": False})
