from pathlib import Path

import keras
import numpy as np
import pytest

from brainml.bundle import ModelBundle, ModelCard
from brainml.explain import METHODS, REGISTRY, method_label
from brainml.explain.core import Explainer, heatmap, is_empty, normalise_maps
from brainml.explain.evaluation import localisation_table
from brainml.metrics import energy_in_mask, pointing_game
from brainml.models import build_model, gradcam_layer
from brainml.preprocess import PrepSpec, prepare_batch
from brainml.synth import sample_cases

SIDE = 64
CLASSES = ("glioma", "meningioma", "notumor", "pituitary")


def untrained(n_outputs: int) -> keras.Model:
    """A compact model with random weights throughout: its zero-initialised logits would give every map zero."""
    model = build_model("compact", (SIDE, SIDE, 1), n_outputs)
    logits = model.get_layer("logits")
    kernel, bias = logits.get_weights()
    logits.set_weights([keras.initializers.GlorotUniform()(kernel.shape).numpy(), bias])
    return model


@pytest.fixture(scope="module")
def detector():
    keras.utils.set_random_seed(1)
    return untrained(1)


@pytest.fixture(scope="module")
def classifier():
    keras.utils.set_random_seed(2)
    return untrained(len(CLASSES))


@pytest.fixture(scope="module")
def explainers(detector, classifier):
    spec = PrepSpec(size=SIDE)
    return {
        "detect": Explainer(detector, gradcam_layer(detector), "detect", prep_spec=spec),
        "classify": Explainer(classifier, gradcam_layer(classifier), "classify", CLASSES, prep_spec=spec),
    }


@pytest.fixture(scope="module")
def inputs():
    return np.random.default_rng(0).random((3, SIDE, SIDE, 1)).astype(np.float32)


def head_slice(height=100, width=150):
    """A bright disc (a head) with a brighter blob in it, on a black frame wider than it is tall."""
    rows, cols = np.indices((height, width))
    image = np.where((rows - 50) ** 2 + (cols - 80) ** 2 <= 40**2, 0.5, 0.0)
    image[(rows - 40) ** 2 + (cols - 90) ** 2 <= 8**2] = 0.9
    return image.astype(np.float32)


@pytest.mark.parametrize("task", ["detect", "classify"])
@pytest.mark.parametrize("method", METHODS)
def test_every_method_gives_finite_maps_in_unit_range(explainers, inputs, task, method):
    maps = explainers[task].explain(inputs, method)
    assert maps.shape == (3, SIDE, SIDE) and maps.dtype == np.float32
    assert np.isfinite(maps).all()
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    single = explainers[task].explain(inputs[0], method)
    assert single.shape == (1, SIDE, SIDE)


def test_the_registry_names_labels_and_papers_each_method_once():
    assert METHODS == ("gradcam", "gradcam++", "faster-scorecam", "layercam", "smoothgrad")
    assert [method_label(name) for name in METHODS] == ["Grad-CAM", "Grad-CAM++", "Faster Score-CAM", "LayerCAM",
                                                         "SmoothGrad"]
    assert all(REGISTRY[name].name == name and REGISTRY[name].paper for name in METHODS)
    assert method_label("unknown-method") == "unknown-method"


def test_an_unknown_method_is_refused_with_the_list(explainers, inputs):
    with pytest.raises(ValueError, match="Unknown heatmap method 'gradcam-xl'. Choose one of: gradcam, gradcam"):
        explainers["detect"].explain(inputs, "gradcam-xl")


def test_explaining_leaves_the_shared_model_unchanged(detector, classifier, explainers, inputs):
    for model, explainer in ((detector, explainers["detect"]), (classifier, explainers["classify"])):
        before = np.asarray(model(inputs, training=False))
        weights = [w.copy() for w in model.get_weights()]
        for method in METHODS:
            explainer.explain(inputs, method)
        Explainer(model, gradcam_layer(model), explainer.task, CLASSES)  # building one must not change it either
        assert np.array_equal(np.asarray(model(inputs, training=False)), before)
        assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), weights))
    assert detector.get_layer("probability").activation is keras.activations.sigmoid
    assert classifier.get_layer("probability").activation is keras.activations.softmax


