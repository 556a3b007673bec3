"""What leaves the app: a short HTML report of one result, and the table (and CSV) of a batch.

A report records the models, their card's metrics, the threshold and the result, with the heatmap overlay embedded
as a PNG. It never holds patient data: no file name, no DICOM tags, only the image the user already has on screen.
Both outputs are built in memory; nothing is written to disk.
"""

from __future__ import annotations

import base64
import csv
import html
import io
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from . import __version__
from .bundle import ModelCard
from .labels import class_label, metric_label, metric_text
from .metrics import OperatingPoint
from .predict import Diagnosis

DETECTOR_METRICS = ("recall", "specificity", "precision", "npv", "accuracy", "f1", "roc_auc")
# What a slice the out-of-distribution guard refused gets instead of a verdict.
WITHHELD = "This does not look like a brain MRI slice; no verdict"


def decimals(value: float, reference: float, fewest: int = 3, most: int = 17) -> int:
    """How many decimals show ``value`` and ``reference`` as different numbers when they are (P(tumor) a hair
    above the threshold must not read "0.550 >= 0.550"): ``fewest``, or more up to ``most``. A confident model's
    P(tumor) can sit 1e-12 below a threshold of 1.0; 17 places tell any two different float64 values in [0, 1]."""
    places = fewest
    while places < most and value != reference and f"{value:.{places}f}" == f"{reference:.{places}f}":
        places += 1
    return places


def verdict_text(diagnosis: Diagnosis) -> str:
    """One line a person reads: "Tumor likely (glioma)", "No tumor found", or, for a slice the guard refused,
    :data:`WITHHELD`."""
    if diagnosis.withheld:
        return WITHHELD
    if not diagnosis.tumor:
        return "No tumor found"
    return f"Tumor likely ({class_label(diagnosis.type).lower()})" if diagnosis.type else "Tumor likely"


# --- one result as HTML --------------------------------------------------------------------------------------


def html_report(
    diagnosis: Diagnosis,
    detector_card: ModelCard,
    classifier_card: ModelCard | None = None,
    overlay_png: bytes | None = None,
    heatmap: str | None = None,
    scan: str | None = None,
    operating_point: OperatingPoint | None = None,
    created: datetime | None = None,
) -> str:
    """A self-contained HTML page recording one result.

    Args:
        diagnosis: the result at the threshold the user chose.
        detector_card, classifier_card: the cards of the models that produced it.
        overlay_png: the heatmap overlay as PNG bytes, embedded as a data URI.
        heatmap: how the heatmap was made, e.g. "Grad-CAM of the detector's tumor score".
        scan: a non-identifying description of the input, e.g. "DICOM, 512 x 512, slice 12 of 24".
        operating_point: the detector's held-out metrics at this threshold, when the card has held-out data.
        created: the report's time (default: now, UTC).

    Returns:
        The page as a string (UTF-8); open it in any browser or print it to PDF.
    """
    created = created or datetime.now(timezone.utc)
    escape = html.escape
    notice = detector_card.notice
    sections = [
        f"<h1>BrainML result</h1><p class='meta'>{escape(created.strftime('%Y-%m-%d %H:%M UTC'))} · BrainML "
        f"{escape(__version__)}</p>",
        f"<div class='notice'><strong>Research and teaching tool, not a diagnosis.</strong> {escape(notice)}</div>",
        _result_section(diagnosis, scan),
    ]
    if overlay_png:
        encoded = base64.b64encode(overlay_png).decode("ascii")
        caption = escape(heatmap or "Heatmap over the scan")
        sections.append(f"<h2>Where the model looked</h2><figure><img alt='heatmap overlay' "
                        f"src='data:image/png;base64,{encoded}'><figcaption>{caption}. A heatmap shows which pixels "
                        "moved the model's score; it is not a segmentation of the tumor.</figcaption></figure>")
    if operating_point is not None:
        sections.append(_operating_point_section(operating_point, detector_card))
    sections.append(_card_section("Detector", detector_card))
    if classifier_card is not None:
        sections.append(_card_section("Type classifier", classifier_card))
    sections.append("<p class='meta'>This report holds no patient data: no file name, no DICOM tags. It was made in "
                    "memory and not stored by the app.</p>")
    return _PAGE.format(body="\n".join(sections))


def _interval(values, name: str = "") -> str:
    if not values or values[0] is None or values[1] is None:
        return ""
    return f" ({metric_text(name, values[0])} – {metric_text(name, values[1])})"


