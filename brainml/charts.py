"""Plotly figures shared by the app's pages and the reports: probabilities, confusion matrices, threshold sweeps,
ROC / PR curves, reliability diagrams and training curves.

Each function takes the library's own results (:class:`~brainml.metrics.ThresholdSweep`,
:class:`~brainml.metrics.OperatingPoint`, :class:`~brainml.metrics.Curves`, card dictionaries) and returns a
``plotly.graph_objects.Figure``; nothing here computes a metric or touches a model, so a figure can be cached and
redrawn when only the threshold moves.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .explain.methods import method_label
from .labels import class_label, metric_label
from .metrics import Calibration, Curves, OperatingPoint, ThresholdSweep

# One colour per meaning, the same on every page: tumor / positive, no tumor / negative, the operating point.
TUMOR_COLOUR = "#d6404e"
CLEAR_COLOUR = "#2f7ec1"
POINT_COLOUR = "#111111"
NEUTRAL_COLOUR = "#8a8f98"
METRIC_COLOURS = {
    "recall": "#d6404e",
    "specificity": "#2f7ec1",
    "precision": "#e5a02a",
    "accuracy": "#5b9e5a",
    "f1": "#8e5fb0",
    "balanced_accuracy": "#4b4f58",
    "npv": "#45a5a8",
}



# The few parts of plotly's "plotly_white" look that these figures use. Applying the named template validates
# hundreds of properties (about 7.5 ms a figure); this one costs well under a millisecond, and the threshold
# explorer redraws four figures on every slider move.
LIGHT = go.layout.Template(layout=dict(
    plot_bgcolor="white", paper_bgcolor="white", font=dict(color="#2a3f5f"),
    xaxis=dict(gridcolor="#EBF0F8", linecolor="#EBF0F8", zerolinecolor="#EBF0F8", automargin=True),
    yaxis=dict(gridcolor="#EBF0F8", linecolor="#EBF0F8", zerolinecolor="#EBF0F8", automargin=True),
    colorway=["#636efa", "#EF553B", "#00cc96", "#ab63fa", "#FFA15A", "#19d3f3", "#FF6692", "#B6E880"],
))


def _layout(figure: go.Figure, title: str | None = None, height: int = 320, **extra) -> go.Figure:
    figure.update_layout(
        title=dict(text=title, x=0, xanchor="left", font=dict(size=15)) if title else None,
        height=height,
        margin=dict(l=10, r=10, t=44 if title else 14, b=10),
        template=LIGHT,
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0),
        **extra,
    )
    return figure


def _figure(data: list, title: str | None = None, height: int = 320, **layout) -> go.Figure:
    """A figure built in one step from its traces and a layout dict: what :func:`_layout` sets, plus ``layout``.

    Plotly validates every property it is handed after construction, update by update (``update_layout`` and
    ``update_xaxes`` cost a few milliseconds each); handed everything at once it validates in one pass. The
    threshold explorer redraws four figures on every slider move, so those are built this way.
    """
    return go.Figure(data=data, layout=dict(
        title=dict(text=title, x=0, xanchor="left", font=dict(size=15)) if title else None,
        height=height,
        margin=dict(l=10, r=10, t=44 if title else 14, b=10),
        template=LIGHT,
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0),
        **layout,
    ))


def _threshold_line(threshold: float, label: bool = True) -> dict:
    """A dashed vertical line at ``threshold`` (layout shapes and annotations, for :func:`_figure`)."""
    line = dict(type="line", xref="x", yref="paper", x0=threshold, x1=threshold, y0=0, y1=1,
                line=dict(color=POINT_COLOUR, width=1.5, dash="dash"))
    note = dict(xref="x", yref="paper", x=threshold, y=1, text=f"threshold {threshold:.3f}", showarrow=False,
                xanchor="right", yanchor="top", bgcolor="rgba(255,255,255,0.85)")
    return {"shapes": [line], "annotations": [note] if label else []}


def type_probabilities(probabilities: Mapping[str, float], chosen: str | None = None,
                       title: str | None = "Tumor type probabilities") -> go.Figure:
    """Horizontal bars of the classifier's class probabilities, highest on top; ``chosen`` is drawn in the tumor
    colour, the others in grey.

    Args:
        probabilities: class name -> probability, e.g. ``Diagnosis.type_probabilities``.
        chosen: the class the cascade reports, if any.
    """
    ordered = sorted(probabilities.items(), key=lambda item: item[1])
    names = [class_label(name) for name, _ in ordered]
    values = [float(value) for _, value in ordered]
    colours = [TUMOR_COLOUR if name == chosen else NEUTRAL_COLOUR for name, _ in ordered]
    figure = go.Figure(go.Bar(
        x=values, y=names, orientation="h", marker_color=colours,
        text=[f"{value:.1%}" for value in values], textposition="outside", cliponaxis=False,
        hovertemplate="%{y}: %{x:.3f}<extra></extra>",
    ))
    figure.update_xaxes(range=[0, 1.12], tickformat=".0%", showgrid=True)
    return _layout(figure, title, height=60 + 42 * len(values), showlegend=False)


def confusion_matrix(matrix, class_names: Sequence[str], title: str | None = "Confusion matrix") -> go.Figure:
    """A confusion matrix as a heatmap: rows are the truth, columns the model's answer; each cell shows its count
    and its share of the row (for the tumor row of a detector, that share on the diagonal is the recall).

    Args:
        matrix: (C, C) counts, e.g. ``OperatingPoint.confusion_matrix()`` or a card's ``confusion_matrix``.
        class_names: C names in the order of the rows.
    """
    counts = np.asarray(matrix, dtype=float)
    row_totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, row_totals, out=np.zeros_like(counts), where=row_totals > 0)
    labels = [class_label(name) for name in class_names]
    text = [[f"{int(counts[i, j])}<br>{shares[i, j]:.0%}" for j in range(counts.shape[1])] for i in range(counts.shape[0])]
    heatmap = go.Heatmap(
        z=shares, x=labels, y=labels, text=text, texttemplate="%{text}", textfont=dict(size=14),
        colorscale="Blues", zmin=0, zmax=1, showscale=False,
        hovertemplate="truth %{y}, answer %{x}: %{text}<extra></extra>",
    )
    side = 90 + 70 * len(labels)
    return _figure([heatmap], title, height=min(max(side, 260), 460),
                   xaxis=dict(title=dict(text="model's answer"), side="bottom"),
                   yaxis=dict(autorange="reversed", title=dict(text="truth")))


def detector_confusion_matrix(point: OperatingPoint, title: str | None = "Confusion matrix") -> go.Figure:
    """The detector's 2 x 2 confusion matrix at an operating point."""
    return confusion_matrix(point.confusion_matrix(), ["notumor", "tumor"], title)


