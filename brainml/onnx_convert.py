"""An ONNX image classifier rebuilt as one flat Keras model, and the proof that the rebuild computes what onnxruntime
computes.

Why rebuild instead of wrapping onnxruntime: heatmaps need gradients with respect to a convolution's output, and the
rest of BrainML (cascade, evaluation, threshold explorer) speaks Keras. The rebuild is only trusted because the
import compares it with onnxruntime on every run and refuses to write a bundle that disagrees.

Layouts: ONNX convolutions are NCHW, Keras' are NHWC. The converter keeps every feature map in NHWC and remembers
how the ONNX tensor relates to it, so the transposes a TensorFlow export wraps around the convolutions cancel
instead of becoming layers, and a flatten of an NCHW map is matched by reordering the next Dense kernel's rows.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass

import keras
import numpy as np
from keras import layers

from .bundle import BundleError

AGREEMENT_TOLERANCE = 1e-5
# The versions the import was checked with; the message for a missing package names them.
ONNX_PIN = "onnx==1.23.2"
ONNXRUNTIME_PIN = "onnxruntime==1.32.0"

# Folded batch norms become BatchNormalization layers with mean 0 and variance 1 - epsilon: sqrt(var + eps) is then
# exactly 1 in float32, so the layer computes x * gamma + beta like the ONNX Mul and Add it replaces.
FOLDED_EPSILON = 1e-3
SHAPE_OPS = {"Shape", "Gather", "Slice", "Concat", "Cast", "Unsqueeze", "Squeeze", "Constant"}
TENSOR_OPS = {
    "Conv", "Relu", "MaxPool", "Flatten", "Reshape", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div",
    "BatchNormalization", "Softmax", "Sigmoid", "Dropout", "Identity", "Transpose",
}
SUPPORTED_OPS = SHAPE_OPS | TENSOR_OPS
TO_NCHW, TO_NHWC = [0, 3, 1, 2], [0, 2, 3, 1]


class ModelImportError(BundleError):
    """A model from elsewhere that cannot be imported, with the reason and what to do."""


@dataclass
class ConvertedModel:
    """A Keras model rebuilt from an ONNX graph, and what it takes to feed both the same data.

    Attributes:
        model: flat functional Keras model, (N, H, W, C) in, probabilities out.
        input_layout: "NHWC" or "NCHW", the layout the ONNX graph's input expects.
        onnx_output: "probability" when the ONNX graph ends in Softmax/Sigmoid, "logits" when the Keras model
            added the final activation itself.
    """

    model: keras.Model
    input_layout: str
    onnx_output: str


# --- proof against onnxruntime ---------------------------------------------------------------------------------


def agreement_images(input_shape: tuple[int, int, int], n_random: int = 8, seed: int = 0) -> np.ndarray:
    """Inputs on which a conversion must agree with onnxruntime: uniform noise (every weight matters) and a few
    structured images (blank, full, a ramp, a head-like disc with a bright lesion), grey repeated over channels.

    Returns:
        (n_random + 4, H, W, C) float32 in [0, 1].
    """
    height, width, channels = input_shape
    noise = np.random.default_rng(seed).random((n_random, height, width, channels), dtype=np.float32)
    rows, cols = np.mgrid[0:height, 0:width] / np.float32(max(height, width))
    disc = ((rows - 0.5) ** 2 + (cols - 0.5) ** 2 < 0.16) * np.float32(0.45)
    lesion = ((rows - 0.4) ** 2 + (cols - 0.6) ** 2 < 0.01) * np.float32(0.5)
    grey = np.stack([np.zeros_like(rows), np.ones_like(rows), cols, disc + lesion]).astype(np.float32)
    structured = np.repeat(grey[..., None], channels, axis=-1)
    return np.concatenate([noise, structured]).astype(np.float32)


def onnxruntime_probabilities(onnx_model, converted: ConvertedModel, images: np.ndarray, batch_size: int = 4
                              ) -> np.ndarray:
    """What onnxruntime says the ONNX graph outputs for ``images`` ((N, H, W, C), as the Keras model takes them),
    as probabilities: (N, K)."""
    ort = _require("onnxruntime", ONNXRUNTIME_PIN)
    session = ort.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])
    input_name, fixed_batch = session.get_inputs()[0].name, session.get_inputs()[0].shape[0]
    batch_size = fixed_batch if isinstance(fixed_batch, int) and fixed_batch > 0 else batch_size
    feed = images if converted.input_layout == "NHWC" else images.transpose(0, 3, 1, 2)
    outputs = np.concatenate([
        session.run(None, {input_name: np.ascontiguousarray(feed[start:start + batch_size])})[0]
        for start in range(0, len(feed), batch_size)
    ]).astype(np.float64)
    if converted.onnx_output == "probability":
        return outputs
    if outputs.shape[-1] == 1:
        return 1.0 / (1.0 + np.exp(-outputs))
    shifted = np.exp(outputs - outputs.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def check_agreement(keras_scores: np.ndarray, reference: np.ndarray, what: str,
                    tolerance: float = AGREEMENT_TOLERANCE) -> float:
    """The largest absolute difference between two sets of scores; raises if it exceeds ``tolerance``."""
    difference = float(np.max(np.abs(np.asarray(keras_scores, np.float64) - np.asarray(reference, np.float64))))
    if not difference <= tolerance:
        raise ModelImportError(
            f"The imported {what} disagrees with onnxruntime by up to {difference:.2e} on {len(reference)} test "
            f"images (allowed: {tolerance:.0e}). The conversion is wrong for this graph, so no bundle was written."
        )
    return difference


# --- the converter ---------------------------------------------------------------------------------------------


def load_onnx(path: str | os.PathLike):
    """Read an ONNX file into an ``onnx.ModelProto``, with a clear error for a file that is not one."""
    onnx = _onnx()
    try:
        return onnx.load(str(path))
    except Exception as error:  # protobuf raises its own DecodeError, and OSError for unreadable files
        raise ModelImportError(f"{path} is not a readable ONNX model ({type(error).__name__}: {error}).") from error


def convert_onnx(onnx_model, name: str = "imported") -> ConvertedModel:
    """Rebuild an ONNX image classifier as a flat functional Keras model.

    The Keras model takes (N, H, W, C) whatever the ONNX input layout, has the conv blocks named like
    ``keras.applications.VGG16`` (``block1_conv1``, ..., ``block1_pool``, a new block after each max pool), and ends
    in a ``logits`` Dense layer and a ``probability`` softmax (or sigmoid) layer.

    Args:
        onnx_model: an ``onnx.ModelProto`` or the path of an ONNX file.
    Raises:
        ModelImportError: operators or patterns the converter does not handle, named in the message.
    """
    if isinstance(onnx_model, (str, os.PathLike)):
        onnx_model = load_onnx(onnx_model)
    return _GraphConverter(onnx_model, name).convert()


@dataclass
class _Value:
    """An ONNX tensor as a Keras tensor plus how the two relate.

    layout "same": the ONNX tensor is the Keras tensor; "nchw": the ONNX tensor is the Keras NHWC map transposed to
    NCHW; "flat_chw": the ONNX tensor is the flattened NCHW map of ``hwc``, the Keras tensor the flattened NHWC map.
    """

    tensor: object
    layout: str = "same"
    hwc: tuple[int, int, int] | None = None


class _GraphConverter:
    def __init__(self, onnx_model, name: str):
        self.graph = onnx_model.graph
        self.name = name
        self.opset = max((op.version for op in onnx_model.opset_import if op.domain in ("", "ai.onnx")), default=13)
        self.values: dict[str, object] = {
            init.name: _onnx().numpy_helper.to_array(init) for init in self.graph.initializer
        }
        self.consumers: dict[str, list] = {}
        for node in self.graph.node:
            for input_name in node.input:
                self.consumers.setdefault(input_name, []).append(node)
        self.absorbed: set[int] = set()
        self.counts: dict[str, int] = {}
        self.block, self.conv_in_block = 1, 0
        self.used_names: set[str] = set()

    def convert(self) -> ConvertedModel:
        self._check_operators()
        if len(self.graph.output) != 1:
            raise ModelImportError(f"The ONNX graph has {len(self.graph.output)} outputs; BrainML imports models "
                                   "with one output (the class scores).")
        self.output_name = self.graph.output[0].name
        self._find_probability()
        inputs, input_layout = self._make_input()
        for node in self.graph.node:
            if id(node) not in self.absorbed:
                getattr(self, f"_op_{node.op_type}")(node)
        result = self._materialise(self._tensor(self.output_name))
        if "logits" not in self.used_names:
            raise ModelImportError("The ONNX graph's class scores do not come from a fully connected layer; BrainML "
                                   "needs one there (its `logits` layer).")
        if self.probability_node is None:
            units = result.tensor.shape[-1]
            result = _Value(layers.Activation("softmax" if units > 1 else "sigmoid", name="probability")(result.tensor))
        if len(result.tensor.shape) != 2:
            raise ModelImportError(f"The ONNX graph outputs shape {tuple(result.tensor.shape)}; BrainML imports "
                                   "classifiers that output one score per class.")
        model = keras.Model(inputs, result.tensor, name=self.name)
        return ConvertedModel(model, input_layout, "logits" if self.probability_node is None else "probability")

    # -- set-up --

    def _check_operators(self) -> None:
        unknown = sorted({node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
                          for node in self.graph.node
                          if node.domain not in ("", "ai.onnx") or node.op_type not in SUPPORTED_OPS})
        if unknown:
            raise ModelImportError(
                f"The ONNX graph uses operators BrainML cannot convert: {', '.join(unknown)}. Supported: "
                f"{', '.join(sorted(SUPPORTED_OPS))}."
            )

    def _find_probability(self) -> None:
        """Find the Softmax/Sigmoid that produces the output (through Identity/Dropout), and the tensor it reads:
        the Dense layer that writes that tensor is named ``logits``."""
        producers = {output: node for node in self.graph.node for output in node.output}
        name = self.output_name
        while name in producers and producers[name].op_type in ("Identity", "Dropout"):
            name = producers[name].input[0]
        node = producers.get(name)
        if node is not None and node.op_type in ("Softmax", "Sigmoid"):
            self.probability_node, self.logits_name = node, node.input[0]
        else:
            self.probability_node, self.logits_name = None, name

    def _make_input(self):
        initialised = {init.name for init in self.graph.initializer}
        graph_inputs = [value for value in self.graph.input if value.name not in initialised]
        if len(graph_inputs) != 1:
            raise ModelImportError(f"The ONNX graph has {len(graph_inputs)} inputs; BrainML imports models with one "
                                   "image input.")
        value = graph_inputs[0]
        tensor_type = value.type.tensor_type
        dims = [dim.dim_value if dim.HasField("dim_value") else None for dim in tensor_type.shape.dim]
        if tensor_type.elem_type != _onnx().TensorProto.FLOAT or len(dims) != 4 or None in dims[1:]:
            raise ModelImportError(f"The ONNX input {value.name!r} is {dims}; BrainML imports models that take a "
                                   "float32 batch of images of a fixed size.")
        consumers = self.consumers.get(value.name, [])
        channels_last = bool(consumers) and all(
            node.op_type == "Transpose" and list(_attributes(node).get("perm", [])) == TO_NCHW for node in consumers
        )
        if channels_last:
            inputs = keras.Input(shape=tuple(dims[1:]), name="image")
            self.values[value.name] = _Value(inputs)
            return inputs, "NHWC"
        inputs = keras.Input(shape=(dims[2], dims[3], dims[1]), name="image")
        self.values[value.name] = _Value(inputs, "nchw")
        return inputs, "NCHW"

    # -- helpers --

    def _layer_name(self, base: str) -> str:
        self.counts[base] = self.counts.get(base, 0) + 1
        name = f"{base}_{self.counts[base]}"
        self.used_names.add(name)
        return name

    def _claim(self, name: str) -> str:
        if name in self.used_names:
            raise ModelImportError(f"The ONNX graph maps to two layers named {name!r}.")
        self.used_names.add(name)
        return name

    def _tensor(self, name: str) -> _Value:
        value = self.values.get(name)
        if not isinstance(value, _Value):
            raise ModelImportError(f"The ONNX tensor {name!r} is {'a constant' if value is not None else 'missing'} "
                                   "where BrainML expects a computed tensor.")
        return value

    def _constant(self, name: str) -> np.ndarray:
        value = self.values.get(name)
        if not isinstance(value, np.ndarray):
            raise ModelImportError(f"The ONNX tensor {name!r} is computed in the graph where BrainML expects a "
                                   "constant (weights or a shape).")
        return value

    def _sole_consumer(self, name: str, op_types: tuple[str, ...]):
        consumers = self.consumers.get(name, [])
        if len(consumers) == 1 and name != self.output_name and consumers[0].op_type in op_types:
            return consumers[0]
        return None

    def _onnx_shape(self, value: _Value) -> list:
        shape = list(value.tensor.shape)
        if value.layout == "nchw":
            return [shape[0], shape[3], shape[1], shape[2]]
        return shape

    def _materialise(self, value: _Value) -> _Value:
        """A Keras tensor equal to the ONNX tensor (layout "same"), adding the transposes that make it."""
        if value.layout == "nchw":
            return _Value(layers.Permute((3, 1, 2), name=self._layer_name("to_channels_first"))(value.tensor))
        if value.layout == "flat_chw":
            grid = layers.Reshape(value.hwc, name=self._layer_name("unflatten"))(value.tensor)
            channels_first = layers.Permute((3, 1, 2), name=self._layer_name("to_channels_first"))(grid)
            return _Value(layers.Flatten(name=self._layer_name("flatten"))(channels_first))
        return value

    def _spatial(self, node) -> _Value:
        value = self._tensor(node.input[0])
        if value.layout != "nchw":
            raise ModelImportError(f"The ONNX {node.op_type} node {node.name!r} reads a tensor that is not an NCHW "
                                   "feature map; BrainML cannot follow this layout.")
        return value

    def _padding(self, node, value: _Value, kernel, strides, dilations) -> tuple[str, tuple | None]:
        """Keras padding for an ONNX node: "same" where TensorFlow's SAME padding is what ONNX asks for,
        else "valid" plus explicit ((top, bottom), (left, right)) zero padding."""
        attributes = _attributes(node)
        auto_pad = attributes.get("auto_pad", b"NOTSET")
        auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
        if auto_pad == "VALID":
            return "valid", None
        if auto_pad == "SAME_UPPER":
            return "same", None
        if auto_pad != "NOTSET":
            raise ModelImportError(f"The ONNX {node.op_type} node {node.name!r} uses auto_pad={auto_pad}, which "
                                   "BrainML cannot convert.")
        pads = list(attributes.get("pads", [0, 0, 0, 0]))
        if not any(pads):
            return "valid", None
        height, width = value.tensor.shape[1:3]
        same = []
        for size, k, stride, dilation in zip((height, width), kernel, strides, dilations):
            extent = (k - 1) * dilation + 1
            total = max((-(-size // stride) - 1) * stride + extent - size, 0)
            same.append((total // 2, total - total // 2))
        if pads == [same[0][0], same[1][0], same[0][1], same[1][1]]:
            return "same", None
        return "valid", ((pads[0], pads[2]), (pads[1], pads[3]))

    # -- operators on feature maps --

    def _op_Conv(self, node) -> None:
        value = self._spatial(node)
        kernel = self._constant(node.input[1])
        bias = self._constant(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        attributes = _attributes(node)
        if attributes.get("group", 1) != 1:
            raise ModelImportError(f"The ONNX Conv node {node.name!r} is a grouped convolution (group="
                                   f"{attributes['group']}), which BrainML cannot convert.")
        size = tuple(kernel.shape[2:])
        strides = tuple(attributes.get("strides", (1, 1)))
        dilations = tuple(attributes.get("dilations", (1, 1)))
        padding, zero_pad = self._padding(node, value, size, strides, dilations)
        self.conv_in_block += 1
        name = self._claim(f"block{self.block}_conv{self.conv_in_block}")
        x = value.tensor
        if zero_pad is not None:
            x = layers.ZeroPadding2D(zero_pad, name=self._claim(f"{name}_pad"))(x)
        output, activation = self._fuse_relu(node.output[0])
        conv = layers.Conv2D(kernel.shape[0], size, strides=strides, padding=padding, dilation_rate=dilations,
                             activation=activation, use_bias=bias is not None, name=name)
        y = conv(x)
        # ONNX kernels are (out, in, kh, kw); Keras wants (kh, kw, in, out).
        conv.set_weights([kernel.transpose(2, 3, 1, 0)] + ([bias] if bias is not None else []))
        self.values[output] = _Value(y, "nchw")

    def _op_MaxPool(self, node) -> None:
        value = self._spatial(node)
        attributes = _attributes(node)
        size = tuple(attributes["kernel_shape"])
        strides = tuple(attributes.get("strides", (1,) * len(size)))
        if attributes.get("ceil_mode", 0) or any(d != 1 for d in attributes.get("dilations", (1, 1))):
            raise ModelImportError(f"The ONNX MaxPool node {node.name!r} uses ceil_mode or dilations, which BrainML "
                                   "cannot convert.")
        padding, zero_pad = self._padding(node, value, size, strides, (1, 1))
        if zero_pad is not None:
            raise ModelImportError(f"The ONNX MaxPool node {node.name!r} pads {zero_pad} in a way Keras' pooling "
                                   "cannot reproduce.")
        pool = layers.MaxPooling2D(size, strides=strides, padding=padding, name=self._claim(f"block{self.block}_pool"))
        self.block, self.conv_in_block = self.block + 1, 0
        self.values[node.output[0]] = _Value(pool(value.tensor), "nchw")

    def _op_Transpose(self, node) -> None:
        value = self.values.get(node.input[0])
        perm = list(_attributes(node).get("perm", []))
        if isinstance(value, np.ndarray):
            self.values[node.output[0]] = np.transpose(value, perm or None)
            return
        value = self._tensor(node.input[0])
        if value.layout == "same" and len(value.tensor.shape) == 4 and perm == TO_NCHW:
            self.values[node.output[0]] = _Value(value.tensor, "nchw")
        elif value.layout == "nchw" and perm == TO_NHWC:
            self.values[node.output[0]] = _Value(value.tensor, "same")
        else:
            value = self._materialise(value)
            if not perm or perm[0] != 0:
                raise ModelImportError(f"The ONNX Transpose node {node.name!r} moves the batch axis ({perm}).")
            permute = layers.Permute(tuple(perm[1:]), name=self._layer_name("permute"))
            self.values[node.output[0]] = _Value(permute(value.tensor))

    def _op_Flatten(self, node) -> None:
        if _attributes(node).get("axis", 1) != 1:
            raise ModelImportError(f"The ONNX Flatten node {node.name!r} keeps more than the batch axis.")
        self.values[node.output[0]] = self._flatten(self._tensor(node.input[0]))

    def _flatten(self, value: _Value) -> _Value:
        if len(value.tensor.shape) == 2:
            return value
        flat = layers.Flatten(name=self._layer_name("flatten"))(value.tensor)
        if value.layout == "nchw":
            # Keras flattens (H, W, C), ONNX (C, H, W): the next Dense kernel's rows are reordered to match.
            return _Value(flat, "flat_chw", tuple(value.tensor.shape[1:]))
        return _Value(flat)

    def _op_Reshape(self, node) -> None:
        value = self._tensor(node.input[0])
        target = list(self._constant(node.input[1]).reshape(-1))
        onnx_shape = self._onnx_shape(value)
        target = [onnx_shape[i] if (dim is not None and int(dim) == 0) else dim for i, dim in enumerate(target)]
        per_example = int(np.prod(onnx_shape[1:]))
        batch_first = target[0] is None or (int(target[0]) == -1 and None not in target[1:] and -1 not in target[1:]
                                            and int(np.prod(target[1:])) == per_example)
        rest = [int(dim) for dim in target[1:] if dim is not None]
        if not batch_first or len(rest) != len(target) - 1:
            raise ModelImportError(f"The ONNX Reshape node {node.name!r} has the target shape {target}; BrainML "
                                   "converts reshapes that keep the batch axis.")
        if len(rest) == 1 and rest[0] in (-1, per_example):
            self.values[node.output[0]] = self._flatten(value)
            return
        value = self._materialise(value)
        reshape = layers.Reshape(tuple(rest), name=self._layer_name("reshape"))
        self.values[node.output[0]] = _Value(reshape(value.tensor))

    # -- fully connected layers --

    def _op_Gemm(self, node) -> None:
        attributes = _attributes(node)
        if attributes.get("transA", 0):
            raise ModelImportError(f"The ONNX Gemm node {node.name!r} transposes its input (transA), which BrainML "
                                   "cannot convert.")
        weights = self._constant(node.input[1])
        kernel = (weights.T if attributes.get("transB", 0) else weights) * np.float32(attributes.get("alpha", 1.0))
        bias = None
        if len(node.input) > 2 and node.input[2]:
            bias = np.broadcast_to(self._constant(node.input[2]) * np.float32(attributes.get("beta", 1.0)),
                                   (kernel.shape[1],))
        self._dense(node, kernel, bias, node.output[0])

    def _op_MatMul(self, node) -> None:
        kernel = self._constant(node.input[1])
        if kernel.ndim != 2:
            raise ModelImportError(f"The ONNX MatMul node {node.name!r} multiplies by a {kernel.ndim}D tensor.")
        output, bias = node.output[0], None
        add = self._sole_consumer(output, ("Add",))
        if add is not None:
            other = add.input[1] if add.input[0] == output else add.input[0]
            constant = self.values.get(other)
            if isinstance(constant, np.ndarray) and constant.size == kernel.shape[1]:
                bias, output = constant.reshape(-1), add.output[0]
                self.absorbed.add(id(add))
        self._dense(node, kernel, bias, output)

    def _dense(self, node, kernel: np.ndarray, bias, output: str) -> None:
        value = self._tensor(node.input[0])
        if value.layout == "flat_chw":
            height, width, channels = value.hwc
            # Keras' flat index of (h, w, c) reads the row ONNX keeps at c*H*W + h*W + w.
            order = np.arange(channels * height * width).reshape(channels, height, width).transpose(1, 2, 0).ravel()
            kernel = kernel[order]
        elif len(value.tensor.shape) != 2:
            raise ModelImportError(f"The ONNX {node.op_type} node {node.name!r} reads a {len(value.tensor.shape)}D "
                                   "tensor; BrainML converts fully connected layers on flat features only.")
        output, activation = self._fuse_relu(output)
        name = self._claim("logits") if output == self.logits_name else self._layer_name("dense")
        dense = layers.Dense(kernel.shape[1], activation=activation, use_bias=bias is not None, name=name)
        y = dense(value.tensor)
        dense.set_weights([np.asarray(kernel, np.float32)] + ([np.asarray(bias, np.float32)] if bias is not None else []))
        self.values[output] = _Value(y)

    def _fuse_relu(self, output: str) -> tuple[str, str | None]:
        """Fold a ReLU that is the only reader of ``output`` into the layer, as keras.applications does, so
        ``block5_conv3`` is the rectified map Grad-CAM expects."""
        relu = self._sole_consumer(output, ("Relu",))
        if relu is None:
            return output, None
        self.absorbed.add(id(relu))
        return relu.output[0], "relu"

    # -- element-wise --

    def _op_Relu(self, node) -> None:
        self._elementwise(node, "relu")

    def _op_Sigmoid(self, node) -> None:
        self._elementwise(node, "sigmoid")

    def _elementwise(self, node, activation: str) -> None:
        value = self._tensor(node.input[0])
        if node is self.probability_node:
            value = self._materialise(value)
            name = "probability"
        else:
            name = self._layer_name(activation)
        self.values[node.output[0]] = _Value(layers.Activation(activation, name=name)(value.tensor), value.layout,
                                             value.hwc)

    def _op_Softmax(self, node) -> None:
        value = self._materialise(self._tensor(node.input[0]))
        axis = _attributes(node).get("axis", -1 if self.opset >= 13 else 1)
        if len(value.tensor.shape) != 2 or axis not in (-1, 1):
            raise ModelImportError(f"The ONNX Softmax node {node.name!r} works on axis {axis} of a "
                                   f"{len(value.tensor.shape)}D tensor; BrainML converts a softmax over class scores.")
        name = "probability" if node is self.probability_node else self._layer_name("softmax")
        self.values[node.output[0]] = _Value(layers.Activation("softmax", name=name)(value.tensor))

    def _op_Identity(self, node) -> None:
        self.values[node.output[0]] = self.values[node.input[0]]

    def _op_Dropout(self, node) -> None:
        if len(node.output) > 1 and self.consumers.get(node.output[1]):
            raise ModelImportError(f"The ONNX Dropout node {node.name!r} has its mask used; BrainML converts "
                                   "inference graphs only.")
        self.values[node.output[0]] = self.values[node.input[0]]

    def _op_BatchNormalization(self, node) -> None:
        value = self._tensor(node.input[0])
        if value.layout == "flat_chw":
            value = self._materialise(value)
        scale, offset, mean, variance = (self._constant(name) for name in node.input[1:5])
        epsilon = float(_attributes(node).get("epsilon", 1e-5))
        self._batch_norm(node, value, [scale, offset, mean, variance], epsilon)

    def _op_Add(self, node) -> None:
        self._affine(node)

    def _op_Sub(self, node) -> None:
        self._affine(node)

    def _op_Mul(self, node) -> None:
        self._affine(node)

    def _op_Div(self, node) -> None:
        self._affine(node)

    def _affine(self, node) -> None:
        """x * scale + offset with constant scale/offset (a folded batch norm, or a rescaling): a Mul or Div
        followed by an Add or Sub on the same tensor becomes one layer."""
        value, scale, offset, output = self._affine_terms(node, None)
        follower = self._sole_consumer(output, ("Add", "Sub")) if node.op_type in ("Mul", "Div") else None
        if follower is not None:
            try:
                _, _, extra_offset, follower_output = self._affine_terms(follower, output)
            except ModelImportError:
                follower = None
            else:
                offset, output = extra_offset, follower_output
                self.absorbed.add(id(follower))
        if value.layout == "flat_chw":
            value = self._materialise(value)
        if np.size(scale) == 1 and np.size(offset) == 1:
            rescale = layers.Rescaling(float(np.ravel(scale)[0]), float(np.ravel(offset)[0]),
                                       name=self._layer_name("rescaling"))
            self.values[output] = _Value(rescale(value.tensor), value.layout, value.hwc)
            return
        channels = value.tensor.shape[-1]
        scale, offset = (self._per_channel(node, term, value, channels) for term in (scale, offset))
        zeros = np.zeros(channels, np.float32)
        self._batch_norm(node, value, [scale, offset, zeros, np.full(channels, 1 - FOLDED_EPSILON, np.float32)],
                         FOLDED_EPSILON, output)

    def _affine_terms(self, node, tensor_name: str | None):
        """(value, scale, offset, output) of one Add/Sub/Mul/Div between a computed tensor and a constant."""
        first, second = (self.values.get(name) for name in node.input[:2])
        if isinstance(first, _Value) and isinstance(second, np.ndarray):
            value, constant, tensor_first = first, second, True
        elif isinstance(second, _Value) and isinstance(first, np.ndarray) and node.op_type in ("Add", "Mul"):
            value, constant, tensor_first = second, first, False
        else:
            raise ModelImportError(f"The ONNX {node.op_type} node {node.name!r} combines two computed tensors (or "
                                   "divides by one); BrainML converts element-wise operations with a constant only.")
        if tensor_name is not None and node.input[0 if tensor_first else 1] != tensor_name:
            raise ModelImportError(f"{node.name!r} does not continue {tensor_name!r}.")
        constant = constant.astype(np.float32)
        scale, offset = {
            "Mul": (constant, np.float32(0)), "Div": (np.float32(1) / constant, np.float32(0)),
            "Add": (np.float32(1), constant), "Sub": (np.float32(1), -constant),
        }[node.op_type]
        return value, scale, offset, node.output[0]

    def _per_channel(self, node, term, value: _Value, channels: int) -> np.ndarray:
        term = np.asarray(term, np.float32)
        if term.size == 1:
            return np.full(channels, term.ravel()[0], np.float32)
        shape = list(term.shape)
        while shape and shape[0] == 1:
            shape.pop(0)
        expected = [channels, 1, 1] if value.layout == "nchw" else [channels]
        if shape != expected:
            raise ModelImportError(f"The ONNX {node.op_type} node {node.name!r} uses a constant of shape "
                                   f"{list(term.shape)} that is not per channel; BrainML cannot convert it.")
        return term.reshape(channels)

    def _batch_norm(self, node, value: _Value, weights: list, epsilon: float, output: str | None = None) -> None:
        norm = layers.BatchNormalization(axis=-1, epsilon=epsilon, name=self._layer_name("batch_normalization"))
        y = norm(value.tensor)
        norm.set_weights([np.asarray(w, np.float32).reshape(-1) for w in weights])
        self.values[output or node.output[0]] = _Value(y, value.layout, value.hwc)

    # -- shape arithmetic, evaluated here (the batch size is None) --

    def _op_Constant(self, node) -> None:
        attributes = {attribute.name: attribute for attribute in node.attribute}
        if "value" not in attributes:
            raise ModelImportError(f"The ONNX Constant node {node.name!r} is not a tensor constant.")
        self.values[node.output[0]] = _onnx().numpy_helper.to_array(attributes["value"].t)

    def _op_Shape(self, node) -> None:
        shape = self._onnx_shape(self._tensor(node.input[0]))
        attributes = _attributes(node)
        start, end = attributes.get("start", 0), attributes.get("end", len(shape))
        self.values[node.output[0]] = np.array(shape[start:end], dtype=object)

    def _op_Cast(self, node) -> None:
        value = self.values.get(node.input[0])
        if isinstance(value, np.ndarray):
            to = _onnx().helper.tensor_dtype_to_np_dtype(_attributes(node)["to"])
            self.values[node.output[0]] = value if value.dtype == object else value.astype(to)
        elif _attributes(node)["to"] == _onnx().TensorProto.FLOAT:
            self.values[node.output[0]] = self._tensor(node.input[0])
        else:
            raise ModelImportError(f"The ONNX Cast node {node.name!r} casts a computed tensor to a type other than "
                                   "float32.")

    def _op_Gather(self, node) -> None:
        data, indices = self._constant(node.input[0]), self._constant(node.input[1])
        self.values[node.output[0]] = np.take(data, indices.astype(np.int64), axis=_attributes(node).get("axis", 0))

    def _op_Slice(self, node) -> None:
        data = self._constant(node.input[0])
        attributes = _attributes(node)
        inputs = [self._constant(name).astype(np.int64).tolist() if name else None for name in node.input[1:]]
        inputs += [None] * (4 - len(inputs))
        starts = attributes.get("starts", inputs[0])
        ends = attributes.get("ends", inputs[1])
        axes = attributes.get("axes", inputs[2]) or list(range(len(starts)))
        steps = inputs[3] or [1] * len(starts)
        index = [slice(None)] * data.ndim
        for start, end, axis, step in zip(starts, ends, axes, steps):
            index[axis] = slice(start, end, step)
        self.values[node.output[0]] = data[tuple(index)]

    def _op_Concat(self, node) -> None:
        parts = [self._constant(name) for name in node.input]
        if any(part.dtype == object for part in parts):
            parts = [part.astype(object) for part in parts]
        self.values[node.output[0]] = np.concatenate(parts, axis=_attributes(node).get("axis", 0))

    def _op_Unsqueeze(self, node) -> None:
        data = self._constant(node.input[0])
        axes = _attributes(node).get("axes") or self._constant(node.input[1]).tolist()
        for axis in sorted(int(a) % (data.ndim + len(axes)) for a in axes):
            data = np.expand_dims(data, axis)
        self.values[node.output[0]] = data

    def _op_Squeeze(self, node) -> None:
        data = self._constant(node.input[0])
        axes = _attributes(node).get("axes") or (self._constant(node.input[1]).tolist() if len(node.input) > 1 else None)
        self.values[node.output[0]] = np.squeeze(data, axis=tuple(axes) if axes else None)


def _attributes(node) -> dict:
    return {attribute.name: _onnx().helper.get_attribute_value(attribute) for attribute in node.attribute}


def _onnx():
    """The onnx package, imported on first use: BrainML works without it until a model is imported."""
    return _require("onnx", ONNX_PIN)


def _require(module: str, pin: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ModelImportError(f"Importing an ONNX model needs the {module} package: `pip install {pin}`.") from None
