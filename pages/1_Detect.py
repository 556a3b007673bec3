"""Detect: a scan in (upload or example), the verdict at the shared threshold, the tumor type, and the heatmap."""

import streamlit as st

from brainml import charts, viz
from brainml.report import html_report
from brainml.volume import PLANES
from ui import imaging, loaders, scan_picker, sidebar, state, views

state.page_setup("Detect")
choice = sidebar.model_picker()
models = loaders.models_or_stop(choice)

st.title("Detect")
picked = scan_picker.pick_scan("detect")
scan, image, description, scan_id, truth = picked.scan, picked.image, picked.description, picked.scan_id, picked.truth

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
