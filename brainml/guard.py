"""Knowing when not to answer: is this slice like the brain MRI the models learned from?

A CNN gives a confident tumor probability for anything, a photo of a circuit board included. Before a verdict,
the guard scores how far a slice lies from the training images:

- **Feature distance**, as Lee et al. (2018, "A simple unified framework for detecting out-of-distribution samples")
  do it: the Mahalanobis distance of the network's globally pooled features at several depths, each from the
  training split's mean under a shrunk (Ledoit-Wolf) covariance. Shallow layers catch odd textures and statistics,
  deep ones odd content. Each layer's log distance becomes a z-score against held-out brain slices (half of the
  validation split), and the largest z counts: a slice must look ordinary at every depth. (Taking the largest raw
  distance instead let the layer with the widest spread set the threshold for all, and withheld 54% of the
  non-brain corpus against 88%.)
- **Image statistics** on the model input (how much of it is background, its contrast, its left-right symmetry,
  its edge density): a chart or a page of text differs from a head in ways a network trained on heads never had to
  encode. They enter as one more "layer" of the same distance.
- **Colour**: MRI is grey. A source whose pixels are clearly coloured is refused outright.

The threshold is chosen on held-out in-distribution slices (the other half of the validation split) by a stated
rule: accept ``acceptance`` of them (99.5% by default). ``ood_score`` is the largest z-score divided by that
threshold (at least 0), so 1.0 is the boundary and higher is less like the training images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Layers of the compact network whose pooled features the guard measures: one per resolution, and the pooled
# features the verdict is read from.
GUARD_LAYERS = ("stage2a_add", "stage3b_add", "stage4b_add", "head_b_add", "pool")
IMAGE_STATISTICS = "image_statistics"
# A source with more than this share of clearly coloured pixels is not an MRI slice (the real training slices
# stored as RGB JPEG reach 5% at most, from compression).
MAX_COLOUR_SATURATION = 0.15


@dataclass
class GuardResult:
    """The guard's answer for one slice; ``reason`` says why it was refused (None when accepted)."""

    brain_mri: bool
    ood_score: float
    reason: str | None = None


@dataclass
class LayerDistance:
    """Mahalanobis distance from one layer's training features: mean (D,), precision (D, D), and the median
    training distance that scales it."""

    mean: np.ndarray
    precision: np.ndarray
    scale: float

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """(N, D) features -> (N,) distances in units of the training median."""
        centred = features - self.mean
        return np.sqrt(np.maximum(np.einsum("nd,de,ne->n", centred, self.precision, centred), 0)) / self.scale

    @classmethod
    def fit(cls, features: np.ndarray) -> "LayerDistance":
        from sklearn.covariance import LedoitWolf

        estimate = LedoitWolf().fit(features)
        layer = cls(estimate.location_.astype(np.float64), estimate.precision_.astype(np.float64), 1.0)
        layer.scale = float(np.median(layer(features))) or 1.0
        return layer


