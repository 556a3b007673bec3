"""What every reader returns and raises, and the limits and checks they share.

The limits are checked on declared sizes (image headers, DICOM tags, NIfTI dimensions, zip directories) before
anything is decoded or unpacked, so that a small upload cannot make the server allocate gigabytes.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import numpy as np

# 50 megapixels is ~7000 x 7000, far beyond any MRI slice; it is below Pillow's own bomb limit (~89 MP), so our
# check, made on the header before any pixel is decoded, always speaks first.
MAX_PIXELS = 50_000_000
# Below 64 pixels a side there is too little anatomy left for the models or for a person to check the result.
MIN_SIDE = 64
# A 3D volume or DICOM series: 100 M voxels (400 MB as float32) holds a 512 x 512 x 380 acquisition.
MAX_VOXELS = 100_000_000
# Cap on what gzip, zip and deflated DICOM may unpack to, counted as bytes are actually produced.
MAX_UNPACKED_BYTES = 512 * 2**20
# The window used when a source gives none: wide enough to keep the anatomy, narrow enough that a few hot
# voxels (vessels, artefacts) do not compress everything else into the dark end.
ROBUST_PERCENTILES = (0.5, 99.5)


class ScanError(ValueError):
    """A file that BrainML cannot read, with a message for the person who supplied it.

    Args:
        message: what is wrong and what to do, in plain words.
        filename: the file's name when known; it leads the message.
    """

    def __init__(self, message: str, filename: str | None = None):
        self.message = message
        self.filename = filename
        super().__init__(f"{filename}: {message}" if filename else message)


@dataclass(eq=False)  # arrays do not compare with ==; two scans are equal only if they are the same object
class Scan:
    """A decoded scan: one or more 2D slices and the facts about their source that are safe to show.

    Attributes:
        slices: (n_slices, H, W) float32 in [0, 1]; a 2D image is one slice.
        format: "PNG", "JPEG", "TIFF", "BMP", "WEBP", "GIF", "DICOM" or "NIfTI".
        name: the file's name, when known.
        original_size: (width, height) of one slice as stored in the file, before EXIF rotation or NIfTI
            reorientation; ``slices.shape`` gives the size as returned.
        bit_depth: bits per sample in the source (1, 8, 12, 16 ...; 32 for float data).
        pixel_spacing: (row, column) spacing in mm when the source states it, else None.
        chosen_slice: the slice to show first (NIfTI: the one with most brain; DICOM series: the middle one).
        metadata: non-identifying facts (modality, window, orientation ...); never names, IDs or dates.
        members: for a zip of separate scans (this one is its first): every file in the zip, ``(name, bytes)`` in
            name order, without folders, system clutter, password-protected entries or paths leading outside it.
    """

    slices: np.ndarray
    format: str
    name: str | None
    original_size: tuple[int, int]
    bit_depth: int
    pixel_spacing: tuple[float, float] | None = None
    chosen_slice: int = 0
    metadata: dict = field(default_factory=dict)
    members: tuple[tuple[str, bytes], ...] = field(default=(), repr=False)

    @property
    def n_slices(self) -> int:
        return int(self.slices.shape[0])

    @property
    def image(self) -> np.ndarray:
        """The chosen slice, (H, W) float32 in [0, 1]."""
        return self.slices[self.chosen_slice]

    def slice(self, index: int) -> np.ndarray:
        """Slice ``index`` (0-based), (H, W) float32 in [0, 1].

        Raises:
            ScanError: the scan has no such slice.
        """
        return self.slices[self._checked_index(index)]

    def _checked_index(self, index) -> int:
        try:
            position = operator.index(index)
        except TypeError:
            raise ScanError(f"The slice number must be a whole number, not {index!r}.", self.name) from None
        if not 0 <= position < self.n_slices:
            if self.n_slices == 1:
                raise ScanError(f"Slice {position} does not exist: this scan has one slice (number 0).", self.name)
            raise ScanError(
                f"Slice {position} does not exist: this scan has {self.n_slices} slices "
                f"(0 to {self.n_slices - 1}). Choose a slice in that range.",
                self.name,
            )
        return position


def size_text(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:,.0f} MB"


def check_slice_size(width: int, height: int, what: str = "image") -> None:
    """Refuse slices too large to decode safely or too small to read, from their declared size alone."""
    if width * height > MAX_PIXELS:
        raise ScanError(
            f"The {what} is {width}x{height} pixels ({width * height / 1e6:,.0f} megapixels); BrainML opens "
            f"images up to {MAX_PIXELS / 1e6:.0f} megapixels. Downscale it (an MRI slice rarely needs more than "
            "1024x1024) and upload it again."
        )
    if min(width, height) < MIN_SIDE:
        raise ScanError(
            f"The {what} is {width}x{height} pixels; at least {MIN_SIDE}x{MIN_SIDE} is needed. Upload the original "
            "scan rather than a thumbnail."
        )


def check_not_blank(values: np.ndarray, what: str = "image") -> None:
    if values.size == 0 or values.min() == values.max():
        raise ScanError(
            f"The {what} is blank (every pixel is the same), so there is nothing to examine. Check that the right "
            "file was exported; a failed export often gives an all-black image."
        )


def robust_range(values: np.ndarray) -> tuple[float, float]:
    """The 0.5th-99.5th percentile range, from at most ~2 M evenly spaced samples (fast on whole volumes)."""
    flat = values.ravel(order="K")  # memory order: no copy of a Fortran-ordered NIfTI volume
    sample = flat[:: max(1, flat.size // 2_000_000)]
    low, high = (float(v) for v in np.percentile(sample, ROBUST_PERCENTILES))
    if high <= low:
        low, high = float(flat.min()), float(flat.max())
    return low, high


def stretch(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map [low, high] linearly onto [0, 1], clipping outside, as float32."""
    scaled = (values.astype(np.float32, copy=False) - np.float32(low)) * np.float32(1.0 / (high - low))
    return np.clip(scaled, 0.0, 1.0, out=scaled)