def test_a_model_without_a_logits_layer_is_explained_through_a_linear_copy(inputs):
    image = keras.Input((SIDE, SIDE, 1))
    features = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(image)
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    model = keras.Model(image, keras.layers.Dense(1, activation="sigmoid", name="out")(pooled))
    before = np.asarray(model(inputs))
    maps = Explainer(model, "conv", "detect").explain(inputs, "gradcam")
    assert maps.shape == (3, SIDE, SIDE) and np.isfinite(maps).all()
    assert model.get_layer("out").activation is keras.activations.sigmoid
    assert np.array_equal(np.asarray(model(inputs)), before)


def test_detector_targets_tumor_by_default_and_notumor_negates_it(explainers, inputs):
    explainer = explainers["detect"]
    assert explainer.resolve_targets(inputs) == ["tumor"] * 3
    assert np.array_equal(explainer.explain(inputs, "gradcam"), explainer.explain(inputs, "gradcam", "tumor"))
    assert np.array_equal(explainer.explain(inputs, "gradcam", 1), explainer.explain(inputs, "gradcam", "tumor"))
    assert not np.array_equal(explainer.explain(inputs, "gradcam", "notumor"), explainer.explain(inputs, "gradcam"))
    with pytest.raises(ValueError, match="Unknown target 'glioma'. Choose one of: notumor, tumor"):
        explainer.explain(inputs, "gradcam", "glioma")


def test_classifier_explains_the_predicted_class_unless_told_otherwise(classifier, explainers, inputs):
    explainer = explainers["classify"]
    predicted = np.asarray(classifier(inputs, training=False)).argmax(axis=1)
    assert explainer.resolve_targets(inputs) == [CLASSES[i] for i in predicted]
    by_name = explainer.explain(inputs, "gradcam", "meningioma")
    assert np.array_equal(by_name, explainer.explain(inputs, "gradcam", 1))
    per_image = explainer.explain(inputs, "gradcam", ["meningioma", "glioma", "pituitary"])
    assert np.array_equal(per_image[0], by_name[0])
    with pytest.raises(ValueError, match="Unknown heatmap method 'cam'"):
        explainer.explain(inputs, "cam")
    with pytest.raises(ValueError, match=r"takes inputs of shape \(64, 64, 1\)"):
        explainer.explain(np.zeros((1, 32, 32, 1), np.float32))


def test_smoothgrad_is_reproducible(explainers, inputs):
    explainer = explainers["detect"]
    assert np.array_equal(explainer.explain(inputs, "smoothgrad"), explainer.explain(inputs, "smoothgrad"))


def test_heatmap_lands_on_the_original_grid_and_is_zero_outside_the_crop(explainers):
    image = head_slice()
    result = heatmap(explainers["detect"], image, "gradcam")
    assert result.map.shape == image.shape and result.model_map.shape == (SIDE, SIDE)
    assert result.target == "tumor" and result.method == "gradcam" and result.method_label == "Grad-CAM"
    box = result.crop_box
    assert (box.height, box.width) != image.shape  # the black frame was cropped away
    outside = np.ones(image.shape, bool)
    outside[box.top:box.bottom, box.left:box.right] = False
    assert not result.map[outside].any()
    assert 0.0 <= result.map.min() and result.map.max() <= 1.0
    assert result.empty == (not result.map.any())


def test_heatmap_builds_one_explainer_per_bundle(detector, tmp_path: Path):
    card = ModelCard(name="detector", task="detect", class_names=["notumor", "tumor"],
                     prep=PrepSpec(size=SIDE).to_dict(), architecture="compact",
                     gradcam_layer=gradcam_layer(detector))
    bundle = ModelBundle(detector, card, tmp_path / "detector.json")
    assert Explainer.for_bundle(bundle) is Explainer.for_bundle(bundle)
    result = heatmap(bundle, head_slice(), "layercam", "notumor")
    assert result.map.shape == (100, 150) and result.target == "notumor"


