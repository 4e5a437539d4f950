"""benchmarks/gpu_pretrain.sh --dry-run: the one-try GPU script run on the CPU end to end, and its unpacking."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_pretrain_dry_run_writes_a_report_and_at_most_8_small_files(tmp_path):
    out = tmp_path / "out"
    res = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_pretrain.sh"), str(out), "--dry-run"],
                         capture_output=True, text=True, env={**os.environ, "PYTHON": sys.executable}, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    files = list(out.iterdir())
    assert len(files) <= 8 and all(f.stat().st_size <= 16 * 2**20 for f in files)
    report = json.loads((out / "report.json").read_text())
    assert json.loads(res.stdout.strip().splitlines()[-1]) == report
    assert report["throughput"]["ours_tokens_per_s"] > 0 and report["throughput"]["ours_over_reference"] > 0
    assert report["pretrain"]["steps"] == 20 and 0 <= report["detection"]["unigram"]["auc"] <= 1
    assert (out / "log.txt").read_text().count("[gpu_pretrain") >= 3

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from electra.checkpoint import load_checkpoint
    from gpu_pretrain import unpack

    ckpt = unpack(out, tmp_path / "back")
    model = load_checkpoint(ckpt)
    assert (ckpt / "tokenizer" / "tokenizer.json").is_file()
    assert all(torch.equal(p, p.to(torch.bfloat16).float()) for p in model.parameters())  # bf16-rounded weights


def test_gpu_pretrain_without_out_prints_usage():
    res = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_pretrain.sh")], capture_output=True, text=True)
    assert res.returncode == 2 and "usage:" in res.stderr
