import io

import numpy as np
import pytest
from PIL import Image

from brainml.viz import mask_outline, overlay, side_by_side, to_png_bytes


def grey_slice(height=40, width=60):
    rows, cols = np.indices((height, width))
    return ((rows + cols) / (height + width)).astype(np.float32)


def hot_square(height=40, width=60, top=10, left=20, side=12):
    heat = np.zeros((height, width), np.float32)
    heat[top:top + side, left:left + side] = 1.0
    return heat


def test_overlay_is_rgb_uint8_of_the_image_size():
    picture = overlay(grey_slice(), hot_square())
    assert picture.shape == (40, 60, 3) and picture.dtype == np.uint8


def test_zero_opacity_returns_the_grey_image():
    image = grey_slice()
    picture = overlay(image, hot_square(), opacity=0.0)
    grey = np.rint(image * 255).astype(np.uint8)
    assert np.array_equal(picture, np.repeat(grey[..., None], 3, axis=-1))


def test_cold_regions_keep_the_anatomy_and_hot_regions_take_the_colour():
    image = grey_slice()
    picture = overlay(image, hot_square(), colormap="jet", opacity=1.0)
    grey = np.rint(image * 255).astype(np.uint8)
    assert np.array_equal(picture[0, 0], [grey[0, 0]] * 3)  # heat 0: untouched
    assert np.array_equal(picture[15, 25], [128, 0, 0])  # heat 1 at full opacity: jet's dark red


def test_contour_outlines_the_hot_region_only():
    heat = hot_square()
    picture = overlay(grey_slice(), heat, opacity=0.0, contour=True, contour_color=(255, 0, 255))
    outline = np.all(picture == [255, 0, 255], axis=-1)
    assert outline[10, 20:32].all() and outline[21, 20:32].all()  # top and bottom rows of the square
    assert outline[10:22, 20].all() and outline[10:22, 31].all()  # its sides
    assert not outline[14:18, 24:28].any()  # not its inside
    assert not outline[heat == 0].any()  # nothing outside the region


def test_contour_level_is_relative_to_the_maximum():
    heat = hot_square() * 0.5
    heat[12:16, 22:26] = 0.6
    picture = overlay(grey_slice(), heat, opacity=0.0, contour=True, contour_level=0.9, contour_color=(0, 255, 0))
    outline = np.all(picture == [0, 255, 0], axis=-1)
    assert outline.sum() > 0 and not outline[(heat < 0.6)].any()


def test_empty_map_draws_no_contour():
    image = grey_slice()
    picture = overlay(image, np.zeros_like(image), contour=True)
    assert np.array_equal(picture, overlay(image, np.zeros_like(image), opacity=0.0))


def test_smoothing_and_masking_happen_only_when_asked():
    image, heat = grey_slice(), hot_square()
    plain = overlay(image, heat, opacity=1.0)
    assert np.array_equal(plain, overlay(image, heat, opacity=1.0, smooth_sigma=0.0, restrict_to=None))
    assert not np.array_equal(plain, overlay(image, heat, opacity=1.0, smooth_sigma=3.0))
    nowhere = np.zeros(image.shape, bool)
    assert np.array_equal(overlay(image, heat, opacity=1.0, restrict_to=nowhere), overlay(image, heat, opacity=0.0))


def test_overlay_rejects_a_map_on_another_grid():
    with pytest.raises(ValueError, match="map it onto the image's grid"):
        overlay(grey_slice(), np.zeros((10, 10), np.float32))


def test_unknown_colormap_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown colormap 'nope'"):
        overlay(grey_slice(), hot_square(), colormap="nope")


def test_png_bytes_decode_to_the_same_pixels():
    picture = overlay(grey_slice(), hot_square(), contour=True)
    decoded = np.asarray(Image.open(io.BytesIO(to_png_bytes(picture))))
    assert np.array_equal(decoded, picture)
    grey = np.rint(grey_slice() * 255).astype(np.uint8)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(to_png_bytes(grey)))), grey)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(to_png_bytes(grey_slice())))), grey)


def test_mask_outline_draws_the_mask_edge_in_colour():
    mask = hot_square() > 0
    picture = mask_outline(grey_slice(), mask, color=(0, 255, 0))
    outline = np.all(picture == [0, 255, 0], axis=-1)
    assert outline[10, 20:32].all() and not outline[12:20, 22:30].any() and not outline[~mask].any()
    on_overlay = mask_outline(overlay(grey_slice(), hot_square()), mask, color=(0, 255, 0))
    assert np.array_equal(np.all(on_overlay == [0, 255, 0], axis=-1), outline)


def test_side_by_side_puts_both_panels_in_one_picture():
    image = grey_slice()
    picture = overlay(image, hot_square())
    panel = side_by_side(image, picture)
    assert panel.shape == (40, 60 + 4 + 60, 3) and panel.dtype == np.uint8
    assert np.array_equal(panel[:, 64:], picture)
    captioned = side_by_side(image, picture, "slice", "Grad-CAM")
    assert captioned.shape[0] > 40 and captioned.shape[1] == 124
    assert captioned[:18].max() > 0  # the captions are drawn above the panels
