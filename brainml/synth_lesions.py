"""The synthetic lesions, one entry per tumor type: where it sits on a slice, how hard it pushes the tissue around
it, and how it looks (each with its ground-truth extent).

- glioma: intra-axial (in the white matter), irregular, heterogeneous, often a necrotic core with an enhancing rim,
  surrounded by edema, with mass effect on the tissue around it;
- meningioma: extra-axial, dural-based (convexity, falx or skull base), round, homogeneous, well defined, pushing
  the brain inward, often with a cleft of CSF between it and the brain;
- pituitary: a midline sellar/suprasellar mass, only on slices through the sella.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import ndimage


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Smooth random field in about [-1, 1]: a coarse random grid upsampled with cubic splines."""
    coarse = rng.uniform(-1, 1, size=(cells, cells))
    return ndimage.zoom(coarse, (shape[0] / cells, shape[1] / cells), order=3, mode="nearest")[: shape[0], : shape[1]]


def _blob(shape, centre, radius, irregularity, rng, edge=1.0) -> np.ndarray:
    """Soft mask of a star-shaped blob: radius varies with angle by a few random harmonics."""
    rows, cols = np.indices(shape, dtype=np.float32)
    dy, dx = rows - centre[0], cols - centre[1]
    rho = np.hypot(dy, dx)
    theta = np.arctan2(dy, dx)
    boundary = np.ones_like(theta)
    for harmonic in range(2, 6):
        boundary += rng.uniform(0, irregularity) / harmonic**0.5 * np.cos(harmonic * theta + rng.uniform(0, 2 * np.pi))
    return np.clip((radius * boundary - rho) / edge + 0.5, 0, 1)


def _mass_effect(shape, centre, radius, strength) -> tuple[np.ndarray, np.ndarray]:
    """Source coordinates that push tissue away from ``centre`` (as a growing mass does), fading with distance."""
    rows, cols = np.indices(shape, dtype=np.float32)
    dy, dx = rows - centre[0], cols - centre[1]
    rho = np.hypot(dy, dx) + 1e-3
    # Tissue now at distance rho came from rho * (1 - pull): closer to the centre, so it looks pushed outward.
    pull = strength * np.exp(-((rho / (2.2 * radius)) ** 2))
    return centre[0] + dy * (1 - pull), centre[1] + dx * (1 - pull)


def _pick(rng: np.random.Generator, weights: np.ndarray) -> tuple[int, int]:
    flat = weights.ravel().astype(np.float64)
    index = rng.choice(flat.size, p=flat / flat.sum())
    return divmod(int(index), weights.shape[1])


def _near(position, shape, spread=12.0) -> np.ndarray | float:
    """Weights that favour sites near ``position`` (row, col fractions of the slice); 1 when no position is asked."""
    if position is None:
        return 1.0
    rows, cols = np.indices(shape, dtype=np.float32)
    target = np.array(position, np.float32) * (np.array(shape) - 1)
    return np.exp(-((rows - target[0]) ** 2 + (cols - target[1]) ** 2) / (2 * spread**2)) + 1e-9


def _place_glioma(fractions, intracranial, sella, rng, radius, position, low):
    """Intra-axial: in the white matter, far enough inside the brain for the whole mass."""
    white = fractions[2] * ndimage.binary_erosion(intracranial, iterations=int(radius * 0.5) + 2)
    if white.sum() < 20:
        return None
    return np.array(_pick(rng, (white**2 + 1e-6) * _near(position, intracranial.shape)), dtype=np.float32), radius


def _place_meningioma(fractions, intracranial, sella, rng, radius, position, low):
    """Extra-axial and dural-based: at the convexity, the falx or the skull base, pressed against the dura."""
    shape = intracranial.shape
    radius = min(radius, 22.0)
    edge = intracranial & ~ndimage.binary_erosion(intracranial, iterations=2)
    site = rng.choice(["convexity", "falx", "base"], p=[0.6, 0.2, 0.2])
    columns = np.arange(shape[1])[None, :]
    rows = np.arange(shape[0])[:, None]
    if site == "falx":
        midline = np.abs(columns - (shape[1] - 1) / 2) < 2
        candidates = intracranial & midline & ndimage.binary_erosion(intracranial, iterations=int(radius) + 2)
    elif site == "base":
        candidates = edge & (rows > shape[0] * 0.55)
    else:
        candidates = edge & (rows < shape[0] * 0.75)
    if candidates.sum() < 3:
        candidates = edge
    if candidates.sum() < 3:
        return None
    centre = np.array(_pick(rng, candidates.astype(np.float32) * _near(position, shape)), dtype=np.float32)
    if site != "falx":
        # Dural base: move the centre a third of the radius outward, so the mass sits against the skull.
        inward = np.array(ndimage.center_of_mass(intracranial)) - centre
        centre -= inward / (np.linalg.norm(inward) + 1e-6) * radius * 0.35
    return centre, radius