def _plottable_thresholds(sweep: ThresholdSweep) -> np.ndarray:
    # The sweep's last candidate sits just above 1 so that "flag nothing" exists; on a [0, 1] axis it is drawn at 1.
    return np.clip(sweep.thresholds, 0.0, 1.0)


def threshold_curves(sweep: ThresholdSweep, threshold: float,
                     names: Sequence[str] = ("recall", "specificity", "precision", "f1", "accuracy"),
                     title: str | None = "Metrics against the threshold") -> go.Figure:
    """Each metric as a step curve over the threshold, with the current threshold as a vertical line.

    Args:
        sweep: the detector's sweep over held-out predictions.
        threshold: the operating threshold to mark.
        names: attributes of the sweep to draw.
    """
    x = _plottable_thresholds(sweep)
    curves_ = [go.Scatter(
        x=x, y=np.asarray(getattr(sweep, name), dtype=float), mode="lines",
        line=dict(shape="vh", color=METRIC_COLOURS.get(name), width=2), name=metric_label(name), connectgaps=False,
        hovertemplate=f"{metric_label(name)} %{{y:.3f}} at threshold %{{x:.3f}}<extra></extra>",
    ) for name in names]
    return _figure(curves_, title, height=360, **_threshold_line(float(threshold)),
                   xaxis=dict(range=[0, 1], title=dict(text="threshold (tumor when P(tumor) ≥ threshold)")),
                   yaxis=dict(range=[-0.02, 1.04], tickformat=".0%"))


