"""Whole volumes: every slice of a NIfTI volume or DICOM series scored in one batched cascade pass.

A person with a 176-slice volume should not have to hunt for the slice that matters. :func:`score_volume` runs the
cascade (and its out-of-distribution guard) over the stack and returns each slice's answer, the most suspicious
slice, and the runs of slices above the threshold. Slices with too little head on them (the top and bottom of a
volume, or air) are skipped and marked, not scored as "no tumor": the models learned from slices through the brain.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
from scipy import ndimage

from .io import FOREGROUND_LEVEL, Scan
from .predict import Cascade, Diagnosis

PLANES = ("axial", "coronal", "sagittal")
# A slice is scored when its foreground (pixels above 10% of the window) covers at least a quarter of the fullest
# slice's and 2% of the slice itself: below that it is the vertex, the neck, or air beside the head.
MIN_SHARE_OF_FULLEST = 0.25
MIN_SHARE_OF_SLICE = 0.02
# Slices scored per cascade call: enough to keep both cores busy, few enough that progress shows.
CHUNK = 32
SKIPPED = "too little head on the slice (its top or bottom, or outside it)"
# The per-slice table's columns; the classifier's class probabilities go between "type" and "brain_mri".
CSV_LEADING = ("slice", "scored", "skipped", "tumor_probability", "tumor", "type")
CSV_TRAILING = ("brain_mri", "ood_score", "note")


@dataclass(frozen=True)
class SliceScore:
    """One slice of a volume: its diagnosis, or why it was skipped.

    ``index`` counts from 0 along the chosen plane; ``foreground`` is the share of the slice above the foreground
    level.
    """

    index: int
    foreground: float
    diagnosis: Diagnosis | None = None
    skipped: str | None = None

    @property
    def counts(self) -> bool:
        """The slice has a verdict: it was scored and the guard accepted it."""
        return self.diagnosis is not None and not self.diagnosis.withheld

    def to_dict(self) -> dict:
        values = {"slice": self.index, "scored": self.diagnosis is not None, "skipped": self.skipped}
        if self.diagnosis is not None:
            values.update(self.diagnosis.to_dict())
        return values


@dataclass(frozen=True)
class VolumeScores:
    """The cascade's answers for every slice of a volume along ``plane``, at ``threshold``.

    Made at threshold 0 by :func:`score_volume` and moved with :meth:`at`, so a threshold slider never runs a model.
    """

    plane: str
    threshold: float
    slices: tuple[SliceScore, ...]

    @property
    def n_slices(self) -> int:
        return len(self.slices)

    @property
    def tumor_probabilities(self) -> np.ndarray:
        """(n_slices,) P(tumor) per slice; NaN where the slice was skipped or the guard withheld its verdict."""
        return np.array([s.diagnosis.tumor_probability if s.counts else np.nan for s in self.slices])

    @property
    def slice_of_max(self) -> int | None:
        """The most suspicious slice (highest P(tumor) among slices with a verdict), or None when none has one."""
        probabilities = self.tumor_probabilities
        return None if np.isnan(probabilities).all() else int(np.nanargmax(probabilities))

    @property
    def tumor_runs(self) -> list[tuple[int, int]]:
        """Runs of consecutive slices whose verdict is tumor, as (first, last) slice numbers."""
        return runs_of(np.nan_to_num(self.tumor_probabilities, nan=-1.0) >= self.threshold)

    @property
    def skipped_runs(self) -> list[tuple[int, int]]:
        """Runs of slices skipped for too little head on them."""
        return runs_of([s.diagnosis is None for s in self.slices])

    @property
    def withheld_runs(self) -> list[tuple[int, int]]:
        """Runs of slices whose verdict the guard withheld."""
        return runs_of([s.diagnosis is not None and s.diagnosis.withheld for s in self.slices])

    def representative(self) -> Diagnosis | str:
        """What stands for the whole volume in a one-row summary: the most suspicious slice's diagnosis; else,
        when the guard refused every scored slice, one of those refusals; else why no slice was scored."""
        best = self.slice_of_max
        if best is not None:
            return self.slices[best].diagnosis
        refused = [s.diagnosis for s in self.slices if s.diagnosis is not None]
        return refused[0] if refused else "No slice of this volume has enough head on it to be scored."

    def at(self, threshold: float) -> "VolumeScores":
        """The same volume at another threshold, without running a model again."""
        return replace(self, threshold=float(threshold), slices=tuple(
            replace(s, diagnosis=None if s.diagnosis is None else s.diagnosis.at(threshold)) for s in self.slices))

    def summary(self) -> dict:
        """The volume's answer: ``max_tumor_probability``, ``slice_of_max``, ``n_scored``, ``n_skipped``, the slices
        whose verdict the guard withheld, and the runs of tumor slices."""
        best = self.slice_of_max
        return {
            "summary": True,
            "plane": self.plane,
            "threshold": self.threshold,
            "n_slices": self.n_slices,
            "max_tumor_probability": None if best is None else float(self.tumor_probabilities[best]),
            "slice_of_max": best,
            "tumor": None if best is None else bool(self.tumor_probabilities[best] >= self.threshold),
            "tumor_slices": [list(run) for run in self.tumor_runs],
            "n_scored": sum(s.diagnosis is not None for s in self.slices),
            "n_skipped": sum(s.diagnosis is None for s in self.slices),
            "n_withheld": sum(s.diagnosis is not None and s.diagnosis.withheld for s in self.slices),
        }

    def verdict_text(self) -> str:
        """The volume's verdict in one sentence, with slice numbers as the slice selector counts them (from 0)."""
        best = self.slice_of_max
        if best is None:
            return "No verdict: no slice of this volume has enough brain on it, or the guard withheld them all."
        peak = f"highest P(tumor) {self.tumor_probabilities[best]:.2f} on slice {best}"
        runs = self.tumor_runs
        if not runs:
            return f"No tumor found on any slice at this threshold ({peak})."
        return f"Tumor likely on {slice_ranges(runs)} ({peak})."

    def to_csv(self) -> str:
        """One row per slice: :data:`CSV_LEADING`, one column per class probability, :data:`CSV_TRAILING`."""
        classes = next((list(s.diagnosis.type_probabilities) for s in self.slices
                        if s.diagnosis is not None and s.diagnosis.type_probabilities), [])
        fields = [*CSV_LEADING, *classes, *CSV_TRAILING]
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for score in self.slices:
            row = score.to_dict()
            row.update(row.pop("type_probabilities", None) or {})
            writer.writerow({key: _csv_value(row.get(key)) for key in fields})
        return out.getvalue()


