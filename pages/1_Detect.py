"""Detect: a scan in (upload or example), the verdict at the shared threshold, the tumor type, and the heatmap."""

import streamlit as st

from brainml import charts, labels, viz
from brainml.example_volume import TITLE as EXAMPLE_VOLUME_TITLE
from brainml.examples import EXAMPLES, REAL_EXAMPLES, find_example, find_real_example
from brainml.io import READABLE, SUPPORTED_EXTENSIONS, ScanError
from brainml.report import html_report
from brainml.volume import PLANES
from ui import imaging, loaders, sidebar, state, views

state.page_setup("Detect")
choice = sidebar.model_picker()
models = loaders.models_or_stop(choice)



VOLUME_EXAMPLE = "volume-glioma"
truth = None  # the slices that hold the lesion, known only for the example volume


def example_title(key: str) -> str:
    if key == VOLUME_EXAMPLE:
        return f"Synthetic · {EXAMPLE_VOLUME_TITLE}"
    return find_real_example(key).title if key.startswith("real-") else f"Synthetic · {find_example(key).title}"


st.title("Detect")
SOURCES = ("Example scan", "Upload a scan")
top = st.columns([1, 2])
source = state.remembered(top[0].radio, "Source", key="detect_source", default=SOURCES[0], options=list(SOURCES))

if source == SOURCES[0]:
    example_key = state.remembered(
        top[1].selectbox, "Example", key="detect_example", default=REAL_EXAMPLES[0].key,
        options=[e.key for e in REAL_EXAMPLES] + [VOLUME_EXAMPLE] + [e.key for e in EXAMPLES], format_func=example_title,
        help="Real slices from patients the default models never saw (sources in brainml/assets/NOTICE.md), a "
             "synthetic whole-head volume, and synthetic slices with a known answer; the Lab makes more.",
    )
    scan_id = f"example:{example_key}"
    if example_key == VOLUME_EXAMPLE:
        scan = loaders.example_volume_scan()
        truth = loaders.example_volume().lesion_slices
        description = f"BrainML example volume (synthetic, {scan.n_slices} axial slices)"
    elif example_key.startswith("real-"):
        real = find_real_example(example_key)
        scan = loaders.real_example_scan(example_key)
        image = scan.image
        label = labels.class_label(real.label).lower()
        description = f"real example '{real.title}' ({real.source}; labelled {label})"
    else:
        example = find_example(example_key)
        image = loaders.example_case(example_key).image
        scan = None
        description = f"BrainML example '{example.title}' (synthetic)"
else:
    uploaded = top[1].file_uploader(
        "Scan file", type=list(SUPPORTED_EXTENSIONS), key="detect_upload",
        on_change=loaders.forget_removed_upload, args=("detect_upload",),
        help=f"{READABLE}. The file stays in this server's memory for this session and is never written to disk.",
    )
    # The uploader forgets its file when the user opens another page; the session keeps it for their return.
    upload = loaders.kept_upload(uploaded, "detect_upload")
    if upload is None:
        st.info(f"Upload one slice or volume: {READABLE}. Or switch to an example scan above.")
        st.stop()
    if uploaded is None:
        kept = top[1].columns([3, 1], vertical_alignment="center")
        kept[0].caption(f":material/attach_file: **{upload.name}**, uploaded earlier in this session; drop another "
                        "file above to replace it.")
        kept[1].button("Forget it", key="detect_forget", on_click=loaders.forget_upload, args=("detect_upload",),
                       icon=":material/close:", width="stretch")
    try:
        scan = loaders.read_upload(upload)
    except ScanError as error:
        st.error(str(error), icon=":material/error:")
        st.stop()
    scan_id = f"upload:{upload.file_id}"
    image = scan.image
    height, width_px = image.shape
    description = f"uploaded {scan.format}, {width_px} × {height} pixels"

if st.session_state.get("detect_scan_id") != scan_id:
    # A new scan starts on its own default window and plane (and, for a volume, its most suspicious slice).
    st.session_state["detect_level"], st.session_state["detect_width"] = 0.5, 1.0
    st.session_state["detect_plane"] = PLANES[0]
    st.session_state.pop("detect_volume_key", None)
view = None
windowed = scan is not None and scan.format in ("DICOM", "NIfTI")
if scan is not None and scan.n_slices > 1:
    controls = st.columns([1, 3, 1], vertical_alignment="bottom")
    plane = PLANES[0]
    if scan.format == "NIfTI":
        plane = controls[0].selectbox("Plane", PLANES, key="detect_plane",
                                      help="Axial is the plane the models learned from; coronal and sagittal slices "
                                           "are cut across the volume.")
    view = loaders.volume_view_or_stop(models, scan, scan_id, plane, st.session_state.get("detect_level", 0.5),
                                       st.session_state.get("detect_width", 1.0))
    if st.session_state.get("detect_volume_key") != (scan_id, plane):
        # The page opens on the most suspicious slice of a new volume or plane.
        best = view.scores.slice_of_max
        st.session_state["detect_slice"] = best if best is not None else min(scan.chosen_slice, len(view.stack) - 1)
        st.session_state["detect_volume_key"] = (scan_id, plane)
    slice_index = controls[1].slider("Slice", 0, len(view.stack) - 1, key="detect_slice",
                                     help="Opens on the slice with the highest P(tumor); click a bar of the chart "
                                          "below to jump to its slice.")
    image = view.stack[slice_index]
    description += f", {plane} slice {slice_index} of 0–{len(view.stack) - 1}"
    volume_area = st.container()
