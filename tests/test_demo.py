"""`electra demo`: held-out documents, a wall-clock budget, and an honest verdict on the showcase sentences."""

from __future__ import annotations

import json

import pytest

from electra import demo
from electra.generation import Detection


def test_split_documents_holds_out_the_last_documents(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("\n\n".join(f"title {i}\nbody {i}" for i in range(10)) + "\n", encoding="utf-8")
    train, held = demo.split_documents(text, tmp_path / "out", held_out=3)
    assert train.read_text().count("title") == 7 and "title 9" in held.read_text() and "title 6" in train.read_text()
    assert not set(train.read_text().split("\n")) & {"title 7", "title 8", "title 9"}


def fake_detect(probs_by_text):
    def detect(model, tokenizer, text):
        enc = tokenizer.encode(text)
        tokens = enc.tokens[1:-1]
        return Detection(tokens, probs_by_text[text](tokens), 0.5)
    return detect


@pytest.fixture(scope="module")
def tokenizer():
    from electra.tokenization import new_tokenizer

    words = set((demo.ORIGINAL + " " + demo.PLANTED[0]).replace(".", " .").split()) - {"banana"}
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(words), "ban", "##ana"]
    return new_tokenizer({t: i for i, t in enumerate(vocab)})


def test_showcase_passes_when_the_planted_word_tops_and_the_original_is_clean(monkeypatch, tokenizer):
    monkeypatch.setattr("electra.generation.detect", fake_detect({
        demo.ORIGINAL: lambda toks: [0.1] * len(toks),
        demo.PLANTED[0]: lambda toks: [0.9 if t == "##ana" else 0.2 for t in toks]}))
    show, _ = demo.judge_showcase(None, tokenizer)
    assert show.passed and show.planted_top_token == "##ana" and "PASSED" in show.verdict("3 minutes")


def test_showcase_fails_when_the_original_sentence_has_a_token_above_half(monkeypatch, tokenizer):
    monkeypatch.setattr("electra.generation.detect", fake_detect({
        demo.ORIGINAL: lambda toks: [0.62 if t == "bank" else 0.1 for t in toks],
        demo.PLANTED[0]: lambda toks: [0.9 if t == "ban" else 0.2 for t in toks]}))
    show, _ = demo.judge_showcase(None, tokenizer)
    verdict = show.verdict("3 minutes")
    assert show.planted_is_top and not show.passed
    assert "NOT REACHED in 3 minutes" in verdict and "0.62" in verdict and "--init-from" in verdict


def test_showcase_fails_when_another_token_is_more_suspicious_than_the_planted_word(monkeypatch, tokenizer):
    monkeypatch.setattr("electra.generation.detect", fake_detect({
        demo.ORIGINAL: lambda toks: [0.1] * len(toks),
        demo.PLANTED[0]: lambda toks: [0.7 if t == "north" else 0.3 for t in toks]}))
    show, _ = demo.judge_showcase(None, tokenizer)
    assert not show.planted_is_top and "'north'" in show.verdict("100 steps")


def test_showcase_is_not_reached_when_the_planted_word_tops_but_is_not_flagged(monkeypatch, tokenizer):
    monkeypatch.setattr("electra.generation.detect", fake_detect({
        demo.ORIGINAL: lambda toks: [0.15] * len(toks),
        demo.PLANTED[0]: lambda toks: [0.16 if t == "##ana" else 0.15 for t in toks]}))
    show, _ = demo.judge_showcase(None, tokenizer)
    assert show.planted_is_top and not show.passed and "not flagged (0.16 <= 0.5)" in show.verdict("3 minutes")


@pytest.mark.slow
def test_demo_with_a_minutes_budget_reports_held_out_detection_and_a_verdict(tmp_path, capsys):
    run = demo.run_demo(tmp_path / "demo", minutes=0.3, vocab_size=2000, progress=False)
    out = capsys.readouterr().out
    report = json.loads((run / "detection.json").read_text())
    assert report["held_out"] is True and "held-out detection on" in out
    assert "showcase: PASSED" in out or "showcase: NOT REACHED in 0.3 minutes" in out
    assert "steps/s here" in out
