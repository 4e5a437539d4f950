"""`electra demo`: held-out documents, a wall-clock budget, two legs (from scratch, warm start from a BERT) and an
honest verdict on the showcase sentences about the model that reaches them."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from electra import demo
from electra.generation import Detection
from hf_models import transformers
from test_hf_bert import SPECIALS, save_bert


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
    monkeypatch.setattr("electra.demo.detect", fake_detect({
        demo.ORIGINAL: lambda toks: [0.1] * len(toks),
        demo.PLANTED[0]: lambda toks: [0.9 if t == "##ana" else 0.2 for t in toks]}))
    show, _ = demo.judge_showcase(None, tokenizer)
    assert show.passed and show.planted_top_token == "##ana" and "PASSED" in show.verdict("3 minutes")


def test_showcase_fails_when_the_original_sentence_has_a_token_above_half(monkeypatch, tokenizer):
    monkeypatch.setattr("electra.demo.detect", fake_detect({
        demo.ORIGINAL: lambda toks: [0.62 if t == "bank" else 0.1 for t in toks],
        demo.PLANTED[0]: lambda toks: [0.9 if t == "ban" else 0.2 for t in toks]}))
    show, _ = demo.judge_showcase(None, tokenizer)
    verdict = show.verdict("3 minutes")
    assert show.planted_is_top and not show.passed
    assert "NOT REACHED in 3 minutes" in verdict and "0.62" in verdict and "--init-from" in verdict


def test_showcase_fails_when_another_token_is_more_suspicious_than_the_planted_word(monkeypatch, tokenizer):
    monkeypatch.setattr("electra.demo.detect", fake_detect({
        demo.ORIGINAL: lambda toks: [0.1] * len(toks),
        demo.PLANTED[0]: lambda toks: [0.7 if t == "north" else 0.3 for t in toks]}))
    show, _ = demo.judge_showcase(None, tokenizer)
    assert not show.planted_is_top and "'north'" in show.verdict("100 steps")


def test_showcase_is_not_reached_when_the_planted_word_tops_but_is_not_flagged(monkeypatch, tokenizer):
    monkeypatch.setattr("electra.demo.detect", fake_detect({
        demo.ORIGINAL: lambda toks: [0.15] * len(toks),
        demo.PLANTED[0]: lambda toks: [0.16 if t == "##ana" else 0.15 for t in toks]}))
    show, _ = demo.judge_showcase(None, tokenizer)
    assert show.planted_is_top and not show.passed and "not flagged (0.16 <= 0.5)" in show.verdict("3 minutes")


def test_the_warm_legs_advice_is_more_minutes_not_a_warm_start():
    show = demo.Showcase(planted_is_top=True, original_max=0.2, planted_top_token="banana", planted_top_prob=0.3)
    verdict = show.verdict("1.5 minutes", demo.WARM_ADVICE)
    assert "NOT REACHED in 1.5 minutes" in verdict and "--max-minutes 30" in verdict and "import-hf" not in verdict


# ---- the verdict: about the leg that reaches the showcase ------------------------------------------------------
PASSING = demo.Showcase(planted_is_top=True, original_max=0.26, planted_top_token="banana", planted_top_prob=0.92)
FAILING = demo.Showcase(planted_is_top=False, original_max=0.3, planted_top_token="the", planted_top_prob=0.3)


def leg(name: str, show: demo.Showcase, fill: str = "sea") -> demo.Leg:
    return demo.Leg(name, Path(f"runs/{name}"), Path(f"runs/{name}/checkpoints/step-00000100"), 100, 1.5, 0.9,
                    show, [(fill, 0.2), ("lake", 0.1)])


def test_fill_is_sensible_when_its_top_candidate_is_a_body_of_water():
    assert leg("a", PASSING, "sea").fill_sensible and leg("a", PASSING, "Ocean").fill_sensible
    assert not leg("a", PASSING, "the").fill_sensible and not leg("a", PASSING, "city").fill_sensible


def test_verdict_is_about_the_leg_that_reaches_the_showcase():
    chosen, line = demo.final_verdict([leg("from scratch", FAILING, "the"), leg("warm start", PASSING)])
    assert chosen.name == "warm start" and line.startswith("verdict: the warm start model (runs/warm start/")
    assert "'banana' 0.92" in line and "'sea' (0.20) is a sensible one" in line
    chosen, _ = demo.final_verdict([leg("from scratch", PASSING), leg("warm start", FAILING)])
    assert chosen.name == "from scratch"


def test_verdict_prefers_the_leg_whose_fill_is_sensible_too():
    chosen, line = demo.final_verdict([leg("from scratch", PASSING, "the"), leg("warm start", PASSING, "lake")])
    assert chosen.name == "warm start" and "'lake'" in line


def test_verdict_says_when_the_showcase_passes_but_fill_does_not():
    chosen, line = demo.final_verdict([leg("warm start", PASSING, "the")])
    assert chosen.name == "warm start" and "'the' (0.20) is not a body of water (fill: NOT REACHED;" in line


def test_verdict_when_no_leg_reaches_the_showcase_names_none():
    chosen, line = demo.final_verdict([leg("from scratch", FAILING), leg("warm start", FAILING)])
    assert chosen is None and line.startswith("verdict: NO model reached the showcase")


# ---- run_demo: the budget split and the skipped warm leg -------------------------------------------------------
@pytest.fixture
def fake_legs(monkeypatch):
    calls: dict[str, dict] = {}

    def scratch(out, train, held, minutes, steps, *args):
        calls["scratch"] = {"minutes": minutes, "steps": steps, "train": train, "held": held}
        return leg("from scratch", FAILING, "the")

    def warm(out, train, held, bert_dir, minutes, steps, *args):
        calls["warm"] = {"minutes": minutes, "steps": steps, "train": train, "bert": bert_dir, "out": out}
        return leg("warm start", PASSING)

    monkeypatch.setattr(demo, "scratch_leg", scratch)
    monkeypatch.setattr(demo, "warm_leg", warm)
    return calls


def test_run_demo_skips_the_warm_leg_with_an_install_hint_when_minilm_is_absent(tmp_path, monkeypatch, capsys,
                                                                                  fake_legs):
    monkeypatch.setattr("electra.demo.minilm_dir", lambda: None)
    legs = demo.run_demo(tmp_path / "demo", minutes=3.0, progress=False)
    out = capsys.readouterr().out
    assert [x.name for x in legs] == ["from scratch"] and "warm" not in fake_legs
    assert demo.INSTALL_HINT in out and "make install" in demo.INSTALL_HINT
    assert fake_legs["scratch"]["minutes"] == 3.0  # the whole budget: no second leg to share it with
    assert "verdict: NO model reached the showcase" in out


def test_run_demo_splits_the_budget_and_gives_both_legs_the_same_text(tmp_path, monkeypatch, capsys, fake_legs):
    monkeypatch.setattr("electra.demo.minilm_dir", lambda: tmp_path / "minilm")
    legs = demo.run_demo(tmp_path / "demo", minutes=3.0, progress=False)
    out = capsys.readouterr().out
    assert [x.name for x in legs] == ["from scratch", "warm start"]
    assert fake_legs["scratch"]["minutes"] == fake_legs["warm"]["minutes"] == 1.5
    assert fake_legs["warm"]["train"] == fake_legs["scratch"]["train"]
    assert fake_legs["warm"]["bert"] == tmp_path / "minilm"
    assert "=== leg 1 of 2: from scratch" in out and "=== leg 2 of 2: warm start" in out and "=== summary" in out
    assert "verdict: the warm start model" in out and "electra detect --model runs/warm start" in out


def test_run_demo_steps_apply_to_each_leg(tmp_path, monkeypatch, capsys, fake_legs):
    monkeypatch.setattr("electra.demo.minilm_dir", lambda: tmp_path / "minilm")
    demo.run_demo(tmp_path / "demo", steps=7, progress=False)
    assert fake_legs["scratch"]["steps"] == fake_legs["warm"]["steps"] == 7


def test_run_demo_without_a_warm_start_says_so(tmp_path, capsys, fake_legs):
    demo.run_demo(tmp_path / "demo", minutes=1.0, warm_start=False, progress=False)
    assert "warm start: skipped (--no-warm-start)" in capsys.readouterr().out and "warm" not in fake_legs


def test_run_demo_refuses_a_bert_folder_without_config_in_one_line(tmp_path, fake_legs):
    from electra.errors import ElectraError

    with pytest.raises(ElectraError, match=r"^--bert .*: no config.json there \(expected a BERT directory\)$"):
        demo.run_demo(tmp_path / "demo", bert=tmp_path, progress=False)


# ---- the warm leg end to end, on a tiny BERT -------------------------------------------------------------------
WORDS = ["the", "city", "is", "located", "on", "north", "bank", "of", "river", "flows", "into", "sea", "near", "lake",
         "town", "lies", "south", "west", "east", "a", "and", "in", "was", "built", "by", "people", "who", "live"]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("tiny-bert")
    save_bert(transformers.BertForMaskedLM, directory, vocab=SPECIALS + sorted(set(WORDS)) + [".", ","])
    return directory


@pytest.fixture(scope="module")
def texts(tmp_path_factory) -> tuple[Path, Path]:
    rng = random.Random(0)
    root = tmp_path_factory.mktemp("texts")
    docs = ["\n".join(" ".join(rng.choices(WORDS, k=rng.randint(8, 30))) + " ." for _ in range(6))
            for _ in range(70)]
    text = root / "all.txt"
    text.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    return demo.split_documents(text, root, held_out=30)


def test_warm_leg_prepares_the_text_with_the_berts_tokenizer_and_trains_from_the_import(tiny_bert, texts, tmp_path,
                                                                                        capsys):
    train, held = texts
    warm = demo.warm_leg(tmp_path / "warm", train, held, tiny_bert, minutes=0, steps=3, seed=0, progress=False,
                         name="tiny-bert")
    out = capsys.readouterr().out
    meta = json.loads((tmp_path / "warm" / "data" / "meta.json").read_text())
    assert meta["vocab_size"] == len((tiny_bert / "vocab.txt").read_text().split())  # the BERT's vocabulary
    assert warm.name == "warm start" and warm.steps == 3 and warm.checkpoint.name == "step-00000003"
    assert json.loads((warm.run / "detection.json").read_text())["held_out"] is True and 0 <= warm.auc <= 1
    assert "[1/4] imported BERT" in out and "init-from: " in out and "held-out detection on" in out
    assert "for 3 steps of 16 x 64 tokens" in out and "warm start: showcase: " in out
    assert "NOT REACHED in 3 steps" in out or "PASSED" in out


@pytest.mark.slow
def test_warm_leg_with_a_minutes_budget_times_its_first_steps_then_resumes(tiny_bert, texts, tmp_path, capsys):
    train, held = texts
    warm = demo.warm_leg(tmp_path / "warm", train, held, tiny_bert, minutes=0.1, steps=None, seed=0, progress=False)
    out = capsys.readouterr().out
    assert "steps/s here" in out and f"(the first {demo.WARM_PROBE_STEPS} timed" in out
    assert f"resuming from {warm.run / 'checkpoints'}/step-{demo.WARM_PROBE_STEPS:08d}" in out
    assert warm.steps > demo.WARM_PROBE_STEPS and warm.train_minutes < 0.5


@pytest.mark.slow
def test_demo_with_a_minutes_budget_reports_held_out_detection_and_a_verdict(tmp_path, capsys):
    legs = demo.run_demo(tmp_path / "demo", minutes=0.6, vocab_size=2000, progress=False)
    out = capsys.readouterr().out
    for x in legs:
        assert json.loads((x.run / "detection.json").read_text())["held_out"] is True
    assert out.count("held-out detection on") == len(legs) and "steps/s here" in out
    assert out.count(": showcase: ") == len(legs) and "from scratch: showcase: " in out
    assert out.count("verdict: ") == 1 and "=== summary" in out
