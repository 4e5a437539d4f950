"""The alternative objectives inside the pre-training loop: checkpoints, resume, the encoder to fine-tune."""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import pytest
import torch

from electra.checkpoint import load_encoder_for_finetuning, resolve_checkpoint
from electra.cli import main as cli
from electra.config import PretrainConfig
from electra.data.prepare import prepare
from electra.tokenization import train_tokenizer
from electra.training.pretrainer import pretrain

FIXTURES = Path(__file__).parent / "fixtures" / "corpus"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    tok = tmp_path_factory.mktemp("tok")
    lines = [x for x in (FIXTURES / "tiny-en.txt").read_text().splitlines() if x.strip()]
    train_tokenizer(lines, tok, vocab_size=600, show_progress=False)
    out = tmp_path_factory.mktemp("data") / "en"
    prepare([FIXTURES / "tiny-en.txt"], tok, out, max_seq_len=64, seed=0, progress=False)
    return out


def config(data_dir: Path, out: Path, **kw) -> PretrainConfig:
    base = dict(data=str(data_dir), out=str(out), max_steps=4, batch_size=4, warmup_steps=1, log_every=1,
                save_every=2, precision="fp32", device="cpu")
    return PretrainConfig.for_preset("tiny", **{**base, **kw})


def rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_two_stage_run_switches_stage_and_copies_weights(data_dir, tmp_path):
    run = pretrain(config(data_dir, tmp_path / "run", generator_training="two-stage", two_stage_generator_steps=2),
                   model_overrides={"generator_size": 1.0}, progress=False)
    stages = [float(r["stage"]) for r in rows(run)]
    assert stages == [1, 1, 2, 2]
    assert all(math.isfinite(float(r["loss"])) for r in rows(run))


@pytest.mark.slow
def test_adversarial_run_resumes_exactly_with_its_baseline(data_dir, tmp_path):
    cfg = config(data_dir, tmp_path / "a", generator_training="adversarial", adversarial_baseline="mean")
    whole = pretrain(cfg, progress=False)
    expected = rows(whole)
    shutil.rmtree(whole / "checkpoints" / "step-00000004")  # as if killed after the step-2 checkpoint
    resumed = pretrain(cfg, resume=True, progress=False)
    assert (resolve_checkpoint(resumed) / "objective.safetensors").is_file()
    assert [r["loss"] for r in expected] == [r["loss"] for r in rows(resumed)]
    assert {"gen_entropy", "mlm_accuracy", "reward"} <= set(expected[0])


@pytest.mark.slow
def test_replace_mlm_checkpoint_finetunes_the_discriminator_sized_network(data_dir, tmp_path):
    run = pretrain(config(data_dir, tmp_path / "run", objective="replace-mlm"), progress=False)
    model_cfg, encoder, tok = load_encoder_for_finetuning(run)
    assert encoder.config.hidden_size == model_cfg.discriminator.hidden_size
    assert model_cfg.generator.hidden_size < model_cfg.discriminator.hidden_size  # the sampler stays small
    from electra.checkpoint import load_checkpoint

    model = load_checkpoint(resolve_checkpoint(run))
    assert all(torch.equal(a, b) for a, b in zip(encoder.state_dict().values(),
                                                   model.discriminator.encoder.state_dict().values()))


@pytest.mark.slow
def test_mlm_run_resumes_exactly_and_finetunes_the_discriminator_sized_generator(data_dir, tmp_path):
    cfg = config(data_dir, tmp_path / "m", objective="mlm")
    whole = pretrain(cfg, progress=False)
    expected = rows(whole)
    shutil.rmtree(whole / "checkpoints" / "step-00000004")  # as if killed after the step-2 checkpoint
    resumed = pretrain(cfg, resume=True, progress=False)
    assert not (resolve_checkpoint(resumed) / "objective.safetensors").exists()  # MLM adds no parameters
    assert [r["loss"] for r in expected] == [r["loss"] for r in rows(resumed)]
    assert {"mlm_loss", "mlm_accuracy"} <= set(expected[0]) and "disc_loss" not in expected[0]
    model_cfg, encoder, _ = load_encoder_for_finetuning(resumed)
    assert encoder.config == model_cfg.generator
    assert model_cfg.generator.hidden_size == model_cfg.discriminator.hidden_size


def test_cli_two_stage_with_a_small_generator_is_a_clear_error(data_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli(["pretrain", "--data", str(data_dir), "--out", str(tmp_path / "r"), "--preset", "tiny",
             "--generator-training", "two-stage", "--max-steps", "2", "--device", "cpu", "--no-progress"])
    assert e.value.code == 2
    assert "--generator-size 1.0" in capsys.readouterr().err


def test_cli_init_embeddings_reports_coverage_and_sets_the_vectors(data_dir, tmp_path, capsys):
    from electra.checkpoint import load_checkpoint
    from electra.tokenization import load_tokenizer, vocab_tokens

    vocab = vocab_tokens(load_tokenizer(data_dir / "tokenizer"))
    words = [t for t in vocab if t.isalpha()][:50]
    lines = [f"{w} " + " ".join(str((i * 7 + j) % 11 / 10 - 0.5) for j in range(20)) for i, w in enumerate(words)]
    (tmp_path / "glove.txt").write_text("\n".join(lines) + "\n")
    cli_args = ["pretrain", "--data", str(data_dir), "--out", str(tmp_path / "r"), "--preset", "tiny",
                "--batch-size", "4", "--max-steps", "1", "--lr", "1e-12", "--precision", "fp32", "--device", "cpu",
                "--no-progress", "--init-embeddings", str(tmp_path / "glove.txt")]
    with pytest.raises(SystemExit) as e:
        cli(cli_args)
    assert e.value.code == 0
    assert "init-embeddings: 50 of" in capsys.readouterr().out
    table = load_checkpoint(resolve_checkpoint(tmp_path / "r")).discriminator.encoder.embeddings.word_embeddings
    w0, w1 = table.weight[vocab.index(words[0])], table.weight[vocab.index(words[11])]
    assert torch.allclose(w0, w1)  # rows 0 and 11 of the file are equal vectors (period 11)
