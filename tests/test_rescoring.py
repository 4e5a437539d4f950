"""Zero-shot rescoring: readers, the combination and its grid search, ties, and `electra rescore` end to end."""

import json

import numpy as np
import pytest

from electra.cli import main
from electra.data.ranking import RankItem, read_hyporadise, read_jsonl, read_mt, read_mutual
from electra.errors import ElectraError
from electra.rescoring import Features, Params, build_features, choose, cross_validate, grid_search, rankings
from rescoring_fixtures import FIX, tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))


def _features(model: list[list[float]], prior=None) -> Features:
    items = [RankItem([f"c{k}" for k in range(len(m))], prior=prior[i] if prior else None)
             for i, m in enumerate(model)]
    return build_features(items, {"rtd": model})


# ---- readers ---------------------------------------------------------------------------------------------------
def test_hyporadise_reader_takes_the_recogniser_score_as_prior():
    items = read_hyporadise(FIX / "wsj_head.json")
    assert len(items) == 12 and len(items[0].candidates) == 5 and items[0].prior is not None
    assert read_hyporadise(FIX / "td3_head.json")[0].prior is None


@pytest.mark.parametrize("content, message", [
    ('{"input": ["a"], "output": "a"}', "expected a non-empty JSON list"),
    ('[{"input": ["a"], "output": "a"}, {"hyps": ["b"]}]', "item 1: expected an object with \"input\""),
    ('[{"input": [], "output": "a"}]', "item 0: 'input' is an empty candidate list"),
    ('[{"input": ["a", "b"], "output": "a", "score": [1.0]}]', "item 0: 'score' must be a list of 2 numbers"),
    ('[{"input": ["a"], "output": "a"', "line 1: not JSON"),
])
def test_bad_hyporadise_json_is_a_one_line_error_naming_file_and_item(tmp_path, content, message):
    f = tmp_path / "bad.json"
    f.write_text(content)
    with pytest.raises(ElectraError, match=message) as e:
        read_hyporadise(f)
    assert str(f) in str(e.value) and "\n" not in str(e.value)


