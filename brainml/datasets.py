"""Finding labelled images on disk, splitting them honestly, and feeding them to Keras.

Layouts understood (folder names matched case-insensitively):

- Kaggle "Brain Tumor MRI Dataset": ``Training/`` and ``Testing/``, each with ``glioma meningioma notumor pituitary``;
- sartajbhuvaji's set: the same splits with ``glioma_tumor meningioma_tumor no_tumor pituitary_tumor``;
- navoneel / Br35H: ``yes/`` and ``no/`` (Br35H's unlabelled ``pred/`` is ignored);
- any folder-per-class tree, with or without split folders.
"""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .io import ScanError, read_scan
from .labels import CLASS_NAMES, DETECTOR_CLASSES
from .preprocess import PrepSpec, crop_like, prepare

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif", ".dcm"}

# Folder names people use for the same class, mapped to BrainML's names.
CLASS_ALIASES = {
    "glioma": "glioma", "glioma_tumor": "glioma", "gliomas": "glioma",
    "meningioma": "meningioma", "meningioma_tumor": "meningioma", "meningiomas": "meningioma",
    "pituitary": "pituitary", "pituitary_tumor": "pituitary",
    "notumor": "notumor", "no_tumor": "notumor", "no": "notumor", "normal": "notumor", "healthy": "notumor",
    "yes": "tumor", "tumor": "tumor", "tumour": "tumor",
}
SPLIT_ALIASES = {"training": "train", "train": "train", "testing": "test", "test": "test"}
IGNORED_FOLDERS = {"pred", "masks", "__macosx"}


class DatasetError(ValueError):
    """A data set folder that cannot be used, with a message that says why and what layout is expected."""


@dataclass(frozen=True)
class Sample:
    path: Path
    label: str  # BrainML class name ("glioma", ..., "notumor", or "tumor" for yes/no sets)
    split: str  # "train" or "test" as the data set itself says


@dataclass
class DatasetIndex:
    root: Path
    layout: str
    samples: list[Sample]
    ignored: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, dict[str, int]]:
        table: dict[str, dict[str, int]] = {}
        for sample in self.samples:
            table.setdefault(sample.split, Counter())[sample.label] += 1
        return {split: dict(sorted(counter.items())) for split, counter in table.items()}


