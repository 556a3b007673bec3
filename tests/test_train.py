"""End to end on a tiny generated set: synth -> train -> bundle -> evaluate -> predict (a handful of steps)."""

import json
from pathlib import Path

import numpy as np
import pytest

from brainml import cli, synth
from brainml.bundle import BundleError, load_bundle, read_card
from brainml.labels import CLASS_NAMES
from brainml.train import TrainConfig, train


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    return synth.generate_dataset(root, 48, seed=11, config=synth.SynthConfig(size=64), workers=1)


@pytest.fixture(scope="module")
def tiny_detector(tiny_set, tmp_path_factory):
    out = tmp_path_factory.mktemp("models") / "detector"
    config = TrainConfig(task="detect", data=str(tiny_set), out=str(out), epochs=2, batch_size=8, size=32, seed=0, val_split=0.25)
    return train(config, log=lambda line: None)


@pytest.fixture(scope="module")
def tiny_classifier(tiny_set, tmp_path_factory):
    out = tmp_path_factory.mktemp("models") / "classifier"
    config = TrainConfig(task="classify", data=str(tiny_set), out=str(out), epochs=1, batch_size=8, size=32, val_split=0.25)
    return train(config, log=lambda line: None)


def test_training_writes_a_bundle_whose_card_is_complete(tiny_detector):
    card = read_card(tiny_detector.card_path)
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