def test_layercam_can_explain_a_finer_layer_than_the_cam_methods(detector, inputs):
    spec = PrepSpec(size=SIDE)
    default = Explainer(detector, gradcam_layer(detector), "detect", prep_spec=spec)
    finer = Explainer(detector, gradcam_layer(detector), "detect", prep_spec=spec, layercam_layer="stage2a_add")
    assert finer.layercam_layer == "stage2a_add" and default.layercam_layer == gradcam_layer(detector)
    assert not np.allclose(finer.explain(inputs, "layercam"), default.explain(inputs, "layercam"))
    np.testing.assert_allclose(finer.explain(inputs, "gradcam"), default.explain(inputs, "gradcam"), atol=1e-6)
    with pytest.raises(ValueError, match="has no layer 'stage9_add'"):
        Explainer(detector, gradcam_layer(detector), "detect", prep_spec=spec, layercam_layer="stage9_add")


def test_pointing_game_on_hand_made_maps():
    mask = np.zeros((30, 30), bool)
    mask[5:15, 5:15] = True
    heat = np.zeros((30, 30), np.float32)
    heat[10, 10] = 1.0
    assert pointing_game(heat, mask) is True
    heat[:] = 0
    heat[17, 10] = 1.0  # 3 px below the mask's last row
    assert pointing_game(heat, mask, tolerance=4) is True
    assert pointing_game(heat, mask, tolerance=2) is False
    assert pointing_game(heat, mask, tolerance=0) is False
    heat[:] = 0
    heat[25, 25] = 1.0
    assert pointing_game(heat, mask) is False
    assert pointing_game(np.zeros((30, 30)), mask) is False  # an empty map points nowhere
    stack = np.zeros((2, 30, 30), np.float32)
    stack[0, 10, 10] = stack[1, 25, 25] = 1.0
    assert pointing_game(stack, np.stack([mask, mask])).tolist() == [True, False]


def test_energy_in_mask_on_hand_made_maps():
    mask = np.zeros((10, 10), bool)
    mask[:5, :5] = True
    assert energy_in_mask(np.ones((10, 10)), mask) == pytest.approx(0.25)
    heat = np.zeros((10, 10))
    heat[0, 0], heat[9, 9] = 3.0, 1.0
    assert energy_in_mask(heat, mask) == pytest.approx(0.75)
    assert energy_in_mask(np.zeros((10, 10)), mask) == 0.0
    stack = np.stack([np.ones((10, 10)), heat])
    assert energy_in_mask(stack, np.stack([mask, mask])) == pytest.approx([0.25, 0.75])
    with pytest.raises(ValueError, match="the mask has shape"):
        energy_in_mask(np.ones((10, 10)), np.ones((5, 5), bool))


def test_normalising_guards_against_nan_inf_and_flat_maps():
    maps = np.array([[[np.nan, 1.0], [np.inf, 3.0]], [[0.0, 0.0], [0.0, 0.0]], [[2.0, 2.0], [2.0, 2.0]]])
    normalised = normalise_maps(maps)
    assert np.isfinite(normalised).all()
    assert normalised[0] == pytest.approx(np.array([[0.0, 1 / 3], [0.0, 1.0]]))
    assert not normalised[1:].any()
    assert is_empty(normalised).tolist() == [False, True, True]
    assert is_empty(normalised[1]) is True


def test_gradcam_plus_plus_survives_huge_logits(inputs):
    keras.utils.set_random_seed(3)
    model = untrained(1)
    logits = model.get_layer("logits")
    kernel, bias = logits.get_weights()
    logits.set_weights([kernel * 1e4, bias + 500.0])  # exp(logit) overflows float32 beyond ~88
    assert np.asarray(keras.Model(model.input, logits.output)(inputs)).min() > 88
    explainer = Explainer(model, gradcam_layer(model), "detect")
    for target in ("tumor", "notumor"):  # exp(+500) overflows, exp(-500) underflows
        maps = explainer.explain(inputs, "gradcam++", target)
        assert np.isfinite(maps).all() and maps.max() <= 1.0
        assert not is_empty(maps).any()


