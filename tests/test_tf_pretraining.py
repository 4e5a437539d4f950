"""electra.tf: the Keras RTD objective computes our losses, masks as ours, trains with fit on our shards;
classification fine-tuning with fit; the CLI's --framework tf and the SavedModel export."""

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

import electra.pretraining as P  # noqa: E402
from electra.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint  # noqa: E402
from electra.cli import main as cli  # noqa: E402
from electra.config import ModelConfig, PretrainConfig  # noqa: E402
from electra.data.prepare import prepare  # noqa: E402
from electra.data.pretraining_data import PretrainingData  # noqa: E402
from electra.modeling import Electra as TorchElectra  # noqa: E402
from electra.tf import keras_module, weights  # noqa: E402
from electra.tf.pretraining import ReplacedTokenDetection, mask_tokens  # noqa: E402
from electra.tf.training import PretrainingBatches  # noqa: E402
from electra.tokenization import train_tokenizer  # noqa: E402

keras = keras_module()
needs_tf_backend = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                                      reason="uses TensorFlow itself (GradientTape / SavedModel)")
FIXTURES = Path(__file__).parent / "fixtures"
SPECIAL = P.SpecialIds()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    tok = tmp_path_factory.mktemp("tok")
    text = FIXTURES / "corpus" / "tiny-en.txt"
    train_tokenizer([x for x in text.read_text().splitlines() if x.strip()], tok, vocab_size=600,
                    show_progress=False)
    out = tmp_path_factory.mktemp("data") / "en"
    prepare([text], tok, out, max_seq_len=64, seed=0, progress=False)
    return out


