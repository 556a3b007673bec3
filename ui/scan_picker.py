"""Choosing a scan: one of BrainML's examples or a file of one's own. Detect and the Lab share this widget."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from brainml import labels
from brainml.example_volume import TITLE as EXAMPLE_VOLUME_TITLE
from brainml.examples import EXAMPLES, REAL_EXAMPLES, find_example, find_real_example
from brainml.io import READABLE, SUPPORTED_EXTENSIONS, Scan, ScanError

from . import loaders, state

SOURCES = ("Example scan", "Upload a scan")
VOLUME_EXAMPLE = "volume-glioma"


@dataclass(frozen=True)
class PickedScan:
    """The scan a person chose.

    Attributes:
        image: the slice to show first (a volume's is its reader's default slice).
        description: what the scan is, for captions and reports.
        scan_id: identifies the scan across reruns ("example:KEY" or "upload:FILE_ID").
        scan: the decoded file, or None for a synthetic slice generated on the spot.
        truth: for the example volume, the (first, last) axial slices that hold its lesion.
    """

    image: np.ndarray
    description: str
    scan_id: str
    scan: Scan | None = None
    truth: tuple[int, int] | None = None


def example_title(key: str) -> str:
    if key == VOLUME_EXAMPLE:
        return f"Synthetic · {EXAMPLE_VOLUME_TITLE}"
    return find_real_example(key).title if key.startswith("real-") else f"Synthetic · {find_example(key).title}"


def pick_scan(prefix: str, volumes: bool = True) -> PickedScan:
    """A source choice (example or upload) and then the example list or the file uploader, under keys starting with
    ``prefix``. An uploaded file stays in the session when its page is left. Stops the page, with a message, while
    no file is uploaded or when the file cannot be read.

    Args:
        volumes: offer the example volume (a page that shows one slice at a time leaves it out).
    """
    top = st.columns([1, 2])
    source = state.remembered(top[0].radio, "Source", key=f"{prefix}_source", default=SOURCES[0], options=list(SOURCES))
    if source == SOURCES[0]:
        return _example(prefix, top[1], volumes)
    return _upload(prefix, top[1])


def _example(prefix: str, column, volumes: bool) -> PickedScan:
    keys = [e.key for e in REAL_EXAMPLES] + ([VOLUME_EXAMPLE] if volumes else []) + [e.key for e in EXAMPLES]
    key = state.remembered(
        column.selectbox, "Example", key=f"{prefix}_example", default=REAL_EXAMPLES[0].key, options=keys,
        format_func=example_title,
        help="Real slices from patients the default models never saw (sources in brainml/assets/NOTICE.md)"
             + (", a synthetic whole-head volume" if volumes else "")
             + ", and synthetic slices with a known answer; the Lab makes more.",
    )
    scan_id = f"example:{key}"
    if key == VOLUME_EXAMPLE:
        scan = loaders.example_volume_scan()
        return PickedScan(scan.image, f"BrainML example volume (synthetic, {scan.n_slices} axial slices)", scan_id,
                          scan, loaders.example_volume().lesion_slices)
    if key.startswith("real-"):
        real = find_real_example(key)
        scan = loaders.real_example_scan(key)
        label = labels.class_label(real.label).lower()
        return PickedScan(scan.image, f"real example '{real.title}' ({real.source}; labelled {label})", scan_id, scan)
    example = find_example(key)
    return PickedScan(loaders.example_case(key).image, f"BrainML example '{example.title}' (synthetic)", scan_id)


def _upload(prefix: str, column) -> PickedScan:
    key = f"{prefix}_upload"
    uploaded = column.file_uploader(
        "Scan file", type=list(SUPPORTED_EXTENSIONS), key=key, on_change=loaders.forget_removed_upload, args=(key,),
        help=f"{READABLE}. The file stays in this server's memory for this session and is never written to disk.",
    )
    # The uploader forgets its file when the user opens another page; the session keeps it for their return.
    upload = loaders.kept_upload(uploaded, key)
    if upload is None:
        st.info(f"Upload one slice or volume: {READABLE}. Or switch to an example scan above.")
        st.stop()
    if uploaded is None:
        kept = column.columns([3, 1], vertical_alignment="center")
        kept[0].caption(f":material/attach_file: **{upload.name}**, uploaded earlier in this session; drop another "
                        "file above to replace it.")
        kept[1].button("Forget it", key=f"{prefix}_forget", on_click=loaders.forget_upload, args=(key,),
                       icon=":material/close:", width="stretch")
    try:
        scan = loaders.read_upload(upload)
    except ScanError as error:
        st.error(str(error), icon=":material/error:")
        st.stop()
    height, width = scan.image.shape
    return PickedScan(scan.image, f"uploaded {scan.format}, {width} × {height} pixels", f"upload:{upload.file_id}", scan)
