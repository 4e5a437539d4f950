"""`electra score --task wer|cer|bleu|chrf|rouge`: one segment per line, signatures printed, one-line errors."""

from __future__ import annotations

import json

import pytest
import sacrebleu

from electra.cli import main


def run(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def write(path, lines):
    path.write_text("".join(f"{ln}\n" for ln in lines), encoding="utf-8")
    return path


def test_score_bleu_with_two_reference_files_prints_score_and_signature(tmp_path, capsys):
    hyps = ["the cat sat on the mat", "a dog barked at the postman"]
    ra, rb = ["the cat sat on a mat", "the dog barked at the postman"], ["a cat sat on the mat", "a dog barked"]
    code, out, _ = run(["score", "--task", "bleu", "--predictions", write(tmp_path / "h", hyps), "--references",
                        write(tmp_path / "a", ra), write(tmp_path / "b", rb), "--json"], capsys)
    res = json.loads(out)
    assert code == 0 and res["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [ra, rb]).score)
    assert res["signature"].startswith("nrefs:2") and res["segments"] == 2


def test_score_wer_reads_lines_and_normalises_both_sides(tmp_path, capsys):
    code, out, _ = run(["score", "--task", "wer", "--predictions", write(tmp_path / "h", ["The cat.", "b c"]),
                        "--references", write(tmp_path / "r", ["the cat", "a b c"]), "--json"], capsys)
    assert code == 0 and json.loads(out)["wer"] == pytest.approx(1 / 5)


def test_score_rouge_on_chinese_uses_the_cjk_tokenizer(tmp_path, capsys):
    code, out, _ = run(["score", "--task", "rouge", "--predictions", write(tmp_path / "h", ["我爱北京"]),
                        "--references", write(tmp_path / "r", ["我爱北京"])], capsys)
    assert code == 0 and "rouge1: 1.0000" in out and "tokenizer: cjk" in out


def test_score_files_with_different_line_counts_is_a_one_line_error(tmp_path, capsys):
    code, _, err = run(["score", "--task", "chrf", "--predictions", write(tmp_path / "h", ["a", "b"]),
                        "--references", write(tmp_path / "r", ["a"])], capsys)
    assert code == 2 and err.count("\n") == 1 and "1 lines, but" in err and "Traceback" not in err


def test_score_text_task_without_references_is_a_one_line_error(tmp_path, capsys):
    code, _, err = run(["score", "--task", "bleu", "--predictions", write(tmp_path / "h", ["a"])], capsys)
    assert code == 2 and "needs --references" in err


def test_score_non_utf8_predictions_names_the_line(tmp_path, capsys):
    (tmp_path / "h").write_bytes(b"ok\n\xff\xfe bad\n")
    code, _, err = run(["score", "--task", "wer", "--predictions", tmp_path / "h", "--references",
                        write(tmp_path / "r", ["ok", "bad"])], capsys)
    assert code == 2 and "h:2: not UTF-8" in err