@dataclass
class OutOfDistributionGuard:
    """Fitted distances per layer and the threshold on their combination.

    Attributes:
        layers: name -> distance, for ``GUARD_LAYERS`` present in the model and ``IMAGE_STATISTICS``.
        threshold: the combined distance that accepts ``acceptance`` of the validation slices.
        acceptance: the share of held-out in-distribution slices the threshold was chosen to accept.
    """

    layers: dict[str, LayerDistance]
    log_mean: np.ndarray  # (L,) each layer's mean log distance on held-out brain slices
    log_spread: np.ndarray  # (L,) and its standard deviation
    threshold: float
    acceptance: float
    max_colour_saturation: float = MAX_COLOUR_SATURATION

    def largest_z(self, features: dict[str, np.ndarray]) -> np.ndarray:
        """(N,) the largest per-layer z-score of the log Mahalanobis distance."""
        logs = np.log(np.stack([self.layers[name](features[name]) for name in self.layers], axis=1) + 1e-9)
        return ((logs - self.log_mean) / self.log_spread).max(axis=1)

    def scores(self, features: dict[str, np.ndarray]) -> np.ndarray:
        """(N,) ood scores: the largest z over the threshold, at least 0 (> 1 is refused)."""
        return np.maximum(self.largest_z(features) / self.threshold, 0.0)

    def check(self, features: dict[str, np.ndarray], colour_saturations: list[float] | None = None) -> list[GuardResult]:
        scores = self.scores(features)
        saturations = colour_saturations or [0.0] * len(scores)
        results = []
        for score, saturation in zip(scores, saturations):
            if saturation > self.max_colour_saturation:
                reason = (f"{saturation:.0%} of its pixels are coloured; MRI slices are grey.")
                results.append(GuardResult(False, round(float(max(score, 1.0)), 4), reason))
            elif score > 1.0:
                reason = (f"It lies farther from the MRI slices the models learned from than "
                          f"{self.acceptance:.1%} of held-out brain slices do (score {score:.2f}; over 1 is refused).")
                results.append(GuardResult(False, round(float(score), 4), reason))
            else:
                results.append(GuardResult(True, round(float(score), 4)))
        return results

    def save(self, path: str | Path) -> None:
        arrays = {"threshold": np.float64(self.threshold), "acceptance": np.float64(self.acceptance),
                  "max_colour_saturation": np.float64(self.max_colour_saturation),
                  "log_mean": self.log_mean, "log_spread": self.log_spread, "names": np.array(list(self.layers))}
        for name, layer in self.layers.items():
            arrays[f"{name}/mean"], arrays[f"{name}/precision"] = layer.mean, layer.precision
            arrays[f"{name}/scale"] = np.float64(layer.scale)
        np.savez_compressed(path, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> "OutOfDistributionGuard":
        with np.load(path, allow_pickle=False) as data:
            layers = {str(name): LayerDistance(data[f"{name}/mean"], data[f"{name}/precision"], float(data[f"{name}/scale"]))
                      for name in data["names"]}
            return cls(layers, data["log_mean"], data["log_spread"], float(data["threshold"]), float(data["acceptance"]),
                       float(data["max_colour_saturation"]))


def image_statistics(inputs: np.ndarray) -> np.ndarray:
    """(N, S, S, C) model inputs -> (N, 8) facts about each image that do not depend on the network.

    Background share, mean and spread of the foreground, its left-right symmetry (axial heads are nearly
    symmetric; text and charts are not), edge density, and how much of the frame's border is dark.
    """
    grey = inputs.mean(axis=-1)
    foreground = grey > 0.08
    n = grey.shape[1] * grey.shape[2]
    share = foreground.reshape(len(grey), -1).mean(axis=1)
    values = np.where(foreground, grey, np.nan).reshape(len(grey), -1)
    with np.errstate(invalid="ignore"):
        mean = np.nan_to_num(np.nanmean(values, axis=1))
        spread = np.nan_to_num(np.nanstd(values, axis=1))
    mirrored = grey[:, :, ::-1]
    centred, centred_mirror = (grey - grey.mean(axis=(1, 2), keepdims=True)), (mirrored - mirrored.mean(axis=(1, 2), keepdims=True))
    symmetry = (centred * centred_mirror).sum(axis=(1, 2)) / np.maximum((centred ** 2).sum(axis=(1, 2)), 1e-6)
    edges = (np.abs(np.diff(grey, axis=1)) > 0.2).sum(axis=(1, 2)) / n + (np.abs(np.diff(grey, axis=2)) > 0.2).sum(axis=(1, 2)) / n
    border = np.concatenate([grey[:, :4].reshape(len(grey), -1), grey[:, -4:].reshape(len(grey), -1),
                             grey[:, :, :4].reshape(len(grey), -1), grey[:, :, -4:].reshape(len(grey), -1)], axis=1)
    dark_border = (border < 0.08).mean(axis=1)
    bright = (grey > 0.9).reshape(len(grey), -1).mean(axis=1)
    return np.stack([share, mean, spread, symmetry, edges, dark_border, bright, np.sqrt(spread * share)], axis=1)


def feature_model(model):
    """A view of ``model`` with its outputs plus the globally averaged features of ``GUARD_LAYERS``: one pass gives
    the verdict and what the guard measures. Returns (view, names of the feature outputs)."""
    import keras

    names = [name for name in GUARD_LAYERS if _has_layer(model, name)]
    pooled = []
    for name in names:
        output = model.get_layer(name).output
        pooled.append(output if len(output.shape) == 2 else keras.layers.GlobalAveragePooling2D(name=f"guard_{name}")(output))
    return keras.Model(model.input, [model.output, *pooled], name=f"{model.name}_with_features"), names


def fit_guard(train: dict[str, np.ndarray], validation: dict[str, np.ndarray], acceptance: float = 0.995,
              seed: int = 0) -> OutOfDistributionGuard:
    """Fit each layer's distance on the training split's features, its z-scale on one half of the validation
    split, and the threshold that accepts ``acceptance`` of the other half.

    Args:
        train, validation: layer name -> (N, D) features (``IMAGE_STATISTICS`` included).
    """
    layers = {name: LayerDistance.fit(features) for name, features in train.items()}
    n = len(next(iter(validation.values())))
    order = np.random.default_rng(seed).permutation(n)
    scale_half, threshold_half = order[: n // 2], order[n // 2:]
    logs = np.log(np.stack([layers[name](validation[name]) for name in layers], axis=1) + 1e-9)
    guard = OutOfDistributionGuard(layers, logs[scale_half].mean(axis=0), np.maximum(logs[scale_half].std(axis=0), 1e-6),
                                   1.0, acceptance)
    largest = guard.largest_z({name: features[threshold_half] for name, features in validation.items()})
    guard.threshold = float(max(np.quantile(largest, acceptance), 1e-3))
    return guard


def _has_layer(model, name: str) -> bool:
    try:
        model.get_layer(name)
        return True
    except ValueError:
        return False


def guard_file(card_path: str | Path) -> Path:
    """Where a bundle's guard lives: beside its card, ``NAME.guard.npz``."""
    return Path(card_path).with_suffix("").with_suffix(".guard.npz")


def slice_features(model, inputs: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The model's outputs (as ``predict.model_scores`` returns them) and the guard's features, from one pass.

    Args:
        inputs: (N, S, S, C) prepared slices.
    Returns:
        outputs: (N,) or (N, C); features: layer name -> (N, D), ``IMAGE_STATISTICS`` included.
    """
    from .predict import compiled_call

    view, names = _feature_view(model)
    call = compiled_call(view)
    batches = [call(np.ascontiguousarray(inputs[start:start + batch_size], np.float32))
               for start in range(0, len(inputs), batch_size)]
    if not batches:
        width = model.output_shape[-1]
        return np.zeros((0,) if width == 1 else (0, width)), {}
    outputs = np.concatenate([np.asarray(batch[0]) for batch in batches]).astype(np.float64)
    features = {name: np.concatenate([np.asarray(batch[i + 1]) for batch in batches]).astype(np.float64)
                for i, name in enumerate(names)}
    features[IMAGE_STATISTICS] = image_statistics(inputs).astype(np.float64)
    return (outputs[:, 0] if outputs.shape[1] == 1 else outputs), features


_VIEWS: dict = {}


def _feature_view(model):
    """``feature_model(model)``, built once per model (kept as long as the model lives)."""
    import weakref

    key = id(model)
    cached = _VIEWS.get(key)
    if cached is None or cached[0]() is not model:
        cached = (weakref.ref(model), *feature_model(model))
        _VIEWS[key] = cached
    return cached[1], cached[2]


def fit_guard_for_bundle(card_path, data, acceptance: float = 0.995, max_train: int = 3000, per_kind: int = 8,
                         log=print) -> dict:
    """``python -m brainml guard``: fit the guard on the training part of the card's own split, choose its threshold
    on the validation part, then measure the share of the test part it accepts and the share of a non-brain corpus
    (``brainml.nonbrain``) it withholds. Writes ``NAME.guard.npz`` and the figures into the card."""
    from . import metrics, nonbrain
    from .bundle import load_bundle, write_card
    from .datasets import discover, load_images
    from .evaluate import card_splits
    from .io import read_scan
    from .io.images import colour_saturation
    from .preprocess import prepare_batch

    bundle = load_bundle(card_path)
    card, spec = bundle.card, bundle.card.prep_spec
    splits = card_splits(card, discover(data))
    rng = np.random.default_rng(0)
    if len(splits["train"]) > max_train:
        splits["train"] = [splits["train"][i] for i in np.sort(rng.choice(len(splits["train"]), max_train, replace=False))]
    features = {}
    for name in ("train", "validation", "test"):
        log(f"guard: features of {len(splits[name])} {name} slices")
        features[name] = slice_features(bundle.model, load_images(splits[name], spec).inputs)[1]
    guard = fit_guard(features["train"], features["validation"], acceptance)

    saturations = [read_scan(sample.path).metadata.get("colour_saturation", 0.0) for sample in splits["test"]]
    test_results = guard.check(features["test"], saturations)
    accepted = sum(result.brain_mri for result in test_results)

    corpus = nonbrain.corpus(per_kind=per_kind)
    greys = [image.image if image.image.ndim == 2 else image.image @ np.array([0.299, 0.587, 0.114], np.float32)
             for image in corpus]
    corpus_saturations = [colour_saturation((image.image * 255).astype(np.uint8)) if image.image.ndim == 3 else 0.0
                          for image in corpus]
    corpus_features = slice_features(bundle.model, prepare_batch(greys, spec)[0])[1]
    corpus_results = guard.check(corpus_features, corpus_saturations)
    by_kind: dict[str, list[int]] = {}
    for image, result in zip(corpus, corpus_results):
        by_kind.setdefault(image.kind, [0, 0])
        by_kind[image.kind][0] += not result.brain_mri
        by_kind[image.kind][1] += 1
    withheld = sum(not result.brain_mri for result in corpus_results)

    guard.save(guard_file(bundle.card_path))
    card.guard = {
        "file": guard_file(bundle.card_path).name,
        "rule": (f"accept {acceptance:.1%} of held-out validation slices (threshold on the largest per-layer z-score "
                 "of the log Mahalanobis distance to the training slices' features); refuse sources whose pixels are "
                 f"more than {MAX_COLOUR_SATURATION:.0%} coloured"),
        "layers": list(guard.layers),
        "acceptance": acceptance,
        "train_images": len(splits["train"]),
        "test_accepted": {"rate": accepted / len(test_results), "n": len(test_results),
                          "rate_ci": list(metrics.wilson_interval(accepted, len(test_results)))},
        "non_brain_withheld": {"rate": withheld / len(corpus), "n": len(corpus),
                               "rate_ci": list(metrics.wilson_interval(withheld, len(corpus))),
                               "by_kind": {kind: {"withheld": w, "n": n} for kind, (w, n) in by_kind.items()}},
    }
    write_card(card, bundle.card_path)
    log(f"guard: accepts {accepted}/{len(test_results)} test slices, withholds {withheld}/{len(corpus)} non-brain images")
    for kind, (w, n) in by_kind.items():
        log(f"  {kind:<20} withheld {w}/{n}")
    return card.guard
