"""The embedding analysis of benchmarks/embedding_sharing.py (DeBERTa-v3 §5.2): cosine statistics and row sampling."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from electra.config import ModelConfig
from electra.modeling import Electra

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from embedding_sharing import (  # noqa: E402
    embedding_analysis,
    mean_pairwise_cosine,
    mean_rowwise_cosine,
    medians,
    sample_rows,
)


def brute_force_pairwise(table: torch.Tensor) -> float:
    unit = torch.nn.functional.normalize(table.double(), dim=1)
    sims = unit @ unit.T
    n = len(table)
    return float((sims.sum() - sims.diagonal().sum()) / (n * (n - 1)))


def test_mean_pairwise_cosine_equals_the_mean_over_distinct_pairs():
    table = torch.randn(50, 8, generator=torch.Generator().manual_seed(0)) + 0.5
    assert mean_pairwise_cosine(table) == pytest.approx(brute_force_pairwise(table), abs=1e-12)


def test_mean_pairwise_cosine_of_parallel_rows_is_one():
    table = torch.arange(1.0, 6.0)[:, None] * torch.tensor([[1.0, 2.0, -1.0]])
    assert mean_pairwise_cosine(table) == pytest.approx(1.0)


def test_mean_rowwise_cosine_compares_rows_of_the_same_token():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert mean_rowwise_cosine(a, a * 3) == pytest.approx(1.0)
    assert mean_rowwise_cosine(a, a.flip(0)) == pytest.approx(0.0)


def test_sample_rows_is_seeded_sorted_and_without_repeats():
    first, again = sample_rows(range(100, 1000), 50, seed=3), sample_rows(range(100, 1000), 50, seed=3)
    assert torch.equal(first, again)
    assert len(set(first.tolist())) == 50 and first.tolist() == sorted(first.tolist())
    assert sample_rows([7, 5], 10).tolist() == [5, 7]


def test_embedding_analysis_of_es_sees_one_table_and_of_nes_two():
    rows = torch.arange(5, 60)
    torch.manual_seed(0)
    es = embedding_analysis(Electra(ModelConfig.preset("tiny", vocab_size=80, embedding_sharing="es")), rows)
    torch.manual_seed(0)
    nes = embedding_analysis(Electra(ModelConfig.preset("tiny", vocab_size=80, embedding_sharing="nes")), rows)
    assert es["cos_g_d"] == pytest.approx(1.0) and es["rel_diff"] == 0.0 and es["cos_g"] == es["cos_d"]
    assert nes["cos_g_d"] < 0.5 and nes["rel_diff"] > 0.5


def test_medians_skip_runs_without_the_figure():
    assert medians([{"a": 1.0}, {"a": 3.0, "b": None}, {"a": 2.0}], ["a", "b"]) == {"a": 2.0, "b": None}
