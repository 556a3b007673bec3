"""``python -m brainml``: parse, call the library, print (``--json`` for machines).

Each subcommand is one library call; this module only translates arguments and prints results.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .labels import MODELS_DIR



def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return args.handler(args) or 0
    except (ValueError, OSError) as error:  # ScanError, DatasetError, BundleError, ModelError are ValueErrors
        print(f"error: {error}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m brainml",
        description="BrainML: brain tumor detection and type classification on 2D MRI slices, with heatmaps.",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    synth = commands.add_parser("synth", help="generate the synthetic MRI data set (Kaggle layout) or a contact sheet")
    synth.add_argument("--out", help="folder to write the data set to")
    synth.add_argument("--n", type=int, default=2000, help="number of images (default 2000)")
    synth.add_argument("--seed", type=int, default=1, help="random seed; the same seed gives the same bytes")
    synth.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    synth.add_argument("--test-fraction", type=float, default=0.2, help="share of images in Testing/ (default 0.2)")
    synth.add_argument("--workers", type=int, default=None, help="processes to use (default: all cores)")
    synth.add_argument("--sheet", help="write a contact sheet PNG of --n cases (default 32) instead of a data set")
    synth.add_argument("--example-volume", metavar="FILE.nii.gz",
                       help="write the built-in example volume (a whole head with a glioma) and its mask beside it")
    synth.set_defaults(handler=_synth)

    train = commands.add_parser("train", help="train a detector or a type classifier and write its bundle")
    train.add_argument("--task", choices=("detect", "classify"), required=True)
    train.add_argument("--data", required=True, help="data set folder (Kaggle, sartaj, yes/no or folder-per-class layout)")
    train.add_argument("--out", required=True, help="bundle path without suffix, e.g. models/detector")
    train.add_argument("--arch", default="compact", help="compact (default), seed-cnn, mobilenetv2, efficientnetb0, vgg16, xception")
    train.add_argument("--weights", default="none", help="none (default), imagenet, or a local weights file for a backbone")
    train.add_argument("--epochs", type=int, default=20)
    train.add_argument("--batch", type=int, default=64, help="batch size per replica")
    train.add_argument("--lr", type=float, default=2e-3, help="learning rate")
    train.add_argument("--seed", type=int, default=0, help="seed of the split (and of training, unless --train-seed)")
    train.add_argument("--train-seed", type=int, default=None,
                       help="seed of initialisation, shuffling and augmentation alone: the same split, another run")
    train.add_argument("--val-split", type=float, default=0.15, help="share of training images held out for validation")
    train.add_argument("--recall-target", type=float, default=0.98, help="detector: minimum validation recall of the threshold")
    train.add_argument("--threshold-rule", default="min_recall", choices=("min_recall", "youden", "max_accuracy", "max_f1"))
    train.add_argument("--size", type=int, default=128, help="model input side in pixels (default 128)")
    train.add_argument("--patience", type=int, default=8, help="epochs without validation improvement before stopping")
    train.add_argument("--schedule", choices=("plateau", "cosine"), default="plateau",
                       help="learning rate: halve on a validation plateau (default), or cosine decay over --epochs")
    train.add_argument("--time-limit", type=float, default=None, metavar="MINUTES",
                       help="start no epoch that would likely end past this many minutes (the best epoch is kept)")
    train.add_argument("--from-classifier", default=None, metavar="CARD",
                       help="detect: no training; read a type classifier (same --data and --seed) as P(tumor) = 1 - P(notumor)")
    train.add_argument("--init-from", default=None, metavar="CARD",
                       help="start from this bundle's weights (same task, architecture, --data and --seed); --size may differ")
    train.add_argument("--no-augment", dest="augment", action="store_false",
                       help="no random flips, rotations, zooms or contrast changes of training images")
    train.add_argument("--mask-weight", type=float, default=1.0,
                       help="weight of the lesion-map loss where the data set has masks (0 turns mask supervision off)")
    train.add_argument("--augmentation", choices=("standard", "strong"), default="standard",
                       help="strong: wider rotations, zooms and shifts, brightness and noise (for real scans)")
    train.add_argument("--mixup", type=float, default=0.0, metavar="ALPHA",
                       help="blend each training image with another of its batch, weight from Beta(ALPHA, ALPHA) "
                            "(0.2 is usual; 0 = off)")
    train.add_argument("--label-smoothing", type=float, default=0.0,
                       help="share of each training target spread evenly over the classes (0.1 is usual; 0 = off)")
    train.add_argument("--split", choices=("groups", "official"), default="groups",
                       help="groups (default): the whole set split by patient or near-duplicate cluster; official: the "
                            "data set's own Testing/ split, as published")
    train.add_argument("--test-split", type=float, default=0.15, help="share of images held out for test (--split groups)")
    train.add_argument("--keep-leaks", dest="remove_leaks", action="store_false",
                       help="keep training images that nearly duplicate a held-out one (to reproduce a published split)")
    train.add_argument("--data-name", default=None, help="the data set's name as people cite it (stored in the card)")
    train.add_argument("--data-licence", default=None, help="the data set's licence (stored in the card)")
    train.add_argument("--max-images", type=int, default=None, help="cap on images per split (quick trials)")
    train.add_argument("--distribute", choices=("mirrored", "multiworker"), default=None,
                       help="train inside a tf.distribute strategy (several GPUs, or several hosts via TF_CONFIG)")
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser("evaluate", help="metrics of a bundle on labelled data (held-out split)")
    evaluate.add_argument("--model", required=True, help="model card, e.g. models/detector.json")
    evaluate.add_argument("--data", required=True, help="data set folder")
    evaluate.add_argument("--split", default="Testing",
                          help="Testing (default), Training, all, or held-out: the test part of the split the model "
                               "was trained with (group-disjoint for models trained with --split groups), or "
                               "validation: that split's validation part, to compare runs without touching the test")
    evaluate.add_argument("--update-card", action="store_true", help="store the labels and scores in the card for the threshold explorer")
    evaluate.add_argument("--engine", default="keras", choices=("keras", "litert"),
                          help="keras (default), or the bundle's LiteRT engine, to check it gives the same verdicts")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.set_defaults(handler=_evaluate)

    predict = commands.add_parser("predict", help="verdict, P(tumor) and tumor type for image/DICOM/NIfTI files")
    predict.add_argument("files", nargs="+", help="scans to read (PNG, JPEG, TIFF, BMP, WebP, GIF, DICOM, zip, NIfTI)")
    predict.add_argument("--threshold", type=float, default=None, help="decision threshold (default: the detector card's)")
    predict.add_argument("--detector", default=str(MODELS_DIR / "detector.json"))
    predict.add_argument("--classifier", default=str(MODELS_DIR / "classifier.json"), help="'none' for detector only")
    predict.add_argument("--slice", type=int, default=None, help="slice of a volume to read (default: the one with most brain)")
    predict.add_argument("--all-slices", action="store_true",
                         help="score every slice of a volume or series: one line per slice, then a summary")
    predict.add_argument("--plane", default="axial", choices=("axial", "coronal", "sagittal"),
                         help="with --all-slices: the plane to slice a volume along (default axial, as the models learned)")
    predict.add_argument("--csv", default=None, metavar="PATH",
                         help="with --all-slices: also write the per-slice table to PATH (one file: PATH; several: "
                              "PATH with the file's name added before .csv)")
    predict.add_argument("--json", action="store_true", help="one JSON object per input, one per line")
    predict.add_argument("--no-guard", dest="guard", action="store_false",
                         help="answer even for images unlike the brain MRI slices the models learned from")
    predict.set_defaults(handler=_predict)

    explain = commands.add_parser("explain", help="heatmap of a scan, or how well heatmaps find known lesions (--evaluate)")
    explain.add_argument("files", nargs="*", help="scans to explain")
    explain.add_argument("--model", default=str(MODELS_DIR / "detector.json"), help="model card to explain")
    explain.add_argument("--method", default="gradcam", help="gradcam, gradcam++, faster-scorecam, layercam, smoothgrad")
    explain.add_argument("--target", default=None, help="class to explain (default: tumor, or the predicted class)")
    explain.add_argument("--out", default=".", help="folder for the overlay PNGs (default: current folder)")
    explain.add_argument("--evaluate", action="store_true", help="score every method against lesion masks in --data")
    explain.add_argument("--data", help="data set with lesion masks (masks/<split>/<class>/ beside the image folders)")
    explain.add_argument("--split", default="Testing",
                         help="Testing (default), Training, held-out (the test part of the model's own split) or "
                              "validation (its validation part: use it to choose, never the test part)")
    explain.add_argument("--per-class", type=int, default=100, help="tumor slices per class to score (default 100)")
    explain.add_argument("--methods", default=None, help="comma-separated methods for --evaluate (default: all)")
    explain.add_argument("--update-card", action="store_true", help="store the --evaluate table (or the chosen layer) in the card")
    explain.add_argument("--choose-layercam-layer", action="store_true",
                         help="score LayerCAM on each candidate layer on --data (not the final test set) and report the best")
    explain.add_argument("--json", action="store_true")
    explain.set_defaults(handler=_explain)

    calibrate = commands.add_parser("calibrate", help="temperature-scale a model on its own validation split")
    calibrate.add_argument("--model", required=True, help="model card trained with a stored split, e.g. models/classifier.json")
    calibrate.add_argument("--data", required=True, help="the data set it was trained on")
    calibrate.set_defaults(handler=_calibrate)

    guard = commands.add_parser("guard", help="fit and measure the out-of-distribution guard of a model")
    guard.add_argument("--model", required=True, help="model card trained with a stored split, e.g. models/classifier.json")
    guard.add_argument("--data", required=True, help="the data set it was trained on")
    guard.add_argument("--acceptance", type=float, default=0.995,
                       help="share of held-out (validation) brain slices the threshold accepts (default 0.995)")
    guard.add_argument("--per-kind", type=int, default=8, help="non-brain images of each kind to measure on (default 8)")
    guard.set_defaults(handler=_guard)

    engine = commands.add_parser("engine", help="build the LiteRT engine that verdicts run on (NAME.tflite beside the card)")
    engine.add_argument("--model", required=True, help="model card, e.g. models/classifier.json")
    engine.add_argument("--quantization", default="none", choices=("none", "dynamic-int8"),
                        help="none (default: the same numbers as Keras), or 8-bit weights (check with evaluate --engine)")
    engine.set_defaults(handler=_engine)

    bench = commands.add_parser("bench", help="measure speed and memory on this machine against BrainML's targets")
    bench.add_argument("--detector", default=str(MODELS_DIR / "detector.json"))
    bench.add_argument("--classifier", default=str(MODELS_DIR / "classifier.json"))
    bench.add_argument("--quick", action="store_true", help="few repetitions: checks that everything runs, figures are rough")
    bench.add_argument("--compare", choices=("detect-tumor",), default=None,
                       help="also time the detect-tumor package on the same images (when it is installed)")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.set_defaults(handler=_bench)

    export = commands.add_parser("export", help="export a bundle as a TensorFlow SavedModel or a TFLite file")
    export.add_argument("--model", required=True, help="model card, e.g. models/detector.json")
    export.add_argument("--format", required=True, choices=("saved_model", "tflite"))
    export.add_argument("--out", required=True, help="output folder")
    export.set_defaults(handler=_export)

    importer = commands.add_parser("import", help="import a model trained elsewhere as a BrainML bundle (detect-tumor)")
    importer.add_argument("source", choices=("detect-tumor",), help="detect-tumor: the VGG16 of the detect-tumor package")
    importer.add_argument("--out", default=str(MODELS_DIR), help="folder for the bundles (default models/)")
    importer.set_defaults(handler=_import)
    return parser


def _synth(args) -> int:
    from . import synth

    config = synth.SynthConfig(size=args.size)
    if args.example_volume:
        from .example_volume import example_volume

        example = example_volume()
        path = Path(args.example_volume)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(example.nifti_bytes())
        mask_path = path.with_name(path.name.replace(".nii", "_mask.nii"))
        mask_path.write_bytes(example.mask_nifti_bytes())
        first, last = example.lesion_slices
        print(f"wrote {path} and {mask_path} (tumor on axial slices {first}-{last})")
        return 0
    if args.sheet:
        count = args.n if args.n != 2000 else 32
        synth.contact_sheet(synth.sample_cases(count, args.seed, config)).save(args.sheet)
        print(f"wrote {args.sheet} ({count} cases, seed {args.seed})")
        return 0
    if not args.out:
        raise ValueError("synth needs --out DIR (or --sheet FILE.png).")
    out = synth.generate_dataset(args.out, args.n, args.seed, config, args.test_fraction, args.workers, _progress_bar("synth"))
    print(f"\nwrote {args.n} images to {out} (seed {args.seed}, {args.size}px)")
    return 0


def _train(args) -> int:
    from .train import TrainConfig, train

    config = TrainConfig(
        task=args.task, data=args.data, out=args.out, arch=args.arch, weights=args.weights, epochs=args.epochs,
        batch_size=args.batch, learning_rate=args.lr, seed=args.seed, val_split=args.val_split,
        recall_target=args.recall_target, threshold_rule=args.threshold_rule, size=args.size, patience=args.patience,
        max_images=args.max_images, distribute=args.distribute, augment=args.augment,
        from_classifier=args.from_classifier, init_from=args.init_from, schedule=args.schedule, time_limit_minutes=args.time_limit,
        split=args.split, test_split=args.test_split, remove_leaks=args.remove_leaks, augmentation=args.augmentation,
        data_name=args.data_name, data_licence=args.data_licence, mask_weight=args.mask_weight,
        mixup=args.mixup, label_smoothing=args.label_smoothing, train_seed=args.train_seed,
    )
    result = train(config, log=lambda line: print(line, flush=True))
    print(_summary(result.card.metrics))
    return 0


def _evaluate(args) -> int:
    from .evaluate import evaluate_path

    split = {"testing": "test", "test": "test", "training": "train", "train": "train", "all": "all",
             "held-out": "held-out", "validation": "validation"}.get(args.split.lower())
    if split is None:
        raise ValueError(f"Unknown --split {args.split!r}; use held-out, validation, Testing, Training or all.")
    evaluation = evaluate_path(args.model, args.data, split, update_card=args.update_card, engine=args.engine)
    if args.json:
        print(json.dumps(evaluation.report, allow_nan=False))
    else:
        print(_summary(evaluation.report))
        for path, reason in evaluation.failures[:10]:
            print(f"  unreadable: {path}: {reason}")
        if args.update_card:
            print(f"stored {len(evaluation.labels)} held-out labels and scores in {args.model}")
    return 0


def _predict(args) -> int:
    from .io import ScanError, read_scan
    from .predict import Cascade

    classifier = None if args.classifier.lower() == "none" else args.classifier
    cascade = Cascade.from_paths(args.detector, classifier)
    if args.csv and not args.all_slices:
        raise SystemExit("--csv writes the per-slice table of --all-slices; add --all-slices.")
    for file in args.files:
        record = {"file": file, "ok": False, "error": None, "tumor_probability": None, "tumor": None,
                  "threshold": None, "type": None, "type_probabilities": None, "brain_mri": None, "ood_score": None,
                  "note": None, "models": cascade.model_labels}
        try:
            scan = read_scan(file, name=os.path.basename(file), slice_index=args.slice)
            if args.all_slices:
                _predict_slices(args, cascade, scan, record)
                continue
            diagnosis = cascade.run([scan.image], threshold=args.threshold,
                                    colour_saturations=[scan.metadata.get("colour_saturation", 0.0)],
                                    guard=args.guard)[0]
            record.update(diagnosis.to_dict(), ok=True)
        except ScanError as error:
            record["error"] = str(error)
        print(json.dumps(record) if args.json else _verdict_line(record), flush=True)
    return 0


def _predict_slices(args, cascade, scan, blank: dict) -> None:
    """``predict --all-slices``: one record per slice of ``scan`` (the single-slice fields, None where a slice was
    skipped, and ``slice``, ``scored``, ``skipped``), then the volume's summary."""
    from .volume import score_volume

    file = blank["file"]
    threshold = cascade.default_threshold if args.threshold is None else args.threshold
    scores = score_volume(cascade, scan, plane=args.plane, guard=args.guard).at(threshold)
    for score in scores.slices:
        record = {**blank, "ok": True, **score.to_dict()}
        if args.json:
            print(json.dumps(record), flush=True)
        elif score.diagnosis is None:
            print(f"{file} slice {score.index}: skipped: {score.skipped}", flush=True)
        else:
            print(_verdict_line({**record, "file": f"{file} slice {score.index}"}), flush=True)
    summary = {"file": file, **scores.summary(), "models": cascade.model_labels}
    print(json.dumps(summary) if args.json else f"{file}: {scores.verdict_text()} ({summary['n_scored']} slices "
          f"scored, {summary['n_skipped']} skipped, {summary['n_withheld']} withheld by the guard)", flush=True)
    if args.csv:
        path = Path(args.csv)
        if len(args.files) > 1:
            path = path.with_name(f"{path.stem}_{Path(file).name.split('.')[0]}{path.suffix or '.csv'}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(scores.to_csv())
        print(f"wrote {path}", file=sys.stderr)


def _explain(args) -> int:
    if args.choose_layercam_layer:
        from .evaluate import layercam_layer_report

        if not args.data:
            raise ValueError("explain --choose-layercam-layer needs --data DIR (a data set with masks).")
        best, scores = layercam_layer_report(args.model, args.data, args.split, args.per_class, args.update_card)
        if args.json:
            print(json.dumps({"best": best, "pointing_game": scores}))
        else:
            for layer, score in scores.items():
                print(f"{layer:<20}{score:>8.3f}{'  <- best' if layer == best else ''}")
            if args.update_card:
                print(f"stored LayerCAM layer {best} in {args.model}")
        return 0
    if args.evaluate:
        from .evaluate import localisation_report

        if not args.data:
            raise ValueError("explain --evaluate needs --data DIR (a data set with masks).")
        methods = args.methods.split(",") if args.methods else None
        table = localisation_report(args.model, args.data, methods, args.split, args.per_class, args.update_card)
        if args.json:
            print(json.dumps(table, allow_nan=False))
        else:
            print(f"{'method':<16}{'class':<12}{'pointing game':>14}{'energy in mask':>16}{'n':>6}")
            for method, classes in table.items():
                for name, row in classes.items():
                    print(f"{method:<16}{name:<12}{row['pointing_game']:>14.3f}{row['energy_in_mask']:>16.3f}{row['n']:>6}")
        return 0
    if not args.files:
        raise ValueError("explain needs scan files, or --evaluate --data DIR.")
    from . import viz
    from .bundle import load_bundle
    from .explain.core import heatmap
    from .io import ScanError, read_scan

    bundle = load_bundle(args.model)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for file in args.files:
        try:
            scan = read_scan(file)
        except ScanError as error:
            print(f"{file}: could not read: {error}")
            continue
        result = heatmap(bundle, scan.image, args.method, args.target)
        target = out / f"{Path(file).name.split('.')[0]}_{args.method}.png"
        target.write_bytes(viz.to_png_bytes(viz.side_by_side(scan.image, viz.overlay(scan.image, result.map))))
        note = " (empty map: no evidence for this target)" if result.empty else ""
        print(f"{file}: {result.method_label} for '{result.target}' -> {target}{note}")
    return 0


def _calibrate(args) -> int:
    from .calibration import calibrate_bundle

    calibrate_bundle(args.model, args.data, log=lambda line: print(line, flush=True))
    return 0


def _guard(args) -> int:
    from .guard import fit_guard_for_bundle

    fit_guard_for_bundle(args.model, args.data, args.acceptance, per_kind=args.per_kind,
                         log=lambda line: print(line, flush=True))
    return 0


def _bench(args) -> int:
    from .bench import BenchConfig, format_report, run_bench, to_json

    config = BenchConfig(detector=args.detector, classifier=args.classifier, quick=args.quick)
    results = run_bench(config, log=lambda line: print(f"bench: {line}", file=sys.stderr, flush=True))
    if args.compare:
        from .peer import compare_with_detect_tumor

        results["compare"] = compare_with_detect_tumor(config, log=lambda line: print(f"bench: {line}", file=sys.stderr))
    if args.json:
        print(to_json(results))
    else:
        print(format_report(results))
    return 0


def _engine(args) -> int:
    from .bundle import load_bundle
    from .engine import build_engine

    path = build_engine(load_bundle(args.model), args.quantization)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MB, quantization {args.quantization}) and recorded it in the card")
    return 0