def discover(root: str | os.PathLike) -> DatasetIndex:
    """Index every labelled image under ``root``.

    Raises:
        DatasetError: the folder does not exist or holds no class folders with images.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder. Point --data at the folder that holds the class folders.")
    children = {child.name.lower(): child for child in root.iterdir() if child.is_dir()}
    split_folders = {SPLIT_ALIASES[name]: path for name, path in children.items() if name in SPLIT_ALIASES}
    samples: list[Sample] = []
    ignored: list[str] = []
    if split_folders:
        for split, folder in sorted(split_folders.items()):
            samples += _class_folders(folder, split, ignored)
    else:
        samples += _class_folders(root, "train", ignored)
    if not samples:
        raise DatasetError(
            f"No labelled images found under {root}. Expected class folders (glioma/, meningioma/, notumor/, "
            "pituitary/ or yes/ and no/), optionally inside Training/ and Testing/."
        )
    labels = {sample.label for sample in samples}
    if labels <= set(CLASS_NAMES) and len(labels) > 1:
        names = {p.parent.name.lower() for p in (s.path for s in samples)}
        layout = "sartajbhuvaji" if "glioma_tumor" in names else "kaggle-4class"
    elif labels == {"tumor", "notumor"}:
        layout = "yes-no"
    else:
        layout = "folder-per-class"
    return DatasetIndex(root, layout, samples, ignored)


def _class_folders(folder: Path, split: str, ignored: list[str]) -> list[Sample]:
    samples = []
    for child in sorted(folder.iterdir()):
        if not child.is_dir():
            continue
        name = child.name.lower()
        if name in IGNORED_FOLDERS or name in SPLIT_ALIASES:
            ignored.append(str(child))
            continue
        label = CLASS_ALIASES.get(name, name)
        files = sorted(p for p in child.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        samples += [Sample(path, label, split) for path in files]
    return samples


def task_classes(index: DatasetIndex, task: str) -> tuple[str, ...]:
    """The class names a model for ``task`` ("detect" or "classify") learns from this data set."""
    labels = sorted({sample.label for sample in index.samples})
    if task == "detect":
        if "notumor" not in labels:
            raise DatasetError("A detector needs images without tumor (a notumor/, no_tumor/ or no/ folder).")
        return DETECTOR_CLASSES
    if task == "classify":
        if "tumor" in labels:
            raise DatasetError("This data set only says tumor / no tumor (yes/ and no/); it cannot train a type classifier.")
        return CLASS_NAMES if set(labels) <= set(CLASS_NAMES) else tuple(labels)
    raise DatasetError(f"Unknown task {task!r}; use 'detect' or 'classify'.")


def label_index(label: str, task: str, classes: tuple[str, ...]) -> int:
    if task == "detect":
        return 0 if label == "notumor" else 1
    return classes.index(label)


HASH_BLOCK = 12  # low-frequency DCT block side: 143 bits


def perceptual_hash(image: np.ndarray) -> np.ndarray:
    """A DCT perceptual hash (pHash) of a 2D image, as 18 packed bytes.

    The image is averaged down to 32x32 and the signs of its 12x12 lowest-frequency DCT coefficients (less the
    mean) relative to their median make the bits: resizing, JPEG re-encoding and noise move a few bits (at most
    6 of 143 in our tests), while distinct MRI slices, even of the same head, differ by 20 or more.
    """
    from PIL import Image
    from scipy.fft import dctn

    small = np.asarray(Image.fromarray(np.asarray(image, np.float32)).resize((32, 32), Image.Resampling.BOX))
    coefficients = dctn(small, norm="ortho")[:HASH_BLOCK, :HASH_BLOCK].ravel()[1:]
    return np.packbits(coefficients > np.median(coefficients))


def near_duplicates(hashes_a: np.ndarray, hashes_b: np.ndarray, max_distance: int = 12) -> np.ndarray:
    """Indices into ``hashes_a`` (N, 18) whose hash lies within ``max_distance`` bits of any row of ``hashes_b``.

    Vectorised over all pairs (XOR then popcount), in blocks so memory stays small.
    """
    a = np.asarray(hashes_a, dtype=np.uint8)
    b = np.asarray(hashes_b, dtype=np.uint8)
    if len(a) == 0 or len(b) == 0:
        return np.zeros(0, dtype=np.int64)
    popcount = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(axis=1).astype(np.uint16)
    leaks = np.zeros(len(a), dtype=bool)
    for start in range(0, len(a), 256):
        distance = popcount[a[start:start + 256, None, :] ^ b[None, :, :]].sum(axis=-1)
        leaks[start:start + 256] = (distance <= max_distance).any(axis=1)
    return np.flatnonzero(leaks)


@dataclass
class LoadedImages:
    """Model-ready arrays for a list of samples, and the files that could not be read (with the reason)."""

    inputs: np.ndarray  # (N, size, size, channels) float32
    hashes: np.ndarray  # (N, 18) uint8 perceptual hashes of the original slices
    mirror_hashes: np.ndarray  # (N, 18) the same of the slices flipped left-right: public sets hold mirrored copies
    samples: list[Sample]
    failures: list[tuple[str, str]]
    masks: np.ndarray | None = None  # (N, size, size) float32 lesion masks on the input grid, when the set has them
    masks_known: np.ndarray | None = None  # (N,) bool: False where a tumor slice's mask is unknown (its mask is zeros)

    def keep(self, indices: np.ndarray) -> None:
        """Keep only the rows at ``indices`` (e.g. after removing leaks)."""
        self.inputs, self.hashes, self.mirror_hashes = self.inputs[indices], self.hashes[indices], self.mirror_hashes[indices]
        self.samples = [self.samples[i] for i in indices]
        if self.masks is not None:
            self.masks, self.masks_known = self.masks[indices], self.masks_known[indices]


def mask_path(sample: Sample) -> Path:
    """Where a slice's lesion mask would be: ``masks/`` beside ``Training/`` and ``Testing/`` mirrors them, the mask
    named like the slice (``python -m brainml synth``) or with its stem and ``.png`` (a JPEG slice's mask)."""
    path = sample.path
    folder = path.parents[2] / "masks" / path.parent.parent.name / path.parent.name
    same_name = folder / path.name
    return same_name if same_name.is_file() else folder / f"{path.stem}.png"


def mask_known(sample: Sample) -> bool:
    """Whether the slice's lesion is known: a normal slice has none, a tumor slice needs its mask file. A tumor
    slice without one has an unknown lesion, not an empty one, and must stay out of any mask loss."""
    return sample.label == "notumor" or mask_path(sample).is_file()


def read_mask(path: Path) -> np.ndarray:
    """A lesion mask PNG as (H, W) float32 in [0, 1]. Not through ``read_scan``: an empty mask is a valid mask,
    where a blank scan is an error."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("L"), np.float32) / 255.0


def has_masks(samples: list[Sample]) -> bool:
    """Whether any tumor slice has a lesion mask (some real sets mask only part of their tumor slices)."""
    return any(mask_path(sample).is_file() for sample in samples if sample.label != "notumor")


def load_images(samples: list[Sample], spec: PrepSpec, workers: int = 4, with_masks: bool = False) -> LoadedImages:
    """Read and prepare every sample through the same path the app uses (``read_scan`` then ``prepare``); with
    ``with_masks``, also its lesion mask, cropped and resized exactly like the slice."""

    def load(sample: Sample):
        try:
            scan = read_scan(sample.path)
        except ScanError as error:
            return sample, None, None, None, str(error)
        tensor, box = prepare(scan.image, spec)
        mask = None
        if with_masks:
            source = mask_path(sample)
            mask = crop_like(read_mask(source), box, spec) if source.is_file() else np.zeros(spec.input_shape[:2])
        hashes = (perceptual_hash(scan.image), perceptual_hash(np.ascontiguousarray(scan.image[:, ::-1])))
        return sample, tensor, hashes, mask, None

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(load, samples))
    ok = [row for row in results if row[-1] is None]
    failures = [(str(row[0].path), row[-1]) for row in results if row[-1] is not None]
    inputs = np.stack([row[1] for row in ok]) if ok else np.zeros((0, *spec.input_shape), np.float32)
    hashes = np.array([row[2][0] for row in ok], dtype=np.uint8).reshape(len(ok), -1)
    mirror_hashes = np.array([row[2][1] for row in ok], dtype=np.uint8).reshape(len(ok), -1)
    masks = known = None
    if with_masks:
        masks = np.stack([row[3] for row in ok]).astype(np.float32) if ok else np.zeros((0, *spec.input_shape[:2]), np.float32)
        known = np.array([mask_known(row[0]) for row in ok], dtype=bool)
    return LoadedImages(inputs, hashes, mirror_hashes, [row[0] for row in ok], failures, masks, known)


AUGMENTATIONS = ("standard", "strong")


def augmentation(seed: int, strength: str = "standard"):
    """Augmentation as Keras layers, applied to the training split only (after splitting, so no copy of a
    validation or test image ever reaches training).

    "strong" is for real scans from many scanners: wider rotations, zooms and shifts (patients lie differently,
    fields of view differ) and brightness and noise (protocols and coils differ). Masks ride along as an extra
    channel, so the intensity changes touch them too; a change of at most 0.3 never moves them across the 0.5 that
    ``tf_dataset`` thresholds them at.
    """
    import keras

    wide = strength == "strong"
    if strength not in AUGMENTATIONS:
        raise ValueError(f"Unknown augmentation {strength!r}; use one of {', '.join(AUGMENTATIONS)}.")
    layers = [
        keras.layers.RandomFlip("horizontal", seed=seed),
        keras.layers.RandomRotation(0.08 if wide else 0.05, fill_mode="constant", seed=seed + 1),
        keras.layers.RandomZoom((-0.15, 0.15) if wide else (-0.1, 0.1), fill_mode="constant", seed=seed + 2),
        keras.layers.RandomTranslation(0.08 if wide else 0.05, 0.08 if wide else 0.05, fill_mode="constant", seed=seed + 3),
        keras.layers.RandomContrast(0.3 if wide else 0.2, seed=seed + 4),
    ]
    if wide:
        layers += [keras.layers.RandomBrightness(0.1, value_range=(0, 1), seed=seed + 5),
                   keras.layers.GaussianNoise(0.02, seed=seed + 6)]
    return keras.Sequential(layers, name="augmentation")


def tf_dataset(inputs: np.ndarray, targets: np.ndarray, batch_size: int, training: bool, seed: int = 0,
               weights: np.ndarray | None = None, masks: np.ndarray | None = None, mask_grid: int = 8,
               augment: bool = True, masks_known: np.ndarray | None = None, augmentation_strength: str = "standard",
               mixup: float = 0.0):
    """A ``tf.data`` pipeline: shuffled and augmented for training, plain and ordered otherwise.

    Args:
        weights: (N,) per-sample loss weights (class weights for recall), or None.
        masks: (N, S, S) lesion masks; when given, the targets become ``{"probability": targets, "lesion_map":
            (N, mask_grid, mask_grid, 1)}`` where a cell is 1 if any lesion pixel lies in it. The masks ride along
            as an extra channel through the same spatial augmentation as the images, so they stay aligned.
        masks_known: (N,) bool, False where a tumor slice's mask is unknown: its lesion-map loss weighs nothing
            (an unknown lesion is not an empty one). None: every mask is known.
        mixup: training only, when above 0: each image is blended with another of its batch (weight drawn from
            Beta(mixup, mixup), the larger share its own), and so are its targets (float; one-hot for classes),
            loss weights and lesion cells (see ``mix_batch``).
    """
    import tensorflow as tf

    weights = np.ones(len(inputs), np.float32) if weights is None else weights.astype(np.float32)
    if masks is None:
        dataset = tf.data.Dataset.from_tensor_slices((inputs, targets, weights))
    else:
        # Masks travel as bytes and join the images as an extra channel only per batch: a float copy of every
        # image with its mask stacked on would double the memory of a 192 px training set (about 7 GB).
        known = np.ones(len(inputs), np.float32) if masks_known is None else masks_known.astype(np.float32)
        dataset = tf.data.Dataset.from_tensor_slices(((inputs, (masks > 0.5).astype(np.uint8), known), targets, weights))
    if training:
        dataset = dataset.shuffle(len(inputs), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    augment = augmentation(seed, augmentation_strength) if training and augment else None
    mix = mix_batch(mixup, seed) if training and mixup > 0 else None
    channels = inputs.shape[-1]

    def arrange(x, y, w):
        if masks is not None:
            x, known = tf.concat([x[0], tf.cast(x[1][..., None], x[0].dtype)], axis=-1), x[2]
        if augment is not None:
            x = augment(x, training=True)
        if masks is None:
            return mix(x, y, w) if mix else (x, y, w)
        image, mask = x[..., :channels], x[..., channels:]
        pool = inputs.shape[1] // mask_grid
        cells = tf.cast(tf.nn.max_pool2d(mask, pool, pool, "VALID") > 0.5, tf.float32)
        # The lesion-map loss is per cell, so its weights are too (one per cell; class weights apply to the verdict).
        cell_weights = tf.ones_like(cells[..., 0]) * known[:, None, None]
        if mix:
            image, y, w, cells, cell_weights = mix(image, y, w, cells, cell_weights)
        return image, {"probability": y, "lesion_map": cells}, {"probability": w, "lesion_map": cell_weights}

    dataset = dataset.map(arrange, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def mix_batch(alpha: float, seed: int = 0):
    """Mixup (Zhang et al. 2018) within a batch: a function that blends each image with a shuffled partner of the
    same batch, ``x = lam * x + (1 - lam) * partner`` with ``lam`` drawn per image from Beta(alpha, alpha) and
    folded to at least 0.5, so the image stays mostly itself. Targets and loss weights are blended alike (targets
    must be float: one-hot for classes). Lesion cells blend too; their weights multiply, so a blend with an
    unknown mask teaches the lesion map nothing. A regulariser for small sets: the network cannot fit each slice
    by heart when no two epochs show it the same."""
    import tensorflow as tf

    def blend(lam, a, b):
        lam = tf.reshape(lam, [-1] + [1] * (len(a.shape) - 1))
        return lam * a + (1 - lam) * b

    def mix(image, y, w, cells=None, cell_weights=None):
        n = tf.shape(image)[0]
        first, second = (tf.random.gamma([n], alpha, seed=seed + k) for k in (11, 12))
        lam = first / tf.maximum(first + second, 1e-7)
        lam = tf.maximum(lam, 1 - lam)
        partner = tf.random.shuffle(tf.range(n), seed=seed + 13)
        y = tf.cast(y, tf.float32)
        mixed = (blend(lam, image, tf.gather(image, partner)), blend(lam, y, tf.gather(y, partner)),
                 blend(lam, w, tf.gather(w, partner)))
        if cells is None:
            return mixed
        return (*mixed, blend(lam, cells, tf.gather(cells, partner)), cell_weights * tf.gather(cell_weights, partner))

    return mix


def _manifest_column(root: Path, samples: list[Sample], column: str) -> list[str] | None:
    """One column of a synthetic set's ``manifest.csv`` for each sample ("" where a sample is not listed); None
    when the folder has no manifest (real data sets)."""
    import csv

    manifest = root / "manifest.csv"
    if not manifest.is_file():
        return None
    with open(manifest, newline="") as handle:
        values = {row["file"]: row.get(column) or "" for row in csv.DictReader(handle)}
    return [values.get(sample.path.relative_to(root).as_posix(), "") for sample in samples]


def lesion_diameters(root: str | os.PathLike, samples: list[Sample]) -> np.ndarray | None:
    """Each sample's lesion size from a synthetic set's ``manifest.csv``: the diameter of the circle of the same
    area, as a share of the image side (so it means the same at any resolution); NaN for slices without a lesion.
    None when the folder has no manifest (real data sets)."""
    root = Path(root)
    areas = _manifest_column(root, samples, "lesion_area_px")
    if areas is None:
        return None
    if not any(areas):
        return _mask_diameters(samples)
    generator = root / "GENERATOR.txt"
    side = 256.0
    if generator.is_file():
        for line in generator.read_text().splitlines():
            if line.startswith("size="):
                side = float(line.split("=", 1)[1])
    wanted = np.array([float(area or 0) for area in areas])
    return np.where(wanted > 0, 2 * np.sqrt(wanted / np.pi) / side, np.nan)


def _mask_diameters(samples: list[Sample]) -> np.ndarray | None:
    """Lesion sizes from the mask files of a real set (as ``lesion_diameters``); NaN for normal slices and for
    tumor slices whose mask is unknown. None when no slice has a mask."""
    diameters = np.full(len(samples), np.nan)
    for i, sample in enumerate(samples):
        source = mask_path(sample)
        if sample.label != "notumor" and source.is_file():
            mask = read_mask(source) > 0.5
            diameters[i] = 2 * np.sqrt(mask.sum() / np.pi) / mask.shape[0] if mask.any() else np.nan
    return diameters if np.isfinite(diameters).any() else None


def slice_sources(root: str | os.PathLike, samples: list[Sample]) -> np.ndarray | None:
    """Each sample's source archive (e.g. "figshare", "br35h", "sartaj") from a merged set's ``manifest.csv``; None
    when the folder has no manifest or names no sources. A model that learned which archive a slice came from,
    rather than what a tumor looks like, shows it in a breakdown by source."""
    sources = _manifest_column(Path(root), samples, "source")
    if sources is None or not any(sources):
        return None
    return np.array([source or "unknown" for source in sources])


def slice_contrasts(root: str | os.PathLike, samples: list[Sample]) -> np.ndarray | None:
    """Each sample's MRI contrast ("T1", "T1c", "T2", "FLAIR") from a synthetic set's ``manifest.csv``; None
    when the folder has no manifest or names no contrasts."""
    contrasts = _manifest_column(Path(root), samples, "contrast")
    if contrasts is None or not any(contrasts):
        return None
    return np.array(contrasts)


@dataclass
class MaskedCase:
    """A labelled slice with its lesion mask (synthetic data sets ship masks; see ``manifest.csv``)."""

    image: np.ndarray
    mask: np.ndarray
    label: str


def masked_cases(root: str | os.PathLike, split: str = "Testing", per_class: int | None = None,
                 samples: list[Sample] | None = None) -> list[MaskedCase]:
    """Tumor slices that have a lesion mask (``masks/`` beside the split folders, as ``mask_path`` finds them): the
    first ``per_class`` of each class, from ``samples`` when given, else from the data set's own ``split``.

    Raises:
        DatasetError: none of the chosen tumor slices has a mask.
    """
    wanted = {"testing": "test", "test": "test", "training": "train", "train": "train"}.get(split.lower(), split)
    if samples is None:
        samples = [sample for sample in discover(root).samples if sample.split == wanted]
    taken: Counter = Counter()
    cases = []
    for sample in samples:
        source = mask_path(sample)
        if sample.label in ("notumor", "tumor") or not source.is_file():
            continue
        if per_class is not None and taken[sample.label] >= per_class:
            continue
        mask = read_mask(source) > 0.5
        if mask.any():
            taken[sample.label] += 1
            cases.append(MaskedCase(read_scan(sample.path).image, mask, sample.label))
    if not cases:
        raise DatasetError(f"No tumor slices with lesion masks among the chosen images of {root}; localisation needs "
                           "masks in masks/<split>/<class>/ beside the image folders.")
    return cases
