"""Whole-word masking: words from the vocabulary or from a segmenter (jieba) at prepare time, BERT's count rule,
never a split word, never a special token; the word-start shards and the example builder; pretrain with it."""

from __future__ import annotations

import importlib.util
import json
import math
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer
from tokenizers.models import Unigram

from electra.cli import main as cli
from electra.config import ModelConfig, PretrainConfig
from electra.data.prepare import prepare
from electra.data.pretraining_data import PretrainingData
from electra.data.words import Segmenter, token_word_starts
from electra.errors import ElectraError
from electra.modeling import Electra
from electra.objectives import adjust_model_config, begin_step, build_objective
from electra.pretraining import (
    SpecialIds,
    WholeWordMasking,
    mask_tokens,
    max_predictions_per_seq,
    take_whole_words,
    whole_word_mask,
)
from electra.tokenization import (
    load_tokenizer,
    new_unigram_tokenizer,
    set_special_tokens,
    tokenizer_from_vocab,
    train_tokenizer,
    word_start_table,
)

FIXTURES = Path(__file__).parent / "fixtures" / "corpus"
SPECIAL = SpecialIds(pad=0, cls=2, sep=3, mask=4, others=(1,))  # 1: unk
SPECIAL_IDS = {0, 1, 2, 3, 4}
VOCAB = 50
HAS_JIEBA = importlib.util.find_spec("rjieba") is not None
needs_jieba = pytest.mark.skipif(not HAS_JIEBA, reason="rjieba (the zh extra) is not installed")