def _result_section(diagnosis: Diagnosis, scan: str | None) -> str:
    escape = html.escape
    if diagnosis.withheld:
        rows = [("Verdict", f"<strong>{escape(WITHHELD)}</strong>"),
                ("Why", escape((diagnosis.note or "").split("no verdict.", 1)[-1].strip())),
                ("Out-of-distribution score", f"{diagnosis.ood_score:.2f} (over 1 is refused)")]
        if scan:
            rows.insert(0, ("Input", escape(scan)))
        return "<h2>Result</h2>" + _table(rows)
    places = decimals(diagnosis.tumor_probability, diagnosis.threshold)
    rows = [
        ("Verdict", f"<strong class='{'tumor' if diagnosis.tumor else 'clear'}'>{escape(verdict_text(diagnosis))}"
                    "</strong>"),
        ("P(tumor)", f"{diagnosis.tumor_probability:.{places}f}"),
        ("Threshold", f"{diagnosis.threshold:.{places}f} (tumor when P(tumor) ≥ threshold)"),
    ]
    if scan:
        rows.insert(0, ("Input", escape(scan)))
    if diagnosis.type_probabilities:
        ordered = sorted(diagnosis.type_probabilities.items(), key=lambda item: -item[1])
        rows.append(("Type probabilities", ", ".join(f"{escape(class_label(name))} {p:.1%}" for name, p in ordered)))
    if diagnosis.note:
        rows.append(("Note", escape(diagnosis.note)))
    return "<h2>Result</h2>" + _table(rows)


def _operating_point_section(point: OperatingPoint, card: ModelCard) -> str:
    rows = [(metric_label(name), f"{getattr(point, name):.1%}{_interval(getattr(point, name + '_ci'), name)}")
            for name in ("recall", "specificity", "precision", "accuracy")]
    rows.append(("Confusion matrix", f"TP {point.tp} · FP {point.fp} · TN {point.tn} · FN {point.fn}"))
    split = html.escape(card.held_out_split or "held-out data")
    return (f"<h2>The detector at threshold {point.threshold:.3f}</h2><p>On {point.n} cases of the {split} "
            "(95% Wilson intervals):</p>" + _table(rows))


def _card_section(title: str, card: ModelCard) -> str:
    escape = html.escape
    rows = [
        ("Model", escape(card.name)),
        ("Architecture", escape(card.architecture)),
        ("Trained on", card.learned_from),
    ]
    if card.threshold is not None:
        rows.append(("Card threshold", f"{card.threshold:.3f} — {escape(card.threshold_rule or 'rule not recorded')}"))
    metrics = card.metrics or {}
    for name in DETECTOR_METRICS if card.task == "detect" else ("accuracy", "macro_f1"):
        if name in metrics:
            rows.append((metric_label(name), f"{metric_text(name, metrics[name])}{_interval(metrics.get(name + '_ci'), name)}"))
    if card.held_out_split:
        rows.append(("Measured on", escape(card.held_out_split) + (f", n = {metrics['n']}" if "n" in metrics else "")))
    return f"<h2>{escape(title)}</h2>" + _table(rows)


def _table(rows) -> str:
    cells = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in rows)
    return f"<table>{cells}</table>"


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>BrainML result</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 820px; margin: 2em auto;
       padding: 0 1em; color: #1d2230; line-height: 1.45; }}
