"""One training loop for every task and architecture.

The steps read top to bottom: data -> honest splits -> leak check -> model -> fit -> threshold on validation ->
metrics on test -> bundle. Augmentation happens inside the training pipeline, after the split.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from . import metrics
from .bundle import ModelBundle, ModelCard, load_bundle, save_bundle
from .datasets import (
    DatasetError,
    discover,
    label_index,
    has_masks,
    load_images,
    near_duplicates,
    task_classes,
    tf_dataset,
)
from .evaluate import held_out_report
from .models import TRANSFER, build_model, gradcam_layer, tumor_detector_view
from .predict import model_scores
from .preprocess import PrepSpec
from .splits import SplitPlan, split_samples


@dataclass
class TrainConfig:
    """Everything a training run depends on; stored in the card's provenance."""

    task: str  # "detect" or "classify"
    data: str
    out: str
    arch: str = "compact"
    weights: str = "none"
    epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 2e-3
    seed: int = 0  # the split's seed, and the training's unless train_seed is given
    # Seed of the weights' initialisation, the shuffling and the augmentation alone: runs with the same ``seed`` and
    # another ``train_seed`` hold out the same images, so they can be compared or averaged. None: ``seed``.
    train_seed: int | None = None
    val_split: float = 0.15
    test_split: float = 0.15  # used only when the data set has no Testing/ split of its own
    recall_target: float = 0.98
    threshold_rule: str = "min_recall"
    patience: int = 8
    # "plateau": halve the rate when validation stalls; "cosine": decay it smoothly to 1% over ``epochs`` (better
    # final weights when the number of epochs is fixed in advance, as for the default models).
    schedule: str = "plateau"
    # Wall-clock budget in minutes: no epoch starts that would likely end past it (the best epoch is kept).
    time_limit_minutes: float | None = None
    # Random flips, rotations, zooms and contrast on the training split; off, a network fits a few thousand images
    # by heart within ten epochs.
    augment: bool = True
    augmentation: str = "standard"  # or "strong": wider geometry, brightness and noise, for real scans
    size: int = 128
    distribute: str | None = None  # None, "mirrored" or "multiworker"
    max_images: int | None = None  # cap per split, for quick trials and tests
    # "groups": the whole set split by patient / near-duplicate cluster (honest); "official": the data set's own
    # test split as published (to compare with published figures; leaks included when remove_leaks is off).
    split: str = "groups"
    # Drop training images that nearly duplicate (or mirror) a held-out image. Off only to reproduce a published
    # split as it is.
    remove_leaks: bool = True
    # What the data set is and its licence, as people cite it (stored in the card; the path alone says little).
    data_name: str | None = None
    data_licence: str | None = None
    # Weight of the lesion-map loss when the data set ships lesion masks (synthetic sets do; 0 turns it off).
    mask_weight: float = 1.0
    # Regularisers against fitting a few thousand slices by heart: mixup's Beta(alpha, alpha) (0 = off; see
    # datasets.mix_batch) and label smoothing's share of each target spread over the classes (0 = off).
    mixup: float = 0.0
    label_smoothing: float = 0.0
    synthetic: bool | None = None  # None: decided from the data folder's GENERATOR.txt
    # detect only: no training of its own; the detector is this type classifier's view P(tumor) = 1 - P(notumor).
    from_classifier: str | None = None
    # Start from this bundle's weights (same architecture, task and held-out images) instead of random ones; the
    # input size may differ, since the compact network is fully convolutional: fine-tuning at a finer --size costs
    # a fraction of training from scratch.
    init_from: str | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class TrainResult:
    card_path: Path
    card: ModelCard


