"""The replaced-token-detection objective: masking, sampling, labels, losses."""

import pytest
import torch
import torch.nn.functional as F

from electra.config import ModelConfig
from electra.modeling import Electra
from electra.pretraining import (
    ReplacedTokenDetection,
    SpecialIds,
    gumbel_sample,
    mask_tokens,
    masked_lm_loss,
    max_predictions_per_seq,
    sample_from_softmax,
)

SPECIAL = SpecialIds(pad=0, cls=2, sep=3, mask=4)
VOCAB = 200


def make_batch(batch=16, seq=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (batch, seq), generator=g)
    lengths = torch.randint(seq // 2, seq + 1, (batch,), generator=g)
    am = (torch.arange(seq)[None] < lengths[:, None]).long()
    ids = ids * am
    ids[:, 0] = SPECIAL.cls
    ids[torch.arange(batch), lengths - 1] = SPECIAL.sep
    mid = lengths // 2
    ids[torch.arange(batch), mid] = SPECIAL.sep
    tt = ((torch.arange(seq)[None] > mid[:, None]) & am.bool()).long()
    return ids, am, tt


def test_max_predictions_follows_official_rule():
    assert max_predictions_per_seq(128, 0.15) == 19
    assert max_predictions_per_seq(512, 0.15) == 79
    assert max_predictions_per_seq(128, 0.25) == 32


def test_masking_rate_and_count_per_sequence():
    ids, am, _ = make_batch(batch=64, seq=128)
    m = mask_tokens(ids, am, SPECIAL, 0.15, 19, torch.Generator().manual_seed(1))
    n_real = am.sum(-1).float()
    expected = torch.clamp(torch.round(n_real * 0.15), max=19).clamp(min=1)
    assert torch.equal(m.weights.sum(-1), expected)
    # Selected positions are distinct within a sequence.
    for b in range(ids.shape[0]):
        pos = m.positions[b][m.weights[b].bool()]
        assert len(set(pos.tolist())) == len(pos)


def test_special_tokens_and_padding_never_masked():
    ids, am, _ = make_batch(batch=64, seq=64)
    for seed in range(5):
        m = mask_tokens(ids, am, SPECIAL, 0.15, 10, torch.Generator().manual_seed(seed))
        chosen = m.positions[m.weights.bool()]
        rows = torch.arange(ids.shape[0])[:, None].expand_as(m.positions)[m.weights.bool()]
        tokens = ids[rows, chosen]
        assert not torch.isin(tokens, torch.tensor([SPECIAL.cls, SPECIAL.sep, SPECIAL.pad])).any()
        assert am[rows, chosen].all()


def test_85_percent_mask_token_15_percent_unchanged_no_random():
    ids, am, _ = make_batch(batch=256, seq=128)
    m = mask_tokens(ids, am, SPECIAL, 0.15, 19, torch.Generator().manual_seed(0))
    rows = torch.arange(ids.shape[0])[:, None].expand_as(m.positions)[m.weights.bool()]
    cols = m.positions[m.weights.bool()]
    after = m.input_ids[rows, cols]
    frac_mask = (after == SPECIAL.mask).float().mean().item()
    assert 0.82 < frac_mask < 0.88
    assert torch.equal(after[after != SPECIAL.mask], ids[rows, cols][after != SPECIAL.mask])
    # Nothing outside the chosen positions changes.
    changed = m.input_ids != ids
    assert changed.sum() == (after != ids[rows, cols]).sum()


def test_bert_style_masking_80_10_10():
    ids, am, _ = make_batch(batch=256, seq=128)
    m = mask_tokens(ids, am, SPECIAL, 0.15, 19, torch.Generator().manual_seed(0), mask_token_prob=0.8,
                    random_token_prob=0.1, vocab_size=VOCAB)
    sel = m.weights.bool()
    rows = torch.arange(ids.shape[0])[:, None].expand_as(m.positions)[sel]
    after, before = m.input_ids[rows, m.positions[sel]], ids[rows, m.positions[sel]]
    assert 0.77 < (after == SPECIAL.mask).float().mean() < 0.83
    assert 0.07 < ((after != SPECIAL.mask) & (after != before)).float().mean() < 0.12


@pytest.mark.parametrize("sampler", [gumbel_sample, sample_from_softmax])
@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_samplers_draw_from_the_softmax(sampler, temperature):
    """Both samplers (the official Gumbel-max trick and our inverse-CDF one) follow softmax(logits / T): a
    chi-square test per row, including a zero-probability entry that must never be drawn."""
    logits = torch.tensor([[0.0, 1.0, 2.0, -1.0, float("-inf")], [3.0, 0.0, 0.0, 0.0, 0.0]])
    n = 20000
    samples = sampler(logits.repeat_interleave(n, 0), torch.Generator().manual_seed(0), temperature).view(2, n)
    for row in range(2):
        counts = torch.bincount(samples[row], minlength=5).double()
        expected = (logits[row] / temperature).softmax(-1).double() * n
        if row == 0:
            assert counts[4] == 0  # the -inf logit
        support = expected > 0
        chi2 = ((counts[support] - expected[support]) ** 2 / expected[support]).sum().item()
        # 18.5: p = 0.001 at 4 degrees of freedom (row 1), p < 0.001 at 3 (row 0)
        assert chi2 < 18.5, (row, counts.tolist(), expected.tolist())


def test_sampler_accepts_bf16_logits_and_batches():
    logits = torch.randn(3, 7, 50).bfloat16()
    out = sample_from_softmax(logits, torch.Generator().manual_seed(1))
    assert out.shape == (3, 7) and out.dtype == torch.int64 and out.min() >= 0 and out.max() < 50


def test_masked_lm_loss_matches_cross_entropy_and_its_gradient():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 40, requires_grad=True)
    ids = torch.randint(0, 40, (3, 5))
    w = (torch.rand(3, 5) > 0.3).float()
    loss, acc = masked_lm_loss(logits, ids, w)
    (2 * loss).backward()
    ref_logits = logits.detach().clone().requires_grad_()
    ref = (F.cross_entropy(ref_logits.flatten(0, 1), ids.flatten(), reduction="none") * w.flatten()).sum() / (
        w.sum() + 1e-6)
    (2 * ref).backward()
    assert torch.allclose(loss, ref, atol=1e-6)
    assert torch.allclose(logits.grad, ref_logits.grad, atol=1e-7)
    ref_acc = ((logits.argmax(-1) == ids).float() * w).sum() / (w.sum() + 1e-6)
    assert torch.allclose(acc, ref_acc) and not acc.requires_grad