def score_distribution(labels, scores, threshold: float, bins: int = 40,
                       title: str | None = "Held-out P(tumor) by true class") -> go.Figure:
    """Overlaid histograms of P(tumor) for tumor and no-tumor cases, with the threshold: what lies right of the
    line is called tumor, so red bars left of it are missed tumors and blue bars right of it are false alarms.

    The bins are counted here rather than by plotly: plotly's bins are half-open, so scores of exactly 1.0 (a
    saturated float32 sigmoid) would fill a bin beyond the axis, out of sight. Here the last bin is closed,
    [1 - 1/bins, 1.0], as numpy counts it.

    Args:
        labels: (N,) 0 = no tumor, 1 = tumor. scores: (N,) P(tumor) in [0, 1].
    """
    labels = np.asarray(labels).astype(bool)
    scores = np.clip(np.asarray(scores, dtype=float), 0.0, 1.0)
    edges = np.linspace(0.0, 1.0, bins + 1)
    bars = []
    for mask, name, colour in ((~labels, "No tumor", CLEAR_COLOUR), (labels, "Tumor", TUMOR_COLOUR)):
        counts, _ = np.histogram(scores[mask], bins=edges)
        bars.append(go.Bar(
            x=(edges[:-1] + edges[1:]) / 2, y=counts, width=np.diff(edges), name=f"{name} (n={int(mask.sum())})",
            marker_color=colour, opacity=0.65, marker_line_width=0,
            customdata=[[low, high, "]" if i == bins - 1 else ")"] for i, (low, high) in enumerate(zip(edges[:-1], edges[1:]))],
            hovertemplate=f"{name}: %{{y}} cases with P(tumor) in [%{{customdata[0]:.3f}}, "
                          "%{customdata[1]:.3f}%{customdata[2]}<extra></extra>",
        ))
    return _figure(bars, title, height=320, barmode="overlay", bargap=0, **_threshold_line(float(threshold), label=False),
                   xaxis=dict(range=[0, 1], title=dict(text="P(tumor)")), yaxis=dict(title=dict(text="cases")))


def roc(curves_: Curves, point: OperatingPoint | None = None, title: str | None = None) -> go.Figure:
    """ROC curve (recall against the false-alarm rate) with its AUC, the chance diagonal and the operating point."""
    title = title or (f"ROC curve · AUC {curves_.roc_auc:.3f}" if math.isfinite(curves_.roc_auc) else "ROC curve")
    traces = [
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(color=NEUTRAL_COLOUR, dash="dot", width=1),
                   name="chance", hoverinfo="skip"),
        go.Scatter(x=curves_.roc_fpr, y=curves_.roc_tpr, mode="lines", line=dict(color=TUMOR_COLOUR, width=2),
                   name="model", hovertemplate="false-alarm rate %{x:.3f}, recall %{y:.3f}<extra></extra>"),
    ]
    if point is not None and math.isfinite(point.recall) and math.isfinite(point.specificity):
        traces.append(_point_marker(1 - point.specificity, point.recall, point.threshold))
    return _figure(traces, title, height=360,
                   xaxis=dict(range=[-0.01, 1.01], title=dict(text="1 − specificity (false-alarm rate)")),
                   yaxis=dict(range=[-0.01, 1.02], title=dict(text="recall"), scaleanchor="x", scaleratio=1))


