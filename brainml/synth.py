"""The synthetic MRI generator: the synthetic pair's training data and the Lab's cases, each with its lesion mask.

In the spirit of SynthSeg (Billot et al., "SynthSeg: Segmentation of brain MRI scans of any contrast and resolution
without retraining", Medical Image Analysis 2023), each slice starts from real anatomy (the Colin27 head, see
``assets/``) whose tissues get random intensities, and is then deformed, framed, blurred, biased and made noisy at
random, so a model has to learn shape and context rather than one scanner's look. Lesions follow the anatomy
radiologists use to tell them apart (:mod:`brainml.synth_lesions`, one entry per tumor type).
"""

from __future__ import annotations

import csv
import io
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image
from scipy import ndimage

from .labels import CLASS_NAMES
from .synth_lesions import draw_lesion, smooth_noise

GENERATOR_VERSION = "4"
CONTRASTS = ("T1", "T1c", "T2", "FLAIR")
# Public tumor sets are mostly post-contrast T1 (figshare, and so the Kaggle set built on it), then T2 and FLAIR.
CONTRAST_WEIGHTS = (0.15, 0.45, 0.25, 0.15)
PLANES = ("axial", "coronal", "sagittal")
ASSET = Path(__file__).parent / "assets" / "colin27_head.npz"

# Pituitary gland of the Colin27 head in MNI millimetres (read off its midline sagittal slice, above the sphenoid sinus).
SELLA_MNI = np.array([0.0, 2.0, -27.0])

# Mean intensity of each tissue per contrast, before the per-image jitter. Values follow the usual appearance:
# T1 (CSF dark, white matter brighter than grey), T2 (CSF bright, white matter darker), FLAIR (CSF suppressed).
TISSUE_MEANS = {
    #          csf   grey  white  fat   bone  soft   edema  necrosis solid  rim   mening pituit
    "T1":    (0.10, 0.42, 0.60, 0.90, 0.04, 0.32, 0.34, 0.14, 0.30, 0.36, 0.33, 0.34),
    "T1c":   (0.10, 0.42, 0.60, 0.90, 0.04, 0.36, 0.34, 0.14, 0.48, 0.88, 0.86, 0.66),
    "T2":    (0.95, 0.55, 0.38, 0.70, 0.05, 0.30, 0.82, 0.92, 0.70, 0.62, 0.58, 0.60),
    "FLAIR": (0.10, 0.55, 0.42, 0.65, 0.05, 0.30, 0.88, 0.30, 0.76, 0.68, 0.60, 0.56),
}
TISSUES = ("csf", "grey", "white", "fat", "bone", "soft", "edema", "necrosis", "solid", "rim", "meningioma", "pituitary")

# Colin27 T1 grey values of pure CSF, grey and white matter (k-means inside the brain mask, CSF set below the
# partial-volume cluster), used to turn the template into tissue fractions.
COLIN_CSF, COLIN_GREY, COLIN_WHITE = 25.0, 85.0, 109.0


@dataclass(frozen=True)
class SynthConfig:
    """What the generator varies and within which bounds."""

    size: int = 256
    plane_weights: tuple[float, float, float] = (0.7, 0.15, 0.15)
    head_fill: tuple[float, float] = (0.6, 0.95)
    rotation_deg: float = 15.0
    elastic_mm: float = 3.0
    # At the models' 128 px input a pixel is about 1.5 mm of head: a lesion under 4 mm radius spans two or three
    # pixels, below what the input can show (public sets label lesions radiologists could see on the slice).
    lesion_radius_mm: tuple[float, float] = (4.0, 26.0)
    noise_sigma: tuple[float, float] = (0.005, 0.04)
    blur_sigma_px: tuple[float, float] = (0.0, 1.0)
    bias_strength: float = 0.25
    # Lowest lesion contrast (in units of the image's intensity range), against both the tissue around the lesion
    # and the tissue it displaced. A "tumor" image whose lesion cannot be seen is a wrong label, not a hard case;
    # public sets label what radiologists could see.
    min_conspicuity: tuple[float, float] = (0.07, 0.14)
    # Share of meningiomas with a visible CSF cleft between tumor and brain (the sign that marks a mass extra-axial).
    csf_cleft_rate: float = 0.7


