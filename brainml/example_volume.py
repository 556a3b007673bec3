"""A whole example volume anyone can try: the Colin27 head rendered as post-contrast T1, with a glioma through
a known run of axial slices and its mask.

Made by the project's own code from the anatomy asset the synthetic generator uses (``assets/colin27_head.npz``),
with a fixed seed, so every machine gets the same voxels. The lesion is a high-grade glioma as post-contrast T1 shows
it: an irregular enhancing mass in the white matter with a patchy necrotic centre and darker edema around it; its
mask is the whole enhancing and necrotic mass, as in the public tumor masks.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from functools import lru_cache

import nibabel
import numpy as np
from scipy import ndimage

from . import synth

SEED = 2024
# The glioma's centre in MNI millimetres (right parietal white matter) and its mean radius.
LESION_CENTRE_MNI = np.array([28.0, -14.0, 20.0])
LESION_RADIUS_MM = 19.0
EDEMA_FACTOR = 1.7
# Post-contrast T1 means (from synth.TISSUE_MEANS["T1c"]) for the lesion's parts.
T1C = dict(zip(synth.TISSUES, synth.TISSUE_MEANS["T1c"]))
# The enhancing tumor, between the generator's solid tumor and its brightest rim: clearly above white matter.
ENHANCING = 0.73
NAME = "example_volume_glioma_t1c.nii.gz"
TITLE = "Whole head · glioma · T1c volume (172 axial slices)"


@dataclass(frozen=True)
class ExampleVolume:
    """The example volume in RAS+ voxel order (x right, y anterior, z superior), 1 mm isotropic.

    Attributes:
        volume: (X, Y, Z) float32 in [0, 1].
        mask: (X, Y, Z) bool, the tumor (enhancing and necrotic parts).
        affine: voxel -> MNI millimetres.
    """

    volume: np.ndarray
    mask: np.ndarray
    affine: np.ndarray

    @property
    def lesion_slices(self) -> tuple[int, int]:
        """(first, last) axial slice that holds tumor, counted from the bottom as the readers number them."""
        z = np.flatnonzero(self.mask.any(axis=(0, 1)))
        return int(z[0]), int(z[-1])

    def nifti_bytes(self) -> bytes:
        """The volume as a gzipped NIfTI-1 file (16-bit integers), as a user would upload it."""
        return _nifti(np.round(self.volume * 1000).astype(np.int16), self.affine)

    def mask_nifti_bytes(self) -> bytes:
        """The mask as a gzipped NIfTI-1 file (0 and 1)."""
        return _nifti(self.mask.astype(np.uint8), self.affine)

    def mask_slices(self) -> np.ndarray:
        """(Z, H, W) bool: the mask on the readers' axial slices (anterior up, the patient's right on the left)."""
        return np.ascontiguousarray(self.mask[::-1, ::-1, :].transpose(2, 1, 0))


@lru_cache(maxsize=1)
def example_volume() -> ExampleVolume:
    t1, brain, origin = synth.load_anatomy()
    rng = np.random.default_rng([SEED, 7])
    fractions = synth._tissue_fractions(t1, brain)
    means = np.array([T1C[name] for name in ("csf", "grey", "white", "fat", "bone", "soft")], np.float32)
    image = np.tensordot(means, fractions, axes=1).astype(np.float32)

    # The lesion is drawn inside its bounding box only: the rest of the head needs none of this arithmetic.
    centre = origin + LESION_CENTRE_MNI
    reach = int(np.ceil(LESION_RADIUS_MM * EDEMA_FACTOR * 1.4))
    low = np.maximum(np.round(centre).astype(int) - reach, 0)
    high = np.minimum(np.round(centre).astype(int) + reach + 1, t1.shape)
    box = tuple(slice(a, b) for a, b in zip(low, high))
    shape = tuple(high - low)
    offset = np.indices(shape, dtype=np.float32) - (centre - low)[:, None, None, None]
    distance = np.sqrt((offset ** 2).sum(axis=0))
    # A smooth random radius makes the border irregular; a finer texture makes the enhancement patchy.
    radius = LESION_RADIUS_MM * (1 + 0.35 * _smooth_field(rng, shape, 7))
    texture = _smooth_field(rng, shape, 14)
    in_brain = brain[box]
    tumor = (distance <= radius) & in_brain
    core = distance <= radius * 0.45 * (1 + 0.4 * texture)  # the necrotic centre
    edema = (distance <= radius * EDEMA_FACTOR) & ~tumor & in_brain & (fractions[2][box] > 0.3)
    part = image[box]
    part[edema] = 0.6 * part[edema] + 0.4 * T1C["edema"]
    part[tumor] = ENHANCING + 0.08 * texture[tumor]
    necrotic = tumor & core
    part[necrotic] = T1C["necrosis"] + 0.1 + 0.08 * texture[necrotic]
    mask = np.zeros(t1.shape, bool)
    mask[box] = tumor

    # What the scanner adds: a slow bias field, a little blur, Rician noise.
    image *= np.exp(0.12 * _smooth_field(rng, t1.shape, 3))
    image = ndimage.gaussian_filter(image, 0.6)
    sigma = 0.015
    image = np.hypot(image + rng.normal(0, sigma, image.shape).astype(np.float32),
                     rng.normal(0, sigma, image.shape).astype(np.float32))
    image = np.clip(image / np.percentile(image[::4, ::4, ::4], 99.8), 0, 1).astype(np.float32)
    affine = np.eye(4)
    affine[:3, 3] = -origin
    return ExampleVolume(volume=image, mask=mask, affine=affine)


def _nifti(voxels: np.ndarray, affine: np.ndarray) -> bytes:
    image = nibabel.Nifti1Image(voxels, affine)
    image.header.set_xyzt_units("mm")
    return gzip.compress(image.to_bytes(), compresslevel=6, mtime=0)


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], cells: int) -> np.ndarray:
    """A smooth random field of about unit spread: ``cells`` random values per axis, interpolated to ``shape``."""
    coarse = rng.normal(0, 1, (cells,) * len(shape)).astype(np.float32)
    coordinates = np.meshgrid(*[np.linspace(0, cells - 1, n, dtype=np.float32) for n in shape], indexing="ij",
                              sparse=True)
    return ndimage.map_coordinates(coarse, np.broadcast_arrays(*coordinates), order=1)
