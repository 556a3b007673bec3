import csv

import numpy as np
import pytest
from scipy import ndimage

from brainml import synth, synth_lesions
from brainml.labels import CLASS_NAMES


@pytest.mark.parametrize("label", CLASS_NAMES)
def test_each_class_has_a_matching_mask(label):
    case = synth.generate_case(np.random.default_rng([7, CLASS_NAMES.index(label)]), label, synth.SynthConfig(size=128))
    assert case.image.shape == (128, 128) and case.image.dtype == np.float32
    assert 0.0 <= case.image.min() and case.image.max() <= 1.0
    if label == "notumor":
        assert not case.mask.any() and case.lesion_centre is None
    else:
        assert case.mask.any() and case.lesion_area_px == int(case.mask.sum())
        row, col = case.lesion_centre
        assert case.mask[max(row - 3, 0):row + 4, max(col - 3, 0):col + 4].any()


def test_lesions_sit_where_their_type_belongs():
    """Gliomas inside the brain, meningiomas at its edge, pituitary tumors on the midline near the skull base."""
    config = synth.SynthConfig(size=128, rotation_deg=0.0, elastic_mm=0.0, plane_weights=(1.0, 0.0, 0.0))
    pituitary_cols = []
    for seed in range(6):
        case = synth.generate_case(np.random.default_rng([seed, 99]), "pituitary", config)
        pituitary_cols.append(case.lesion_centre[1])
    # Axial slices through the sella: the adenoma is on the midline of the head (framing jitters the head by ~4%).
    assert np.median(np.abs(np.array(pituitary_cols) - 64)) < 16


def test_same_seed_same_bytes(tmp_path):
    first = synth.generate_dataset(tmp_path / "a", 12, seed=3, config=synth.SynthConfig(size=96), workers=1)
    second = synth.generate_dataset(tmp_path / "b", 12, seed=3, config=synth.SynthConfig(size=96), workers=2)
    files = sorted(p.relative_to(first) for p in first.rglob("*.png"))
    assert len(files) == 24  # 12 images + 12 masks
    for relative in files:
        assert (first / relative).read_bytes() == (second / relative).read_bytes()
    different = synth.generate_dataset(tmp_path / "c", 12, seed=4, config=synth.SynthConfig(size=96), workers=1)
    assert any((first / r).read_bytes() != (different / r).read_bytes() for r in files if (different / r).exists())


def test_layout_and_manifest(tmp_path):
    out = synth.generate_dataset(tmp_path / "set", 20, seed=1, config=synth.SynthConfig(size=64), workers=1)
    for split in ("Training", "Testing"):
        for name in CLASS_NAMES:
            assert (out / split / name).is_dir()
            assert (out / "masks" / split / name).is_dir()
    rows = list(csv.DictReader(open(out / "manifest.csv")))
    assert len(rows) == 20
    assert {row["class"] for row in rows} == set(CLASS_NAMES)
    assert sum(row["split"] == "Testing" for row in rows) == 4
    for row in rows:
        assert (out / row["file"]).is_file() and (out / row["mask"]).is_file()
        assert row["contrast"] in synth.CONTRASTS and row["plane"] in synth.PLANES
        assert (row["lesion_row"] == "") == (row["class"] == "notumor")


def test_contact_sheet_size():
    cases = synth.sample_cases(6, seed=2, config=synth.SynthConfig(size=64))
    sheet = synth.contact_sheet(cases, columns=3, tile=50)
    assert sheet.size == (150, 2 * 64)


def test_requested_contrast_size_and_position_are_honoured():
    config = synth.SynthConfig(size=128, rotation_deg=0.0, elastic_mm=0.0)
    small = synth.generate_case(np.random.default_rng(1), "glioma", config, contrast="FLAIR", plane="axial", radius_mm=4)
    large = synth.generate_case(np.random.default_rng(1), "glioma", config, contrast="FLAIR", plane="axial", radius_mm=20)
    assert small.contrast == large.contrast == "FLAIR" and small.plane == "axial"
    assert large.lesion_area_px > 4 * small.lesion_area_px
    upper = synth.generate_case(np.random.default_rng(2), "glioma", config, plane="axial", radius_mm=8, position=(0.25, 0.5))
    lower = synth.generate_case(np.random.default_rng(2), "glioma", config, plane="axial", radius_mm=8, position=(0.75, 0.5))
    assert upper.lesion_centre[0] < lower.lesion_centre[0]
    with pytest.raises(ValueError, match="unknown contrast"):
        synth.generate_case(np.random.default_rng(0), "glioma", config, contrast="PET")


def test_normal_slices_pass_through_the_sella_as_well():
    """Otherwise the slice level alone would say "pituitary" and a model need not look for the adenoma."""
    sella = synth.SELLA_MNI[2]
    normal = np.array([synth._level_for("notumor", "axial", np.random.default_rng(seed)) for seed in range(300)])
    pituitary = np.array([synth._level_for("pituitary", "axial", np.random.default_rng(seed)) for seed in range(300)])
    assert (np.abs(pituitary - sella) <= 5).all()
    assert 0.25 < (np.abs(normal - sella) <= 5).mean() < 0.6
    assert normal.max() > sella + 40  # and the rest still span the brain



def test_a_lesion_differs_from_the_tissue_it_displaced_and_from_its_surroundings():
    # Lesion as grey as the tissue it replaced, though far from its (dark) surroundings: it must be shifted.
    displaced = np.full((40, 40), 0.4, np.float32)
    image = displaced.copy()
    image[:, :5] = 0.05
    tumor = np.zeros((40, 40), np.float32)
    tumor[15:25, 15:25] = 1
    shown = synth._ensure_conspicuous(image, displaced, tumor, 0.1)
    inside = tumor > 0.5
    ring = ndimage.binary_dilation(inside, iterations=3) & ~inside
    assert abs(shown[inside].mean() - displaced[inside].mean()) >= 0.1 - 1e-6
    assert abs(shown[inside].mean() - shown[ring].mean()) >= 0.1 - 1e-6
    assert np.array_equal(shown[~inside], image[~inside])


def test_meningiomas_can_show_a_csf_cleft_around_the_mass():
    t1, brain, sella = synth._anatomy_slice("axial", 20.0)
    fractions = synth._tissue_fractions(t1, brain)
    drawn = {rate: synth_lesions.draw_lesion("meningioma", fractions, brain, sella, np.random.default_rng(3),
                                 synth.SynthConfig(csf_cleft_rate=rate)) for rate in (0.0, 1.0)}
    assert "cleft" not in drawn[0.0][0]
    cleft, tumor = drawn[1.0][0]["cleft"], drawn[1.0][1]
    assert cleft.max() > 0.5 and (cleft > 0.3).sum() > 5
    # A rim around the mass, not inside it.
    assert not ((cleft > 0.3) & (tumor > 0.9)).any()
