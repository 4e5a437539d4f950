"""The deployment benchmarks run end to end at toy sizes and report what they claim (no timing thresholds)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("transformers")

from deploy_fixtures import tiny_models  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def run(script: str, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True, text=True,
                         timeout=600, cwd=ROOT, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    tsv = root / "dev.tsv"
    tsv.write_text("sentence\tlabel\n" + "".join(f"{t}\t{label}\n" for t, label in [
        ("paris is old", "neutral"), ("london and rome", "entailment"), ("the river runs", "contradiction")]))
    (root / "train.tsv").write_text("sentence\tlabel\n" + "".join(  # calibration text of ours_onnx_int8_smooth
        f"{t}\t{label}\n" for t, label in [("a city on a river", "0"), ("rome is old", "1"), ("paris", "0")]))
    return tiny_models(root)["classification"], tsv


@pytest.mark.slow
def test_onnx_inference_reports_every_implementation_and_agreement(run_dir):
    model, tsv = run_dir
    res = run("onnx_inference.py", "--model", str(model), "--tsv", str(tsv), "--rounds", "1", "--b1-reps", "2",
              "--seq", "16", "--batch", "2", "--threads", "1", "--train-limit", "1")
    for name in ("transformers_fp32", "torch_ao_int8", "ort_fp32", "ort_optimized", "ort_int8", "ours_torch_fp32",
                 "ours_torch_int8", "ours_onnx_fp32", "ours_onnx_int8", "ours_onnx_int8_tensor",
                 "ours_onnx_int8_smooth"):
        row = res["implementations"][name]
        assert row["b1_p50_ms"] > 0 and row["b1_p99_ms"] >= row["b1_p50_ms"] and row["seq_per_s"] > 0, name
        assert res["agreement_with_transformers_fp32"][name] >= 0 and name in res["accuracy"]
        assert res["alone_vs_batched_max_logit_diff"][name] >= 0
        if name.startswith("ours_"):
            low, high = row["b1_p50_ratio_vs_ort_int8_p10_p90"]
            assert 0 < low <= row["b1_p50_ratio_vs_ort_int8_paired"] <= high, name
            assert 0 <= row["b1_rounds_at_or_below_ort_int8"] <= 1, name
    assert res["max_abs_logit_diff_vs_transformers"]["ours_onnx_fp32"] <= 1e-4
    assert res["best_ours_b32"].startswith("ours_") and res["omp_wait_policy"] == "PASSIVE"


@pytest.mark.slow
def test_serve_load_runs_ours_and_the_naive_server_side_by_side(run_dir):
    model, tsv = run_dir
    res = run("serve_load.py", "--model", str(model), "--tsv", str(tsv), "--clients", "4", "--seconds", "1",
              "--turns", "1", "--threads", "1")
    for name in ("ours", "naive"):
        s = res["servers"][name]
        assert s["requests"] > 0 and s["errors"] == 0, s["first_errors"]
        assert s["p50_ms"] <= s["p95_ms"] <= s["p99_ms"]
    assert res["throughput_ratio"] > 0 and res["p99_ratio"] > 0
