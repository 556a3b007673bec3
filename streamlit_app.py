"""BrainML: the home page. What the app does, which models it runs, and example scans to start from."""

import streamlit as st

from brainml import labels
from brainml.bundle import BundleError
from brainml.examples import REAL_EXAMPLES
from ui import loaders, sidebar, state

state.page_setup("Home")
choice = sidebar.model_picker()

st.title("BrainML")
st.markdown(
    "Finds brain tumors in 2D MRI slices and shows **why** it decided what it did. A **detector** says tumor or "
    "no tumor at a threshold you control; a **type classifier** names glioma, meningioma or pituitary tumor; "
    "**heatmaps** (Grad-CAM and relatives) show which pixels moved the score."
)

try:
    detector_card = loaders.cached_card(choice.detector)
    classifier_card = loaders.cached_card(choice.classifier) if choice.classifier else None
except BundleError as error:
    st.error(f"The chosen models cannot be used: {error}")
    st.stop()
state.disclaimer(detector_card, classifier_card)

st.subheader("Start with an example")
st.caption("Real MRI slices, one per class, from patients the default models never saw (the public sources are in "
           "brainml/assets/NOTICE.md). Open one in Detect to see the verdict and the heatmap; Detect also has synthetic "
           "slices with a known lesion, and the Lab makes new ones to order.")
home_examples = [example for example in REAL_EXAMPLES if example.key.endswith("-1")]
columns = st.columns(len(home_examples))
for column, example in zip(columns, home_examples):
    with column:
        st.image(loaders.real_example_scan(example.key).image, caption=example.title, width="stretch")
        if st.button("Open in Detect", key=f"home_open_{example.key}", icon=":material/arrow_forward:",
                     width="stretch"):
            state.forget_and_set("detect_source", "Example scan")
            state.forget_and_set("detect_example", example.key)
            st.switch_page("pages/1_Detect.py")

st.subheader("Pages")
pages = st.columns(5)
pages[0].page_link("pages/1_Detect.py", label="**Detect**", icon=":material/search:")
pages[0].caption("Upload a scan (image, DICOM, NIfTI) or pick an example: verdict, type, heatmap, report.")
pages[1].page_link("pages/2_Threshold_explorer.py", label="**Threshold explorer**", icon=":material/tune:")
pages[1].caption("Trade recall against specificity on held-out predictions, live.")
pages[2].page_link("pages/3_Batch.py", label="**Batch**", icon=":material/table_rows:")
pages[2].caption("Many files or a zip: a table, counts, thumbnails and a CSV.")
pages[3].page_link("pages/4_Model_card.py", label="**Model card**", icon=":material/description:")
pages[3].caption("Architecture, data, training curves, test metrics with intervals, limits.")
pages[4].page_link("pages/5_Lab.py", label="**Lab**", icon=":material/science:")
pages[4].caption("Make a tumor to order and compare where it is with where the model looked.")

st.subheader("The models in use")
left, right = st.columns(2)
with left:
    metrics = detector_card.metrics
    st.markdown(f"**Detector** · `{detector_card.name}` · {detector_card.architecture}")
    st.markdown(f"Trained on {detector_card.learned_from}. Operating threshold "
                f"**{(detector_card.threshold or 0.5):.3f}** ({detector_card.threshold_rule or 'rule not recorded'}).")
    if metrics.get("recall") is not None:
        cells = st.columns(3)
        for cell, name in zip(cells, ("recall", "specificity", "roc_auc")):
            value = metrics.get(name)
            text = "n/a" if value is None else f"{value:.3f}" if name == "roc_auc" else f"{value:.1%}"
            cell.metric(labels.metric_label(name), text)
        st.caption(f"On {metrics.get('n', '?')} held-out images: {detector_card.held_out_split or 'test split'}.")
with right:
    if classifier_card is None:
        st.markdown("**Type classifier** · none selected: the app reports the detector's verdict only.")
    else:
        metrics = classifier_card.metrics
        st.markdown(f"**Type classifier** · `{classifier_card.name}` · {classifier_card.architecture}")
        st.markdown(f"Trained on {classifier_card.learned_from}. Classes: "
                    + ", ".join(labels.class_label(name) for name in classifier_card.class_names) + ".")
        if metrics.get("accuracy") is not None:
            cells = st.columns(3)
            cells[0].metric("Accuracy", f"{metrics['accuracy']:.1%}")
            cells[1].metric("Macro F1", f"{metrics.get('macro_f1', float('nan')):.1%}")
            st.caption(f"On {metrics.get('n', '?')} held-out images: {classifier_card.held_out_split or 'test split'}.")

st.caption(detector_card.intended_use)

# After the page is drawn: the engines Detect's first verdict runs on, and the network its first heatmap explains.
with st.spinner("Getting the models ready…"):
    loaders.warm_up(loaders.models_or_stop(choice))
