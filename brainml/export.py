"""Exporting a bundle for serving at scale: a TensorFlow SavedModel (TensorFlow Serving behind many replicas) or a
TFLite flatbuffer (LiteRT). The card travels with the export, so a server knows the preprocessing and threshold."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from .bundle import load_bundle, write_card

FORMATS = ("saved_model", "tflite")


def export_bundle(card_path: str | os.PathLike, fmt: str, out_dir: str | os.PathLike) -> Path:
    """Write the model in ``fmt`` into ``out_dir`` with a copy of its card; returns the exported path.

    Raises:
        ValueError: an unknown format.
    """
    if fmt not in FORMATS:
        raise ValueError(f"Unknown export format {fmt!r}; use one of {', '.join(FORMATS)}.")
    bundle = load_bundle(card_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = bundle.card_path.stem
    if fmt == "saved_model":
        target = out / f"{name}_saved_model"
        if target.exists():
            shutil.rmtree(target)
        # TensorFlow Serving's default signature, "serving_default", takes (N, S, S, C) float32 prepared inputs.
        bundle.model.export(str(target), format="tf_saved_model", verbose=False)
    else:
        import tensorflow as tf

        converter = tf.lite.TFLiteConverter.from_keras_model(bundle.model)
        target = out / f"{name}.tflite"
        target.write_bytes(converter.convert())
    write_card(bundle.card, out / f"{name}.json")
    return target


def run_export(path: str | os.PathLike, inputs: np.ndarray) -> np.ndarray:
    """Run an exported model on (N, S, S, C) inputs; used to prove an export matches the Keras model."""
    import tensorflow as tf

    path = Path(path)
    inputs = np.ascontiguousarray(inputs, np.float32)
    if path.suffix == ".tflite":
        interpreter = tf.lite.Interpreter(model_path=str(path))
        input_detail = interpreter.get_input_details()[0]
        output_detail = interpreter.get_output_details()[0]
        interpreter.resize_tensor_input(input_detail["index"], inputs.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(input_detail["index"], inputs)
        interpreter.invoke()
        return np.array(interpreter.get_tensor(output_detail["index"]))
    loaded = tf.saved_model.load(str(path))
    serve = loaded.signatures["serving_default"]
    outputs = serve(tf.constant(inputs))
    return np.array(next(iter(outputs.values())))