@dataclass
class SynthCase:
    """One generated slice with its ground truth."""

    image: np.ndarray  # (size, size) float32 in [0, 1]
    mask: np.ndarray  # (size, size) bool, the lesion (tumor core, not edema); all False for "notumor"
    label: str
    contrast: str
    plane: str
    level_mm: float  # MNI coordinate of the slice along its normal
    lesion_centre: tuple[int, int] | None = None  # (row, col) of the lesion's centre of mass
    lesion_area_px: int = 0
    extras: dict = field(default_factory=dict)


@lru_cache(maxsize=1)
def load_anatomy() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Colin27 head: (T1 volume as float32 grey values 0-255, brain mask, voxel of MNI origin); axes are RAS."""
    with np.load(ASSET) as data:
        t1 = data["t1"].astype(np.float32)
        shape = tuple(int(v) for v in data["shape"])
        brain = np.unpackbits(data["brain"])[: int(np.prod(shape))].reshape(shape).astype(bool)
        origin = data["mni_origin_voxel"].astype(np.float32)
    return t1, brain, origin


def _anatomy_slice(plane: str, level_mm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 2D slice of the head (display orientation: superior or anterior up) and the sella's (row, col) on it."""
    t1, brain, origin = load_anatomy()
    axis = {"sagittal": 0, "coronal": 1, "axial": 2}[plane]
    index = int(np.clip(round(origin[axis] + level_mm), 0, t1.shape[axis] - 1))
    take = lambda volume: np.take(volume, index, axis=axis).T[::-1]  # noqa: E731 - rows run top-down
    sella_voxel = origin + SELLA_MNI
    in_plane = [a for a in range(3) if a != axis]
    # After the transpose and the flip, rows follow the second in-plane axis from its far end, cols the first.
    sella = np.array([t1.shape[in_plane[1]] - 1 - sella_voxel[in_plane[1]], sella_voxel[in_plane[0]]])
    return np.ascontiguousarray(take(t1)), np.ascontiguousarray(take(brain)), sella


