"""Optimizer, parameter groups and LR schedule follow the official ELECTRA code."""

import pytest
import torch

from electra.config import ModelConfig
from electra.modeling import Electra
from electra.training.optim import AdamW, layer_depth, param_groups
from electra.training.schedule import lr_multiplier


@pytest.mark.parametrize(("step", "expected"), [(0, 0.0), (50, 0.5 * 0.95), (100, 0.9), (550, 0.45),
                                                (1000, 0.0)])
def test_schedule_is_warmup_times_linear_decay(step, expected):
    assert lr_multiplier(step, total_steps=1000, warmup_steps=100) == pytest.approx(expected)


def test_schedule_without_warmup_is_linear_decay():
    assert lr_multiplier(0, 10, 0) == 1.0
    assert lr_multiplier(5, 10, 0) == pytest.approx(0.5)


def test_adamw_without_bias_correction_matches_official_update():
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(5, 3))
    p0 = p.detach().clone()
    opt = AdamW([p], lr=0.1, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01, bias_correction=False)
    m = torch.zeros_like(p0)
    v = torch.zeros_like(p0)
    ref = p0.clone()
    for _ in range(3):
        g = torch.randn(5, 3)
        p.grad = g.clone()
        opt.step()
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        ref = ref - 0.1 * (m / (v.sqrt() + 1e-6) + 0.01 * ref)
    assert torch.allclose(p.detach(), ref, atol=1e-6)


def test_adamw_with_bias_correction_matches_torch():
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(4, 4))
    b = torch.nn.Parameter(a.detach().clone())
    ours = AdamW([a], lr=0.01, eps=1e-6, weight_decay=0.0, bias_correction=True)
    theirs = torch.optim.AdamW([b], lr=0.01, eps=1e-6, weight_decay=0.0)
    for _ in range(5):
        g = torch.randn(4, 4)
        a.grad, b.grad = g.clone(), g.clone()
        ours.step()
        theirs.step()
    assert torch.allclose(a, b, atol=1e-6)


def test_no_weight_decay_on_layernorm_and_biases():
    model = Electra(ModelConfig.preset("tiny", vocab_size=50))
    for g in param_groups(model, 1e-3, weight_decay=0.01):
        for name in g["names"]:
            no_decay = name.endswith(".bias") or "norm." in name
            assert (g["weight_decay"] == 0.0) == no_decay, name


def test_layerwise_decay_follows_official_depths():
    model = Electra(ModelConfig.preset("tiny", vocab_size=50)).discriminator  # 2 layers
    lrs = {n: g["lr"] for g in param_groups(model, 1.0, 0.0, layerwise_decay=0.8, num_layers=2)
           for n in g["names"]}
    assert lrs["head.out.weight"] == pytest.approx(1.0)  # depth n + 2
    assert lrs["encoder.layers.1.ffn_in.weight"] == pytest.approx(0.8**2)  # depth 2 (official off-by-one)
    assert lrs["encoder.layers.0.ffn_in.weight"] == pytest.approx(0.8**3)
    assert lrs["encoder.embeddings.word_embeddings.weight"] == pytest.approx(0.8**4)
    variant = {n: g["lr"] for g in param_groups(model, 1.0, 0.0, layerwise_decay=0.8, num_layers=2,
                                                 official_depths=False) for n in g["names"]}
    assert variant["encoder.layers.1.ffn_in.weight"] == pytest.approx(0.8)


def test_layer_depth():
    assert layer_depth("encoder.embeddings.norm.weight", 12) == 0
    assert layer_depth("encoder.project.weight", 12) == 0
    assert layer_depth("encoder.layers.11.ffn_in.weight", 12) == 12
    assert layer_depth("classifier.weight", 12) == 14
