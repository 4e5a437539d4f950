"""Classification with a mean-pooled head (``--pooling mean``): the mean of the real tokens' vectors, in PyTorch,
after a save and reload, in ONNX and in Keras."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deploy_fixtures import _save
from electra.tasks.heads import ClassificationHead, pool
from electra.tasks.runner import load_encoder, load_task_model
from qa_fixtures import tiny_checkpoint

SPEC = {"task": "sst2", "labels": ["negative", "positive"], "regression": False, "max_seq_len": 128}


@pytest.fixture(scope="module")
def mean_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("mean")
    ckpt = tiny_checkpoint(root)
    head = ClassificationHead(load_encoder(ckpt).config, num_labels=2, style="transformers", pooling="mean")
    return _save(ckpt, root / "run", head, SPEC, 11).parent


def batch(vocab: int, pad_to: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (3, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 4:] = 0
    ids = ids * mask
    if pad_to:
        extra = pad_to - ids.shape[1]
        ids, mask = (torch.nn.functional.pad(t, (0, extra)) for t in (ids, mask))
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def test_mean_pooling_averages_only_the_real_tokens():
    hidden = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    got = pool(hidden, mask, "mean")
    assert torch.equal(got[0], hidden[0, :2].mean(0)) and torch.equal(got[1], hidden[1].mean(0))
    assert torch.equal(pool(hidden, mask, "cls"), hidden[:, 0])


def test_a_mean_pooled_run_reads_every_position_and_ignores_padding(mean_run):
    model = load_task_model(mean_run).eval()
    assert model.head.pooling == "mean" and not model.head.reads_cls_only
    vocab = model.encoder.config.vocab_size
    with torch.no_grad():
        short, long = model(batch(vocab))["logits"], model(batch(vocab, pad_to=20))["logits"]
    torch.testing.assert_close(short, long, atol=1e-5, rtol=0)
    assert (short[0] - short[1]).abs().max() > 1e-4  # rows differ: the comparison is not of constants


def test_an_unknown_pooling_is_refused(mean_run):
    with pytest.raises(ValueError, match="pooling 'max'"):
        ClassificationHead(load_task_model(mean_run).encoder.config, pooling="max")


def test_a_mean_pooled_run_exported_to_onnx_gives_the_torch_logits(mean_run, tmp_path):
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    from electra.export.onnx import export_onnx
    from electra.inference import OnnxRunner

    folder = export_onnx(mean_run, tmp_path / "onnx")[0]
    model = load_task_model(mean_run).eval()
    b = batch(model.encoder.config.vocab_size)
    got = OnnxRunner(folder, threads=1)({k: v.numpy() for k, v in b.items()})["logits"]
    with torch.no_grad():
        want = model(b)["logits"].numpy()
    assert np.abs(got - want).max() < 1e-4


def test_keras_mean_pooled_classifier_matches_pytorch(mean_run):
    pytest.importorskip("keras", reason="the tf extra is not installed")
    from electra.tf import weights

    model = load_task_model(mean_run).eval()
    km = weights.classifier_from_torch(model)
    b = batch(model.encoder.config.vocab_size)
    with torch.no_grad():
        want = model(b)["logits"].numpy()
    got = np.asarray(km({k: v.numpy() for k, v in b.items()}))
    assert np.abs(got - want).max() < 2e-5
