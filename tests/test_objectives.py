"""The BERT MLM baseline, the paper's alternative generator training (two-stage, adversarial) and the §3.2
ablation objectives."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from electra.config import ModelConfig, PretrainConfig
from electra.errors import ElectraError
from electra.flops import step_flops
from electra.modeling import Electra
from electra.objectives import (
    Adversarial,
    MaskedLM,
    MaskedOnlyDetection,
    ReplaceMLM,
    TwoStage,
    adjust_model_config,
    begin_step,
    build_objective,
    load_objective_state,
    needs_unused_parameters,
    save_objective_state,
    trained_parameters_root,
)
from electra.pretraining import SpecialIds, mask_tokens
from electra.training.optim import AdamW

SPECIAL = SpecialIds(pad=0, cls=2, sep=3, mask=4)
VOCAB = 120
SEQ = 32


def make_batch(batch: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (batch, SEQ), generator=g)
    lengths = torch.randint(SEQ // 2, SEQ + 1, (batch,), generator=g)
    am = (torch.arange(SEQ)[None] < lengths[:, None]).long()
    ids = ids * am
    ids[:, 0] = SPECIAL.cls
    ids[torch.arange(batch), lengths - 1] = SPECIAL.sep
    return ids, am, torch.zeros_like(ids)


def tiny(**changes) -> ModelConfig:
    return ModelConfig.preset("tiny", vocab_size=VOCAB, hidden_dropout=0.0, attention_dropout=0.0, **changes)


def pretrain_cfg(**kw) -> PretrainConfig:
    return PretrainConfig.for_preset("tiny", max_steps=10, **kw)


def objective_for(cfg: PretrainConfig, model_cfg: ModelConfig | None = None):
    torch.manual_seed(0)
    model = Electra(adjust_model_config(cfg, model_cfg or tiny()))
    return build_objective(model, SPECIAL, SEQ, cfg)


def run(objective, seed: int = 0):
    ids, am, tt = make_batch()
    return objective(ids, am, tt, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("options", [
    dict(objective="electra"), dict(objective="mlm"), dict(objective="electra-15"),
    dict(objective="replace-mlm"), dict(objective="all-tokens-mlm"),
    dict(generator_training="adversarial"), dict(generator_training="adversarial", adversarial_baseline="mean",
                                                  adversarial_entropy=0.1),
    dict(generator_training="two-stage", two_stage_generator_steps=1),
])
def test_every_mode_gives_finite_loss_and_gradients(options):
    cfg = pretrain_cfg(**options)
    model_cfg = tiny(generator_size=1.0) if cfg.generator_training == "two-stage" else tiny()
    objective = objective_for(cfg, model_cfg)
    for step in (0, 1):  # two-stage: both stages
        begin_step(objective, step, cfg.max_steps, 2)
        loss, metrics = run(objective, seed=step)
        assert math.isfinite(loss.item()) and all(math.isfinite(float(v)) for v in metrics.values())
        objective.zero_grad()
        loss.backward()
        grads = [p.grad for p in objective.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)


def test_mlm_baseline_trains_only_a_discriminator_sized_generator():
    objective = objective_for(pretrain_cfg(objective="mlm"))
    assert isinstance(objective, MaskedLM)
    gen, disc = objective.model.generator, objective.model.discriminator
    assert gen.encoder.config.hidden_size == disc.encoder.config.hidden_size
    assert trained_parameters_root(objective) is gen and needs_unused_parameters(objective)
    loss, metrics = run(objective)
    assert set(metrics) == {"loss", "mlm_loss", "mlm_accuracy"}
    loss.backward()
    assert all(p.grad is None for p in disc.head.parameters())


def test_mlm_baseline_loss_is_cross_entropy_on_bert_masking():
    """80% [MASK], 10% random, 10% unchanged (BERT), the weighted cross-entropy at the chosen positions."""
    objective = objective_for(pretrain_cfg(objective="mlm"))
    ids, am, tt = make_batch()
    loss, _ = objective(ids, am, tt, torch.Generator().manual_seed(0))
    mk = mask_tokens(ids, am, SPECIAL, 0.15, objective.max_predictions, torch.Generator().manual_seed(0),
                     mask_token_prob=0.8, random_token_prob=0.1, vocab_size=VOCAB)
    logits = objective.model.generator(mk.input_ids, am, tt, positions=mk.positions)
    ce = F.cross_entropy(logits.flatten(0, 1), mk.ids.flatten(), reduction="none") * mk.weights.flatten()
    assert loss.item() == pytest.approx((ce.sum() / (mk.weights.sum() + 1e-6)).item(), rel=1e-5)


def test_mlm_baseline_saves_no_objective_state(tmp_path):
    objective = objective_for(pretrain_cfg(objective="mlm"))
    save_objective_state(objective, tmp_path)
    assert not list(tmp_path.iterdir())
    load_objective_state(objective, tmp_path)  # nothing expected, nothing read


def test_adversarial_generator_weights_change_from_the_policy_gradient():
    cfg = pretrain_cfg(generator_training="adversarial")  # no MLM warm start: REINFORCE only
    objective = objective_for(cfg)
    assert isinstance(objective, Adversarial)
    layer = objective.model.generator.encoder.layers[0].ffn_in.weight
    before = layer.detach().clone()
    optimizer = AdamW(list(objective.parameters()), lr=1e-2)
    begin_step(objective, 0, cfg.max_steps, 0)
    loss, metrics = run(objective)
    loss.backward()  # sampling is discrete: the generator's layers get gradient only from REINFORCE
    assert layer.grad is not None and layer.grad.abs().sum() > 0
    optimizer.step()
    assert not torch.equal(before, layer.detach())
    assert {"gen_entropy", "mlm_accuracy", "reward", "pg_loss", "baseline_loss"} <= set(metrics)


def test_adversarial_warm_start_uses_mlm_then_reinforce():
    cfg = pretrain_cfg(generator_training="adversarial", adversarial_mlm_steps=2, adversarial_baseline="mean")
    objective = objective_for(cfg)
    gen = objective.model.generator.encoder.layers[0].ffn_in.weight

    def grad_at(step: int) -> torch.Tensor:
        begin_step(objective, step, cfg.max_steps, 0)
        objective.zero_grad()
        loss, m = run(objective)
        loss.backward()  # the discriminator's loss reaches the shared embeddings, not the generator's layers
        return gen.grad.clone()

    warm, adversarial = grad_at(0), grad_at(2)
    objective.zero_grad()
    begin_step(objective, 0, cfg.max_steps, 0)
    _, m = run(objective)
    ids, am, tt = make_batch()
    rng = torch.Generator().manual_seed(0)
    mk = mask_tokens(ids, am, SPECIAL, 0.15, objective.max_predictions, rng)
    logits = objective.model.generator(mk.input_ids, am, tt, positions=mk.positions)
    mlm = (F.cross_entropy(logits.flatten(0, 1), mk.ids.flatten(), reduction="none") * mk.weights.flatten()).sum()
    (mlm / (mk.weights.sum() + 1e-6)).backward()
    assert torch.allclose(warm, gen.grad, atol=1e-6)  # warm start: exactly the MLM gradient
    assert not torch.allclose(adversarial, gen.grad, atol=1e-6)


def test_two_stage_copies_generator_into_discriminator_then_freezes_generator():
    cfg = pretrain_cfg(generator_training="two-stage", two_stage_generator_steps=3)
    objective = objective_for(cfg, tiny(generator_size=1.0))
    assert isinstance(objective, TwoStage)
    gen, disc = objective.model.generator, objective.model.discriminator
    assert gen.encoder.embeddings is not disc.encoder.embeddings  # untied: the generator can stay frozen
    begin_step(objective, 0, cfg.max_steps, 0)
    loss, _ = run(objective)
    loss.backward()
    assert all(p.grad is None for p in disc.parameters())  # stage 1: generator only
    objective.zero_grad(set_to_none=True)
    with torch.no_grad():
        gen.encoder.layers[0].ffn_in.weight.add_(1.0)  # make the copy visible
    begin_step(objective, 3, cfg.max_steps, 0)
    g, d = gen.encoder.state_dict(), disc.encoder.state_dict()
    assert g.keys() == d.keys() and all(torch.equal(g[k], d[k]) for k in g)
    loss, metrics = run(objective)
    loss.backward()
    assert all(p.grad is None for p in gen.parameters())  # stage 2: generator frozen
    assert disc.encoder.layers[0].ffn_in.weight.grad.abs().sum() > 0
    assert metrics["stage"] == 2


def test_two_stage_schedule_restarts_warmup_in_each_stage():
    cfg = pretrain_cfg(generator_training="two-stage", two_stage_generator_steps=4)
    objective = objective_for(cfg, tiny(generator_size=1.0))
    factors = [begin_step(objective, s, 10, 2) for s in range(10)]
    assert factors[0] == factors[4] == 0.0  # the warm-up starts again with the discriminator
    assert factors[2] > factors[3] > 0 and factors[6] > factors[9] > 0  # each stage decays on its own
    assert factors[3] < factors[5]


def test_two_stage_requires_equal_sizes():
    with pytest.raises(ElectraError, match="--generator-size 1.0"):
        adjust_model_config(pretrain_cfg(generator_training="two-stage"), tiny())


def test_generator_training_needs_electra_objective():
    with pytest.raises(ElectraError, match="generator_training = .adversarial.: needs objective .electra."):
        pretrain_cfg(generator_training="adversarial", objective="mlm")


def test_electra_15_discriminator_loss_counts_masked_positions_only():
    cfg = pretrain_cfg(objective="electra-15")
    objective = objective_for(cfg)
    assert isinstance(objective, MaskedOnlyDetection)
    ids, am, tt = make_batch()
    m = mask_tokens(ids, am, SPECIAL, 0.15, objective.max_predictions, torch.Generator().manual_seed(0))
    masked = torch.zeros_like(ids, dtype=torch.bool)
    masked.scatter_(1, m.positions, m.weights.bool())
    base = torch.randn(ids.shape, generator=torch.Generator().manual_seed(5))

    def disc_loss(logits: torch.Tensor) -> float:
        objective.model.discriminator.forward = lambda *a, **k: logits
        return float(objective(ids, am, tt, torch.Generator().manual_seed(0))[1]["disc_loss"])

    reference = disc_loss(base)
    assert disc_loss(base + 5.0 * (~masked)) == pytest.approx(reference, abs=1e-6)  # unmasked: no effect
    assert disc_loss(base + 5.0 * masked) != pytest.approx(reference, abs=1e-3)


def hidden_grad(objective, ids, am, tt):
    """Gradient of the main loss w.r.t. the discriminator encoder's output (which positions the loss reads)."""
    captured = {}
    encoder = objective.model.discriminator.encoder

    def hook(module, inputs, output):
        output.retain_grad()
        captured["h"], captured["input"] = output, inputs[0]

    handle = encoder.register_forward_hook(hook)
    loss, metrics = objective(ids, am, tt, torch.Generator().manual_seed(0))
    handle.remove()
    loss.backward()  # the generator's loss does not reach the discriminator encoder's output
    return captured["h"].grad.abs().sum(-1), captured["input"]


