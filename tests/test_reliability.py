"""Reliability: every option validated at the boundary, resumable fine-tuning, and faults while writing.

The four cases of issue 20 (a negative learning rate, a mask probability above 1, an export onto an existing
file, a fine-tuning run that could not resume) each have a test here. Full disks are simulated with a file-size
limit (RLIMIT_FSIZE, SIGXFSZ ignored so writes fail with EFBIG) in a subprocess.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import electra.tasks.runner as runner
from electra.checkpoint import find_latest_checkpoint, save_checkpoint, verify_checkpoint
from electra.cli import main
from electra.config import EncoderConfig, ModelConfig, PretrainConfig
from electra.data.prepare import prepare
from electra.errors import ElectraError
from electra.modeling import Electra
from electra.tasks.classification import TaskOptions
from electra.tasks.qa import QAParams, finetune_qa
from electra.tasks.runner import FinetuneConfig
from electra.tasks.tagging import TagParams, finetune_tagging
from electra.tokenization import train_tokenizer
from qa_fixtures import CITIES, COUNTRIES, FILLER, tiny_checkpoint, toy_squad, write_json

FIXTURES = Path(__file__).parent / "fixtures"
SRC = Path(__file__).resolve().parents[1] / "src"


def run(argv, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return e.value.code, out, err


def one_line_error(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("electra: error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    tok = tmp_path_factory.mktemp("tok")
    lines = [x for x in (FIXTURES / "corpus" / "tiny-en.txt").read_text().splitlines() if x.strip()]
    train_tokenizer(lines, tok, vocab_size=600, show_progress=False)
    out = tmp_path_factory.mktemp("data") / "en"
    prepare([FIXTURES / "corpus" / "tiny-en.txt"], tok, out, max_seq_len=64, seed=0, progress=False)
    return out


def pretrain_args(data: Path, out: Path, *extra) -> list[str]:
    return ["pretrain", "--data", data, "--out", out, "--preset", "tiny", "--batch-size", "4", "--warmup-steps", "1",
            "--precision", "fp32", "--device", "cpu", "--no-progress", *extra]


# ---- the four cases of the issue ------------------------------------------------------------------------
def test_pretrain_refuses_a_negative_learning_rate(data_dir, tmp_path, capsys):
    code, _, err = run(pretrain_args(data_dir, tmp_path / "run", "--lr", "-1"), capsys)
    assert code == 2 and "lr = -1.0: expected a number > 0" in one_line_error(err)
    assert not (tmp_path / "run").exists()


def test_pretrain_refuses_a_mask_probability_above_one(data_dir, tmp_path, capsys):
    code, _, err = run(pretrain_args(data_dir, tmp_path / "run", "--mask-prob", "1.5"), capsys)
    assert code == 2 and "mask_prob = 1.5: expected a number in (0, 1)" in one_line_error(err)


def test_export_onto_an_existing_file_is_a_one_line_error(tmp_path, capsys):
    torch.manual_seed(0)
    save_checkpoint(Electra(ModelConfig.preset("tiny", vocab_size=300)), tmp_path / "ckpt")
    target = tmp_path / "some-file.txt"
    target.write_text("keep me")
    code, _, err = run(["export", "--checkpoint", tmp_path / "ckpt", "--format", "hf", "--out", target], capsys)
    assert code == 2 and "exists and is not a folder" in one_line_error(err)
    assert target.read_text() == "keep me"


def custom_data(folder: Path, n_train: int = 24, n_dev: int = 8) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("dev", n_dev)):
        rows = ["a\tb\ty"]
        for _ in range(n):
            pos = rng.random() < 0.5
            rows.append(f"the film is {'good' if pos else 'bad'}\tthe story\t{'pos' if pos else 'neg'}")
        (folder / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    return folder


@pytest.fixture(scope="module")
def cls_checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("cls") / "tiny"
    return save_checkpoint(Electra(ModelConfig.preset("tiny", vocab_size=256)), path,
                           tokenizer_dir=FIXTURES / "finetune_vocab")


def interrupt_after(monkeypatch, steps: int) -> None:
    """The next fine-tuning run dies (KeyboardInterrupt) when it starts step ``steps + 1``."""
    calls = {"n": 0}
    original = runner.lr_multiplier

    def dying(step, total, warmup):
        calls["n"] += 1
        if calls["n"] > steps:
            raise KeyboardInterrupt
        return original(step, total, warmup)

    monkeypatch.setattr(runner, "lr_multiplier", dying)


def same_run(a: Path, b: Path) -> None:
    """The same best model (bytes), results and training curve."""
    assert (a / "best" / "model.safetensors").read_bytes() == (b / "best" / "model.safetensors").read_bytes()
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (a, b))
    assert (ra["best"], ra["best_step"], ra["final"], ra["steps"]) == (rb["best"], rb["best_step"], rb["final"],
                                                                      rb["steps"])
    losses = [[r.split(",")[:2] for r in (d / "metrics.csv").read_text().splitlines()] for d in (a, b)]
    assert losses[0] == losses[1]


def test_finetune_resume_after_an_interruption_gives_the_same_model(cls_checkpoint, tmp_path, monkeypatch, capsys):
    data = custom_data(tmp_path / "data")
    args = ["finetune", "--task", "custom", "--text-fields", "a,b", "--label-field", "y", "--model", cls_checkpoint,
            "--data", data, "--max-steps", "7", "--batch-size", "8", "--lr", "1e-3", "--save-every", "2", "--quiet",
            "--device", "cpu"]
    assert run([*args, "--out", tmp_path / "full"], capsys)[0] == 0
    with monkeypatch.context() as m:
        interrupt_after(m, 5)
        assert run([*args, "--out", tmp_path / "killed"], capsys)[0] == 130
    assert find_latest_checkpoint(tmp_path / "killed").name == "step-00000004"
    code, _, err = run([*args, "--out", tmp_path / "killed", "--resume"], capsys)
    assert code == 0, err
    same_run(tmp_path / "full", tmp_path / "killed")


def test_finetune_resume_with_other_options_is_refused(cls_checkpoint, tmp_path, capsys):
    data = custom_data(tmp_path / "data")
    args = ["finetune", "--task", "custom", "--text-fields", "a,b", "--label-field", "y", "--model", cls_checkpoint,
            "--data", data, "--max-steps", "2", "--batch-size", "8", "--quiet", "--device", "cpu",
            "--out", tmp_path / "run"]
    assert run(args, capsys)[0] == 0
    code, _, err = run([*args, "--resume", "--lr", "5e-3"], capsys)
    assert code == 2 and "--resume with different options" in one_line_error(err) and "lr" in err


@pytest.fixture(scope="module")
def span_checkpoint(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("span"))


FAST = dict(lr=1e-3, max_steps=5, batch_size=8, save_every=2, progress=False, device="cpu", tensorboard=False)


def test_qa_finetune_resumes_to_the_same_model(span_checkpoint, tmp_path, monkeypatch):
    data = write_json(tmp_path / "all.json", toy_squad(6, 3))
    params = lambda out: QAParams("squad1", str(span_checkpoint), str(out), str(data), dev_fraction=0.3,  # noqa: E731
                                  max_seq_length=48, doc_stride=16)
    finetune_qa(params(tmp_path / "full"), FinetuneConfig(**FAST))
    with monkeypatch.context() as m:
        interrupt_after(m, 3)
        with pytest.raises(KeyboardInterrupt):
            finetune_qa(params(tmp_path / "killed"), FinetuneConfig(**FAST))
    finetune_qa(params(tmp_path / "killed"), FinetuneConfig(**FAST), resume=True)
    same_run(tmp_path / "full", tmp_path / "killed")


def test_tagging_finetune_resumes_to_the_same_model(span_checkpoint, tmp_path, monkeypatch):
    rows = []
    for i in range(30):
        rows += [f"{CITIES[i % 12]} B-LOC", f"{FILLER[i % 14]} O", f"{COUNTRIES[i % 12]} B-LOC", ""]
    (tmp_path / "train.txt").write_text("\n".join(rows))
    (tmp_path / "dev.txt").write_text("\n".join(rows[:24]))
    params = lambda out: TagParams("tags", str(span_checkpoint), str(out), str(tmp_path / "train.txt"),  # noqa: E731
                                   str(tmp_path / "dev.txt"), max_seq_length=16)
    config = dict(FAST, eval_every=2)
    finetune_tagging(params(tmp_path / "full"), FinetuneConfig(**config))
    with monkeypatch.context() as m:
        interrupt_after(m, 3)
        with pytest.raises(KeyboardInterrupt):
            finetune_tagging(params(tmp_path / "killed"), FinetuneConfig(**config))
    finetune_tagging(params(tmp_path / "killed"), FinetuneConfig(**config), resume=True)
    same_run(tmp_path / "full", tmp_path / "killed")


# ---- validation at the boundary ---------------------------------------------------------------------------
@pytest.mark.parametrize(("make", "field", "value", "expected"), [
    (lambda **kw: PretrainConfig.for_preset("tiny", **kw), "batch_size", 0, "a number >= 1"),
    (lambda **kw: PretrainConfig.for_preset("tiny", **kw), "adam_beta2", 1.0, "in [0, 1)"),
    (lambda **kw: PretrainConfig.for_preset("tiny", **kw), "lr", float("nan"), "> 0"),
    (lambda **kw: PretrainConfig.for_preset("tiny", **kw), "precision", "fp16", "one of 'auto', 'fp32', 'bf16'"),
    (lambda **kw: PretrainConfig.for_preset("tiny", **kw), "save_every", True, "must be int"),
    (lambda **kw: FinetuneConfig(**kw), "warmup_fraction", 1.0, "in [0, 1)"),
    (lambda **kw: FinetuneConfig(**kw), "layerwise_decay", 0.0, "in (0, 1] or none"),
    (lambda **kw: FinetuneConfig(**kw), "device", "gpu", "auto, cpu, cuda or cuda:N"),
    (lambda **kw: TaskOptions(**kw), "token_dropout", 1.0, "in [0, 1)"),
    (lambda **kw: EncoderConfig(**kw), "hidden_dropout", -0.1, "in [0, 1)"),
    (lambda **kw: ModelConfig.preset("tiny", **kw), "generator_size", 0.0, "in (0, 1]"),
])
def test_each_option_names_the_field_the_value_and_the_expectation(make, field, value, expected):
    with pytest.raises(ElectraError) as e:
        make(**{field: value})
    message = str(e.value)
    assert field in message and repr(value) in message and expected in message and "\n" not in message


def test_an_explicit_zero_is_refused_not_replaced_by_the_default(cls_checkpoint, tmp_path, capsys):
    data = custom_data(tmp_path / "data")
    code, _, err = run(["finetune", "--task", "custom", "--text-fields", "a,b", "--label-field", "y", "--model",
                        cls_checkpoint, "--data", data, "--out", tmp_path / "run", "--lr", "0", "--quiet"], capsys)
    assert code == 2 and "finetune option lr = 0.0: expected a number > 0" in one_line_error(err)


def test_a_config_file_error_names_the_file(data_dir, tmp_path, capsys):
    (tmp_path / "c.toml").write_text("[pretrain]\nwarmup_steps = -5\n")
    code, _, err = run(pretrain_args(data_dir, tmp_path / "run", "--config", tmp_path / "c.toml"), capsys)
    assert code == 2 and f"{tmp_path / 'c.toml'}: pretrain option warmup_steps = -5" in one_line_error(err)


def test_an_absurd_model_size_is_refused_before_allocating(tmp_path):
    torch.manual_seed(0)
    ckpt = save_checkpoint(Electra(ModelConfig.preset("tiny", vocab_size=300)), tmp_path / "ckpt")
    meta = json.loads((ckpt / "config.json").read_text())
    meta["model"]["vocab_size"] = 10**12
    (ckpt / "config.json").write_text(json.dumps(meta))
    from electra.checkpoint import load_checkpoint

    with pytest.raises(ElectraError, match="parameters .* expected at most"):
        load_checkpoint(ckpt)


# ---- faults while writing ---------------------------------------------------------------------------------
def limited(argv: list, max_file_bytes: int) -> subprocess.CompletedProcess:
    """``electra ARGV`` in a subprocess whose files cannot grow past ``max_file_bytes`` (a full disk)."""
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so a write fails with EFBIG instead of killing us
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "electra", *map(str, argv)], env=env, preexec_fn=limit,
                          capture_output=True, text=True, timeout=300)


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob(".*") if ".tmp-" in p.name or ".old-" in p.name]


@pytest.mark.slow
def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one(data_dir, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert run(pretrain_args(data_dir, run_dir, "--max-steps", "2", "--save-every", "2"), capsys)[0] == 0
    done = limited(pretrain_args(data_dir, run_dir, "--max-steps", "4", "--save-every", "2", "--resume"), 200_000)
    line = one_line_error(done.stderr)
    assert done.returncode == 2 and "step-00000004: could not write the checkpoint of step 4" in line
    assert "the previous checkpoint step-00000002 is intact" in line
    assert [d.name for d in (run_dir / "checkpoints").iterdir()] == ["step-00000002"]
    assert verify_checkpoint(run_dir / "checkpoints" / "step-00000002") is None and not leftovers(run_dir)
    assert run(pretrain_args(data_dir, run_dir, "--max-steps", "4", "--save-every", "2", "--resume"), capsys)[0] == 0


def test_a_full_disk_during_prepare_keeps_the_previous_shards(data_dir, tmp_path):
    out = tmp_path / "data"
    shutil.copytree(data_dir, out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    done = limited(["prepare", "--tokenizer", data_dir / "tokenizer", "--input", FIXTURES / "corpus" / "tiny-en.txt",
                    "--out", out, "--overwrite", "--quiet", "--max-seq-len", "32"], 16_000)
    line = one_line_error(done.stderr)
    assert done.returncode == 2 and "could not write the prepared data (File too large)" in line
    assert "the previous contents are unchanged" in line
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before and not leftovers(tmp_path)


def test_a_full_disk_during_an_export_leaves_no_partial_output(tmp_path):
    torch.manual_seed(0)
    save_checkpoint(Electra(ModelConfig.preset("tiny", vocab_size=300)), tmp_path / "ckpt")
    done = limited(["export", "--checkpoint", tmp_path / "ckpt", "--out", tmp_path / "hf"], 50_000)
    assert done.returncode == 2 and "could not write the export" in one_line_error(done.stderr)
    assert not (tmp_path / "hf").exists() and not leftovers(tmp_path)


def test_keep_last_never_deletes_the_only_good_checkpoint(tmp_path, monkeypatch):
    from electra.training import checkpointing
    from electra.training.optim import AdamW

    torch.manual_seed(0)
    model = Electra(ModelConfig.preset("tiny", vocab_size=50))
    optimizer = AdamW(model.parameters(), lr=1e-3)
    checkpointing.save_training_checkpoint(tmp_path, 1, model, optimizer, {"step": 1}, keep_last=1)
    real = checkpointing.verify_checkpoint
    monkeypatch.setattr(checkpointing, "verify_checkpoint",
                        lambda p: "damaged on disk" if Path(p).name == "step-00000002" else real(p))
    with pytest.raises(ElectraError, match="does not verify .* the previous checkpoint step-00000001 is intact"):
        checkpointing.save_training_checkpoint(tmp_path, 2, model, optimizer, {"step": 2}, keep_last=1)
    assert real(tmp_path / "checkpoints" / "step-00000001") is None
