"""Ranking metrics against a transcription of MuTual's eval.py; n-best oracles against jiwer."""

import jiwer
import pytest

from electra.errors import ElectraError
from electra.metrics.nbest import (
    choice_wer,
    compositional_oracle_wer,
    edit_matrix,
    oracle_choice,
    oracle_wer,
)
from electra.metrics.ranking import mutual_submission, parse_mutual_submission, rank, ranking_metrics
from electra.metrics.speech import normalize, wer


def official_mutual_eval(lines: list[str], golden: list[str]) -> tuple[float, float, float]:
    """Nealcly/MuTual eval_sample/eval.py, transcribed (its fixed 886 and fake gold "C" made parameters)."""
    n = len(lines)
    r1, r2, mrr = 0, 0, 0.0
    for line, gold in zip(lines, golden):
        output_list = line.strip().split("\t")[1:]
        assert sorted(output_list) == ["A", "B", "C", "D"]
        index = output_list.index(gold)
        if index == 0:
            r1 += 1
        elif index == 1:
            r2 += 1
        mrr += 1 / (index + 1)
    return r1 / n, r1 / n + r2 / n, mrr / n


SCORES = [[0.1, 0.9, 0.3, 0.2], [0.5, 0.5, 0.5, 0.5], [0.0, -1.0, 2.0, 2.0], [3.0, 1.0, 1.0, 0.0],
          [-2.0, -1.0, -3.0, -0.5]]
LABELS = [1, 2, 3, 0, 2]


def test_ranking_metrics_equal_the_official_script_with_ties():
    rankings = [rank(s) for s in SCORES]
    text = mutual_submission([f"dev_{i}" for i in range(len(SCORES))], rankings)
    official = official_mutual_eval(text.splitlines(), ["ABCD"[g] for g in LABELS])
    got = ranking_metrics(rankings, LABELS)
    assert (got["r1"], got["r2"], got["mrr"]) == pytest.approx(official)


def test_ties_rank_the_lower_index_first():
    assert rank([0.5, 0.5, 0.7, 0.5]) == [2, 0, 1, 3]


def test_submission_round_trips_and_rejects_a_line_without_four_letters():
    text = mutual_submission(["a", "b"], [[1, 0, 2, 3], [3, 2, 1, 0]])
    assert text == "a\tB\tA\tC\tD\nb\tD\tC\tB\tA\n"
    assert parse_mutual_submission(text) == {"a": [1, 0, 2, 3], "b": [3, 2, 1, 0]}
    with pytest.raises(ElectraError, match="line 1"):
        parse_mutual_submission("a\tB\tA\tC\n", "sub.txt")


REFS = ["the cat sat on the mat", "hello world", "a b c d", "Don't stop, please."]
NBEST = [["the cat sat on a mat", "the cat sat on the mat", "the cat sat on the mat"],
         ["hello word", "", "hello world world"],
         ["a b c d", "a b c d", "a c d"],
         ["dont stop please", "don't stop please", "Don't stop please"]]


def test_choice_wer_equals_jiwer_on_the_chosen_hypotheses_including_empty_ones():
    edits, words = edit_matrix(REFS, NBEST)
    for choice in ([0, 0, 0, 0], [1, 1, 2, 0], [2, 2, 1, 2]):
        hyps = [normalize(n[c]) for n, c in zip(NBEST, choice)]
        expected = jiwer.wer([normalize(r) for r in REFS], hyps)
        assert choice_wer(edits, words, choice) == pytest.approx(expected)
        assert choice_wer(edits, words, choice) == pytest.approx(wer(REFS, [n[c] for n, c in zip(NBEST, choice)]))


def test_oracle_picks_fewest_edits_and_ties_go_to_the_lowest_rank():
    edits, _ = edit_matrix(REFS, NBEST)
    assert oracle_choice(edits) == [1, 0, 0, 1]  # item 2: duplicates 0 and 1 both perfect -> 0
    expected = jiwer.wer([normalize(r) for r in REFS],
                         [normalize(n[c]) for n, c in zip(NBEST, [1, 0, 0, 1])])
    assert oracle_wer(REFS, NBEST) == pytest.approx(expected)


def test_compositional_oracle_counts_reference_words_missing_from_every_hypothesis():
    refs = ["a cat sat", "x y"]
    nbest = [["cat sat", "the cats sat"], ["x", "z"]]  # "a" absent (a substring of "cat" does not count); "y" absent
    assert compositional_oracle_wer(refs, nbest) == pytest.approx(2 / 5)


def test_chinese_text_is_scored_per_whitespace_word_on_both_sides():
    refs, nbest = ["我 爱 北京"], [["我 爱 南京", "我 爱 北京"]]
    edits, words = edit_matrix(refs, nbest)
    assert edits == [[1, 0]] and words == [3]


def test_cli_score_mutual_scores_a_submission_file(tmp_path, capsys):
    import json

    from electra.cli import main

    fix = __import__("pathlib").Path(__file__).parent / "fixtures" / "rescoring" / "mutual_dev_head.jsonl"
    sub = tmp_path / "sub.txt"
    sub.write_text("".join(f"dev_{i}\tA\tB\tC\tD\n" for i in range(1, 9)))
    with pytest.raises(SystemExit) as e:
        main(["score", "--task", "mutual", "--predictions", str(sub), "--references", str(fix), "--json"])
    assert e.value.code == 0
    got = json.loads(capsys.readouterr().out)
    labels = [json.loads(x)["answers"] for x in fix.read_text().splitlines()]
    assert got["r1"] == pytest.approx(official_mutual_eval(sub.read_text().splitlines(), labels)[0])
