"""The command line on a tiny trained pair (the fixtures in conftest.py): evaluate, predict and explain, as a user
runs them."""

import json
from pathlib import Path

import pytest

from brainml import cli
from brainml.bundle import BundleError, load_bundle, read_card
from brainml.labels import CLASS_NAMES
from brainml.train import TrainConfig, train

pytestmark = pytest.mark.slow


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


def test_evaluate_validation_scores_the_cards_own_validation_part_and_never_stores_it(tiny_detector, tiny_set,
                                                                                      capsys):
    card = tiny_detector.card
    assert cli.main(["evaluate", "--model", str(tiny_detector.card_path), "--data", str(tiny_set), "--split",
                     "validation", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == card.provenance["splits"]["validation"] and report["split"] == "validation"
    # The threshold was chosen on these very images: the same recall and specificity as the card records there.
    assert report["recall"] == pytest.approx(card.validation_metrics["recall"])
    assert report["specificity"] == pytest.approx(card.validation_metrics["specificity"], nan_ok=True)
    assert cli.main(["evaluate", "--model", str(tiny_detector.card_path), "--data", str(tiny_set), "--split",
                     "validation", "--update-card"]) != 0
    assert "does not store validation figures" in capsys.readouterr().err


def test_threshold_per_call_changes_the_verdict(tiny_detector, tiny_set):
    from brainml.io import read_scan
    from brainml.predict import Cascade

    cascade = Cascade(load_bundle(tiny_detector.card_path))
    image = read_scan(next((tiny_set / "Testing" / "notumor").glob("*.png"))).image
    assert cascade.run([image], threshold=0.0)[0].tumor is True
    assert cascade.run([image], threshold=1.01)[0].tumor is False


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
