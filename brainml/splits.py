"""Honest splits: who or what each image belongs to (its group), and train / validation / test carved by group.

Public MRI sets hold several slices of one patient and copies of one slice, some of them mirrored left-right. A
split that puts a patient's slices, or an image and its mirror, on both sides measures memory, not skill. So:

- where a data set names each image's group (a ``manifest.csv`` with a ``group`` column: the patient, or a
  near-duplicate cluster), that group decides the split;
- elsewhere, images are grouped by mirror-aware near-duplicate clustering (``duplicate_clusters``);
- validation and test are then carved by group, stratified by class (scikit-learn's ``StratifiedGroupKFold``), so
  no group is in two splits.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .datasets import DatasetIndex, Sample

# Two images are one cluster when their 32x32 grey thumbnails correlate above this, as they are or after a
# left-right flip. Measured on the Kaggle merge: a figshare slice and its mirrored copy correlate 0.995-1.000 after
# the flip, adjacent slices of one patient 0.90-0.97, and unrelated slices of the same class rarely above 0.9.
DUPLICATE_CORRELATION = 0.97
THUMBNAIL_SIDE = 32

SPLIT_MODES = ("groups", "official")


@dataclass(frozen=True)
class SplitPlan:
    """How a data set is split; stored in the card's provenance so ``evaluate`` can rebuild the same test part.

    Attributes:
        mode: "groups": every image (the data set's Training/ and Testing/ together) split by group into train,
            validation and test; "official": the data set's own test split (as published, leaks included), with
            validation carved from training by group.
        seed: the validation split's seed; the test split uses ``seed + 1``.
        val_fraction: share of the non-test images held out for validation.
        test_fraction: share of all images held out for test (mode "groups", or a set with no test split).
    """

    mode: str = "groups"
    seed: int = 0
    val_fraction: float = 0.15
    test_fraction: float = 0.15

    def __post_init__(self):
        if self.mode not in SPLIT_MODES:
            raise ValueError(f"Unknown split mode {self.mode!r}; use one of {', '.join(SPLIT_MODES)}.")

    def describe(self) -> str:
        if self.mode == "groups":
            return (f"group-disjoint over the whole set: test {self.test_fraction:.0%} of the groups' images (seed "
                    f"{self.seed + 1}), validation {self.val_fraction:.0%} of the rest (seed {self.seed}), stratified by class")
        return (f"the data set's own test split, as published; validation {self.val_fraction:.0%} of its training "
                f"split by group (seed {self.seed})")


def same_patient(group: str) -> str:
    """Fold figshare patient IDs that differ only in a final letter (``MR024780B``, ``MR024780G``): one person
    scanned more than once, with near-duplicate slices across the visits."""
    return re.sub(r"^(patient:[A-Za-z]*\d+)[A-Za-z]+$", r"\1", group)


def manifest_groups(root: str | Path, samples: list[Sample]) -> np.ndarray | None:
    """Each sample's group from ``root/manifest.csv`` (columns ``file`` and ``group``), or None when there is no
    such manifest. A sample the manifest does not list is a group of its own."""
    manifest = Path(root) / "manifest.csv"
    if not manifest.is_file():
        return None
    with open(manifest, newline="") as handle:
        reader = csv.DictReader(handle)
        if "group" not in (reader.fieldnames or []):
            return None
        groups = {row["file"]: same_patient(row["group"]) for row in reader if row.get("group")}
    return np.array([groups.get(sample.path.relative_to(root).as_posix(), f"file:{sample.path}") for sample in samples])


def thumbnails(images: list[np.ndarray]) -> np.ndarray:
    """(N, 32*32) float32 grey thumbnails, each centred and scaled to unit length, so a dot product of two rows is
    their Pearson correlation."""
    from PIL import Image

    rows = []
    for image in images:
        grey = np.asarray(image, np.float32)
        grey = grey.mean(axis=-1) if grey.ndim == 3 else grey
        small = np.asarray(Image.fromarray(grey).resize((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BOX))
        rows.append(small.ravel())
    return _unit_rows(np.array(rows, np.float32).reshape(len(rows), -1))


def mirrored(thumbs: np.ndarray) -> np.ndarray:
    """The thumbnails flipped left-right (still unit length)."""
    side = THUMBNAIL_SIDE
    return thumbs.reshape(-1, side, side)[:, :, ::-1].reshape(len(thumbs), -1)


def duplicate_clusters(thumbs: np.ndarray, min_correlation: float = DUPLICATE_CORRELATION) -> np.ndarray:
    """(N,) cluster ids: images linked when their thumbnails correlate above ``min_correlation`` as they are or
    mirrored, and clusters closed under linking (an image and its mirror's near-twin are one cluster).

    Args:
        thumbs: (N, 1024) unit rows from ``thumbnails``.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    flipped = mirrored(thumbs)
    rows, cols = [], []
    for start in range(0, len(thumbs), 512):
        block = thumbs[start:start + 512]
        linked = np.maximum(block @ thumbs.T, block @ flipped.T) > min_correlation
        r, c = np.nonzero(linked)
        rows.append(r + start)
        cols.append(c)
    rows, cols = np.concatenate(rows or [np.zeros(0, int)]), np.concatenate(cols or [np.zeros(0, int)])
    graph = coo_matrix((np.ones(len(rows), bool), (rows, cols)), shape=(len(thumbs), len(thumbs)))
    return connected_components(graph, directed=False)[1]


def sample_groups(index: DatasetIndex, samples: list[Sample]) -> tuple[np.ndarray, str]:
    """Each sample's group and where the groups came from: the data set's manifest, else near-duplicate clusters
    of the images themselves (read once, as thumbnails)."""
    groups = manifest_groups(index.root, samples)
    if groups is not None:
        return groups, "the data set's manifest (patient or near-duplicate cluster)"
    from .io import ScanError, read_scan

    images = []
    for sample in samples:
        try:
            images.append(read_scan(sample.path).image)
        except ScanError:
            images.append(np.zeros((THUMBNAIL_SIDE, THUMBNAIL_SIDE), np.float32))  # unreadable: dropped later
    clusters = duplicate_clusters(thumbnails(images))
    return np.array([f"cluster:{c}" for c in clusters]), (
        f"mirror-aware near-duplicate clusters (thumbnail correlation > {DUPLICATE_CORRELATION})")


def group_split(strata: np.ndarray, groups: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, held_out): about ``fraction`` of the images held out, whole groups only, each class about
    equally represented on both sides (one fold of scikit-learn's ``StratifiedGroupKFold``)."""
    from sklearn.model_selection import StratifiedGroupKFold

    n_groups = len(np.unique(groups))
    n_splits = min(max(2, int(round(1 / fraction))), n_groups)
    if n_groups < 2 or fraction <= 0:
        return np.arange(len(strata)), np.zeros(0, np.int64)
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    keep, held = next(folds.split(np.zeros(len(strata)), strata, groups))
    return np.sort(keep), np.sort(held)


def split_samples(index: DatasetIndex, plan: SplitPlan) -> tuple[dict[str, list[Sample]], dict]:
    """Train, validation and test samples by ``plan``, and a description of the split for the card (its rule, where
    groups came from, and how many test images share a group with training under the data set's own split)."""
    samples = index.samples
    groups, group_source = sample_groups(index, samples)
    strata = _strata(samples)
    official_test = np.array([s.split == "test" for s in samples])
    if plan.mode == "official" and official_test.any():
        pool, test = np.flatnonzero(~official_test), np.flatnonzero(official_test)
    else:
        keep, held = group_split(strata, groups, plan.test_fraction, plan.seed + 1)
        pool, test = keep, held
    keep, held = group_split(strata[pool], groups[pool], plan.val_fraction, plan.seed)
    train, validation = pool[keep], pool[held]
    chosen = {"train": train, "validation": validation, "test": test}
    description = {
        "rule": plan.describe(),
        "groups_from": group_source,
        "groups": int(len(np.unique(groups))),
        "test_images_sharing_a_group_with_train": int(np.isin(groups[test], groups[train]).sum()),
        "official_test_images_sharing_a_group_with_official_training": (
            int(np.isin(groups[official_test], groups[~official_test]).sum()) if official_test.any() else None),
        "official_test_images": int(official_test.sum()),
    }
    return {name: [samples[i] for i in rows] for name, rows in chosen.items()}, description


def _strata(samples: list[Sample]) -> np.ndarray:
    """The data set's own classes, whatever the task, so a detector and a classifier hold out the same images."""
    names = sorted({s.label for s in samples})
    return np.array([names.index(s.label) for s in samples], dtype=np.int64)


def _unit_rows(rows: np.ndarray) -> np.ndarray:
    rows = rows - rows.mean(axis=1, keepdims=True)
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-6)