def _tissue_fractions(t1_slice: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """(6, H, W) fractions of csf, grey, white, fat, bone, soft tissue from the template's T1 grey values."""
    v = t1_slice
    grey_low = np.clip((v - COLIN_CSF) / (COLIN_GREY - COLIN_CSF), 0, 1)
    white = np.clip((v - COLIN_GREY) / (COLIN_WHITE - COLIN_GREY), 0, 1)
    grey = grey_low - white
    csf = 1 - grey_low
    fat = 1 / (1 + np.exp(-(v - 118) / 8))
    bone = 1 / (1 + np.exp((v - 30) / 6)) * (v > 1)
    soft = np.clip(1 - fat - bone, 0, 1) * (v > 1)
    inside = brain.astype(np.float32)
    outside = 1 - inside
    return np.stack([csf * inside, grey * inside, white * inside, fat * outside, bone * outside, soft * outside])


def _level_for(label: str, plane: str, rng: np.random.Generator) -> float:
    sella = {"axial": SELLA_MNI[2], "coronal": SELLA_MNI[1], "sagittal": SELLA_MNI[0]}[plane]
    # A third of the normal slices pass through the sella too, so that the slice level alone does not say
    # "pituitary": a model has to see the adenoma.
    if label == "pituitary" or (label == "notumor" and rng.uniform() < 1 / 3):
        return float(sella + rng.uniform(-5, 5))
    low, high = {"axial": (-38.0, 62.0), "coronal": (-75.0, 40.0), "sagittal": (-30.0, 30.0)}[plane]
    return float(rng.uniform(low, high))


def generate_case(
    rng: np.random.Generator,
    label: str,
    config: SynthConfig = SynthConfig(),
    contrast: str | None = None,
    plane: str | None = None,
    radius_mm: float | None = None,
    position: tuple[float, float] | None = None,
) -> SynthCase:
    """Make one synthetic slice of the given class ("glioma", "meningioma", "notumor", "pituitary").

    Args:
        contrast, plane: fix the contrast ("T1", "T1c", "T2", "FLAIR") or plane instead of drawing them.
        radius_mm: fix the lesion's radius (pituitary lesions are capped at 16 mm, meningiomas at 22 mm).
        position: (row, col) as fractions of the slice; the lesion goes to the nearest site where its type occurs
            (white matter for glioma, the dura for meningioma). Pituitary lesions always sit in the sella.
    The random draws happen in the same order whatever is fixed, so a seed keeps its meaning.
    """
    if label not in CLASS_NAMES:
        raise ValueError(f"unknown class {label!r}; expected one of {CLASS_NAMES}")
    if contrast is not None and contrast not in CONTRASTS:
        raise ValueError(f"unknown contrast {contrast!r}; expected one of {CONTRASTS}")
    if plane is not None and plane not in PLANES:
        raise ValueError(f"unknown plane {plane!r}; expected one of {PLANES}")
    drawn_contrast = str(rng.choice(CONTRASTS, p=CONTRAST_WEIGHTS))
    contrast = contrast or drawn_contrast
    drawn_plane = str(rng.choice(PLANES, p=np.array(config.plane_weights) / sum(config.plane_weights)))
    plane = plane or drawn_plane
    level = _level_for(label, plane, rng)
    t1_slice, brain, sella = _anatomy_slice(plane, level)
    shape = t1_slice.shape
    means = np.array(TISSUE_MEANS[contrast]) * np.exp(rng.normal(0, 0.08, size=len(TISSUES)))
    mean_of = dict(zip(TISSUES, means))

    lesion = None
    if label != "notumor":
        for _attempt in range(4):
            lesion = draw_lesion(label, _tissue_fractions(t1_slice, brain), brain, sella, rng, config, radius_mm, position)
            if lesion is not None:
                break
            level = _level_for(label, plane, rng)
            t1_slice, brain, sella = _anatomy_slice(plane, level)
    if lesion is not None:
        appearance, tumor, (source_rows, source_cols), _centre = lesion
        t1_slice = ndimage.map_coordinates(t1_slice, [source_rows, source_cols], order=1, mode="constant")
        brain = ndimage.map_coordinates(brain.astype(np.float32), [source_rows, source_cols], order=1) > 0.5
    fractions = _tissue_fractions(t1_slice, brain)
    image = np.tensordot(means[:6], fractions, axes=1).astype(np.float32)
    # Fine texture within tissue: real slices are never flat.
    image *= 1 + 0.03 * rng.standard_normal(shape).astype(np.float32)

    tumor = np.zeros(shape, np.float32)
    if lesion is not None:
        displaced = image.copy()
        cleft = appearance.get("cleft")
        if cleft is not None:
            image = image * (1 - cleft) + cleft * mean_of["csf"]
        edema = appearance.get("edema")
        if edema is not None:
            # Vasogenic edema spreads along white matter and spares the cortex.
            weight = np.clip(edema * (fractions[2] + 0.3 * fractions[1]), 0, 1)
            image = image * (1 - weight) + weight * mean_of["edema"]
        for part in ("solid", "meningioma", "pituitary", "rim", "necrosis"):
            alpha = appearance.get(part)
            if alpha is None or np.isscalar(alpha):
                continue
            weight = np.clip(alpha, 0, 1.2)
            image = image * (1 - np.clip(weight, 0, 1)) + np.clip(weight, 0, 1) * mean_of[part] * np.maximum(weight, 1)
        tumor = lesion[1]
        image = _ensure_conspicuous(image, displaced, tumor, rng.uniform(*config.min_conspicuity))

    image, tumor = _frame(image, tumor, rng, config)
    image = _acquire(image, rng, config)
    mask = tumor > 0.5
    if label != "notumor" and mask.sum() == 0:
        # The lesion fell outside the frame: draw again rather than ship a tumor image without a tumor.
        return generate_case(rng, label, config, contrast, plane, radius_mm, position)
    centre = tuple(int(round(v)) for v in ndimage.center_of_mass(mask)) if mask.any() else None
    return SynthCase(image, mask, label, contrast, plane, level, centre, int(mask.sum()))


def _ensure_conspicuous(image: np.ndarray, displaced: np.ndarray, tumor: np.ndarray, minimum: float) -> np.ndarray:
    """Shift the lesion's intensity until it differs by at least ``minimum`` from the tissue around it and from the
    tissue it displaced (``displaced``: the slice before the lesion was drawn). The second keeps a meningioma as
    grey as the cortex it sits on from passing because the skull beside it is dark."""
    inside = tumor > 0.5
    if not inside.any():
        return image
    ring = ndimage.binary_dilation(inside, iterations=3) & ~inside & (image > 0.02)
    weight = np.clip(tumor, 0, 1)
    for _pass in range(3):
        lesion = float(image[inside].mean())
        references = [float(displaced[inside].mean())] + ([float(image[ring].mean())] if ring.any() else [])
        closest = min(references, key=lambda reference: abs(lesion - reference))
        difference = lesion - closest
        if abs(difference) >= minimum:
            break
        # Away from the closest reference; when that would run into the other one, the other way past both.
        direction = 1.0 if difference >= 0 else -1.0
        others = [reference for reference in references if reference != closest]
        if others and abs(lesion + direction * (minimum - abs(difference)) - others[0]) < minimum:
            direction = -direction
            shift = abs(lesion - max(references) - minimum) if direction > 0 else abs(lesion - min(references) + minimum)
        else:
            shift = minimum - abs(difference)
        image = np.clip(image + direction * shift * weight, 0, None)
    return image


def _frame(image, tumor, rng, config):
    """Resample onto the output grid: random field of view, rotation, translation and elastic warp."""
    size = config.size
    head = image > 0.02
    rows = np.flatnonzero(head.any(axis=1))
    cols = np.flatnonzero(head.any(axis=0))
    extent = max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1
    mm_per_pixel = extent / (size * rng.uniform(*config.head_fill))
    angle = np.deg2rad(rng.uniform(-config.rotation_deg, config.rotation_deg))
    centre = np.array([(rows[0] + rows[-1]) / 2, (cols[0] + cols[-1]) / 2]) + rng.normal(0, 0.04 * extent, 2)
    grid = (np.indices((size, size), dtype=np.float32) - (size - 1) / 2) * mm_per_pixel
    cos, sin = np.cos(angle), np.sin(angle)
    source_rows = centre[0] + cos * grid[0] - sin * grid[1]
    source_cols = centre[1] + sin * grid[0] + cos * grid[1]
    source_rows += config.elastic_mm * smooth_noise(rng, (size, size), 5)
    source_cols += config.elastic_mm * smooth_noise(rng, (size, size), 5)
    if rng.uniform() < 0.5:
        source_cols = source_cols[:, ::-1]  # both left-right display conventions occur
    coordinates = [source_rows, source_cols]
    framed = ndimage.map_coordinates(image, coordinates, order=1, mode="constant")
    framed_tumor = ndimage.map_coordinates(tumor, coordinates, order=1, mode="constant")
    return framed, framed_tumor


def _acquire(image, rng, config):
    """What the scanner adds: bias field, blur, Rician noise, and the display's windowing."""
    size = image.shape[0]
    bias = np.exp(config.bias_strength * smooth_noise(rng, image.shape, 4)).astype(np.float32)
    image = image * bias
    image = ndimage.gaussian_filter(image, rng.uniform(*config.blur_sigma_px))
    sigma = rng.uniform(*config.noise_sigma)
    # Magnitude images have Rician noise: the modulus of a complex signal with Gaussian noise in each channel.
    image = np.hypot(image + rng.normal(0, sigma, image.shape), rng.normal(0, sigma, image.shape))
    high = np.percentile(image, 99.7) * rng.uniform(0.95, 1.15)
    image = np.clip(image / max(high, 1e-6), 0, 1) ** rng.uniform(0.8, 1.25)
    return image.astype(np.float32).reshape(size, size)


# --- the data set on disk -----------------------------------------------------------------------------------

MANIFEST_FIELDS = ("file", "class", "split", "contrast", "plane", "slice_level_mm", "lesion_row", "lesion_col",
                   "lesion_area_px", "mask")


def _case_plan(n: int, seed: int, test_fraction: float) -> list[tuple[int, str, str]]:
    """(index, class, split) for every image: classes balanced, order shuffled by the seed."""
    rng = np.random.default_rng([seed, 0])
    labels = [CLASS_NAMES[i % len(CLASS_NAMES)] for i in range(n)]
    rng.shuffle(labels)
    n_test = int(round(n * test_fraction))
    # Balanced test split: the first n_test of each class-ordered pass go to Testing.
    splits, test_taken = [], {name: 0 for name in CLASS_NAMES}
    per_class_test = {name: n_test // len(CLASS_NAMES) + (i < n_test % len(CLASS_NAMES)) for i, name in enumerate(CLASS_NAMES)}
    for label in labels:
        if test_taken[label] < per_class_test[label]:
            test_taken[label] += 1
            splits.append("Testing")
        else:
            splits.append("Training")
    return [(index + 1, label, split) for index, (label, split) in enumerate(zip(labels, splits))]


def _render(job: tuple[int, str, str, int, SynthConfig]) -> tuple[dict, bytes, bytes]:
    index, label, split, seed, config = job
    case = generate_case(np.random.default_rng([seed, index]), label, config)
    stem = f"synth_{index:06d}"
    row = {
        "file": f"{split}/{label}/{stem}.png",
        "class": label,
        "split": split,
        "contrast": case.contrast,
        "plane": case.plane,
        "slice_level_mm": f"{case.level_mm:.1f}",
        "lesion_row": "" if case.lesion_centre is None else case.lesion_centre[0],
        "lesion_col": "" if case.lesion_centre is None else case.lesion_centre[1],
        "lesion_area_px": case.lesion_area_px,
        "mask": f"masks/{split}/{label}/{stem}.png",
    }
    return row, to_png(case.image), to_png(case.mask.astype(np.float32))


def to_png(image: np.ndarray) -> bytes:
    """8-bit greyscale PNG bytes of a [0, 1] image (no timestamps, so the same pixels give the same bytes)."""
    buffer = io.BytesIO()
    Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def generate_dataset(
    out_dir: str | os.PathLike,
    n: int,
    seed: int,
    config: SynthConfig = SynthConfig(),
    test_fraction: float = 0.2,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write ``n`` slices in the Kaggle "Brain Tumor MRI Dataset" layout, masks in ``masks/``, and ``manifest.csv``.

    The same ``seed`` gives the same bytes: each image draws from its own generator seeded by (seed, index), so
    the result does not depend on the number of worker processes.
    """
    out = Path(out_dir)
    for split in ("Training", "Testing"):
        for name in CLASS_NAMES:
            (out / split / name).mkdir(parents=True, exist_ok=True)
            (out / "masks" / split / name).mkdir(parents=True, exist_ok=True)
    jobs = [(index, label, split, seed, config) for index, label, split in _case_plan(n, seed, test_fraction)]
    workers = workers or min(os.cpu_count() or 1, 8)
    rows = []
    with ProcessPoolExecutor(max_workers=workers) if workers > 1 else _Serial() as pool:
        for done, (row, image_png, mask_png) in enumerate(pool.map(_render, jobs, chunksize=16), start=1):
            (out / row["file"]).write_bytes(image_png)
            (out / row["mask"]).write_bytes(mask_png)
            rows.append(row)
            if progress:
                progress(done, len(jobs))
    with open(out / "manifest.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    (out / "GENERATOR.txt").write_text(
        f"BrainML synthetic MRI data set\ngenerator_version={GENERATOR_VERSION}\nseed={seed}\nn={n}\nsize={config.size}\n"
        "Synthetic images for demonstration and teaching; not patient data.\n"
    )
    return out


class _Serial:
    """A stand-in for a process pool when one worker is asked for (keeps tests and debugging simple)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    @staticmethod
    def map(function, items, chunksize=1):
        return map(function, items)


def contact_sheet(cases: list[SynthCase], columns: int = 8, tile: int = 160) -> Image.Image:
    """A grid of cases, each captioned with class, contrast and plane, the lesion outlined in red."""
    from PIL import ImageDraw

    rows = (len(cases) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * tile, rows * (tile + 14)), "black")
    draw = ImageDraw.Draw(sheet)
    for position, case in enumerate(cases):
        grey = np.round(case.image * 255).astype(np.uint8)
        rgb = np.stack([grey] * 3, axis=-1)
        outline = case.mask & ~ndimage.binary_erosion(case.mask, iterations=2)
        rgb[outline] = (255, 40, 40)
        thumb = Image.fromarray(rgb).resize((tile, tile), Image.Resampling.BILINEAR)
        x, y = (position % columns) * tile, (position // columns) * (tile + 14)
        sheet.paste(thumb, (x, y + 14))
        draw.text((x + 2, y + 1), f"{case.label} {case.contrast} {case.plane[:3]}", fill=(230, 230, 230))
    return sheet


def sample_cases(n: int, seed: int, config: SynthConfig = SynthConfig()) -> list[SynthCase]:
    """``n`` cases cycling through the classes, for sheets, tests and the Lab page."""
    return [generate_case(np.random.default_rng([seed, i + 1]), CLASS_NAMES[i % 4], config) for i in range(n)]