# ---- masking ------------------------------------------------------------------------------------------------
def random_layout(seed: int, batch: int = 8, seq: int = 48) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch of ``[CLS] A [SEP] B [SEP]`` with random lengths, random words (1-5 tokens), and a few unk tokens."""
    g = random.Random(seed)
    ids = torch.zeros(batch, seq, dtype=torch.long)
    am = torch.zeros_like(ids)
    starts = torch.ones(batch, seq, dtype=torch.bool)
    for b in range(batch):
        n = g.randint(4, seq)
        row = [g.randrange(5, VOCAB) if g.random() > 0.03 else 1 for _ in range(n)]
        row[0], row[-1] = SPECIAL.cls, SPECIAL.sep
        if n > 6:
            row[g.randrange(2, n - 2)] = SPECIAL.sep
        ids[b, :n] = torch.tensor(row)
        am[b, :n] = 1
        i = 1
        while i < n:  # words of random lengths: a start, then continuations
            length = g.choice([1, 1, 1, 2, 2, 3, 4, 5])
            starts[b, i + 1:i + length] = False
            i += length
    return ids, am, starts


def words_of(ids: list[int], am: list[int], starts: list[bool]) -> list[list[int]]:
    """The candidate words, plainly: runs of non-special real tokens, a new one at each word start (a special
    token ends the word before it)."""
    words: list[list[int]] = []
    open_word = False
    for i, (t, real, s) in enumerate(zip(ids, am, starts)):
        if not real or t in SPECIAL_IDS:
            open_word = False
            continue
        if s or not open_word:
            words.append([])
        words[-1].append(i)
        open_word = True
    return words


def chosen_positions(m, b: int) -> set[int]:
    return {int(p) for p, w in zip(m.positions[b], m.weights[b]) if w > 0}


def n_predict(n_real: int, mask_prob: float, max_predictions: int) -> int:
    return max(1, min(max_predictions, round(n_real * mask_prob)))


@pytest.mark.parametrize("seed", range(40))
def test_whole_word_masking_never_splits_a_word(seed):
    ids, am, starts = random_layout(seed)
    m = whole_word_mask(ids, am, starts, SPECIAL, 0.15, 10, torch.Generator().manual_seed(seed))
    for b in range(len(ids)):
        chosen = chosen_positions(m, b)
        for word in words_of(ids[b].tolist(), am[b].tolist(), starts[b].tolist()):
            assert set(word) <= chosen or not set(word) & chosen, (word, sorted(chosen))


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("mask_prob", [0.15, 0.4])
def test_whole_word_masking_keeps_the_count_rule_and_takes_every_word_that_still_fits(seed, mask_prob):
    ids, am, starts = random_layout(seed)
    max_predictions = 7
    m = whole_word_mask(ids, am, starts, SPECIAL, mask_prob, max_predictions, torch.Generator().manual_seed(seed))
    assert m.positions.shape == (len(ids), max_predictions) == m.weights.shape
    for b in range(len(ids)):
        n = n_predict(int(am[b].sum()), mask_prob, max_predictions)
        chosen = chosen_positions(m, b)
        assert len(chosen) == int(m.weights[b].sum()) <= n <= max_predictions
        for word in words_of(ids[b].tolist(), am[b].tolist(), starts[b].tolist()):
            if not set(word) & chosen:  # skipped: it would have exceeded the count (the room only shrinks)
                assert len(chosen) + len(word) > n


def test_with_one_token_words_it_masks_exactly_as_many_tokens_as_mask_tokens():
    ids, am, _ = random_layout(3)
    starts = torch.ones_like(ids, dtype=torch.bool)
    m = whole_word_mask(ids, am, starts, SPECIAL, 0.15, 19, torch.Generator().manual_seed(0))
    ref = mask_tokens(ids, am, SPECIAL, 0.15, 19, torch.Generator().manual_seed(0))
    assert m.weights.sum(-1).tolist() == ref.weights.sum(-1).tolist()


@pytest.mark.parametrize("seed", range(20))
def test_the_batched_selection_takes_the_words_bert_s_loop_takes(seed):
    g = random.Random(seed)
    sizes = [[g.choice([0, 1, 1, 2, 3, 5, 8]) if i < g.randint(1, 30) else 0 for i in range(30)] for _ in range(6)]
    budgets = [g.randint(1, 20) for _ in sizes]
    taken = take_whole_words(torch.tensor(sizes), torch.tensor(budgets))
    for row, budget, got in zip(sizes, budgets, taken.tolist()):
        count, expected = 0, []
        for size in row:  # create_masked_lm_predictions: skip a word that would exceed the count
            ok = size > 0 and count + size <= budget
            count += size if ok else 0
            expected.append(ok)
        assert got == expected


def test_whole_word_masking_never_picks_special_tokens():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 8, (64, 24), generator=g)  # ids 0-4 special (1 = unk): more than half of the tokens
    am = torch.ones_like(ids)
    starts = torch.rand(64, 24, generator=g) < 0.5
    for seed in range(10):
        m = whole_word_mask(ids, am, starts, SPECIAL, 0.5, 12, torch.Generator().manual_seed(seed))
        picked = m.ids[m.weights > 0]
        assert len(picked) and not set(picked.tolist()) & SPECIAL_IDS


def test_chosen_tokens_become_the_mask_token_85_percent_of_the_time_and_nothing_else_changes():
    ids, am, starts = random_layout(1, batch=64)
    masked = kept = 0
    for seed in range(20):
        m = whole_word_mask(ids, am, starts, SPECIAL, 0.15, 19, torch.Generator().manual_seed(seed))
        chosen = torch.zeros_like(am, dtype=torch.bool).scatter_(1, m.positions, m.weights.bool())
        assert torch.equal(m.input_ids[~chosen], ids[~chosen])
        masked += int((m.input_ids[chosen] == SPECIAL.mask).sum())
        kept += int((m.input_ids[chosen] == ids[chosen]).sum())
    assert abs(masked / (masked + kept) - 0.85) < 0.03


# ---- word starts from the vocabulary --------------------------------------------------------------------------
ENGLISH = ["the river flows into the northern lake near the city.", "unbelievably, it's a mathematician's dream!"]


@pytest.mark.parametrize("model", ["wordpiece", "unigram"])
def test_the_vocabulary_rule_marks_the_first_piece_of_every_word(model, tmp_path):
    lines = [x for x in (FIXTURES / "tiny-en.txt").read_text().splitlines() if x.strip()]
    tok = train_tokenizer(lines, tmp_path / "tok", vocab_size=400, model=model, show_progress=False)
    table = word_start_table(tok)
    assert table.shape == (tok.get_vocab_size(),) and table[sorted({*tok.get_added_tokens_decoder()})].all()
    for text in ENGLISH:
        enc = tok.encode(text, add_special_tokens=False)
        first_piece = [i == 0 or w != enc.word_ids[i - 1] for i, w in enumerate(enc.word_ids)]  # the pre-tokenizer's
        assert table[enc.ids].tolist() == first_piece, list(zip(enc.tokens, table[enc.ids]))
        assert not table[enc.ids].all()  # some pieces continue a word (the text has rare words)


def test_the_vocabulary_rule_reads_wordpiece_s_prefix_and_sentencepiece_s_marker(tmp_path):
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "run", "##ning"]))
    wp = word_start_table(tokenizer_from_vocab(tmp_path / "vocab.txt"))
    assert wp.tolist() == [True] * 6 + [False]
    # <unk> <s> </s> ▁run ning ▁, then the characters g i n r u
    assert word_start_table(unigram(["▁run", "ning", "▁"])).tolist() == [True] * 4 + [False, True] + [False] * 5


def test_a_tokenizer_without_word_markers_is_refused_in_one_line():
    tok = Tokenizer(Unigram([("<unk>", 0.0), ("a", -1.0)], unk_id=0))
    with pytest.raises(ElectraError, match="marks no word starts"):
        word_start_table(tok)


# ---- word starts from the segmenter ---------------------------------------------------------------------------
def unigram(pieces: list[str], roles: bool = True) -> Tokenizer:
    """A Unigram tokenizer with these pieces (specials <unk> <s> </s> first; each piece more likely than its
    characters); the pipeline of ours (NFKC, Metaspace ▁)."""
    tok = new_unigram_tokenizer()
    specials = ["<unk>", "<s>", "</s>"]
    chars = sorted({c for p in pieces for c in p} - set(pieces))
    vocab = [(s, 0.0) for s in specials] + [(p, -1.0) for p in pieces] + [(c, -20.0) for c in chars]
    tok.model = Unigram(vocab, unk_id=0)
    if roles:
        set_special_tokens(tok, {"unk": "<unk>", "cls": "<s>", "sep": "</s>", "pad": "<unk>"})
    return tok


def test_token_word_starts_follow_the_boundaries_between_and_inside_tokens():
    # tokens ▁ 我来 到 北京 清华 大学 over 我|来到|北京|清华大学: ▁ overlaps 我 (continues), 到 continues the word 来到
    # that began inside 我来, 大学 continues 清华大学
    offsets = [(0, 1), (0, 2), (2, 3), (3, 5), (5, 7), (7, 9)]
    assert token_word_starts(offsets, np.array([0, 1, 3, 5])).tolist() == [True, False, False, True, True, False]
    # a boundary in the gap (a space) before a token starts it; a line's first token always starts a word
    assert token_word_starts([(2, 5), (6, 9), (9, 10)], np.array([5, 6])).tolist() == [True, True, False]
    assert token_word_starts([], np.array([0])).tolist() == []


@needs_jieba
def test_jieba_s_words_map_onto_wordpiece_and_unigram_tokens_of_chinese_text(tmp_path):
    seg = Segmenter("jieba")
    text = "我来到北京清华大学"
    assert seg.words(text) == ["我", "来到", "北京", "清华大学"]
    assert seg.word_starts(text).tolist() == [0, 1, 3, 5]
    # WordPiece: one token per Chinese character
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *text]))
    wp = tokenizer_from_vocab(tmp_path / "vocab.txt").encode(text, add_special_tokens=False)
    assert token_word_starts(wp.offsets, seg.word_starts(text)).tolist() == [1, 1, 0, 1, 0, 1, 0, 0, 0]
    # Unigram: pieces that cross jieba's words
    enc = unigram(["▁", "我来", "到", "北京", "清华", "大学"]).encode(text, add_special_tokens=False)
    assert enc.tokens == ["▁", "我来", "到", "北京", "清华", "大学"]
    assert token_word_starts(enc.offsets, seg.word_starts(text)).tolist() == [1, 0, 0, 1, 1, 0]


def test_prepare_with_a_segmenter_without_the_zh_extra_stops_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "rjieba", None)
    with pytest.raises(SystemExit) as done:
        cli(["prepare", "--tokenizer", str(tmp_path), "--input", str(FIXTURES / "tiny-zh.txt"), "--out",
             str(tmp_path / "out"), "--segmenter", "jieba", "--quiet"])
    err = capsys.readouterr().err
    assert done.value.code == 2 and err.count("\n") == 1, err
    assert 'needs the zh extra' in err and 'pip install "electra[zh]"' in err
    assert not (tmp_path / "out").exists()


# ---- prepared data --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def zh_tok(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("zh-tok")
    lines = [x for x in (FIXTURES / "tiny-zh.txt").read_text().splitlines() if x.strip()]
    train_tokenizer(lines * 3, out, vocab_size=600, model="unigram", show_progress=False)
    return out


@pytest.fixture(scope="module")
def zh_data(zh_tok, tmp_path_factory) -> Path:
    if not HAS_JIEBA:
        pytest.skip("rjieba (the zh extra) is not installed")
    out = tmp_path_factory.mktemp("zh-data") / "zh"
    cli_prepare = ["prepare", "--tokenizer", str(zh_tok), "--input", str(FIXTURES / "tiny-zh.txt"), "--out",
                   str(out), "--max-seq-len", "48", "--segmenter", "jieba", "--quiet"]
    run_cli(cli_prepare)
    return out


def expected_lines(tok_dir: Path) -> list[tuple[list[int], list[bool]]]:
    """Each line's token ids and word starts, from the tokenizer and jieba directly."""
    tok, seg = load_tokenizer(tok_dir), Segmenter("jieba")
    out = []
    for line in (FIXTURES / "tiny-zh.txt").read_text().splitlines():
        enc = tok.encode(line.strip(), add_special_tokens=False)
        if enc.ids:
            out.append((enc.ids, token_word_starts(enc.offsets, seg.word_starts(line.strip())).tolist()))
    return out


