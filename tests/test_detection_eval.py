"""Held-out detection: replacements from the model's generator or from a fixed unigram distribution."""

from pathlib import Path

import torch

from electra.config import ModelConfig
from electra.data.prepare import prepare
from electra.data.pretraining_data import PretrainingData
from electra.detection_eval import evaluate_on_data, unigram_distribution
from electra.modeling import Electra
from electra.tokenization import train_tokenizer

FIXTURES = Path(__file__).parent / "fixtures" / "corpus"


def data(tmp_path: Path) -> PretrainingData:
    lines = [x for x in (FIXTURES / "tiny-en.txt").read_text().splitlines() if x.strip()]
    train_tokenizer(lines, tmp_path / "tok", vocab_size=300, show_progress=False)
    prepare([FIXTURES / "tiny-en.txt"], tmp_path / "tok", tmp_path / "data", max_seq_len=64, seed=0, progress=False)
    return PretrainingData(tmp_path / "data", seed=0)


def model(vocab: int, seed: int) -> Electra:
    torch.manual_seed(seed)
    return Electra(ModelConfig.preset("tiny", vocab_size=vocab))


def test_token_counts_cover_every_token_of_the_shards(tmp_path):
    d = data(tmp_path)
    counts = d.token_counts()
    assert counts.shape == (d.vocab_size,) and counts.sum() == d.meta["counts"]["tokens"]


def test_unigram_distribution_excludes_the_given_ids(tmp_path):
    d = data(tmp_path)
    p = unigram_distribution(d, exclude=[d.pad_id, d.cls_id, d.sep_id, d.mask_id])
    assert abs(float(p.sum()) - 1) < 1e-5 and float(p[d.cls_id]) == 0 and float(p[d.mask_id]) == 0


def test_unigram_replacements_are_the_same_for_every_model(tmp_path):
    d = data(tmp_path)
    p = unigram_distribution(d, exclude=[d.pad_id, d.cls_id, d.sep_id, d.mask_id])
    a = evaluate_on_data(model(d.vocab_size, 0), d, 2, batch_size=4, seed=3, unigram=p)
    b = evaluate_on_data(model(d.vocab_size, 1), d, 2, batch_size=4, seed=3, unigram=p)
    assert a.tokens == b.tokens and a.replaced_fraction == b.replaced_fraction > 0.05
    assert a.auc != b.auc  # different discriminators, same corruption