def rtd_batch(seed: int = 0, rows: int = 4, seq: int = 24) -> dict[str, torch.Tensor]:
    """[CLS] tokens [SEP] (padding), a second segment, as the example builder makes them."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 100, (rows, seq), generator=g)
    lengths = [seq, seq - 7, 9, seq - 1][:rows]
    mask = torch.zeros_like(ids)
    types = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
        ids[i, 0], ids[i, n - 1] = SPECIAL.cls, SPECIAL.sep
        types[i, n // 2:n] = 1
    return {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": types}


def np_batch(b: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in b.items()}


@pytest.mark.parametrize("cfg", [ModelConfig.preset("tiny", vocab_size=100),
                                 ModelConfig.preset("tiny", vocab_size=100, embedding_size=32)])
def test_rtd_losses_match_ours_given_the_same_masking_and_samples(cfg, monkeypatch):
    torch.manual_seed(0)
    tm = TorchElectra(cfg).eval()  # eval: no dropout on either side
    b = rtd_batch()
    seq = b["input_ids"].shape[1]
    ours = P.ReplacedTokenDetection(tm, SPECIAL, seq)
    rng = torch.Generator().manual_seed(1)
    m = P.mask_tokens(b["input_ids"], b["attention_mask"], SPECIAL, 0.15, ours.max_predictions, rng)
    sampled = torch.randint(5, 100, m.positions.shape, generator=rng)
    sampled[0, 0] = m.ids[0, 0]  # one sample equal to the original: labelled original on both sides
    monkeypatch.setattr(P, "mask_tokens", lambda *a, **k: m)
    monkeypatch.setattr(P, "sample_from_softmax", lambda *a, **k: sampled)
    with torch.no_grad():
        loss, want = ours(b["input_ids"], b["attention_mask"], b["token_type_ids"], rng)
    theirs = ReplacedTokenDetection(weights.from_torch(tm), SPECIAL, seq)
    fixed = {**np_batch(b), "positions": m.positions.numpy(), "weights": m.weights.numpy(),
             "masked_input_ids": m.input_ids.numpy(), "sampled": sampled.numpy()}
    got = {k: float(v) for k, v in theirs.losses_of(theirs(fixed)).items()}
    assert set(got) == set(want)
    for k in want:
        if k != "loss":
            assert got[k] == pytest.approx(float(want[k]), abs=1e-5), k
    # the total is MLM + 50 x disc, ~40 here: fp32 carries ~7 digits, so compare it relatively
    assert got["loss"] == pytest.approx(float(loss), rel=1e-5)


def test_masking_follows_the_official_count_rule_and_never_masks_special_tokens():
    b = rtd_batch(rows=4, seq=64)
    limit = P.max_predictions_per_seq(64, 0.15)  # int(0.155 * 64) = 9
    seed = keras.random.SeedGenerator(0)
    m = {k: np.asarray(v) for k, v in mask_tokens(b["input_ids"].numpy(), b["attention_mask"].numpy(), SPECIAL,
                                                 0.15, limit, seed).items()}
    n_real = b["attention_mask"].sum(-1).numpy()
    assert m["weights"].sum(-1).tolist() == [max(1, min(limit, round(n * 0.15))) for n in n_real]
    ours = P.mask_tokens(b["input_ids"], b["attention_mask"], SPECIAL, 0.15, limit, torch.Generator().manual_seed(0))
    assert m["weights"].sum(-1).tolist() == ours.weights.sum(-1).tolist()
    ids = b["input_ids"].numpy()
    for row in range(4):
        chosen = m["positions"][row][m["weights"][row] > 0]
        assert len(set(chosen.tolist())) == len(chosen)  # without replacement
        assert not np.isin(ids[row, chosen], [SPECIAL.cls, SPECIAL.sep, SPECIAL.pad]).any()


def test_masked_positions_are_85_percent_mask_token_15_percent_unchanged():
    ids = np.full((64, 128), 7)
    ids[:, 0], ids[:, -1] = SPECIAL.cls, SPECIAL.sep
    seed = keras.random.SeedGenerator(0)
    m = {k: np.asarray(v) for k, v in mask_tokens(ids, np.ones_like(ids), SPECIAL, 0.15, 19, seed).items()}
    chosen = np.take_along_axis(m["masked_input_ids"], m["positions"], 1)[m["weights"] > 0]
    assert set(np.unique(chosen)) <= {SPECIAL.mask, 7}
    assert (chosen == SPECIAL.mask).mean() == pytest.approx(0.85, abs=0.03)
    outside = np.ones_like(ids, bool)
    np.put_along_axis(outside, m["positions"], False, 1)
    assert (m["masked_input_ids"][outside] == ids[outside]).all()


@needs_tf_backend
def test_no_gradient_flows_from_the_discriminator_into_the_generator():
    import tensorflow as tf

    km = weights.from_torch(TorchElectra(ModelConfig.preset("tiny", vocab_size=100, tie_embeddings=False)))
    obj = ReplacedTokenDetection(km, SPECIAL, 24, generator_weight=0.0, seed=0)
    with tf.GradientTape() as tape:
        loss = obj.losses_of(obj(np_batch(rtd_batch())))["loss"]
    grads = tape.gradient(loss, km.generator.trainable_variables)
    assert all(g is None or float(tf.reduce_max(tf.abs(g))) == 0.0 for g in grads)


def test_pydataset_yields_the_pytorch_trainer_batches(data_dir):
    data = PretrainingData(data_dir, seed=0)
    keras_batches = PretrainingBatches(data, 4, 3)
    for i, torch_batch in zip(range(3), data.batches(4)):
        for k, v in torch_batch.items():
            assert np.array_equal(keras_batches[i][k], v.numpy()), (i, k)


@pytest.mark.slow
def test_200_keras_steps_on_the_bundled_sample_lower_the_loss(data_dir, tmp_path):
    from electra.tf.training import pretrain

    cfg = PretrainConfig.for_preset("tiny", data=str(data_dir), out=str(tmp_path / "run"), max_steps=200,
                                    batch_size=8, warmup_steps=20, log_every=20)
    run, history = pretrain(cfg, jit_compile=False)
    first, last = history[0], history[-1]
    assert last["loss"] < 0.8 * first["loss"] and last["mlm_loss"] < first["mlm_loss"]
    with open(run / "metrics.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == list(range(20, 201, 20))
    load_checkpoint(resolve_checkpoint(run))  # our format, strict


def tf_pretrain_args(data_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["pretrain", "--framework", "tf", "--data", str(data_dir), "--out", str(out), "--preset", "tiny",
            "--max-steps", "4", "--batch-size", "4", "--warmup-steps", "1", "--log-every", "2", "--no-progress",
            "--no-xla", *extra]


def test_cli_pretrain_framework_tf_writes_a_checkpoint_pytorch_reads(data_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli(tf_pretrain_args(data_dir, tmp_path / "run"))
    assert e.value.code == 0
    assert "run folder:" in capsys.readouterr().out
    assert load_checkpoint(resolve_checkpoint(tmp_path / "run")).config.discriminator.vocab_size == 600
    with open(tmp_path / "run" / "metrics.csv") as f:
        assert [r["step"] for r in csv.DictReader(f)] == ["2", "4"]


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
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    return save_checkpoint(TorchElectra(ModelConfig.preset("tiny", vocab_size=256)), path,
                           tokenizer_dir=FIXTURES / "finetune_vocab")


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