def test_prepare_with_a_segmenter_writes_a_word_start_shard_beside_each_token_shard(zh_data, zh_tok):
    meta = json.loads((zh_data / "meta.json").read_text())
    assert meta["segmenter"]["name"] == "jieba" and meta["segmenter"]["package"] == "rjieba"
    starts = []
    for shard in meta["shards"]:
        path = zh_data / shard["word_starts"]
        assert path.stat().st_size == shard["tokens"]  # one uint8 per token
        starts.append(np.fromfile(path, np.uint8))
    flags = np.concatenate(starts)
    assert set(flags.tolist()) == {0, 1}
    assert flags.astype(bool).tolist() == [s for _, line in expected_lines(zh_tok) for s in line]


def test_the_example_builder_returns_word_start_aligned_with_input_ids(zh_data, zh_tok):
    data = PretrainingData(zh_data)
    assert data.has_word_starts
    lines = expected_lines(zh_tok)
    plan = data.plan(0)
    for k in range(len(plan)):
        ids, am, _, word_start = data.build_example(plan, k)
        segs = plan.seg[plan.ptr[k]:plan.ptr[k + 1]]
        parts = [[lines[s] for s, g in zip(range(plan.s0[k], plan.s1[k]), segs) if g == b] for b in (0, 1)]
        real = [i for i in range(len(ids)) if am[i] and ids[i] not in (data.cls_id, data.sep_id)]
        exp_ids = [t for part in parts for line in part for t in line[0]]
        exp_starts = [s for part in parts for line in part for s in line[1]]
        n_a = [i for i in range(len(ids)) if ids[i] == data.sep_id][0] - 1  # tokens of A kept
        a_len = sum(len(line[0]) for line in parts[0])
        keep = list(range(n_a)) + [a_len + j for j in range(len(real) - n_a)]  # truncation keeps each part's start
        assert ids[real].tolist() == [exp_ids[j] for j in keep]
        assert word_start[real].tolist() == [exp_starts[j] for j in keep]
        assert word_start[am == 0].all() and word_start[0]
    batch = next(data.batches(4))
    assert batch["word_start"].dtype == torch.bool and batch["word_start"].shape == batch["input_ids"].shape


