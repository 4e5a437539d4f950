"""The command line for QA and tagging: finetune / evaluate / predict dispatch, score, answer, and errors."""

from __future__ import annotations

import json

import pytest

from electra.cli import main
from qa_fixtures import tiny_checkpoint, toy_squad, write_json


def run(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


@pytest.fixture(scope="module")
def qa_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cliqa")
    ck = tiny_checkpoint(root)
    data = write_json(root / "all.json", toy_squad(10, 4))
    with pytest.raises(SystemExit) as e:
        main(["finetune", "--task", "squad1", "--model", str(ck), "--data", str(data), "--out", str(root / "run"),
              "--dev-fraction", "0.2", "--max-steps", "12", "--eval-every", "100", "--batch-size", "16", "--lr", "1e-3",
              "--quiet",
              "--device", "cpu"])
    assert e.value.code == 0
    return root


def test_score_prints_official_squad1_numbers_as_json(tmp_path, capsys):
    data = write_json(tmp_path / "d.json", toy_squad(1, 2))
    qids = [p["qas"][0]["id"] for p in toy_squad(1, 2)["data"][0]["paragraphs"]]
    answers = [p["qas"][0]["answers"][0]["text"] for p in toy_squad(1, 2)["data"][0]["paragraphs"]]
    preds = write_json(tmp_path / "p.json", {qids[0]: answers[0], qids[1]: "the " + answers[1] + "!"})
    code, out, _ = run(["score", "--task", "squad1", "--data", data, "--predictions", preds, "--json"], capsys)
    assert code == 0 and json.loads(out) == {"exact_match": 100.0, "f1": 100.0}


def test_score_malformed_predictions_exits_2_with_position(tmp_path, capsys):
    data = write_json(tmp_path / "d.json", toy_squad(1, 2))
    (tmp_path / "p.json").write_text('{"a": "x",,}')
    code, _, err = run(["score", "--task", "squad2", "--data", data, "--predictions", tmp_path / "p.json"], capsys)
    assert code == 2 and "p.json:1:11: malformed JSON" in err and "Traceback" not in err


@pytest.mark.slow
def test_finetune_evaluate_predict_answer_through_the_cli(qa_run, tmp_path, capsys):
    results = json.loads((qa_run / "run" / "results.json").read_text())
    assert results["steps"] == 12 and results["task"] == "squad1"
    dev = write_json(tmp_path / "dev.json", toy_squad(2, 4, seed=5))
    code, out, _ = run(["evaluate", "--model", qa_run / "run", "--data", dev, "--json"], capsys)
    metrics = json.loads(out)
    assert code == 0 and metrics["task"] == "squad1" and 0 <= metrics["f1"] <= 100
    code, out, _ = run(["predict", "--model", qa_run / "run", "--input", dev, "--out", tmp_path / "p.json"], capsys)
    assert code == 0 and len(json.loads((tmp_path / "p.json").read_text())) == 8
    code, out, _ = run(["score", "--task", "squad1", "--data", dev, "--predictions", tmp_path / "p.json", "--json"],
                       capsys)
    assert json.loads(out)["f1"] == pytest.approx(metrics["f1"])
    code, out, _ = run(["answer", "--model", qa_run / "run", "--context", "The capital of Spain is Madrid.",
                        "What is the capital of Spain?"], capsys)
    assert code == 0 and "score" in out and "characters [" in out
    code, out, _ = run(["answer", "--model", qa_run / "run", "--context", "The capital of Spain is Madrid.",
                        "--candidates", "Madrid", "Lima", "--", "What is the capital of Spain?"], capsys)
    assert code == 0 and out.splitlines()[-1].endswith("Lima  (not in the context)")


def test_answer_on_a_pretrained_checkpoint_explains_it_needs_a_finetuned_run(qa_run, capsys):
    code, _, err = run(["answer", "--model", qa_run / "ckpt", "--context", "x y", "q?"], capsys)
    assert code == 2 and "not a fine-tuned run" in err


def test_answer_with_empty_context_is_an_error(qa_run, capsys):
    code, _, err = run(["answer", "--model", qa_run / "run", "--context", "  ", "q?"], capsys)
    assert code == 2 and "context is empty" in err


@pytest.mark.slow
def test_tagging_finetune_evaluate_predict_through_the_cli(qa_run, tmp_path, capsys):
    train = tmp_path / "train.txt"
    train.write_text("Rome B-LOC\nis O\nold O\n\nthe O\nriver O\nin O\nParis B-LOC\n\n" * 8)
    code, out, _ = run(["finetune", "--task", "tags", "--model", qa_run / "ckpt", "--data", train, "--dev-file", train,
                        "--out", tmp_path / "run", "--max-steps", "4", "--eval-every", "100", "--batch-size", "8",
                        "--quiet", "--device", "cpu"], capsys)
    assert code == 0 and json.loads(out.splitlines()[-1])["task"] == "tags"
    code, out, _ = run(["evaluate", "--model", tmp_path / "run", "--data", train, "--json"], capsys)
    assert code == 0 and {"precision", "recall", "f1", "types"} <= set(json.loads(out))
    code, out, _ = run(["predict", "--model", tmp_path / "run", "--input", train, "--out", tmp_path / "p.tsv"], capsys)
    assert code == 0 and "wrote 16 predictions" in out


def test_tagging_without_dev_file_is_an_error(qa_run, tmp_path, capsys):
    train = tmp_path / "train.txt"
    train.write_text("Rome B-LOC\n")
    code, _, err = run(["finetune", "--task", "tags", "--model", qa_run / "ckpt", "--data", train, "--out",
                        tmp_path / "run"], capsys)
    assert code == 2 and "--dev-file" in err
