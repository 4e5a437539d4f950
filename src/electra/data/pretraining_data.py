"""Pre-training examples packed at read time from prepared token shards, as the official ELECTRA builder does.

The packing follows google-research/electra ``build_pretraining_dataset.py`` (``ExampleBuilder``) exactly:
sentences (input lines) of a document are collected until they reach the target length, then split into
``[CLS] A [SEP] B [SEP]`` (one segment only with probability 0.1), truncated to ``max_seq_len``; with
probability 0.05 the next target length is random in ``[5, max_seq_len]``. An example never spans documents.

Epochs: epoch ``e`` visits the documents in an order shuffled from ``(seed, e)``, packs them with a
``random.Random`` seeded from ``(seed, e)`` (the same calls, in the same order, as the official builder),
then shuffles the epoch's examples. The example stream is all epochs back to back, forever.

Data parallelism: with ``world_size`` N, rank r takes examples ``r, r + N, r + 2N, ...`` of that single
stream, so global batch ``i`` (batch size b per rank) is examples ``[i*b*N, (i+1)*b*N)`` of the
single-process stream: the 1-process stream at batch size ``b*N`` holds exactly the examples of all
ranks' batch ``i``. ``batches(b, start=k)`` yields what ``batches(b)`` yields after ``k`` batches; skipping
costs only the packing of the skipped epochs (index work, no text is read).
"""

from __future__ import annotations

import random
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from electra.config import read_json
from electra.errors import ElectraError
from electra.tokenization import load_tokenizer, tokenizer_hash

if TYPE_CHECKING:
    import torch

FORMAT = "electra-pretraining-shards/1"


class EpochPlan:
    """The examples of one epoch: sentence ranges ``[s0, s1)`` and each sentence's segment (0 = A, 1 = B)."""

    def __init__(self, s0: np.ndarray, s1: np.ndarray, seg: np.ndarray, order: np.ndarray):
        self.s0, self.s1, self.seg = s0, s1, seg
        self.ptr = np.concatenate([[0], np.cumsum(s1 - s0)])  # example k's segments: seg[ptr[k]:ptr[k+1]]
        self.order = order  # shuffled position -> example

    def __len__(self) -> int:
        return len(self.s0)


def pack_documents(sentence_offsets: np.ndarray, doc_offsets: np.ndarray, doc_order: np.ndarray, max_len: int,
                   rng: random.Random, store: bool = True) -> tuple[int, array, array, bytearray]:
    """The official ``ExampleBuilder`` over documents in ``doc_order``.

    Sentence s is tokens ``sentence_offsets[s] .. sentence_offsets[s+1]``; document d is sentences
    ``doc_offsets[d] .. doc_offsets[d+1]``. Returns (number of examples, first sentence of each example,
    end sentence of each example, segment of each sentence: 0 = A, 1 = B); with ``store=False`` only the
    count. Random draws match the official code call for call. Memory: 17 bytes per example, and the
    offsets may be memory-mapped.
    """
    s0s, s1s, segs = array("q"), array("q"), bytearray()
    count = 0
    target = max_len
    lengths: list[int] = []
    base = 0  # sentence index of lengths[0]

    def create(start: int, end: int) -> None:  # sentences lengths[start:end]
        nonlocal target, count
        if rng.random() < 0.1:  # small chance to only have one segment
            first_target = 100000
        else:
            first_target = (target - 3) // 2
        first = second = 0
        for n in lengths[start:end]:
            if (first == 0 or first + n < first_target
                    or (second == 0 and first < first_target and rng.random() < 0.5)):
                first += n
                if store:
                    segs.append(0)
            else:
                second += n
                if store:
                    segs.append(1)
        count += 1
        if store:
            s0s.append(base + start)
            s1s.append(base + end)
        if rng.random() < 0.05:  # small chance for a random-length example
            target = rng.randint(5, max_len)
        else:
            target = max_len

    for c in range(0, len(doc_order), 4096):
        chunk = np.asarray(doc_order[c:c + 4096], dtype=np.int64)
        begins, stops = np.asarray(doc_offsets[chunk]).tolist(), np.asarray(doc_offsets[chunk + 1]).tolist()
        for begin, stop in zip(begins, stops):
            lengths = np.diff(sentence_offsets[begin:stop + 1]).tolist()
            base, start, current = begin, 0, 0
            for i, n in enumerate(lengths):
                current += n
                if current >= target:
                    create(start, i + 1)
                    start, current = i + 1, 0
            if current != 0:  # the blank line after a document
                create(start, len(lengths))
    return count, s0s, s1s, segs


