"""Pre-training examples packed from prepared shards: the official builder's recipe, determinism, resume, ranks."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from electra.data.prepare import prepare
from electra.data.pretraining_data import PretrainingData
from electra.errors import ElectraError
from electra.tokenization import load_tokenizer, train_tokenizer

FIXTURES = Path(__file__).parent / "fixtures" / "corpus"
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tok")
    lines = [x for x in (FIXTURES / "tiny-en.txt").read_text().splitlines() if x.strip()]
    train_tokenizer(lines, out, vocab_size=800, show_progress=False)
    return out


@pytest.fixture(scope="module")
def data_dir(tok_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "en"
    prepare([FIXTURES / "tiny-en.txt"], tok_dir, out, max_seq_len=64, seed=3, progress=False)
    return out


class OfficialExampleBuilder:
    """google-research/electra build_pretraining_dataset.py ``ExampleBuilder``, transcribed: lines arrive
    already tokenized (``None`` = blank line) and the module-level ``random`` is an injected ``random.Random``.
    """

    def __init__(self, max_length: int, rng: random.Random):
        self._current_sentences: list[list[int]] = []
        self._current_length = 0
        self._max_length = max_length
        self._target_length = max_length
        self.random = rng

    def add_line(self, bert_tokids):
        if bert_tokids is None and self._current_length != 0:  # empty lines separate docs
            return self._create_example()
        bert_tokids = bert_tokids or []
        self._current_sentences.append(bert_tokids)
        self._current_length += len(bert_tokids)
        if self._current_length >= self._target_length:
            return self._create_example()
        return None

    def _create_example(self):
        if self.random.random() < 0.1:
            first_segment_target_length = 100000
        else:
            first_segment_target_length = (self._target_length - 3) // 2
        first_segment, second_segment = [], []
        for sentence in self._current_sentences:
            if (len(first_segment) == 0 or len(first_segment) + len(sentence) < first_segment_target_length or
                    (len(second_segment) == 0 and len(first_segment) < first_segment_target_length and
                     self.random.random() < 0.5)):
                first_segment += sentence
            else:
                second_segment += sentence
        first_segment = first_segment[:self._max_length - 2]
        second_segment = second_segment[:max(0, self._max_length - len(first_segment) - 3)]
        self._current_sentences = []
        self._current_length = 0
        if self.random.random() < 0.05:
            self._target_length = self.random.randint(5, self._max_length)
        else:
            self._target_length = self._max_length
        return self._make_example(first_segment, second_segment)

    def _make_example(self, first_segment, second_segment):
        input_ids = [2] + first_segment + [3]  # [CLS]=2, [SEP]=3 in our trained vocabularies
        segment_ids = [0] * len(input_ids)
        if second_segment:
            input_ids += second_segment + [3]
            segment_ids += [1] * (len(second_segment) + 1)
        input_mask = [1] * len(input_ids)
        input_ids += [0] * (self._max_length - len(input_ids))
        input_mask += [0] * (self._max_length - len(input_mask))
        segment_ids += [0] * (self._max_length - len(segment_ids))
        return input_ids, input_mask, segment_ids


def official_examples(data: PretrainingData, epoch: int, text_docs: list[list[str]]) -> list[tuple]:
    """Run the official builder over the tokenized text, documents in the epoch's order, same random seed."""
    tok = load_tokenizer(data.tokenizer_dir)
    order = np.random.default_rng([data.seed, epoch, 0]).permutation(len(text_docs))
    builder = OfficialExampleBuilder(data.max_seq_len, random.Random(data.seed * 1_000_003 + epoch))
    out = []
    for d in order:
        for line in text_docs[d] + [None]:
            ex = builder.add_line(None if line is None else tok.encode(line, add_special_tokens=False).ids)
            if ex:
                out.append(ex)
    return out


def read_docs(path: Path) -> list[list[str]]:
    return [[x.strip() for x in d.split("\n") if x.strip()] for d in path.read_text().split("\n\n") if d.strip()]


