"""How well a heatmap points at a known lesion: the pointing game and the share of its energy inside the mask.

Pure numpy on maps and masks of the same grid, so pages and reports can score heatmaps without loading a model.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# The pointing game's tolerance: Zhang et al. (ECCV 2016) count a peak within 15 px of the object at 224 px;
# lesions here can be a few pixels wide, so a peak counts when it lies within this many pixels of the mask.
POINTING_TOLERANCE_PX = 4


def pointing_game(heat: np.ndarray, mask: np.ndarray, tolerance: int = POINTING_TOLERANCE_PX) -> bool | np.ndarray:
    """Whether a map's peak falls on the lesion (Zhang et al., "Top-down neural attention by excitation
    backprop", ECCV 2016).

    The peak is the map's first maximum in row-major order; it counts as a hit when it lies within
    ``tolerance`` pixels (Euclidean) of a mask pixel, i.e. inside the mask dilated by a disc of that radius,
    so a peak on the lesion's rim is not lost to a one-pixel offset. An empty map never hits.

    Args:
        heat: (H, W) map, or (N, H, W) maps.
        mask: bool lesion mask(s) of the same shape.
        tolerance: the dilation radius in pixels; 0 asks for the peak strictly inside the mask.
    Returns:
        A bool for one map, an (N,) bool array for a stack.
    """
    heat, mask, single = _paired(heat, mask)
    flat = heat.reshape(len(heat), -1)
    rows, cols = np.unravel_index(flat.argmax(axis=1), heat.shape[1:])
    reach = _dilate(mask, tolerance)
    hits = reach[np.arange(len(heat)), rows, cols] & (flat > 0).any(axis=1)
    return bool(hits[0]) if single else hits



def energy_in_mask(heat: np.ndarray, mask: np.ndarray) -> float | np.ndarray:
    """The share of a map's total value that lies inside the lesion mask (the "energy-based pointing game" of
    Wang et al., Score-CAM, 2020). 1.0 means every bit of attention is on the lesion; an empty map scores 0.

    Args:
        heat: (H, W) non-negative map, or (N, H, W) maps.
        mask: bool lesion mask(s) of the same shape.
    Returns:
        A float for one map, an (N,) float array for a stack.
    """
    heat, mask, single = _paired(heat, mask)
    heat = np.clip(heat, 0.0, None).astype(np.float64)
    total = heat.reshape(len(heat), -1).sum(axis=1)
    inside = (heat * mask).reshape(len(heat), -1).sum(axis=1)
    share = np.divide(inside, total, out=np.zeros_like(total), where=total > 0)
    return float(share[0]) if single else share



def _paired(heat, mask):
    heat = np.nan_to_num(np.asarray(heat, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    mask = np.asarray(mask, bool)
    if heat.shape != mask.shape:
        raise ValueError(f"The map has shape {heat.shape} but the mask has shape {mask.shape}.")
    if heat.ndim not in (2, 3):
        raise ValueError(f"Expected (H, W) or (N, H, W) maps, got shape {heat.shape}.")
    single = heat.ndim == 2
    return (heat[None], mask[None], True) if single else (heat, mask, False)



def _dilate(masks: np.ndarray, radius: int) -> np.ndarray:
    """Dilate each (H, W) mask of an (N, H, W) stack by a disc, never across the stack."""
    if radius <= 0:
        return masks
    offsets = np.arange(-radius, radius + 1)
    disc = offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2
    return ndimage.binary_dilation(masks, structure=disc[None])
