"""Scoring a bundle on labelled data and reporting how it did: the one path used by ``train`` (for its test split)
and by ``python -m brainml evaluate``."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from . import metrics
from .bundle import ModelBundle, load_bundle, write_card
from .datasets import (DatasetError, discover, label_index, lesion_diameters, load_images, slice_contrasts,
                       slice_sources, task_classes)
from .engine import engine_for
from .goals import check_goals
from .predict import model_scores, network_outputs
from .splits import manifest_groups

# The split name that means "the test part of the split the model was trained with".
HELD_OUT = "held-out"
# ... and its validation part: where runs are compared and settings chosen, never on the test part.
VALIDATION = "validation"


def held_out_report(task: str, labels: np.ndarray, scores: np.ndarray, class_names, threshold: float | None) -> dict:
    """The metrics a card stores: the detector's at its operating threshold, or the classifier's."""
    if task == "detect":
        return metrics.detector_report(labels, scores, threshold)
    return metrics.classifier_report(labels, scores, list(class_names))


@dataclass
class Evaluation:
    report: dict
    labels: np.ndarray
    scores: np.ndarray
    failures: list[tuple[str, str]]
    split: str


def evaluate_bundle(bundle: ModelBundle, data: str | os.PathLike, split: str = "test", workers: int = 4,
                    engine: str = "keras") -> Evaluation:
    """Score ``bundle`` on the ``split`` of the data set at ``data`` ("test" = Testing/; "all" = every image).

    A detector is scored on any layout (tumor types map to "tumor"); a classifier needs its own class names.
    ``engine``: "keras" (the reference) or "litert" (the bundle's engine, to check it gives the same verdicts).

    Raises:
        DatasetError: no images, or classes the classifier does not know. ValueError: no valid engine.
    """
    if engine == "litert" and engine_for(bundle) is None:
        raise ValueError(f"{bundle.card_path} has no LiteRT engine built from its current .keras file; run "
                         f"`python -m brainml engine --model {bundle.card_path}` first.")
    card = bundle.card
    index = discover(data)
    if split == HELD_OUT:
        wanted = held_out_samples(card, index)
    elif split == VALIDATION:
        wanted = card_splits(card, index)["validation"]
    else:
        wanted = [sample for sample in index.samples if split == "all" or sample.split == split]
    if not wanted:
        raise DatasetError(f"No images in the {split!r} split of {data}; found splits {sorted(index.counts())}. "
                           "Use --split all to score every image.")
    if card.task == "classify":
        classes = task_classes(index, "classify")
        unknown = sorted(set(classes) - set(card.class_names))
        if unknown:
            raise DatasetError(f"The data has classes {unknown} that the classifier {card.name} does not know.")
    loaded = load_images(wanted, card.prep_spec, workers=workers)
    labels = np.array([label_index(s.label, card.task, tuple(card.class_names)) for s in loaded.samples], dtype=np.int64)
    scores = network_outputs(bundle, loaded.inputs)[0] if engine == "litert" else model_scores(bundle.model, loaded.inputs)
    report = held_out_report(card.task, labels, scores, card.class_names, card.threshold)
    diameters = lesion_diameters(data, loaded.samples)
    if diameters is not None:
        report["by_lesion_size"] = by_lesion_size(card, labels, scores, diameters)
    for key, categories in (("by_contrast", slice_contrasts(data, loaded.samples)),
                            ("by_source", slice_sources(data, loaded.samples))):
        if categories is not None:
            report[key] = by_category(card, labels, scores, categories)
    groups = manifest_groups(index.root, loaded.samples)
    if groups is not None:
        report["by_patient"] = by_patient(card, labels, scores, groups)
    if not card.trained_on_synthetic and split == HELD_OUT:
        report["goals"] = [check.to_dict() for check in check_goals(card.task, report)]
    report["data"] = str(data)
    report["split"] = split
    report["unreadable_files"] = len(loaded.failures)
    return Evaluation(report, labels, scores, loaded.failures, split)


def held_out_samples(card, index) -> list:
    """The test part of the split ``card``'s model was trained with."""
    return card_splits(card, index)["test"]


def card_splits(card, index) -> dict[str, list]:
    """Train, validation and test samples of the split ``card``'s model was trained with, rebuilt from its stored
    plan (same data set, seed and shares give the same groups on each side)."""
    from .splits import SplitPlan, split_samples

    plan = card.provenance.get("split")
    if not plan:
        raise DatasetError(f"{card.name}'s card stores no split plan (it predates group-aware splits); evaluate it "
                           "with --split Testing or --split all.")
    fields = {key: plan[key] for key in ("mode", "seed", "val_fraction", "test_fraction")}
    return split_samples(index, SplitPlan(**fields))[0]


def _card_split_samples(card, data, split: str) -> list | None:
    """For ``split`` "held-out" or "validation": that part of the card's own split; None for a data set's own split
    folder ("Testing", "Training")."""
    if split == HELD_OUT:
        return held_out_samples(card, discover(data))
    if split == "validation":
        return card_splits(card, discover(data))["validation"]
    return None


def by_lesion_size(card, labels: np.ndarray, scores: np.ndarray, diameters: np.ndarray) -> dict:
    """On the slices that have a lesion: the detector's recall at its threshold, or the classifier's share of
    right types, per lesion-size bin. Where a model misses is as useful to know as how often."""
    lesion = np.isfinite(diameters)
    if card.task == "detect":
        hits, measure = scores[lesion] >= card.threshold, "recall"
    else:
        hits, measure = scores[lesion].argmax(axis=1) == labels[lesion], "accuracy"
    return {"measure": measure, "size": "lesion diameter as a share of the image side",
            "bins": metrics.rate_by_lesion_size(hits, diameters[lesion])}


def by_category(card, labels: np.ndarray, scores: np.ndarray, categories: np.ndarray) -> dict:
    """Per category (MRI contrast, source archive): the detector's recall on tumor slices and specificity on normal
    ones at its threshold, or the classifier's accuracy. A model can be sure on T1c and hedge on T2, and one
    threshold serves both."""
    order = sorted(set(categories.tolist()))
    if card.task == "detect":
        flagged = scores >= card.threshold
        tumor = labels == 1
        measures = {"recall": metrics.rate_by_group(flagged[tumor], categories[tumor], order),
                    "specificity": metrics.rate_by_group(~flagged[~tumor], categories[~tumor], order)}
    else:
        measures = {"accuracy": metrics.rate_by_group(scores.argmax(axis=1) == labels, categories, order)}
    return {"groups": order, "measures": measures}


def by_patient(card, labels: np.ndarray, scores: np.ndarray, groups: np.ndarray, worst: int = 5) -> dict:
    """The headline rates again, with intervals that resample whole patients (or near-copy clusters) instead of
    slices, and the groups with the most wrong answers: a test figure can hang on a handful of patients."""
    if card.task == "detect":
        flagged, tumor = scores >= card.threshold, labels == 1
        hits = np.where(tumor, flagged, ~flagged)
        parts = {"recall": tumor, "specificity": ~tumor}
    else:
        hits = scores.argmax(axis=1) == labels
        parts = {"accuracy": np.ones(len(labels), bool)}
    measures = {}
    for name, chosen in parts.items():
        if chosen.any():
            measures[name] = {"rate": float(hits[chosen].mean()), "n_groups": int(len(np.unique(groups[chosen]))),
                              "ci": list(metrics.group_bootstrap_interval(hits[chosen], groups[chosen]))}
    names, group_of = np.unique(groups, return_inverse=True)
    wrong = np.bincount(group_of, weights=~hits, minlength=len(names)).astype(int)
    total = np.bincount(group_of, minlength=len(names))
    order = [i for i in np.argsort(-wrong, kind="stable")[:worst] if wrong[i] > 0]
    return {"groups": int(len(names)), "measures": measures, "wrong": int(wrong.sum()),
            "most_wrong": [{"group": str(names[i]), "wrong": int(wrong[i]), "n": int(total[i])} for i in order]}


def evaluate_path(card_path, data, split: str = "test", update_card: bool = False, engine: str = "keras") -> Evaluation:
    """``python -m brainml evaluate``: load, score, and optionally store the held-out labels and scores in the card
    so the threshold explorer can sweep them."""
    if update_card and split == VALIDATION:
        raise ValueError("A card's metrics are its test figures; --update-card does not store validation figures.")
    bundle = load_bundle(card_path)
    evaluation = evaluate_bundle(bundle, data, split, engine=engine)
    if update_card:
        card = bundle.card
        card.metrics = evaluation.report
        card.held_out_split = f"{split} split of {data}"
        card.held_out_labels = evaluation.labels.tolist()
        card.held_out_scores = evaluation.scores.tolist()
        write_card(card, bundle.card_path)
    return evaluation


def localisation_report(card_path, data, methods=None, split: str = "Testing", per_class: int = 100,
                        update_card: bool = False) -> dict:
    """``python -m brainml explain --evaluate``: the pointing game and energy-in-mask of each heatmap method on
    slices whose lesion masks are known, per class; optionally stored in the card for the Model card page."""
    from .datasets import masked_cases
    from .explain import METHODS
    from .explain.evaluation import localisation_table

    bundle = load_bundle(card_path)
    cases = masked_cases(data, split, per_class, _card_split_samples(bundle.card, data, split))
    table = localisation_table(bundle, cases, tuple(methods or METHODS))
    if update_card:
        bundle.card.localisation = {"data": f"{split} split of {data}", "per_class": per_class, "table": table}
        write_card(bundle.card, bundle.card_path)
    return table


def layercam_layer_report(card_path, data, split: str = "Testing", per_class: int = 60,
                          update_card: bool = False) -> tuple[str, dict]:
    """``python -m brainml explain --choose-layercam-layer``: LayerCAM's pointing game on each candidate layer on
    slices with lesion masks (pass a split other than the final test set); optionally store the best in the card."""
    from .datasets import masked_cases
    from .explain.evaluation import choose_layercam_layer

    bundle = load_bundle(card_path)
    cases = masked_cases(data, split, per_class, _card_split_samples(bundle.card, data, split))
    best, scores = choose_layercam_layer(bundle, cases)
    if update_card:
        bundle.card.layercam_layer = best
        bundle.card.provenance["layercam_layer_choice"] = {
            "data": f"{split} split of {data}", "per_class": per_class, "pointing_game": scores}
        write_card(bundle.card, bundle.card_path)
    return best, scores
