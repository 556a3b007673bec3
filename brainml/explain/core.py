"""The explainer: heatmaps of prepared model inputs, and of whole slices mapped back onto their grid.

Every method explains a *score*: for a detector the tumor logit (or its negation, "why not a tumor"), for a
classifier the logit of one class. Maps come back on the model-input grid, or on the original slice's grid
through :func:`heatmap`. The methods themselves are defined in :mod:`brainml.explain.methods`.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf
from scipy import ndimage
from tf_keras_vis.saliency import Saliency
from tf_keras_vis.scorecam import Scorecam
from tf_keras_vis.utils.scores import BinaryScore, CategoricalScore

from ..bundle import ModelBundle
from ..labels import DETECTOR_CLASSES
from ..preprocess import CropBox, PrepSpec, prepare, uncrop
from .graph import explained_view
from .methods import find_method, method_label


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
        return method_label(self.method)


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
        class_names: Sequence[str] = DETECTOR_CLASSES,
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
        self.class_names = tuple(DETECTOR_CLASSES if task == "detect" else class_names)
        self.prep_spec = prep_spec
        self.input_shape = tuple(model.input_shape[1:])
        self.scorecam_channels = scorecam_channels
        self.smooth_samples = smooth_samples
        self.smooth_noise = smooth_noise
        self.seed = seed
        self.stride_cell = first_stride(model)
        self._logit_model = explained_view(model, layer_name, two_class=False)
        # tf-keras-vis' Score-CAM puts the model's outputs through a softmax. A detector's single output would
        # give every channel the same weight (softmax of one number is 1) and the map would be the plain sum of
        # activations; as two logits (0, z) the softmax is (1 - P(tumor), P(tumor)), the detector's own output.
        self._scorecam_model = explained_view(model, layer_name, two_class=True) if task == "detect" else None
        self._layercam_model = (self._logit_model if layercam_layer == layer_name
                                else explained_view(model, layercam_layer, two_class=False))
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
        definition = find_method(method)
        batch = self._as_batch(inputs)
        targets = self.resolve_targets(batch, target)
        if len(batch) == 0:
            return np.zeros((0, *self.input_shape[:2]), np.float32), targets
        return normalise_maps(definition.run(self, batch, targets)), targets

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

    def visualizer(self, key: str, make: Callable[[], object]):
        """The tf-keras-vis visualizer stored under ``key``, made by ``make()`` on first use."""
        with self._lock:
            visualizer = self._visualizers.get(key)
            if visualizer is None:
                visualizer = self._visualizers[key] = make()
            return visualizer

    def gradient_score(self, targets: list[str]):
        """The logit of each image's target: the detector's logit (negated for "notumor") or a class logit."""
        if self.task == "detect":
            return BinaryScore([name == "tumor" for name in targets])
        return CategoricalScore([self.class_names.index(name) for name in targets])

    def gradient_cam(self, key: str, kind, batch: np.ndarray, targets: list[str], layer: str | None = None,
                     value_free: bool = False) -> np.ndarray:
        """Raw maps of a gradient CAM visualizer class ``kind`` (Grad-CAM, Grad-CAM++, LayerCAM) at ``layer``
        (default: the Grad-CAM layer). ``value_free``: explain the score's gradient with its value set to 0."""
        layer = layer or self.layer_name
        model = self._layercam_model if layer == self.layercam_layer else self._logit_model
        score = self.gradient_score(targets)
        if value_free:
            score = _value_free(score)
        cams = self.visualizer(key, lambda: kind(model))(
            score, batch, penultimate_layer=layer, seek_penultimate_conv_layer=False,
            expand_cam=False, normalize_cam=False,
        )
        return _upsample(np.asarray(cams), self.input_shape[:2])

    def faster_scorecam(self, batch: np.ndarray, targets: list[str]) -> np.ndarray:
        """Faster Score-CAM, one image at a time: tf-keras-vis picks the kept channels over the whole batch,
        so a batched call would make each image's map depend on the others."""
        visualizer = self.visualizer("faster-scorecam", lambda: Scorecam(self._scorecam_model or self._logit_model))
        names = DETECTOR_CLASSES if self.task == "detect" else self.class_names
        channels = min(self.scorecam_channels, int(self._logit_model.get_layer(self.layer_name).output.shape[-1]))
        cams = [
            np.asarray(visualizer(
                CategoricalScore([names.index(name)]), image[None], penultimate_layer=self.layer_name,
                seek_penultimate_conv_layer=False, max_N=channels, expand_cam=False, normalize_cam=False,
            ))
            for image, name in zip(batch, targets)
        ]
        return _upsample(np.concatenate(cams), self.input_shape[:2])

    def smoothgrad(self, batch: np.ndarray, targets: list[str]) -> np.ndarray:
        """SmoothGrad as one vanilla-saliency call per chunk of noisy copies: the same average of absolute
        gradients as tf-keras-vis' ``smooth_samples`` loop, but batched and with seeded noise."""
        visualizer = self.visualizer("smoothgrad", lambda: Saliency(self._logit_model))
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
                self.gradient_score(chunk_targets), noisy, keepdims=True, normalize_map=False,
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
    prepared: tuple[np.ndarray, CropBox] | None = None,
) -> HeatmapResult:
    """Prepare one slice as its model expects, explain it and map the heatmap back onto the slice.

    Args:
        bundle_or_explainer: a :class:`~brainml.bundle.ModelBundle` (its explainer is built once and reused) or an
            :class:`Explainer`.
        slice2d: (H, W) float array in [0, 1], as :func:`brainml.io.read_scan` returns.
        method: one of :data:`METHODS`.
        target: see :meth:`Explainer.explain`.
        spec: the preprocessing; defaults to the model card's.
        prepared: the slice already prepared with that preprocessing and its crop box (a diagnosis's
            ``model_input`` and ``crop_box``), so it is not prepared twice.
    Returns:
        A :class:`HeatmapResult` whose ``map`` has the slice's shape and is zero outside the crop box.
    """
    explainer = _explainer(bundle_or_explainer)
    spec = _spec(explainer, spec)
    slice2d = np.asarray(slice2d, np.float32)
    tensor, box = prepared if prepared is not None else prepare(slice2d, spec)
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