def precision_recall(curves_: Curves, point: OperatingPoint | None = None, title: str | None = None) -> go.Figure:
    """Precision-recall curve with its average precision, the prevalence baseline and the operating point."""
    ap = curves_.average_precision
    title = title or (f"Precision-recall curve · AP {ap:.3f}" if math.isfinite(ap) else "Precision-recall curve")
    traces = []
    if point is not None and point.n:
        prevalence = (point.tp + point.fn) / point.n
        traces.append(go.Scatter(x=[0, 1], y=[prevalence, prevalence], mode="lines", name="prevalence",
                                 line=dict(color=NEUTRAL_COLOUR, dash="dot", width=1), hoverinfo="skip"))
    traces.append(go.Scatter(
        x=curves_.pr_recall, y=curves_.pr_precision, mode="lines", line=dict(color=TUMOR_COLOUR, width=2, shape="hv"),
        name="model", hovertemplate="recall %{x:.3f}, precision %{y:.3f}<extra></extra>",
    ))
    if point is not None and math.isfinite(point.recall) and math.isfinite(point.precision):
        traces.append(_point_marker(point.recall, point.precision, point.threshold))
    return _figure(traces, title, height=360, xaxis=dict(range=[-0.01, 1.01], title=dict(text="recall")),
                   yaxis=dict(range=[-0.01, 1.02], title=dict(text="precision")))


def _point_marker(x: float, y: float, threshold: float) -> go.Scatter:
    return go.Scatter(
        x=[x], y=[y], mode="markers", name=f"threshold {threshold:.3f}",
        marker=dict(color=POINT_COLOUR, size=12, symbol="circle-open", line=dict(width=3)),
        hovertemplate=f"threshold {threshold:.3f}: (%{{x:.3f}}, %{{y:.3f}})<extra></extra>",
    )


def reliability(calibration_: Calibration, title: str | None = None, what: str = "fraction with tumor") -> go.Figure:
    """Reliability diagram: per bin, the observed rate against the mean predicted probability; the diagonal is a
    perfectly calibrated model. Bar widths are the bins, hover shows how many cases each holds.

    Args:
        what: the y axis, "fraction with tumor" for a detector, "fraction correct" for a classifier.
    """
    title = title or f"Calibration · ECE {calibration_.ece:.3f}"
    edges = np.asarray(calibration_.bin_edges, dtype=float)
    centres = (edges[:-1] + edges[1:]) / 2
    accuracy = np.asarray(calibration_.bin_accuracy, dtype=float)
    counts = np.asarray(calibration_.bin_count, dtype=int)
    figure = go.Figure()
    figure.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration",
                                line=dict(color=NEUTRAL_COLOUR, dash="dot", width=1), hoverinfo="skip"))
    figure.add_trace(go.Bar(
        x=centres, y=np.nan_to_num(accuracy), width=np.diff(edges) * 0.92, name="model", marker_color=CLEAR_COLOUR,
        customdata=counts, hovertemplate=f"predicted %{{x:.2f}}: {what} %{{y:.2f}} (%{{customdata}} cases)<extra></extra>",
    ))
    figure.update_xaxes(range=[0, 1], title="predicted probability")
    figure.update_yaxes(range=[0, 1.02], title=what)
    return _layout(figure, title, height=340)


