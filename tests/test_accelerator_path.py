"""The accelerator code path (SDPA attention, F.dropout, no host-side padding check, torch.compile, bf16 autocast)
run on the CPU through `electra.kernels.accelerator_path`: same losses and gradients as the CPU path."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import needs_native_bf16
from electra.config import ModelConfig
from electra.kernels import accelerator_path, eager_cpu
from electra.modeling import Electra
from electra.pretraining import ReplacedTokenDetection, SpecialIds
from test_pretraining import make_batch

SPECIAL = SpecialIds(pad=0, cls=2, sep=3, mask=4)


def objective(dropout: float = 0.0) -> ReplacedTokenDetection:
    torch.manual_seed(0)
    cfg = ModelConfig.preset("tiny", vocab_size=200, hidden_dropout=dropout, attention_dropout=dropout)
    return ReplacedTokenDetection(Electra(cfg), SPECIAL, 64)


def loss_and_grads(obj, batch, forward=None, autocast: bool = False):
    obj.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss, metrics = (obj if forward is None else forward)(*batch, torch.Generator().manual_seed(7))
    loss.backward()
    return loss.detach(), metrics, {n: p.grad.clone() for n, p in obj.named_parameters() if p.grad is not None}


def assert_same(a, b, atol, rtol):
    (la, ma, ga), (lb, mb, gb) = a, b
    assert torch.allclose(la, lb, atol=atol, rtol=rtol)
    assert torch.allclose(ma["disc_loss"], mb["disc_loss"], atol=atol, rtol=rtol)
    assert ga.keys() == gb.keys()
    for n in ga:
        assert torch.allclose(ga[n], gb[n], atol=atol, rtol=rtol), n


def test_accelerator_path_switch_routes_cpu_tensors_away_from_cpu_only_code():
    x = torch.zeros(2)
    assert eager_cpu(x)
    with accelerator_path():
        assert not eager_cpu(x)
    assert eager_cpu(x)


def test_accelerator_path_gives_the_cpu_paths_losses_and_gradients_with_padding():
    obj, batch = objective(), make_batch(batch=4, seq=64)
    cpu = loss_and_grads(obj, batch)
    with accelerator_path():
        acc = loss_and_grads(obj, batch)
    assert_same(cpu, acc, atol=1e-5, rtol=1e-4)


def test_accelerator_path_uses_sdpa_and_f_dropout_and_trains(monkeypatch):
    calls = {"sdpa": 0, "dropout": 0}
    sdpa, drop = F.scaled_dot_product_attention, F.dropout

    def spy_sdpa(*a, **k):
        calls["sdpa"] += 1
        assert k.get("dropout_p", 0) > 0
        return sdpa(*a, **k)

    def spy_dropout(*a, **k):
        calls["dropout"] += 1
        return drop(*a, **k)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy_sdpa)
    monkeypatch.setattr(F, "dropout", spy_dropout)
    obj, batch = objective(dropout=0.1), make_batch(batch=8, seq=64)
    opt = torch.optim.AdamW(obj.parameters(), lr=3e-3)
    losses = []
    with accelerator_path():
        for _ in range(15):
            loss, _, _ = loss_and_grads(obj, batch)
            assert all(torch.isfinite(p.grad).all() for p in obj.parameters() if p.grad is not None)
            opt.step()
            losses.append(float(loss))
    assert calls["sdpa"] > 0 and calls["dropout"] > 0
    assert sum(losses[-3:]) < sum(losses[:3])


@pytest.mark.slow
def test_compiled_objective_matches_eager_on_the_accelerator_path():
    obj, batch = objective(), make_batch(batch=4, seq=64)
    eager = loss_and_grads(obj, batch)
    torch._dynamo.reset()
    compiled = torch.compile(obj, backend="aot_eager")  # dynamo + AOTAutograd, as on a GPU, without a C++ compiler
    with accelerator_path():
        got = loss_and_grads(obj, batch, forward=compiled)
    assert_same(eager, got, atol=1e-5, rtol=1e-4)


@needs_native_bf16
def test_bf16_autocast_on_the_accelerator_path_stays_close_to_the_cpu_bf16_path():
    obj, batch = objective(), make_batch(batch=4, seq=64)
    cpu = loss_and_grads(obj, batch, autocast=True)
    with accelerator_path():
        acc = loss_and_grads(obj, batch, autocast=True)
    assert torch.allclose(cpu[0], acc[0], rtol=2e-2)
    cos = F.cosine_similarity(torch.cat([g.flatten() for g in cpu[2].values()]),
                              torch.cat([g.flatten() for g in acc[2].values()]), dim=0)
    assert cos > 0.99


def test_environment_variable_turns_the_accelerator_path_on_in_a_new_process():
    import os
    import subprocess
    import sys

    code = "import torch; from electra.kernels import eager_cpu; print(eager_cpu(torch.zeros(1)))"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "ELECTRA_ACCELERATOR_PATH": "1"},
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
