"""``python -m brainml bench``: how fast BrainML answers on the machine it runs on, against stated targets.

Every figure is measured here, now: medians and 95th percentiles over repeated runs after warm-up, cold starts in
separate processes, memory as the peak resident set of a process that holds both models and a visualizer. Each
model time is also shown as a ratio to the machine's own ceiling (the model's FLOPs at this CPU's measured
matrix-multiply rate), so a reader sees how close to the hardware limit the code runs.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from .labels import CLASS_NAMES, MODELS_DIR


# Targets for a 2-vCPU host with no GPU (Streamlit Community Cloud, a free Hugging Face Space).
TARGETS = {
    "cascade_ms_p50": ("<=", 15.0),
    "cascade_heatmap_ms_p50": ("<=", 40.0),
    "faster_scorecam_ms_p50": ("<=", 400.0),
    "throughput_ips": (">=", 300.0),
    # Measured time over the time the FLOPs take at the machine's matrix-multiply rate: holds across machines.
    "detector_ceiling_ratio": ("<=", 2.5),
    "batch32_ceiling_ratio": ("<=", 1.3),
    "cold_start_s": ("<=", 4.0),
    "slider_ms": ("<=", 50.0),
    "volume_s": ("<=", 2.0),
    "peak_rss_mb": ("<=", 1200.0),
}


@dataclass
class BenchConfig:
    detector: str = str(MODELS_DIR / "detector.json")
    classifier: str = str(MODELS_DIR / "classifier.json")
    runs: int = 50
    warmup: int = 5
    cold_starts: int = 3
    folder_images: int = 500
    quick: bool = False

    def __post_init__(self):
        if self.quick:
            self.runs, self.warmup, self.cold_starts, self.folder_images = 5, 1, 1, 40


@dataclass
class Timing:
    p50_ms: float
    p95_ms: float
    runs: int

    @classmethod
    def of(cls, samples_s: list[float]) -> "Timing":
        samples = np.array(samples_s) * 1000
        return cls(float(np.median(samples)), float(np.percentile(samples, 95)), len(samples))


def time_call(function: Callable[[], object], runs: int, warmup: int) -> Timing:
    for _ in range(warmup):
        function()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        samples.append(time.perf_counter() - started)
    return Timing.of(samples)


def environment() -> dict:
    import tensorflow as tf

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu,
        "cores": cores,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") != "0",
        "gpus": len(tf.config.list_physical_devices("GPU")),
    }


def matmul_gflops(size: int = 1024, runs: int = 10) -> float:
    """This CPU's float32 matrix-multiply rate through TensorFlow (the same kernels the models use)."""
    import tensorflow as tf

    a = tf.random.uniform((size, size))
    b = tf.random.uniform((size, size))
    multiply = tf.function(lambda x, y: tf.matmul(x, y))
    multiply(a, b).numpy()
    started = time.perf_counter()
    for _ in range(runs):
        multiply(a, b).numpy()
    elapsed = (time.perf_counter() - started) / runs
    return 2 * size**3 / elapsed / 1e9


def model_flops(model) -> float:
    """Multiply-adds x 2 of one forward pass at batch 1, counted layer by layer (convolutions and dense layers,
    which carry nearly all the work)."""
    import keras

    total = 0.0
    for layer in model.layers:
        if not hasattr(layer, "output") or layer.output is None:
            continue
        out_shape = layer.output.shape
        if isinstance(layer, keras.layers.SeparableConv2D):
            kh, kw = layer.kernel_size
            in_channels = layer.input.shape[-1]
            positions = out_shape[1] * out_shape[2]
            total += positions * in_channels * (kh * kw + out_shape[-1])
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            kh, kw = layer.kernel_size
            total += out_shape[1] * out_shape[2] * out_shape[3] * kh * kw
        elif isinstance(layer, keras.layers.Conv2D):
            kh, kw = layer.kernel_size
            in_channels = layer.input.shape[-1] // layer.groups
            total += out_shape[1] * out_shape[2] * out_shape[3] * kh * kw * in_channels
        elif isinstance(layer, keras.layers.Dense):
            total += layer.input.shape[-1] * out_shape[-1]
    return 2 * total