def test_a_model_that_sees_nothing_gives_flagged_empty_maps(inputs):
    keras.utils.set_random_seed(4)
    model = build_model("compact", (SIDE, SIDE, 1), 1)
    logits = model.get_layer("logits")
    logits.set_weights([np.zeros_like(w) for w in logits.get_weights()])
    explainer = Explainer(model, gradcam_layer(model), "detect", prep_spec=PrepSpec(size=SIDE))
    for method in ("gradcam", "gradcam++", "layercam"):
        maps = explainer.explain(inputs, method)
        assert not maps.any() and is_empty(maps).all()
    result = heatmap(explainer, head_slice(), "gradcam")
    assert result.empty and not result.map.any()


def test_localisation_table_skips_cases_without_tumor(explainers):
    cases = sample_cases(8, seed=5)
    with_tumor = [case for case in cases if case.mask.any()]
    table = localisation_table(explainers["classify"], cases, ["gradcam", "faster-scorecam"])
    assert set(table) == {"gradcam", "faster-scorecam"}
    for rows in table.values():
        assert rows["all"]["n"] == len(with_tumor)
        assert "notumor" not in rows
        assert sum(row["n"] for name, row in rows.items() if name != "all") == len(with_tumor)
        for row in rows.values():
            assert 0.0 <= row["pointing_game"] <= 1.0 and 0.0 <= row["energy_in_mask"] <= 1.0
    arrays = ([case.image for case in cases], [case.mask for case in cases])
    assert localisation_table(explainers["detect"], arrays, ["gradcam"])["gradcam"]["all"]["n"] == len(with_tumor)


def squares(count, rng, size=128, side=(20, 32)):
    """Noisy slices, half of them with a bright square; the square's mask is the ground truth."""
    images = rng.uniform(0.0, 0.3, (count, size, size)).astype(np.float32)
    masks = np.zeros((count, size, size), bool)
    labels = rng.random(count) < 0.5
    for index in np.flatnonzero(labels):
        length = rng.integers(*side)
        top, left = rng.integers(0, size - length, 2)
        masks[index, top:top + length, left:left + length] = True
    images[masks] = rng.uniform(0.7, 1.0, int(masks.sum()))
    return images, masks, labels.astype(np.float32)


@pytest.mark.slow
def test_trained_detector_gradcam_points_at_the_lesion():
    """Train a small detector to find bright squares; its Grad-CAM peak should fall on held-out squares."""
    keras.utils.set_random_seed(0)
    spec = PrepSpec(size=SIDE, crop_to_head=False, normalisation="unit")
    images, _, labels = squares(640, np.random.default_rng(0))
    inputs, _ = prepare_batch(list(images), spec)
    model = build_model("compact", (SIDE, SIDE, 1), 1)
    for layer in model.layers:  # a few hundred steps are too few for the default 0.99 to settle
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    model.compile(keras.optimizers.Adam(2e-3), "binary_crossentropy", jit_compile=False)
    model.fit(inputs, labels, batch_size=32, epochs=3, verbose=0)

    held_out, masks, held_labels = squares(60, np.random.default_rng(1))
    # At 64 px the explained map is 8 x 8 (cells of 8 px): fine enough to point at a square.
    assert model.get_layer(gradcam_layer(model)).output.shape[1] == 8
    explainer = Explainer(model, gradcam_layer(model), "detect", prep_spec=spec)
    table = localisation_table(explainer, (held_out, masks), ["gradcam"])["gradcam"]["all"]
    assert table["n"] == int(held_labels.sum())
    assert table["pointing_game"] >= 0.7
    chance = masks[held_labels == 1].mean()
    assert table["energy_in_mask"] > 2 * chance
