"""Extractive QA: reading SQuAD-format files, windows, the span head, decoding, and end-to-end fine-tuning."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from electra.config import EncoderConfig
from electra.data.squad import (
    Answer,
    QAExample,
    WindowConfig,
    _best_windows,
    _is_max_context,
    make_features,
    parse_squad,
    read_squad,
)
from electra.errors import ElectraError
from electra.tasks.qa import (
    QAParams,
    SpanQAHead,
    answer,
    decode,
    evaluate_file,
    finetune_qa,
    limit_questions,
    load_qa_run,
    predict_file,
    split_articles,
)
from electra.tasks.runner import FinetuneConfig
from electra.tokenization import load_tokenizer
from qa_fixtures import DATA, tiny_checkpoint, toy_squad, write_json


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("qa"))


@pytest.fixture(scope="module")
def tokenizer(ckpt):
    return load_tokenizer(ckpt / "tokenizer")


def _squad(context, question, answer_text, start):
    return {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": context, "qas": [
        {"id": "q1", "question": question, "answers": [{"text": answer_text, "answer_start": start}]}]}]}]}


# ---- reading --------------------------------------------------------------------------------------------
def test_malformed_json_names_file_line_and_column(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"data": [\n  {"paragraphs": [}\n]}')
    with pytest.raises(ElectraError, match=r"bad\.json:2:\d+: malformed JSON"):
        read_squad(path)


def test_missing_field_is_named_by_json_path(tmp_path):
    data = _squad("ctx", "q?", "ctx", 0)
    del data["data"][0]["paragraphs"][0]["qas"][0]["question"]
    with pytest.raises(ElectraError, match=r"data\[0\]\.paragraphs\[0\]\.qas\[0\]: missing field 'question'"):
        read_squad(write_json(tmp_path / "d.json", data))


def test_mismatched_answer_offsets_are_counted_relocated_and_warned(tmp_path, capsys):
    data = _squad("Rome is the capital of Italy.", "What is the capital?", "Rome", 5)
    qas = data["data"][0]["paragraphs"][0]["qas"]
    qas.append({"id": "q2", "question": "x?", "answers": [{"text": "Paris", "answer_start": 0}]})
    examples = read_squad(write_json(tmp_path / "d.json", data))
    assert examples[0].answers[0].start == 0  # found by searching the text
    assert examples[1].answers[0].start == -1  # not in the context at all
    err = capsys.readouterr().err
    assert "2 answers' answer_start does not match the context (1 re-located" in err and "1 not found" in err


def test_empty_question_is_warned_and_left_out_of_training(tmp_path, capsys, tokenizer):
    data = _squad("Rome is the capital of Italy.", "   ", "Rome", 0)
    examples = read_squad(write_json(tmp_path / "d.json", data))
    assert "1 empty questions" in capsys.readouterr().err
    assert make_features(examples, tokenizer, WindowConfig(64, 16, 8), training=True) == []
    assert len(make_features(examples, tokenizer, WindowConfig(64, 16, 8))) == 1  # still answerable


def test_duplicate_question_id_is_an_error():
    data = _squad("a b", "q?", "a", 0)
    qas = data["data"][0]["paragraphs"][0]["qas"]
    qas.append(dict(qas[0]))
    with pytest.raises(ElectraError, match="duplicate question id 'q1'"):
        parse_squad(data, "d.json")


# ---- windows --------------------------------------------------------------------------------------------
def test_context_longer_than_a_window_is_split_and_answer_found_in_a_later_window(tokenizer):
    context = " ".join(["the river runs through green hills"] * 12) + " The capital of Italy is Rome."
    ex = QAExample("q", "What is the capital of Italy?", context,
                   [Answer("Rome", context.index("Rome"))])
    feats = make_features([ex], tokenizer, WindowConfig(max_seq_length=32, doc_stride=8, max_query_length=64),
                          training=True)
    assert len(feats) > 3
    assert all(len(f.input_ids) <= 32 for f in feats)
    hits = [f for f in feats if f.start > 0]
    assert hits and all(context[f.offsets[f.start][0]:f.offsets[f.end][1]] == "Rome" for f in hits)
    assert feats[0].start == 0 and feats[0].end == 0  # out-of-window answers point at [CLS]


def test_question_is_truncated_to_max_query_length(tokenizer):
    ex = QAExample("q", " ".join(["river"] * 50), "rome is the capital")
    (f,) = make_features([ex], tokenizer, WindowConfig(64, 16, max_query_length=8))
    assert f.token_type_ids.count(0) == 8 + 2  # [CLS] + 8 question tokens + [SEP]


def test_best_windows_agree_with_the_official_max_context_check():
    for n, size, stride in ((50, 12, 5), (37, 10, 10), (9, 20, 4), (64, 16, 3)):
        spans, start = [], 0
        while True:
            length = min(n - start, size)
            spans.append((start, length))
            if start + length >= n:
                break
            start += min(length, stride)
        best = _best_windows(spans, n)
        assert all(_is_max_context(spans, best[p], p) for p in range(n))


def test_max_context_follows_the_official_rule():
    # Doc "the man went to the store and bought a gallon of milk"; 'bought' (7) has max context in span C.
    spans = [(0, 5), (3, 5), (6, 5)]
    assert _is_max_context(spans, 2, 7) and not _is_max_context(spans, 1, 7)


# ---- head -----------------------------------------------------------------------------------------------
CFG = EncoderConfig(vocab_size=30, embedding_size=16, hidden_size=16, num_layers=1, num_heads=2,
                    intermediate_size=32, max_position_embeddings=32)


def _batch(seq=10, batch=2):
    types = torch.zeros(batch, seq, dtype=torch.long)
    types[:, 4:] = 1
    return {"token_type_ids": types, "attention_mask": torch.ones(batch, seq, dtype=torch.long)}


def test_joint_end_logits_equal_dense_over_concatenation():
    torch.manual_seed(0)
    head = SpanQAHead(CFG, joint=True)
    hidden, batch = torch.randn(2, 10, 16), _batch()
    start = hidden[:, 3:4]
    fast = head.joint_end_logits(hidden, start, head.answer_mask(batch))[:, 0]
    cat = torch.cat([start.expand(-1, 10, -1), hidden], -1)
    slow = head.end(torch.nn.functional.gelu(head.end_hidden(cat))).squeeze(-1)
    slow = slow + 1000.0 * (head.answer_mask(batch) - 1)
    assert torch.allclose(fast, slow, atol=1e-5)


def test_start_logits_are_masked_outside_context_except_cls():
    torch.manual_seed(0)
    out = SpanQAHead(CFG)(torch.randn(2, 10, 16), _batch())
    assert (out["start_logits"][:, 1:4] < -500).all() and (out["start_logits"][:, 0] > -500).all()


def test_loss_includes_answerability_term_only_with_classifier():
    torch.manual_seed(0)
    hidden, batch = torch.randn(2, 10, 16), _batch()
    batch.update(start_positions=torch.tensor([5, 0]), end_positions=torch.tensor([6, 0]),
                 is_impossible=torch.tensor([0, 1]))
    plain = SpanQAHead(CFG, answerable=False)
    torch.manual_seed(1)
    with_cls = SpanQAHead(CFG, answerable=True)
    with_cls.start.load_state_dict(plain.start.state_dict())
    with_cls.end_hidden.load_state_dict(plain.end_hidden.state_dict())
    with_cls.end.load_state_dict(plain.end.state_dict())
    extra = with_cls(hidden, batch)["loss"] - plain(hidden, batch)["loss"]
    bce = torch.nn.functional.binary_cross_entropy_with_logits(with_cls(hidden, batch)["answerable_logit"],
                                                               torch.tensor([0.0, 1.0]))
    assert torch.allclose(extra, 0.5 * bce, atol=1e-6)


def test_inference_outputs_beam_of_starts_and_ends():
    torch.manual_seed(0)
    out = SpanQAHead(CFG, beam_size=4)(torch.randn(2, 10, 16), _batch())
    assert out["start_top_index"].shape == (2, 4) and out["end_top_index"].shape == (2, 4, 4)


# ---- decoding -------------------------------------------------------------------------------------------
def _peaked(f, s, e, n):
    start, end = np.full(n, -10.0), np.full(n, -10.0)
    start[s], end[e] = 5.0, 5.0
    return {"start_logits": start, "end_logits": end}


def test_decode_maps_span_back_to_original_text_through_offsets(tokenizer):
    context = "Its capital is  ROME, Italy's city."
    ex = QAExample("q", "capital?", context)
    (f,) = make_features([ex], tokenizer, WindowConfig(64, 16, 8))
    s = next(i for i, o in enumerate(f.offsets) if o and context[o[0]:o[1]].lower().startswith("rome"))
    out = _peaked(f, s, s, len(f.input_ids))
    pred = decode([ex], [f], [out], version=1, joint=False)["q"]
    assert (pred.text, pred.start, pred.end) == ("ROME", 16, 20)


def test_decode_rejects_spans_longer_than_max_answer_length(tokenizer):
    context = "one two three four five six seven"
    ex = QAExample("q", "q?", context)
    (f,) = make_features([ex], tokenizer, WindowConfig(64, 16, 8))
    first = next(i for i, o in enumerate(f.offsets) if o)
    out = _peaked(f, first, first + 5, len(f.input_ids))
    pred = decode([ex], [f], [out], version=1, joint=False, max_answer_length=3)["q"]
    assert len(pred.text.split()) <= 3


def test_decode_v2_answers_empty_when_null_score_exceeds_threshold(tokenizer):
    ex = QAExample("q", "q?", "rome is here")
    (f,) = make_features([ex], tokenizer, WindowConfig(64, 16, 8))
    out = _peaked(f, 4, 4, len(f.input_ids))
    out["answerable_logit"] = np.array(1.5, dtype=np.float32)
    assert decode([ex], [f], [out], 2, False, na_threshold=1.0)["q"].text == ""
    kept = decode([ex], [f], [out], 2, False, na_threshold=2.0)["q"]
    assert kept.text != "" and kept.null_score == 1.5


# ---- splits ---------------------------------------------------------------------------------------------
def test_split_articles_is_disjoint_and_deterministic():
    data = toy_squad(10, 2)
    train, dev = split_articles(data, 0.2, seed=3)
    titles = lambda d: {a["title"] for a in d["data"]}  # noqa: E731
    assert len(dev["data"]) == 2 and not titles(train) & titles(dev)
    assert titles(split_articles(data, 0.2, seed=3)[1]) == titles(dev)


def test_limit_questions_keeps_the_first_n():
    assert sum(len(p["qas"]) for a in limit_questions(toy_squad(5, 3), 7)["data"] for p in a["paragraphs"]) == 7


# ---- end to end -----------------------------------------------------------------------------------------
def _config(epochs=4):
    return FinetuneConfig(lr=1e-3, epochs=epochs, batch_size=16, progress=False, device="cpu", layerwise_decay=None)


@pytest.mark.slow
def test_finetune_squad1_learns_toy_task_and_predicts(tmp_path, ckpt):
    train = write_json(tmp_path / "train.json", toy_squad(16, 4))
    dev = write_json(tmp_path / "dev.json", toy_squad(4, 4, seed=1))
    res = finetune_qa(QAParams("squad1", str(ckpt), str(tmp_path / "run"), str(train), str(dev)), _config())
    assert res["best"]["f1"] >= 80.0
    assert evaluate_file(tmp_path / "run", dev) == pytest.approx(res["best"])
    preds = predict_file(tmp_path / "run", dev, tmp_path / "pred")
    assert json.loads((tmp_path / "pred" / "predictions.json").read_text()) == {q: p.text for q, p in preds.items()}
    ranked = answer(tmp_path / "run", "The capital of Italy is Rome. The river runs.", "What is the capital of Italy?",
                    candidates=["river", "Rome", "Paris"])
    assert [c.text for c in ranked][0] == "Rome" and ranked[-1].score == float("-inf")


@pytest.mark.slow
def test_finetune_squad2_stores_threshold_tuned_on_dev(tmp_path, ckpt):
    train = write_json(tmp_path / "train.json", toy_squad(12, 4, v2=True))
    dev = write_json(tmp_path / "dev.json", toy_squad(4, 4, seed=1, v2=True))
    res = finetune_qa(QAParams("squad2", str(ckpt), str(tmp_path / "run"), str(train), str(dev)), _config(2))
    model, _ = load_qa_run(tmp_path / "run")
    assert model.spec["na_threshold"] == pytest.approx(res["best"]["best_f1_thresh"])
    assert {"HasAns_f1", "NoAns_f1", "best_f1"} <= set(res["best"])
    predict_file(tmp_path / "run", dev, tmp_path / "pred")
    assert set(json.loads((tmp_path / "pred" / "na_probs.json").read_text())) == set(
        json.loads((tmp_path / "pred" / "predictions.json").read_text()))


def _need(path):
    if not path.exists():
        pytest.skip("../shared/data not present")
    return path


@pytest.mark.slow
def test_finetune_on_shared_squad_v1_article_split(tmp_path, ckpt):
    data = _need(DATA / "squad" / "v1.1" / "dev-v1.1.json")
    res = finetune_qa(QAParams("squad1", str(ckpt), str(tmp_path / "run"), str(data), dev_fraction=0.1,
                               max_train_questions=48, max_dev_questions=16),
                      FinetuneConfig(lr=1e-3, max_steps=3, batch_size=16, progress=False, device="cpu"))
    assert res["steps"] == 3 and 0.0 <= res["best"]["f1"] <= 100.0
    assert res["data"]["dev_questions"] == 16 and res["data"]["train_windows"] > 48  # long contexts: windows


@pytest.mark.slow
def test_finetune_on_shared_squad_v2_sample(tmp_path, ckpt):
    data = _need(DATA / "squad" / "v2.0-sample.json")
    res = finetune_qa(QAParams("squad2", str(ckpt), str(tmp_path / "run"), str(data), dev_fraction=0.5,
                               max_train_questions=32, max_dev_questions=16),
                      FinetuneConfig(lr=1e-3, max_steps=3, batch_size=16, progress=False, device="cpu"))
    assert "best_f1_thresh" in res["best"]


@pytest.mark.slow
def test_finetune_on_shared_cmrc2018_chinese(tmp_path):
    data = _need(DATA / "cmrc2018" / "cmrc2018_trial.json")
    text = [p["context"] for a in json.loads(data.read_text())["data"][:30] for p in a["paragraphs"]]
    ck = tiny_checkpoint(tmp_path / "zh", extra_text=text)
    res = finetune_qa(QAParams("cmrc2018", str(ck), str(tmp_path / "run"), str(data), dev_fraction=0.05,
                               max_train_questions=32, max_dev_questions=12),
                      FinetuneConfig(lr=1e-3, max_steps=3, batch_size=16, progress=False, device="cpu"))
    assert {"AVERAGE", "F1", "EM"} <= set(res["best"])
    part = write_json(tmp_path / "part.json", limit_questions(json.loads(data.read_text()), 10))
    preds = predict_file(tmp_path / "run", part, None)
    assert len(preds) == 10 and all(p.text == "" or p.text in p.nbest[0]["text"] for p in preds.values())


def test_span_scores_for_candidates_equal_the_beam_scores():
    torch.manual_seed(0)
    head = SpanQAHead(CFG, beam_size=3).eval()
    hidden, batch = torch.randn(1, 10, 16), _batch(batch=1)
    out = head(hidden, batch)
    s, e = int(out["start_top_index"][0, 0]), int(out["end_top_index"][0, 0, 0])
    beam = out["start_top_log_probs"][0, 0] + out["end_top_log_probs"][0, 0, 0]
    got = head.span_log_probs(hidden, batch, torch.tensor([0]), torch.tensor([s]), torch.tensor([e]))
    assert torch.allclose(got[0], beam, atol=1e-5)


@pytest.mark.slow
def test_finetune_with_the_independent_head(tmp_path, ckpt):
    train = write_json(tmp_path / "train.json", toy_squad(4, 4))
    res = finetune_qa(QAParams("squad1", str(ckpt), str(tmp_path / "run"), str(train), str(train), joint=False),
                      FinetuneConfig(lr=1e-3, max_steps=2, batch_size=8, progress=False, device="cpu"))
    model, _ = load_qa_run(tmp_path / "run")
    assert res["steps"] == 2 and model.head.joint is False and "f1" in res["best"]
    ranked = answer(tmp_path / "run", "The capital of Italy is Rome.", "capital?", candidates=["Rome", "Italy"])
    assert all(c.score > -math.inf for c in ranked)


def test_squad2_joint_head_without_classifier_is_refused(tmp_path, ckpt):
    train = write_json(tmp_path / "train.json", toy_squad(2, 2, v2=True))
    with pytest.raises(ElectraError, match="needs the answerability classifier"):
        finetune_qa(QAParams("squad2", str(ckpt), str(tmp_path / "run"), str(train), str(train), answerable=False))
