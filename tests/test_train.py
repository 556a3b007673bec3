"""Training on a tiny generated set (the fixtures in conftest.py): the bundle and its card, a detector read off a
classifier, fine-tuning across sizes and data sets, tf.distribute, the cosine schedule and the time limit."""

import json

import numpy as np
import pytest

from brainml import synth
from brainml.bundle import load_bundle
from brainml.train import TrainConfig, train

pytestmark = pytest.mark.slow


def test_training_writes_a_bundle_whose_card_is_complete(tiny_detector):
    card = tiny_detector.card  # as training wrote it (the command-line tests update the file on disk)
    assert card.task == "detect" and card.class_names == ["notumor", "tumor"]
    assert card.prep_spec.input_shape == (32, 32, 1)
    assert 0.0 <= card.threshold <= 1.0
    assert card.threshold_rule == "highest specificity with recall >= 0.98 on validation"
    # Held-out = the group-disjoint test part (about 15% of 48 images), never training images.
    assert card.provenance["splits"]["test"] == len(card.held_out_labels) == len(card.held_out_scores)
    assert 5 <= len(card.held_out_labels) <= 9
    assert card.metrics["n"] == len(card.held_out_labels) and card.metrics["task"] == "detect"
    assert card.provenance["data"]["seed"] == "11" and card.trained_on_synthetic
    assert len(card.history["loss"]) == card.provenance["epochs_run"] == 2
    assert tiny_detector.card_path.with_suffix(".keras").is_file()
    # The synthetic set ships masks, so training used the lesion-map head; the saved model is the detector alone.
    assert card.provenance["lesion_mask_supervision"] is True
    model = load_bundle(tiny_detector.card_path).model
    assert len(model.outputs) == 1 and "lesion_map" not in {layer.name for layer in model.layers}


def test_a_detector_read_off_the_classifier_scores_one_minus_p_notumor_on_the_same_held_out_images(
        tiny_set, tiny_classifier, tmp_path):
    derived = train(TrainConfig(task="detect", data=str(tiny_set), out=str(tmp_path / "detector"), val_split=0.25,
                                from_classifier=str(tiny_classifier.card_path)), log=lambda line: None).card
    classifier = tiny_classifier.card
    notumor = classifier.class_names.index("notumor")
    assert derived.task == "detect" and derived.class_names == ["notumor", "tumor"]
    assert derived.prep == classifier.prep and derived.architecture == classifier.architecture
    assert derived.provenance["derived_from"]["classifier"] == "classifier"
    assert derived.provenance["train_seconds"] == classifier.provenance["train_seconds"]
    assert derived.threshold_rule == "highest specificity with recall >= 0.98 on validation"
    assert derived.held_out_labels == [int(label != notumor) for label in classifier.held_out_labels]
    np.testing.assert_allclose(derived.held_out_scores, 1 - np.array(classifier.held_out_scores)[:, notumor], atol=1e-5)


def test_a_detector_is_not_read_off_a_classifier_that_held_out_other_images(tiny_set, tiny_classifier, tiny_detector,
                                                                           tmp_path):
    config = TrainConfig(task="detect", data=str(tiny_set), out=str(tmp_path / "detector"), val_split=0.25, seed=5,
                         from_classifier=str(tiny_classifier.card_path))
    with pytest.raises(ValueError, match="trained with other seed than this run"):
        train(config, log=lambda line: None)
    with pytest.raises(ValueError, match="not a type classifier"):
        train(TrainConfig(task="detect", data=str(tiny_set), out=str(tmp_path / "again"),
                          from_classifier=str(tiny_detector.card_path)), log=lambda line: None)


def test_fine_tuning_at_a_finer_size_starts_from_the_bundles_weights(tiny_set, tiny_classifier, tmp_path):
    from brainml.models import build_model
    from brainml.train import _copy_weights

    source = load_bundle(tiny_classifier.card_path).model
    finer = build_model("compact", (48, 48, 1), 4)
    _copy_weights(source, finer)
    for copied, original in zip(finer.get_weights(), source.get_weights()):
        np.testing.assert_array_equal(copied, original)

    tuned = train(TrainConfig(task="classify", data=str(tiny_set), out=str(tmp_path / "classifier"), epochs=1,
                              batch_size=8, size=48, val_split=0.25, init_from=str(tiny_classifier.card_path)),
                  log=lambda line: None).card
    assert tuned.prep_spec.input_shape == (48, 48, 1)
    assert {key: value for key, value in tuned.prep.items() if key != "size"} == \
        {key: value for key, value in tiny_classifier.card.prep.items() if key != "size"}
    started = tuned.provenance["initialised_from"]
    assert started["size"] == 32 and started["epochs_run"] == 1 and started["history"] == tiny_classifier.card.history
    assert load_bundle(tmp_path / "classifier.json").model.input_shape == (None, 48, 48, 1)


def test_fine_tuning_refuses_a_bundle_that_saw_other_images_or_does_another_task(tiny_set, tiny_classifier,
                                                                                 tiny_detector, tmp_path):
    with pytest.raises(ValueError, match="trained with other seed than this run"):
        train(TrainConfig(task="classify", data=str(tiny_set), out=str(tmp_path / "a"), val_split=0.25, seed=3,
                          init_from=str(tiny_classifier.card_path)), log=lambda line: None)
    with pytest.raises(ValueError, match="needs a compact classify model"):
        train(TrainConfig(task="classify", data=str(tiny_set), out=str(tmp_path / "b"), val_split=0.25,
                          init_from=str(tiny_detector.card_path)), log=lambda line: None)