def _export(args) -> int:
    from .export import export_bundle

    target = export_bundle(args.model, args.format, args.out)
    print(f"wrote {target}")
    return 0


def _import(args) -> int:
    from .onnx_import import import_model

    for path in import_model(args.source, args.out):
        print(f"wrote {path} and {Path(path).with_suffix('.keras').name}")
    return 0


def _verdict_line(record: dict) -> str:
    if not record["ok"]:
        return f"{record['file']}: could not read: {record['error']}"
    if record.get("brain_mri") is False and record["tumor"] is None:
        return f"{record['file']}: no verdict: {record['note']}"
    verdict = "TUMOR" if record["tumor"] else "no tumor"
    kind = f", type {record['type']}" if record["type"] else ""
    return f"{record['file']}: {verdict} (P(tumor) {record['tumor_probability']:.3f} at threshold {record['threshold']:.3f}{kind})"


def _summary(report: dict) -> str:
    images = "validation images" if report.get("split") == "validation" else "held-out images"
    if report.get("task") == "detect":
        lines = [f"detector on {report['n']} {images} at threshold {report['threshold']:.4f}:"]
        for name in ("recall", "specificity", "precision", "accuracy", "f1", "roc_auc"):
            low, high = report.get(f"{name}_ci") or (None, None)
            interval = f" (95% CI {low:.3f}-{high:.3f})" if low is not None and high is not None else ""
            value = report.get(name)
            lines.append(f"  {name:<12} {value:.4f}{interval}" if value is not None else f"  {name:<12} n/a")
        return "\n".join(lines + _breakdown_lines(report))
    lines = [f"classifier on {report['n']} {images}: accuracy {report['accuracy']:.4f}, "
             f"macro F1 {report['macro_f1']:.4f}"]
    for name, values in report.get("per_class", {}).items():
        lines.append(f"  {name:<11} precision {values['precision'] or 0:.3f} recall {values['recall'] or 0:.3f} "
                     f"f1 {values['f1'] or 0:.3f} n={values['support']}")
    return "\n".join(lines + _breakdown_lines(report))


