"""Heatmaps of where a model found its evidence, through tf-keras-vis, and how well they point at a known lesion.

The package's top level loads no TensorFlow, so pages can list the methods:

- ``methods``: the registry, one small definition per method (name, label, paper, how to run it);
- ``core``: :class:`~brainml.explain.core.Explainer` and :func:`~brainml.explain.core.heatmap`;
- ``graph``: the traced view of a model that the visualizers explain;
- ``evaluation``: localisation tables against lesion masks and the choice of LayerCAM's layer (the scores
  themselves are pure numpy in :mod:`brainml.metrics.localisation`).
"""

from .methods import METHODS, REGISTRY, Method, find_method, method_label

__all__ = ["METHODS", "REGISTRY", "Method", "find_method", "method_label"]
