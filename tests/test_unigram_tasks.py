"""The tasks on a SentencePiece Unigram tokenizer (XLM-R's roles: ``<s>``=0, ``<pad>``=1, ``</s>``=2, ``<unk>``=3,
``<mask>`` last): QA spans, tagging labels, padding, fine-tuning, vocabulary checks and the transformers export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from electra.checkpoint import save_checkpoint
from electra.config import ModelConfig
from electra.data.conll import IGNORE, Sentence, make_tag_features
from electra.data.glue import Example, custom_task
from electra.data.squad import Answer, QAExample, WindowConfig, make_features, marker_ids
from electra.errors import ElectraError
from electra.modeling import Electra
from electra.tasks.classification import TrainBatches, augment, continuation_mask, encode, finetune_task
from electra.tasks.qa import QAParams, decode, finetune_qa
from electra.tasks.ranking import RankingOptions, finetune_ranking
from electra.tasks.runner import FinetuneConfig, TaskModel, load_run_with_tokenizer
from electra.tasks.tagging import TagParams, batches, finetune_tagging
from electra.tokenization import load_tokenizer, special_tokens, train_tokenizer
from qa_fixtures import toy_squad, write_json
from rescoring_fixtures import FIX

CORPUS = Path(__file__).parent / "fixtures" / "corpus"
CUSTOM = custom_task(["a", "b"], "y")
FAST = FinetuneConfig(lr=1e-3, max_steps=2, batch_size=8, progress=False, device="cpu", tensorboard=False)
ENGLISH = [" The capital of  France is Paris, and Rome is old.", "Paris is the capital; it lies on the Seine."]
CHINESE = ["北京是中国的首都。", "数学是利用符号语言研究數量、结构、变化以及空间等概念的一門学科。",
           "他说 Hello 北京 world 了"]


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    lines = [ln for f in ("tiny-en.txt", "tiny-zh.txt") for ln in (CORPUS / f).read_text().splitlines()]
    lines += ["他说北京是中国的首都。"] * 20  # a multi-character piece (中国) that no line starts with
    out = tmp_path_factory.mktemp("unigram") / "tok"
    train_tokenizer(lines, out, 1500, model="unigram", show_progress=False)
    return out


@pytest.fixture(scope="module")
def tok(tok_dir):
    return load_tokenizer(tok_dir)


@pytest.fixture(scope="module")
def ckpt(tok_dir, tok):
    torch.manual_seed(0)
    model = Electra(ModelConfig.preset("tiny", vocab_size=tok.get_vocab_size()))
    return save_checkpoint(model, tok_dir.parent / "ckpt", tokenizer_dir=tok_dir)


def test_the_fixture_has_xlmr_roles_and_bare_word_start_pieces(tok):
    roles = special_tokens(tok)
    assert (roles.cls_id, roles.pad_id, roles.sep_id, roles.unk_id) == (0, 1, 2, 3)
    assert roles.mask_id == tok.get_vocab_size() - 1
    assert tok.encode("中国", add_special_tokens=False).tokens == ["▁", "中国"]  # what the mappings must handle
    assert marker_ids(tok) == {tok.token_to_id("▁")}


# ---- QA: answers recovered from token spans -------------------------------------------------------------
def _answer_spans(tok, context: str) -> list[tuple[int, int]]:
    """Candidate gold answers: runs of 1-3 space-separated words, or (no spaces: Chinese) of 1-3 pieces."""
    units = [(m.start(), m.end()) for m in re.finditer(r"\S+", context)]
    if len(units) < 3:
        enc = tok.encode(context, add_special_tokens=False)
        units = [(s, e) for t, (s, e) in zip(enc.tokens, enc.offsets) if t.strip("▁") and context[s:e].strip()]
    return [(units[i][0], units[j][1]) for i in range(len(units)) for j in range(i, min(i + 3, len(units)))]


def _predicted(f, n):
    """Independent-head outputs peaked at the feature's target span."""
    start, end = np.full(n, -10.0), np.full(n, -10.0)
    start[f.start], end[f.end] = 5.0, 5.0
    return {"start_logits": start, "end_logits": end}


