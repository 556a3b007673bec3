import numpy as np
import pytest

from brainml.bundle import ModelCard, save_bundle
from brainml.export import export_bundle, run_export
from brainml.models import build_model, gradcam_layer
from brainml.preprocess import PrepSpec


@pytest.fixture(scope="module")
def small_bundle(tmp_path_factory):
    spec = PrepSpec(size=32)
    model = build_model("compact", spec.input_shape, 4)
    card = ModelCard(name="classifier", task="classify", class_names=["glioma", "meningioma", "notumor", "pituitary"],
                     prep=spec.to_dict(), architecture="compact", gradcam_layer=gradcam_layer(model))
    return save_bundle(model, card, tmp_path_factory.mktemp("bundle") / "classifier"), model


@pytest.mark.parametrize("fmt", ["saved_model", "tflite"])
def test_export_reloads_and_matches_keras(small_bundle, fmt, tmp_path):
    card_path, model = small_bundle
    target = export_bundle(card_path, fmt, tmp_path)
    assert (tmp_path / "classifier.json").is_file()
    inputs = np.random.default_rng(0).uniform(size=(5, 32, 32, 1)).astype(np.float32)
    expected = np.asarray(model(inputs, training=False))
    np.testing.assert_allclose(run_export(target, inputs), expected, atol=1e-5)


def test_unknown_format_is_refused(small_bundle, tmp_path):
    with pytest.raises(ValueError, match="Unknown export format"):
        export_bundle(small_bundle[0], "onnx", tmp_path)
