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


def _tiny(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(Electra(ModelConfig.preset("tiny", vocab_size=256)), tmp_path / "tiny",
                           tokenizer_dir=FIX / "finetune_vocab")


@pytest.mark.slow
def test_asr_part_and_report_print_a_final_json_line(tmp_path):
    ckpt = _tiny(tmp_path)
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


def _script(tmp_path, *args):
    env = {**os.environ, "ELECTRA_SHARED_DATA": str(tmp_path / "data"), "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "rescoring.py"), *args], capture_output=True,
                          text=True, env=env, timeout=120)


def test_atis_split_drops_the_test_ids_and_holds_out_dev_lists(tmp_path):
    hp = tmp_path / "data" / "asr-nbest" / "hyporadise"
    hp.mkdir(parents=True)
    lists = json.loads((FIX / "rescoring" / "wsj_head.json").read_text())
    train = [{"id": f"u{i}", **x} for i, x in enumerate(lists * 40)]  # 480 lists
    (hp / "train_atis.json").write_text(json.dumps(train))
    (hp / "test_atis.json").write_text(json.dumps(train[:5]))  # 5 ids shared with train
    run = _script(tmp_path, "asr-reranker", "--out", str(tmp_path / "bench"))
    assert run.returncode == 0, run.stderr[-2000:]
    tr = json.loads((tmp_path / "bench" / "atis-split" / "train.json").read_text())
    dev = json.loads((tmp_path / "bench" / "atis-split" / "dev.json").read_text())
    ids_tr, ids_dev = {x["id"] for x in tr}, {x["id"] for x in dev}
    assert len(dev) == 400 and len(tr) == 480 - 5 - 400 and not ids_tr & ids_dev
    assert not (ids_tr | ids_dev) & {f"u{i}" for i in range(5)}


def test_report_gives_mean_and_sd_over_seed_runs(tmp_path):
    runs = []
    for i, r1 in enumerate((0.50, 0.52, 0.54)):
        d = tmp_path / f"mutual-s{i}"
        d.mkdir()
        (d / "results.json").write_text(json.dumps({"final": {"r1": r1, "r2": 0.7, "mrr": 0.7}}))
        runs.append(str(d))
    (tmp_path / "data").mkdir()
    rep = _script(tmp_path, "report", "--out", str(tmp_path / "bench"), "--finetuned", "m=" + ",".join(runs))
    assert rep.returncode == 0, rep.stderr[-2000:]
    summary = json.loads(rep.stdout.strip().splitlines()[-1])
    assert summary["mutual_finetuned"]["m"]["r1"]["mean"] == pytest.approx(0.52)
    assert summary["mutual_finetuned"]["m"]["r1"]["sd"] == pytest.approx(0.02)
    assert "0.520 ± 0.020" in rep.stdout


@pytest.mark.slow
def test_mt_reranker_part_trains_one_cross_encoder_per_half_and_scores_the_other(tmp_path):
    ckpt = _tiny(tmp_path)
    pair = tmp_path / "data" / "mt" / "wmt21-de-en"
    shutil.copytree(FIX / "rescoring" / "mt", pair)
    (pair / "systems").rename(pair / "system-outputs")
    env = {**os.environ, "ELECTRA_SHARED_DATA": str(tmp_path / "data"), "PYTHONPATH": str(ROOT / "src")}
    out = tmp_path / "bench"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "rescoring.py"), "mt-reranker", "--pairs",
                          "de-en", "--model", f"tiny={ckpt}", "--out", str(out), "--finetune-args",
                          "--epochs 1 --batch-size 6 --quiet"], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    row = json.loads((out / "mt-reranker.json").read_text())["de-en"]["tiny/cross-encoder"]
    assert [f["train_segments"] for f in row["folds"]] == [3, 3] and row["reported_on"].endswith("ref.B.en")
    assert 0 <= row["argmax"]["bleu"] <= 100 and 0 <= row["tuned"]["bleu"] <= 100
    train = out / "mt-folds" / "de-en" / "train-0"  # fold 0 trains on the second half (lines 4-6)
    src = (FIX / "rescoring" / "mt" / "newstest2021.de-en.src.de").read_text().splitlines()
    assert (train / "newstest2021.de-en.src.de").read_text().splitlines() == src[3:]