def training_history(history: Mapping[str, Sequence[float]], title: str | None = "Training curves") -> go.Figure:
    """Training and validation curves per epoch, one panel per quantity (loss, AUC, accuracy ...); the
    validation curve of each is dashed. Quantities without a per-epoch list are skipped.

    Args:
        history: a card's ``history``: ``{"loss": [...], "val_loss": [...], "auc": [...], ...}``.
    """
    quantities = [name for name in history if not name.startswith("val_") and name != "learning_rate"
                  and isinstance(history[name], (list, tuple)) and len(history[name]) > 0]
    if not quantities:
        return _layout(go.Figure(), "No training history in this card", height=120)
    figure = make_subplots(rows=1, cols=len(quantities), subplot_titles=[_quantity_label(q) for q in quantities])
    for column, name in enumerate(quantities, start=1):
        for key, dash, label in ((name, "solid", "training"), (f"val_{name}", "dash", "validation")):
            values = history.get(key)
            if not values:
                continue
            figure.add_trace(go.Scatter(
                x=list(range(1, len(values) + 1)), y=list(values), mode="lines+markers", name=label,
                line=dict(color=TUMOR_COLOUR if label == "training" else CLEAR_COLOUR, dash=dash, width=2),
                marker=dict(size=5), showlegend=column == 1, legendgroup=label,
                hovertemplate=f"{label} {name}, epoch %{{x}}: %{{y:.4f}}<extra></extra>",
            ), row=1, col=column)
        figure.update_xaxes(title_text="epoch", dtick=1 if len(history[name]) <= 12 else None, row=1, col=column)
    figure = _layout(figure, title, height=340)
    # Subplot titles sit where the legend would; the legend goes under the panels.
    figure.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.25, xanchor="left", x=0),
                         margin=dict(b=60))
    return figure


def _quantity_label(name: str) -> str:
    return {"loss": "Loss", "auc": "AUC", "accuracy": "Accuracy", "recall": "Recall", "precision": "Precision"}.get(
        name, name.replace("_", " ").capitalize())


def localisation(table: Mapping[str, Mapping[str, Mapping]], title: str | None = "Where the heatmaps point",
                 over: str = "all") -> go.Figure:
    """Grouped bars, per method, of the pointing game (share of maps whose peak lies on the lesion) and of the
    share of heatmap energy inside the lesion.

    Args:
        table: ``{method: {class: {"pointing_game", "energy_in_mask", "n"}}}``, as
            :func:`brainml.explain.localisation_table` returns.
        over: the class to draw; "all" pools every case.
    """
    methods = [method for method, by_class in table.items() if over in by_class]
    figure = go.Figure()
    for key, label, colour in (("pointing_game", "pointing game", TUMOR_COLOUR),
                               ("energy_in_mask", "energy inside the lesion", CLEAR_COLOUR)):
        values = [float(table[method][over][key]) for method in methods]
        figure.add_trace(go.Bar(
            x=[method_label(method) for method in methods], y=values, name=label, marker_color=colour,
            text=[f"{value:.0%}" for value in values], textposition="outside", cliponaxis=False,
        ))
    figure.update_yaxes(range=[0, 1.12], tickformat=".0%")
    return _layout(figure, title, height=340, barmode="group")


def scan_with_box(image, box, title: str | None = None) -> go.Figure:
    """A greyscale slice with a rectangle: the crop box that :func:`brainml.preprocess.prepare` cut out.

    Args:
        image: (H, W) floats in [0, 1].
        box: a :class:`~brainml.preprocess.CropBox` (rows [top, bottom), columns [left, right)).
    """
    image = np.asarray(image, dtype=float)
    height, width = image.shape
    figure = go.Figure(go.Heatmap(z=image, colorscale="gray", zmin=0, zmax=1, showscale=False,
                                  hovertemplate="row %{y}, column %{x}: %{z:.2f}<extra></extra>"))
    figure.add_shape(type="rect", x0=box.left - 0.5, x1=box.right - 0.5, y0=box.top - 0.5, y1=box.bottom - 0.5,
                     line=dict(color="#ffb000", width=3))
    figure.update_xaxes(visible=False, range=[-0.5, width - 0.5], constrain="domain")
    figure.update_yaxes(visible=False, range=[height - 0.5, -0.5], scaleanchor="x", scaleratio=1, constrain="domain")
    return _layout(figure, title, height=340, plot_bgcolor="black")


