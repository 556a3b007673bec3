"""Whole volumes: every slice scored in one pass, skipped slices marked, the most suspicious slice found; the CLI's
per-slice JSON and CSV; DICOM series; reslicing along other planes."""

import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

from brainml import cli
from brainml.examples import example_case
from brainml.io import Scan
from brainml.predict import Cascade, Diagnosis
from brainml.volume import SKIPPED, VolumeScores, score_stack, slice_ranges, stack_along
from test_io import dicom_bytes, nifti_bytes, zip_bytes

SYNTHETIC = Path(__file__).resolve().parent.parent / "models" / "synthetic"
# Slices 0-1 are air, 2-6 normal brain (the no-tumor example), 7-9 the glioma example, 10-11 normal, 12 air.
LESION = (7, 9)
AIR = (0, 1, 12)


def stack_with_lesion() -> np.ndarray:
    normal, glioma = example_case("notumor").image, example_case("glioma").image
    air = np.zeros_like(normal)
    layout = [air, air] + [normal] * 5 + [glioma] * 3 + [normal] * 2 + [air]
    return np.stack(layout).astype(np.float32)


def as_nifti(stack: np.ndarray) -> bytes:
    """NIfTI bytes whose axial slices, as the reader returns them, are ``stack`` (the reader flips x and y)."""
    volume = stack.transpose(2, 1, 0)[::-1, ::-1, :]
    return nifti_bytes(np.round(volume * 1000).astype(np.int16))


@pytest.fixture(scope="module")
def cascade() -> Cascade:
    return Cascade.from_paths(SYNTHETIC / "detector.json", SYNTHETIC / "classifier.json")


@pytest.fixture(scope="module")
def scores(cascade) -> VolumeScores:
    return score_stack(cascade, stack_with_lesion())


def test_the_lesion_slices_hold_the_maximum_and_air_is_skipped(scores, cascade):
    assert scores.n_slices == 13
    assert LESION[0] <= scores.slice_of_max <= LESION[1]
    assert [s.index for s in scores.slices if s.diagnosis is None] == list(AIR)
    assert all(scores.slices[i].skipped == SKIPPED for i in AIR)
    assert np.isnan(scores.tumor_probabilities[list(AIR)]).all()
    # Each scored slice's answer is the cascade's on that slice alone.
    alone = cascade.run([stack_with_lesion()[8]], threshold=0.0)[0]
    assert scores.slices[8].diagnosis.tumor_probability == pytest.approx(alone.tumor_probability, abs=1e-5)


def test_summary_counts_and_runs_follow_the_threshold(scores):
    probabilities = scores.tumor_probabilities
    threshold = float(np.nanmax(probabilities[[2, 3, 4, 5, 6, 10, 11]])) + 1e-6  # above every normal slice
    assert threshold < np.nanmin(probabilities[7:10]), "the glioma example must outscore the normal one"
    summary = scores.at(threshold).summary()
    assert summary["n_scored"] == 10 and summary["n_skipped"] == 3 and summary["n_withheld"] == 0
    assert summary["tumor_slices"] == [[7, 9]]
    assert summary["tumor"] is True
    assert summary["max_tumor_probability"] == pytest.approx(float(np.nanmax(probabilities)))
    assert scores.at(threshold).verdict_text().startswith("Tumor likely on slices 7-9 (highest P(tumor)")
    assert scores.at(1.0 + 1e-9).tumor_runs == []
    assert scores.at(1.0 + 1e-9).verdict_text().startswith("No tumor found on any slice at this threshold")


def test_scores_are_made_at_threshold_zero_so_any_threshold_reads_off_them(scores):
    assert scores.threshold == 0.0
    assert all(s.diagnosis.type is not None for s in scores.slices if s.diagnosis is not None)
    moved = scores.at(0.5)
    for before, after in zip(scores.slices, moved.slices):
        if after.diagnosis is not None:
            above = after.diagnosis.tumor_probability >= 0.5
            assert after.diagnosis.tumor is above
            assert after.diagnosis.type == (before.diagnosis.type if above else None)


def test_slice_ranges_read_as_a_person_writes_them():
    assert slice_ranges([(12, 12)]) == "slice 12"
    assert slice_ranges([(88, 97)]) == "slices 88-97"
    assert slice_ranges([(3, 3), (40, 42), (88, 97)]) == "slices 3, 40-42 and 88-97"


def test_a_volume_the_guard_refuses_everywhere_has_no_verdict():
    refused = Diagnosis(0.9, 0.0, None, None, {}, {}, brain_mri=False, ood_score=2.0,
                        models_answer=Diagnosis(0.9, 0.0, True, "glioma", {}, {}))
    from brainml.volume import SliceScore

    scores = VolumeScores("axial", 0.5, (SliceScore(0, 0.5, refused), SliceScore(1, 0.0, None, SKIPPED)))
    assert scores.slice_of_max is None
    assert scores.representative() is refused
    assert scores.summary()["n_withheld"] == 1 and scores.summary()["max_tumor_probability"] is None
    assert scores.verdict_text().startswith("No verdict")
    empty = VolumeScores("axial", 0.5, (SliceScore(0, 0.0, None, SKIPPED),))
    assert empty.representative() == "No slice of this volume has enough head on it to be scored."