def test_replace_mlm_predicts_originals_at_masked_positions_from_sampled_input():
    objective = objective_for(pretrain_cfg(objective="replace-mlm"))
    assert isinstance(objective, ReplaceMLM) and not objective.all_tokens
    ids, am, tt = make_batch()
    grad, main_input = hidden_grad(objective, ids, am, tt)
    m = mask_tokens(ids, am, SPECIAL, 0.15, objective.max_predictions, torch.Generator().manual_seed(0))
    masked = torch.zeros_like(ids, dtype=torch.bool)
    masked.scatter_(1, m.positions, m.weights.bool())
    # Generator samples instead of [MASK] (85% of masked positions would hold [MASK] otherwise; the untrained
    # generator may itself sample the [MASK] id now and then, as the official code allows).
    assert (main_input[masked] == SPECIAL.mask).float().mean() < 0.1
    assert torch.equal(main_input[~masked], ids[~masked])
    assert (grad[masked] > 0).all() and (grad[~masked] == 0).all()


def test_all_tokens_mlm_predicts_every_real_token():
    objective = objective_for(pretrain_cfg(objective="all-tokens-mlm"))
    ids, am, tt = make_batch()
    grad, _ = hidden_grad(objective, ids, am, tt)
    assert (grad[am.bool()] > 0).all() and (grad[~am.bool()] == 0).all()