def test_evaluate_json_and_update_card(tiny_detector, tiny_set, capsys):
    card_path = str(tiny_detector.card_path)
    assert cli.main(["evaluate", "--model", card_path, "--data", str(tiny_set), "--json", "--update-card"]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("task", "n", "threshold", "recall", "specificity", "precision", "accuracy", "f1", "roc_auc",
                "recall_ci", "specificity_ci", "precision_ci", "accuracy_ci", "f1_ci", "roc_auc_ci"):
        assert key in report
    assert report["n"] == 10
    card = read_card(card_path)
    assert card.held_out_split.startswith("test split of") and len(card.held_out_scores) == 10
    # The synthetic set's manifest gives each lesion's size: recall per size bin covers every tumor slice once.
    by_size = report["by_lesion_size"]
    assert by_size["measure"] == "recall"
    assert sum(row["n"] for row in by_size["bins"]) == sum(card.held_out_labels)
    caught = sum(score >= card.threshold for label, score in zip(card.held_out_labels, card.held_out_scores) if label)
    assert sum(round(row["rate"] * row["n"]) for row in by_size["bins"] if row["n"]) == caught
    # ... and each slice's contrast: recall over its tumor slices and specificity over its normal ones.
    by_contrast = report["by_contrast"]
    assert set(by_contrast["groups"]) <= {"T1", "T1c", "T2", "FLAIR"}
    assert sum(row["n"] for row in by_contrast["measures"]["recall"]) == sum(card.held_out_labels)
    assert sum(row["n"] for row in by_contrast["measures"]["specificity"]) == 10 - sum(card.held_out_labels)
    assert sum(round(row["rate"] * row["n"]) for row in by_contrast["measures"]["recall"] if row["n"]) == caught
    assert cli.main(["evaluate", "--model", card_path, "--data", str(tiny_set)]) == 0
    printed = capsys.readouterr().out
    assert "recall by lesion diameter as a share of the image side:" in printed
    assert "by MRI contrast:" in printed and "specificity" in printed.split("by MRI contrast:")[1]


def test_classifier_trains_and_predict_json_handles_good_and_bad_files(tiny_set, tiny_detector, tiny_classifier, tmp_path,
                                                                       capsys):
    good = next((tiny_set / "Testing" / "glioma").glob("*.png"))
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    code = cli.main(["predict", str(good), str(bad), "--json", "--detector", str(tiny_detector.card_path),
                     "--classifier", str(tiny_classifier.card_path)])
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [line["ok"] for line in lines] == [True, False]
    first = lines[0]
    assert set(first) >= {"file", "ok", "error", "tumor_probability", "tumor", "threshold", "type", "type_probabilities", "models"}
    assert set(first["type_probabilities"]) == set(CLASS_NAMES)
    assert sum(first["type_probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert (first["type"] is not None) == first["tumor"]
    assert lines[1]["error"] and lines[1]["tumor_probability"] is None


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


def test_evaluate_held_out_rebuilds_the_cards_own_group_disjoint_test_split(tiny_detector, tiny_set, capsys):
    card = tiny_detector.card
    assert card.provenance["split"]["mode"] == "groups"
    assert card.provenance["split"]["test_images_sharing_a_group_with_train"] == 0
    assert cli.main(["evaluate", "--model", str(tiny_detector.card_path), "--data", str(tiny_set), "--split", "held-out",
                     "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == len(card.held_out_labels)
    assert report["split"] == "held-out"
    assert report["roc_auc"] == pytest.approx(card.metrics["roc_auc"], abs=1e-6)


def test_threshold_per_call_changes_the_verdict(tiny_detector, tiny_set):
    from brainml.io import read_scan
    from brainml.predict import Cascade

    cascade = Cascade(load_bundle(tiny_detector.card_path))
    image = read_scan(next((tiny_set / "Testing" / "notumor").glob("*.png"))).image
    assert cascade.run([image], threshold=0.0)[0].tumor is True
    assert cascade.run([image], threshold=1.01)[0].tumor is False


def test_bundle_mismatch_and_newer_card_are_refused(tiny_detector, tmp_path):
    card = json.loads(tiny_detector.card_path.read_text())
    target = tmp_path / "detector"
    target.with_suffix(".keras").write_bytes(tiny_detector.card_path.with_suffix(".keras").read_bytes())
    card["prep"]["size"] = 64
    target.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(BundleError, match="do not belong together"):
        load_bundle(target)
    card["prep"]["size"] = 32
    card["schema_version"] = 99
    target.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(BundleError, match="newer than this BrainML understands"):
        load_bundle(target)


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


def test_explain_cli_writes_overlays_and_scores_localisation(tiny_detector, tiny_set, tmp_path, capsys):
    scan = next((tiny_set / "Testing" / "glioma").glob("*.png"))
    assert cli.main(["explain", str(scan), "--model", str(tiny_detector.card_path), "--out", str(tmp_path)]) == 0
    assert (tmp_path / f"{scan.stem}_gradcam.png").is_file()
    capsys.readouterr()
    assert cli.main(["explain", "--evaluate", "--data", str(tiny_set), "--model", str(tiny_detector.card_path),
                     "--methods", "gradcam,layercam", "--json", "--update-card"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert set(table) == {"gradcam", "layercam"}
    for method in table.values():
        assert method["all"]["n"] == sum(row["n"] for name, row in method.items() if name != "all") > 0
        assert 0.0 <= method["all"]["pointing_game"] <= 1.0 and 0.0 <= method["all"]["energy_in_mask"] <= 1.0
    assert read_card(tiny_detector.card_path).localisation["table"]["gradcam"]["all"]["n"] == table["gradcam"]["all"]["n"]


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


def test_layercam_layer_is_chosen_on_held_out_masks_and_stored_in_the_card(tiny_set, tmp_path, capsys):
    config = TrainConfig(task="detect", data=str(tiny_set), out=str(tmp_path / "detector"), epochs=1, batch_size=8,
                         size=32, val_split=0.25)
    card_path = str(train(config, log=lambda line: None).card_path)
    assert cli.main(["explain", "--choose-layercam-layer", "--model", card_path, "--data", str(tiny_set),
                     "--per-class", "2", "--update-card", "--json"]) == 0
    choice = json.loads(capsys.readouterr().out)
    scores = choice["pointing_game"]
    assert len(scores) >= 1 and choice["best"] in scores and scores[choice["best"]] == max(scores.values())
    card = read_card(card_path)
    assert card.layercam_layer == choice["best"]
    assert card.provenance["layercam_layer_choice"]["data"] == f"Testing split of {tiny_set}"
    assert load_bundle(card_path).card.layercam_layer == choice["best"]
    # A card naming a LayerCAM layer the model lacks is refused, like a wrong Grad-CAM layer.
    raw = json.loads(Path(card_path).read_text())
    raw["layercam_layer"] = "stage9_add"
    Path(card_path).write_text(json.dumps(raw))
    with pytest.raises(BundleError, match="names LayerCAM layer 'stage9_add'"):
        load_bundle(card_path)
