"""Generation, scoring, serving and embedding init with a Unigram (SentencePiece / Metaspace) tokenizer, whose
special tokens are XLM-R's (``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3, ``<mask>`` the last id), on English
and Chinese text: the roles come from the tokenizer, never from ``[CLS]``-style strings or the ids 0-4."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import torch

from electra.checkpoint import load_checkpoint, save_checkpoint
from electra.config import ModelConfig
from electra.errors import ElectraError
from electra.generation import (
    Corrector,
    apply_edits,
    augment_text,
    detect,
    fill_encoded,
    fill_mask,
    fill_text,
    pair_from_model,
    torch_runner,
    words_of,
)
from electra.generation.correction import is_cjk
from electra.generation.fill import encode_masked, mask_markers
from electra.inference import load_model
from electra.init.embeddings import init_word_embeddings
from electra.init.wordvectors import complete_vectors
from electra.modeling import Electra
from electra.pipelines import pipelines_for
from electra.scoring import Scorer
from electra.tokenization import load_tokenizer, special_tokens, train_tokenizer, vocab_tokens

CORPUS = Path(__file__).parent / "fixtures" / "corpus"
EN = "The capital of France is Paris, and  the river runs through it."
ZH = "孙悟空大闹天宫，我们在北京学习数学。"
PADDED_ROWS = 7  # embedding rows past the tokenizer's ids, as multilingual-e5 has (250,037 rows, 250,002 ids)
LOOSE = dict(threshold=0.0, min_gain=-1e9, max_new_p=1.0, min_generator_prob=0.0)  # edit wherever possible


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    lines = [line for name in ("tiny-en.txt", "tiny-zh.txt")
             for line in (CORPUS / name).read_text(encoding="utf-8").splitlines() if line.strip()]
    out = tmp_path_factory.mktemp("tok") / "unigram"
    train_tokenizer(lines, out, 1500, model="unigram", show_progress=False)
    return out


@pytest.fixture(scope="module")
def tok(tok_dir):
    return load_tokenizer(tok_dir)


@pytest.fixture(scope="module")
def ckpt(tok_dir, tok, tmp_path_factory):
    torch.manual_seed(0)
    cfg = ModelConfig.preset("tiny", vocab_size=tok.get_vocab_size() + PADDED_ROWS,
                             pad_token_id=special_tokens(tok).pad_id)
    return save_checkpoint(Electra(cfg), tmp_path_factory.mktemp("ckpt") / "uni", tokenizer_dir=tok_dir)


@pytest.fixture(scope="module")
def model(ckpt):
    return load_checkpoint(ckpt).eval()


@pytest.fixture(scope="module")
def pair(model, tok):
    return pair_from_model(model, tok)


def test_the_fixture_tokenizer_has_xlmr_special_ids(tok):
    roles = special_tokens(tok)
    assert (roles.cls_id, roles.pad_id, roles.sep_id, roles.unk_id) == (0, 1, 2, 3)
    assert roles.mask == "<mask>" and roles.mask_id == tok.get_vocab_size() - 1
    assert tok.token_to_id("[MASK]") is None and tok.token_to_id("[CLS]") is None


# ---- detect --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", [EN, ZH, f"{ZH} {EN}"])
def test_detect_gives_each_token_a_score_and_its_characters(model, tok, text):
    d = detect(model, tok, text)
    enc = tok.encode(text)
    assert d.tokens == enc.tokens[1:-1] and len(d.replaced_prob) == len(d.tokens) == len(d.offsets)
    for token, (s, e) in zip(d.tokens, d.offsets):
        # each token's characters are the token (as normalised: NFKC turns "，" into ","), its ▁ less the space
        assert tok.normalizer.normalize_str(text[s:e]) == token.removeprefix("\u2581")
    filled = [(s, e) for s, e in d.offsets if e > s]
    assert "".join(text[s:e] for s, e in filled) == "".join(text.split())  # every character once, in order


# ---- fill ----------------------------------------------------------------------------------------------
def test_our_mask_marker_and_the_tokenizers_own_mask_give_the_same_candidates(model, tok):
    ours = fill_mask(model, tok, "the capital of france is [MASK] and [MASK].", top_k=8)
    own = fill_mask(model, tok, "the capital of france is <mask> and<mask>.", top_k=8)
    assert len(ours) == 2 and ours == own


def test_mask_markers_write_the_tokenizers_mask_as_a_whole_word(tok):
    assert mask_markers(tok, "hello [MASK], [MASK*] and  <mask>") == "hello<mask>, [MASK*] and<mask>"
    enc = encode_masked(tok, "hello [MASK]", 64)
    assert enc.tokens[-2] == "<mask>" and enc.tokens[-3] != "\u2581"  # no lone ▁ before the mask


def test_fill_never_proposes_a_special_token_or_a_row_past_the_vocabulary(ckpt, tok):
    model = load_checkpoint(ckpt).eval()
    roles = special_tokens(tok)
    banned = sorted(roles.all_ids) + list(range(tok.get_vocab_size(), model.config.discriminator.vocab_size))
    with torch.no_grad():
        model.generator.head.bias[banned] = 50.0  # the most probable tokens by far, were they allowed
    enc = encode_masked(tok, "the capital of france is [MASK].", 64)
    cands = fill_encoded(torch_runner(model, "generator"), tok, [enc], top_k=20)[0][0]
    assert len(cands) == 20 and not {c["token"] for c in cands} & set(banned)
    assert all(c["token_str"] == tok.decode([c["token"]]) and "<" not in c["sequence"] for c in cands)


def test_fill_text_spans_take_the_tokenizers_own_mask_too(pair):
    ours = fill_text(pair, "the river flows into the [MASK] [MASK] near paris.", iterations=2)
    own = fill_text(pair, "the river flows into the <mask> <mask> near paris.", iterations=2)
    assert [f.to_dict() for f in ours] == [f.to_dict() for f in own]
    span = ours[0].spans[0]
    assert span["tokens"] == 2 and ours[0].text[span["start"]:span["end"]] == span["text"]
    assert ours[0].text.startswith("the river flows into the ") and ours[0].text.endswith(" near paris.")


def without_mask(tok_dir: Path, out: Path) -> Path:
    """A copy of the tokenizer folder whose files name no mask token (``<mask>`` stays in the vocabulary)."""
    out.mkdir()
    for f in tok_dir.iterdir():
        settings = f.read_text(encoding="utf-8")
        if f.name in ("special_tokens_map.json", "tokenizer_config.json"):
            settings = json.dumps({k: v for k, v in json.loads(settings).items() if k != "mask_token"})
        (out / f.name).write_text(settings, encoding="utf-8")
    return out


def test_a_tokenizer_without_a_mask_token_is_a_one_line_error(tok_dir, model, tmp_path):
    tok = load_tokenizer(without_mask(tok_dir, tmp_path / "tok"))
    with pytest.raises(ElectraError, match=r"^the tokenizer has no mask token \(filling needs one\)"):
        fill_mask(model, tok, "hello [MASK]")


# ---- correct -------------------------------------------------------------------------------------------
def test_english_words_start_at_a_piece_with_the_word_mark(tok):
    text = "the cat sat  on the mat. "  # "▁the ▁ca t ▁ s at ▁on ▁the ▁ma t . ▁"
    assert [text[w.start:w.end] for w in words_of(tok, text)] == ["the", "cat", "sat", "on", "the", "mat", "."]


def test_chinese_words_are_pieces_at_their_characters(tok):
    words = words_of(tok, ZH)
    pieces = [t for t in tok.encode(ZH, add_special_tokens=False).tokens if t != "\u2581"]
    assert "".join(ZH[w.start:w.end] for w in words) == ZH  # every character once, in order, no gaps
    assert len(words) == len(pieces) and any(w.end - w.start > 1 for w in words)  # one piece each ("我们")
    assert all(w.kind == "cjk" for w in words if is_cjk(ZH[w.start:w.end]))
    assert [ZH[w.start:w.end] for w in words if w.kind != "cjk"] == ["，", "。"]


@pytest.mark.parametrize("text", [EN, ZH, f"{ZH} {EN}", ZH[8:]])  # ZH[8:]: "我们…" (no unknown piece first)
def test_correction_edits_slice_the_original_text(pair, text):
    result = Corrector(pair, rounds=1, **LOOSE).correct(text)
    assert result.edits and apply_edits(text, result.edits) == result.text
    for e in result.edits:
        assert text[e.start:e.end] == e.original and e.original.strip() == e.original and e.replacement
        if is_cjk(e.original):
            assert is_cjk(e.replacement) and " " not in e.replacement


def test_a_planted_chinese_character_is_edited_at_its_own_position(pair):
    at = ZH.index("京")
    planted = ZH[:at] + "学" + ZH[at + 1:]  # 北京学习 -> 北学学习: one piece per character
    result = Corrector(pair, rounds=1, **LOOSE).correct(planted)
    edit = next(e for e in result.edits if e.start <= at < e.end)
    assert (edit.start, edit.end, edit.original) == (at, at + 1, "学") and is_cjk(edit.replacement)


def test_proposals_for_a_word_after_a_lone_space_mark_keep_the_mark(pair, tok):
    text = ZH[8:]  # "▁" "我们" "在" ...: the first word is the lone mark and one piece
    words = words_of(tok, text)
    mark = tok.token_to_id("\u2581")
    assert words[0].ids[0] == mark and len(words[0].ids) == 2 and words[0].kind == "cjk"
    ids, spans = [special_tokens(tok).cls_id], []
    for w in words:
        spans.append((len(ids), len(ids) + len(w.ids)))
        ids += w.ids
    ids.append(special_tokens(tok).sep_id)
    cands = Corrector(pair, top_k=5, **LOOSE)._generator_candidates(ids, 0, spans, "cjk")
    assert len(cands) == 5 and all(c[0] == mark and len(c) == 2 and is_cjk(tok.decode(c[1:])) for c in cands)


def test_augmented_chinese_text_takes_characters_for_characters_and_punctuation_for_punctuation(pair):
    text = ZH[8:]
    copies = augment_text(pair, text, 3, np.random.default_rng(0), mask_prob=0.3)
    assert copies and all(c != text for c in copies)
    assert all(is_cjk(ch) or unicodedata.category(ch)[0] in "PS" for c in copies for ch in c)  # no " ", no "the"


# ---- score ---------------------------------------------------------------------------------------------
def test_pll_masks_each_token_with_the_tokenizers_mask(ckpt, model, tok):
    scorer = Scorer(load_model(ckpt))
    s = scorer.score("pll", [EN])[0]
    ids = torch.tensor([tok.encode(EN).ids])
    assert s.tokens == tok.encode(EN).tokens[1:-1]
    total = 0.0
    for p in range(1, ids.shape[1] - 1):
        masked = ids.clone()
        masked[0, p] = special_tokens(tok).mask_id
        with torch.no_grad():
            total += model.generator(masked)[0, p].double().log_softmax(-1)[ids[0, p]].item()
    assert s.score == pytest.approx(total, abs=1e-5)


# ---- serve ---------------------------------------------------------------------------------------------
def test_the_server_warms_up_fills_and_corrects_with_a_unigram_model(ckpt, tok):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from electra.serve.app import create_app

    with TestClient(create_app({"uni": load_model(ckpt)})) as c:  # the lifespan warms every pipeline up
        assert c.get("/ready").status_code == 200
        info = c.get("/info").json()["models"][0]
        assert info["mask_token"] == "<mask>" and info["tasks"] == ["detect", "fill", "correct", "rescore"]
        ours = c.post("/v1/fill", json={"text": "the capital of france is [MASK].", "top_k": 5})
        own = c.post("/v1/fill", json={"text": "the capital of france is <mask>.", "top_k": 5})
        assert ours.status_code == 200 and ours.json() == own.json() and len(ours.json()) == 5
        assert not {x["token"] for x in ours.json()} & special_tokens(tok).all_ids
        refused = c.post("/v1/fill", json={"text": "no mask here"})
        assert refused.status_code == 422 and "<mask>" in refused.json()["error"]
        for text in (EN, ZH):
            fixed = c.post("/v1/correct", json={"text": text, "threshold": 0.0, "min_generator_prob": 0.0,
                                                "max_new_p": 1.0}).json()
            assert fixed["edits"] and all(text[e["start"]:e["end"]] == e["original"] for e in fixed["edits"])
        found = c.post("/v1/detect", json={"text": ZH}).json()
        assert found["tokens"] == tok.encode(ZH).tokens[1:-1] and len(found["replaced_prob"]) == len(found["tokens"])
        ranked = c.post("/v1/rescore", json={"candidates": [EN, ZH], "method": "pll"})
        assert ranked.status_code == 200 and sorted(ranked.json()["ranking"]) == [0, 1]


def test_a_model_whose_tokenizer_has_no_mask_serves_no_fill_or_correct(ckpt, tok_dir, tmp_path):
    no_mask = without_mask(tok_dir, tmp_path / "tok")
    plain = save_checkpoint(load_checkpoint(ckpt), tmp_path / "ckpt", tokenizer_dir=no_mask)
    assert sorted(pipelines_for(load_model(plain))) == ["detect", "rescore"]


# ---- embedding init ------------------------------------------------------------------------------------
def test_word_vectors_initialise_word_start_pieces_not_continuations_or_specials(tok_dir, tok, tmp_path):
    vocab = vocab_tokens(tok)
    words = [t[1:] for t in vocab if t.startswith("\u2581") and t[1:].isalpha() and t[1:].islower()][:5]
    cont = next(t for t in vocab if t.isalpha() and t.islower() and len(t) > 1)  # a piece inside words ("ance")
    rng = np.random.default_rng(0)
    (tmp_path / "v.txt").write_text("".join(w + " " + " ".join(f"{x:.5f}" for x in rng.standard_normal(32)) + "\n"
                                            for w in [*words, cont, "<s>", "<mask>"]), encoding="utf-8")
    torch.manual_seed(0)
    model = Electra(ModelConfig.preset("tiny", vocab_size=len(vocab), embedding_size=32))
    table = model.discriminator.encoder.embeddings.word_embeddings.weight
    before = table.detach().clone()
    report = init_word_embeddings(model, tmp_path / "v.txt", tok_dir)
    changed = {vocab[i] for i in range(len(vocab)) if not torch.equal(before[i], table[i].detach())}
    # a word-start piece takes its word's vector (exactly, else lower-cased: "▁The" from "the")
    expected = {t for t in vocab if t.startswith("\u2581") and t[1:].lower() in {*words, cont}}
    assert {"\u2581" + w for w in words} <= changed and changed == expected and report.covered == len(expected)
    assert cont not in changed and not changed & {"<s>", "<mask>"}
    assert "pieces without \u2581" in report.format()


def test_a_unigram_piece_takes_the_vector_of_its_word_start_twin():
    vocab = ["<s>", "<pad>", "\u2581ab", "ab", "\u2581cd", "zz"]
    learned = {"ab": np.ones(4, np.float32), "\u2581cd": np.full(4, 2.0, np.float32), "<s>": np.zeros(4, np.float32)}
    _, sources = complete_vectors(vocab, learned, 4, special={"<s>", "<pad>"}, marker="\u2581")
    assert sources == ["random", "random", "twin", "learned", "learned", "random"]


def test_word_vectors_trained_over_unigram_pieces_keep_special_tokens_random(tok_dir, tok, tmp_path):
    pytest.importorskip("gensim", reason="electra wordvectors needs gensim (pip install 'electra[wordvectors]')")
    from electra.init.wordvectors import train_word_vectors

    out = tmp_path / "v.txt"
    report = train_word_vectors([CORPUS / "tiny-en.txt", CORPUS / "tiny-zh.txt"], out, tok_dir, dim=8, epochs=1,
                                progress=False)
    vocab = vocab_tokens(tok)
    assert report.vocab_size == len(vocab) and report.learned + report.twin + report.random == len(vocab)
    assert report.twin > 0  # a piece seen only as "▁ab" (or "ab") gives its vector to the other
    model = Electra(ModelConfig.preset("tiny", vocab_size=len(vocab), embedding_size=8))
    init = init_word_embeddings(model, out, tok_dir)
    assert init.vocabulary_complete and init.covered == len(vocab) - len(special_tokens(tok).all_ids)
