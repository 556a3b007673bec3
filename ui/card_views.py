"""What the Model card page draws from a card: metric tables with intervals, breakdowns by lesion size, contrast and
source, calibration and the out-of-distribution guard."""

from __future__ import annotations

import numpy as np
import streamlit as st

from brainml import charts, metrics
from brainml.explain.methods import method_label
from brainml.goals import check_goals
from brainml.labels import metric_label, metric_text, percent, percent_range


def metric_table(rows: list[dict], key: str, container=st) -> None:
    """Card metrics (see :func:`brainml.report.metric_rows`) as a table: proportions in percent, areas as
    decimals, each with its 95% interval."""

    text = metric_text
    container.dataframe(
        [{"Metric": row["metric"], "Value": text(row["name"], row["value"]),
          "95% interval": "n/a" if row["ci_low"] is None or row["ci_high"] is None
          else f"{text(row['name'], row['ci_low'])} – {text(row['name'], row['ci_high'])}"} for row in rows],
        hide_index=True, width="stretch", key=key,
    )


def lesion_size_table(by_size: dict | None, key: str, container=st) -> None:
    """Recall (detector) or right types (classifier) per lesion-size bin, as ``evaluate`` stores it for
    synthetic test sets, whose lesions have known sizes; nothing when the card has none."""
    if not by_size or not by_size.get("bins"):
        return
    measure = by_size.get("measure", "rate")
    container.markdown("#### By lesion size")
    container.caption(f"{measure.capitalize()} on the tumor slices of the test set, by {by_size.get('size', 'lesion size')} "
                      "(on a slice of a whole head, 3% is 5 to 9 mm). 95% Wilson "
                      "intervals.")
    container.dataframe(
        [{"Lesion diameter": row["bin"], "Slices": row["n"], measure.capitalize(): percent(row["rate"]),
          "95% interval": percent_range(row["rate_ci"])}
         for row in by_size["bins"]],
        hide_index=True, width="stretch", key=key,
    )


def group_table(by_group: dict | None, title: str, column: str, caption: str, key: str, container=st) -> None:
    """Test metrics per group of slices (MRI contrast, source archive ...), as ``evaluate`` stores them:
    ``{"groups": [...], "measures": {measure: [{"n", "rate", "rate_ci"}, ...]}}``; nothing when the card has none.

    Args:
        title: the section's heading. column: the name of the groups' column. caption: what the groups are.
    """
    if not by_group or not by_group.get("groups"):
        return
    container.markdown(f"#### {title}")
    container.caption(f"{caption} 95% Wilson intervals.")
    rows = []
    for i, group in enumerate(by_group["groups"]):
        row = {column: group}
        for measure, values in by_group["measures"].items():
            value = values[i]
            row[measure.capitalize()] = percent(value["rate"])
            row[f"{measure} 95% interval"] = percent_range(value["rate_ci"])
            row[f"{measure} slices"] = value["n"]
        rows.append(row)
    container.dataframe(rows, hide_index=True, width="stretch", height="content", key=key)


def contrast_table(by_contrast: dict | None, key: str, container=st) -> None:
    """The test metrics per MRI contrast (synthetic test sets name each slice's contrast)."""
    group_table(by_contrast, "By MRI contrast", "Contrast", "The same test slices, split by the contrast they "
                "were made with; one threshold serves all of them.", key, container)


def source_table(by_source: dict | None, key: str, container=st) -> None:
    """The test metrics per source archive (a merged real set names each slice's source)."""
    group_table(by_source, "By source", "Source", "The same test slices, split by the public archive they came "
                "from; a model that learned an archive's look rather than the tumors shows it here. One threshold "
                "serves all of them.", key, container)


def goals_table(card, key: str, container=st) -> None:
    """BrainML's goals for a real-data model beside what this card measured on its test part, met or missed;
    nothing for a model that learned from synthetic slices (its test figures say nothing about patients)."""
    if card.trained_on_synthetic:
        return
    checks = [check for check in check_goals(card.task, card.metrics or {}, card.localisation)
              if check.value is not None]
    if not checks:
        return
    container.markdown("#### Against BrainML's goals")
    container.dataframe(
        [{"Measure": metric_label(check.measure) + (f" ({method_label(check.method)})" if check.method else ""),
          "Goal": f"≥ {percent(check.goal)}", "Measured": percent(check.value), "": "met" if check.met else "missed"}
         for check in checks],
        hide_index=True, width="stretch", height="content", key=key,
    )