def test_coronal_and_sagittal_stacks_are_cut_across_and_stretched_to_square_pixels():
    slices = np.random.default_rng(0).random((10, 64, 80)).astype(np.float32)
    scan = Scan(slices, "NIfTI", None, (80, 64), 16, pixel_spacing=(1.0, 1.0), metadata={"slice_thickness_mm": 3.0})
    assert stack_along(scan, "axial") is slices
    coronal = stack_along(scan, "coronal")
    assert coronal.shape == (64, 30, 80)  # one image per row; 10 slices 3 mm thick become 30 rows of 1 mm
    sagittal = stack_along(scan, "sagittal")
    assert sagittal.shape == (80, 30, 64)
    # Superior at the top: the top row of a coronal image is the last (highest) axial slice.
    assert coronal[5, 0, 7] == pytest.approx(slices[-1, 5, 7])
    iso = Scan(slices, "NIfTI", None, (80, 64), 16, pixel_spacing=(1.0, 1.0), metadata={"slice_thickness_mm": 1.0})
    assert np.array_equal(stack_along(iso, "coronal")[5], slices[::-1, 5, :])
    with pytest.raises(ValueError, match="plane must be one of axial, coronal, sagittal"):
        stack_along(scan, "oblique")


def test_predict_all_slices_prints_one_json_object_per_slice_and_a_summary(tmp_path, capsys):
    path = tmp_path / "volume.nii"
    path.write_bytes(as_nifti(stack_with_lesion()))
    table = tmp_path / "slices.csv"
    assert cli.main(["predict", str(path), "--all-slices", "--json", "--csv", str(table),
                     "--detector", str(SYNTHETIC / "detector.json"),
                     "--classifier", str(SYNTHETIC / "classifier.json")]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    per_slice, summary = lines[:-1], lines[-1]
    assert [record["slice"] for record in per_slice] == list(range(13))
    assert [record["scored"] for record in per_slice] == [i not in AIR for i in range(13)]
    assert all(record["tumor_probability"] is None and record["skipped"] == SKIPPED
               for record in per_slice if record["slice"] in AIR)
    assert {"glioma", "meningioma", "notumor", "pituitary"} == set(per_slice[8]["type_probabilities"])
    assert summary["summary"] is True and summary["n_scored"] == 10 and summary["n_skipped"] == 3
    assert LESION[0] <= summary["slice_of_max"] <= LESION[1]
    assert summary["max_tumor_probability"] == max(r["tumor_probability"] for r in per_slice if r["scored"])
    rows = list(csv.DictReader(io.StringIO(table.read_text())))
    assert [int(row["slice"]) for row in rows] == list(range(13))
    assert rows[0]["scored"] == "False" and rows[0]["tumor_probability"] == ""
    assert float(rows[8]["tumor_probability"]) == pytest.approx(per_slice[8]["tumor_probability"], abs=1e-6)
    assert float(rows[8]["glioma"]) == pytest.approx(per_slice[8]["type_probabilities"]["glioma"], abs=1e-6)


def test_predict_all_slices_reads_a_dicom_series_zip(tmp_path, capsys):
    stack = stack_with_lesion()
    members = {f"series/IM{i:04d}.dcm": dicom_bytes(np.round(image * 4000).astype(np.uint16), InstanceNumber=i + 1,
                                                    ImagePositionPatient=[0, 0, float(i)],
                                                    ImageOrientationPatient=[1, 0, 0, 0, 1, 0])
               for i, image in enumerate(stack)}
    path = tmp_path / "series.zip"
    path.write_bytes(zip_bytes(members))
    assert cli.main(["predict", str(path), "--all-slices", "--detector", str(SYNTHETIC / "detector.json"),
                     "--classifier", str(SYNTHETIC / "classifier.json")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 14
    assert out[0] == f"{path} slice 0: skipped: {SKIPPED}"
    assert "10 slices scored, 3 skipped, 0 withheld by the guard" in out[-1]
    most_suspicious = int(re.search(r"highest P\(tumor\) [0-9.]+ on slice (\d+)\)", out[-1]).group(1))
    assert LESION[0] <= most_suspicious <= LESION[1]


def test_csv_needs_all_slices(tmp_path):
    with pytest.raises(SystemExit, match="--csv writes the per-slice table of --all-slices"):
        cli.main(["predict", str(tmp_path / "x.png"), "--csv", str(tmp_path / "t.csv")])
