"""Our sequence classifier equals transformers' ElectraForSequenceClassification on the same weights (the
conversion `benchmarks/inference_throughput.py` relies on), and its bf16 inference copy stays close."""

import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from electra.config import ModelConfig  # noqa: E402
from inference_throughput import cast_for_bf16, ours_random, to_reference  # noqa: E402


@pytest.fixture
def models():
    cfg = ModelConfig.preset("tiny", vocab_size=500).discriminator
    ours = ours_random(cfg, num_labels=3, seed=0).eval()
    for p in ours.head.parameters():  # non-trivial head weights, so the logits are not all ~0
        torch.nn.init.normal_(p, std=0.5)
    return ours, to_reference(ours)


def padded_batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 500, (4, 20), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0
    mask[3, 5:] = 0
    ids = ids * mask
    tt = torch.zeros_like(ids)
    tt[:, 10:] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": tt * mask}


def test_classifier_matches_transformers(models):
    ours, ref = models
    batch = padded_batch()
    with torch.no_grad():
        a = ours(batch)["logits"]
        b = ref(**batch).logits
    assert a.abs().max() > 0.1
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_bf16_copy_stays_close_and_leaves_the_original_fp32(models):
    ours, _ = models
    fast = cast_for_bf16(ours).eval()
    batch = padded_batch(1)
    with torch.no_grad():
        a = ours(batch)["logits"]
        b = fast(batch)["logits"]
    assert b.dtype == torch.float32
    assert next(ours.encoder.parameters()).dtype == torch.float32
    # bf16 keeps 8 bits of mantissa: measured 1% of the largest logit here (autocast on the reference: 0.4%).
    assert (a - b).abs().max() <= 0.02 * a.abs().max()
    assert torch.equal(a.argmax(-1), b.argmax(-1))