def test_mt_candidate_files_with_different_line_counts_are_an_error(tmp_path):
    (tmp_path / "sys").mkdir()
    (tmp_path / "sys" / "a.txt").write_text("x\ny\n")
    (tmp_path / "sys" / "b.txt").write_text("x\n")
    with pytest.raises(ElectraError, match=r"b\.txt: 1 lines, but .*a\.txt has 2"):
        read_mt(None, [tmp_path / "sys"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ElectraError, match="empty candidate list"):
        read_mt(None, [tmp_path / "empty"])


def test_mt_reader_names_systems_and_aligns_references():
    items, systems = read_mt(FIX / "mt" / "newstest2021.de-en.src.de", [FIX / "mt" / "systems"],
                             [FIX / "mt" / "newstest2021.de-en.ref.B.en"])
    assert systems == ["Facebook-AI", "Online-W", "happypoet"]
    assert len(items) == 6 and len(items[0].candidates) == 3 and len(items[0].references) == 1


def test_mutual_line_without_four_options_is_an_error(tmp_path):
    good = (FIX / "mutual_dev_head.jsonl").read_text().splitlines()
    obj = json.loads(good[1])
    obj["options"] = obj["options"][:3]
    f = tmp_path / "m.jsonl"
    f.write_text(good[0] + "\n" + json.dumps(obj) + "\n")
    with pytest.raises(ElectraError, match=r"m\.jsonl: line 2: \"options\" must be a list of 4 strings.*got 3"):
        read_mutual(f)
    assert read_mutual(FIX / "mutual_dev_head.jsonl")[0].label == 1


def test_generic_jsonl_reads_costs_or_labels_and_rejects_an_empty_list(tmp_path):
    f = tmp_path / "g.jsonl"
    f.write_text('{"context": "q", "candidates": ["a", "b"], "costs": [0.5, 0]}\n{"candidates": ["x"], "label": 0}\n')
    items = read_jsonl(f)
    assert items[0].costs == [0.5, 0.0] and items[1].label == 0
    f.write_text('{"candidates": [], "label": 0}\n')
    with pytest.raises(ElectraError, match="line 1: 'candidates' is an empty candidate list"):
        read_jsonl(f)


# ---- the combination ---------------------------------------------------------------------------------------------
def test_lambda_zero_returns_the_one_best_with_a_rank_or_recogniser_prior():
    f = _features([[0.0, 5.0, 1.0], [2.0, 9.0, 9.0]])
    assert choose(f, Params({"rtd": 0.0})).tolist() == [0, 0]
    g = _features([[0.0, 5.0], [2.0, 9.0]], prior=[[-0.1, -0.5], [-0.2, -0.3]])
    assert choose(g, Params({"rtd": 0.0})).tolist() == [0, 0]
    assert choose(g, Params({"rtd": 1.0})).tolist() == [1, 1]


def test_equal_totals_go_to_the_lowest_rank():
    f = _features([[1.0, 1.0, 1.0]], prior=[[0.0, 0.0, 0.0]])  # padded duplicates: all equal
    assert choose(f, Params({"rtd": 1.0})).tolist() == [0]
    assert rankings(f, Params({"rtd": 1.0})) == [[0, 1, 2]]


def test_grid_search_keeps_the_one_best_when_the_model_does_not_help():
    f = _features([[0.0, 3.0], [0.0, 3.0]])
    costs = np.array([[0.0, 1.0], [0.0, 1.0]])  # the 1-best is always right; the model prefers the wrong one
    p, cost = grid_search(f, costs)
    assert p.lambdas == {"rtd": 0.0} and p.beta == 0.0 and cost == 0.0


def test_grid_search_finds_a_lambda_that_helps():
    f = _features([[0.0, 3.0], [0.0, 3.0], [1.0, 0.0]])
    costs = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    p, cost = grid_search(f, costs)
    assert cost == 0.0 and p.lambdas["rtd"] > 1 / 3  # must beat the rank prior's gap of 1 over 3 points


def test_cross_validation_tunes_each_fold_on_the_others():
    f = _features([[0.0, 3.0]] * 6)
    costs = np.array([[1.0, 0.0]] * 6)
    choice, ranks, params = cross_validate(f, costs, None, 3)
    assert choice.tolist() == [1] * 6 and len(params) == 3 and ranks[0] == [1, 0]


# ---- electra rescore --------------------------------------------------------------------------------------------
def test_cli_rescore_asr_prints_the_metrics_and_writes_choices(checkpoint, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    main_args = ["rescore", "--task", "asr", "--model", str(checkpoint), "--input", str(FIX / "wsj_next.json"),
                 "--dev", str(FIX / "wsj_head.json"), "--out", str(out), "--json"]
    with pytest.raises(SystemExit) as e:
        main(main_args)
    assert e.value.code == 0
    m = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"wer", "one_best_wer", "oracle_wer", "lambda"} <= set(m)
    assert m["oracle_wer"] <= m["wer"] and m["tuned"] == "dev"
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 12 and sorted(lines[0]["ranking"]) == [0, 1, 2, 3, 4]


def test_cli_rescore_bad_input_is_one_line_and_writes_nothing(checkpoint, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('[{"input": ["a b"], "output": "a b"}, {"nope": 1}]')
    out = tmp_path / "out.jsonl"
    with pytest.raises(SystemExit) as e:
        main(["rescore", "--task", "asr", "--model", str(checkpoint), "--input", str(bad), "--lambda", "1",
              "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and "bad.json: item 1" in err and len(err.splitlines()) == 1
    assert not out.exists()


@pytest.mark.slow
def test_cli_rescore_dialogue_writes_the_mutual_submission(checkpoint, tmp_path, capsys):
    out, sub = tmp_path / "out.jsonl", tmp_path / "sub.txt"
    with pytest.raises(SystemExit):
        main(["rescore", "--task", "dialogue", "--model", str(checkpoint), "--input",
              str(FIX / "mutual_dev_head.jsonl"), "--folds", "2", "--out", str(out), "--submission", str(sub),
              "--json"])
    m = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"r1", "r2", "mrr"} <= set(m)
    rows = sub.read_text().splitlines()
    assert len(rows) == 8 and rows[0].startswith("dev_1\t")


@pytest.mark.slow
def test_cli_rescore_mt_tunes_on_one_reference_and_reports_on_another(checkpoint, tmp_path, capsys):
    mt = FIX / "mt"
    with pytest.raises(SystemExit):
        main(["rescore", "--task", "mt", "--model", str(checkpoint), "--input", str(mt / "newstest2021.de-en.src.de"),
              "--candidates", str(mt / "systems"), "--references", str(mt / "newstest2021.de-en.ref.B.en"),
              "--tune-references", str(mt / "newstest2021.de-en.ref.A.en"), "--out", str(tmp_path / "o.jsonl"),
              "--json"])
    m = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert m["tuned"] == "tune-references" and m["bleu_signature"].startswith("nrefs:1")
    assert m["best_single_system"]["name"] in ("Facebook-AI", "Online-W", "happypoet")


def test_a_gain_below_min_gain_keeps_the_one_best():
    f = _features([[0.0, 3.0]] * 2 + [[0.0, 0.0]] * 498)
    costs = np.array([[1.0, 0.0]] * 2 + [[0.5, 0.5]] * 498)  # the model helps on 2 of 500 lists: 0.8% relative
    p, _ = grid_search(f, costs, min_gain=0.01)
    assert p.lambdas == {"rtd": 0.0}
    p, _ = grid_search(f, costs, min_gain=0.0)
    assert p.lambdas["rtd"] > 0


def test_similarity_gets_the_source_while_rtd_scores_the_target_alone():
    from electra.rescoring import model_scores

    seen = {}

    class Recorder:
        def score(self, method, texts, contexts=None):
            from electra.scoring import SentenceScore

            seen[method] = contexts
            return [SentenceScore([], [], float(len(t))) for t in texts]

    items = [RankItem(["a b", "c"], context="quelle"), RankItem(["d"], context="source")]
    out = model_scores(Recorder(), items, ["rtd", "similarity"], use_context=False)
    assert seen["rtd"] is None and seen["similarity"] == ["quelle", "quelle", "source"]
    assert out["similarity"] == [[3.0, 1.0], [1.0]]


def test_cli_rescore_mt_with_similarity_to_the_source(checkpoint, tmp_path, capsys):
    mt = FIX / "mt"
    with pytest.raises(SystemExit):
        main(["rescore", "--task", "mt", "--model", str(checkpoint), "--input", str(mt / "newstest2021.de-en.src.de"),
              "--candidates", str(mt / "systems"), "--references", str(mt / "newstest2021.de-en.ref.A.en"),
              "--scorer", "rtd+similarity", "--out", str(tmp_path / "o.jsonl"), "--json"])
    m = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert m["scorer"] == "rtd+similarity" and set(m["lambda"][0]) == {"rtd", "similarity"}