def example_slices(count: int, size: int = 256, seed: int = 7) -> list:
    """``count`` synthetic slices of every class in turn, the same on every machine."""
    from . import synth

    config = synth.SynthConfig(size=size)
    return [synth.generate_case(np.random.default_rng([seed, i]), CLASS_NAMES[i % 4], config).image
            for i in range(count)]


def example_png_files(folder: Path, count: int, slices: list) -> list[Path]:
    """``count`` PNG files written to ``folder``, cycling through ``slices``: what a run over a folder reads."""
    from .synth import to_png

    files = []
    for i in range(count):
        path = folder / f"scan_{i:04d}.png"
        path.write_bytes(to_png(slices[i % len(slices)]))
        files.append(path)
    return files


@lru_cache(maxsize=1)
def _bench_volume(slices: int = 176, side: int = 256) -> bytes:
    """The example volume resampled to ``slices`` axial slices of ``side`` x ``side``, as NIfTI bytes."""
    import nibabel
    from scipy import ndimage

    from .example_volume import example_volume

    volume = example_volume().volume
    zoom = (side / volume.shape[0], side / volume.shape[1], slices / volume.shape[2])
    resampled = ndimage.zoom(volume, zoom, order=1)
    return nibabel.Nifti1Image(np.round(resampled * 1000).astype(np.int16), np.diag([*(1 / np.array(zoom)), 1])).to_bytes()


def without_engine(bundle):
    """The same bundle with Keras running it (its card's engine record left out)."""
    from dataclasses import replace

    from .bundle import ModelBundle

    return ModelBundle(bundle.model, replace(bundle.card, engine={}), bundle.card_path)


def _cascade_flops(cascade, detector_flops: float, classifier_flops: float) -> float:
    from .predict import is_view_of

    return classifier_flops if is_view_of(cascade.detector, cascade.classifier) else detector_flops + classifier_flops


def int8_check(bundle, slices: list, runs: int, warmup: int) -> dict:
    """The classifier with 8-bit weights (a dynamic-range LiteRT engine, built in a temporary folder) against its
    float engine on ``slices``: time per slice, the largest change of any probability, and whether every slice keeps
    its most likely class. Whether it keeps the held-out verdicts is for ``evaluate --engine litert`` to say."""
    import shutil

    from .bundle import load_bundle
    from .engine import build_engine, engine_for
    from .predict import network_outputs
    from .preprocess import prepare_batch

    inputs = prepare_batch(slices, bundle.card.prep_spec)[0]
    with tempfile.TemporaryDirectory() as folder:
        for suffix in (".json", ".keras"):
            shutil.copy(bundle.card_path.with_suffix(suffix), Path(folder) / f"int8{suffix}")
        quantized = load_bundle(Path(folder) / "int8.json")
        path = build_engine(quantized, "dynamic-int8")
        if engine_for(bundle) is None:
            return {"available": False, "reason": "the model has no float engine to compare with"}
        float_scores, int8_scores = network_outputs(bundle, inputs)[0], network_outputs(quantized, inputs)[0]
        timing = time_call(lambda: engine_for(quantized).run(inputs[:1]), runs, warmup)
        return {"available": True, "engine_mb": path.stat().st_size / 2**20, "p50_ms": timing.p50_ms,
                "max_probability_change": float(np.abs(float_scores - int8_scores).max()),
                "same_class": int((float_scores.argmax(axis=1) == int8_scores.argmax(axis=1)).sum()), "n": len(inputs)}


