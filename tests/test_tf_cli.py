"""electra.tf from the command line (--framework tf for pretrain, detect, fill; export --format tf-savedmodel)
and Keras classification fine-tuning with fit, each checked against the PyTorch side."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from electra.tf import MISSING, available

if not available():
    pytest.skip(MISSING, allow_module_level=True)

from electra.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint  # noqa: E402
from electra.cli import main as cli  # noqa: E402
from electra.config import ModelConfig, PretrainConfig  # noqa: E402
from electra.data.pretraining_data import PretrainingData  # noqa: E402
from electra.modeling import Electra as TorchElectra  # noqa: E402
from electra.tf import keras_module  # noqa: E402
from tf_fixtures import prepared_data, tiny_checkpoint  # noqa: E402

keras = keras_module()
needs_tf_backend = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                                      reason="a SavedModel needs the TensorFlow backend")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return prepared_data(tmp_path_factory.mktemp("data"))


def tf_pretrain_args(data_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["pretrain", "--framework", "tf", "--data", str(data_dir), "--out", str(out), "--preset", "tiny",
            "--max-steps", "4", "--batch-size", "4", "--warmup-steps", "1", "--log-every", "2", "--no-progress",
            "--no-xla", *extra]


@pytest.mark.slow
def test_cli_pretrain_framework_tf_writes_a_checkpoint_pytorch_reads(data_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli(tf_pretrain_args(data_dir, tmp_path / "run"))
    assert e.value.code == 0
    assert "run folder:" in capsys.readouterr().out
    assert load_checkpoint(resolve_checkpoint(tmp_path / "run")).config.discriminator.vocab_size == 600
    with open(tmp_path / "run" / "metrics.csv") as f:
        assert [r["step"] for r in csv.DictReader(f)] == ["2", "4"]


@pytest.mark.slow
def test_cli_pretrain_framework_tf_starts_from_a_checkpoint_with_init_from(data_dir, tmp_path, capsys):
    from electra.tf.training import pretrain

    torch.manual_seed(0)
    start = TorchElectra(ModelConfig.preset("tiny", vocab_size=600, generator_size=0.25))
    save_checkpoint(start, tmp_path / "start", tokenizer_dir=PretrainingData(data_dir).tokenizer_dir)
    cfg = PretrainConfig.for_preset("continue", data=str(data_dir), out=str(tmp_path / "run"), max_steps=1,
                                    batch_size=4, lr=1e-12, init_from=str(tmp_path / "start"))
    run, _ = pretrain(cfg, jit_compile=False)
    assert "init-from:" in capsys.readouterr().out
    after = load_checkpoint(resolve_checkpoint(run))
    assert after.config == start.config  # the shape comes from the checkpoint
    w = "discriminator.encoder.layers.0.ffn_in.weight"
    assert torch.allclose(after.state_dict()[w], start.state_dict()[w], atol=1e-6)  # lr 1e-12: unchanged


@pytest.mark.parametrize("extra,message", [
    (["--resume"], "--framework tf does not support --resume"),
    (["--objective", "mlm"], "--framework tf does not support objective = 'mlm'"),
    (["--grad-accum", "2"], "--framework tf does not support grad_accum = 2"),
    (["--precision", "bf16"], "--framework tf trains in fp32 only"),
])
def test_cli_pretrain_framework_tf_refuses_unsupported_options_in_one_line(data_dir, tmp_path, capsys, extra,
                                                                          message):
    with pytest.raises(SystemExit) as e:
        cli(["pretrain", "--framework", "tf", "--data", str(data_dir), "--out", str(tmp_path / "r"), "--preset",
             "tiny", "--batch-size", "4", *extra])
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and len(err.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")


def _run_cli(args, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        cli(args)
    assert e.value.code == 0, capsys.readouterr().err
    return capsys.readouterr().out


@pytest.mark.parametrize("command", [["detect", "the film is good"], ["fill", "the film is [MASK]"]])
def test_cli_framework_tf_prints_what_pytorch_prints(checkpoint, capsys, command):
    base = [command[0], "--model", str(checkpoint), "--json", command[1]]
    ours = json.loads(_run_cli(base, capsys))
    theirs = json.loads(_run_cli([*base[:-1], "--framework", "tf", base[-1]], capsys))
    if command[0] == "detect":
        assert theirs["tokens"] == ours["tokens"]
        assert np.allclose(theirs["replaced_prob"], ours["replaced_prob"], atol=2e-4)
    else:
        assert [t for t, _ in theirs[0]] == [t for t, _ in ours[0]]


def test_cli_detect_framework_tf_refuses_backend_options(checkpoint, capsys):
    with pytest.raises(SystemExit):
        cli(["detect", "--model", str(checkpoint), "--framework", "tf", "--backend", "onnx", "good"])
    assert "--framework tf runs the Keras model in fp32" in capsys.readouterr().err


@pytest.mark.slow
@needs_tf_backend
def test_savedmodel_export_serves_the_pytorch_logits(checkpoint, tmp_path, capsys):
    import tensorflow as tf

    from electra.tf.export import sample_batch

    out = _run_cli(["export", "--checkpoint", str(checkpoint), "--format", "tf-savedmodel", "--out",
                    str(tmp_path / "sm")], capsys)
    assert out.count("serving_default") == 2
    tm = load_checkpoint(checkpoint).eval()
    b = sample_batch(256, seed=3)
    t = [torch.from_numpy(b[k]) for k in ("input_ids", "attention_mask", "token_type_ids")]
    real = b["attention_mask"].astype(bool)
    for kind in ("discriminator", "generator"):
        served = tf.saved_model.load(str(tmp_path / "sm" / kind / "1")).signatures["serving_default"]
        got = served(**{k: tf.constant(v) for k, v in b.items()})["logits"].numpy()
        with torch.no_grad():
            want = getattr(tm, kind)(*t).numpy()
        assert np.abs(got - want)[real].max() < 1e-4
        assert (tmp_path / "sm" / kind / "tokenizer" / "vocab.txt").is_file()


@pytest.mark.slow
def test_keras_classifier_fine_tunes_with_fit_and_saves_a_task_run_pytorch_evaluates(checkpoint, tmp_path):
    from electra.data.glue import custom_task
    from electra.tasks.classification import evaluate_runs
    from electra.tf.training import KerasFinetuneOptions, finetune_classification

    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 32), ("dev", 16)):
        rows = ["a\tb\ty"] + [f"the film is {w}\tthe story\t{'pos' if w == 'good' else 'neg'}"
                              for w in rng.choice(["good", "bad"], n)]
        (data / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    res = finetune_classification(custom_task(["a", "b"], "y"), checkpoint, data, tmp_path / "run",
                                  KerasFinetuneOptions(epochs=4, batch_size=8, lr=2e-3, warmup_fraction=0.0))
    assert res["train_loss"][-1] < res["train_loss"][0]
    ev = evaluate_runs([tmp_path / "run"], data, "dev")  # the PyTorch side scores the Keras-trained run
    assert ev["acc"] == pytest.approx(res["dev"]["acc"])
