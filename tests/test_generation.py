"""Generator + discriminator together: mask-predict, spans, generate, detect-and-correct, augmentation."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from electra.checkpoint import load_checkpoint, save_checkpoint, tokenizer_dir
from electra.cli import main
from electra.data.glue import Example
from electra.errors import ElectraError
from electra.generation import (
    Corrector,
    apply_edits,
    augment_file,
    augmenter,
    fill_text,
    generate,
    is_name,
    load_pair,
    mask_predict,
    pair_from_model,
    words_of,
)
from electra.tasks.classification import resolve_task
from electra.tokenization import load_tokenizer
from qa_fixtures import tiny_checkpoint

ZH = "孙悟空大闹天宫"
TEXTS = ["paris is the capital of france", f"{ZH}, paris  and   london", "café naïve résumé: rome  is old",
         "  the river\truns through green hills  ", "Oslo and ROME, ПРИВЕТ where people walk"]


LOOSE = dict(threshold=0.0, min_gain=-1e9, max_new_p=1.0, min_generator_prob=0.0)  # edit wherever possible


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("gen"), extra_text=[ZH, "cafe naive resume"])


@pytest.fixture(scope="module")
def model(ckpt):
    return load_checkpoint(ckpt).eval()


@pytest.fixture(scope="module")
def pair(ckpt, model):
    return pair_from_model(model, load_tokenizer(tokenizer_dir(ckpt)))


def encode_ids(pair, text):
    return pair.tokenizer.encode(text).ids


# ---- mask-predict ------------------------------------------------------------------------------------------
def hand_written_mask_predict(model, tok, ids, positions, T, confidence):
    """Mask-predict as the paper's pseudo-code, written directly against the torch modules."""
    special = [tok.token_to_id(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")]
    mask = tok.token_to_id("[MASK]")
    ids = torch.tensor([ids])
    conf = torch.zeros(len(positions))
    redo = list(range(len(positions)))
    with torch.no_grad():
        for t in range(T):
            for j in redo:
                ids[0, positions[j]] = mask
            logits = model.generator(ids, torch.ones_like(ids), torch.zeros_like(ids))[0].double()
            probs = logits.softmax(-1)
            probs[:, special] = 0
            probs = probs / probs.sum(-1, keepdim=True)
            for j in redo:
                p, tok_id = probs[positions[j]].max(-1)
                ids[0, positions[j]] = tok_id
                conf[j] = p
            if confidence == "discriminator":
                hidden = model.discriminator.encoder(ids, torch.ones_like(ids), torch.zeros_like(ids))
                conf = 1 - torch.sigmoid(model.discriminator.head(hidden)[0].double())[positions]
            n = len(positions) * (T - t - 1) // T
            redo = sorted(torch.argsort(conf, stable=True)[:n].tolist())
    return ids[0].tolist()


@pytest.mark.parametrize("confidence", ["generator", "discriminator"])
def test_mask_predict_equals_a_hand_written_loop(model, pair, confidence):
    ids = encode_ids(pair, "the river runs through green hills and old towns where people walk")
    positions = [2, 3, 4, 7, 8, 10]
    rows, _ = mask_predict(pair, [ids], [positions], iterations=4, confidence=confidence)
    assert rows[0] == hand_written_mask_predict(model, pair.tokenizer, ids, positions, 4, confidence)


def test_one_iteration_is_one_shot_argmax_filling(model, pair):
    ids = encode_ids(pair, "the river runs through green hills")
    rows, _ = mask_predict(pair, [ids], [[2, 3]], iterations=1)
    assert rows[0] == hand_written_mask_predict(model, pair.tokenizer, ids, [2, 3], 1, "generator")


def test_adjacent_masks_are_one_multi_token_span(pair):
    res = fill_text(pair, "the river [MASK] [MASK] [MASK] green hills", iterations=3)
    assert len(res) == 1 and len(res[0].spans) == 1 and res[0].spans[0]["tokens"] == 3
    span = res[0].spans[0]
    assert res[0].text[:span["start"]] == "the river " and res[0].text[span["end"]:] == " green hills"


def test_unknown_length_span_keeps_the_best_length_normalised_candidate(pair):
    got = fill_text(pair, "the river [MASK*] hills", iterations=2, max_span=3)[0]
    fixed = [fill_text(pair, "the river " + " ".join(["[MASK]"] * n) + " hills", iterations=2)[0] for n in (1, 2, 3)]
    best = max(fixed, key=lambda f: f.span_score)
    assert got.text == best.text and got.span_score == pytest.approx(best.span_score)


def test_generate_samples_are_seeded_and_ranked_by_the_discriminator(pair):
    a = generate(pair, "the river", length=4, iterations=3, samples=4, seed=1)
    b = generate(pair, "the river", length=4, iterations=3, samples=4, seed=1)
    assert [x.text for x in a] == [x.text for x in b]
    assert [x.score for x in a] == sorted((x.score for x in a), reverse=True)
    assert all(x.text.startswith("the river ") for x in a)


# ---- detect and correct ------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", TEXTS)
def test_word_offsets_point_at_the_original_characters(pair, text):
    for w in words_of(pair.tokenizer, text):
        assert pair.tokenizer.encode(text[w.start:w.end], add_special_tokens=False).ids == w.ids


@pytest.mark.parametrize("text", TEXTS)
def test_text_without_flagged_words_is_returned_byte_identical(pair, text):
    res = Corrector(pair, threshold=1.0).correct(text)
    assert res.edits == [] and res.text == text and res.text.encode() == text.encode()


@pytest.mark.parametrize("text", TEXTS)
def test_edits_applied_to_the_input_give_the_output(pair, text):
    res = Corrector(pair, **LOOSE, top_k=5, rounds=2).correct(text)  # edits everywhere
    assert res.edits, "the test needs edits"
    assert apply_edits(text, res.edits) == res.text
    for e in res.edits:
        assert text[e.start:e.end] == e.original and e.replacement != e.original
    kept = [text[a.end:b.start] for a, b in zip(res.edits, res.edits[1:])]
    assert all(k in res.text for k in kept)


def test_a_fix_the_discriminator_still_finds_replaced_is_not_kept(pair):
    loose = Corrector(pair, **LOOSE)
    strict = Corrector(pair, threshold=0.0, min_gain=-1e9, max_new_p=0.0, min_generator_prob=0.0)
    text = "paris is the capital of france"
    assert loose.correct(text).edits and strict.correct(text).edits == []


@pytest.mark.parametrize("text, word, expected", [
    ("we met Paris in town", "Paris", True), ("Paris is old", "Paris", False),
    ("It rained. Paris is old", "Paris", False),
    ('he said: "Rome is old"', "Rome", True), ('It ended. "Rome is old"', "Rome", False),
    ("北京很大。 Rome is old", "Rome", False), ("we met paris in town", "paris", False)])
def test_a_capitalised_word_inside_a_sentence_is_taken_for_a_name(pair, text, word, expected):
    w = next(w for w in words_of(pair.tokenizer, text) if text[w.start:w.end] == word)
    assert is_name(text, w) is expected


def test_names_get_no_generator_proposals_unless_asked(pair):
    text = "we met Paris in the town"
    start = text.index("Paris")
    kept = Corrector(pair, **LOOSE).correct(text)
    edited = Corrector(pair, **LOOSE, keep_names=False).correct(text)
    assert kept.edits and all(e.start != start for e in kept.edits)
    assert any(e.start == start for e in edited.edits)


def test_cli_correct_defaults_are_the_library_defaults():
    import inspect

    from electra.cli import build_parser

    args = build_parser().parse_args(["correct", "--model", "m", "text"])
    params = inspect.signature(Corrector).parameters
    for name in ("threshold", "top_k", "rounds", "max_new_p", "min_generator_prob"):
        assert getattr(args, name) == params[name].default, name
    assert (not args.edit_names) is params["keep_names"].default


def test_corrections_only_use_the_given_vocabulary(pair):
    vocab = ["rome", "oslo", "green river"]
    res = Corrector(pair, **LOOSE, vocabulary=vocab).correct("paris is the capital of france")
    assert res.edits and {e.replacement for e in res.edits} <= set(vocab)


def test_nbest_correction_takes_words_from_the_other_hypotheses_only(pair):
    res = Corrector(pair, **LOOSE).correct("paris is the capital of france",
                                                              ["paris is the capital of spain",
                                                               "rome is a capital of france"])
    assert res.edits and {(e.original, e.replacement) for e in res.edits} <= {("france", "spain"),
                                                                               ("paris", "rome"), ("the", "a")}


def test_text_longer_than_the_positions_is_corrected_in_windows(pair):
    short = dataclasses.replace(pair, max_len=8)
    text = "the river runs through green hills and old towns where people walk every day"
    res = Corrector(short, **LOOSE, top_k=3).correct(text)
    assert res.windows == 3 and apply_edits(text, res.edits) == res.text


def test_empty_text_is_a_one_line_error(pair):
    with pytest.raises(ElectraError, match="empty text"):
        Corrector(pair).correct("  ")
    with pytest.raises(ElectraError, match="empty text"):
        fill_text(pair, "")


def test_fill_longer_than_the_positions_is_a_one_line_error(pair):
    with pytest.raises(ElectraError, match="the model takes at most 8"):
        fill_text(dataclasses.replace(pair, max_len=8), "the river runs through green hills [MASK] and old towns")


def test_a_checkpoint_without_generator_is_refused_with_one_line(ckpt, model, tmp_path, capsys):
    save_checkpoint(model, tmp_path / "disc", tokenizer_dir=tokenizer_dir(ckpt), has_generator=False)
    with pytest.raises(ElectraError, match="no generator"):
        load_pair(tmp_path / "disc")
    for cmd in (["correct", "paris is old"], ["generate", "--prompt", "paris"], ["fill", "paris [MASK*]"]):
        with pytest.raises(SystemExit) as e:
            main([cmd[0], "--model", str(tmp_path / "disc"), *cmd[1:]])
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.count("\n") == 1 and "no generator" in err


def test_cli_correct_streams_a_file_as_json_lines(ckpt, tmp_path, capsys):
    (tmp_path / "in.txt").write_text("paris is old\n\n孙悟空 and rome\n", encoding="utf-8")
    with pytest.raises(SystemExit) as e:
        main(["correct", "--model", str(ckpt), "--json", "--threshold", "1", "--input", str(tmp_path / "in.txt")])
    assert e.value.code == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["text"] for x in lines] == ["paris is old", "", "孙悟空 and rome"]


def test_cli_nbest_line_that_is_not_a_list_names_file_and_line(ckpt, tmp_path, capsys):
    (tmp_path / "nb.jsonl").write_text('["paris is old", "rome is old"]\n{"a": 1}\n')
    with pytest.raises(SystemExit):
        main(["correct", "--model", str(ckpt), "--nbest", "--input", str(tmp_path / "nb.jsonl")])
    assert "nb.jsonl:2: expected a JSON list" in capsys.readouterr().err


# ---- augmentation ---------------------------------------------------------------------------------------------
def test_augment_file_keeps_the_input_and_adds_labelled_copies(pair, tmp_path):
    src = tmp_path / "train.tsv"
    src.write_text("sentence\tlabel\nthe river runs through green hills \t1\npeople walk every day\t0\n")
    n, new = augment_file(pair, resolve_task("sst2"), src, tmp_path / "aug.tsv", copies=2, seed=0)
    lines = (tmp_path / "aug.tsv").read_text().splitlines()
    assert n == 2 and 1 <= new <= 4 and len(lines) == 3 + new
    assert lines[:3] == src.read_text().splitlines()
    originals = {ln.split("\t")[0].strip(): ln.split("\t")[1] for ln in lines[1:3]}
    for ln in lines[3:]:
        text, label = ln.split("\t")
        assert text.strip() not in originals and label in originals.values()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aug.tsv", "train.tsv"]


def test_augmenter_gives_copies_of_both_texts_with_the_label_kept(pair):
    example = Example(("the river runs through green hills", "people walk every day"), "1", "g7")
    new = augmenter(pair)([example], 2, 0)
    assert 1 <= len(new) <= 2 and [e.guid for e in new] == [f"g7-aug{k}" for k in range(len(new))]
    for e in new:
        assert e.label == "1" and all(a != b for a, b in zip(e.texts, example.texts))


# ---- fine-tuning with augmentation and a hyperparameter search ------------------------------------------------
def sst2_like(folder):
    rng = np.random.default_rng(0)
    folder.mkdir()
    for split, n in (("train", 12), ("dev", 8)):
        rows = ["sentence\tlabel"]
        for _ in range(n):
            pos = rng.random() < 0.5
            rows.append(f"the {'green' if pos else 'old'} river runs through hills\t{int(pos)}")
        (folder / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    return folder


@pytest.mark.slow
def test_finetune_search_with_augment_writes_trials_and_the_best_run_is_evaluated(ckpt, tmp_path, capsys):
    data = sst2_like(tmp_path / "data")
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        main(["finetune", "--task", "sst2", "--model", str(ckpt), "--data", str(data), "--out", str(out),
              "--augment", "1", "--search", "lr=1e-3,3e-3;epochs=1", "--seeds", "2", "--batch-size", "8",
              "--device", "cpu", "--quiet"])
    assert e.value.code == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    rows = (out / "trials.tsv").read_text().splitlines()
    assert rows[0].split("\t")[:3] == ["trial", "lr", "epochs"] and len(rows) == 3
    best_row = next(r.split("\t") for r in rows[1:] if r.endswith("*"))
    assert best_row[0] == summary["best_trial"]
    seed_results = [json.loads((out / f"seed-{s}" / "results.json").read_text()) for s in (42, 43)]
    assert all(r["train_examples"] > 12 for r in seed_results)  # the augmented copies were trained on
    with pytest.raises(SystemExit):
        main(["evaluate", "--ensemble", str(out), "--data", str(data), "--json"])
    ev = json.loads(capsys.readouterr().out)
    assert ev["runs"] == 2 and ev["examples"] == 8
    assert json.loads((out / "results.json").read_text())["runs"] == [str(out / "seed-42"), str(out / "seed-43")]


def test_mask_predict_and_correct_give_the_same_on_the_onnx_backend(ckpt, pair):
    pytest.importorskip("onnxruntime")
    onnx = load_pair(ckpt, backend="onnx")
    text = "the river [MASK] [MASK] green hills"
    assert fill_text(onnx, text, iterations=3)[0].text == fill_text(pair, text, iterations=3)[0].text
    got = Corrector(onnx, **LOOSE).correct("paris is the capital of france")
    assert got.to_dict()["text"] == Corrector(pair, **LOOSE).correct("paris is the capital of france").text