@pytest.mark.parametrize("context", ENGLISH + CHINESE)
def test_qa_gold_answer_is_recovered_exactly_from_the_predicted_span(tok, context):
    spans = _answer_spans(tok, context)
    assert len(spans) >= 6
    for a, b in spans:
        ex = QAExample("q", "什么 what?", context, [Answer(context[a:b], a)])
        (f,) = make_features([ex], tok, WindowConfig(96, 32, 16), training=True)
        assert f.start > 0, context[a:b]
        pred = decode([ex], [f], [_predicted(f, len(f.input_ids))], version=1, joint=False)["q"]
        assert (pred.text, pred.start, pred.end) == (context[a:b], a, b)


def test_qa_windows_are_built_from_the_role_ids(tok):
    roles = special_tokens(tok)
    ex = QAExample("q", "首都?", CHINESE[0])
    (f,) = make_features([ex], tok, WindowConfig(64, 16, 8))
    q = len(tok.encode("首都?", add_special_tokens=False).ids)
    assert f.input_ids[0] == roles.cls_id and f.input_ids[q + 1] == roles.sep_id and f.input_ids[-1] == roles.sep_id
    assert f.token_type_ids == [0] * (q + 2) + [1] * (len(f.input_ids) - q - 2)
    assert f.pad_id == roles.pad_id == 1


def test_a_bare_word_start_piece_is_never_a_predicted_start_or_end(tok):
    context = "中国的首都"
    ex = QAExample("q", "what?", context)
    (f,) = make_features([ex], tok, WindowConfig(64, 16, 8))
    bare = len(tok.encode("what?", add_special_tokens=False).ids) + 2  # the context's first piece
    assert f.input_ids[bare] == tok.token_to_id("▁") and f.offsets[bare] is None and f.offsets[bare + 1] == (0, 2)
    start, end = np.full(len(f.input_ids), -10.0), np.full(len(f.input_ids), -10.0)
    start[bare], end[bare], start[bare + 1], end[bare + 1] = 9.0, 9.0, 5.0, 5.0
    pred = decode([ex], [f], [{"start_logits": start, "end_logits": end}], version=1, joint=False)["q"]
    assert (pred.text, pred.start, pred.end) == ("中国", 0, 2)


# ---- tagging --------------------------------------------------------------------------------------------
def test_tagging_gives_each_word_its_own_pieces_and_labels_its_first_real_piece(tok):
    words = ["Paris", "capital", "中国", "是", "北京", "of", "France"]
    labels = ["B-LOC", "O", "B-LOC", "O", "B-LOC", "O", "B-LOC"]
    (f,) = make_tag_features([Sentence(words, labels, 1)], tok, {"O": 0, "B-LOC": 1})
    roles, bare = special_tokens(tok), tok.token_to_id("▁")
    assert f.input_ids[0] == roles.cls_id and f.input_ids[-1] == roles.sep_id
    assert bare in f.input_ids and all(f.input_ids[t] != bare for t in f.first_tokens)
    starts = [t - (f.input_ids[t - 1] == bare) for t in f.first_tokens] + [len(f.input_ids) - 1]
    pieces = [f.input_ids[a:b] for a, b in zip(starts, starts[1:])]
    assert pieces == [tok.encode(w, add_special_tokens=False).ids for w in words]
    assert [f.labels[t] for t in f.first_tokens] == [1, 0, 1, 0, 1, 0, 1]
    assert sum(label != IGNORE for label in f.labels) == len(words)


def test_tagging_batches_pad_with_the_pad_id(tok):
    feats = make_tag_features([Sentence(["Paris"], ["O"], 1), Sentence(["the", "capital", "北京"], ["O"] * 3, 2)],
                              tok, {"O": 0})
    (batch,) = batches(feats, 8, training=True)
    pad = batch["attention_mask"] == 0
    assert pad.any() and (batch["input_ids"][pad] == 1).all() and (batch["labels"][pad] == IGNORE).all()


