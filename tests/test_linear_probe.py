"""benchmarks/linear_probe.py: frozen-feature probes of a checkpoint on a GLUE-style TSV."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from electra.checkpoint import save_checkpoint
from electra.config import ModelConfig
from electra.modeling import Electra
from electra.tokenization import train_tokenizer

pytest.importorskip("sklearn")
ROOT = Path(__file__).resolve().parents[1]
WORDS = {1: ["good", "great", "fine", "lovely"], 0: ["bad", "awful", "poor", "dull"]}


def write_split(path: Path, n: int) -> None:
    lines = ["sentence\tlabel"]
    for i in range(n):
        label = i % 2
        lines.append(f"the film was {WORDS[label][i % 4]} and long\t{label}")
    path.write_text("\n".join(lines) + "\n")


def test_linear_probe_reports_both_probes_and_the_cls_cosine_per_checkpoint(tmp_path):
    import torch

    data = tmp_path / "glue"
    data.mkdir()
    write_split(data / "train.tsv", 40)
    write_split(data / "dev.tsv", 16)
    tok = tmp_path / "tok"
    train_tokenizer([line.split("\t")[0] for line in (data / "train.tsv").read_text().splitlines()[1:]] * 5, tok,
                    vocab_size=120, show_progress=False)
    torch.manual_seed(0)
    cfg = ModelConfig.preset("tiny", vocab_size=120)
    ckpt = save_checkpoint(Electra(cfg), tmp_path / "ckpt", tokenizer_dir=tok)
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "linear_probe.py"), str(ckpt), str(ckpt),
                          "--data", str(data), "--train", "40", "--threads", "1"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["train"] == 40 and len(result["rows"]) == 2
    a, b = result["rows"]
    assert a == b  # deterministic
    assert 0.5 <= a["probe_mean"] <= 1.0 and 0.0 <= a["probe_cls"] <= 1.0 and -1.0 <= a["cls_cosine"] <= 1.0