def onnxruntime_check(bundle, tensor: np.ndarray, runs: int, warmup: int) -> dict:
    """The engine's network under onnxruntime (converted from the engine file by tf2onnx, when that is installed):
    one slice, timed beside LiteRT's."""
    from .engine import engine_for, engine_file

    try:
        import onnxruntime
        import tf2onnx
    except ImportError:
        return {"available": False, "reason": "tf2onnx is not installed (pip install --no-deps tf2onnx==1.17.0)"}
    if engine_for(bundle) is None:
        return {"available": False, "reason": "the model has no engine to convert"}
    with contextlib.redirect_stdout(io.StringIO()):
        proto, _ = tf2onnx.convert.from_tflite(str(engine_file(bundle.card_path)), opset=17)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    session = onnxruntime.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    timing = time_call(lambda: session.run(None, {name: tensor}), runs, warmup)
    return {"available": True, "p50_ms": timing.p50_ms}


FIRST_PAGE_SCRIPT = """
import sys, time
started = time.perf_counter()
import streamlit
from brainml.bundle import read_card
from ui import loaders, sidebar, state
read_card(sys.argv[1]), read_card(sys.argv[2])
print(time.perf_counter() - started)
"""

COLD_START_SCRIPT = """
import sys, time
started = time.perf_counter()
from brainml.io import read_scan
from brainml.predict import Cascade
cascade = Cascade.from_paths(sys.argv[1], sys.argv[2])
scan = read_scan(sys.argv[3])
cascade.run([scan.image])
print(time.perf_counter() - started)
"""

# The peak resident memory of this process image (VmHWM): ru_maxrss would also count the bench's own memory, which a
# forked child holds for a moment before it execs.
PEAK_MEMORY_SCRIPT = """
import re, sys
import numpy as np
from brainml.predict import Cascade
from brainml.explain.core import Explainer, heatmap
cascade = Cascade.from_paths(sys.argv[1], sys.argv[2])
image = np.load(sys.argv[3])
cascade.run([image])
explainer = Explainer.for_bundle(cascade.detector)
for method in ("gradcam", "faster-scorecam"):
    heatmap(explainer, image, method)
print(int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)) / 1024)
"""


def _python_figure(script: str, *args: str) -> float:
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(root)}
    completed = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, cwd=root, env=env,
                               timeout=600)
    if completed.returncode != 0:
        raise RuntimeError(f"benchmark subprocess failed: {completed.stderr[-1500:]}")
    return float(completed.stdout.strip().splitlines()[-1])


