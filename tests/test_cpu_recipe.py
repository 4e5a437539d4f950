"""benchmarks/cpu_recipe.py: ablation arms at one wall-clock budget, detection and fine-tuning side by side."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from electra.data.prepare import prepare
from electra.tokenization import train_tokenizer

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(__file__).parent / "fixtures" / "corpus" / "tiny-en.txt"
sys.path.insert(0, str(ROOT / "benchmarks"))

import cpu_recipe  # noqa: E402
from cpu_recipe import parse_arm  # noqa: E402


def test_arm_specs_override_pretrain_and_model_fields_with_typed_values():
    name, train, model = parse_arm("deep4x128:lr=0.002:train_word_embeddings=false:num_layers=3")
    assert name == "deep4x128_lr0.002_train_word_embeddingsfalse_num_layers3"
    assert train == {"lr": 0.002, "train_word_embeddings": False} and model["num_layers"] == 3
    assert parse_arm("cpu:init_embeddings=runs/v.txt")[1] == {"preset": "cpu", "init_embeddings": "runs/v.txt"}
    with pytest.raises(SystemExit, match="unknown arm 'huge'"):
        parse_arm("huge")


def test_given_steps_skip_the_probe_and_size_the_schedule_to_them(monkeypatch, tmp_path):
    def no_probe(*a, **k):
        raise AssertionError("probed although --steps was given")

    seen = {}

    def fake_pretrain(cfg, **kw):
        seen["cfg"] = cfg
        return tmp_path

    monkeypatch.setattr(cpu_recipe, "plan_steps", no_probe)
    monkeypatch.setattr(cpu_recipe, "pretrain", fake_pretrain)
    run, steps, tps = cpu_recipe.pretrain_for(60, "d", "h", tmp_path / "arm", {"preset": "cpu"}, {}, 32, 0, steps=28000)
    cfg = seen["cfg"]
    assert (run, steps, tps) == (tmp_path, 28000, 0.0)
    assert (cfg.max_steps, cfg.warmup_steps, cfg.max_minutes) == (28000, 2800, 60)
    assert cfg.train_word_embeddings is False  # the preset still applies


@pytest.mark.slow
def test_cpu_recipe_reports_detection_and_fine_tuning_for_every_arm(tmp_path):
    lines = [x for x in CORPUS.read_text().splitlines() if x.strip()]
    tok = tmp_path / "tok"
    train_tokenizer(lines, tok, vocab_size=400, show_progress=False)
    prepare([CORPUS], tok, tmp_path / "data", max_seq_len=128, seed=0, progress=False)
    glue = tmp_path / "glue" / "SST-2"
    glue.mkdir(parents=True)
    for split, n in (("train", 48), ("dev", 16)):
        rows = [f"the river is {'wide and calm' if i % 2 else 'cold and dark'}\t{i % 2}" for i in range(n)]
        (glue / f"{split}.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "cpu_recipe.py"), "--data", str(tmp_path / "data"),
                          "--held-out", str(tmp_path / "data"), "--arms", "tiny,cpu", "--minutes", "0.05",
                          "--batch-size", "4", "--train-limit", "48", "--seeds", "1", "--eval-batches", "2",
                          "--glue", str(tmp_path / "glue"), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    arms = {r["arm"]: r for r in res["arms"]}
    assert set(arms) == {"tiny", "cpu"}
    for r in arms.values():
        assert r["steps_done"] > 0 and 0 <= r["auc_own"] <= 1 and 0 <= r["auc_unigram"] <= 1
        assert 0 <= r["pretrained"]["sst2"] <= 1 and 0 <= r["random"]["sst2"] <= 1
    assert arms["cpu"]["random"] == arms["tiny"]["random"]  # one random arm per shape
    assert json.loads((tmp_path / "out" / "results.json").read_text())[0]["arm"] == "tiny"