def test_all_tokens_copy_mechanism_matches_the_mixture_probability():
    objective = objective_for(pretrain_cfg(objective="all-tokens-mlm"))
    ids, am, tt = make_batch(batch=2)
    hidden = torch.randn(2, SEQ, 64, generator=torch.Generator().manual_seed(1))
    fake = ids.clone()
    fake[:, 3] = 7  # position 3 replaced, the rest copied
    m = mask_tokens(ids, am, SPECIAL, 0.15, objective.max_predictions, torch.Generator().manual_seed(0))
    loss, _, _ = objective._all_tokens_loss(hidden, ids, fake, am, m)
    probs = objective.predict(hidden).softmax(-1)
    d = torch.sigmoid(-objective.model.discriminator.head(hidden))
    p_orig = probs.gather(-1, ids[..., None]).squeeze(-1)
    p = d * (fake == ids).float() + (1 - d) * p_orig
    expected = -(torch.log(p) * am).sum() / am.sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_objective_state_saved_and_restored(tmp_path):
    objective = objective_for(pretrain_cfg(objective="replace-mlm"))
    save_objective_state(objective, tmp_path)
    other = objective_for(pretrain_cfg(objective="replace-mlm"))
    with torch.no_grad():
        other.mlm_head.dense.weight.add_(1.0)
    load_objective_state(other, tmp_path)
    assert torch.equal(other.mlm_head.dense.weight, objective.mlm_head.dense.weight)


def test_flops_count_both_networks_for_electra_and_a_frozen_forward_in_stage_two():
    shape = tiny()
    electra = step_flops(shape, pretrain_cfg(batch_size=32), 128)
    mlm = step_flops(shape.replace(generator_size=1.0), pretrain_cfg(batch_size=32, objective="mlm"), 128)
    assert mlm < electra < 2 * mlm  # ELECTRA = discriminator + a half-width generator
    equal = shape.replace(generator_size=1.0)
    stage_1 = step_flops(equal, pretrain_cfg(generator_training="two-stage"), 128, 1)
    stage_2 = step_flops(equal, pretrain_cfg(generator_training="two-stage"), 128, 2)
    assert stage_1 < stage_2 < 2 * stage_1  # 3x generator, then 1x generator + 3x discriminator