def _place_pituitary(fractions, intracranial, sella, rng, radius, position, low):
    """In the sella, cut somewhere along the (roughly spherical) adenoma's depth, sometimes extending upward."""
    radius = min(radius, 16.0)
    centre = sella + rng.normal(0, 1.5, size=2)
    depth = rng.uniform(0, 0.6) * radius
    radius = float(np.sqrt(max(radius**2 - depth**2, low**2)))
    if rng.uniform() < 0.5 and radius > 6:
        centre = centre - np.array([radius * 0.4, 0.0])  # suprasellar extension upward
    return centre, radius


def _draw_glioma(shape, centre, radius, intracranial, rng, config):
    """Irregular and heterogeneous; high-grade ones (70%) with a necrotic core and an enhancing rim; edema around."""
    tumor = _blob(shape, centre, radius, 0.35, rng, edge=1.5)
    tumor *= ndimage.gaussian_filter(intracranial.astype(np.float32), 1)
    high_grade = rng.uniform() < 0.7
    core = _blob(shape, centre, radius * rng.uniform(0.35, 0.65), 0.3, rng) if high_grade and radius > 4 else 0
    rim = np.clip(tumor - core, 0, 1) * (np.clip(_blob(shape, centre, radius * 0.85, 0.2, rng), 0, 1) if high_grade else 0)
    edema = _blob(shape, centre, radius * rng.uniform(1.3, 2.2), 0.5, rng, edge=4.0) * (0.8 if high_grade else 0.4)
    texture = 1 + 0.12 * smooth_noise(rng, shape, 12)
    return {"edema": edema, "solid": tumor * texture, "rim": rim, "necrosis": core * np.ones(shape, np.float32)}, tumor


def _draw_meningioma(shape, centre, radius, intracranial, rng, config):
    """Round, homogeneous and well defined, often with a CSF cleft between it and the brain."""
    tumor = _blob(shape, centre, radius, 0.06, rng, edge=0.8) * ndimage.binary_dilation(intracranial, iterations=1)
    appearance = {"meningioma": tumor * (1 + 0.04 * smooth_noise(rng, shape, 6))}
    if rng.uniform() < config.csf_cleft_rate:
        # A thin rim of CSF (a mm or two) where the mass meets the brain it pushes aside.
        shell = _blob(shape, centre, radius + rng.uniform(1.0, 2.5), 0.06, rng, edge=0.8)
        appearance["cleft"] = np.clip(shell - tumor, 0, 1) * intracranial * rng.uniform(0.6, 0.9)
    return appearance, tumor


def _draw_pituitary(shape, centre, radius, intracranial, rng, config):
    tumor = _blob(shape, centre, radius, 0.1, rng, edge=0.8)
    return {"pituitary": tumor * (1 + 0.08 * smooth_noise(rng, shape, 8))}, tumor


@dataclass(frozen=True)
class LesionKind:
    """How one tumor type is placed on a slice, how hard it pushes the tissue around it, and how it looks."""

    place: Callable
    mass_effect: Callable[[float], float]
    draw: Callable


LESIONS = {
    "glioma": LesionKind(_place_glioma, lambda radius: float(np.clip(0.15 + radius / 50, 0, 0.6)), _draw_glioma),
    "meningioma": LesionKind(_place_meningioma, lambda radius: float(np.clip(0.15 + radius / 50, 0, 0.6)),
                             _draw_meningioma),
    "pituitary": LesionKind(_place_pituitary, lambda radius: 0.2, _draw_pituitary),
}


def draw_lesion(label, fractions, brain, sella, rng, config, radius_mm=None, position=None):
    """Draw the lesion onto the source grid. Returns (appearance maps, tumor alpha, source coordinates, centre)."""
    kind = LESIONS[label]
    shape = brain.shape
    intracranial = ndimage.binary_fill_holes(brain)
    # Mostly the medium-to-large lesions public data sets show, with a tail of small ones (a few mm) to keep it hard.
    low, high = config.lesion_radius_mm
    radius = float(rng.uniform(low, 8.0) if rng.uniform() < 0.2 else rng.uniform(8.0, high))
    if radius_mm is not None:
        radius = float(radius_mm)
    placed = kind.place(fractions, intracranial, sella, rng, radius, position, low)
    if placed is None:
        return None
    centre, radius = placed
    source_rows, source_cols = _mass_effect(shape, centre, radius, kind.mass_effect(radius))
    # Only what lies inside the skull moves; skull and scalp stay put.
    inside = ndimage.gaussian_filter(intracranial.astype(np.float32), 2)
    rows, cols = np.indices(shape, dtype=np.float32)
    source_rows = rows + (source_rows - rows) * inside
    source_cols = cols + (source_cols - cols) * inside
    appearance, tumor = kind.draw(shape, centre, radius, intracranial, rng, config)
    return appearance, tumor.astype(np.float32), (source_rows, source_cols), centre
