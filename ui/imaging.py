"""Display-side image adjustments that the pages offer (pure numpy, no streamlit)."""

from __future__ import annotations

import numpy as np


def rewindow(slice2d: np.ndarray, level: float, width: float) -> np.ndarray:
    """Window/level on a slice that the reader has already mapped to [0, 1].

    The reader applies the file's own window (DICOM WindowCenter/WindowWidth, else a 0.5-99.5 percentile window) and
    keeps no raw values, so this narrows or shifts *that* window: ``level`` and ``width`` are in the same [0, 1]
    units, and ``level=0.5, width=1.0`` leaves the slice unchanged. The result feeds both the display and the
    models, as a radiologist's window would change what they see.

    Args:
        slice2d: (H, W) float32 in [0, 1], or a stack of them (N, H, W).
        level: the window's centre, in [0, 1].
        width: the window's width, in (0, 1].
    Returns:
        The same shape, float32 in [0, 1].
    """
    if float(level) == 0.5 and float(width) == 1.0:
        return np.asarray(slice2d, np.float32)  # the file's own window: nothing to do (and no copy of a volume)
    width = max(float(width), 1e-3)
    low = float(level) - width / 2
    return np.clip((np.asarray(slice2d, np.float32) - low) / width, 0.0, 1.0).astype(np.float32)