@pytest.fixture(scope="module")
def sentence_dir(tok_dir, tmp_path_factory) -> Path:
    """The fixture text with one sentence per line (short lines: many segment-boundary decisions)."""
    tmp = tmp_path_factory.mktemp("sentences")
    text = (FIXTURES / "tiny-en.txt").read_text().replace(". ", ".\n")
    (tmp / "sentences.txt").write_text(text)
    prepare([tmp / "sentences.txt"], tok_dir, tmp / "data", max_seq_len=64, progress=False)
    return tmp


@pytest.mark.parametrize("max_seq_len", [64, 24])
@pytest.mark.parametrize("layout", ["paragraphs", "sentences"])
def test_packing_matches_official_example_builder(data_dir, sentence_dir, layout, max_seq_len):
    if layout == "paragraphs":
        data, text = PretrainingData(data_dir, max_seq_len=max_seq_len, seed=5), FIXTURES / "tiny-en.txt"
    else:
        data, text = PretrainingData(sentence_dir / "data", max_seq_len=max_seq_len, seed=5), \
            sentence_dir / "sentences.txt"
    for epoch in (0, 1):
        expected = official_examples(data, epoch, read_docs(text))
        plan = data.plan(epoch)
        ours = [tuple(a.tolist() for a in data.build_example(plan, k)) for k in range(len(plan))]
        assert len(ours) == len(expected)
        assert ours == [tuple(e) for e in expected]


def test_batches_have_fixed_shape_int64_and_consistent_masks(data_dir):
    data = PretrainingData(data_dir)
    batch = next(data.batches(8))
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids"}
    for t in batch.values():
        assert t.shape == (8, 64) and t.dtype == torch.int64
    ids, mask, types = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
    assert (ids[:, 0] == data.cls_id).all()
    assert ((ids == data.pad_id) == (mask == 0)).all()
    assert (types[mask == 0] == 0).all()
    for row, m, ty in zip(ids, mask, types):
        n = int(m.sum())
        assert row[n - 1] == data.sep_id
        seps = (row[:n] == data.sep_id).nonzero().flatten().tolist()
        assert len(seps) in (1, 2)
        if len(seps) == 2:  # type 1 exactly on B and its [SEP]
            assert ty[:seps[0] + 1].sum() == 0 and (ty[seps[0] + 1:n] == 1).all()


def test_meta_defaults_and_attributes(data_dir):
    data = PretrainingData(data_dir)
    assert data.max_seq_len == 64 and data.seed == 3
    assert data.vocab_size == 800
    assert (data.pad_id, data.cls_id, data.sep_id, data.mask_id) == (0, 2, 3, 4)
    assert (data.tokenizer_dir / "vocab.txt").is_file()
    assert data.meta["counts"]["examples_epoch0"] == data.num_examples(0)


def test_same_seed_gives_same_stream_and_another_seed_differs(data_dir):
    a = next(PretrainingData(data_dir, seed=1).batches(16))["input_ids"]
    b = next(PretrainingData(data_dir, seed=1).batches(16))["input_ids"]
    c = next(PretrainingData(data_dir, seed=2).batches(16))["input_ids"]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_each_epoch_uses_every_token_once_in_a_new_order(data_dir):
    data = PretrainingData(data_dir, max_seq_len=4096)  # nothing truncated: examples cover all tokens
    n0, n1 = data.num_examples(0), data.num_examples(1)
    ex0 = [data.example(p)[0] for p in range(n0)]
    ex1 = [data.example(n0 + p)[0] for p in range(n1)]
    real = data.meta["counts"]["tokens"]
    specials = (data.cls_id, data.sep_id, data.pad_id)
    for epoch in (ex0, ex1):
        assert sum(int(np.isin(e, specials, invert=True).sum()) for e in epoch) == real
    assert [e[:8].tolist() for e in ex0] != [e[:8].tolist() for e in ex1]