def run_bench(config: BenchConfig, log: Callable[[str], None] = lambda line: None) -> dict:
    """Measure everything; return one JSON-ready dict (stable keys, so runs can be diffed)."""
    from . import charts, metrics, viz
    from .bundle import load_bundle
    from .explain.core import Explainer, heatmap
    from .io import read_scan
    from .engine import engine_for
    from .predict import Cascade, model_scores
    from .preprocess import prepare, prepare_batch
    from .synth import to_png
    from .volume import score_volume

    results: dict = {"environment": environment(), "config": config.__dict__.copy()}
    log("loading models")
    cascade = Cascade(load_bundle(config.detector), load_bundle(config.classifier))
    # The same networks with Keras running them: the reference each engine is measured against.
    keras_cascade = Cascade(*(without_engine(bundle) for bundle in (cascade.detector, cascade.classifier)))
    results["engines"] = cascade.engines
    slices = example_slices(8)
    png = to_png(slices[0])
    spec = cascade.detector.card.prep_spec
    tensor = prepare(slices[0], spec)[0][None]
    runs, warmup = config.runs, config.warmup

    log("per-image timings (batch 1)")
    timings = {
        "read_prepare": time_call(lambda: prepare(read_scan(png, name="x.png").image, spec), runs, warmup),
        "detector": time_call(lambda: model_scores(cascade.detector.model, tensor), runs, warmup),
        "classifier": time_call(lambda: model_scores(cascade.classifier.model, tensor), runs, warmup),
        "cascade": time_call(lambda: cascade.run([slices[0]]), runs, warmup),
        "cascade_keras": time_call(lambda: keras_cascade.run([slices[0]]), runs, warmup),
    }
    for name, bundle in (("detector", cascade.detector), ("classifier", cascade.classifier)):
        if engine_for(bundle) is not None:
            timings[f"{name}_litert"] = time_call(lambda b=bundle: engine_for(b).run(tensor), runs, warmup)
    explainer = Explainer.for_bundle(cascade.detector)
    heat = heatmap(explainer, slices[0], "gradcam").map
    timings["overlay"] = time_call(lambda: viz.overlay(slices[0], heat), runs, warmup)

    def cascade_with_heatmap():
        # As Detect does it: the heatmap reuses the input the cascade prepared.
        diagnosis = cascade.run([slices[0]])[0]
        prepared = (diagnosis.model_input, diagnosis.crop_box)
        viz.overlay(slices[0], heatmap(explainer, slices[0], "gradcam", prepared=prepared).map)

    timings["cascade_heatmap"] = time_call(cascade_with_heatmap, runs, warmup)
    for method in ("gradcam", "gradcam++", "faster-scorecam", "layercam"):
        method_runs = max(runs // 5, 3) if method == "faster-scorecam" else runs
        timings[method] = time_call(lambda m=method: heatmap(explainer, slices[0], m), method_runs, warmup)
    results["timings_ms"] = {name: timing.__dict__ for name, timing in timings.items()}

    log("throughput")
    batch = [slices[i % len(slices)] for i in range(32)]
    batch_timing = time_call(lambda: cascade.run(batch), max(runs // 5, 3), warmup)
    results["throughput_ips"] = 32 / (batch_timing.p50_ms / 1000)
    batch_inputs = prepare_batch(batch, spec)[0]
    network = engine_for(cascade.classifier)
    network_batch = (time_call(lambda: network.run(batch_inputs), max(runs // 5, 3), warmup) if network is not None
                     else time_call(lambda: model_scores(cascade.classifier.model, batch_inputs), max(runs // 5, 3), warmup))
    keras_batch = time_call(lambda: keras_cascade.run(batch), max(runs // 5, 3), warmup)
    results["throughput_keras_ips"] = 32 / (keras_batch.p50_ms / 1000)
    results["onnxruntime"] = onnxruntime_check(cascade.classifier, tensor, runs, warmup)
    log("8-bit weights")
    results["int8"] = int8_check(cascade.classifier, example_slices(40, seed=11), runs, warmup)
    with tempfile.TemporaryDirectory() as folder:
        files = example_png_files(Path(folder), config.folder_images, slices)
        started = time.perf_counter()
        for start in range(0, len(files), 32):
            cascade.run([read_scan(path).image for path in files[start:start + 32]])
        results["folder_ips"] = len(files) / (time.perf_counter() - started)

    log("a whole volume (176 slices of 256 x 256)")
    volume_scan = read_scan(_bench_volume(), name="volume.nii.gz")
    results["volume_shape"] = list(volume_scan.slices.shape)
    results["volume_read_s"] = time_call(lambda: read_scan(_bench_volume(), name="volume.nii.gz"), 3, 1).p50_ms / 1000
    results["volume_s"] = time_call(lambda: score_volume(cascade, volume_scan), 3, 1).p50_ms / 1000

    log("threshold explorer")
    card = cascade.detector.card
    labels, scores = np.array(card.held_out_labels), np.array(card.held_out_scores)
    if len(labels):
        sweep = metrics.sweep_thresholds(labels, scores)
        curves = metrics.curves(labels, scores)
        thresholds = np.linspace(0.01, 0.99, 25)
        position = iter(np.tile(thresholds, 1000))

        def slider_move():
            threshold = float(next(position))
            point = sweep.at(threshold)
            charts.detector_confusion_matrix(point)
            charts.score_distribution(labels, scores, threshold)
            charts.threshold_curves(sweep, threshold)
            charts.roc(curves, point)
            charts.precision_recall(curves, point)

        results["slider_ms"] = time_call(slider_move, min(runs, 25), 2).p50_ms
    else:
        results["slider_ms"] = None

    log("cold start and memory (separate processes)")
    with tempfile.TemporaryDirectory() as folder:
        scan_path = Path(folder) / "scan.png"
        scan_path.write_bytes(png)
        colds = [_python_figure(COLD_START_SCRIPT, config.detector, config.classifier, str(scan_path))
                 for _ in range(config.cold_starts)]
        firsts = [_python_figure(FIRST_PAGE_SCRIPT, config.detector, config.classifier)
                  for _ in range(config.cold_starts)]
        results["first_page_s"] = statistics.median(firsts)
        array_path = Path(folder) / "slice.npy"
        np.save(array_path, slices[0])
        results["peak_rss_mb"] = _python_figure(PEAK_MEMORY_SCRIPT, config.detector, config.classifier, str(array_path))
    results["cold_start_s"] = statistics.median(colds)

    log("hardware ceiling")
    gflops = matmul_gflops()
    detector_flops = model_flops(cascade.detector.model)
    classifier_flops = model_flops(cascade.classifier.model)
    results["ceiling"] = {
        "matmul_gflops": gflops,
        "detector_mflops": detector_flops / 1e6,
        "classifier_mflops": classifier_flops / 1e6,
        # measured time / the time the FLOPs would take at the matmul rate (1.0 = at the hardware limit)
        "detector_ratio": timings["detector"].p50_ms / (detector_flops / gflops / 1e6),
        "detector_litert_ratio": (timings["detector_litert"].p50_ms / (detector_flops / gflops / 1e6)
                                  if "detector_litert" in timings else None),
        "classifier_ratio": timings["classifier"].p50_ms / (classifier_flops / gflops / 1e6),
        # The classifier's network alone on a prepared batch of 32: what preparing the slices adds is the difference.
        "network_batch32_ratio": (network_batch.p50_ms / 32) / (classifier_flops / gflops / 1e6),
        # The cascade runs one network when the detector is a view of the classifier.
        "cascade_batch32_ratio": (batch_timing.p50_ms / 32) / (_cascade_flops(cascade, detector_flops, classifier_flops)
                                                               / gflops / 1e6),
    }

    ceiling = results["ceiling"]
    results.update({
        "detector_ceiling_ratio": ceiling["detector_litert_ratio"] or ceiling["detector_ratio"],
        "batch32_ceiling_ratio": ceiling["cascade_batch32_ratio"],
        "cascade_ms_p50": timings["cascade"].p50_ms,
        "cascade_heatmap_ms_p50": timings["cascade_heatmap"].p50_ms,
        "faster_scorecam_ms_p50": timings["faster-scorecam"].p50_ms,
    })
    results["targets"] = {name: _verdict(results.get(name), rule) for name, rule in TARGETS.items()}
    return results


def _verdict(value, rule) -> dict:
    comparison, limit = rule
    met = None if value is None else (value <= limit if comparison == "<=" else value >= limit)
    return {"value": value, "target": f"{comparison} {limit:g}", "met": met}


def _compare_lines(compare: dict) -> list[str]:
    if not compare.get("available"):
        return ["", f"side by side with detect-tumor: skipped ({compare.get('reason')})"]
    return [
        "",
        f"side by side with detect-tumor on the same {compare['images']} images (per image, median):",
        f"  brainml predict (detector + classifier)   {compare['brainml_ms']:8.1f} ms",
        f"  brainml predict + Grad-CAM overlay        {compare['brainml_heatmap_ms']:8.1f} ms",
        f"  detect-tumor (VGG16, onnxruntime)         {compare['detect_tumor_ms']:8.1f} ms",
        f"  ratio: brainml is {compare['speedup_verdict']:.1f}x faster for the verdict, "
        f"{compare['speedup_with_heatmap']:.1f}x faster with the heatmap",
    ]


def format_report(results: dict) -> str:
    env = results["environment"]
    lines = [
        f"BrainML bench on {env['cpu']} ({env['cores']} cores), TensorFlow {env['tensorflow']}, "
        f"oneDNN {'on' if env['onednn'] else 'off'}, GPUs {env['gpus']}",
        "",
        f"{'per image, batch 1':<24}{'p50 ms':>10}{'p95 ms':>10}",
    ]
    for name, timing in results["timings_ms"].items():
        lines.append(f"  {name:<22}{timing['p50_ms']:>10.2f}{timing['p95_ms']:>10.2f}")
    ceiling = results["ceiling"]
    lines += [
        "",
        f"engines: {', '.join(f'{name} {engine}' for name, engine in results['engines'].items())}",
        f"cascade throughput, batch 32: {results['throughput_ips']:.0f} images/s "
        f"(Keras: {results['throughput_keras_ips']:.0f} images/s)",
        f"predict over a folder of {results['config']['folder_images']} PNGs: {results['folder_ips']:.0f} images/s",
        "threshold slider move (sweep lookup + the explorer's 5 figures): "
        + (f"{results['slider_ms']:.1f} ms" if results["slider_ms"] is not None else "n/a (card has no held-out scores)"),
        f"a whole volume, {' x '.join(map(str, results['volume_shape']))}: every slice scored in "
        f"{results['volume_s']:.2f} s (read in {results['volume_read_s']:.2f} s)",
        f"first page (its imports and the cards, no TensorFlow): {results['first_page_s']:.2f} s",
        f"cold start to first verdict: {results['cold_start_s']:.2f} s (median of {results['config']['cold_starts']})",
        f"peak memory, both models + a visualizer: {results['peak_rss_mb']:.0f} MB",
        "",
        f"hardware ceiling: matmul {ceiling['matmul_gflops']:.1f} GFLOP/s; detector {ceiling['detector_mflops']:.1f} MFLOP, "
        f"classifier {ceiling['classifier_mflops']:.1f} MFLOP per image",
        f"  measured / ceiling time: detector x{ceiling['detector_ratio']:.1f} with Keras"
        + (f", x{ceiling['detector_litert_ratio']:.1f} with LiteRT" if ceiling.get("detector_litert_ratio") else "")
        + f", classifier x{ceiling['classifier_ratio']:.1f}, "
        f"cascade at batch 32 x{ceiling['cascade_batch32_ratio']:.1f} (its network alone x{ceiling['network_batch32_ratio']:.1f})",
        "",
        "targets:",
    ]
    for name, verdict in results["targets"].items():
        state = {True: "met", False: "MISSED", None: "n/a"}[verdict["met"]]
        value = "n/a" if verdict["value"] is None else f"{verdict['value']:.2f}"
        lines.append(f"  {name:<24}{value:>10}  target {verdict['target']:<10} {state}")
    ort = results.get("onnxruntime", {})
    lines.insert(lines.index("targets:") - 1, (
        f"onnxruntime, the classifier on one slice: {ort['p50_ms']:.2f} ms" if ort.get("available")
        else f"onnxruntime: not measured ({ort.get('reason', 'n/a')})"))
    int8 = results.get("int8", {})
    if int8.get("available"):
        lines.insert(lines.index("targets:") - 1, (
            f"8-bit weights (dynamic range): {int8['engine_mb']:.2f} MB, {int8['p50_ms']:.2f} ms a slice; largest "
            f"probability change {int8['max_probability_change']:.4f}, same class on {int8['same_class']} of {int8['n']}"))
    if "compare" in results:
        lines += _compare_lines(results["compare"])
    return "\n".join(lines)


def to_json(results: dict) -> str:
    return json.dumps(results, indent=1, default=float)