def test_data_prepared_without_a_segmenter_has_no_word_starts(zh_tok, tmp_path):
    prepare([FIXTURES / "tiny-zh.txt"], zh_tok, tmp_path / "plain", max_seq_len=48, progress=False)
    data = PretrainingData(tmp_path / "plain")
    assert not data.has_word_starts and len(data.example(0)) == 3
    assert "word_start" not in next(data.batches(2))
    assert not list((tmp_path / "plain").glob("words-*"))


@needs_jieba
def test_worker_processes_and_small_shards_write_the_same_word_starts(zh_data, zh_tok, tmp_path):
    prepare([FIXTURES / "tiny-zh.txt"], zh_tok, tmp_path / "w2", max_seq_len=48, progress=False,
            segmenter="jieba", workers=2, shard_tokens=300)
    meta = json.loads((tmp_path / "w2" / "meta.json").read_text())
    assert len(meta["shards"]) > 1
    ours = np.concatenate([np.fromfile(tmp_path / "w2" / s["word_starts"], np.uint8) for s in meta["shards"]])
    base = json.loads((zh_data / "meta.json").read_text())
    theirs = np.concatenate([np.fromfile(zh_data / s["word_starts"], np.uint8) for s in base["shards"]])
    assert np.array_equal(ours, theirs)


