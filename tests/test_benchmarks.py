"""The speed benchmarks run end to end and report what they claim (tiny sizes; no timing thresholds)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_pretrain_throughput_reports_every_key(precision):
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "pretrain_throughput.py"), "--preset", "tiny", "--batch", "4",
         "--seq", "32", "--steps", "2", "--warmup", "1", "--precision", precision, "--skip", "tuned_reference"],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["precision"] == precision and result["flops_per_step"] > 0
    for key in ("ours_tokens_per_s", "reference_tokens_per_s", "ours_mfu", "ours_peak_mem_mb",
                "reference_peak_mem_mb", "ours_over_reference", "ours_over_reference_paired"):
        assert result[key] > 0, key
