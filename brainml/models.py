"""Architectures by name. Every model is one flat functional graph (no nested sub-model), so Grad-CAM can reach
its last convolution, and ends in a ``logits`` Dense layer followed by a separate ``probability`` activation, so
heatmap methods can explain the logit (``ReplaceToLinear`` swaps that last activation)."""

from __future__ import annotations

import socket
from pathlib import Path

import keras
import numpy as np
from keras import layers

# Batch-norm statistics follow the last ~10 batches rather than ~100 (Keras' default 0.99): with a few hundred steps
# per epoch the default leaves validation-time statistics behind the weights, and validation scores swing.
BN_MOMENTUM = 0.9

ARCHITECTURES = ("compact", "seed-cnn", "mobilenetv2", "efficientnetb0", "vgg16", "xception")
TRANSFER = {
    "mobilenetv2": "MobileNetV2",
    "efficientnetb0": "EfficientNetB0",
    "vgg16": "VGG16",
    "xception": "Xception",
}
# Native input sides of the backbones (Xception's smallest accepted side is 71).
MIN_INPUT_SIDE = {"xception": 71, "vgg16": 32, "mobilenetv2": 32, "efficientnetb0": 32}


class ModelError(ValueError):
    """An architecture or weights request that cannot be met, with what to do instead."""


def build_model(
    arch: str, input_shape: tuple[int, int, int], n_outputs: int, weights: str = "none", dropout: float = 0.2
) -> keras.Model:
    """Build ``arch`` for ``input_shape`` with ``n_outputs`` outputs (1 = sigmoid detector, >1 = softmax classifier).

    Args:
        weights: "none" (random init), "imagenet" (backbones only; needs Keras' download or its cache), or a path
            to a local weights file for the backbone.
    Raises:
        ModelError: unknown architecture, or weights that cannot be had.
    """
    if arch not in ARCHITECTURES:
        raise ModelError(f"Unknown architecture {arch!r}. Choose one of: {', '.join(ARCHITECTURES)}.")
    if arch in TRANSFER and input_shape[-1] != 3:
        raise ModelError(f"{arch} expects 3-channel input; train it with a PrepSpec of channels=3.")
    if arch not in TRANSFER and weights != "none":
        raise ModelError(f"{arch} has no pretrained weights; use --weights none.")
    inputs = keras.Input(shape=input_shape, name="image")
    if arch == "compact":
        features = _compact_body(inputs)
    elif arch == "seed-cnn":
        features = _seed_cnn_body(inputs)
    else:
        features = _transfer_body(arch, inputs, weights)
    if arch == "compact":
        # Average and max pooling side by side: the max keeps a lesion of a few pixels from being averaged away.
        features = layers.Concatenate(name="pool")(
            [layers.GlobalAveragePooling2D(name="avg_pool")(features), layers.GlobalMaxPooling2D(name="max_pool")(features)]
        )
    elif arch != "seed-cnn":
        features = layers.GlobalAveragePooling2D(name="pool")(features)
    features = layers.Dropout(dropout, name="dropout")(features)
    # Zero-initialised, so training starts from even odds: random logits on max-pooled features start far from
    # them, and the first epochs go on undoing that instead of learning.
    logits = layers.Dense(n_outputs, kernel_initializer="zeros", name="logits")(features)
    probability = layers.Activation("sigmoid" if n_outputs == 1 else "softmax", name="probability")(logits)
    return keras.Model(inputs, probability, name=arch.replace("-", "_"))


def _compact_body(inputs):
    """A small residual CNN, about 2 MB and a few ms per image on a CPU: the default, because hosted dashboards
    have two cores and no GPU.

    Each stage halves the grid with a full 3x3 convolution (cheap at these widths, and it keeps the fine detail of
    lesions a few pixels across that a depthwise stride would blur) and then refines it with depthwise-separable
    residual blocks. The last stage (8x8) is brought back to 16x16 and merged with the 16x16 stage, as in a U-Net's
    first decoder step: the features the head pools, and Grad-CAM explains, then sit on a grid where one cell is
    about 10 mm of head, fine enough to point at a lesion rather than at a quarter of the brain.
    """
    x = inputs
    skips = []
    for stage, (filters, blocks) in enumerate(((32, 0), (48, 1), (96, 2), (160, 2)), start=1):
        x = layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False, name=f"stage{stage}_down")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"stage{stage}_down_bn")(x)
        x = layers.ReLU(name=f"stage{stage}_down_relu")(x)
        for block in range(blocks):
            x = _separable_block(x, filters, stride=1, name=f"stage{stage}{'abcd'[block]}")
        skips.append(x)
    x = layers.UpSampling2D(2, interpolation="bilinear", name="merge_up")(x)
    x = layers.Concatenate(name="merge")([x, skips[2]])
    x = layers.Conv2D(128, 1, use_bias=False, name="merge_conv")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name="merge_bn")(x)
    x = layers.ReLU(name="merge_relu")(x)
    x = _separable_block(x, 128, stride=1, name="head_a")
    return _separable_block(x, 128, stride=1, name="head_b")


def _separable_block(x, filters, stride, name):
    shortcut = x
    y = layers.SeparableConv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_sepconv")(x)
    y = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(y)
    y = layers.ReLU(name=f"{name}_relu")(y)
    if stride == 1 and shortcut.shape[-1] == filters:
        y = layers.Add(name=f"{name}_add")([shortcut, y])
    return y


