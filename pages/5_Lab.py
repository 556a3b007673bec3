"""Lab: make a tumor to order, see where it truly is and where the model looked; and how a scan becomes model input."""

import streamlit as st

from brainml import labels, synth, viz
from brainml.metrics import energy_in_mask, pointing_game
from brainml.preprocess import prepare
from brainml.report import verdict_text
from ui import loaders, scan_picker, sidebar, state, views

TRUTH_COLOUR = (0, 255, 0)

state.page_setup("Lab")
# The Lab's cases are synthetic, with known tumor masks: it starts on the pair that learned from such slices,
# under its own picker, so the other pages keep the models chosen there.
choice = sidebar.model_picker(
    prefix="lab_models", defaults=sidebar.ModelChoice(str(sidebar.SYNTHETIC_DETECTOR), str(sidebar.SYNTHETIC_CLASSIFIER)),
    note="The Lab starts on the synthetic pair: its cases are synthetic slices, like the ones those models learned "
         "from. The choice here applies to the Lab only.",
)
models = loaders.models_or_stop(choice)

st.title("Lab")
case_tab, volume_tab, prep_tab = st.tabs(["A tumor to order", "A whole volume", "From scan to model input"])


def next_case() -> None:
    state.forget_and_set("lab_seed", int(st.session_state.get("lab_seed", 0)) + 1)


with case_tab:
    st.markdown("Choose a tumor, generate a synthetic slice that holds it, and compare **where the tumor is** "
                "(the generator knows) with **where the model looked** (the heatmap).")
    row = st.columns(5)
    label = state.remembered(row[0].selectbox, "Tumor type", key="lab_label", default="glioma",
                             options=list(labels.CLASS_NAMES), format_func=labels.class_label)
    contrast = state.remembered(row[1].selectbox, "Contrast", key="lab_contrast", default="T1c",
                                options=list(synth.CONTRASTS),
                                help="T1c is T1-weighted after contrast agent: enhancing tumors light up.")
    plane = state.remembered(row[2].selectbox, "Plane", key="lab_plane", default="axial", options=list(synth.PLANES))
    radius = state.remembered(row[3].slider, "Radius (mm)", key="lab_radius", default=15.0, min_value=3.0,
                              max_value=26.0, step=0.5, format="%.1f", disabled=label == "notumor",
                              help="Meningiomas are capped at 22 mm and pituitary tumors at 16 mm, as the "
                                   "generator draws them.")
    method = state.remembered(row[4].selectbox, "Heatmap method", key="lab_method", default=loaders.DEFAULT_METHOD,
                              options=list(loaders.METHODS), format_func=loaders.method_label)
    row = st.columns([1.4, 1.2, 1.2, 1, 1], vertical_alignment="bottom")
    placeable = label in ("glioma", "meningioma")
    place = state.remembered(row[0].toggle, "Choose the position", key="lab_place", default=False,
                             disabled=not placeable,
                             help="Gliomas go to the nearest white matter, meningiomas to the nearest dura; "
                                  "pituitary tumors always sit in the sella.")
    position = None
    if place and placeable:
        up_down = state.remembered(row[1].slider, "Top ↔ bottom", key="lab_row", default=0.4, min_value=0.0,
                                   max_value=1.0, step=0.05)
        left_right = state.remembered(row[2].slider, "Left ↔ right", key="lab_col", default=0.6, min_value=0.0,
                                      max_value=1.0, step=0.05)
        position = (up_down, left_right)
    seed = state.remembered(row[3].number_input, "Seed", key="lab_seed", default=1, min_value=0, step=1,
                            help="The same choices and seed give the same slice.")
    row[4].button("New case", key="lab_new", on_click=next_case, icon=":material/casino:", width="stretch")

    case = loaders.lab_case(label, contrast, plane, None if label == "notumor" else radius, position, int(seed))
    threshold = state.threshold_for(models)
    unthresholded = loaders.diagnose_or_stop(models, case.image)
    diagnosis = unthresholded.at(threshold)
    result = loaders.heatmap(models, case.image, method, diagnosis=unthresholded)

    truth, looked, answer = st.columns([2, 2, 2], gap="medium")
    truth.image(viz.mask_outline(case.image, case.mask, TRUTH_COLOUR, width=2) if case.mask.any() else case.image,
                caption=f"Where the tumor is: {labels.class_label(case.label)}, {case.contrast}, {case.plane}"
                        + (f" (outlined, {case.lesion_area_px} px)" if case.mask.any() else ""), width="stretch")
    picture = viz.overlay(case.image, result.map, contour=True)
    if case.mask.any():
        picture = viz.mask_outline(picture, case.mask, TRUTH_COLOUR, width=1)
    looked.image(picture, caption=f"Where the model looked: {loaders.method_label(method)} of the detector's tumor "
                                  "score (white: its hottest region; green: the tumor)", width="stretch")
    with answer:
        views.verdict(diagnosis, models, "lab", subject=repr((label, contrast, plane, radius, position, seed)))
        st.markdown("#### Did it look at the tumor?")
        if not case.mask.any():
            st.markdown("There is no tumor in this slice, so there is nothing to point at; a good detector gives a "
                        "low P(tumor) here and its tumor map has no clear hot spot.")
        elif result.empty:
            st.markdown("The heatmap is empty: the model found no evidence for a tumor anywhere.")
        else:
            hit = pointing_game(result.map, case.mask)
            share = energy_in_mask(result.map, case.mask)
            if hit:
                st.success("Yes: the heatmap's peak lies on the tumor (pointing game hit).", icon=":material/my_location:")
            else:
                st.error("No: the heatmap's peak lies off the tumor (pointing game miss).", icon=":material/location_off:")
            st.markdown(f"**{share:.0%}** of the heatmap's energy lies inside the tumor, which covers "
                        f"{case.mask.mean():.1%} of the slice.")
        state.disclaimer(*models.cards)

