"""The replacement curriculum: generator samples drawn at a temperature that falls to the paper's during the run."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from electra.config import PretrainConfig
from electra.data.prepare import prepare
from electra.errors import ElectraError
from electra.pretraining import annealed_temperature
from electra.tf.cli import check_pretrain_options
from electra.tokenization import train_tokenizer
from electra.training.pretrainer import pretrain

CORPUS = Path(__file__).parent / "fixtures" / "corpus" / "tiny-en.txt"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    tok = tmp_path_factory.mktemp("tok")
    lines = [x for x in CORPUS.read_text().splitlines() if x.strip()]
    train_tokenizer(lines, tok, vocab_size=600, show_progress=False)
    out = tmp_path_factory.mktemp("data") / "en"
    prepare([CORPUS], tok, out, max_seq_len=64, seed=0, progress=False)
    return out


def run(data_dir: Path, out: Path, **kw) -> list[dict[str, str]]:
    cfg = PretrainConfig.for_preset("tiny", data=str(data_dir), out=str(out), max_steps=8, batch_size=4,
                                    warmup_steps=2, log_every=1, save_every=8, precision="fp32", device="cpu", **kw)
    with open(pretrain(cfg, progress=False) / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_annealed_temperature_falls_linearly_from_start_to_the_final_temperature():
    assert annealed_temperature(0, 100, 3.0, 1.0) == 3.0
    assert annealed_temperature(50, 100, 3.0, 1.0) == pytest.approx(2.0)
    assert annealed_temperature(100, 100, 3.0, 1.0) == 1.0
    assert annealed_temperature(40, 100, 0.0, 1.5) == 1.5  # start 0: no curriculum


def test_temperature_start_anneals_the_logged_sampling_temperature(data_dir, tmp_path):
    rows = run(data_dir, tmp_path / "run", temperature_start=3.0)
    temps = [float(r["temperature"]) for r in rows]
    # Logged after each step: step k (1-based) sampled at 3 - 2 * (k - 1) / 8.
    assert temps == pytest.approx([3.0 - 2.0 * k / 8 for k in range(8)])


def test_temperature_start_changes_the_replacements_the_discriminator_sees(data_dir, tmp_path):
    plain = run(data_dir, tmp_path / "plain")
    annealed = run(data_dir, tmp_path / "annealed", temperature_start=3.0)
    assert "temperature" not in plain[0]
    assert [r["disc_loss"] for r in plain] != [r["disc_loss"] for r in annealed]
    assert [r["mlm_loss"] for r in plain][0] == [r["mlm_loss"] for r in annealed][0]  # same generator at step 1


def test_temperature_start_is_refused_with_compile_and_when_negative():
    with pytest.raises(ElectraError, match="temperature_start = 2.0: not with compile"):
        PretrainConfig.for_preset("tiny", temperature_start=2.0, compile=True)
    with pytest.raises(ElectraError, match="temperature_start"):
        PretrainConfig.for_preset("tiny", temperature_start=-1.0)


def test_keras_trainer_refuses_temperature_start():
    with pytest.raises(ElectraError, match="--framework tf does not support temperature_start"):
        check_pretrain_options(PretrainConfig.for_preset("tiny", temperature_start=2.0))
