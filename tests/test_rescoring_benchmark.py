"""benchmarks/rescoring.py runs end to end on a tiny model and a one-set data folder, and reports its JSON."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from electra.checkpoint import save_checkpoint
from electra.config import ModelConfig
from electra.modeling import Electra

ROOT = Path(__file__).resolve().parents[1]
FIX = Path(__file__).parent / "fixtures"


@pytest.mark.slow
def test_asr_part_and_report_print_a_final_json_line(tmp_path):
    torch.manual_seed(0)
    ckpt = save_checkpoint(Electra(ModelConfig.preset("tiny", vocab_size=256)), tmp_path / "tiny",
                           tokenizer_dir=FIX / "finetune_vocab")
    hp = tmp_path / "data" / "asr-nbest" / "hyporadise"
    hp.mkdir(parents=True)
    shutil.copy(FIX / "rescoring" / "wsj_head.json", hp / "test_wsj_score.json")
    env = {**os.environ, "ELECTRA_SHARED_DATA": str(tmp_path / "data"), "PYTHONPATH": str(ROOT / "src")}
    script = [sys.executable, str(ROOT / "benchmarks" / "rescoring.py")]
    out = tmp_path / "bench"
    run = subprocess.run([*script, "asr", "--sets", "wsj_score", "--model", f"tiny={ckpt}", "--pll-lists", "6",
                          "--out", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    rep = subprocess.run([*script, "report", "--out", str(out)], capture_output=True, text=True, env=env, timeout=60)
    assert rep.returncode == 0, rep.stderr[-2000:]
    summary = json.loads(rep.stdout.strip().splitlines()[-1])
    assert "tiny" in summary["asr"] and "| wsj_score |" in rep.stdout