with volume_tab:
    example = loaders.example_volume()
    first, last = example.lesion_slices
    st.markdown(f"The example volume: a whole head (Colin27 anatomy) rendered as post-contrast T1, with a glioma on "
                f"axial slices **{first}–{last}** (shaded below). Every slice is scored; compare where P(tumor) is "
                "high with where the tumor truly is.")
    volume_scan = loaders.example_volume_scan()
    view = loaders.volume_view_or_stop(models, volume_scan, "example:volume-glioma")
    scores = view.scores.at(state.threshold_for(models))
    best = scores.slice_of_max
    if "lab_volume_slice" not in st.session_state:
        st.session_state["lab_volume_slice"] = best if best is not None else volume_scan.chosen_slice
    slice_index = st.slider("Slice", 0, len(view.stack) - 1, key="lab_volume_slice",
                            help="Click a bar of the chart to jump to its slice.")
    views.volume_strip(scores, slice_index, key="lab_volume_strip", slider_key="lab_volume_slice",
                       file_stem="example_volume", truth=(first, last), title="The models on this volume")
    found = set(i for run in scores.tumor_runs for i in range(run[0], run[1] + 1))
    lesion = set(range(first, last + 1))
    slice_image = view.stack[slice_index]
    slice_mask = example.mask_slices()[slice_index]
    volume_map = loaders.heatmap(models, slice_image, loaders.DEFAULT_METHOD)
    shown = st.columns(3, gap="medium")
    shown[0].image(viz.mask_outline(slice_image, slice_mask, TRUTH_COLOUR, width=2) if slice_mask.any() else slice_image,
                   caption=f"Slice {slice_index}: " + ("the tumor outlined in green" if slice_mask.any() else "no tumor on this slice"),
                   width="stretch")
    volume_overlay = viz.overlay(slice_image, volume_map.map, contour=True)
    if slice_mask.any():
        volume_overlay = viz.mask_outline(volume_overlay, slice_mask, TRUTH_COLOUR, width=1)
    shown[1].image(volume_overlay, width="stretch",
                   caption=f"Where the model looked: {loaders.method_label(loaders.DEFAULT_METHOD)} of the tumor score")
    with shown[2]:
        on_show = scores.slices[slice_index].diagnosis
        if on_show is None:
            st.markdown(f"Slice {slice_index} has too little head on it: it was skipped.")
        else:
            st.markdown(f"Slice {slice_index}: **{verdict_text(on_show)}**, P(tumor) {on_show.tumor_probability:.3f}.")
        if best is not None:
            inside = "inside" if first <= best <= last else "outside"
            st.markdown(f"The most suspicious slice, **{best}**, is **{inside}** the tumor. At this threshold the models "
                        f"call tumor on **{len(found & lesion)} of the {len(lesion)}** slices that hold it, and on "
                        f"**{len(found - lesion)}** slices that do not.")

with prep_tab:
    st.markdown("Every model sees a slice the same way, in training and here: crop to the head, resize to the "
                "model's input, then normalise the intensities. The steps for any scan:")
    SOURCES = ("The Lab's case", "Another scan")
    source = state.remembered(st.radio, "Scan", key="lab_prep_source", default=SOURCES[0], options=list(SOURCES),
                              horizontal=True)
    image = case.image
    if source == SOURCES[1]:
        image = scan_picker.pick_scan("lab_scan", volumes=False).image
    spec = models.detector.card.prep_spec
    tensor, box = prepare(image, spec)
    model_input = tensor[..., 0]
    shown = (model_input - model_input.min()) / max(float(model_input.max() - model_input.min()), 1e-6)
    # Three pictures of one kind, so their captions line up under them.
    steps = st.columns(3)
    steps[0].image(viz.box_outline(image, box), width="stretch",
                   caption=f"1 · The slice, {image.shape[1]} × {image.shape[0]} pixels, and the head's box (rows "
                           f"{box.top}–{box.bottom}, columns {box.left}–{box.right})")
    steps[1].image(image[box.top:box.bottom, box.left:box.right], width="stretch", clamp=True,
                   caption=f"2 · Cropped to the box: {box.width} × {box.height} pixels")
    steps[2].image(shown, width="stretch", clamp=True,
                   caption=f"3 · Model input: {spec.size} × {spec.size} pixels, normalised")
    st.markdown("The detector's preprocessing, from its model card:")
    st.dataframe(views.prep_rows(spec), hide_index=True, width="stretch", height="content", key="lab_prep_steps")
    st.caption("Heatmaps are computed on the model input and mapped back through the same box onto the original "
               "slice.")