def patient_note(by_patient: dict | None, container=st) -> None:
    """The headline rates with intervals that resample whole patients, and where the wrong answers gather: slices of
    one patient are not independent trials, so the per-slice interval above is the narrower of the two."""
    if not by_patient:
        return
    rates = "; ".join(f"{name} {percent(value['rate'])}, 95% interval **{percent_range(value['ci'])}**"
                      for name, value in by_patient["measures"].items())
    most = by_patient["most_wrong"][0] if by_patient["most_wrong"] else None
    gathered = (f" {most['wrong']} of the {by_patient['wrong']} wrong answers are one group's ({most['group']}: "
                f"{most['wrong']} of its {most['n']} slices)." if most and by_patient["wrong"] else "")
    container.markdown(f"**By patient.** Resampling whole patients and near-copy clusters "
                       f"({by_patient['groups']} in the test part) instead of slices: {rates}.{gathered}")


def stored_calibration(summary: dict) -> metrics.Calibration:
    """A card's stored reliability bins (``card.calibration["test_before"]`` ...) as a Calibration to draw."""
    def array(name, dtype=float):
        return np.array([np.nan if value is None else value for value in summary.get(name, [])], dtype=dtype)

    return metrics.Calibration(array("bin_edges"), array("bin_confidence"), array("bin_accuracy"),
                               array("bin_count", int), float(summary.get("ece", float("nan"))))


def calibration_section(card, key: str, container=st) -> None:
    """Temperature scaling as the card records it: T, the test split's ECE before and after, and both reliability
    diagrams; nothing when the model was not calibrated."""
    calibration = card.calibration or {}
    if not calibration.get("temperature"):
        return
    before, after = calibration.get("test_before") or {}, calibration.get("test_after") or {}
    container.markdown("#### Calibration")
    container.markdown(
        f"{calibration.get('method', 'Temperature scaling').capitalize()}: the logits are divided by "
        f"**T = {calibration['temperature']:.3f}** inside the network, so every probability this app shows is the "
        f"calibrated one. Expected calibration error on the test split"
        + (f" ({calibration['test_images']:,} images)" if calibration.get("test_images") else "")
        + f": **{before.get('ece', float('nan')):.3f}** before, **{after.get('ece', float('nan')):.3f}** after "
        "(0 is perfect: the predicted probabilities match the observed rates)."
    )
    what = "fraction with tumor" if card.task == "detect" else "fraction correct"
    left, right = container.columns(2)
    for column, summary, when in ((left, before, "before"), (right, after, "after")):
        if summary.get("bin_edges"):
            calibration_ = stored_calibration(summary)
            column.plotly_chart(charts.reliability(calibration_, title=f"Test split, {when} · ECE {calibration_.ece:.3f}",
                                                   what=what),
                                width="stretch", key=f"{key}_{when}", config={"displayModeBar": False})


def guard_section(card, key: str, container=st) -> None:
    """The out-of-distribution guard as the card records it: its rule, the share of test slices it accepts, the
    share of non-brain images it withholds and those by kind; nothing when the model has no guard."""
    guard = card.guard or {}
    if not guard.get("file"):
        return
    container.markdown("#### Out-of-distribution guard")
    container.markdown(
        "Before any verdict, the guard asks whether the slice looks like the brain MRI slices the models learned "
        f"from; when it does not, the app gives no verdict. **Rule:** {guard.get('rule', 'not recorded')}."
    )
    lines = []
    accepted = guard.get("test_accepted") or {}
    if accepted:
        lines.append(f"- **Test slices accepted:** {percent(accepted.get('rate'))} "
                     f"({percent_range(accepted.get('rate_ci'))}, n = {accepted.get('n', '?'):,}): the rest get no "
                     "verdict although they are brain MRI.")
    withheld = guard.get("non_brain_withheld") or {}
    if withheld:
        lines.append(f"- **Non-brain images withheld:** {percent(withheld.get('rate'))} "
                     f"({percent_range(withheld.get('rate_ci'))}, n = {withheld.get('n', '?'):,}).")
    if lines:
        container.markdown("\n".join(lines))
    by_kind = withheld.get("by_kind") or {}
    if by_kind:
        container.dataframe(
            [{"Kind of image": kind.replace("_", " ").capitalize(), "Withheld": values.get("withheld"),
              "Images": values.get("n"),
              "Share withheld": percent(values["withheld"] / values["n"]) if values.get("n") else "n/a"}
             for kind, values in by_kind.items()],
            hide_index=True, width="stretch", height="content", key=key,
        )
