"""benchmarks/label_curve.py: pre-trained vs random init at several training-set sizes of one GLUE task."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from electra.config import PretrainConfig
from electra.data.prepare import prepare
from electra.tokenization import train_tokenizer
from electra.training.pretrainer import pretrain

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(__file__).parent / "fixtures" / "corpus" / "tiny-en.txt"
sys.path.insert(0, str(ROOT / "benchmarks"))

from label_curve import parse_limits  # noqa: E402


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path]:
    """A 2-step tiny checkpoint and a 48-sentence SST-2 folder."""
    tmp = tmp_path_factory.mktemp("curve")
    lines = [x for x in CORPUS.read_text().splitlines() if x.strip()]
    train_tokenizer(lines, tmp / "tok", vocab_size=400, show_progress=False)
    prepare([CORPUS], tmp / "tok", tmp / "data", max_seq_len=64, seed=0, progress=False)
    run = pretrain(PretrainConfig.for_preset("tiny", data=str(tmp / "data"), out=str(tmp / "run"), max_steps=2,
                                             batch_size=4, warmup_steps=1, precision="fp32", device="cpu"),
                   progress=False)
    glue = tmp / "glue" / "SST-2"
    glue.mkdir(parents=True)
    for split, n in (("train", 48), ("dev", 16)):
        rows = [f"the river is {'wide and calm' if i % 2 else 'cold and dark'}\t{i % 2}" for i in range(n)]
        (glue / f"{split}.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    return run, tmp / "glue"


def curve(run: Path, glue: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "label_curve.py"), "--model", str(run),
                           "--glue", str(glue), "--seeds", "1", "--precision", "fp32", "--out", str(out), *extra],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)


def test_limits_parse_sizes_and_all_and_refuse_anything_else():
    assert parse_limits("250, 1000,all") == [250, 1000, None]
    for bad in ("0", "-5", "1e3", "some"):
        with pytest.raises(SystemExit, match="--limits"):
            parse_limits(bad)


@pytest.mark.slow
def test_label_curve_fine_tunes_both_arms_at_every_size_and_draws_the_curve(setup, tmp_path):
    run, glue = setup
    out = curve(run, glue, tmp_path / "out", "--limits", "16,all", "--plot", str(tmp_path / "curve.png"))
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert [p["examples"] for p in res["points"]] == [16, 48]  # 'all' is the whole split
    for p in res["points"]:
        for arm in ("pretrained", "random"):
            assert 0 <= p[arm]["min"] <= p[arm]["median"] <= p[arm]["max"] <= 1
    assert (tmp_path / "out" / "16.json").is_file() and (tmp_path / "out" / "all.json").is_file()
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_label_curve_reuses_a_kept_size_instead_of_running_it_again(setup, tmp_path):
    run, glue = setup
    kept = {"benchmark": "finetune_glue", "train_limit": 16, "results": {"sst2": {
        "pretrained": {"acc": 0.75, "spread": {}}, "random": {"acc": 0.5, "spread": {}}}}}
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "16.json").write_text(json.dumps(kept))
    out = curve(run, glue, tmp_path / "out", "--limits", "16")
    assert out.returncode == 0, out.stderr[-3000:]
    point = json.loads(out.stdout.strip().splitlines()[-1])["points"][0]
    assert point["pretrained"] == {"median": 0.75, "min": 0.75, "max": 0.75} and point["random"]["median"] == 0.5
    assert not (tmp_path / "out" / "16").exists()  # finetune_glue.py never ran
    assert "+0.250" in out.stdout
