"""Heatmaps of where a model found its evidence, through tf-keras-vis, and how well they point at a known lesion.

Every method explains a *score*: for a detector the tumor logit (or its negation, "why not a tumor"), for a
classifier the logit of one class. Maps come back on the model-input grid, or on the original slice's grid
through :func:`heatmap`. :func:`pointing_game`, :func:`energy_in_mask` and :func:`localisation_table` score maps
against ground-truth lesion masks, such as those of :mod:`brainml.synth`.

Methods and the papers they come from:

- ``gradcam``: Selvaraju et al., "Grad-CAM: Visual explanations from deep networks via gradient-based
  localization", ICCV 2017.
- ``gradcam++``: Chattopadhay et al., "Grad-CAM++: Generalized gradient-based visual explanations for deep
  convolutional networks", WACV 2018.
- ``faster-scorecam``: Wang et al., "Score-CAM: Score-weighted visual explanations for convolutional neural
  networks", CVPR Workshops 2020; the "faster" variant keeps only the channels whose activation varies most.
- ``layercam``: Jiang et al., "LayerCAM: Exploring hierarchical class activation maps for localization",
  IEEE Transactions on Image Processing 2021.
- ``smoothgrad``: Smilkov et al., "SmoothGrad: removing noise by adding noise", ICML Workshop 2017. Its map is
  averaged over each cell of the network's first stride (2 x 2 pixels for the compact CNN): the input gradient of
  a strided convolution alternates from pixel to pixel within every cell, a checkerboard that belongs to the
  network's sampling grid, not to the image (Odena et al., "Deconvolution and checkerboard artifacts", Distill
  2016).
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf
from scipy import ndimage
from tf_keras_vis.gradcam import Gradcam
from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
from tf_keras_vis.layercam import Layercam
from tf_keras_vis.saliency import Saliency
from tf_keras_vis.scorecam import Scorecam
from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
from tf_keras_vis.utils.scores import BinaryScore, CategoricalScore

from .bundle import ModelBundle
from .preprocess import CropBox, PrepSpec, prepare, prepare_batch, uncrop

METHODS = ("gradcam", "gradcam++", "faster-scorecam", "layercam", "smoothgrad")
METHOD_LABELS = {
    "gradcam": "Grad-CAM",
    "gradcam++": "Grad-CAM++",
    "faster-scorecam": "Faster Score-CAM",
    "layercam": "LayerCAM",
    "smoothgrad": "SmoothGrad",
}
METHOD_PAPERS = {
    "gradcam": "Selvaraju et al., ICCV 2017",
    "gradcam++": "Chattopadhay et al., WACV 2018",
    "faster-scorecam": "Wang et al., CVPR Workshops 2020",
    "layercam": "Jiang et al., IEEE TIP 2021",
    "smoothgrad": "Smilkov et al., ICML Workshop 2017",
}
DETECTOR_TARGETS = ("notumor", "tumor")  # the order of a detector card's class_names
# The pointing game's tolerance: Zhang et al. (ECCV 2016) count a peak within 15 px of the object at 224 px;
# lesions here can be a few pixels wide, so a peak counts when it lies within this many pixels of the mask.
POINTING_TOLERANCE_PX = 4
# How many of the last layer's channels Faster Score-CAM keeps (those whose activation varies most).
SCORECAM_CHANNELS = 16
# SmoothGrad: Smilkov et al. find 10-20 % noise and a few tens of samples enough to smooth the gradient.
SMOOTH_SAMPLES = 20
SMOOTH_NOISE = 0.15
# Gradients of this many noisy copies are taken at once; more only costs memory.
SMOOTHGRAD_BATCH = 64


@dataclass
class HeatmapResult:
    """One slice's heatmap.

    Attributes:
        map: (H, W) float32 in [0, 1] on the original slice's grid; zero outside ``crop_box``.
        model_map: (S, S) float32 in [0, 1] on the model-input grid.
        method: one of :data:`METHODS`.
        target: the class explained ("tumor" / "notumor" for a detector, a class name for a classifier).
        crop_box: the region of the slice that the model saw.
        empty: True when the method found no evidence for ``target`` (an all-zero map); show a message, not a
            blank overlay.
    """

    map: np.ndarray
    model_map: np.ndarray
    method: str
    target: str
    crop_box: CropBox
    empty: bool

    @property
    def method_label(self) -> str:
        return METHOD_LABELS[self.method]


class Explainer:
    """Heatmaps for one model; build once per model and keep it (building costs a few hundred milliseconds).

    The visualizers see a view of the model that ends at the ``logits`` layer, so every method explains a logit
    rather than a saturated probability. The view shares the model's layers and weights; the model itself is
    never changed, so one model can serve every user of the app. A model without a ``logits`` layer is cloned
    and its output activation made linear by tf-keras-vis's ``ReplaceToLinear`` on the clone.

    The view runs as two traced graphs, below and above ``layer_name``: tf-keras-vis calls Keras eagerly, which
    runs a Keras 3 model layer by layer (about 50 ms for Grad-CAM on the compact CNN, against about 20 ms
    traced).

    Args:
        model: a flat functional Keras model, as :func:`brainml.models.build_model` makes.
        layer_name: the 4D layer the CAM methods explain (the card's ``gradcam_layer``).
        layercam_layer: the layer LayerCAM explains instead (the card's ``layercam_layer``); None: ``layer_name``.
        task: "detect" (one sigmoid output) or "classify" (softmax over ``class_names``).
        class_names: the classifier's classes in output order; ignored for a detector.
        prep_spec: how slices become model input; needed by :func:`heatmap` and :func:`localisation_table`.
        scorecam_channels: channels Faster Score-CAM keeps.
        smooth_samples: noisy copies SmoothGrad averages.
        smooth_noise: SmoothGrad's noise, as a fraction of each image's value range.
        seed: seed of SmoothGrad's noise, so the same image always gives the same map.
    Raises:
        ValueError: an unknown task, a layer the model lacks or that is not spatial, or class names that do not
            match the model's outputs.
    """

    def __init__(
        self,
        model: keras.Model,
        layer_name: str,
        task: str,
        class_names: Sequence[str] = DETECTOR_TARGETS,
        prep_spec: PrepSpec | None = None,
        scorecam_channels: int = SCORECAM_CHANNELS,
        smooth_samples: int = SMOOTH_SAMPLES,
        smooth_noise: float = SMOOTH_NOISE,
        seed: int = 0,
        layercam_layer: str | None = None,
    ):
        if task not in ("detect", "classify"):
            raise ValueError(f"task must be 'detect' or 'classify', not {task!r}")
        outputs = model.output_shape[-1]
        if task == "detect" and outputs != 1:
            raise ValueError(f"A detector has one output; {model.name} has {outputs}.")
        if task == "classify" and len(class_names) != outputs:
            raise ValueError(f"{model.name} has {outputs} outputs but {len(class_names)} class names were given.")
        layercam_layer = layercam_layer or layer_name
        for name in (layer_name, layercam_layer):
            if name not in {layer.name for layer in model.layers}:
                raise ValueError(f"{model.name} has no layer {name!r} to explain.")
            if len(model.get_layer(name).output.shape) != 4:
                raise ValueError(f"Layer {name!r} of {model.name} is not spatial (4D); CAM methods need one.")
        self.layer_name = layer_name
        self.layercam_layer = layercam_layer
        self.task = task
        self.class_names = tuple(DETECTOR_TARGETS if task == "detect" else class_names)
        self.prep_spec = prep_spec
        self.input_shape = tuple(model.input_shape[1:])
        self.scorecam_channels = scorecam_channels
        self.smooth_samples = smooth_samples
        self.smooth_noise = smooth_noise
        self.seed = seed
        self.stride_cell = first_stride(model)
        self._logit_model = _explained_view(model, layer_name, two_class=False)
        # tf-keras-vis' Score-CAM puts the model's outputs through a softmax. A detector's single output would
        # give every channel the same weight (softmax of one number is 1) and the map would be the plain sum of
        # activations; as two logits (0, z) the softmax is (1 - P(tumor), P(tumor)), the detector's own output.
        self._scorecam_model = _explained_view(model, layer_name, two_class=True) if task == "detect" else None
        self._layercam_model = (self._logit_model if layercam_layer == layer_name
                                else _explained_view(model, layercam_layer, two_class=False))
        self._visualizers: dict[str, object] = {}
        self._lock = threading.Lock()

    @classmethod
    def for_bundle(cls, bundle: ModelBundle) -> "Explainer":
        """The explainer of a bundle's model, built on first use and then reused for the model's lifetime."""
        with _CACHE_LOCK:
            explainer = _EXPLAINERS.get(bundle.model)
            if explainer is None:
                card = bundle.card
                explainer = cls(bundle.model, card.gradcam_layer, card.task, card.class_names, card.prep_spec,
                                layercam_layer=card.layercam_layer)
                _EXPLAINERS[bundle.model] = explainer
        return explainer

    def explain(self, inputs: np.ndarray, method: str = "gradcam", target=None) -> np.ndarray:
        """Heatmaps of prepared model inputs.

        Args:
            inputs: (N, S, S, C) or (S, S, C) float32 tensors from :func:`brainml.preprocess.prepare`.
            method: one of :data:`METHODS`.
            target: what to explain. Detector: "tumor" (default) or "notumor" (the negated logit: evidence
                against a tumor). Classifier: a class name or index (default: each image's predicted class).
                A list gives one target per image.
        Returns:
            (N, S, S) float32 maps in [0, 1]; a map with no evidence for its target is all zero (see
            :func:`is_empty`).
        Raises:
            ValueError: an unknown method or target, or inputs of the wrong shape.
        """
        return self.explain_with_targets(inputs, method, target)[0]

    def explain_with_targets(self, inputs: np.ndarray, method: str = "gradcam", target=None):
        """:meth:`explain`, also returning the class explained for each image (a list of N names)."""
        if method not in METHODS:
            raise ValueError(f"Unknown heatmap method {method!r}. Choose one of: {', '.join(METHODS)}.")
        batch = self._as_batch(inputs)
        targets = self.resolve_targets(batch, target)
        if len(batch) == 0:
            return np.zeros((0, *self.input_shape[:2]), np.float32), targets
        if method == "faster-scorecam":
            raw = self._scorecam(batch, targets)
        elif method == "smoothgrad":
            raw = self._smoothgrad(batch, targets)
        else:
            raw = self._gradient_cam(method, batch, targets)
        return normalise_maps(raw), targets

    def resolve_targets(self, inputs: np.ndarray, target=None) -> list[str]:
        """The class each image's map explains, by name (see :meth:`explain` for what ``target`` accepts)."""
        count = len(inputs)
        if target is None:
            if self.task == "detect":
                return ["tumor"] * count
            logits = np.asarray(self._logit_model([tf.constant(inputs, tf.float32)]))
            return [self.class_names[index] for index in logits.argmax(axis=1)]
        if isinstance(target, (str, int, np.integer)):
            return [self._target_name(target)] * count
        names = [self._target_name(item) for item in target]
        if len(names) != count:
            raise ValueError(f"Got {len(names)} targets for {count} images.")
        return names

    def _target_name(self, target) -> str:
        if isinstance(target, (int, np.integer)):
            if not 0 <= int(target) < len(self.class_names):
                raise ValueError(f"Target index {target} is out of range for classes {list(self.class_names)}.")
            return self.class_names[int(target)]
        if target not in self.class_names:
            raise ValueError(f"Unknown target {target!r}. Choose one of: {', '.join(self.class_names)}.")
        return target

    def _as_batch(self, inputs) -> np.ndarray:
        batch = np.asarray(inputs, np.float32)
        if batch.ndim == len(self.input_shape):
            batch = batch[None]
        if batch.shape[1:] != self.input_shape:
            raise ValueError(f"The model takes inputs of shape {self.input_shape}, not {batch.shape[1:]}; "
                             "prepare slices with the model card's PrepSpec.")
        return batch

    def _visualizer(self, method: str):
        """tf-keras-vis visualizers, built once per method on first use."""
        with self._lock:
            visualizer = self._visualizers.get(method)
            if visualizer is None:
                if method == "faster-scorecam":
                    visualizer = Scorecam(self._scorecam_model or self._logit_model)
                elif method == "layercam":
                    visualizer = Layercam(self._layercam_model)
                else:
                    kind = {"gradcam": Gradcam, "gradcam++": GradcamPlusPlus, "smoothgrad": Saliency}[method]
                    visualizer = kind(self._logit_model)
                self._visualizers[method] = visualizer
            return visualizer

    def _gradient_score(self, targets: list[str]):
        """The logit of each image's target: the detector's logit (negated for "notumor") or a class logit."""
        if self.task == "detect":
            return BinaryScore([name == "tumor" for name in targets])
        return CategoricalScore([self.class_names.index(name) for name in targets])

    def _gradient_cam(self, method: str, batch: np.ndarray, targets: list[str]) -> np.ndarray:
        score = self._gradient_score(targets)
        if method == "gradcam++":
            score = _value_free(score)
        layer = self.layercam_layer if method == "layercam" else self.layer_name
        cams = self._visualizer(method)(
            score, batch, penultimate_layer=layer, seek_penultimate_conv_layer=False,
            expand_cam=False, normalize_cam=False,
        )
        return _upsample(np.asarray(cams), self.input_shape[:2])

    def _scorecam(self, batch: np.ndarray, targets: list[str]) -> np.ndarray:
        """Faster Score-CAM, one image at a time: tf-keras-vis picks the kept channels over the whole batch,
        so a batched call would make each image's map depend on the others."""
        visualizer = self._visualizer("faster-scorecam")
        names = DETECTOR_TARGETS if self.task == "detect" else self.class_names
        channels = min(self.scorecam_channels, int(self._logit_model.get_layer(self.layer_name).output.shape[-1]))
        cams = [
            np.asarray(visualizer(
                CategoricalScore([names.index(name)]), image[None], penultimate_layer=self.layer_name,
                seek_penultimate_conv_layer=False, max_N=channels, expand_cam=False, normalize_cam=False,
            ))
            for image, name in zip(batch, targets)
        ]
        return _upsample(np.concatenate(cams), self.input_shape[:2])

    def _smoothgrad(self, batch: np.ndarray, targets: list[str]) -> np.ndarray:
        """SmoothGrad as one vanilla-saliency call per chunk of noisy copies: the same average of absolute
        gradients as tf-keras-vis' ``smooth_samples`` loop, but batched and with seeded noise."""
        visualizer = self._visualizer("smoothgrad")
        samples = max(self.smooth_samples, 1)
        rng = np.random.default_rng(self.seed)
        spatial_axes = tuple(range(1, batch.ndim))
        spread = batch.max(axis=spatial_axes, keepdims=True) - batch.min(axis=spatial_axes, keepdims=True)
        noise_scale = self.smooth_noise * spread
        per_chunk = max(SMOOTHGRAD_BATCH // samples, 1)
        maps = []
        for start in range(0, len(batch), per_chunk):
            images, scales = batch[start:start + per_chunk], noise_scale[start:start + per_chunk]
            noisy = images[None] + rng.standard_normal((samples, *images.shape), np.float32) * scales[None]
            noisy = noisy.reshape(-1, *images.shape[1:])
            chunk_targets = targets[start:start + per_chunk] * samples
            gradients = np.asarray(visualizer(
                self._gradient_score(chunk_targets), noisy, keepdims=True, normalize_map=False,
            ))
            gradients = gradients.reshape(samples, len(images), *images.shape[1:]).mean(axis=0)
            maps.append(stride_cell_mean(gradients.max(axis=-1), self.stride_cell))
        return np.concatenate(maps)


def first_stride(model: keras.Model) -> int:
    """The stride of the first layer that subsamples the grid (a strided convolution or a pooling layer); 1 when
    none does."""
    for layer in model.layers:
        strides = getattr(layer, "strides", None)
        if strides and len(strides) == 2 and max(strides) > 1:
            return int(max(strides))
    return 1


def stride_cell_mean(maps: np.ndarray, cell: int) -> np.ndarray:
    """(N, H, W) maps averaged over every ``cell`` x ``cell`` window (stride 1, so the grid stays the same).

    A gradient taken through a convolution of stride ``cell`` repeats a pattern of period ``cell``; the window
    mean removes exactly that period and keeps everything coarser.
    """
    if cell <= 1:
        return maps
    return ndimage.uniform_filter(np.asarray(maps, np.float32), size=(1, cell, cell), mode="nearest")


_EXPLAINERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def heatmap(
    bundle_or_explainer: ModelBundle | Explainer,
    slice2d: np.ndarray,
    method: str = "gradcam",
    target=None,
    spec: PrepSpec | None = None,
) -> HeatmapResult:
    """Prepare one slice as its model expects, explain it and map the heatmap back onto the slice.

    Args:
        bundle_or_explainer: a :class:`~brainml.bundle.ModelBundle` (its explainer is built once and reused) or an
            :class:`Explainer`.
        slice2d: (H, W) float array in [0, 1], as :func:`brainml.io.read_scan` returns.
        method: one of :data:`METHODS`.
        target: see :meth:`Explainer.explain`.
        spec: the preprocessing; defaults to the model card's.
    Returns:
        A :class:`HeatmapResult` whose ``map`` has the slice's shape and is zero outside the crop box.
    """
    explainer = _explainer(bundle_or_explainer)
    spec = _spec(explainer, spec)
    slice2d = np.asarray(slice2d, np.float32)
    tensor, box = prepare(slice2d, spec)
    maps, targets = explainer.explain_with_targets(tensor, method, target)
    full = uncrop(maps[0], box, slice2d.shape)
    return HeatmapResult(full, maps[0], method, targets[0], box, bool(is_empty(maps[0])))


def normalise_maps(maps: np.ndarray) -> np.ndarray:
    """Scale each map of an (N, H, W) stack to [0, 1] by its own minimum and maximum.

    Non-finite values become 0 first (Grad-CAM++ exponentiates the score and can overflow). A map without
    contrast (all equal, e.g. all zero) comes back all zero rather than divided by zero.

    Returns:
        (N, H, W) float32.
    """
    maps = np.nan_to_num(np.asarray(maps, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    axes = tuple(range(1, maps.ndim))
    low = maps.min(axis=axes, keepdims=True)
    span = maps.max(axis=axes, keepdims=True) - low
    # A span this small next to the values is rounding noise, not a pattern worth stretching to full contrast.
    flat = span <= 1e-6 * np.maximum(np.abs(low), np.abs(low + span))
    flat |= span == 0
    scaled = np.where(flat, 0.0, (maps - low) / np.where(flat, 1.0, span))
    return scaled.astype(np.float32)


def is_empty(heat: np.ndarray) -> bool | np.ndarray:
    """True for a map without any positive value: the method found no evidence for its target.

    Args:
        heat: (H, W) map, or (N, H, W) maps.
    Returns:
        A bool for one map, an (N,) bool array for a stack.
    """
    heat = np.nan_to_num(np.asarray(heat, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if heat.ndim == 2:
        return not bool((heat > 0).any())
    return ~(heat > 0).reshape(len(heat), -1).any(axis=1)


def pointing_game(heat: np.ndarray, mask: np.ndarray, tolerance: int = POINTING_TOLERANCE_PX) -> bool | np.ndarray:
    """Whether a map's peak falls on the lesion (Zhang et al., "Top-down neural attention by excitation
    backprop", ECCV 2016).

    The peak is the map's first maximum in row-major order; it counts as a hit when it lies within
    ``tolerance`` pixels (Euclidean) of a mask pixel, i.e. inside the mask dilated by a disc of that radius,
    so a peak on the lesion's rim is not lost to a one-pixel offset. An empty map never hits.

    Args:
        heat: (H, W) map, or (N, H, W) maps.
        mask: bool lesion mask(s) of the same shape.
        tolerance: the dilation radius in pixels; 0 asks for the peak strictly inside the mask.
    Returns:
        A bool for one map, an (N,) bool array for a stack.
    """
    heat, mask, single = _paired(heat, mask)
    flat = heat.reshape(len(heat), -1)
    rows, cols = np.unravel_index(flat.argmax(axis=1), heat.shape[1:])
    reach = _dilate(mask, tolerance)
    hits = reach[np.arange(len(heat)), rows, cols] & (flat > 0).any(axis=1)
    return bool(hits[0]) if single else hits


def energy_in_mask(heat: np.ndarray, mask: np.ndarray) -> float | np.ndarray:
    """The share of a map's total value that lies inside the lesion mask (the "energy-based pointing game" of
    Wang et al., Score-CAM, 2020). 1.0 means every bit of attention is on the lesion; an empty map scores 0.

    Args:
        heat: (H, W) non-negative map, or (N, H, W) maps.
        mask: bool lesion mask(s) of the same shape.
    Returns:
        A float for one map, an (N,) float array for a stack.
    """
    heat, mask, single = _paired(heat, mask)
    heat = np.clip(heat, 0.0, None).astype(np.float64)
    total = heat.reshape(len(heat), -1).sum(axis=1)
    inside = (heat * mask).reshape(len(heat), -1).sum(axis=1)
    share = np.divide(inside, total, out=np.zeros_like(total), where=total > 0)
    return float(share[0]) if single else share


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
    from .models import gradcam_layer

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


def _explainer(bundle_or_explainer) -> Explainer:
    if isinstance(bundle_or_explainer, Explainer):
        return bundle_or_explainer
    return Explainer.for_bundle(bundle_or_explainer)


def _spec(explainer: Explainer, spec: PrepSpec | None) -> PrepSpec:
    spec = spec or explainer.prep_spec
    if spec is None:
        raise ValueError("This explainer has no PrepSpec; pass spec= (the model card's prep) to map heatmaps "
                         "onto slices.")
    return spec


def _paired(heat, mask):
    heat = np.nan_to_num(np.asarray(heat, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    mask = np.asarray(mask, bool)
    if heat.shape != mask.shape:
        raise ValueError(f"The map has shape {heat.shape} but the mask has shape {mask.shape}.")
    if heat.ndim not in (2, 3):
        raise ValueError(f"Expected (H, W) or (N, H, W) maps, got shape {heat.shape}.")
    single = heat.ndim == 2
    return (heat[None], mask[None], True) if single else (heat, mask, False)


def _dilate(masks: np.ndarray, radius: int) -> np.ndarray:
    """Dilate each (H, W) mask of an (N, H, W) stack by a disc, never across the stack."""
    if radius <= 0:
        return masks
    offsets = np.arange(-radius, radius + 1)
    disc = offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2
    return ndimage.binary_dilation(masks, structure=disc[None])


def _value_free(score):
    """The same gradient as ``score`` with the value 0.

    tf-keras-vis' Grad-CAM++ multiplies by exp(score), which overflows float32 once a logit passes ~88 (inf,
    then NaN maps) and underflows to an all-zero map below ~-88. That factor is one positive number per image
    and cancels in the method's weights up to the final normalisation, so giving it exp(0) = 1 changes nothing
    but the overflow.
    """

    def gradient_only(output):
        values = score(output)
        return values - tf.stop_gradient(values)

    return gradient_only


def _upsample(cams: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(N, h, w) -> (N, S, S), bilinear with pixel centres aligned.

    tf-keras-vis' own ``expand_cam`` uses ``scipy.ndimage.zoom``, which aligns the corner pixels: on a 4 x 4
    map the centre of an edge cell moves to the image border, half a cell (16 px at 128 px) off.
    """
    cams = np.nan_to_num(np.asarray(cams, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    resized = tf.image.resize(cams[..., None], size, method="bilinear")
    return np.asarray(resized)[..., 0]


class _TracedStage(keras.layers.Layer):
    """A slice of a model run as one traced graph, in inference mode."""

    def __init__(self, submodel: keras.Model, **kwargs):
        super().__init__(**kwargs)
        self.submodel = submodel
        signature = [tf.TensorSpec([None, *submodel.input_shape[1:]], tf.float32)]
        self._run = tf.function(lambda batch: submodel(batch, training=False), input_signature=signature)

    def call(self, inputs):
        return self._run(inputs)

    def compute_output_spec(self, inputs):
        return self.submodel.compute_output_spec(inputs)


class _ExplainedModel(keras.Model):
    """The view of a model that the visualizers explain.

    ``predict`` is replaced by plain batched calls: tf-keras-vis' Score-CAM calls ``predict`` on every image,
    which costs tens of milliseconds of set-up and prints a progress bar each time.
    """

    def predict(self, x, batch_size=32, **kwargs):
        batch = x[0] if isinstance(x, (list, tuple)) else x
        batch = np.asarray(batch, np.float32)
        outputs = [np.asarray(self([tf.constant(batch[start:start + batch_size])], training=False))
                   for start in range(0, len(batch), batch_size)]
        return np.concatenate(outputs)


def _explained_view(model: keras.Model, layer_name: str, two_class: bool) -> keras.Model:
    """Input -> ``layer_name`` -> logits, as two traced stages sharing ``model``'s layers.

    With ``two_class`` a detector's logit z becomes the pair (0, z), whose softmax is (1 - P(tumor), P(tumor)).
    """
    if "logits" in {layer.name for layer in model.layers}:
        source, logits = model, model.get_layer("logits").output
    else:
        # ReplaceToLinear changes the layer it is given, so it gets a copy: the shared model stays as it is.
        source = keras.models.clone_model(model)
        source.set_weights(model.get_weights())
        ReplaceToLinear()(source)
        logits = source.outputs[0]
    features = source.get_layer(layer_name).output
    if two_class:
        logits = keras.ops.concatenate([keras.ops.zeros_like(logits), logits], axis=-1)
    below = keras.Model(source.inputs, features, name=f"{model.name}_below")
    above = keras.Model(features, logits, name=f"{model.name}_above")
    image = keras.Input(shape=model.input_shape[1:], name="image")
    explained_features = _TracedStage(below, name=layer_name)(image)
    explained_logits = _TracedStage(above, name="head")(explained_features)
    # A list of inputs, because tf-keras-vis always calls models with a list.
    return _ExplainedModel([image], explained_logits, name=f"{model.name}_explained")