# ---- classification and ranking: padding, augmentation, a fine-tuning step --------------------------------
@pytest.fixture
def seen_batches(monkeypatch):
    """The batches the task model is trained and evaluated on."""
    seen = []
    forward = TaskModel.forward

    def spy(self, batch):
        seen.append({k: v.detach().cpu().clone() for k, v in batch.items() if torch.is_tensor(v)})
        return forward(self, batch)

    monkeypatch.setattr(TaskModel, "forward", spy)
    return seen


def _padded_with(seen, pad_id: int) -> bool:
    masks = [(b["input_ids"], b["attention_mask"] == 0) for b in seen]
    return any(m.any() for _, m in masks) and all((ids[m] == pad_id).all() for ids, m in masks)


def _pairs_of_varied_length(folder: Path) -> Path:
    """The custom pair task of test_classification, with texts of different lengths (so batches need padding)."""
    folder.mkdir()
    for split in ("train", "dev"):
        rows = [f"the film is {'very ' * (i % 4)}{'good' if i % 2 else 'bad'}\t北京\t{'pos' if i % 2 else 'neg'}"
                for i in range(12)]
        (folder / f"{split}.tsv").write_text("a\tb\ty\n" + "\n".join(rows) + "\n")
    return folder


def test_classification_finetunes_with_batches_padded_with_the_pad_id(ckpt, tmp_path, seen_batches):
    res = finetune_task(CUSTOM, ckpt, _pairs_of_varied_length(tmp_path / "data"), tmp_path / "run", FAST)
    assert res["steps"] == 2 and seen_batches
    assert _padded_with(seen_batches, 1)
    assert all((b["input_ids"][:, 0] == 0).all() for b in seen_batches)  # <s> first


def test_ranking_finetunes_with_batches_padded_with_the_pad_id(ckpt, tmp_path, seen_batches):
    data = tmp_path / "mutual"
    data.mkdir()
    for split in ("train", "dev"):
        (data / f"{split}.jsonl").write_text((FIX / "mutual_dev_head.jsonl").read_text())
    res = finetune_ranking("mutual", ckpt, data, tmp_path / "run", FAST, RankingOptions(max_seq_len=48, dev_limit=2))
    assert res["steps"] == 2 and _padded_with(seen_batches, 1)


def test_qa_finetunes_a_step_on_the_unigram_checkpoint(ckpt, tmp_path, seen_batches):
    train = write_json(tmp_path / "train.json", toy_squad(2, 4))
    params = QAParams("squad1", str(ckpt), str(tmp_path / "run"), str(train), str(train), max_seq_length=64)
    res = finetune_qa(params, FAST)
    assert res["steps"] == 2 and _padded_with(seen_batches, 1)


def test_tagging_finetunes_a_step_on_the_unigram_checkpoint(ckpt, tmp_path):
    conll = tmp_path / "t.txt"
    conll.write_text("北京 B-LOC\n是 O\n首都 O\n\nParis B-LOC\nis O\nold O\n\nRome B-LOC\n\n")
    res = finetune_tagging(TagParams("tags", str(ckpt), str(tmp_path / "run"), str(conll), str(conll)), FAST)
    assert res["steps"] == 2
    model, tokenizer = load_run_with_tokenizer(tmp_path / "run", ("tags",), "tagging")
    assert special_tokens(tokenizer).pad_id == 1


def test_augmentation_drops_whole_sentencepiece_words_and_keeps_special_tokens(tok):
    text = "the capital of France is Paris and the river runs through old towns"
    (f,) = encode(tok, [Example((text,), None, "0")], None)
    roles = special_tokens(tok)
    batches_ = TrainBatches([f], 1, 0, roles.pad_id, tok, token_dropout=0.4, word_swap=0.0)
    assert batches_.special == set(roles.all_ids)
    cont = continuation_mask(tok)
    capital = tok.encode("capital", add_special_tokens=False).ids
    assert len(capital) > 1 and cont[capital].tolist() == [False] + [True] * (len(capital) - 1)
    rng = np.random.default_rng(0)
    for _ in range(5):
        ids, _types = augment(f["input_ids"], f["token_type_ids"], cont, batches_.special, rng, 0.4, 0.0)
        assert ids[0] == roles.cls_id and ids[-1] == roles.sep_id
        kept = tok.decode(ids[1:-1]).split()
        assert kept and set(kept) <= set(text.split())


