"""Sinusoidal initialisation of the position table: the Transformer's sinusoids, at the table's own scale."""

import math

import pytest
import torch

from electra.config import ModelConfig, PretrainConfig
from electra.errors import ElectraError
from electra.init.positions import init_position_embeddings, sinusoids
from electra.modeling import Electra


def test_sinusoids_match_the_transformer_formula():
    table = sinusoids(50, 8)
    p = 7  # column 2i = 4 is sin, 2i + 1 = 5 is cos, both at frequency 1 / 10000^(2i / d)
    assert table.shape == (50, 8)
    assert table[p, 4].item() == pytest.approx(math.sin(p / 10000 ** (4 / 8)))
    assert table[p, 5].item() == pytest.approx(math.cos(p / 10000 ** (4 / 8)))


def test_sinusoidal_init_fills_every_position_table_at_the_initial_scale_and_nothing_else():
    torch.manual_seed(0)
    model = Electra(ModelConfig.preset("tiny", vocab_size=120, tie_embeddings=False))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    init_position_embeddings(model, "sinusoidal")
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.endswith("position_embeddings.weight") for k in changed)
    assert len(changed) == 2  # untied: the generator's table too
    for k in changed:
        w = model.state_dict()[k]
        assert w.std().item() == pytest.approx(before[k].std().item(), rel=1e-4)
        expected = sinusoids(*w.shape)
        assert torch.allclose(w.double() / w.double().std(), expected / expected.std(), atol=1e-5)


def test_normal_position_init_leaves_the_model_unchanged():
    model = Electra(ModelConfig.preset("tiny", vocab_size=120))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    init_position_embeddings(model, "normal")
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_an_unknown_position_init_is_a_one_line_error(tmp_path):
    with pytest.raises(ElectraError, match="position_init = 'learned': expected one of 'normal', 'sinusoidal'"):
        PretrainConfig.for_preset("tiny", data=str(tmp_path), out=str(tmp_path / "run"), position_init="learned")
