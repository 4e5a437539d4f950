"""Sentence scorers on a tiny random pair, against straightforward references written out here."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from electra.checkpoint import save_checkpoint
from electra.config import ModelConfig
from electra.errors import ElectraError
from electra.inference import load_model
from electra.modeling import Electra
from electra.scoring import Scorer, combine, pll_masks

VOCAB = Path(__file__).parent / "fixtures" / "finetune_vocab"
TEXTS = ["the film is good", "a dog and a cat", "zqx is boring"]  # "zqx": one word in several pieces


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    torch.manual_seed(0)
    model = Electra(ModelConfig.preset("tiny", vocab_size=256)).eval()
    path = save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "tiny", tokenizer_dir=VOCAB)
    return model, Scorer(load_model(path))


def _ids(scorer, text, context=None):
    enc = scorer.encode([text], [context] if context else None)[0]
    return enc, torch.tensor([enc.ids]), torch.tensor([enc.type_ids])


def test_rtd_equals_the_sum_of_log_sigmoid_of_minus_the_logits(pair):
    model, scorer = pair
    scores = scorer.score("rtd", TEXTS)
    for text, s in zip(TEXTS, scores):
        enc, ids, _ = _ids(scorer, text)
        with torch.no_grad():
            logits = model.discriminator(ids)[0].double()
        inner = logits[1:-1]  # all but [CLS] and [SEP]
        assert s.score == pytest.approx(F.logsigmoid(-inner).sum().item(), abs=1e-5)
        assert s.replaced_prob == pytest.approx(torch.sigmoid(inner).tolist(), abs=1e-5)
        assert s.tokens == enc.tokens[1:-1]


def test_rtd_with_context_scores_only_the_candidate(pair):
    model, scorer = pair
    s = scorer.score("rtd", ["a good film"], ["how is it"])[0]
    enc, ids, tt = _ids(scorer, "a good film", "how is it")
    with torch.no_grad():
        logits = model.discriminator(ids, token_type_ids=tt)[0].double()
    second = [i for i, t in enumerate(enc.type_ids) if t == 1][:-1]  # segment B without its [SEP]
    assert s.tokens == ["a", "good", "film"]
    assert s.score == pytest.approx(F.logsigmoid(-logits[second]).sum().item(), abs=1e-5)


def test_pll_equals_masking_one_position_at_a_time(pair):
    model, scorer = pair
    mask = scorer.tokenizer.token_to_id("[MASK]")
    scores = scorer.score("pll", TEXTS)
    for text, s in zip(TEXTS, scores):
        _, ids, _ = _ids(scorer, text)
        total = 0.0
        for p in range(1, ids.shape[1] - 1):
            masked = ids.clone()
            masked[0, p] = mask
            with torch.no_grad():
                logp = model.generator(masked)[0, p].double().log_softmax(-1)
            total += logp[ids[0, p]].item()
        assert s.score == pytest.approx(total, abs=1e-5)


def test_pll_word_also_masks_the_later_pieces_of_the_same_word(pair):
    _, scorer = pair
    enc = scorer.encode(["zqx is"])[0]
    assert enc.tokens[1:4] == ["z", "##q", "##x"]
    assert pll_masks(enc, within_word=True)[:4] == [(1, [1, 2, 3]), (2, [2, 3]), (3, [3]), (4, [4])]
    assert pll_masks(enc)[:2] == [(1, [1]), (2, [2])]


def test_pll_word_equals_masking_the_word_tail_by_hand(pair):
    model, scorer = pair
    mask = scorer.tokenizer.token_to_id("[MASK]")
    s = scorer.score("pll-word", ["zqx is"])[0]
    _, ids, _ = _ids(scorer, "zqx is")
    total = 0.0
    for p, tail in [(1, [1, 2, 3]), (2, [2, 3]), (3, [3]), (4, [4])]:
        masked = ids.clone()
        masked[0, tail] = mask
        with torch.no_grad():
            total += model.generator(masked)[0, p].double().log_softmax(-1)[ids[0, p]].item()
    assert s.score == pytest.approx(total, abs=1e-5)


def test_scores_do_not_depend_on_batch_composition(pair):
    _, scorer = pair
    alone = [scorer.score("rtd", [t])[0].score for t in TEXTS]
    together = [s.score for s in scorer.score("rtd", TEXTS)]
    assert np.allclose(alone, together, atol=1e-5)


def test_combination_weights_each_scorer(pair):
    _, scorer = pair
    parts = {"rtd": scorer.score("rtd", TEXTS), "pll": scorer.score("pll", TEXTS)}
    got = combine(parts, {"rtd": 1.0, "pll": 0.5})
    assert got == pytest.approx([a.score + 0.5 * b.score for a, b in zip(parts["rtd"], parts["pll"])])


def test_similarity_is_the_cosine_of_mean_pooled_discriminator_states(pair):
    model, scorer = pair
    got = scorer.score("similarity", ["a good film", "zqx is boring"], ["how is it", "the film is good"])
    for s, (cand, ctx) in zip(got, [("a good film", "how is it"), ("zqx is boring", "the film is good")]):
        pooled = []
        for text in (ctx, cand):
            _, ids, _ = _ids(scorer, text)
            with torch.no_grad():
                pooled.append(model.discriminator.encoder(ids)[0].double().mean(0))
        assert s.score == pytest.approx(F.cosine_similarity(*pooled, dim=0).item(), abs=1e-5)


def test_similarity_does_not_depend_on_the_padding_of_its_batch(pair):
    _, scorer = pair
    alone = scorer.score("similarity", ["a dog"], ["a cat"])[0].score
    long = "the film is good and a dog and a cat and zqx is boring"  # pads "a dog" / "a cat" in a shared batch
    mixed = scorer.score("similarity", ["a dog", long], ["a cat", long])
    assert mixed[0].score == pytest.approx(alone, abs=1e-6) and mixed[1].score == pytest.approx(1.0, abs=1e-6)


def test_similarity_without_a_context_names_what_it_needs(pair):
    _, scorer = pair
    with pytest.raises(ElectraError, match="compares each candidate with its context"):
        scorer.score("similarity", TEXTS)
