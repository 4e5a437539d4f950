"""The shared fine-tuning loop: training, best-model selection, saving and loading runs."""

import json

import pytest
import torch

from electra.checkpoint import save_checkpoint
from electra.config import EncoderConfig, ModelConfig
from electra.errors import ElectraError
from electra.modeling import Electra, Encoder
from electra.tasks.heads import ClassificationHead
from electra.tasks.runner import (
    FinetuneConfig,
    TaskModel,
    collate,
    finetune,
    load_encoder,
    load_task_model,
    resolve_run,
)

CFG = EncoderConfig(vocab_size=20, embedding_size=16, hidden_size=16, num_layers=2, num_heads=2,
                    intermediate_size=32, max_position_embeddings=16, hidden_dropout=0.0,
                    attention_dropout=0.0)


def toy_model(seed=0, num_labels=2):
    torch.manual_seed(seed)
    return TaskModel(Encoder(CFG), ClassificationHead(CFG, num_labels=num_labels), {"task": "toy"})


def toy_data(n=64, seed=0):
    """Label 1 when token 5 occurs in the sequence."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(6, 20, (n, 8), generator=g)
    labels = torch.randint(0, 2, (n,), generator=g)
    ids[labels == 1, 3] = 5
    ids[:, 0] = 2
    return [{"input_ids": i.tolist(), "attention_mask": [1] * 8, "labels": int(y)}
            for i, y in zip(ids, labels)]


def batches(data, size=16):
    return lambda epoch: [collate(data[i:i + size]) for i in range(0, len(data), size)]


def accuracy_fn(data):
    def evaluate(model):
        b = collate(data)
        return {"acc": (model(b)["logits"].argmax(-1) == b["labels"]).float().mean().item()}
    return evaluate


def test_finetune_learns_a_toy_task(tmp_path):
    train, dev = toy_data(128), toy_data(64, seed=1)
    config = FinetuneConfig(lr=3e-3, epochs=6, layerwise_decay=0.8, progress=False, device="cpu")
    res = finetune(toy_model(), batches(train), 8, accuracy_fn(dev), "acc", tmp_path, config)
    assert res["best"]["acc"] >= 0.9
    assert res["steps"] == 48


def test_max_steps_overrides_epochs(tmp_path):
    config = FinetuneConfig(epochs=100, max_steps=5, progress=False, device="cpu")
    res = finetune(toy_model(), batches(toy_data(64)), 4, None, "acc", tmp_path, config)
    assert res["steps"] == 5


def test_best_dev_checkpoint_is_kept_and_loaded(tmp_path):
    scores = iter([0.5, 0.9, 0.7])
    saved = {}

    def evaluate(model):
        s = next(scores)
        saved[s] = {k: v.clone() for k, v in model.state_dict().items()}
        return {"acc": s}

    model = toy_model()
    config = FinetuneConfig(lr=1e-2, epochs=3, progress=False, device="cpu")
    res = finetune(model, batches(toy_data(32)), 2, evaluate, "acc", tmp_path, config)
    assert (res["best"]["acc"], res["best_step"]) == (0.9, 4)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, saved[0.9][k])
    assert json.loads((tmp_path / "results.json").read_text())["best"]["acc"] == 0.9


def test_lower_is_better_metric_keeps_the_minimum(tmp_path):
    scores = iter([3.0, 1.0, 2.0])
    config = FinetuneConfig(epochs=3, progress=False, device="cpu")
    res = finetune(toy_model(), batches(toy_data(32)), 2, lambda m: {"loss": next(scores)}, "loss",
                   tmp_path, config, greater_is_better=False)
    assert res["best"]["loss"] == 1.0


def test_eval_every_evaluates_at_that_interval_and_at_the_end(tmp_path):
    steps = []
    config = FinetuneConfig(epochs=1, eval_every=3, progress=False, device="cpu")
    model = toy_model()

    def evaluate(m):
        steps.append(len(steps))
        return {"acc": 0.0}

    finetune(model, batches(toy_data(128)), 8, evaluate, "acc", tmp_path, config)
    assert len(steps) == 3  # steps 3, 6 and the final step 8


def test_saved_run_reloads_with_identical_outputs(tmp_path):
    model = toy_model()
    config = FinetuneConfig(max_steps=2, progress=False, device="cpu")
    finetune(model, batches(toy_data(32)), 2, accuracy_fn(toy_data(16)), "acc", tmp_path, config)
    loaded = load_task_model(tmp_path)
    b = collate(toy_data(8, seed=3))
    torch.testing.assert_close(loaded(b)["logits"], model(b)["logits"])
    assert loaded.spec == {"task": "toy"}


def test_regression_head_uses_mse_loss():
    model = toy_model(num_labels=1)
    b = collate([{"input_ids": [2, 6, 7], "labels": 3.5}])
    out = model(b)
    assert out["logits"].shape == (1,)
    torch.testing.assert_close(out["loss"], (out["logits"] - 3.5).pow(2).mean())


def test_layerwise_decay_gives_the_head_the_peak_lr(tmp_path):
    from electra.training.optim import param_groups

    groups = param_groups(toy_model(), 1.0, 0.0, 0.5, CFG.num_layers)
    lrs = {n: g["lr"] for g in groups for n in g["names"]}
    assert lrs["head.out.weight"] == 1.0
    assert lrs["encoder.layers.1.ffn_in.weight"] == 0.25
    assert lrs["encoder.embeddings.word_embeddings.weight"] == 0.0625  # official depths: head = L + 2


def test_collate_pads_to_the_longest_sequence():
    b = collate([{"input_ids": [2, 5], "attention_mask": [1, 1], "tags": [1, 2]},
                 {"input_ids": [2], "attention_mask": [1], "tags": [3]}], pad_id=0)
    assert b["input_ids"].tolist() == [[2, 5], [2, 0]]
    assert b["attention_mask"].tolist() == [[1, 1], [1, 0]]
    assert b["tags"].tolist() == [[1, 2], [3, -100]]


def test_pretrained_checkpoint_is_not_a_run(tmp_path):
    save_checkpoint(Electra(ModelConfig.preset("tiny", vocab_size=30)), tmp_path / "ckpt")
    with pytest.raises(ElectraError, match="not a fine-tuned run"):
        resolve_run(tmp_path / "ckpt")


def test_load_encoder_random_init_differs_from_the_checkpoint(tmp_path):
    save_checkpoint(Electra(ModelConfig.preset("tiny", vocab_size=30)), tmp_path / "ckpt")
    pre, rnd = load_encoder(tmp_path / "ckpt"), load_encoder(tmp_path / "ckpt", random_init=True, seed=1)
    assert pre.config == rnd.config
    assert not torch.equal(pre.layers[0].ffn_in.weight, rnd.layers[0].ffn_in.weight)


def test_mlm_objective_checkpoint_fine_tunes_the_generator_network(tmp_path):
    model = Electra(ModelConfig.preset("tiny", vocab_size=30))
    save_checkpoint(model, tmp_path / "mlm", extra={"objective": "mlm"})
    assert load_encoder(tmp_path / "mlm").config == model.config.generator
    assert load_encoder(tmp_path / "mlm", random_init=True).config == model.config.generator


def test_bf16_autocast_trains_with_finite_loss(tmp_path):
    config = FinetuneConfig(lr=1e-3, max_steps=2, precision="bf16", log_every=1, progress=False, device="cpu")
    finetune(toy_model(), batches(toy_data(32)), 2, None, "acc", tmp_path, config)
    from electra.training.metrics_log import read_metrics_csv

    losses = [float(r["train/loss"]) for r in read_metrics_csv(tmp_path / "metrics.csv")[1] if r["train/loss"]]
    assert len(losses) == 2 and all(0 < v < 10 for v in losses)
