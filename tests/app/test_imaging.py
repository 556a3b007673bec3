import numpy as np
import pytest

from ui.imaging import rewindow


def test_the_default_window_leaves_the_slice_as_it_is():
    slice2d = np.linspace(0, 1, 100, dtype=np.float32).reshape(10, 10)
    assert np.allclose(rewindow(slice2d, 0.5, 1.0), slice2d)


def test_a_narrow_window_stretches_its_range_and_clips_the_rest():
    slice2d = np.array([[0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 1.0]], np.float32)
    windowed = rewindow(slice2d, level=0.5, width=0.2)
    assert windowed.tolist()[0] == pytest.approx([0.0, 0.0, 0.0, 0.5, 1.0, 1.0, 1.0])
    assert windowed.dtype == np.float32


def test_a_zero_width_does_not_divide_by_zero():
    assert np.isfinite(rewindow(np.full((4, 4), 0.5, np.float32), 0.5, 0.0)).all()