def _seed_cnn_body(inputs):
    """The baseline that public tumor notebooks start from (ZeroPadding, one 7x7 conv, two 4x4 max-pools, Dense),
    kept so users can reproduce it; BrainML's default is ``compact``."""
    x = layers.ZeroPadding2D((2, 2), name="zero_padding")(inputs)
    x = layers.Conv2D(32, 7, name="conv0")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name="bn0")(x)
    x = layers.ReLU(name="relu0")(x)
    x = layers.MaxPooling2D(4, name="max_pool0")(x)
    x = layers.MaxPooling2D(4, name="max_pool1")(x)
    return layers.Flatten(name="flatten")(x)


def _transfer_body(arch, inputs, weights):
    if inputs.shape[1] < MIN_INPUT_SIDE[arch]:
        raise ModelError(f"{arch} needs inputs of at least {MIN_INPUT_SIDE[arch]} pixels.")
    constructor = getattr(keras.applications, TRANSFER[arch])
    # input_tensor builds the backbone's layers on our own input, so the whole network stays one flat graph.
    if weights == "imagenet":
        backbone = _with_imagenet_weights(arch, constructor, inputs)
    else:
        backbone = constructor(include_top=False, weights=None, input_tensor=inputs)
    if weights not in ("none", "imagenet"):
        path = Path(weights)
        if not path.is_file():
            raise ModelError(f"Weights file {path} does not exist. Pass a Keras '{TRANSFER[arch]}' no-top weights file.")
        try:
            backbone.load_weights(str(path))
        except Exception as error:  # Keras raises several types for a wrong file
            raise ModelError(f"Could not load {path} into {arch}: {error}") from error
    return backbone.output


def _with_imagenet_weights(arch, constructor, inputs):
    """Build with ImageNet weights from Keras' cache or its download; fail at once, with the way out, if neither
    works. Never fall back silently to random weights."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(10)
    try:
        return constructor(include_top=False, weights="imagenet", input_tensor=inputs)
    except Exception as error:
        raise ModelError(
            f"ImageNet weights for {arch} are not on this machine and could not be downloaded ({str(error)[:160]}). "
            f"Download the Keras '{TRANSFER[arch]}' no-top weights file where you have internet, then pass it with "
            "--weights PATH; or train from scratch with --weights none."
        ) from None
    finally:
        socket.setdefaulttimeout(previous)


def gradcam_layer(model: keras.Model, min_side: int = 8) -> str:
    """The layer Grad-CAM differentiates against: the last spatial (4D) layer, other than a pooling layer, whose
    maps are at least ``min_side`` cells across.

    Pooling after the last convolution only coarsens the map (VGG16's ``block5_pool`` halves it), and a 4x4 map
    puts each cell over a quarter of the head: on lesions of a few pixels the pointing game falls from about 0.9
    at 8x8 to 0.75 at 4x4 and near chance at 2x2, so a slightly earlier layer localises far better.
    """
    fallback = None
    for layer in reversed(model.layers):
        if isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D, keras.layers.ZeroPadding2D)):
            continue
        output = getattr(layer, "output", None)
        if output is None or len(output.shape) != 4:
            continue
        fallback = fallback or layer.name
        if min(output.shape[1], output.shape[2]) >= min_side:
            return layer.name
    if fallback is None:
        raise ModelError(f"Model {model.name} has no spatial layer for Grad-CAM.")
    return fallback


def tumor_detector_view(classifier: keras.Model, notumor_index: int, name: str = "tumor_detector") -> keras.Model:
    """A one-output detector on a copy of ``classifier``'s layers: P(tumor) = 1 - P(notumor).

    The classifier's ``logits`` layer becomes ``class_logits``; the new ``logits`` is
    logsumexp(tumor class logits) - notumor logit, and ``probability`` its sigmoid, which equals
    1 - softmax(logits)[notumor] exactly (BrainML's convention of a ``logits`` layer followed by a separate
    ``probability`` activation, so heatmaps can explain the logit). logsumexp is built from Keras' own layers
    (``log_softmax`` of the tumor logits gives z - logsumexp(z), with the max-shift that keeps it finite), so the
    saved file loads anywhere without custom objects.

    Args:
        classifier: a BrainML classifier: a ``logits`` Dense layer followed by a softmax ``probability`` layer.
        notumor_index: the position of the no-tumor class in the classifier's output.
    """
    renamed = {"logits": "class_logits", "probability": "class_probability"}

    def clone_layer(layer):
        config = layer.get_config()
        config["name"] = renamed.get(layer.name, layer.name)
        return layer.__class__.from_config(config)

    body = keras.models.clone_model(classifier, clone_function=clone_layer)
    for layer in classifier.layers:
        if layer.weights:
            body.get_layer(renamed.get(layer.name, layer.name)).set_weights(layer.get_weights())
    class_logits = body.get_layer("class_logits").output
    n_classes = class_logits.shape[-1]
    tumor = [index for index in range(n_classes) if index != notumor_index]

    select = layers.Dense(len(tumor), use_bias=False, trainable=False, name="tumor_class_logits")
    tumor_logits = select(class_logits)
    select.set_weights([np.eye(n_classes, dtype=np.float32)[:, tumor]])
    log_shares = layers.Activation("log_softmax", name="tumor_class_log_shares")(tumor_logits)
    terms = layers.Concatenate(name="logit_terms")([class_logits, log_shares])
    # z_t0 - (z_t0 - logsumexp(z_t)) - z_notumor = logsumexp(z_t) - z_notumor
    combine = layers.Dense(1, use_bias=False, trainable=False, name="logits")
    logit = combine(terms)
    weights = np.zeros((n_classes + len(tumor), 1), np.float32)
    weights[tumor[0]], weights[notumor_index], weights[n_classes] = 1.0, -1.0, -1.0
    combine.set_weights([weights])
    probability = layers.Activation("sigmoid", name="probability")(logit)
    return keras.Model(body.input, probability, name=name)
