import numpy as np
import pytest

from brainml import examples
from brainml.io import read_scan


def test_every_example_is_its_class_with_a_matching_mask():
    for example in examples.EXAMPLES:
        case = examples.example_case(example.key, size=128)
        assert case.label == example.label
        assert (case.contrast, case.plane) == (example.contrast, example.plane)
        assert case.image.shape == (128, 128) and case.image.dtype == np.float32
        assert case.mask.any() == (example.label != "notumor")


def test_examples_are_the_same_on_every_call():
    first = examples.example_case("glioma", size=96)
    second = examples.example_case("glioma", size=96)
    assert np.array_equal(first.image, second.image) and np.array_equal(first.mask, second.mask)


def test_example_png_reads_back_as_the_same_slice():
    scan = read_scan(examples.example_png("notumor", size=96), name="example_notumor.png")
    original = examples.example_case("notumor", size=96).image
    assert scan.format == "PNG" and scan.slices.shape == (1, 96, 96)
    assert np.abs(scan.image - original).max() <= 1 / 255 + 1e-6


def test_find_example_names_the_examples_there_are():
    assert examples.find_example("pituitary").plane == "coronal"
    with pytest.raises(KeyError, match="glioma, meningioma, pituitary, notumor"):
        examples.find_example("astrocytoma")


def test_localisation_cases_cycle_through_the_tumor_types():
    cases = examples.localisation_cases(4, seed=3, size=96)
    assert [case.label for case in cases] == ["glioma", "meningioma", "pituitary", "glioma"]
    assert all(case.mask.any() for case in cases)


def test_made_to_order_follows_the_request_and_the_seed():
    case = examples.made_to_order("meningioma", seed=4, contrast="FLAIR", plane="axial", radius_mm=12.0, size=96)
    assert (case.label, case.contrast, case.plane) == ("meningioma", "FLAIR", "axial")
    again = examples.made_to_order("meningioma", seed=4, contrast="FLAIR", plane="axial", radius_mm=12.0, size=96)
    other = examples.made_to_order("meningioma", seed=5, contrast="FLAIR", plane="axial", radius_mm=12.0, size=96)
    assert np.array_equal(case.image, again.image)
    assert not np.array_equal(case.image, other.image)