def _answer_only(diagnosis: Diagnosis) -> Diagnosis:
    """The diagnosis without its model input: a volume keeps every slice's answer, not 64 kB of input per slice
    (a heatmap prepares the one slice it explains)."""
    unguarded = diagnosis.models_answer
    return replace(diagnosis, model_input=None,
                   models_answer=None if unguarded is None else replace(unguarded, model_input=None))


def runs_of(flags) -> list[tuple[int, int]]:
    """(first, last) of each run of true values in a sequence of flags."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], np.asarray(flags, bool).astype(int), [0]])))
    return [(int(first), int(last) - 1) for first, last in zip(edges[::2], edges[1::2])]


def slice_ranges(runs: list[tuple[int, int]]) -> str:
    """"slice 12", "slices 88-97", "slices 40-42 and 88-97"."""
    parts = [str(first) if first == last else f"{first}-{last}" for first, last in runs]
    noun = "slice" if len(runs) == 1 and runs[0][0] == runs[0][1] else "slices"
    return f"{noun} {', '.join(parts[:-1]) + ' and ' + parts[-1] if len(parts) > 1 else parts[0]}"


def _csv_value(value):
    if isinstance(value, float):
        return f"{value:.6f}"
    return "" if value is None else value


def stack_along(scan: Scan, plane: str = "axial") -> np.ndarray:
    """The scan's slices along ``plane``, (n, H, W) float32, superior or anterior at the top of each image.

    A NIfTI volume is read as axial slices (the plane the models learned from); coronal and sagittal slices are cut
    across that stack and stretched to square pixels when the slice thickness differs from the in-plane spacing. For
    a DICOM series, "axial" means its slices as acquired.
    """
    if plane not in PLANES:
        raise ValueError(f"plane must be one of {', '.join(PLANES)}, not {plane!r}")
    slices = scan.slices
    if plane == "axial" or scan.n_slices == 1:
        return slices
    # Axial slices run inferior -> superior; across them, flip so superior is the top row.
    stack = slices[::-1].transpose(1, 0, 2) if plane == "coronal" else slices[::-1].transpose(2, 0, 1)
    thickness, spacing = scan.metadata.get("slice_thickness_mm"), scan.pixel_spacing
    if thickness and spacing:
        in_plane = spacing[0] if plane == "coronal" else spacing[1]
        stretch = float(thickness) / float(in_plane)
        if abs(stretch - 1.0) > 0.05:
            stack = ndimage.zoom(stack, (1.0, stretch, 1.0), order=1, prefilter=False)
    return np.ascontiguousarray(stack, dtype=np.float32)


def foreground_shares(stack: np.ndarray) -> np.ndarray:
    """(n,) share of each slice's pixels above the foreground level."""
    return (stack > FOREGROUND_LEVEL).mean(axis=(1, 2))


def score_volume(cascade: Cascade, scan: Scan, plane: str = "axial", guard: bool = True,
                 progress: Callable[[int, int], None] | None = None) -> VolumeScores:
    """Score every slice of ``scan`` along ``plane`` (see :func:`score_stack`)."""
    return score_stack(cascade, stack_along(scan, plane), plane, guard, progress)


def score_stack(cascade: Cascade, stack: np.ndarray, plane: str = "axial", guard: bool = True,
                progress: Callable[[int, int], None] | None = None) -> VolumeScores:
    """Score every slice of ``stack`` ((n, H, W) in [0, 1]) in batched cascade calls, at threshold 0 (move it with
    :meth:`VolumeScores.at`). Slices with too little head on them are skipped and marked.

    Args:
        progress: called as ``progress(done, total)`` after each batch of slices, for a progress bar.
    """
    shares = foreground_shares(stack)
    keep = (shares >= MIN_SHARE_OF_FULLEST * shares.max()) & (shares >= MIN_SHARE_OF_SLICE)
    to_score = np.flatnonzero(keep)
    diagnoses: dict[int, Diagnosis] = {}
    for start in range(0, len(to_score), CHUNK):
        chunk = to_score[start:start + CHUNK]
        for index, diagnosis in zip(chunk, cascade.run([stack[i] for i in chunk], threshold=0.0, guard=guard)):
            diagnoses[int(index)] = _answer_only(diagnosis)
        if progress is not None:
            progress(min(start + CHUNK, len(to_score)), len(to_score))
    return VolumeScores(plane=plane, threshold=0.0, slices=tuple(
        SliceScore(index=i, foreground=float(shares[i]), diagnosis=diagnoses.get(i),
                   skipped=None if i in diagnoses else SKIPPED)
        for i in range(len(stack))))