if windowed:
    with (controls[2] if view is not None else st).expander("Window / level"):
        level = st.slider("Level", 0.0, 1.0, step=0.01, key="detect_level")
        width = st.slider("Width", 0.05, 1.0, step=0.01, key="detect_width")
        st.caption("Adjusts the file's own window (shown as level 0.5, width 1.0). The models see the "
                   "re-windowed slices too.")
    if view is None:
        image = imaging.rewindow(image, level, width)
st.session_state["detect_scan_id"] = scan_id

scored = view.scores.slices[slice_index] if view is not None else None
if scored is not None and scored.diagnosis is not None:
    unthresholded = scored.diagnosis  # the volume pass already diagnosed this slice
else:
    with st.spinner("Running the models…"):
        unthresholded = loaders.diagnose_or_stop(models, image, scan)

left, right = st.columns([3, 2], gap="large")
with right:
    threshold = state.threshold_slider(models, key="detect_threshold", narrow=True)
    diagnosis = unthresholded.at(threshold)
    st.session_state["detect_last"] = {"tumor_probability": diagnosis.tumor_probability, "scan": description,
                                       "withheld": diagnosis.withheld}
    if view is not None:
        st.markdown(f"**Slice {slice_index}** of the volume")
    if scored is not None and scored.diagnosis is None:
        st.warning("This slice has too little head on it to be scored with the volume, and the volume's verdict "
                   "leaves it out. The answer below is the models' on this slice alone.", icon=":material/warning:")
    views.verdict(diagnosis, models, "detect", subject=scan_id)
    state.disclaimer(*models.cards)

with left:
    settings = views.heatmap_controls("detect", models)
    result = loaders.heatmap(models, image, settings.method, settings.target, diagnosis=unthresholded)
    picture = viz.overlay(image, result.map, colormap=settings.colormap, opacity=settings.opacity,
                          contour=settings.contour)
    caption = f"{loaders.method_label(settings.method)} of {loaders.target_phrase(settings.target)}"
    if diagnosis.withheld:
        caption += " (the models' unguarded score: no verdict was given)"
    if result.empty:
        explained = diagnosis.models_answer if diagnosis.withheld else diagnosis
        st.info(views.empty_heatmap_message(explained, loaders.method_label(settings.method), settings.target),
                icon=":material/info:")
    scan_column, map_column = st.columns(2)
    scan_column.image(image, caption=f"The scan: {description}", width="stretch", clamp=True)
    if settings.raw:
        map_column.plotly_chart(charts.heat_map(result.map, settings.colormap), width="stretch",
                                key="detect_raw_map", config={"displayModeBar": False})
        map_column.caption(f"{caption}: the map alone, as computed (no smoothing, no masking).")
    else:
        map_column.image(picture, caption=caption, width="stretch")

    overlay_png = viz.to_png_bytes(picture)
    held_out = loaders.held_out(models)
    report = html_report(
        diagnosis, models.detector.card, models.classifier.card if models.classifier else None,
        overlay_png=viz.to_png_bytes(viz.enlarged(picture)), heatmap=caption, scan=description,
        operating_point=held_out.sweep.at(threshold) if held_out and not diagnosis.withheld else None,
    )
    downloads = st.columns(2)
    downloads[0].download_button("Download the image (PNG)", overlay_png, file_name="brainml_heatmap.png",
                                 mime="image/png", key="detect_download_png", icon=":material/image:",
                                 width="stretch")
    downloads[1].download_button("Download a report (HTML)", report, file_name="brainml_report.html",
                                 mime="text/html", key="detect_download_report", icon=":material/description:",
                                 width="stretch")

if view is not None:
    with volume_area:
        on_truth = truth is not None and view.scores.plane == "axial"
        views.volume_strip(view.scores.at(threshold), slice_index, key="detect_strip", slider_key="detect_slice",
                           file_stem=(scan.name or "volume").split(".")[0], truth=truth if on_truth else None)
        if on_truth:
            st.caption(f"This synthetic volume holds a glioma on axial slices {truth[0]}–{truth[1]} (shaded): the "
                       "chart shows where the models agree with the truth and where they do not.")

if scan is not None:
    with st.expander("About this file (no patient data: the reader keeps no names, IDs or dates)"):
        views.scan_facts(scan, key="detect_scan_facts")