def test_a_missing_word_start_shard_is_reported(zh_data, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(zh_data, copy)
    (copy / "words-00000.bin").unlink()
    with pytest.raises(ElectraError, match="words-00000.bin: missing"):
        PretrainingData(copy)


# ---- objectives and pre-training ------------------------------------------------------------------------------
class Recorder(WholeWordMasking):
    def forward(self, *args, **kw):
        self.last = super().forward(*args, **kw)
        return self.last


@pytest.mark.parametrize("options", [dict(objective="electra"), dict(objective="mlm"), dict(objective="electra-15"),
                                     dict(objective="replace-mlm"), dict(objective="all-tokens-mlm"),
                                     dict(generator_training="adversarial"),
                                     dict(generator_training="two-stage", two_stage_generator_steps=1)])
def test_every_objective_masks_whole_words_with_the_batch_s_word_starts(options):
    cfg = PretrainConfig.for_preset("tiny", max_steps=4, whole_word_masking=True, **options)
    size = dict(generator_size=1.0) if cfg.generator_training == "two-stage" else {}
    torch.manual_seed(0)
    model = Electra(adjust_model_config(cfg, ModelConfig.preset("tiny", vocab_size=VOCAB, **size)))
    objective = build_objective(model, SPECIAL, 48, cfg)
    assert isinstance(objective.masking, WholeWordMasking)
    objective.masking = Recorder()
    ids, am, starts = random_layout(5)
    begin_step(objective, 0, cfg.max_steps, 1)
    loss, _ = objective(ids, am, torch.zeros_like(ids), torch.Generator().manual_seed(0), word_start=starts)
    assert math.isfinite(loss.item())
    m = objective.masking.last
    assert m.weights.shape[1] == max_predictions_per_seq(48, cfg.mask_prob)
    for b in range(len(ids)):
        chosen = chosen_positions(m, b)
        assert chosen and all(set(w) <= chosen or not set(w) & chosen
                              for w in words_of(ids[b].tolist(), am[b].tolist(), starts[b].tolist()))


def test_the_vocabulary_table_gives_the_word_starts_when_the_batch_has_none():
    table = np.ones(VOCAB, bool)
    table[30:] = False  # ids 30+ continue a word
    ids, am, _ = random_layout(2)
    got = WholeWordMasking(table)(ids, am, SPECIAL, 0.15, 10, torch.Generator().manual_seed(0))
    ref = whole_word_mask(ids, am, torch.as_tensor(table)[ids], SPECIAL, 0.15, 10, torch.Generator().manual_seed(0))
    assert torch.equal(got.positions, ref.positions) and torch.equal(got.input_ids, ref.input_ids)


def run_cli(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli(argv)
    assert not done.value.code


def pretrain_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["pretrain", "--data", str(data), "--out", str(out), "--preset", "tiny", "--max-steps", "2",
            "--batch-size", "4", "--warmup-steps", "1", "--log-every", "1", "--save-every", "2", "--precision",
            "fp32", "--device", "cpu", "--no-progress", "--whole-word-masking", *extra]


def test_pretrain_whole_word_masking_runs_on_segmented_data(zh_data, tmp_path):
    run_cli(pretrain_args(zh_data, tmp_path / "run"))
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["pretrain"]["whole_word_masking"] is True
    assert (tmp_path / "run" / "checkpoints" / "step-00000002").is_dir()


def test_pretrain_whole_word_masking_uses_the_vocabulary_without_word_starts_in_the_data(tmp_path):
    lines = [x for x in (FIXTURES / "tiny-en.txt").read_text().splitlines() if x.strip()]
    train_tokenizer(lines, tmp_path / "tok", vocab_size=400, show_progress=False)
    prepare([FIXTURES / "tiny-en.txt"], tmp_path / "tok", tmp_path / "en", max_seq_len=48, progress=False)
    run_cli(pretrain_args(tmp_path / "en", tmp_path / "run"))
    assert (tmp_path / "run" / "checkpoints" / "step-00000002").is_dir()


def test_whole_word_masking_with_the_tf_framework_is_refused_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        cli(pretrain_args(tmp_path, tmp_path / "run", "--framework", "tf"))
    err = capsys.readouterr().err
    assert done.value.code == 2 and err.count("\n") == 1 and "--framework tf" in err, err