def train(config: TrainConfig, log: Callable[[str], None] = print) -> TrainResult:
    """Train, choose the threshold on validation, report on test, and write the bundle."""
    keras.utils.set_random_seed(_training_seed(config))
    started = time.time()
    classifier = _classifier_to_derive_from(config) if config.from_classifier else None
    start = _bundle_to_start_from(config) if config.init_from else None

    # --- Data: split by group (patient or near-duplicate cluster), so no patient or copy is on two sides ---
    index = discover(config.data)
    classes = task_classes(index, config.task)
    if classifier:
        spec = classifier.card.prep_spec
    elif start:
        spec = replace(start.card.prep_spec, size=config.size)
    else:
        spec = PrepSpec(size=config.size, channels=3 if config.arch in TRANSFER else 1)
    plan = split_plan(config)
    splits, split_facts = split_samples(index, plan)
    test_source = plan.describe()
    if classifier:
        del splits["train"]  # a detector read off a classifier needs only the images that choose and test it
    if config.max_images:
        splits = {name: _capped(samples, config.max_images, config.seed) for name, samples in splits.items()}
    # Lesion masks, where the data set has them, teach the network where tumors are, not just that they exist.
    # The lesion-map head reads the compact network's Grad-CAM grid; other architectures learn from labels alone.
    use_masks = (classifier is None and config.mask_weight > 0 and config.arch == "compact"
                 and has_masks(splits["train"]))
    loaded = {}
    for name, samples in splits.items():
        log(f"reading {len(samples)} {name} images" + (" and their lesion masks" if use_masks and name == "train" else ""))
        loaded[name] = load_images(samples, spec, with_masks=use_masks and name in ("train", "validation"))
        for path, reason in loaded[name].failures[:5]:
            log(f"  skipped {path}: {reason}")
    log(f"split: {plan.describe()}; groups from {split_facts['groups_from']}")
    leaks = _remove_leaks(loaded, log) if config.remove_leaks else {}
    for name in loaded:
        if len(loaded[name].samples) == 0:
            raise DatasetError(f"The {name} split is empty after reading {config.data}; it needs more images.")
    targets = {name: _labels(images.samples, config.task, classes) for name, images in loaded.items()}

    if classifier is None:
        model, history = _fit(config, spec, loaded, targets, classes, use_masks, log, start)
    else:
        model = tumor_detector_view(classifier.model, classifier.card.class_names.index("notumor"), name=Path(config.out).name)
        history = classifier.card.history
        log(f"detector = {classifier.card.name} read as P(tumor) = 1 - P(notumor); no training of its own")

    # --- Threshold on validation, metrics on test (never on training data) ---
    validation_scores = model_scores(model, loaded["validation"].inputs)
    test_scores = model_scores(model, loaded["test"].inputs)
    threshold = rule_text = None
    validation_metrics = {}
    if config.task == "detect":
        rule = metrics.ThresholdRule(kind=config.threshold_rule, recall_target=config.recall_target)
        threshold = metrics.choose_threshold(targets["validation"], validation_scores, rule)
        rule_text = rule.describe()
        validation_metrics = metrics.operating_point(targets["validation"], validation_scores, threshold).to_dict()
    test_report = held_out_report(config.task, targets["test"], test_scores, classes, threshold)

    synthetic = config.synthetic if config.synthetic is not None else (Path(config.data) / "GENERATOR.txt").is_file()
    card = ModelCard(
        name=Path(config.out).name,
        task=config.task,
        class_names=list(classes),
        prep=spec.to_dict(),
        architecture=classifier.card.architecture if classifier else config.arch,
        gradcam_layer=gradcam_layer(model),
        threshold=threshold,
        threshold_rule=rule_text,
        metrics=test_report,
        validation_metrics=validation_metrics,
        held_out_split=f"test ({test_source})",
        held_out_labels=targets["test"].tolist(),
        held_out_scores=test_scores.tolist(),
        provenance={
            "data": _describe_data(config, index),
            "splits": {name: len(images.samples) for name, images in loaded.items()},
            "test_source": test_source,
            "split": {**asdict(plan), **split_facts},
            "leaks_removed": leaks,
            "config": asdict(config),
            **_how_it_was_made(model, history, round(time.time() - started, 1), use_masks, classifier, start),
        },
        history={key: [round(float(v), 5) for v in values] for key, values in history.items()},
        trained_on_synthetic=synthetic,
        limitations=_limitations(synthetic),
    )
    if not synthetic:
        learned_from = classifier.card.provenance["splits"]["train"] if classifier else len(loaded["train"].samples)
        card.notice = _real_data_notice(config, learned_from, split_facts.get("groups"))
    card_path = save_bundle(model, card, config.out)
    log(f"saved {card_path} and {card_path.with_suffix('.keras').name}")
    return TrainResult(card_path, card)


def _how_it_was_made(model, history: dict, seconds: float, use_masks: bool, classifier: ModelBundle | None,
                     start: ModelBundle | None) -> dict:
    """The card's record of the training itself: epochs, time, size, mask supervision, and the bundle it was read
    off (a detector from a classifier) or started from."""
    made = {
        "epochs_run": len(history.get("loss", [])),
        # A detector read off a classifier reports the classifier's epochs, so the time is the classifier's too.
        "train_seconds": classifier.card.provenance.get("train_seconds") if classifier else seconds,
        "parameters": int(model.count_params()),
        "lesion_mask_supervision": use_masks or bool(classifier and classifier.card.provenance.get("lesion_mask_supervision")),
    }
    if classifier:
        made["derived_from"] = classifier.card.viewed_as_detector(seconds=seconds,
                                                                  classifier_sha256=classifier.keras_sha256).to_dict()
    if start:
        made["initialised_from"] = _starting_point(start)
    return made


