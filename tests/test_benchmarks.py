"""The speed benchmarks run end to end and report what they claim (tiny sizes; no timing thresholds)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import needs_native_bf16

pytest.importorskip("transformers")
ROOT = Path(__file__).resolve().parents[1]
TINY = ["--preset", "tiny", "--batch", "4", "--seq", "32", "--steps", "2", "--warmup", "1",
        "--skip", "tuned_reference", "--ceiling-size", "256"]
KEYS = ("ours_tokens_per_s", "reference_tokens_per_s", "ours_mfu", "ours_peak_mem_mb", "reference_peak_mem_mb",
        "ours_over_reference", "ours_over_reference_paired")


def run_benchmark(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "pretrain_throughput.py"), *args],
                          capture_output=True, text=True, timeout=600, cwd=ROOT, env={**os.environ, **(env or {})})


def check_report(out: subprocess.CompletedProcess, precision: str) -> None:
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["precision"] == precision and result["flops_per_step"] > 0
    assert result[f"ceiling_{precision}_gflops"] > 0
    for key in KEYS:
        assert result[key] > 0, key


@pytest.mark.slow
def test_pretrain_throughput_fp32_reports_every_key():
    check_report(run_benchmark(*TINY, "--precision", "fp32"), "fp32")


@pytest.mark.slow
@needs_native_bf16
def test_pretrain_throughput_bf16_reports_every_key():
    check_report(run_benchmark(*TINY, "--precision", "bf16"), "bf16")


def test_pretrain_throughput_fp32_measures_only_the_fp32_ceiling(monkeypatch, capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import pretrain_throughput

    dtypes = []
    monkeypatch.setattr(pretrain_throughput, "matmul_ceiling", lambda dtype, *a, **k: dtypes.append(dtype) or 100.0)
    monkeypatch.setattr(pretrain_throughput, "_step_peak_mb", lambda name, args: 1.0)
    pretrain_throughput.main([*TINY, "--precision", "fp32", "--steps", "1", "--system-malloc"])
    assert dtypes == [torch.float32]
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "ceiling_bf16_gflops" not in result and result["ceiling_fp32_gflops"] == 100.0


def test_pretrain_throughput_refuses_emulated_bf16_in_one_line():
    out = run_benchmark(*TINY, "--precision", "bf16", env={"ELECTRA_CPU_BF16": "emulated"})
    assert out.returncode != 0 and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "no native bf16" in lines[0] and "--force-emulated-bf16" in lines[0]


def test_harness_table_statistics_and_alternation():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import harness

    assert harness.table([("name", "<6"), ("x/s", ">7.1f"), ("vs", ">6")], [("ours", 12.34, "1.50x")]) == (
        "name      x/s    vs\nours     12.3 1.50x")
    assert harness.table([("a", "<3")], [("b",)], sep=" ", header=False) == "b  "
    assert harness.percentile([4, 1, 3, 2], 0.5) == 3 and harness.percentile([4, 1, 3, 2], 0.99) == 4
    assert harness.percentile([], 0.5) != harness.percentile([], 0.5)  # NaN
    assert harness.paired([2.0, 9.0, 3.0], [1.0, 0.0, 1.0]) == 2.5  # per-round ratios; a zero denominator skipped
    assert harness.named("small=runs/a=b") == ("small", "runs/a=b")
    assert harness.named("runs/tiny") == ("tiny", "runs/tiny") and harness.named("c", "pre") == ("pre", "c")
    calls = []
    times = harness.alternate({"a": lambda r: calls.append(("a", r)), "b": lambda r: calls.append(("b", r))}, 2,
                              reverse_odd=True)
    assert calls == [("a", 0), ("b", 0), ("b", 1), ("a", 1)]
    assert {k: len(v) for k, v in times.items()} == {"a": 2, "b": 2} and min(times["a"] + times["b"]) >= 0
    assert harness.last_json('noise\n{"k": 1}\n') == {"k": 1}