class PretrainingData:
    """Pre-training batches from a directory written by ``electra prepare``.

    ``PretrainingData(data_dir, max_seq_len=None, seed=None, rank=0, world_size=1)``: ``max_seq_len`` and
    ``seed`` default to the values stored by ``prepare`` (meta.json). Attributes: ``vocab_size``,
    ``tokenizer_dir`` (the tokenizer files copied into the data dir), ``meta``, ``pad_id``, ``cls_id``,
    ``sep_id``, ``mask_id``, ``max_seq_len``, ``seed``, ``rank``, ``world_size``.

    ``batches(batch_size, start=0)``: an endless iterator of dicts of int64 tensors ``input_ids``,
    ``attention_mask`` (1 real, 0 padding) and ``token_type_ids``, each ``(batch_size, max_seq_len)``, and, when
    the data has word starts (``has_word_starts``: prepared with ``--segmenter``), a bool ``word_start`` (True
    where a token starts a word; special tokens and padding too); ``start`` = batches already consumed by this
    rank. Rank r of N takes examples r, r+N, r+2N, ... of the
    single-process stream (global batch i = examples [i*b*N, (i+1)*b*N) split round-robin over ranks).
    """

    def __init__(self, data_dir: str | Path, max_seq_len: int | None = None, seed: int | None = None,
                 rank: int = 0, world_size: int = 1, *, verify_tokenizer: bool = True):
        self.data_dir = Path(data_dir)
        meta_file = self.data_dir / "meta.json"
        if not meta_file.is_file():
            raise ElectraError(f"{self.data_dir}: no meta.json (not written by `electra prepare`)")

        self.meta: dict[str, Any] = read_json(meta_file, "data description")
        if not isinstance(self.meta, dict) or self.meta.get("format") != FORMAT:
            found = self.meta.get("format") if isinstance(self.meta, dict) else self.meta
            raise ElectraError(f"{meta_file}: format {found!r}, expected {FORMAT!r}")
        _check_meta(self.meta, meta_file)
        self.max_seq_len = int(max_seq_len if max_seq_len is not None else self.meta["max_seq_len"])
        self.seed = int(seed if seed is not None else self.meta.get("seed", 0))
        if self.max_seq_len < 5:
            raise ElectraError(f"max_seq_len {self.max_seq_len}: must be at least 5")
        if self.seed < 0:
            raise ElectraError(f"seed {self.seed}: must be >= 0")
        if not 0 <= rank < world_size:
            raise ElectraError(f"rank {rank} with world_size {world_size}: expected 0 <= rank < world_size")
        self.rank, self.world_size = rank, world_size
        self.vocab_size = int(self.meta["vocab_size"])
        ids = self.meta["special_ids"]
        self.pad_id, self.cls_id, self.sep_id, self.mask_id = ids["pad"], ids["cls"], ids["sep"], ids["mask"]
        # unk and any other special token: never masked (absent from data prepared before any-tokenizer support)
        self.other_special_ids = tuple(sorted({*([ids["unk"]] if "unk" in ids else []),
                                               *self.meta.get("other_special_ids", [])}))
        self.tokenizer_dir = self.data_dir / "tokenizer"
        if verify_tokenizer:
            self._verify_tokenizer()

        dtype = np.dtype(self.meta["dtype"])
        self._shards = [self._memmap(s["file"], dtype, s["tokens"]) for s in self.meta["shards"]]
        self.has_word_starts = bool(self.meta["shards"]) and "word_starts" in self.meta["shards"][0]
        self._word_shards = [self._memmap(s["word_starts"], np.uint8, s["tokens"]) for s in self.meta["shards"]] \
            if self.has_word_starts else []
        self._shard_starts = np.array([s["start"] for s in self.meta["shards"]], np.int64)
        sent = self._memmap("sentence_offsets.bin", np.int64, self.meta["counts"]["sentences"] + 1)
        docs = self._memmap("document_offsets.bin", np.int64, self.meta["counts"]["documents"] + 1)
        _check_offsets(sent, int(self._shard_starts[-1] + self.meta["shards"][-1]["tokens"]) if len(self._shards)
                       else 0, self.data_dir / "sentence_offsets.bin")
        _check_offsets(docs, len(sent) - 1, self.data_dir / "document_offsets.bin", exact_end=False)
        self._sent_offsets = sent
        self._doc_offsets = docs
        self.num_documents = len(docs) - 1
        self._plans: dict[int, EpochPlan] = {}
        self._epoch_starts = [0]  # stream position of each epoch's first example, as far as known

    def _memmap(self, name: str, dtype: Any, count: int) -> np.ndarray:
        path = self.data_dir / name
        if not path.is_file():
            raise ElectraError(f"{path}: missing (re-run `electra prepare`)")
        size = path.stat().st_size
        if size != count * np.dtype(dtype).itemsize:
            expected = count * np.dtype(dtype).itemsize
            raise ElectraError(f"{path}: {size} bytes, expected {expected} from meta.json")
        if count == 0:
            return np.zeros(0, dtype)
        return np.memmap(path, dtype=dtype, mode="r", shape=(count,))

    def _verify_tokenizer(self) -> None:
        if not self.tokenizer_dir.is_dir():
            raise ElectraError(f"{self.tokenizer_dir}: missing (the tokenizer copy of this data directory)")
        found = tokenizer_hash(load_tokenizer(self.tokenizer_dir))
        if found != self.meta["tokenizer_hash"]:
            raise ElectraError(f"{self.tokenizer_dir}: tokenizer hash {found} differs from meta.json "
                               f"({self.meta['tokenizer_hash']}); the data was prepared with another "
                               "vocabulary")

    def sentences(self) -> Iterator[np.ndarray]:
        """Token ids of every sentence (input line) in input order: views of the memory-mapped shards."""
        offsets = self._sent_offsets
        for c in range(0, len(offsets) - 1, 65536):
            chunk = np.asarray(offsets[c:c + 65537]).tolist()
            for begin, end in zip(chunk[:-1], chunk[1:]):
                yield self._tokens(begin, end)

    # ---- the example stream --------------------------------------------------------------------------
    def plan(self, epoch: int) -> EpochPlan:
        """The (cached) packing of one epoch."""
        if epoch not in self._plans:
            _, s0, s1, seg = pack_documents(self._sent_offsets, self._doc_offsets, self._doc_order(epoch),
                                            self.max_seq_len, self._rng(epoch))
            order = np.random.default_rng([self.seed, epoch, 1]).permutation(len(s0))
            if len(self._plans) >= 2:  # keep the current and the next epoch only
                self._plans.pop(min(self._plans))
            self._plans[epoch] = EpochPlan(np.frombuffer(s0, np.int64), np.frombuffer(s1, np.int64),
                                           np.frombuffer(seg, np.uint8), order)
        return self._plans[epoch]

    def token_counts(self) -> np.ndarray:
        """How often each vocabulary id occurs in the shards (int64, length ``vocab_size``)."""
        counts = np.zeros(self.vocab_size, np.int64)
        for shard in self._shards:
            counts += np.bincount(np.asarray(shard), minlength=self.vocab_size)[: self.vocab_size]
        return counts

    def num_examples(self, epoch: int = 0) -> int:
        """Examples in one epoch (they vary slightly from epoch to epoch with the random packing)."""
        if epoch in self._plans:
            return len(self._plans[epoch])
        return self._count(epoch)

    def _doc_order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch, 0]).permutation(self.num_documents)

    def _rng(self, epoch: int) -> random.Random:
        return random.Random(self.seed * 1_000_003 + epoch)

    def _count(self, epoch: int) -> int:
        return pack_documents(self._sent_offsets, self._doc_offsets, self._doc_order(epoch), self.max_seq_len,
                              self._rng(epoch), store=False)[0]

    def _locate(self, position: int) -> tuple[int, int]:
        """(epoch, index in the epoch) of a position in the endless single-process example stream."""
        starts = self._epoch_starts
        while position >= starts[-1]:
            epoch = len(starts) - 1
            n = len(self.plan(epoch))
            if n == 0:
                raise ElectraError(f"{self.data_dir}: no examples (empty data)")
            starts.append(starts[-1] + n)
        epoch = int(np.searchsorted(starts, position, side="right")) - 1
        return epoch, position - starts[epoch]

    def _tokens(self, begin: int, end: int, shards: list[np.ndarray] | None = None) -> np.ndarray:
        """Tokens ``begin .. end`` (global offsets; never across shards); of ``shards`` (the word starts) if given."""
        k = 0 if len(self._shards) == 1 else int(np.searchsorted(self._shard_starts, begin, side="right")) - 1
        base = self._shard_starts[k]
        return (self._shards if shards is None else shards)[k][begin - base:end - base]

    def example(self, position: int) -> tuple[np.ndarray, ...]:
        """(input_ids, attention_mask, token_type_ids) of stream position ``position``, int64, padded; with word
        starts in the data also ``word_start`` (bool)."""
        epoch, j = self._locate(position)
        plan = self.plan(epoch)
        return self.build_example(plan, int(plan.order[j]))

    def build_example(self, plan: EpochPlan, k: int) -> tuple[np.ndarray, ...]:
        """Example ``k`` of an epoch's packing (before the epoch's shuffle): ``[CLS] A [SEP] (B [SEP])``, as
        (input_ids, attention_mask, token_type_ids), and ``word_start`` aligned with input_ids (True where a token
        starts a word; special tokens and padding too) when the data has word starts."""
        s0, s1 = int(plan.s0[k]), int(plan.s1[k])
        seg = plan.seg[plan.ptr[k]:plan.ptr[k + 1]]
        offsets = self._sent_offsets[s0:s1 + 1]
        tokens = self._tokens(int(offsets[0]), int(offsets[-1]))
        starts = self._tokens(int(offsets[0]), int(offsets[-1]), self._word_shards) if self.has_word_starts \
            else None
        in_b = np.repeat(seg, np.diff(offsets)).astype(bool) if seg.any() else None
        first, second = _split(tokens, in_b)
        T = self.max_seq_len
        first = first[:T - 2]
        second = second[:max(0, T - len(first) - 3)]
        ids = np.full(T, self.pad_id, np.int64)
        types = np.zeros(T, np.int64)
        n_a = len(first) + 2
        ids[0], ids[1:n_a - 1], ids[n_a - 1] = self.cls_id, first, self.sep_id
        n = n_a
        if len(second):
            n = n_a + len(second) + 1
            ids[n_a:n - 1], ids[n - 1] = second, self.sep_id
            types[n_a:n] = 1
        mask = np.zeros(T, np.int64)
        mask[:n] = 1
        if not self.has_word_starts:
            return ids, mask, types
        first_starts, second_starts = _split(starts, in_b)
        word_start = np.ones(T, bool)  # [CLS], [SEP] and padding: special tokens start a word
        word_start[1:n_a - 1] = first_starts[:len(first)]
        word_start[n_a:n_a + len(second)] = second_starts[:len(second)]
        return ids, mask, types, word_start

    def examples(self, start: int = 0) -> Iterator[tuple[np.ndarray, ...]]:
        """This rank's examples from its ``start``-th on (rank r: stream positions r, r+N, ...)."""
        position = start * self.world_size + self.rank
        while True:
            yield self.example(position)
            position += self.world_size

    def batches(self, batch_size: int, start: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        """Endless batches for this rank; ``start`` = batches this rank has already consumed."""
        import torch

        if batch_size < 1:
            raise ElectraError(f"batch_size {batch_size}: must be >= 1")
        stream = self.examples(start * batch_size)
        while True:
            rows = [next(stream) for _ in range(batch_size)]
            batch = {name: torch.from_numpy(np.stack([r[i] for r in rows]))
                     for i, name in enumerate(("input_ids", "attention_mask", "token_type_ids", "word_start")[
                         :len(rows[0])])}
            if int(batch["input_ids"].max()) >= self.vocab_size:  # a damaged shard: never an index error later
                raise ElectraError(f"{self.data_dir}: token id {int(batch['input_ids'].max())} in the shards is "
                                   f"outside the {self.vocab_size}-entry vocabulary (damaged; re-run `electra "
                                   "prepare`)")
            yield batch


def _split(values: np.ndarray, in_b: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(segment A's values, segment B's): all in A when ``in_b`` is None."""
    return (values, values[:0]) if in_b is None else (values[~in_b], values[in_b])


def _check_meta(meta: dict[str, Any], where: Path) -> None:
    """The fields of ``meta.json`` that reading relies on, with their types (one-line error otherwise)."""
    def need(ok: bool, field: str) -> None:
        if not ok:
            raise ElectraError(f"{where}: field {field!r} is missing or malformed (re-run `electra prepare`)")

    is_int = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
    need(is_int(meta.get("vocab_size")) and meta["vocab_size"] > 0, "vocab_size")
    need(is_int(meta.get("max_seq_len")) and is_int(meta.get("seed", 0)), "max_seq_len")
    need(meta.get("dtype") in ("uint16", "uint32"), "dtype")
    ids = meta.get("special_ids")
    need(isinstance(ids, dict) and all(is_int(ids.get(k)) and 0 <= ids[k] < meta["vocab_size"]
                                       for k in ("pad", "cls", "sep", "mask")), "special_ids")
    shards = meta.get("shards")
    need(isinstance(shards, list) and all(isinstance(x, dict) and isinstance(x.get("file"), str)
                                          and "/" not in x["file"] and is_int(x.get("start"))
                                          and is_int(x.get("tokens")) and x["tokens"] >= 0 for x in shards), "shards")
    need(all(a["start"] + a["tokens"] == b["start"] for a, b in zip(shards, shards[1:]))
         and (not shards or shards[0]["start"] == 0), "shards")
    words = [x.get("word_starts") for x in shards]  # with --segmenter: every shard names its word-start file
    need(all(w is None for w in words) or all(isinstance(w, str) and w and "/" not in w for w in words),
         "shards")
    counts = meta.get("counts")
    need(isinstance(counts, dict) and all(is_int(counts.get(k)) and counts[k] >= 0
                                          for k in ("sentences", "documents")), "counts")


def _check_offsets(offsets: np.ndarray, end: int, where: Path, exact_end: bool = True, chunk: int = 1 << 22) -> None:
    """Offsets start at 0, never decrease and end at ``end`` (or, without ``exact_end``, not after it: data
    prepared before a cut-short document was closed has sentences after its last document); read in chunks."""
    last = int(offsets[-1]) if len(offsets) else -1
    if len(offsets) == 0 or int(offsets[0]) != 0 or (last != end if exact_end else not 0 <= last <= end):
        raise ElectraError(f"{where}: offsets do not run from 0 to {end} (damaged; re-run `electra prepare`)")
    for i in range(0, len(offsets) - 1, chunk):
        if (np.diff(np.asarray(offsets[i:i + chunk + 1])) < 0).any():
            raise ElectraError(f"{where}: offsets decrease near entry {i} (damaged; re-run `electra prepare`)")
