"""The heatmap methods: one small definition each (name, label, paper, how to run it), in one registry.

Importing this module loads no TensorFlow: pages list the methods and their labels from here, and each method
imports its tf-keras-vis visualizer only when it first runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Method:
    """A heatmap method.

    Attributes:
        name: the identifier used by the CLI, the cards and the pages.
        label: what a person reads.
        paper: where the method comes from.
        run: ``run(explainer, batch, targets)``: raw (N, h, w) maps of a prepared (N, S, S, C) batch, one target
            class name per image (see :class:`brainml.explain.core.Explainer`).
    """

    name: str
    label: str
    paper: str
    run: Callable[..., np.ndarray]


def _gradcam(explainer, batch, targets):
    from tf_keras_vis.gradcam import Gradcam

    return explainer.gradient_cam("gradcam", Gradcam, batch, targets)


def _gradcam_plus_plus(explainer, batch, targets):
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus

    # Grad-CAM++ multiplies by exp(score), which overflows for confident logits; the score's value is dropped.
    return explainer.gradient_cam("gradcam++", GradcamPlusPlus, batch, targets, value_free=True)


def _layercam(explainer, batch, targets):
    from tf_keras_vis.layercam import Layercam

    return explainer.gradient_cam("layercam", Layercam, batch, targets, layer=explainer.layercam_layer)


def _faster_scorecam(explainer, batch, targets):
    return explainer.faster_scorecam(batch, targets)


def _smoothgrad(explainer, batch, targets):
    return explainer.smoothgrad(batch, targets)


REGISTRY: dict[str, Method] = {method.name: method for method in (
    Method("gradcam", "Grad-CAM", "Selvaraju et al., \"Grad-CAM: Visual explanations from deep networks via "
           "gradient-based localization\", ICCV 2017", _gradcam),
    Method("gradcam++", "Grad-CAM++", "Chattopadhay et al., \"Grad-CAM++: Generalized gradient-based visual "
           "explanations for deep convolutional networks\", WACV 2018", _gradcam_plus_plus),
    # The "faster" variant keeps only the channels whose activation varies most.
    Method("faster-scorecam", "Faster Score-CAM", "Wang et al., \"Score-CAM: Score-weighted visual explanations "
           "for convolutional neural networks\", CVPR Workshops 2020", _faster_scorecam),
    Method("layercam", "LayerCAM", "Jiang et al., \"LayerCAM: Exploring hierarchical class activation maps for "
           "localization\", IEEE Transactions on Image Processing 2021", _layercam),
    # Averaged over each cell of the network's first stride: the input gradient of a strided convolution
    # alternates within every cell, a checkerboard of the sampling grid, not of the image (Odena et al.,
    # "Deconvolution and checkerboard artifacts", Distill 2016).
    Method("smoothgrad", "SmoothGrad", "Smilkov et al., \"SmoothGrad: removing noise by adding noise\", ICML "
           "Workshop 2017", _smoothgrad),
)}
METHODS = tuple(REGISTRY)


def find_method(name: str) -> Method:
    """The method called ``name``.

    Raises:
        ValueError: no such method.
    """
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"Unknown heatmap method {name!r}. Choose one of: {', '.join(METHODS)}.") from None


def method_label(name: str) -> str:
    """What a person reads for ``name``; an unknown name is shown as it is."""
    method = REGISTRY.get(name)
    return method.label if method else name