def tiny_objective(**kw):
    torch.manual_seed(0)
    cfg = ModelConfig.preset("tiny", vocab_size=VOCAB, hidden_dropout=0.0, attention_dropout=0.0)
    return ReplacedTokenDetection(Electra(cfg), SPECIAL, 64, **kw)


def reference_rtd_loss(obj, ids, am, tt, seed):
    """A straightforward re-implementation: full-vocabulary generator logits, dense labels."""
    rng = torch.Generator().manual_seed(seed)
    m = mask_tokens(ids, am, SPECIAL, obj.mask_prob, obj.max_predictions, rng)
    full = obj.model.generator(m.input_ids, am, tt)  # (B, T, V) everywhere
    logits = torch.stack([full[b, m.positions[b]] for b in range(ids.shape[0])])
    w = m.weights
    mlm = (F.cross_entropy(logits.flatten(0, 1), m.ids.flatten(), reduction="none") * w.flatten()).sum() / (
        w.sum() + 1e-6)
    sampled = sample_from_softmax(logits.detach(), rng)
    fake = ids.clone()
    for b in range(ids.shape[0]):
        for j in range(m.positions.shape[1]):
            if w[b, j]:
                fake[b, m.positions[b, j]] = sampled[b, j]
    labels = (fake != ids).float()
    disc = obj.model.discriminator(fake, am, tt)
    bce = F.binary_cross_entropy_with_logits(disc, labels, reduction="none")
    d = (bce * am).sum() / (am.sum() + 1e-6)
    return obj.generator_weight * mlm + obj.discriminator_weight * d, mlm, d, labels


def test_loss_and_gradients_match_straightforward_reference():
    obj = tiny_objective()
    ids, am, tt = make_batch(batch=4, seq=64)
    loss, metrics = obj(ids, am, tt, torch.Generator().manual_seed(7))
    loss.backward()
    ours = {n: p.grad.clone() for n, p in obj.named_parameters() if p.grad is not None}
    obj.zero_grad()
    ref, mlm, d, _ = reference_rtd_loss(obj, ids, am, tt, 7)
    ref.backward()
    assert torch.allclose(loss, ref, atol=1e-5)
    assert torch.allclose(metrics["mlm_loss"], mlm.detach(), atol=1e-5)
    assert torch.allclose(metrics["disc_loss"], d.detach(), atol=1e-6)
    for n, p in obj.named_parameters():
        if p.grad is not None:
            assert torch.allclose(ours[n], p.grad, atol=1e-5, rtol=1e-4), n


def test_loss_weighting():
    ids, am, tt = make_batch(batch=4, seq=64)
    obj = tiny_objective(generator_weight=1.0, discriminator_weight=50.0)
    loss, m = obj(ids, am, tt, torch.Generator().manual_seed(3))
    assert torch.allclose(loss, m["mlm_loss"] + 50 * m["disc_loss"], atol=1e-4)
    obj2 = tiny_objective(generator_weight=2.0, discriminator_weight=10.0)
    loss2, m2 = obj2(ids, am, tt, torch.Generator().manual_seed(3))
    assert torch.allclose(loss2, 2 * m2["mlm_loss"] + 10 * m2["disc_loss"], atol=1e-4)


def test_sample_equal_to_original_is_labelled_original():
    """With a generator that always predicts the original token, nothing counts as replaced."""
    obj = tiny_objective()
    ids, am, tt = make_batch(batch=4, seq=64)

    def oracle(input_ids, attention_mask=None, token_type_ids=None, positions=None):
        return F.one_hot(ids.gather(1, positions), VOCAB).float() * 1e4

    obj.model.generator.forward = oracle
    _, metrics = obj(ids, am, tt, torch.Generator().manual_seed(0))
    assert metrics["replaced_fraction"].item() == 0.0


def test_no_gradient_flows_from_discriminator_into_generator():
    obj = tiny_objective(generator_weight=0.0)
    ids, am, tt = make_batch(batch=4, seq=64)
    loss, _ = obj(ids, am, tt, torch.Generator().manual_seed(0))
    loss.backward()
    gen_only = [p for n, p in obj.model.generator.named_parameters() if not n.startswith("encoder.embeddings")]
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in gen_only)


@pytest.mark.parametrize("seed", [0, 1])
def test_objective_is_deterministic_given_rng(seed):
    obj = tiny_objective()
    ids, am, tt = make_batch()
    a, _ = obj(ids, am, tt, torch.Generator().manual_seed(seed))
    b, _ = obj(ids, am, tt, torch.Generator().manual_seed(seed))
    assert torch.equal(a, b)