def heat_map(heat, colormap: str = "jet", title: str | None = None) -> go.Figure:
    """A heatmap on its own, as computed, with a colour bar of its values (no scan beneath, no smoothing).

    Args:
        heat: (H, W) map in [0, 1], e.g. ``HeatmapResult.map``.
        colormap: a colour scale name that plotly and matplotlib share ("jet", "inferno", "viridis", "turbo" ...).
    """
    heat = np.asarray(heat, dtype=float)
    height, width = heat.shape
    figure = go.Figure(go.Heatmap(z=heat, colorscale=colormap, zmin=0, zmax=1,
                                  colorbar=dict(title="", thickness=12, len=0.8),
                                  hovertemplate="row %{y}, column %{x}: %{z:.3f}<extra></extra>"))
    figure.update_xaxes(visible=False, range=[-0.5, width - 0.5], constrain="domain")
    figure.update_yaxes(visible=False, range=[height - 0.5, -0.5], scaleanchor="x", scaleratio=1, constrain="domain")
    return _layout(figure, title, height=520, plot_bgcolor="black")


def slice_strip(probabilities, threshold: float, current: int | None = None, skipped: Sequence = (),
                withheld: Sequence = (), truth: tuple[int, int] | None = None, title: str | None = None) -> go.Figure:
    """P(tumor) along a volume's slices, one bar per slice with a verdict (red at or above the threshold, blue below),
    the threshold line, the slice on show, and grey bands where slices have no verdict.

    Args:
        probabilities: (n,) P(tumor) per slice; NaN where there is none.
        skipped, withheld: runs of slices, as (first, last), with too little head, and that the guard refused.
        truth: (first, last) slices that hold the lesion, when known (the example volume): shaded and labelled.
    """
    probabilities = np.asarray(probabilities, float)
    slices = np.arange(len(probabilities))
    scored = ~np.isnan(probabilities)
    values = np.nan_to_num(probabilities)
    colours = np.where(values >= threshold, TUMOR_COLOUR, CLEAR_COLOUR)
    figure = go.Figure(go.Bar(
        x=slices[scored], y=values[scored], marker_color=colours[scored], marker_line_width=0, showlegend=False,
        hovertemplate="slice %{x}<br>P(tumor) %{y:.3f}<extra></extra>"))
    # Legend entries only (no data): what the colours and bands mean.
    legend = [("P(tumor) ≥ threshold", TUMOR_COLOUR), ("below", CLEAR_COLOUR)]
    for runs, label, shade in ((skipped, "skipped: too little head", "#e4e6ea"),
                               (withheld, "withheld: not like brain MRI", "#c9ccd3")):
        for first, last in runs:
            figure.add_vrect(x0=first - 0.5, x1=last + 0.5, fillcolor=shade, opacity=0.8, line_width=0, layer="below")
        if runs:
            legend.append((label, shade))
    for label, colour in legend:
        figure.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=label, hoverinfo="skip",
                                    marker=dict(color=colour, symbol="square", size=10)))
    figure.add_hline(y=threshold, line=dict(color=POINT_COLOUR, dash="dash", width=1),
                     annotation_text=f"threshold {threshold:.3f}", annotation_position="top right",
                     annotation_bgcolor="rgba(255,255,255,0.85)")
    if truth is not None:
        figure.add_vrect(x0=truth[0] - 0.5, x1=truth[1] + 0.5, fillcolor="#e5a02a", opacity=0.18, line_width=0,
                         layer="below", annotation_text="the tumor (truth)", annotation_position="outside top left")
    if current is not None:
        figure.add_vline(x=current, line=dict(color=POINT_COLOUR, width=2))
    figure.update_xaxes(title_text="slice", range=[-0.5, len(probabilities) - 0.5])
    figure.update_yaxes(title_text="P(tumor)", range=[0, 1.05])
    return _layout(figure, title, height=240, bargap=0.05, clickmode="event+select")