def test_start_resumes_exactly_across_epoch_boundaries(data_dir):
    data = PretrainingData(data_dir)
    k = data.num_examples(0) // 4 + 3  # batches of 4: batch k-1 lies in epoch 1
    it = data.batches(4)
    for _ in range(k):
        next(it)
    expected = [next(it) for _ in range(3)]
    resumed = PretrainingData(data_dir).batches(4, start=k)
    for e in expected:
        got = next(resumed)
        assert all(torch.equal(got[n], e[n]) for n in e)


def test_skipping_reads_no_tokens(data_dir, monkeypatch):
    data = PretrainingData(data_dir)
    calls = []
    original = data._tokens
    monkeypatch.setattr(data, "_tokens", lambda a, b: calls.append(a) or original(a, b))
    next(data.batches(4, start=500))
    assert len(calls) == 4


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_split_each_global_batch_of_the_single_process_stream(data_dir, world_size):
    b = 3
    single = PretrainingData(data_dir).batches(b * world_size, start=2)
    ranks = [PretrainingData(data_dir, rank=r, world_size=world_size).batches(b, start=2)
             for r in range(world_size)]
    for _ in range(4):
        whole = next(single)["input_ids"]
        parts = [next(it)["input_ids"] for it in ranks]
        for r, part in enumerate(parts):
            assert torch.equal(part, whole[r::world_size])


def test_max_seq_len_override_changes_the_shape(data_dir):
    batch = next(PretrainingData(data_dir, max_seq_len=32).batches(2))
    assert batch["input_ids"].shape == (2, 32)


def test_short_sequences_appear_sometimes(data_dir):
    data = PretrainingData(data_dir, max_seq_len=32)
    lengths = [int(data.example(p)[1].sum()) for p in range(data.num_examples(0))]
    short = sum(n < 20 for n in lengths) / len(lengths)
    assert 0 < short < 0.3


def test_multiple_shards_give_the_same_examples(tok_dir, data_dir, tmp_path):
    out = tmp_path / "sharded"
    prepare([FIXTURES / "tiny-en.txt"], tok_dir, out, max_seq_len=64, seed=3, shard_tokens=500, progress=False)
    sharded = PretrainingData(out)
    assert len(sharded.meta["shards"]) > 3
    a = next(sharded.batches(32))
    b = next(PretrainingData(data_dir).batches(32))
    assert all(torch.equal(a[n], b[n]) for n in a)


def test_bad_rank_and_tampered_tokenizer_are_errors(data_dir, tmp_path):
    with pytest.raises(ElectraError, match="rank 2"):
        PretrainingData(data_dir, rank=2, world_size=2)
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(data_dir, copy)
    vocab = (copy / "tokenizer" / "vocab.txt").read_text().splitlines()
    vocab[10], vocab[11] = vocab[11], vocab[10]
    (copy / "tokenizer" / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (copy / "tokenizer" / "tokenizer.json").unlink()
    with pytest.raises(ElectraError, match="another vocabulary"):
        PretrainingData(copy)


def test_not_a_data_dir_is_an_error(tmp_path):
    with pytest.raises(ElectraError, match="meta.json"):
        PretrainingData(tmp_path)


def test_chinese_corpus_examples(tmp_path):
    zh = DATA / "corpus" / "zh" / "zhwiki_00.txt"
    if not zh.is_file():
        pytest.skip("../shared/data not present")
    lines = [x for x in zh.read_text().splitlines()[:400] if x.strip()]
    train_tokenizer(lines, tmp_path / "tok", vocab_size=3000, show_progress=False)
    (tmp_path / "in.txt").write_text("\n".join(zh.read_text().splitlines()[:400]) + "\n")
    prepare([tmp_path / "in.txt"], tmp_path / "tok", tmp_path / "data", max_seq_len=128, progress=False)
    batch = next(PretrainingData(tmp_path / "data").batches(4))
    assert batch["attention_mask"].sum() > 4 * 64
