import io

import numpy as np
import pytest
from PIL import Image

from brainml.io import read_scan
from brainml.preprocess import CropBox, PrepSpec, find_crop_box, head_mask, prepare, uncrop


def disc_image(height=200, width=300, centre=(100, 180), radius=60, value=0.7):
    rows, cols = np.indices((height, width))
    image = np.where((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2, value, 0.0)
    return image.astype(np.float32)


def test_crop_box_finds_the_head_and_ignores_black_borders():
    image = disc_image()
    box = find_crop_box(image, margin=0.0)
    assert abs(box.top - 40) <= 2 and abs(box.bottom - 161) <= 2
    assert abs(box.left - 120) <= 2 and abs(box.right - 241) <= 2


def test_head_mask_keeps_only_the_largest_component():
    image = disc_image()
    image[5:9, 5:9] = 1.0  # a bright speck (a label, a marker) away from the head
    mask = head_mask(image)
    assert not mask[5:9, 5:9].any()
    assert mask[100, 180]


def test_prepare_shapes_range_and_channels():
    image = disc_image()
    tensor, box = prepare(image, PrepSpec(size=64))
    assert tensor.shape == (64, 64, 1) and tensor.dtype == np.float32
    assert 0.0 <= tensor.min() and tensor.max() <= 1.0
    rgb, _ = prepare(image, PrepSpec(size=64, channels=3))
    assert rgb.shape == (64, 64, 3)
    assert np.array_equal(rgb[..., 0], rgb[..., 2])
    assert isinstance(box, CropBox)


def test_prepare_without_crop_uses_whole_image():
    image = disc_image()
    _, box = prepare(image, PrepSpec(size=32, crop_to_head=False))
    assert (box.top, box.left, box.bottom, box.right) == (0, 0, 200, 300)


def test_blank_image_falls_back_to_whole_frame():
    box = find_crop_box(np.zeros((100, 120), np.float32))
    assert (box.height, box.width) == (100, 120)


def test_uncrop_puts_the_map_back_inside_the_box():
    box = CropBox(10, 20, 60, 70)
    full = uncrop(np.ones((16, 16), np.float32), box, (100, 100))
    assert full.shape == (100, 100)
    assert full[10:60, 20:70].min() == pytest.approx(1.0)
    assert full.sum() == pytest.approx(50 * 50)


def test_prepspec_rejects_bad_values_and_round_trips():
    with pytest.raises(ValueError, match="channels"):
        PrepSpec(channels=2)
    with pytest.raises(ValueError, match="normalisation"):
        PrepSpec(normalisation="magic")
    spec = PrepSpec(size=96, channels=3, normalisation="zscore")
    assert PrepSpec.from_dict(spec.to_dict()) == spec


def test_train_time_and_app_time_tensors_are_identical(tmp_path):
    """Training reads files from disk (datasets.load_images); the app reads uploaded bytes. Same file, same tensor."""
    from brainml.datasets import Sample, load_images

    image = (disc_image() * 255).astype(np.uint8)
    path = tmp_path / "scan.png"
    Image.fromarray(image).save(path)
    spec = PrepSpec(size=64)
    training = load_images([Sample(path, "glioma", "train")], spec).inputs[0]
    upload = io.BytesIO(path.read_bytes()).getvalue()
    app, _ = prepare(read_scan(upload, name="scan.png").image, spec)
    assert np.array_equal(training, app)


def test_crop_like_puts_a_mask_where_prepare_put_the_slice():
    from brainml.preprocess import crop_like

    image = disc_image()
    spec = PrepSpec(size=48, normalisation="unit")
    tensor, box = prepare(image, spec)
    np.testing.assert_allclose(crop_like(image, box, spec), tensor[..., 0], atol=1e-6)


def test_bicubic_resampling_is_a_choice():
    image = disc_image()
    bilinear, _ = prepare(image, PrepSpec(size=40, normalisation="unit"))
    bicubic, _ = prepare(image, PrepSpec(size=40, normalisation="unit", resample="bicubic"))
    assert not np.allclose(bilinear, bicubic)
    with pytest.raises(ValueError, match="resample"):
        PrepSpec(resample="lanczos")


def test_hole_filling_matches_scipys():
    from scipy import ndimage

    from brainml.preprocess import _fill_holes

    rng = np.random.default_rng(0)
    for _ in range(50):
        mask = ndimage.binary_opening(rng.random((64, 80)) > 0.45)
        np.testing.assert_array_equal(_fill_holes(mask), ndimage.binary_fill_holes(mask))
    ring = np.zeros((20, 20), bool)
    ring[5:15, 5:15] = True
    ring[8:12, 8:12] = False
    assert _fill_holes(ring)[10, 10] and not _fill_holes(ring)[0, 0]
    assert _fill_holes(np.ones((5, 5), bool)).all()