def _by_size_lines(report: dict) -> list[str]:
    by_size = report.get("by_lesion_size")
    if not by_size:
        return []
    lines = [f"{by_size['measure']} by {by_size['size']}:"]
    for row in by_size["bins"]:
        value = "n/a" if row["rate"] is None else f"{row['rate']:.3f} (95% CI {row['rate_ci'][0]:.3f}-{row['rate_ci'][1]:.3f})"
        lines.append(f"  {row['bin']:<8} n={row['n']:<5} {value}")
    return lines


def _breakdown_lines(report: dict) -> list[str]:
    """Everything under the headline figures: the goals, then the breakdowns by lesion size, patient and category."""
    return _goal_lines(report) + _by_size_lines(report) + _by_patient_lines(report) + _by_category_lines(report)


def _goal_lines(report: dict) -> list[str]:
    goals = report.get("goals")
    if not goals:
        return []
    return ["BrainML's goals on the held-out test part: " + "; ".join(
        f"{goal['measure']} {goal['value']:.3f} {'>=' if goal['met'] else '<'} {goal['goal']:g} "
        f"{'met' if goal['met'] else 'MISSED'}" for goal in goals if goal["value"] is not None)]


def _by_patient_lines(report: dict) -> list[str]:
    by_patient = report.get("by_patient")
    if not by_patient:
        return []
    lines = [f"by patient ({by_patient['groups']} patients or near-copy clusters; 95% CI resampling whole ones):"]
    for name, value in by_patient["measures"].items():
        low, high = value["ci"]
        lines.append(f"  {name:<12} {value['rate']:.4f} (95% CI {low:.3f}-{high:.3f}) over {value['n_groups']} groups")
    if by_patient["most_wrong"]:
        lines.append(f"  most wrong answers ({by_patient['wrong']} in all): " + ", ".join(
            f"{row['group']} {row['wrong']} of {row['n']}" for row in by_patient["most_wrong"]))
    return lines


def _by_category_lines(report: dict) -> list[str]:
    lines = []
    for key, title in (("by_contrast", "by MRI contrast:"), ("by_source", "by source:")):
        lines += _category_lines(report.get(key), title)
    return lines


def _category_lines(by_category: dict | None, title: str) -> list[str]:
    if not by_category:
        return []
    lines = [title]
    for i, group in enumerate(by_category["groups"]):
        cells = []
        for measure, rows in by_category["measures"].items():
            row = rows[i]
            cells.append(f"{measure} n/a (n=0)" if row["rate"] is None else f"{measure} {row['rate']:.3f} (n={row['n']})")
        lines.append(f"  {group:<9} " + ", ".join(cells))
    return lines


def _progress_bar(label: str):
    import time

    started = time.time()

    def show(done: int, total: int) -> None:
        if done % 50 and done != total:
            return
        elapsed = time.time() - started
        eta = elapsed / done * (total - done)
        bar = "#" * int(30 * done / total)
        print(f"\r{label} [{bar:<30}] {done}/{total} {done / max(elapsed, 1e-9):.0f}/s ETA {eta:.0f}s", end="", file=sys.stderr, flush=True)

    return show
