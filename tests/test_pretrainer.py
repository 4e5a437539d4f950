"""The pre-training loop: checkpoints, exact resume after SIGKILL, data parallel = accumulation, run folders."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from electra.checkpoint import resolve_checkpoint
from electra.cli import main as cli
from electra.config import PretrainConfig
from electra.data.prepare import prepare
from electra.errors import ElectraError
from electra.tokenization import train_tokenizer
from electra.training.pretrainer import pretrain

FIXTURES = Path(__file__).parent / "fixtures" / "corpus"
SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    tok = tmp_path_factory.mktemp("tok")
    lines = [x for x in (FIXTURES / "tiny-en.txt").read_text().splitlines() if x.strip()]
    train_tokenizer(lines, tok, vocab_size=600, show_progress=False)
    out = tmp_path_factory.mktemp("data") / "en"
    prepare([FIXTURES / "tiny-en.txt"], tok, out, max_seq_len=64, seed=0, progress=False)
    return out


def config(data_dir: Path, out: Path, **kw) -> PretrainConfig:
    base = dict(data=str(data_dir), out=str(out), max_steps=8, batch_size=4, warmup_steps=2, log_every=1,
                save_every=4, precision="fp32", device="cpu")
    return PretrainConfig.for_preset("tiny", **{**base, **kw})


def losses(run: Path) -> dict[int, float]:
    with open(run / "metrics.csv") as f:
        return {int(r["step"]): float(r["loss"]) for r in csv.DictReader(f)}


def cli_args(data_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["pretrain", "--data", str(data_dir), "--out", str(out), "--preset", "tiny", "--batch-size", "4",
            "--warmup-steps", "2", "--log-every", "1", "--precision", "fp32", "--device", "cpu", "--no-progress",
            *extra]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}


def test_run_writes_checkpoints_metrics_and_curves(data_dir, tmp_path):
    run = pretrain(config(data_dir, tmp_path / "run"), progress=False)
    assert (run / "curves.png").is_file() and (run / "run.json").is_file()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000004", "step-00000008"]
    assert list(losses(run)) == list(range(1, 9))
    ckpt = resolve_checkpoint(run)
    assert ckpt.name == "step-00000008" and (ckpt / "tokenizer" / "vocab.txt").is_file()


def test_refuses_existing_run_without_resume_or_overwrite(data_dir, tmp_path):
    pretrain(config(data_dir, tmp_path / "run", max_steps=2, save_every=2), progress=False)
    with pytest.raises(ElectraError, match="--resume"):
        pretrain(config(data_dir, tmp_path / "run", max_steps=2, save_every=2), progress=False)
    with pytest.raises(ElectraError, match="different config"):
        pretrain(config(data_dir, tmp_path / "run", max_steps=4, lr=1e-2), resume=True, progress=False)
    pretrain(config(data_dir, tmp_path / "run", max_steps=2, save_every=2), overwrite=True, progress=False)


def test_a_run_made_before_a_new_config_field_resumes_with_its_default(data_dir, tmp_path):
    run = pretrain(config(data_dir, tmp_path / "run", max_steps=2, save_every=2), progress=False)
    record = json.loads((run / "run.json").read_text())
    del record["pretrain"]["whole_word_masking"]  # as written before the field existed
    (run / "run.json").write_text(json.dumps(record))
    pretrain(config(data_dir, tmp_path / "run", max_steps=4, save_every=2), resume=True, progress=False)
    assert list(losses(run)) == list(range(1, 5))
    with pytest.raises(ElectraError, match="whole_word_masking False -> True"):
        pretrain(config(data_dir, tmp_path / "run", max_steps=6, whole_word_masking=True), resume=True,
                 progress=False)


def test_vocabulary_mismatch_is_reported(data_dir, tmp_path):
    with pytest.raises(ElectraError, match="does not match the prepared data"):
        pretrain(config(data_dir, tmp_path / "run"), model_overrides={"vocab_size": 999}, progress=False)


def test_resume_continues_exactly(data_dir, tmp_path):
    full = pretrain(config(data_dir, tmp_path / "full", max_steps=8), progress=False)
    part = pretrain(config(data_dir, tmp_path / "part", max_steps=8, save_every=4), progress=False)
    # Drop the last checkpoint, as if the run had died after step 4, then resume.
    import shutil

    shutil.rmtree(part / "checkpoints" / "step-00000008")
    pretrain(config(data_dir, part, max_steps=8), resume=True, progress=False)
    assert losses(part) == losses(full)


@pytest.mark.slow
def test_resume_after_sigkill_gives_the_same_losses(data_dir, tmp_path):
    steps = ["--max-steps", "30", "--save-every", "3"]
    subprocess.run([sys.executable, "-m", "electra", *cli_args(data_dir, tmp_path / "full", *steps)],
                   env=env(), check=True, capture_output=True)
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "electra", *cli_args(data_dir, killed, *steps)], env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (killed / "checkpoints" / "step-00000006" / "manifest.json").exists():
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    done = subprocess.run([sys.executable, "-m", "electra", *cli_args(data_dir, killed, *steps, "--resume")],
                          env=env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "resuming from" in done.stdout
    assert losses(killed) == losses(tmp_path / "full")


def test_corrupt_checkpoint_is_detected_and_the_previous_one_used(data_dir, tmp_path):
    run = pretrain(config(data_dir, tmp_path / "run", max_steps=6, save_every=2), progress=False)
    weights = run / "checkpoints" / "step-00000006" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert resolve_checkpoint(run).name == "step-00000004"
    pretrain(config(data_dir, run, max_steps=6, save_every=2), resume=True, progress=False)
    assert resolve_checkpoint(run).name == "step-00000006"


@pytest.mark.slow
def test_two_processes_match_one_process_with_accumulation(data_dir, tmp_path):
    common = ["--max-steps", "6", "--save-every", "6", "--batch-size", "8"]
    one = subprocess.run([sys.executable, "-m", "electra", *cli_args(data_dir, tmp_path / "one", *common,
                                                                      "--grad-accum", "2")],
                         env=env(), capture_output=True, text=True)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                          "--master-port", "29517", "-m", "electra",
                          *cli_args(data_dir, tmp_path / "two", *common)],
                         env=env(), capture_output=True, text=True)
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert a.keys() == b.keys()
    for step in a:
        assert a[step] == pytest.approx(b[step], rel=1e-5, abs=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("mode", [
    ["--generator-training", "adversarial", "--adversarial-mlm-steps", "2"],
    ["--generator-training", "two-stage", "--generator-size", "1.0"],
    ["--objective", "all-tokens-mlm"],
], ids=["adversarial", "two-stage", "all-tokens-mlm"])
def test_two_processes_match_accumulation_for_the_alternative_modes(data_dir, tmp_path, mode):
    common = ["--max-steps", "6", "--save-every", "6", "--batch-size", "8", *mode]
    one = subprocess.run([sys.executable, "-m", "electra", *cli_args(data_dir, tmp_path / "one", *common,
                                                                      "--grad-accum", "2")],
                         env=env(), capture_output=True, text=True)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                          "--master-port", "29518", "-m", "electra",
                          *cli_args(data_dir, tmp_path / "two", *common)],
                         env=env(), capture_output=True, text=True)
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert a.keys() == b.keys() and len(a) == 6
    for step in a:
        assert a[step] == pytest.approx(b[step], rel=1e-5, abs=1e-5), (step, a, b)


def test_cli_pretrain_and_detect_json(data_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli(cli_args(data_dir, tmp_path / "run", "--max-steps", "2", "--save-every", "2"))
    assert e.value.code == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        cli(["detect", "--model", str(tmp_path / "run"), "--json", "the city is on the river"])
    assert e.value.code == 0
    import json

    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"tokens", "replaced_prob", "sequence_score", "offsets"}
    assert len(out["tokens"]) == len(out["replaced_prob"]) > 0
    assert all(0 <= p <= 1 for p in out["replaced_prob"]) and 0 <= out["sequence_score"] <= 1


def test_cli_fill_needs_a_mask(data_dir, tmp_path, capsys):
    pretrain(config(data_dir, tmp_path / "run", max_steps=2, save_every=2), progress=False)
    with pytest.raises(SystemExit) as e:
        cli(["fill", "--model", str(tmp_path / "run"), "no mask here"])
    assert e.value.code == 2
    assert "[MASK]" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli(["fill", "--model", str(tmp_path / "run"), "the [MASK] is on the river"])
    assert e.value.code == 0


def test_cli_detect_on_prepared_data(data_dir, tmp_path, capsys):
    import json

    pretrain(config(data_dir, tmp_path / "run", max_steps=2, save_every=2), progress=False)
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        cli(["detect", "--model", str(tmp_path / "run"), "--data", str(data_dir), "--batches", "2", "--json"])
    assert e.value.code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tokens"] > 0 and 0 <= report["auc"] <= 1 and 0 < report["replaced_fraction"] < 0.2
    with pytest.raises(SystemExit) as e:
        cli(["detect", "--model", str(tmp_path / "run")])
    assert e.value.code == 2
    assert "either a TEXT or --data" in capsys.readouterr().err


def test_max_minutes_stops_saves_and_resume_finishes(data_dir, tmp_path):
    run = pretrain(config(data_dir, tmp_path / "run", max_minutes=1e-6), progress=False)
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-00000001"]
    pretrain(config(data_dir, tmp_path / "run"), resume=True, progress=False)
    assert resolve_checkpoint(run).name == "step-00000008"
    assert losses(run) == losses(pretrain(config(data_dir, tmp_path / "straight"), progress=False))


def test_a_run_stopped_by_the_clock_before_its_first_log_step_still_logs_its_steps(data_dir, tmp_path):
    run = pretrain(config(data_dir, tmp_path / "run", max_minutes=1e-6, log_every=4), progress=False)
    assert list(losses(run)) == [1]


def test_stop_step_stops_early_on_the_full_schedule(data_dir, tmp_path):
    run = pretrain(config(data_dir, tmp_path / "run", stop_step=3), progress=False)
    assert resolve_checkpoint(run).name == "step-00000003"
    straight = losses(pretrain(config(data_dir, tmp_path / "straight"), progress=False))
    assert losses(run) == {k: v for k, v in straight.items() if k <= 3}


def test_no_train_word_embeddings_keeps_them_at_their_initialisation(data_dir, tmp_path):
    import torch

    from electra.checkpoint import load_checkpoint
    from electra.modeling import Electra

    with pytest.raises(SystemExit) as e:
        cli(cli_args(data_dir, tmp_path / "run", "--max-steps", "4", "--no-train-word-embeddings"))
    assert e.value.code == 0
    trained = load_checkpoint(resolve_checkpoint(tmp_path / "run"))
    torch.manual_seed(0)  # the run's seed, drawn right before the model is built
    initial = Electra(trained.config)
    emb, emb0 = trained.discriminator.encoder.embeddings, initial.discriminator.encoder.embeddings
    assert torch.equal(emb.word_embeddings.weight, emb0.word_embeddings.weight)
    assert not torch.equal(emb.position_embeddings.weight, emb0.position_embeddings.weight)


def _first_step_deltas(run: Path) -> dict[str, object]:
    import torch

    from electra.checkpoint import load_checkpoint
    from electra.modeling import Electra

    trained = load_checkpoint(resolve_checkpoint(run))
    torch.manual_seed(0)  # the run's seed, drawn right before the model is built
    initial = Electra(trained.config)
    now, then = trained.discriminator.encoder.embeddings, initial.discriminator.encoder.embeddings
    return {name: getattr(now, name).weight - getattr(then, name).weight
            for name in ("word_embeddings", "position_embeddings")}


def test_word_embeddings_lr_scale_scales_their_update_and_nothing_else(data_dir, tmp_path):
    import torch

    one_step = dict(max_steps=1, save_every=1, warmup_steps=0)  # (the warm-up's first step has LR 0)
    full = _first_step_deltas(pretrain(config(data_dir, tmp_path / "full", **one_step), progress=False))
    scaled = _first_step_deltas(pretrain(config(data_dir, tmp_path / "scaled", **one_step,
                                                word_embeddings_lr_scale=0.25), progress=False))
    assert full["word_embeddings"].abs().max() > 0
    torch.testing.assert_close(scaled["word_embeddings"], 0.25 * full["word_embeddings"], rtol=1e-3, atol=1e-7)
    torch.testing.assert_close(scaled["position_embeddings"], full["position_embeddings"], rtol=0, atol=0)


def test_word_embeddings_lr_scale_is_refused_when_they_are_held_fixed(data_dir, tmp_path):
    with pytest.raises(ElectraError, match="word_embeddings_lr_scale = 0.1: needs train_word_embeddings"):
        config(data_dir, tmp_path / "run", train_word_embeddings=False, word_embeddings_lr_scale=0.1)
    with pytest.raises(ElectraError, match="word_embeddings_lr_scale"):
        config(data_dir, tmp_path / "run", word_embeddings_lr_scale=0)
