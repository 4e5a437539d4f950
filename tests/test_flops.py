"""The pre-training FLOP count of a deberta-v2 body: BERT's plus the c2p / p2c terms the code computes."""

from __future__ import annotations

import dataclasses

import pytest

from electra.config import EncoderConfig, ModelConfig, PretrainConfig
from electra.deberta import DebertaEncoder
from electra.flops import encoder_flops, relative_attention_flops, relative_rows, step_flops

BERT = EncoderConfig(vocab_size=50, embedding_size=8, hidden_size=8, num_layers=2, num_heads=2, intermediate_size=16,
                     max_position_embeddings=16)
V3 = dict(architecture="deberta-v2", relative_attention=True, position_buckets=8, position_biased_input=False,
          pos_att_type="p2c|c2p", norm_rel_ebd="layer_norm", share_att_key=True, type_vocab_size=0)
DEBERTA = dataclasses.replace(BERT, **V3)


def test_deberta_counts_bert_plus_the_projected_relative_rows_and_both_score_matrices():
    # seq 6, span 8: rows 3 .. 13 reached (R = 11); per layer and term 2 R h^2 (projection) + 2 seq R h (scores)
    per_layer = 2 * (2 * 11 * 8 * 8 + 2 * 6 * 11 * 8)
    assert encoder_flops(DEBERTA, 6) - encoder_flops(BERT, 6) == 2 * per_layer == 9856


def test_the_relative_projection_is_counted_once_per_batch():
    per_layer = 2 * (2 * 11 * 8 * 8 / 4 + 2 * 6 * 11 * 8)
    assert encoder_flops(DEBERTA, 6, batch_size=4) - encoder_flops(BERT, 6, batch_size=4) == 2 * per_layer == 5632


def test_one_relative_term_counts_half_of_two():
    c2p = dataclasses.replace(DEBERTA, pos_att_type="c2p")
    assert relative_attention_flops(c2p, 6) == relative_attention_flops(DEBERTA, 6) / 2 == 2464


def test_own_position_projections_cost_what_shared_ones_do():
    own = dataclasses.replace(DEBERTA, share_att_key=False)
    assert relative_attention_flops(own, 6) == relative_attention_flops(DEBERTA, 6)


def test_bert_and_deberta_without_relative_attention_have_no_relative_terms():
    plain = EncoderConfig(**{**dataclasses.asdict(BERT), "architecture": "deberta-v2", "type_vocab_size": 0})
    assert relative_attention_flops(BERT, 6) == relative_attention_flops(plain, 6) == 0
    assert encoder_flops(plain, 6) == encoder_flops(BERT, 6)


@pytest.mark.parametrize("seq_len", [1, 6, 8, 9, 16])
def test_relative_rows_are_the_rows_the_encoder_projects(seq_len):
    lo, hi = DebertaEncoder(DEBERTA).rows_used(seq_len)
    assert relative_rows(DEBERTA, seq_len) == hi - lo


def test_a_training_step_adds_three_times_both_networks_relative_terms():
    bert = ModelConfig.preset("tiny")  # discriminator 2 x 64 (2 heads), generator 2 x 32 (1 head)
    deberta = ModelConfig.preset("tiny", **{**V3, "position_buckets": 64})
    cfg = PretrainConfig.for_preset("tiny", batch_size=32)
    # seq 128, span 64: all 128 rows reached; two terms; projections once per batch of 32
    disc = 2 * 2 * (2 * 128 * 64 * 64 + 32 * 2 * 128 * 128 * 64)
    gen = 2 * 2 * (2 * 128 * 32 * 32 + 32 * 2 * 128 * 128 * 32)
    assert step_flops(deberta, cfg, 128) - step_flops(bert, cfg, 128) == 3 * (disc + gen) == 1_223_688_192
