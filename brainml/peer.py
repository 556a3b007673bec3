"""Side by side with a peer a user might pick instead: the ``detect-tumor`` package (a VGG16 ONNX classifier).

Both tools answer the same 200 images in one run, one image at a time, each through its own public entry point
(file path in, verdict out); the figures are per image after a warm-up.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

PEER_PACKAGE = "detect-tumor"
COMPARE_IMAGES = 200


def compare_with_detect_tumor(config, log: Callable[[str], None] = lambda line: None, n_images: int = COMPARE_IMAGES) -> dict:
    """Time ``brainml predict`` (cascade), BrainML with a Grad-CAM overlay, and ``detect-tumor`` on the same files."""
    try:
        from detect_tumor import TumorDetector
    except ImportError:
        return {"available": False, "reason": f"{PEER_PACKAGE} is not installed (pip install {PEER_PACKAGE}==0.1.1)"}
    from . import viz
    from .bench import example_png_files, example_slices
    from .explain.core import Explainer, heatmap
    from .io import read_scan
    from .predict import Cascade

    cascade = Cascade.from_paths(config.detector, config.classifier)
    explainer = Explainer.for_bundle(cascade.detector)
    peer = TumorDetector()
    with tempfile.TemporaryDirectory() as folder:
        files = example_png_files(Path(folder), n_images, example_slices(16))

        def ours(path):
            cascade.run([read_scan(path).image])

        def ours_with_heatmap(path):
            image = read_scan(path).image
            cascade.run([image])
            viz.to_png_bytes(viz.overlay(image, heatmap(explainer, image, "gradcam").map))

        def theirs(path):
            peer.predict(str(path))

        results = {"available": True, "images": n_images}
        for name, function in (("brainml_ms", ours), ("brainml_heatmap_ms", ours_with_heatmap), ("detect_tumor_ms", theirs)):
            log(f"comparing: {name}")
            for path in files[:5]:
                function(path)
            samples = []
            for path in files:
                started = time.perf_counter()
                function(path)
                samples.append(time.perf_counter() - started)
            results[name] = float(np.median(samples) * 1000)
    results["speedup_verdict"] = results["detect_tumor_ms"] / results["brainml_ms"]
    results["speedup_with_heatmap"] = results["detect_tumor_ms"] / results["brainml_heatmap_ms"]
    return results