def _fit(config: TrainConfig, spec: PrepSpec, loaded, targets, classes, use_masks: bool, log,
         start: ModelBundle | None = None) -> tuple[keras.Model, dict]:
    """Build the architecture (from ``start``'s weights when given) and fit it; returns the model and its history
    (the best epoch's weights restored)."""
    # --- Model, built inside a distribution strategy when asked (several GPUs, or several hosts via TF_CONFIG) ---
    strategy = _strategy(config.distribute)
    n_outputs = 1 if config.task == "detect" else len(classes)
    batch_size = config.batch_size * strategy.num_replicas_in_sync
    with strategy.scope():
        model = build_model(config.arch, spec.input_shape, n_outputs, weights=config.weights)
        if start:
            _copy_weights(start.model, model)
            log(f"starting from {start.card_path}'s weights ({start.card.prep_spec.size}px -> {spec.size}px)")
        trainer, mask_grid = _with_lesion_head(model) if use_masks else (model, None)
        loss, metric = _loss_and_metric(n_outputs, _soft_targets(config), config.label_smoothing)
        trainer.compile(
            optimizer=keras.optimizers.Adam(_learning_rate(config, len(targets["train"]), batch_size)),
            loss={"probability": loss, "lesion_map": "binary_crossentropy"} if use_masks else loss,
            loss_weights={"probability": 1.0, "lesion_map": config.mask_weight} if use_masks else None,
            metrics={"probability": [metric]} if use_masks else [metric],
        )

    # --- Fit: balanced class weights (a missed tumor class should not be the cheap mistake) ---
    counts = np.bincount(targets["train"], minlength=max(n_outputs, 2))
    class_weight = len(targets["train"]) / (len(counts) * np.maximum(counts, 1))
    one_hot = _soft_targets(config)
    train_data = tf_dataset(loaded["train"].inputs, _target_array(targets["train"], n_outputs, one_hot), batch_size,
                            True, _training_seed(config), class_weight[targets["train"]], loaded["train"].masks,
                            mask_grid or 8, augment=config.augment, masks_known=loaded["train"].masks_known,
                            augmentation_strength=config.augmentation, mixup=config.mixup)
    val_data = tf_dataset(loaded["validation"].inputs, _target_array(targets["validation"], n_outputs, one_hot),
                          batch_size, False, masks=loaded["validation"].masks, mask_grid=mask_grid or 8,
                          masks_known=loaded["validation"].masks_known)
    # Stop on the verdict's own quality (validation AUC, or accuracy for a classifier), not on a loss that the
    # lesion-map head shares and that swings more from epoch to epoch.
    monitor = ("val_probability_" if use_masks else "val_") + ("auc" if n_outputs == 1 else "accuracy")
    callbacks = [
        keras.callbacks.EarlyStopping(monitor=monitor, mode="max", patience=config.patience, restore_best_weights=True),
        EpochProgress(config.epochs, log, config.time_limit_minutes),
    ]
    if config.schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor=monitor, mode="max", factor=0.5,
                                                           patience=max(config.patience // 2, 1)))
    history = trainer.fit(train_data, validation_data=val_data, epochs=config.epochs, callbacks=callbacks,
                          verbose=0, shuffle=False)  # the pipeline already shuffles
    return model, history.history


def _training_seed(config: TrainConfig) -> int:
    return config.seed if config.train_seed is None else config.train_seed


def split_plan(config: TrainConfig) -> SplitPlan:
    """The split a training run uses, rebuilt by ``evaluate --split held-out`` from the card's config."""
    return SplitPlan(mode=config.split, seed=config.seed, val_fraction=config.val_split, test_fraction=config.test_split)


def _classifier_to_derive_from(config: TrainConfig) -> ModelBundle:
    """The type classifier a detector is derived from, checked to have held out the very images this run will
    use for the threshold and the test."""
    if config.task != "detect":
        raise ValueError("--from-classifier makes a detector; use it with --task detect.")
    classifier = load_bundle(config.from_classifier)
    if classifier.card.task != "classify" or "notumor" not in classifier.card.class_names:
        raise ValueError(f"{config.from_classifier} is not a type classifier with a 'notumor' class.")
    _check_same_held_out(classifier.card, config, config.from_classifier)
    return classifier


def _bundle_to_start_from(config: TrainConfig) -> ModelBundle:
    """The bundle whose weights a run starts from: same task and architecture, and trained on a split that held
    out this run's validation and test images (else they would not be unseen)."""
    if config.from_classifier:
        raise ValueError("--init-from trains a model; --from-classifier reads one without training. Use one of them.")
    start = load_bundle(config.init_from)
    if start.card.task != config.task or start.card.architecture != config.arch:
        raise ValueError(f"{config.init_from} is a {start.card.architecture} {start.card.task} model; --init-from needs "
                         f"a {config.arch} {config.task} model.")
    # Weights from another data set (synthetic pretraining for a real set) have never seen this set's held-out
    # images; weights from this data set must have held out the same ones.
    if _same_data(start.card.provenance.get("config", {}).get("data", ""), config.data):
        _check_same_held_out(start.card, config, config.init_from)
    return start


def _same_data(path_a: str, path_b: str) -> bool:
    return Path(path_a).resolve() == Path(path_b).resolve()


def _check_same_held_out(card: ModelCard, config: TrainConfig, card_path: str) -> None:
    """Raise unless ``card`` was trained with the same data, seed, validation share and cap as ``config``."""
    trained = card.provenance.get("config", {})
    same = {"data": _same_data(trained.get("data", ""), config.data), "seed": trained.get("seed") == config.seed,
            "val_split": trained.get("val_split") == config.val_split, "max_images": trained.get("max_images") == config.max_images,
            "split": trained.get("split", "official") == config.split,
            "test_split": trained.get("test_split", 0.15) == config.test_split}
    differing = [name for name, ok in same.items() if not ok]
    if differing:
        raise ValueError(f"{card_path} was trained with other {', '.join(differing)} than this run; this run's "
                         "validation images could then be its training images. Use its own: "
                         f"--data {trained.get('data')} --seed {trained.get('seed')} --val-split {trained.get('val_split')} "
                         f"--split {trained.get('split', 'official')}"
                         + (f" --max-images {trained['max_images']}" if trained.get("max_images") else "") + ".")


def _copy_weights(source: keras.Model, target: keras.Model) -> None:
    """Copy every layer's weights from ``source`` to the same-named layer of ``target`` (the input size may differ;
    no weight of a convolutional network depends on it)."""
    for layer in target.layers:
        if layer.weights:
            layer.set_weights(source.get_layer(layer.name).get_weights())


def _starting_point(start: ModelBundle) -> dict:
    """What a fine-tuned model's training began from, so its card tells the whole training story."""
    provenance = start.card.provenance
    return {"model": str(start.card_path), "size": start.card.prep_spec.size, "epochs_run": provenance.get("epochs_run"),
            "train_seconds": provenance.get("train_seconds"), "history": start.card.history}


def _learning_rate(config: TrainConfig, n_train: int, batch_size: int):
    if config.schedule == "plateau":
        return config.learning_rate
    if config.schedule == "cosine":
        steps = config.epochs * max(-(-n_train // batch_size), 1)
        return keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=steps, alpha=0.01)
    raise ValueError(f"Unknown schedule {config.schedule!r}; use plateau or cosine.")


class EpochProgress(keras.callbacks.Callback):
    """A one-line-per-epoch progress report with the time left, for logs and terminals alike; with a time limit,
    it ends training before an epoch that would likely overrun it."""

    def __init__(self, epochs: int, log: Callable[[str], None], time_limit_minutes: float | None = None):
        super().__init__()
        self.epochs, self.log = epochs, log
        self.time_limit = None if time_limit_minutes is None else time_limit_minutes * 60

    def on_train_begin(self, logs=None):
        self.started = time.time()

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        elapsed = time.time() - self.started
        eta = elapsed / done * (self.epochs - done)
        shown = " ".join(f"{k}={v:.4f}" for k, v in (logs or {}).items() if k != "learning_rate")
        bar = "#" * int(20 * done / self.epochs)
        self.log(f"epoch {done:>3}/{self.epochs} [{bar:<20}] {shown}  elapsed {elapsed:.0f}s, ETA {eta:.0f}s (at most)")
        if self.time_limit is not None and done < self.epochs and elapsed + elapsed / done > self.time_limit:
            self.log(f"stopping after epoch {done}: another epoch would pass the {self.time_limit / 60:g}-minute limit")
            self.model.stop_training = True


def _with_lesion_head(model: keras.Model) -> tuple[keras.Model, int]:
    """A training-only view of ``model`` with a second output: a coarse lesion map from the Grad-CAM layer's
    features (a 1x1 convolution). It shares every layer with ``model``, so training it trains ``model``; the saved
    bundle is ``model`` alone (one input, one output), and its Grad-CAM layer has learnt where lesions are."""
    features = model.get_layer(gradcam_layer(model)).output
    lesion_map = keras.layers.Conv2D(1, 1, activation="sigmoid", name="lesion_map")(features)
    trainer = keras.Model(model.input, {"probability": model.output, "lesion_map": lesion_map}, name=f"{model.name}_trainer")
    return trainer, int(features.shape[1])


def _labels(samples, task, classes) -> np.ndarray:
    return np.array([label_index(s.label, task, tuple(classes)) for s in samples], dtype=np.int64)


def _target_array(labels: np.ndarray, n_outputs: int, one_hot: bool = False) -> np.ndarray:
    if n_outputs == 1:
        return labels.astype(np.float32)[:, None]
    return np.eye(n_outputs, dtype=np.float32)[labels] if one_hot else labels


def _soft_targets(config: TrainConfig) -> bool:
    """Whether class targets must be one-hot floats: mixup blends them, and label smoothing needs them whole."""
    return config.mixup > 0 or config.label_smoothing > 0


def _loss_and_metric(n_outputs: int, one_hot: bool, label_smoothing: float):
    """The verdict's loss and the metric validation is judged on (AUC for a detector, accuracy for classes; named
    so the monitored ``val_..._accuracy`` is the same whichever targets the classes come as)."""
    if n_outputs == 1:
        return keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing), keras.metrics.AUC(name="auc")
    if one_hot:
        return (keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
                keras.metrics.CategoricalAccuracy(name="accuracy"))
    return "sparse_categorical_crossentropy", "accuracy"


def _capped(samples, limit, seed):
    if len(samples) <= limit:
        return samples
    chosen = np.sort(np.random.default_rng(seed).choice(len(samples), limit, replace=False))
    return [samples[i] for i in chosen]


def _remove_leaks(loaded, log) -> dict[str, int]:
    """Drop training (and validation) images that nearly duplicate a held-out image or its mirror: public sets
    contain copies, some flipped left-right, and a copy on both sides inflates every metric."""
    removed = {}
    for name, against in (("train", ("validation", "test")), ("validation", ("test",))):
        if name not in loaded:
            continue
        others = np.concatenate([hashes for o in against for hashes in (loaded[o].hashes, loaded[o].mirror_hashes)])
        leaked = near_duplicates(loaded[name].hashes, others)
        removed[name] = len(leaked)
        if len(leaked):
            loaded[name].keep(np.setdiff1d(np.arange(len(loaded[name].samples)), leaked))
            log(f"removed {len(leaked)} {name} images that nearly duplicate a held-out image")
    return removed


def _strategy(distribute: str | None):
    import tensorflow as tf

    if distribute in (None, "", "none"):
        return tf.distribute.get_strategy()
    if distribute == "mirrored":
        return tf.distribute.MirroredStrategy()
    if distribute == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("--distribute multiworker needs TF_CONFIG set on every worker (cluster and task index).")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"Unknown --distribute {distribute!r}; use mirrored or multiworker.")


