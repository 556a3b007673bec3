"""The benchmark runs end to end in --quick mode and emits every field; no timing is asserted here."""

import json

from brainml import cli

REQUIRED = ("cascade_ms_p50", "cascade_heatmap_ms_p50", "faster_scorecam_ms_p50", "throughput_ips", "cold_start_s",
            "slider_ms", "peak_rss_mb", "folder_ips", "volume_s", "volume_read_s", "first_page_s", "throughput_keras_ips")


def test_bench_quick_json_has_every_field(capsys):
    assert cli.main(["bench", "--quick", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    for key in REQUIRED:
        assert isinstance(results[key], (int, float)) and results[key] > 0, key
    for method in ("read_prepare", "detector", "classifier", "cascade", "cascade_keras", "detector_litert",
                   "classifier_litert", "gradcam", "gradcam++", "faster-scorecam", "layercam", "overlay"):
        timing = results["timings_ms"][method]
        assert timing["p95_ms"] >= timing["p50_ms"] > 0
    assert set(results["targets"]) == {"cascade_ms_p50", "cascade_heatmap_ms_p50", "faster_scorecam_ms_p50",
                                       "throughput_ips", "detector_ceiling_ratio", "batch32_ceiling_ratio", "cold_start_s",
                                       "slider_ms", "volume_s", "peak_rss_mb"}
    # The default pair runs on its LiteRT engines; the 8-bit check compares with them on the example slices.
    assert results["engines"] == {"detector": "LiteRT", "classifier": "LiteRT"}
    assert results["int8"]["available"] and results["int8"]["n"] == 40
    assert 0 <= results["int8"]["same_class"] <= 40 and results["volume_shape"] == [176, 256, 256]
    assert results["ceiling"]["matmul_gflops"] > 0 and results["ceiling"]["detector_mflops"] > 0
    assert results["environment"]["cores"] >= 1