h1 {{ margin-bottom: 0.1em; }} h2 {{ margin-top: 1.6em; border-bottom: 1px solid #dde1e8; padding-bottom: 0.2em; }}
.meta {{ color: #5f6675; font-size: 0.9em; }}
.notice {{ background: #fff4e0; border-left: 4px solid #e5a02a; padding: 0.7em 1em; margin: 1em 0; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ text-align: left; padding: 0.35em 0.6em; border-bottom: 1px solid #eceff3; vertical-align: top; }}
th {{ width: 34%; color: #4b5263; font-weight: 600; }}
.tumor {{ color: #b3261e; }} .clear {{ color: #1f5f99; }}
figure {{ margin: 0; }}
figure img {{ width: 100%; max-width: 720px; height: auto; image-rendering: auto; border-radius: 4px; }}
figcaption {{ color: #5f6675; font-size: 0.9em; }}
</style></head>
<body>
{body}
</body></html>
"""


# --- a batch of files ----------------------------------------------------------------------------------------


@dataclass
class BatchRow:
    """One file of a batch: its result, or why it could not be read, or that the guard refused it.

    Attributes:
        file: the file's name (for a zip, "archive.zip/member.png").
        slice: the slice diagnosed (volumes: the one with most brain, or the middle of a series); None for errors.
        tumor_probability, tumor, type: the result at the batch's threshold; None for errors and for slices the
            out-of-distribution guard refused.
        error: the reader's message for a file that could not be read, else None.
        brain_mri: False when the guard refused the slice; None when the models have no guard.
        ood_score: the guard's score (over 1 is refused), when the models have a guard.
    """

    file: str
    slice: int | None = None
    tumor_probability: float | None = None
    tumor: bool | None = None
    type: str | None = None
    error: str | None = None
    brain_mri: bool | None = None
    ood_score: float | None = None

    @property
    def verdict(self) -> str:
        if self.error is not None:
            return "unreadable"
        if self.brain_mri is False:
            return NOT_BRAIN_MRI
        return "tumor" if self.tumor else "no tumor"

    def to_dict(self) -> dict:
        values = asdict(self)
        values["verdict"] = self.verdict
        return {key: values[key] for key in ("file", "slice", "tumor_probability", "verdict", "type", "error",
                                             "ood_score")}


# A batch row's verdict for a slice the guard refused.
NOT_BRAIN_MRI = "not a brain MRI slice"


def batch_row(file: str, result: Diagnosis | str, threshold: float, slice_index: int | None = None) -> BatchRow:
    """A batch row from a diagnosis made at threshold 0.0 (see :meth:`Diagnosis.at`), or from an error message.
    P(tumor) keeps its full precision: rounded, 0.9999996 would read "1.000" beside "no tumor" at threshold 1."""
    if isinstance(result, str):
        return BatchRow(file, error=result)
    if result.withheld:
        return BatchRow(file, slice_index, brain_mri=False, ood_score=result.ood_score)
    at_threshold = result.at(threshold)
    return BatchRow(file, slice_index, at_threshold.tumor_probability, at_threshold.tumor, at_threshold.type,
                    brain_mri=result.brain_mri, ood_score=result.ood_score)


def batch_summary(rows: Iterable[BatchRow]) -> dict[str, int]:
    """Counts of files by verdict: ``{"files", "tumor", "no tumor", "not a brain MRI slice", "unreadable"}``; the
    slices the guard refused count in none of the verdicts."""
    counts = {"files": 0, "tumor": 0, "no tumor": 0, NOT_BRAIN_MRI: 0, "unreadable": 0}
    for row in rows:
        counts["files"] += 1
        counts[row.verdict] += 1
    return counts


def batch_csv(rows: Iterable[BatchRow], threshold: float, models: Mapping[str, str]) -> str:
    """The batch as CSV text: one row per file, with the threshold and the models in every row so the file
    still says how it was made when it is cut apart."""
    buffer = io.StringIO()
    fields = ["file", "slice", "tumor_probability", "verdict", "type", "error", "ood_score", "threshold", "detector",
              "classifier"]
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row.to_dict(), "threshold": f"{threshold:.6f}", "detector": models.get("detector", ""),
                         "classifier": models.get("classifier", "")})
    return buffer.getvalue()


def metric_rows(metrics: Mapping, names: Iterable[str] = DETECTOR_METRICS) -> list[dict]:
    """A card's metrics as table rows ``{"name", "metric", "value", "ci_low", "ci_high"}``, for the names it holds
    ("name" is the card's key, "metric" what people read).

    Args:
        metrics: a card's ``metrics`` (test report) dictionary.
        names: which metrics, in order; those the card lacks are left out.
    """
    rows = []
    for name in names:
        if name not in metrics:
            continue
        low, high = (metrics.get(f"{name}_ci") or (None, None))[:2]
        rows.append({"name": name, "metric": metric_label(name), "value": metrics[name], "ci_low": low,
                     "ci_high": high})
    return rows


def localisation_rows(table: Mapping[str, Mapping[str, Mapping]]) -> list[dict]:
    """A localisation table (``{method: {class: {...}}}``, see :func:`brainml.explain.localisation_table`) as
    flat rows ``{"method", "class", "pointing_game", "energy_in_mask", "n"}``, pooled rows ("all") first."""
    rows = []
    for method, by_class in table.items():
        for name in sorted(by_class, key=lambda item: (item != "all", item)):
            values = by_class[name]
            rows.append({"method": method, "class": name, "pointing_game": values.get("pointing_game"),
                         "energy_in_mask": values.get("energy_in_mask"), "n": values.get("n")})
    return rows
