"""Raw text -> token shards + document/sentence index + ``meta.json`` (the input of pre-training).

Layout of a prepared data directory (all integers little-endian, read with ``numpy.memmap``)::

    meta.json                  format, tokenizer hash, vocab size, dtype, shards, counts, seed, max_seq_len
    tokenizer/                 a copy of the tokenizer files (stored with checkpoints by pre-training)
    tokens-00000.bin ...       token ids of all sentences back to back (uint16 if the vocab fits, else uint32)
    words-00000.bin ...        with --segmenter only: one uint8 per token of the same shard, 1 where the token
                               starts a word (electra.data.words), named in meta.json's shards as "word_starts"
    sentence_offsets.bin       int64, n_sentences + 1: global token offset where each sentence starts
    document_offsets.bin       int64, n_documents + 1: index of each document's first sentence

Token offsets are global (shard k holds tokens ``shards[k].start .. start + tokens``); a document never
crosses a shard. A "sentence" is one input line (a paragraph or a sentence, as the official ELECTRA builder
treats lines). Only the input order is stored: examples are packed at read time (``pretraining_data``).
The directory is written atomically (a temporary sibling, then a rename).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from electra.config import at_least, check_values
from electra.data.corpus import DOC_END, MAX_LINE_BYTES, Corpus
from electra.data.pretraining_data import PretrainingData  # no torch import until batches()
from electra.data.words import SEGMENTERS, Segmenter, token_word_starts
from electra.errors import ElectraError, os_reason
from electra.tokenization import (
    find_tokenizer_dir,
    is_lowercase,
    load_tokenizer,
    save_tokenizer,
    special_tokens,
    tokenizer_hash,
)

FORMAT = "electra-pretraining-shards/1"
META_FILE = "meta.json"
TOKENIZER_SUBDIR = "tokenizer"
SENTENCE_OFFSETS = "sentence_offsets.bin"
DOCUMENT_OFFSETS = "document_offsets.bin"
SHARD_TOKENS = 1 << 28  # soft cap per shard file (512 MiB of uint16)
BATCH_CHARS = 1 << 20  # text handed to encode_batch at once


@dataclass
class PrepareSummary:
    """What ``prepare`` read, wrote and skipped (``skipped``/``altered``: reason -> count)."""

    out: Path
    files: int
    bytes: int
    documents: int
    sentences: int
    tokens: int
    examples: int  # pre-training examples in epoch 0 at max_seq_len with the seed
    shards: int
    dtype: str
    seconds: float
    skipped: dict[str, int] = field(default_factory=dict)
    altered: dict[str, int] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)
    segmenter: str = ""  # with --segmenter: what recorded the word starts

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / max(self.seconds, 1e-9)

    def format(self) -> str:
        rows = [("output", str(self.out)), ("files read", f"{self.files:,}"),
                ("input", f"{self.bytes / 1e6:,.1f} MB"), ("documents", f"{self.documents:,}"),
                ("sentences (lines)", f"{self.sentences:,}"), ("tokens", f"{self.tokens:,}"),
                ("examples / epoch", f"{self.examples:,}"), ("shards", f"{self.shards} ({self.dtype})"),
                *([("word starts", self.segmenter)] if self.segmenter else []),
                ("time", f"{self.seconds:.1f} s ({self.mb_per_s:.2f} MB/s, "
                         f"{self.tokens / max(self.seconds, 1e-9) / 1e3:,.0f}k tokens/s)")]
        for title, counts in (("skipped", self.skipped), ("altered", self.altered)):
            if not counts:
                rows.append((title, "none"))
            for reason, n in sorted(counts.items()):
                where = "; ".join(self.notes.get(reason, []))
                rows.append((title, f"{n:,} {reason}" + (f" (e.g. {where})" if where else "")))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


Encoded = tuple[np.ndarray, np.ndarray, np.ndarray | None]


def _encode(tok: Tokenizer, lines: list[str], dtype: np.dtype, segmenter: Segmenter | None = None) -> Encoded:
    """(tokens per line, all token ids flat, word starts flat: uint8 per token or None without a segmenter) for a
    batch of lines, without special tokens."""
    if segmenter is None:
        encode = getattr(tok, "encode_batch_fast", tok.encode_batch)  # no offsets: faster (tokenizers >= 0.20)
        encodings = encode(lines, add_special_tokens=False)
    else:
        encodings = tok.encode_batch(lines, add_special_tokens=False)  # with character offsets
    ids = [e.ids for e in encodings]
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter(chain.from_iterable(ids), dtype=dtype, count=int(lengths.sum()))
    starts = None
    if segmenter is not None:
        parts = [token_word_starts(e.offsets, segmenter.word_starts(line))
                 for e, line in zip(encodings, lines) if len(e.ids)]
        starts = np.concatenate(parts).astype(np.uint8) if parts else np.zeros(0, np.uint8)
    return lengths, flat, starts


_worker_tok: Tokenizer | None = None
_worker_segmenter: Segmenter | None = None


def _worker_init(tokenizer_file: str, segmenter: str | None = None) -> None:
    global _worker_tok, _worker_segmenter
    os.environ["RAYON_NUM_THREADS"] = "1"  # one process per core; no nested thread pools
    _worker_tok = Tokenizer.from_file(tokenizer_file)
    _worker_segmenter = Segmenter(segmenter) if segmenter else None


def _worker_encode(job: tuple[list[str], str]) -> Encoded:
    assert _worker_tok is not None
    return _encode(_worker_tok, job[0], np.dtype(job[1]), _worker_segmenter)


def _batches(corpus: Corpus, max_chars: int) -> Iterator[tuple[list[str], list[bool]]]:
    """Lines and "document ends after this line" flags, about ``max_chars`` characters per batch."""
    lines: list[str] = []
    ends: list[bool] = []
    chars = 0
    for line in corpus.lines():
        if line is DOC_END:
            ends[-1] = True  # a document has at least one line, and it is still in this batch
            continue
        if chars >= max_chars:
            yield lines, ends
            lines, ends, chars = [], [], 0
        lines.append(line)
        ends.append(False)
        chars += len(line)
    if lines:
        yield lines, ends


class _ShardWriter:
    """Appends sentences to token shards (and, with ``words``, word-start shards of the same split) and the two
    offset files; rolls shards over at document ends."""

    def __init__(self, out: Path, dtype: np.dtype, shard_tokens: int, words: bool = False):
        self.out, self.dtype, self.shard_tokens, self.words = out, dtype, shard_tokens, words
        self.shards: list[dict[str, Any]] = []
        self.tokens = 0  # global token count
        self.sentences = 0
        self.documents = 0
        self.doc_sentences = 0  # sentences of the open document
        self._sent = open(out / SENTENCE_OFFSETS, "wb")  # noqa: SIM115 - closed in close()
        self._docs = open(out / DOCUMENT_OFFSETS, "wb")  # noqa: SIM115
        self._sent.write(np.zeros(1, np.int64).tobytes())
        self._docs.write(np.zeros(1, np.int64).tobytes())
        self._shard = self._words = None
        self._new_shard()

    def _new_shard(self) -> None:
        for f in (self._shard, self._words):
            if f is not None:
                f.close()
        k = len(self.shards)
        self.shards.append({"file": f"tokens-{k:05d}.bin", "start": self.tokens, "tokens": 0})
        self._shard = open(self.out / self.shards[-1]["file"], "wb")  # noqa: SIM115 - closed in close()
        if self.words:
            self.shards[-1]["word_starts"] = f"words-{k:05d}.bin"
            self._words = open(self.out / self.shards[-1]["word_starts"], "wb")  # noqa: SIM115

    def add(self, lengths: np.ndarray, flat: np.ndarray, starts: np.ndarray | None, ends: list[bool]
            ) -> tuple[int, int]:
        """Write one encoded batch (``starts``: its word starts, with ``words``); returns (lines without tokens,
        documents without tokens) dropped."""
        keep = lengths > 0
        ends_arr = np.asarray(ends, dtype=bool)
        sent_ends = self.tokens + np.cumsum(lengths[keep])
        empty_docs = 0
        doc_ends: list[int] = []
        written = 0  # position in flat already written
        pos = 0
        n_sent = self.sentences
        for i in np.flatnonzero(keep | ends_arr).tolist():  # only lines that matter for the loop
            if keep[i]:
                pos += int(lengths[i])
                n_sent += 1
                self.doc_sentences += 1
            if ends_arr[i]:
                if self.doc_sentences == 0:
                    empty_docs += 1
                    continue
                doc_ends.append(n_sent)
                self.doc_sentences = 0
                shard = self.shards[-1]
                if shard["tokens"] + pos - written >= self.shard_tokens:
                    self._write(flat[written:pos], None if starts is None else starts[written:pos])
                    written = pos
                    self._new_shard()
        self._write(flat[written:], None if starts is None else starts[written:])
        self._sent.write(sent_ends.astype(np.int64).tobytes())
        self._docs.write(np.asarray(doc_ends, np.int64).tobytes())
        self.sentences = n_sent
        self.documents += len(doc_ends)
        return int((~keep).sum()), empty_docs

    def _write(self, tokens: np.ndarray, starts: np.ndarray | None) -> None:
        if len(tokens):
            self._shard.write(tokens.tobytes())
            if self._words is not None:
                assert starts is not None and len(starts) == len(tokens)
                self._words.write(starts.tobytes())
            self.shards[-1]["tokens"] += len(tokens)
            self.tokens += len(tokens)

    def close(self) -> None:
        """Close the files (again is fine); drop a last shard left empty by a roll-over."""
        if self._shard.closed:
            return
        for f in (self._shard, self._words, self._sent, self._docs):
            if f is not None:
                f.close()
        if self.shards[-1]["tokens"] == 0 and len(self.shards) > 1:
            last = self.shards.pop()
            for name in (last["file"], last.get("word_starts")):
                if name:
                    os.remove(self.out / name)


def _tokenize_into(writer: _ShardWriter, corpus: Corpus, tok: Tokenizer, tok_dir: Path, dtype: np.dtype,
                   workers: int, batch_chars: int, bar: Any, segmenter: Segmenter | None = None) -> tuple[int, int]:
    """Read, tokenize (and segment) and write the corpus in order; (lines, documents) without tokens, dropped."""
    pool = executor = None
    if workers > 1:
        import multiprocessing as mp

        pool = mp.get_context("spawn").Pool(workers, _worker_init, (str(tok_dir / "tokenizer.json"),
                                                                    segmenter.name if segmenter else None))

        def submit(lines: list[str]):
            return pool.apply_async(_worker_encode, ((lines, dtype.str),)).get
    else:  # tokenize one batch in a thread (encode_batch releases the GIL) while reading the next
        executor = ThreadPoolExecutor(1)

        def submit(lines: list[str]):
            return executor.submit(_encode, tok, lines, dtype, segmenter).result
    window = max(2 * workers, 1)  # batches in flight: bounded, so memory stays flat
    inflight: deque = deque()
    empty_lines = empty_docs = 0
    try:
        for item in chain(_batches(corpus, batch_chars), [None]):
            if item is not None:
                inflight.append((item[1], submit(item[0])))
            while inflight and (len(inflight) > window or item is None):
                ends, result = inflight.popleft()
                a, b = writer.add(*result(), ends)
                empty_lines, empty_docs = empty_lines + a, empty_docs + b
                bar.update(corpus.position() - bar.n)
    finally:
        if pool is not None:
            pool.terminate()
        if executor is not None:
            executor.shutdown(cancel_futures=True)
    return empty_lines, empty_docs


def _check_out(out: Path, tok_hash: str, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ElectraError(f"--out {out}: exists and is not a directory")
    if not out.is_dir() or not any(out.iterdir()):
        return
    meta_file = out / META_FILE
    if not meta_file.is_file():
        if overwrite:
            raise ElectraError(f"--out {out}: not empty and not a prepared data directory; not replacing it")
        raise ElectraError(f"--out {out}: not empty and not a prepared data directory (choose a new folder)")
    try:
        old = json.loads(meta_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        old = {}
    old = old if isinstance(old, dict) else {}
    if old.get("tokenizer_hash") != tok_hash and not overwrite:
        raise ElectraError(f"--out {out}: holds data prepared with a different tokenizer vocabulary "
                           f"(hash {old.get('tokenizer_hash')} vs {tok_hash}); use a new --out, "
                           "or --overwrite")


def prepare(inputs: Sequence[str | Path], tokenizer: str | Path, out: str | Path, max_seq_len: int = 128, *,
            workers: int = 0, seed: int = 0, text_field: str = "text", errors: str = "strict",
            overwrite: bool = False, shard_tokens: int = SHARD_TOKENS, max_line_bytes: int = MAX_LINE_BYTES,
            batch_chars: int = BATCH_CHARS, progress: bool = True, segmenter: str | None = None) -> PrepareSummary:
    """Tokenize ``inputs`` (files/folders of .txt, .txt.gz, .jsonl) with ``tokenizer`` into ``out``.

    Streams the text (memory stays flat whatever the corpus size); ``workers > 1`` tokenizes in that many
    processes (same output as ``workers=0``, which uses the tokenizer's own threads). ``seed`` and
    ``max_seq_len`` are stored as the defaults for ``PretrainingData`` and used for the example count.
    ``segmenter`` (``jieba``): also record which tokens start a word of that segmenter (whole-word masking of
    text without spaces, :mod:`electra.data.words`), in word-start shards beside the token shards.
    """
    t0 = time.perf_counter()
    if max_seq_len < 5:
        raise ElectraError(f"--max-seq-len {max_seq_len}: must be at least 5")
    if seed < 0:
        raise ElectraError(f"--seed {seed}: must be >= 0")

    check_values("prepare option", {"workers": workers, "shard_tokens": shard_tokens, "batch_chars": batch_chars},
                 {"workers": at_least(0), "shard_tokens": at_least(1), "batch_chars": at_least(1)})
    if segmenter is not None and segmenter not in SEGMENTERS:
        raise ElectraError(f"--segmenter {segmenter}: expected one of {', '.join(SEGMENTERS)}")
    seg = Segmenter(segmenter) if segmenter else None  # the zh extra is checked before any work
    tok_dir = find_tokenizer_dir(tokenizer)
    tok = load_tokenizer(tok_dir)
    tok_hash = tokenizer_hash(tok)
    specials = special_tokens(tok)
    specials.need_mask("pre-training replaces masked tokens")
    out = Path(out)
    _check_out(out, tok_hash, overwrite)
    corpus = Corpus(inputs, text_field=text_field, errors=errors, max_line_bytes=max_line_bytes)
    vocab_size = tok.get_vocab_size()
    dtype = np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)

    kept = "the previous contents are unchanged" if out.exists() else "nothing was written"
    tmp = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        save_tokenizer(tok, tmp / TOKENIZER_SUBDIR)
        writer = _ShardWriter(tmp, dtype, shard_tokens, words=seg is not None)
        try:
            with _progress(corpus.total_bytes, progress) as bar:
                empty_lines, empty_docs = _tokenize_into(writer, corpus, tok, tmp / TOKENIZER_SUBDIR, dtype,
                                                         workers, batch_chars, bar, seg)
        finally:
            writer.close()
        stats = corpus.stats
        if empty_lines:
            stats.skip("line with no tokens (e.g. only control characters)", "", empty_lines)
        if empty_docs:
            stats.skip("document with no tokens", "", empty_docs)
        if writer.tokens == 0:
            raise ElectraError(f"no text found in {' '.join(map(str, inputs))}"
                               + (f" (skipped: {dict(stats.skipped)})" if stats.skipped else ""))
        meta = {
            "format": FORMAT, "tokenizer_hash": tok_hash, "vocab_size": vocab_size, "dtype": dtype.name,
            "lowercase": is_lowercase(tok),
            "special_ids": dict(specials.ids), "other_special_ids": sorted(specials.other_ids),
            "max_seq_len": max_seq_len, "seed": seed, "shards": writer.shards,
            "counts": {"files": stats.files, "bytes": stats.bytes, "documents": writer.documents,
                       "sentences": writer.sentences, "tokens": writer.tokens},
            "skipped": dict(stats.skipped), "altered": dict(stats.altered),
            "inputs": [str(p) for p in inputs], "text_field": text_field, "errors": errors,
            "tokenizer_source": str(tok_dir),
        }
        if seg is not None:
            meta["segmenter"] = seg.describe()

        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        examples = PretrainingData(tmp, verify_tokenizer=False).num_examples(0)
        meta["counts"]["examples_epoch0"] = examples
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except OSError as e:  # a full disk, a file-size limit, a read-only folder
        raise ElectraError(f"--out {out}: could not write the prepared data ({os_reason(e)}); {kept}") from None
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return PrepareSummary(out=out, files=stats.files, bytes=stats.bytes, documents=writer.documents,
                          sentences=writer.sentences, tokens=writer.tokens, examples=examples,
                          shards=len(writer.shards), dtype=dtype.name, seconds=time.perf_counter() - t0,
                          skipped=dict(stats.skipped), altered=dict(stats.altered), notes=dict(stats.notes),
                          segmenter=f"{seg.name} ({seg.package} {seg.version})" if seg else "")


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, desc="prepare", disable=not enabled, smoothing=0.1)
