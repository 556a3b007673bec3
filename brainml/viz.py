"""Pictures for pages and reports: heatmap overlays, ground-truth outlines, side-by-side panels, PNG bytes.

Pure numpy, PIL and matplotlib colormaps (no pyplot, no TensorFlow), so pages can import it freely. Heatmaps are
drawn as computed: smoothing or masking happens only when asked for by name.
"""

from __future__ import annotations

import io
from functools import lru_cache

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont

CONTOUR_COLOR = (255, 255, 255)
OUTLINE_COLOR = (0, 255, 0)
CAPTION_HEIGHT = 18
PANEL_GAP = 4


def overlay(
    image2d: np.ndarray,
    heat2d: np.ndarray,
    colormap: str = "jet",
    opacity: float = 0.45,
    contour: bool = False,
    contour_level: float = 0.7,
    contour_color: tuple[int, int, int] = CONTOUR_COLOR,
    smooth_sigma: float = 0.0,
    restrict_to: np.ndarray | None = None,
) -> np.ndarray:
    """Blend a heatmap over a grey slice.

    Each pixel's colour weight is ``opacity * heat``, so where the map is cold the anatomy shows through
    untouched and only the hot regions are tinted.

    Args:
        image2d: (H, W) grey slice in [0, 1].
        heat2d: (H, W) heatmap in [0, 1] on the same grid (e.g. :attr:`brainml.explain.HeatmapResult.map`).
        colormap: a matplotlib colormap name.
        opacity: the colour weight where the map is 1; 0 returns the grey slice.
        contour: outline the hottest region, where the map reaches ``contour_level`` times its maximum.
        contour_level: the outlined level, as a fraction of the map's maximum.
        contour_color: RGB of the outline.
        smooth_sigma: blur the map with a Gaussian of this many pixels before drawing. Off by default: a smoothed
            map is no longer what the model computed.
        restrict_to: an optional (H, W) bool mask (e.g. the head); the map is drawn only inside it. Off by
            default for the same reason.
    Returns:
        (H, W, 3) uint8 RGB.
    Raises:
        ValueError: the image is not 2D, or the map's shape differs from the image's.
    """
    grey = _grey(image2d)
    heat = np.nan_to_num(np.asarray(heat2d, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if heat.shape != grey.shape:
        raise ValueError(f"The heatmap has shape {heat.shape} but the image has shape {grey.shape}; "
                         "map it onto the image's grid first (brainml.explain.heatmap does).")
    if smooth_sigma > 0:
        from scipy import ndimage

        heat = ndimage.gaussian_filter(heat, smooth_sigma)
    if restrict_to is not None:
        heat = np.where(np.asarray(restrict_to, bool), heat, 0.0)
    heat = np.clip(heat, 0.0, 1.0)
    # In place on one float32 buffer: a 512 x 512 overlay takes a few milliseconds.
    rgb = _lookup_table(colormap)[np.rint(heat * 255).astype(np.uint8)]
    base = (grey * np.float32(255))[..., None]
    rgb -= base
    rgb *= (np.float32(np.clip(opacity, 0.0, 1.0)) * heat)[..., None]
    rgb += base
    rgb = np.rint(rgb, out=rgb).astype(np.uint8)
    if contour and heat.max() > 0:
        rgb[_boundary(heat >= contour_level * heat.max())] = contour_color
    return rgb


def mask_outline(
    image2d: np.ndarray, mask: np.ndarray, color: tuple[int, int, int] = OUTLINE_COLOR, width: int = 1
) -> np.ndarray:
    """Draw the outline of a mask (e.g. a synthetic lesion's ground truth) on a slice or an overlay.

    Args:
        image2d: (H, W) grey slice in [0, 1], or an (H, W, 3) uint8 RGB picture such as :func:`overlay` returns.
        mask: (H, W) bool mask.
        color: RGB of the outline.
        width: the outline's width in pixels, drawn just inside the mask.
    Returns:
        (H, W, 3) uint8 RGB.
    """
    rgb = _rgb(image2d)
    mask = np.asarray(mask, bool)
    if mask.shape != rgb.shape[:2]:
        raise ValueError(f"The mask has shape {mask.shape} but the image has shape {rgb.shape[:2]}.")
    rgb[_boundary(mask, width)] = color
    return rgb


def side_by_side(
    image2d: np.ndarray,
    overlay_rgb: np.ndarray,
    caption_left: str | None = None,
    caption_right: str | None = None,
) -> np.ndarray:
    """The slice and its overlay next to each other, with optional captions above them.

    Args:
        image2d: (H, W) grey slice in [0, 1], or (H, W, 3) uint8 RGB.
        overlay_rgb: (H', W', 3) uint8 RGB.
        caption_left, caption_right: short texts drawn above each panel.
    Returns:
        (rows, W + gap + W', 3) uint8 RGB on a black background.
    """
    left, right = _rgb(image2d), _rgb(overlay_rgb)
    caption = CAPTION_HEIGHT if caption_left or caption_right else 0
    height = max(left.shape[0], right.shape[0]) + caption
    width = left.shape[1] + PANEL_GAP + right.shape[1]
    panel = np.zeros((height, width, 3), np.uint8)
    panel[caption:caption + left.shape[0], :left.shape[1]] = left
    panel[caption:caption + right.shape[0], left.shape[1] + PANEL_GAP:] = right
    if caption:
        picture = Image.fromarray(panel)
        draw = ImageDraw.Draw(picture)
        font = ImageFont.load_default()
        for text, x in ((caption_left, 2), (caption_right, left.shape[1] + PANEL_GAP + 2)):
            if text:
                draw.text((x, 2), text, fill=(255, 255, 255), font=font)
        panel = np.asarray(picture)
    return panel


def box_outline(
    image2d: np.ndarray, box, color: tuple[int, int, int] = (255, 176, 0), width: int = 2
) -> np.ndarray:
    """Draw a rectangle, e.g. the crop box :func:`brainml.preprocess.prepare` cut out, on a slice.

    Args:
        image2d: (H, W) grey slice in [0, 1], or (H, W, 3) uint8 RGB.
        box: a :class:`~brainml.preprocess.CropBox` (rows [top, bottom), columns [left, right)).
    Returns:
        (H, W, 3) uint8 RGB.
    """
    rgb = _rgb(image2d)
    region = np.zeros(rgb.shape[:2], bool)
    region[box.top:box.bottom, box.left:box.right] = True
    rgb[_boundary(region, width)] = color
    return rgb


def enlarged(picture: np.ndarray, side: int = 640) -> np.ndarray:
    """A picture scaled up (never down) until its longer side is ``side`` pixels, for a report read on a wide
    screen or printed. Bicubic: it enlarges a finished overlay for the eye, not the map's data.

    Args:
        picture: (H, W, 3) uint8 RGB or (H, W) grey in [0, 1].
    Returns:
        (H', W', 3) uint8 RGB.
    """
    rgb = _rgb(picture)
    scale = side / max(rgb.shape[:2])
    if scale <= 1:
        return rgb
    size = (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BICUBIC))


def to_png_bytes(rgb_or_grey: np.ndarray) -> bytes:
    """Encode a picture as PNG.

    Args:
        rgb_or_grey: (H, W) grey or (H, W, 3) / (H, W, 4) colour; uint8 as is, floats taken as [0, 1].
    Returns:
        The PNG file's bytes.
    """
    picture = np.asarray(rgb_or_grey)
    if picture.dtype != np.uint8:
        picture = np.rint(np.clip(np.nan_to_num(picture.astype(np.float32)), 0.0, 1.0) * 255).astype(np.uint8)
    if picture.ndim not in (2, 3) or (picture.ndim == 3 and picture.shape[2] not in (3, 4)):
        raise ValueError(f"Expected an (H, W), (H, W, 3) or (H, W, 4) picture, got shape {picture.shape}.")
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    return buffer.getvalue()


@lru_cache(maxsize=16)
def _lookup_table(name: str) -> np.ndarray:
    """(256, 3) float32 RGB in [0, 255] of a matplotlib colormap; indexing it is much faster than calling it."""
    try:
        colormap = matplotlib.colormaps[name]
    except KeyError:
        raise ValueError(
            f"Unknown colormap {name!r}; use a matplotlib colormap name such as 'jet' or 'inferno'."
        ) from None
    return (colormap(np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.float32)


def _grey(image2d: np.ndarray) -> np.ndarray:
    grey = np.asarray(image2d, np.float32)
    if grey.ndim != 2:
        raise ValueError(f"Expected a 2D grey slice, got shape {grey.shape}.")
    return np.clip(np.nan_to_num(grey), 0.0, 1.0)


def _rgb(picture: np.ndarray) -> np.ndarray:
    """A grey [0, 1] slice or an RGB picture as a fresh (H, W, 3) uint8 array."""
    picture = np.asarray(picture)
    if picture.ndim == 3 and picture.shape[2] == 3:
        if picture.dtype == np.uint8:
            return picture.copy()
        return np.rint(np.clip(np.nan_to_num(picture.astype(np.float32)), 0.0, 1.0) * 255).astype(np.uint8)
    grey = np.rint(_grey(picture) * 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def _boundary(region: np.ndarray, width: int = 2) -> np.ndarray:
    """The pixels of ``region`` within ``width`` pixels (4-connected steps) of its edge or of the image's."""
    inner = region.copy()
    for _ in range(width):
        padded = np.pad(inner, 1, constant_values=False)
        inner = (inner & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:])
    return region & ~inner
