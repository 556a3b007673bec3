"""The view of a model that the visualizers explain: input -> a chosen layer -> logits, as two traced graphs that
share the model's layers and weights (the model itself is never changed)."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from tf_keras_vis.utils.model_modifiers import ReplaceToLinear


class _TracedStage(keras.layers.Layer):
    """A slice of a model run as one traced graph, in inference mode."""

    def __init__(self, submodel: keras.Model, **kwargs):
        super().__init__(**kwargs)
        self.submodel = submodel
        signature = [tf.TensorSpec([None, *submodel.input_shape[1:]], tf.float32)]
        self._run = tf.function(lambda batch: submodel(batch, training=False), input_signature=signature)

    def call(self, inputs):
        return self._run(inputs)

    def compute_output_spec(self, inputs):
        return self.submodel.compute_output_spec(inputs)


class _ExplainedModel(keras.Model):
    """The view of a model that the visualizers explain.

    ``predict`` is replaced by plain batched calls: tf-keras-vis' Score-CAM calls ``predict`` on every image,
    which costs tens of milliseconds of set-up and prints a progress bar each time.
    """

    def predict(self, x, batch_size=32, **kwargs):
        batch = x[0] if isinstance(x, (list, tuple)) else x
        batch = np.asarray(batch, np.float32)
        outputs = [np.asarray(self([tf.constant(batch[start:start + batch_size])], training=False))
                   for start in range(0, len(batch), batch_size)]
        return np.concatenate(outputs)


def explained_view(model: keras.Model, layer_name: str, two_class: bool) -> keras.Model:
    """Input -> ``layer_name`` -> logits, as two traced stages sharing ``model``'s layers.

    With ``two_class`` a detector's logit z becomes the pair (0, z), whose softmax is (1 - P(tumor), P(tumor)).
    """
    if "logits" in {layer.name for layer in model.layers}:
        source, logits = model, model.get_layer("logits").output
    else:
        # ReplaceToLinear changes the layer it is given, so it gets a copy: the shared model stays as it is.
        source = keras.models.clone_model(model)
        source.set_weights(model.get_weights())
        ReplaceToLinear()(source)
        logits = source.outputs[0]
    features = source.get_layer(layer_name).output
    if two_class:
        logits = keras.ops.concatenate([keras.ops.zeros_like(logits), logits], axis=-1)
    below = keras.Model(source.inputs, features, name=f"{model.name}_below")
    above = keras.Model(features, logits, name=f"{model.name}_above")
    image = keras.Input(shape=model.input_shape[1:], name="image")
    explained_features = _TracedStage(below, name=layer_name)(image)
    explained_logits = _TracedStage(above, name="head")(explained_features)
    # A list of inputs, because tf-keras-vis always calls models with a list.
    return _ExplainedModel([image], explained_logits, name=f"{model.name}_explained")
