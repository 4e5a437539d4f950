"""electra.tf: the Keras RTD objective computes our losses, masks as ours, trains with fit on our shards."""

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
from electra.checkpoint import load_checkpoint, resolve_checkpoint  # noqa: E402
from electra.config import ModelConfig, PretrainConfig  # noqa: E402
from electra.data.pretraining_data import PretrainingData  # noqa: E402
from electra.modeling import Electra as TorchElectra  # noqa: E402
from electra.tf import keras_module, weights  # noqa: E402
from electra.tf.pretraining import ReplacedTokenDetection, mask_tokens  # noqa: E402
from electra.tf.training import PretrainingBatches  # noqa: E402
from tf_fixtures import prepared_data  # noqa: E402

keras = keras_module()
to_np = keras.ops.convert_to_numpy
needs_tf_backend = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                                      reason="uses TensorFlow itself (GradientTape)")
SPECIAL = P.SpecialIds(pad=0, cls=2, sep=3, mask=4)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return prepared_data(tmp_path_factory.mktemp("data"))


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
    m = {k: to_np(v) for k, v in mask_tokens(b["input_ids"].numpy(), b["attention_mask"].numpy(), SPECIAL,
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
    m = {k: to_np(v) for k, v in mask_tokens(ids, np.ones_like(ids), SPECIAL, 0.15, 19, seed).items()}
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


@pytest.mark.slow
def test_keras_step_benchmark_reports_every_implementation(capsys):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import keras_step

    result = keras_step.main(["--preset", "tiny", "--vocab", "200", "--batch", "2", "--seq", "16", "--steps", "1",
                              "--rounds", "1", "--skip", "keras-xla"])
    assert set(result["tokens_per_s"]) == {"torch", "keras"} and result["ratio_vs_torch"]["keras"] > 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result