def test_fine_tuning_from_another_data_set_is_allowed_and_recorded(tiny_classifier, tmp_path):
    """Synthetic pretraining for a real set: the start model never saw the new set, so any split of it is unseen."""
    other_set = synth.generate_dataset(tmp_path / "other", 32, seed=12, config=synth.SynthConfig(size=64), workers=1)
    tuned = train(TrainConfig(task="classify", data=str(other_set), out=str(tmp_path / "tuned"), epochs=1, batch_size=8,
                              size=32, seed=5, val_split=0.25, init_from=str(tiny_classifier.card_path)),
                  log=lambda line: None).card
    assert tuned.provenance["initialised_from"]["model"] == str(tiny_classifier.card_path)
    assert tuned.provenance["config"]["data"] == str(other_set)


MIRRORED_SCRIPT = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from brainml.train import TrainConfig, train
result = train(TrainConfig(task="detect", data=sys.argv[1], out=sys.argv[2], epochs=1, batch_size=4, size=32,
                           distribute="mirrored"), log=lambda line: None)
print(json.dumps({"devices": len(tf.config.list_logical_devices("CPU")), "loss": result.card.history["loss"]}))
"""


def test_mirrored_strategy_trains_on_two_logical_cpus(tiny_set, tmp_path):
    """tf.distribute: two logical CPU devices stand in for two GPUs (in a fresh process, since TensorFlow's devices
    can only be configured before it starts)."""
    import subprocess
    import sys
    from pathlib import Path

    completed = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT, str(tiny_set), str(tmp_path / "mirrored")],
                               capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert completed.returncode == 0, completed.stderr[-2000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["devices"] == 2
    assert np.isfinite(result["loss"][0])
    assert (tmp_path / "mirrored.keras").is_file()


def test_cosine_schedule_and_time_limit(tiny_set, tmp_path):
    # A limit far below one epoch's time: the first epoch runs, no second one starts, and the card says so.
    config = TrainConfig(task="classify", data=str(tiny_set), out=str(tmp_path / "timed"), epochs=3, batch_size=8,
                         size=32, val_split=0.25, schedule="cosine", time_limit_minutes=1e-6)
    lines = []
    card = train(config, log=lines.append).card
    assert card.provenance["epochs_run"] == 1 and card.provenance["config"]["schedule"] == "cosine"
    assert any("minute limit" in line for line in lines)
    with pytest.raises(ValueError, match="Unknown schedule"):
        train(TrainConfig(task="classify", data=str(tiny_set), out=str(tmp_path / "bad"), epochs=1, batch_size=8,
                          size=32, val_split=0.25, schedule="linear"), log=lambda line: None)


def test_the_seeds_cnn_trains_on_labels_alone_where_masks_exist(tiny_set, tmp_path):
    """The lesion-map head reads the compact network's Grad-CAM grid; the seeds' CNN has no such grid to read."""
    card = train(TrainConfig(task="classify", data=str(tiny_set), out=str(tmp_path / "seed"), arch="seed-cnn", epochs=1,
                             batch_size=8, size=32, val_split=0.25), log=lambda line: None).card
    assert card.architecture == "seed-cnn"
    assert card.provenance["lesion_mask_supervision"] is False
    assert len(card.held_out_labels) == card.provenance["splits"]["test"]


def test_mixup_and_label_smoothing_train_on_one_hot_targets_and_are_recorded(tiny_set, tmp_path):
    card = train(TrainConfig(task="classify", data=str(tiny_set), out=str(tmp_path / "mixed"), epochs=1, batch_size=8,
                             size=32, val_split=0.25, mixup=0.2, label_smoothing=0.1), log=lambda line: None).card
    config = card.provenance["config"]
    assert (config["mixup"], config["label_smoothing"]) == (0.2, 0.1)
    # Validation is judged on the same accuracy whichever form the targets take.
    accuracy = card.history["val_probability_accuracy"]
    assert len(accuracy) == 1 and 0 <= accuracy[0] <= 1
    assert np.allclose(np.sum(card.held_out_scores, axis=1), 1, atol=1e-4)


def test_another_training_seed_trains_another_network_on_the_same_split(tiny_set, tiny_classifier, tmp_path,
                                                                         monkeypatch):
    import keras

    from brainml import train as training

    seeds = {}
    real_pipeline, real_seed = training.tf_dataset, keras.utils.set_random_seed
    def pipeline(*args, **kwargs):
        if args[3]:  # the training pipeline: its shuffling and augmentation seed
            seeds["pipeline"] = args[4]
        return real_pipeline(*args, **kwargs)
    monkeypatch.setattr(training, "tf_dataset", pipeline)
    monkeypatch.setattr(keras.utils, "set_random_seed",
                        lambda seed: (seeds.setdefault("global", seed), real_seed(seed)))
    first = tiny_classifier.card
    again = train(TrainConfig(task="classify", data=str(tiny_set), out=str(tmp_path / "again"), epochs=1, batch_size=8,
                              size=32, val_split=0.25, train_seed=7), log=lambda line: None).card
    assert seeds == {"pipeline": 7, "global": 7}
    assert again.provenance["config"]["train_seed"] == 7 and again.provenance["split"] == first.provenance["split"]
    assert again.held_out_labels == first.held_out_labels
