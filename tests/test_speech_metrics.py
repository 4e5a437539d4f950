"""WER/CER equal jiwer's after our normaliser, and a hand-written edit distance; the normaliser hits both sides."""

import jiwer
import pytest

from electra.errors import ElectraError
from electra.metrics.speech import cer, normalize, wer, word_errors


def levenshtein(a: list[str], b: list[str]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


REFS = ["the cat sat on the mat", "I don't know", "hello hello world", "好 天气", "one"]
HYPS = ["The cat sat on a mat.", "i do not know", "hello world world", "", "one one one"]


def test_normalize_lowercases_and_drops_punctuation_but_keeps_inner_apostrophes():
    assert normalize("  Don't   STOP!  It's 'quoted', OK?  你好。") == "don't stop it's quoted ok 你好"


def test_wer_equals_jiwer_on_normalised_text():
    want = jiwer.wer([normalize(r) for r in REFS], [normalize(h) for h in HYPS])
    assert wer(REFS, HYPS) == pytest.approx(want)


def test_wer_equals_hand_written_edit_distance_with_duplicates_and_empty_hypothesis():
    edits = sum(levenshtein(normalize(r).split(), normalize(h).split()) for r, h in zip(REFS, HYPS))
    words = sum(len(normalize(r).split()) for r in REFS)
    assert wer(REFS, HYPS) == pytest.approx(edits / words)


def test_normalising_both_sides_forgives_case_and_punctuation():
    assert wer(["the cat sat"], ["The cat, sat."]) == 0.0
    assert wer(["the cat sat"], ["The cat, sat."], normalise=False) > 0


def test_cer_equals_jiwer_on_chinese():
    refs, hyps = ["今天天气很好", "我们去北京"], ["今天天汽很好", "我们去了北京"]
    assert cer(refs, hyps) == pytest.approx(jiwer.cer(refs, hyps)) == pytest.approx(2 / 11)


def test_word_errors_sum_to_corpus_wer():
    pairs = [word_errors(r, h) for r, h in zip(REFS, HYPS)]
    assert sum(e for e, _ in pairs) / sum(n for _, n in pairs) == pytest.approx(wer(REFS, HYPS))


def test_word_errors_with_empty_reference_counts_insertions():
    assert word_errors("", "a b") == (2, 0)


def test_mismatched_lengths_are_a_one_line_error():
    with pytest.raises(ElectraError, match="2 references but 1 hypotheses"):
        wer(["a", "b"], ["a"])
