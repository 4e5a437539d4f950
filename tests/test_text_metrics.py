"""BLEU/chrF equal sacrebleu's corpus scores and signatures; ROUGE equals rouge-score with the same tokenizer."""

import pytest
import sacrebleu
from rouge_score import rouge_scorer

from electra.errors import ElectraError
from electra.metrics.text import CJKTokenizer, bleu, chrf, distinct_n, exact_match, rouge, sentence_bleu

HYPS = ["the cat sat on the mat today", "", "a dog barked at the postman twice", "the cat sat on the mat today"]
REF_A = ["the cat sat on the mat", "nothing here", "the dog barked at the postman", "the cat is on the mat"]
REF_B = ["a cat sat on a mat", "empty", "a dog was barking at the postman", "the cat sat on the mat today"]
ZH_HYPS = ["我们今天去北京。", "他喜欢读书", "天气很好"]
ZH_REFS = ["我们明天去北京。", "他喜欢看书", "今天天气很好"]


def test_bleu_equals_sacrebleu_corpus_bleu_with_two_references():
    ours = bleu(HYPS, [REF_A, REF_B])
    ref = sacrebleu.corpus_bleu(HYPS, [REF_A, REF_B])
    assert ours["score"] == pytest.approx(ref.score, abs=1e-9)
    assert ours["signature"].startswith("nrefs:2|case:mixed|eff:no|tok:13a|smooth:exp")


def test_bleu_chinese_uses_the_zh_tokenizer():
    ours = bleu(ZH_HYPS, [ZH_REFS], lang="zh")
    assert ours["score"] == pytest.approx(sacrebleu.corpus_bleu(ZH_HYPS, [ZH_REFS], tokenize="zh").score)
    assert "tok:zh" in ours["signature"]
    assert ours["score"] > bleu(ZH_HYPS, [ZH_REFS])["score"]  # 13a sees each Chinese sentence as one word


def test_chrf_equals_sacrebleu_corpus_chrf_and_signature():
    ours = chrf(HYPS, [REF_A])
    ref = sacrebleu.metrics.CHRF()
    assert ours["score"] == pytest.approx(ref.corpus_score(HYPS, [REF_A]).score)
    assert ours["signature"] == str(ref.get_signature())


def test_sentence_bleu_equals_sacrebleu_sentence_bleu():
    got = sentence_bleu(HYPS[0], [REF_A[0]])
    assert got == pytest.approx(sacrebleu.sentence_bleu(HYPS[0], [REF_A[0]]).score)


def test_rouge_equals_rouge_score_default_tokenizer_on_english():
    ours = rouge(HYPS, REF_A)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])
    for k in ("rouge1", "rouge2", "rougeL"):
        want = sum(scorer.score(r, h)[k].fmeasure for h, r in zip(HYPS, REF_A)) / len(HYPS)
        assert ours[k] == pytest.approx(want)
    assert ours["tokenizer"] == "default"


def test_rouge_chinese_picks_the_cjk_tokenizer_and_matches_rouge_score_with_it():
    ours = rouge(ZH_HYPS, ZH_REFS)
    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=CJKTokenizer())
    want = sum(scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(ZH_HYPS, ZH_REFS)) / 3
    assert ours["tokenizer"] == "cjk" and ours["rougeL"] == pytest.approx(want)


def test_rouge_identical_chinese_scores_one_where_the_default_tokenizer_scores_zero():
    assert rouge(["我爱北京"], ["我爱北京"])["rouge1"] == 1.0
    default = rouge_scorer.RougeScorer(["rouge1"]).score("我爱北京", "我爱北京")["rouge1"].fmeasure
    assert default == 0.0


def test_cjk_tokenizer_splits_characters_and_keeps_latin_words():
    assert CJKTokenizer().tokenize("用BERT模型 v2") == ["用", "bert", "模", "型", "v2"]


def test_exact_match_ignores_surrounding_whitespace_only():
    assert exact_match(["a b ", "A b", "x"], ["a b", "a b", "y"]) == pytest.approx(1 / 3)


def test_distinct_n_counts_unique_ngrams_over_all():
    assert distinct_n(["a b a b", "a b"], 2) == pytest.approx(2 / 4)
    assert distinct_n(["我我我"], 1) == pytest.approx(1 / 3)


def test_reference_stream_of_wrong_length_is_a_one_line_error():
    with pytest.raises(ElectraError, match="reference stream 1 has 2 segments, predictions have 4"):
        bleu(HYPS, [REF_A[:2]])