# ---- vocabulary checks ----------------------------------------------------------------------------------
def test_a_tokenizer_with_more_ids_than_the_embedding_rows_is_refused_naming_both(tok_dir, tok, tmp_path):
    small = tok.get_vocab_size() - 10
    ckpt = save_checkpoint(Electra(ModelConfig.preset("tiny", vocab_size=small)), tmp_path / "small",
                           tokenizer_dir=tok_dir)
    with pytest.raises(ElectraError, match=rf"tokenizer has {small + 10} tokens .* vocabulary of {small} ") as e:
        finetune_task(CUSTOM, ckpt, _pairs_of_varied_length(tmp_path / "data"), tmp_path / "run", FAST)
    assert "\n" not in str(e.value)
    from electra.inference import load_model

    with pytest.raises(ElectraError, match=rf"{small + 10} tokens .* vocabulary of {small} "):
        load_model(ckpt)


def test_a_tokenizer_with_fewer_ids_than_the_embedding_rows_loads(tok_dir, tok, tmp_path):
    rows = tok.get_vocab_size() + 35  # as multilingual-e5: 250,002 ids, 250,037 rows
    ckpt = save_checkpoint(Electra(ModelConfig.preset("tiny", vocab_size=rows)), tmp_path / "big",
                           tokenizer_dir=tok_dir)
    from electra.inference import load_model

    loaded = load_model(ckpt)
    assert loaded.tokenizer.get_vocab_size() == rows - 35 and loaded.runners["discriminator"].pad_id == 1


def test_onnx_style_padding_to_a_minimum_length_uses_the_pad_id():
    from electra.inference import pad_to

    batch = {"input_ids": np.array([[0, 7, 2]]), "attention_mask": np.ones((1, 3), np.int64),
             "token_type_ids": np.zeros((1, 3), np.int64)}
    out = pad_to(batch, 5, pad_id=1)
    assert out["input_ids"].tolist() == [[0, 7, 2, 1, 1]] and out["attention_mask"].tolist() == [[1, 1, 1, 0, 0]]


# ---- transformers export --------------------------------------------------------------------------------
def test_transformers_export_of_a_unigram_checkpoint_round_trips(ckpt, tok, tmp_path):
    transformers = pytest.importorskip("transformers")
    from electra.interop.hf_models import export_hf

    export_hf(ckpt, tmp_path / "hf")
    disc = tmp_path / "hf" / "discriminator"
    config = json.loads((disc / "config.json").read_text())
    assert config["pad_token_id"] == 1 and config["vocab_size"] == tok.get_vocab_size()
    hf_tok = transformers.AutoTokenizer.from_pretrained(disc)
    roles = special_tokens(tok)
    assert (hf_tok.pad_token_id, hf_tok.cls_token_id, hf_tok.sep_token_id, hf_tok.mask_token_id) == (
        roles.pad_id, roles.cls_id, roles.sep_id, roles.mask_id)
    texts = ["The capital of France is Paris.", "北京是中国的首都。", "Paris <mask> old"]
    for text in texts:
        assert hf_tok(text)["input_ids"] == tok.encode(text).ids, text
    assert special_tokens(load_tokenizer(disc)).ids == roles.ids
    hf = transformers.ElectraForPreTraining.from_pretrained(disc).eval()
    from electra.checkpoint import load_checkpoint

    ours = load_checkpoint(ckpt).eval()
    enc = hf_tok(texts, padding=True, return_tensors="pt")
    assert (enc["input_ids"][enc["attention_mask"] == 0] == 1).all()
    with torch.no_grad():
        theirs = hf(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
        mine = ours.discriminator(enc["input_ids"], enc["attention_mask"], torch.zeros_like(enc["input_ids"]))
    real = enc["attention_mask"].bool()
    torch.testing.assert_close(mine[real], theirs[real], atol=1e-4, rtol=1e-4)
