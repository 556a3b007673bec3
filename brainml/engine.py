"""A LiteRT (TensorFlow Lite) engine for verdicts: the same network, run by XNNPACK instead of Keras.

Keras 3 runs the compact CNN with a per-call framework cost: about 8 ms a slice on two cores, several times what its
FLOPs need. The same graph as a LiteRT flat buffer runs in about 2 ms, and its runtime (``ai-edge-litert``) imports
in a fifth of a second where TensorFlow takes seconds. Verdicts, the guard's features and batch scoring run on it
when a bundle has one; heatmaps need gradients and keep the Keras graph.

The engine file, ``NAME.tflite`` beside the card, holds the network's output and the pooled features the guard
measures, so one pass gives both. The card names the ``.keras`` file it was converted from by its SHA-256: a model
retrained or replaced since never runs through a stale engine (the cascade falls back to Keras).
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
import weakref
from pathlib import Path

import numpy as np

from .bundle import ModelBundle, write_card

SCORES = "scores"
QUANTIZATIONS = ("none", "dynamic-int8")
# Slices per engine call: the interpreter is resized only when the batch size changes.
BATCH = 32


def engine_file(card_path: str | os.PathLike) -> Path:
    """Where a bundle's engine lives: beside its card, ``NAME.tflite``."""
    return Path(card_path).with_suffix(".tflite")


def build_engine(bundle: ModelBundle, quantization: str = "none") -> Path:
    """Convert ``bundle``'s network (with the guard's pooled features as extra outputs) to ``NAME.tflite`` and record
    it in the card. ``quantization="dynamic-int8"`` stores the weights as 8-bit integers (a quarter of the size);
    check its verdicts with ``evaluate --engine litert`` before shipping it.

    Raises:
        ValueError: an unknown quantization.
    """
    import keras
    import tensorflow as tf

    from .guard import feature_model

    if quantization not in QUANTIZATIONS:
        raise ValueError(f"Unknown quantization {quantization!r}; use one of {', '.join(QUANTIZATIONS)}.")
    view, names = feature_model(bundle.model)
    # Named outputs, so the engine's answers are read by name rather than by position.
    named = keras.Model(view.input, dict(zip([SCORES, *names], view.outputs)), name=f"{bundle.card.name}_engine")
    converter = tf.lite.TFLiteConverter.from_keras_model(named)
    if quantization == "dynamic-int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    path = engine_file(bundle.card_path)
    with contextlib.redirect_stdout(io.StringIO()):  # the converter prints its endpoints; stdout may be JSON
        content = converter.convert()
    path.write_bytes(content)
    bundle.card.engine = {"file": path.name, "keras_sha256": bundle.keras_sha256, "quantization": quantization,
                          "features": list(names), "runtime": "LiteRT (XNNPACK)"}
    write_card(bundle.card, bundle.card_path)
    _ENGINES.pop(bundle, None)
    return path


class LiteEngine:
    """A converted network, run by the LiteRT interpreter on ``threads`` threads.

    One interpreter serves every caller in turn (it is not safe to call from two threads at once, and Streamlit
    runs sessions on threads).
    """

    def __init__(self, content: bytes, threads: int | None = None):
        self._interpreter = _interpreter_class()(model_content=content, num_threads=threads or os.cpu_count() or 1)
        self._runner = self._interpreter.get_signature_runner()
        self._input = next(iter(self._runner.get_input_details()))
        self._lock = threading.Lock()

    def run(self, inputs: np.ndarray) -> dict[str, np.ndarray]:
        """(N, S, S, C) prepared slices -> output name -> (N, ...) float64: ``scores`` (the network's output) and
        each guard layer's pooled features."""
        parts = []
        for start in range(0, len(inputs), BATCH):
            batch = np.ascontiguousarray(inputs[start:start + BATCH], np.float32)
            with self._lock:
                parts.append({name: np.array(value) for name, value in self._runner(**{self._input: batch}).items()})
        if not parts:
            return {}
        return {name: np.concatenate([part[name] for part in parts]).astype(np.float64) for name in parts[0]}


def _interpreter_class():
    """LiteRT's interpreter; TensorFlow's own copy (``tf.lite``, deprecated) where ``ai-edge-litert`` is missing."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    return Interpreter


_ENGINES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def engine_for(bundle: ModelBundle) -> LiteEngine | None:
    """The bundle's engine, loaded once; None when its card names none, the file is missing, or the ``.keras`` file
    has changed since the engine was built from it (the cascade then runs Keras)."""
    if bundle in _ENGINES:
        return _ENGINES[bundle]
    record = bundle.card.engine or {}
    path = bundle.card_path.with_name(record["file"]) if record.get("file") else None
    engine = None
    if path is not None and path.is_file() and record.get("keras_sha256") == bundle.keras_sha256:
        engine = LiteEngine(path.read_bytes())
    _ENGINES[bundle] = engine
    return engine
