import keras
import numpy as np
import pytest

from brainml.models import ARCHITECTURES, ModelError, build_model, gradcam_layer

SMALL_INPUT = {"compact": (64, 64, 1), "seed-cnn": (64, 64, 1), "mobilenetv2": (64, 64, 3),
               "efficientnetb0": (64, 64, 3), "vgg16": (64, 64, 3), "xception": (96, 96, 3)}


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_architecture_is_one_flat_graph_with_logits_then_probability(arch):
    model = build_model(arch, SMALL_INPUT[arch], 4)
    assert not any(isinstance(layer, keras.Model) for layer in model.layers), "a nested model breaks Grad-CAM"
    assert model.layers[-2].name == "logits" and model.layers[-1].name == "probability"
    probabilities = np.asarray(model(np.zeros((2, *SMALL_INPUT[arch]), np.float32)))
    assert probabilities.shape == (2, 4)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    layer = model.get_layer(gradcam_layer(model))
    assert len(layer.output.shape) == 4


def test_gradcam_layer_prefers_a_map_of_at_least_8x8():
    # compact merges its 8x8 stage back onto the 16x16 grid; that merged map is the one explained.
    model = build_model("compact", (128, 128, 1), 1)
    name = gradcam_layer(model)
    assert model.get_layer(name).output.shape[1] == 16
    # VGG16 at 64 px: block5 is 4x4, so the last convolution of block4 (8x8) is used; never a pooling layer.
    assert gradcam_layer(build_model("vgg16", (64, 64, 3), 1)) == "block4_conv3"
    assert gradcam_layer(build_model("vgg16", (128, 128, 3), 1)) == "block5_conv3"


def test_untrained_models_start_from_even_odds():
    detector = build_model("compact", (64, 64, 1), 1)
    classifier = build_model("compact", (64, 64, 1), 4)
    images = np.random.default_rng(0).uniform(size=(3, 64, 64, 1)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(detector(images)), 0.5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(classifier(images)), 0.25, atol=1e-6)


def test_detector_has_one_sigmoid_output():
    model = build_model("compact", (64, 64, 1), 1)
    output = np.asarray(model(np.random.default_rng(0).uniform(size=(3, 64, 64, 1)).astype(np.float32)))
    assert output.shape == (3, 1) and ((0 < output) & (output < 1)).all()


def test_requests_that_cannot_be_met_say_what_to_do(tmp_path):
    with pytest.raises(ModelError, match="Unknown architecture 'resnet9'"):
        build_model("resnet9", (64, 64, 1), 1)
    with pytest.raises(ModelError, match="expects 3-channel input"):
        build_model("vgg16", (64, 64, 1), 1)
    with pytest.raises(ModelError, match="has no pretrained weights"):
        build_model("compact", (64, 64, 1), 1, weights="imagenet")
    with pytest.raises(ModelError, match="does not exist"):
        build_model("vgg16", (64, 64, 3), 1, weights=str(tmp_path / "missing.h5"))


def test_imagenet_without_network_fails_at_once_with_the_way_out():
    with pytest.raises(ModelError, match="pass it with --weights PATH"):
        build_model("mobilenetv2", (96, 96, 3), 1, weights="imagenet")