def _real_data_notice(config: TrainConfig, learned_from: int, groups: int | None) -> str:
    """What a person reading a verdict should know about where the model's figures come from."""
    name = config.data_name or "the user's own data set"
    return (f"Learned from {learned_from:,} real MRI slices of {name}" + (f" ({groups:,} patients or image groups in all)" if groups else "")
            + ". Its test figures come from held-out patients of the same public sources, so how it does on another "
            "hospital's scanner is not measured. A research and teaching tool, not a diagnosis.")


def _describe_data(config: TrainConfig, index) -> dict:
    data = config.data
    description = {"path": str(data), "layout": index.layout, "counts": index.counts()}
    if config.data_name:
        description["name"] = config.data_name
    if config.data_licence:
        description["licence"] = config.data_licence
    generator = Path(data) / "GENERATOR.txt"
    if generator.is_file():
        for line in generator.read_text().splitlines():
            if "=" in line:
                key, value = line.split("=", 1)
                description[key.strip()] = value.strip()
    return description


def _limitations(synthetic: bool) -> list[str]:
    common = [
        "Sees one 2D slice at a time; a radiologist reads the whole volume and the patient's history.",
        "Probabilities are the model's scores, calibrated only as far as the card's calibration section shows.",
    ]
    if synthetic:
        return [
            "Learned from synthetic slices built from one healthy adult head (Colin27) with drawn-in lesions; real "
            "scans differ in anatomy, pathology, artefacts and protocols.",
            "Metrics in this card are on synthetic test images and say nothing about performance on patients.",
        ] + common
    return ["Performance on data from other scanners, sites or populations is unknown."] + common

