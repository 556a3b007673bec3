"""Built-in example scans, so nobody needs a file to start.

- Synthetic slices, made on demand from fixed seeds: each is a recipe for :func:`brainml.synth.generate_case`
  (class, contrast, plane, lesion radius and seed), and the same recipe gives the same pixels on every machine.
  Each comes with its ground-truth lesion mask, which the Lab uses to check where the model looked.
- Eight real MRI slices (two per class) from the default models' held-out test part, stored in
  ``assets/examples/`` (sources and licences in ``assets/NOTICE.md``); the tumor slices carry expert masks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import synth
from .labels import CLASS_NAMES

# The generator's seed stream for examples: (EXAMPLE_SEED, seed) never collides with the data set's (seed, index).
EXAMPLE_SEED = 2024


@dataclass(frozen=True)
class Example:
    """A recipe for one synthetic example scan.

    Attributes:
        key: short identifier, used in URLs, widget state and file names.
        title: what a person sees in a list of examples.
        label: the true class ("glioma", "meningioma", "notumor", "pituitary").
        contrast, plane: as in :func:`brainml.synth.generate_case`.
        radius_mm: lesion radius; None for "notumor".
        seed: the second half of the generator's seed, chosen so the case shows its class clearly.
    """

    key: str
    title: str
    label: str
    contrast: str
    plane: str
    radius_mm: float | None
    seed: int

    @property
    def file_name(self) -> str:
        return f"example_{self.key}.png"


EXAMPLES = (
    Example("glioma", "Glioma · T1c · axial", "glioma", "T1c", "axial", 18.0, 5),
    Example("meningioma", "Meningioma · T1c · axial", "meningioma", "T1c", "axial", 16.0, 1),
    Example("pituitary", "Pituitary tumor · T1c · coronal", "pituitary", "T1c", "coronal", 11.0, 3),
    Example("notumor", "No tumor · T2 · axial", "notumor", "T2", "axial", None, 5),
)


def find_example(key: str) -> Example:
    """The example called ``key``.

    Raises:
        KeyError: no such example; the message lists the ones there are.
    """
    return _find(EXAMPLES, key, "example")


def example_case(key: str, size: int = 256) -> synth.SynthCase:
    """Generate the example ``key``: the slice (size, size) float32 in [0, 1] and its lesion mask."""
    example = find_example(key)
    return synth.generate_case(
        np.random.default_rng([EXAMPLE_SEED, example.seed]),
        example.label,
        synth.SynthConfig(size=size),
        contrast=example.contrast,
        plane=example.plane,
        radius_mm=example.radius_mm,
    )


def example_png(key: str, size: int = 256) -> bytes:
    """The example as 8-bit greyscale PNG bytes: what a user would upload, for tests and downloads."""
    return synth.to_png(example_case(key, size).image)


def localisation_cases(n: int, seed: int = 0, size: int = 256) -> list[synth.SynthCase]:
    """``n`` synthetic tumor cases (glioma, meningioma, pituitary in turn) for scoring heatmaps against masks.

    Drawn from their own seed stream, apart from the examples and from any data set the generator writes.
    """
    tumor_classes = [name for name in CLASS_NAMES if name != "notumor"]
    config = synth.SynthConfig(size=size)
    return [
        synth.generate_case(np.random.default_rng([EXAMPLE_SEED, 1_000_000 + seed, index]),
                            tumor_classes[index % len(tumor_classes)], config)
        for index in range(n)
    ]


def made_to_order(label: str, seed: int, contrast: str | None = None, plane: str | None = None,
                  radius_mm: float | None = None, position: tuple[float, float] | None = None,
                  size: int = 256) -> synth.SynthCase:
    """A synthetic case with the lesion the Lab asks for (see :func:`brainml.synth.generate_case` for the
    arguments); ``seed`` picks one of the many slices that fit, from a stream of its own."""
    return synth.generate_case(np.random.default_rng([EXAMPLE_SEED, 2_000_000 + int(seed)]), label,
                               synth.SynthConfig(size=size), contrast=contrast, plane=plane, radius_mm=radius_mm,
                               position=position)


REAL_EXAMPLES_DIR = Path(__file__).resolve().parent / "assets" / "examples"


@dataclass(frozen=True)
class RealExample:
    """A real MRI slice shipped with BrainML (see ``assets/NOTICE.md``).

    Attributes:
        key: e.g. "real-glioma-1"; the file is ``assets/examples/<key>.jpg``, its mask ``<key>-mask.png``.
        title: what a person sees in a list of examples.
        label: the true class, as the public data set labels it.
        source: where the slice comes from, with its licence.
    """

    key: str
    title: str
    label: str
    source: str

    @property
    def path(self) -> Path:
        return REAL_EXAMPLES_DIR / f"{self.key}.jpg"

    @property
    def mask_path(self) -> Path | None:
        mask = REAL_EXAMPLES_DIR / f"{self.key}-mask.png"
        return mask if mask.is_file() else None

    def read_bytes(self) -> bytes:
        """The JPEG as a user would upload it."""
        return self.path.read_bytes()


_FIGSHARE = "figshare brain tumor dataset (Cheng et al. 2015), CC BY 4.0, via the Kaggle Brain Tumor MRI Dataset"
REAL_EXAMPLES = (
    RealExample("real-glioma-1", "Real · glioma (figshare)", "glioma", _FIGSHARE),
    RealExample("real-glioma-2", "Real · glioma (figshare, 2)", "glioma", _FIGSHARE),
    RealExample("real-meningioma-1", "Real · meningioma (figshare)", "meningioma", _FIGSHARE),
    RealExample("real-meningioma-2", "Real · meningioma (figshare, 2)", "meningioma", _FIGSHARE),
    RealExample("real-notumor-1", "Real · no tumor (SARTAJ)", "notumor", "SARTAJ, via the Kaggle Brain Tumor MRI Dataset (CC0 1.0)"),
    RealExample("real-notumor-2", "Real · no tumor (Br35H)", "notumor", "Br35H, via the Kaggle Brain Tumor MRI Dataset (CC0 1.0)"),
    RealExample("real-pituitary-1", "Real · pituitary tumor (figshare)", "pituitary", _FIGSHARE),
    RealExample("real-pituitary-2", "Real · pituitary tumor (figshare, 2)", "pituitary", _FIGSHARE),
)


def find_real_example(key: str) -> RealExample:
    """The real example called ``key``.

    Raises:
        KeyError: no such example; the message lists the ones there are.
    """
    return _find(REAL_EXAMPLES, key, "real example")


def _find(examples, key: str, kind: str):
    for example in examples:
        if example.key == key:
            return example
    raise KeyError(f"There is no {kind} {key!r}; the {kind}s are {', '.join(e.key for e in examples)}.")
