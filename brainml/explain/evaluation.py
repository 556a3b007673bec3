"""How well each method's heatmaps find lesions whose masks are known, and the choice of LayerCAM's layer.

The scores themselves (pointing game, energy in mask) are pure numpy in :mod:`brainml.metrics.localisation`.
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np

from ..bundle import ModelBundle
from ..metrics.localisation import POINTING_TOLERANCE_PX, energy_in_mask, pointing_game
from ..models import gradcam_layer
from ..preprocess import PrepSpec, prepare_batch, uncrop
from .core import Explainer, _explainer, _spec
from .methods import METHODS


def localisation_table(
    explainer: Explainer | ModelBundle,
    cases,
    methods: Sequence[str] = METHODS,
    spec: PrepSpec | None = None,
    tolerance: int = POINTING_TOLERANCE_PX,
    batch_size: int = 32,
) -> dict:
    """How well each method's heatmaps find lesions whose masks are known, per class.

    Maps are compared with the masks on the original slices' grid. A detector explains "tumor"; a classifier
    explains each case's true class (its predicted class when the label is not one of its classes). Cases
    whose mask is empty (no tumor) are skipped.

    Args:
        explainer: an :class:`Explainer` or a model bundle.
        cases: objects with ``.image``, ``.mask`` and ``.label`` (e.g. :class:`brainml.synth.SynthCase`), or a
            tuple ``(images, masks)`` or ``(images, masks, labels)`` of equal-length sequences.
        methods: the methods to score.
        spec: the preprocessing; defaults to the explainer's.
        tolerance: the pointing game's tolerance in pixels.
        batch_size: images explained per call.
    Returns:
        ``{method: {class: {"pointing_game": hit rate, "energy_in_mask": mean share, "n": cases}}}``, with an
        extra class ``"all"`` over every case.
    """
    explainer = _explainer(explainer)
    spec = _spec(explainer, spec)
    images, masks, labels = _case_arrays(cases)
    keep = [index for index, mask in enumerate(masks) if mask.any()]
    images, masks, labels = [images[i] for i in keep], [masks[i] for i in keep], [labels[i] for i in keep]
    tensors, boxes = prepare_batch(images, spec)
    if explainer.task == "detect":
        targets = ["tumor"] * len(images)
    else:
        predicted = explainer.resolve_targets(tensors) if tensors.size else []
        targets = [label if label in explainer.class_names else guess for label, guess in zip(labels, predicted)]
    same_shape = len({mask.shape for mask in masks}) <= 1
    table = {}
    for method in methods:
        model_maps = np.concatenate(
            [explainer.explain(tensors[start:start + batch_size], method, targets[start:start + batch_size])
             for start in range(0, len(tensors), batch_size)]
        ) if len(tensors) else np.zeros((0, *explainer.input_shape[:2]), np.float32)
        maps = [uncrop(model_map, box, mask.shape) for model_map, box, mask in zip(model_maps, boxes, masks)]
        if same_shape and maps:
            hits = pointing_game(np.stack(maps), np.stack(masks), tolerance)
            shares = energy_in_mask(np.stack(maps), np.stack(masks))
        else:
            hits = np.array([pointing_game(m, k, tolerance) for m, k in zip(maps, masks)], bool)
            shares = np.array([energy_in_mask(m, k) for m, k in zip(maps, masks)], np.float64)
        table[method] = _summarise(np.asarray(hits, bool), np.asarray(shares, np.float64), labels)
    return table


def layercam_layer_candidates(model: keras.Model) -> list[str]:
    """The layers LayerCAM could explain: block outputs (``*_add``, and ``merge_relu`` after the compact CNN's
    merge) on a grid at least as fine as the Grad-CAM layer's, deepest first."""
    min_side = int(model.get_layer(gradcam_layer(model)).output.shape[1])
    names = [layer.name for layer in model.layers
             if (layer.name.endswith("_add") or layer.name == "merge_relu") and len(layer.output.shape) == 4
             and int(layer.output.shape[1]) >= min_side]
    return names[::-1]


def choose_layercam_layer(bundle: ModelBundle, cases, candidates: Sequence[str] | None = None) -> tuple[str, dict]:
    """The layer whose LayerCAM maps point at lesions most often on ``cases`` (held-out slices with masks, never
    the final test set: this is a choice, and a choice made on test data would flatter the test).

    Returns:
        ``(best layer, {layer: pointing game over all cases})``; ties go to the deeper layer.
    """
    card = bundle.card
    scores = {}
    for layer in candidates or layercam_layer_candidates(bundle.model):
        explainer = Explainer(bundle.model, card.gradcam_layer, card.task, card.class_names, card.prep_spec,
                              layercam_layer=layer)
        scores[layer] = localisation_table(explainer, cases, ("layercam",))["layercam"]["all"]["pointing_game"]
    return max(scores, key=scores.get), scores


def _summarise(hits: np.ndarray, shares: np.ndarray, labels: list[str]) -> dict:
    labels = np.asarray(labels, dtype=object)
    groups = {name: labels == name for name in sorted(set(labels.tolist()))}
    groups["all"] = np.ones(len(labels), bool)
    return {
        name: {
            "pointing_game": float(hits[chosen].mean()) if chosen.any() else 0.0,
            "energy_in_mask": float(shares[chosen].mean()) if chosen.any() else 0.0,
            "n": int(chosen.sum()),
        }
        for name, chosen in groups.items()
    }


def _case_arrays(cases) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    if isinstance(cases, tuple) and len(cases) in (2, 3) and not hasattr(cases[0], "image"):
        images, masks = list(cases[0]), list(cases[1])
        labels = list(cases[2]) if len(cases) == 3 else ["tumor"] * len(images)
        if not len(images) == len(masks) == len(labels):
            raise ValueError(f"Got {len(images)} images, {len(masks)} masks and {len(labels)} labels.")
    else:
        cases = list(cases)
        images, masks, labels = [c.image for c in cases], [c.mask for c in cases], [c.label for c in cases]
    images = [np.asarray(image, np.float32) for image in images]
    masks = [np.asarray(mask, bool) for mask in masks]
    for image, mask in zip(images, masks):
        if image.shape != mask.shape:
            raise ValueError(f"An image of shape {image.shape} came with a mask of shape {mask.shape}.")
    return images, masks, [str(label) for label in labels]
