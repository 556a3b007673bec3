"""Batch: many files (or a zip) in, one row per scan out, with counts, thumbnails and a CSV."""

import streamlit as st

from brainml import labels, viz
from brainml.example_volume import NAME as EXAMPLE_VOLUME_NAME
from brainml.examples import EXAMPLES, REAL_EXAMPLES
from brainml.io import READABLE, SUPPORTED_EXTENSIONS
from brainml.report import NOT_BRAIN_MRI, batch_csv, batch_row, batch_summary
from ui import loaders, sidebar, state, views

THUMBNAILS = 24

state.page_setup("Batch")
choice = sidebar.model_picker()
models = loaders.models_or_stop(choice)

st.title("Batch")
st.markdown(f"Drop many scans, or a zip of them: {READABLE}. Each file gets a row; a file that cannot be read gets "
            "its reason and the batch goes on. A volume or DICOM series is scored on every slice and gets one row, "
            "its most suspicious slice; its per-slice table is below the batch table.")
uploads = st.file_uploader("Scans", type=list(SUPPORTED_EXTENSIONS), accept_multiple_files=True, key="batch_upload",
                           help="Files stay in this server's memory for this session; nothing is written to disk.")
use_examples = False
if uploads:
    # The uploader lists three files a page; this lists them all.
    with st.expander(f"All {len(uploads)} uploaded files"):
        st.dataframe([{"File": upload.name, "Size (kB)": round(upload.size / 1024, 1)} for upload in uploads],
                     hide_index=True, width="stretch", height="content", key="batch_uploaded_files",
                     column_config={"File": st.column_config.TextColumn(width="large")})
# Real-data models get the real example slices: synthetic ones are unlike what they learned from.
real_examples = not models.detector.card.trained_on_synthetic
if not uploads:
    examples_help = ("Runs the batch on BrainML's real example slices, from patients the default models never saw, and "
                     "on its synthetic example volume."
                     if real_examples else "Runs the batch on BrainML's synthetic example scans.")
    use_examples = st.toggle("Try it on the built-in examples", key="batch_use_examples", help=examples_help)
    if not use_examples:
        st.stop()

threshold = state.threshold_slider(models, key="batch_threshold")
st.caption(views.verdict_source(models))
state.disclaimer(*models.cards)

if use_examples and real_examples:
    # The real slices, and the example volume to show what a volume's row looks like.
    items = [loaders.BatchItem(example.path.name, scan=loaders.real_example_scan(example.key))
             for example in REAL_EXAMPLES] + [loaders.BatchItem(EXAMPLE_VOLUME_NAME, scan=loaders.example_volume_scan())]
    images = [item.scan.image for item in items]
    slices = [None] * len(items)
elif use_examples:
    items = [loaders.BatchItem(example.file_name, scan=None) for example in EXAMPLES]
    images = [loaders.example_case(example.key).image for example in EXAMPLES]
    slices = [None] * len(EXAMPLES)
else:
    items = loaders.batch_items(uploads)
    images = [item.scan.image if item.scan is not None else None for item in items]
    slices = [item.scan.chosen_slice if item.scan is not None and item.scan.n_slices > 1 else None for item in items]

# One batched cascade pass for the single slices; each volume is scored on every slice (its own batched pass).
single = [position for position, (item, image) in enumerate(zip(items, images))
          if image is not None and (item.scan is None or item.scan.n_slices == 1)]
results: list = [item.error for item in items]
with st.spinner(f"Running the models on {len(single)} slices…"):
    diagnoses = loaders.diagnose_many_or_stop(models, [images[i] for i in single], [items[i].scan for i in single])
for position, diagnosis in zip(single, diagnoses):
    results[position] = diagnosis
volumes = {}
for position, item in enumerate(items):
    if item.scan is not None and item.scan.n_slices > 1:
        view = loaders.volume_view_or_stop(models, item.scan, f"batch:{position}:{item.name}")
        volumes[position] = view.scores.at(threshold)
        results[position] = view.scores.representative()
        slices[position] = view.scores.slice_of_max
        if slices[position] is not None:
            images[position] = view.stack[slices[position]]

rows = [batch_row(item.name, result, threshold, slice_index)
        for item, result, slice_index in zip(items, results, slices)]
counts = batch_summary(rows)
cells = st.columns(5)
cells[0].metric("Files", counts["files"])
cells[1].metric("Tumor", counts["tumor"])
cells[2].metric("No tumor", counts["no tumor"])
cells[3].metric("Not brain MRI", counts[NOT_BRAIN_MRI],
                help="Images the out-of-distribution guard found unlike the brain MRI slices the models learned "
                     "from: no verdict, and counted in neither Tumor nor No tumor.")
cells[4].metric("Unreadable", counts["unreadable"])

views.batch_table(rows, threshold, key="batch_table")
for position, scores in volumes.items():
    views.volume_strip(scores, slices[position] if slices[position] is not None else 0, key=f"batch_volume_{position}",
                       slider_key=None, file_stem=items[position].name.split("/")[-1].split(".")[0],
                       title=items[position].name)
st.download_button("Download the table (CSV)", batch_csv(rows, threshold, models.cascade.model_labels),
                   file_name="brainml_batch.csv", mime="text/csv", key="batch_download_csv",
                   icon=":material/download:")

if st.toggle("Show thumbnails with heatmaps", key="batch_thumbnails",
             help=f"Grad-CAM of the detector's tumor score over the first {THUMBNAILS} readable scans."):
    readable = [(row, image, result) for row, image, result in zip(rows, images, results) if image is not None]
    columns = st.columns(4)
    for position, (row, image, result) in enumerate(readable[:THUMBNAILS]):
        heat = loaders.heatmap(models, image, loaders.DEFAULT_METHOD,
                               diagnosis=None if isinstance(result, str) else result).map
        kind = f" ({labels.class_label(row.type)})" if row.type else ""
        score = "" if row.tumor_probability is None else f" · P(tumor) {views.comparison(row.tumor_probability, threshold)}"
        caption = f"{row.file}{score} · {row.verdict}{kind}"
        columns[position % 4].image(viz.overlay(image, heat), caption=caption, width="stretch")
    if len(readable) > THUMBNAILS:
        st.caption(f"The first {THUMBNAILS} of {len(readable)} readable scans; open any file on Detect for more.")
