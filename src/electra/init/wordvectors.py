"""Word vectors for the seed's embedding initialisation: word2vec (gensim) over the tokenizer's pieces.

``train_word_vectors`` streams a corpus as token sequences (WordPiece or SentencePiece pieces), one per input line,
and trains gensim's ``Word2Vec`` (skip-gram or CBOW, negative sampling) on them, so continuation pieces (``##ing``;
SentencePiece's pieces without ``▁``) and CJK characters get vectors like whole words do. The corpus is either raw
text (``.txt``/``.txt.gz``/``.jsonl`` files or folders, tokenized on the fly with the given tokenizer) or a folder
written by ``electra prepare`` (recognised by its ``meta.json``; the token ids are read from its memory-mapped
shards and mapped back to tokens with the folder's own tokenizer copy). Either way the sentences are re-read on
every pass (gensim makes one pass to count, then one per epoch): memory does not grow with the corpus. Lines longer
than gensim's 10,000-token batch limit are cut into pieces of that length instead of being truncated.

Every vocabulary entry gets a vector, so the file is *vocabulary-complete*:

- ``learned``: tokens seen at least ``min_count`` times take gensim's vector;
- ``twin``: a token not learned whose twin (the same surface form on the other side of a word boundary:
  ``piece`` for ``##piece`` and back; SentencePiece: ``piece`` for ``▁piece`` and back) was learned takes the
  twin's vector;
- ``random``: any other token, and the tokenizer's special tokens (its roles', e.g. ``[PAD]``, ``[CLS]`` or
  ``<pad>``, ``<s>``; the unknown token is trained as context but not kept), get a vector drawn from a normal
  with the learned vectors' per-dimension mean and standard deviation, seeded by ``(seed, token id)``.

The output is word2vec text format (a ``count dim`` header, then ``token v1 ... vD`` per line) in vocabulary
id order, written atomically, which ``electra.init.embeddings`` recognises as vocabulary-complete and then
uses for every entry but the special tokens (pieces inside words included).

Reproducibility: with ``workers=1`` (the default) the same corpus, options and ``seed`` give the same file
byte for byte; gensim with several worker threads is faster but not reproducible (the threads race).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from electra.data.corpus import Corpus
from electra.data.pretraining_data import PretrainingData
from electra.errors import ElectraError
from electra.init.embeddings import vocabulary_of
from electra.tokenization import find_tokenizer_dir, load_tokenizer, vocab_tokens

METHODS = {"skipgram": 1, "cbow": 0}  # gensim's sg flag
MAX_SENTENCE_TOKENS = 10_000  # gensim's word2vec_inner.MAX_WORDS_IN_BATCH: longer sentences are truncated
_ENCODE_LINES = 1024  # lines handed to the tokenizer at once


@dataclass
class WordVectorsReport:
    """What ``train_word_vectors`` read and wrote. ``learned + twin + random == vocab_size``."""

    out: Path
    source: str  # "text" or "shards"
    sentences: int  # per pass, after --max-sentences
    tokens: int
    vocab_size: int
    learned: int
    twin: int
    random: int
    dim: int
    method: str
    epochs: int
    seconds: float

    @property
    def filled(self) -> int:
        return self.twin + self.random

    def format(self) -> str:
        return (f"wrote {self.out}: {self.vocab_size:,} vectors (100% of the vocabulary; {self.learned:,} learned, "
                f"{self.filled:,} filled in: {self.twin:,} from their twin, {self.random:,} random) of "
                f"{self.dim} dims, {self.method} x {self.epochs} epochs over {self.sentences:,} sentences, "
                f"{self.tokens:,} tokens ({self.source}) in {self.seconds:.1f} s")


# ---- the corpus as token sequences ---------------------------------------------------------------------
def _pieces(tokens: list[str]) -> Iterator[list[str]]:
    for i in range(0, len(tokens), MAX_SENTENCE_TOKENS):
        yield tokens[i:i + MAX_SENTENCE_TOKENS]


class TextSentences:
    """Raw text files as token lists, one per non-empty line; iterable any number of times."""

    def __init__(self, inputs: Sequence[str | Path], tokenizer: Tokenizer, *, text_field: str = "text",
                 errors: str = "strict", max_sentences: int | None = None):
        Corpus(inputs, text_field=text_field, errors=errors)  # checks the inputs now (missing files, --errors)
        self.inputs, self.tokenizer = list(inputs), tokenizer
        self.text_field, self.errors, self.max_sentences = text_field, errors, max_sentences

    def __iter__(self) -> Iterator[list[str]]:
        corpus = Corpus(self.inputs, text_field=self.text_field, errors=self.errors)
        left = self.max_sentences
        batch: list[str] = []
        for line in corpus.texts():
            batch.append(line)
            if (left is not None and len(batch) >= left) or len(batch) >= _ENCODE_LINES:
                yield from self._encode(batch)
                if left is not None:
                    left -= len(batch)
                    if left <= 0:
                        return
                batch = []
        yield from self._encode(batch)

    def _encode(self, lines: list[str]) -> Iterator[list[str]]:
        if not lines:
            return
        for enc in self.tokenizer.encode_batch(lines, add_special_tokens=False):
            if enc.tokens:
                yield from _pieces(enc.tokens)


class ShardSentences:
    """The sentences of a folder written by ``electra prepare``, as token lists, in input order."""

    def __init__(self, data_dir: str | Path, tokens: Sequence[str], max_sentences: int | None = None):
        self.data = PretrainingData(data_dir, verify_tokenizer=False)
        self.tokens, self.max_sentences = list(tokens), max_sentences

    def __iter__(self) -> Iterator[list[str]]:
        tokens = self.tokens
        for n, ids in enumerate(self.data.sentences()):
            if self.max_sentences is not None and n >= self.max_sentences:
                return
            if len(ids):
                yield from _pieces([tokens[i] for i in ids.tolist()])


def is_prepared_dir(path: str | Path) -> bool:
    """Whether ``path`` is a folder written by ``electra prepare`` (it holds a ``meta.json``)."""
    return Path(path).is_dir() and (Path(path) / "meta.json").is_file()


def _sentences_and_vocab(inputs: Sequence[str | Path], tokenizer: str | Path | None, text_field: str,
                         errors: str, max_sentences: int | None
                         ) -> tuple[TextSentences | ShardSentences, Tokenizer, str]:
    """(restartable sentence iterable, the tokenizer, "text" or "shards")."""

    def load(path: str | Path) -> Tokenizer:  # a tokenizer directory (or its tokenizer.json / vocab.txt)
        return load_tokenizer(path if Path(path).is_file() else find_tokenizer_dir(path))

    if not inputs:
        raise ElectraError("--input: give at least one text file, folder, or prepared data folder")
    prepared = [p for p in inputs if is_prepared_dir(p)]
    if prepared:
        if len(inputs) > 1:
            raise ElectraError(f"--input {prepared[0]}: a prepared data folder must be the only input")
        data_dir = Path(prepared[0])
        if not (data_dir / "tokenizer").is_dir():
            raise ElectraError(f"{data_dir / 'tokenizer'}: missing (the tokenizer copy of this data folder); "
                               "re-run `electra prepare`")

        PretrainingData(data_dir)  # checks meta.json, the shard sizes and the tokenizer copy's hash
        tok = load_tokenizer(data_dir / "tokenizer")
        vocab = vocab_tokens(tok)
        if tokenizer is not None and vocab_tokens(load(tokenizer)) != vocab:
            raise ElectraError(f"--tokenizer {tokenizer}: vocabulary differs from the one {data_dir} was prepared "
                               "with (its tokenizer/ copy); omit --tokenizer")
        return ShardSentences(data_dir, vocab, max_sentences), tok, "shards"
    if tokenizer is None:
        raise ElectraError("--tokenizer: required for raw text input (a tokenizer directory)")
    tok = load(tokenizer)
    sentences = TextSentences(inputs, tok, text_field=text_field, errors=errors, max_sentences=max_sentences)
    return sentences, tok, "text"


# ---- training and completion ---------------------------------------------------------------------------
class _EpochProgress:
    """A gensim callback printing one line per finished epoch (a 60 MB corpus takes minutes per epoch)."""

    def __init__(self, epochs: int, t0: float):
        self.epochs, self.t0, self.epoch = epochs, t0, 0

    def on_train_begin(self, model) -> None:  # noqa: ANN001 - gensim's callback protocol
        print(f"word2vec: {model.corpus_count:,} sentences, {len(model.wv):,} tokens learned; "
              f"{self.epochs} epoch(s)", flush=True)

    def on_epoch_begin(self, model) -> None:  # noqa: ANN001
        pass

    def on_epoch_end(self, model) -> None:  # noqa: ANN001
        self.epoch += 1
        print(f"word2vec: epoch {self.epoch}/{self.epochs} done at {time.perf_counter() - self.t0:.0f} s", flush=True)

    def on_train_end(self, model) -> None:  # noqa: ANN001
        pass

    def on_batch_begin(self, model) -> None:  # noqa: ANN001
        pass

    def on_batch_end(self, model) -> None:  # noqa: ANN001
        pass


def _check_options(dim: int, method: str, window: int, epochs: int, min_count: int, workers: int, seed: int,
                   max_sentences: int | None) -> None:
    if method not in METHODS:
        raise ElectraError(f"--method {method}: expected one of {', '.join(METHODS)}")
    for flag, value in (("--dim", dim), ("--window", window), ("--epochs", epochs), ("--min-count", min_count),
                        ("--workers", workers)):
        if value < 1:
            raise ElectraError(f"{flag} {value}: must be >= 1")
    if seed < 0:
        raise ElectraError(f"--seed {seed}: must be >= 0")
    if max_sentences is not None and max_sentences < 1:
        raise ElectraError(f"--max-sentences {max_sentences}: must be >= 1")


def twin(token: str, marker: str = "##") -> str:
    """The token with the same surface form on the other side of a word boundary: ``##ab`` <-> ``ab``
    (WordPiece's continuation prefix), or ``▁ab`` <-> ``ab`` (SentencePiece's word-start mark as ``marker``)."""
    n = len(marker)
    return token[n:] if token.startswith(marker) and len(token) > n else marker + token


def complete_vectors(vocab: Sequence[str], learned: Mapping[str, np.ndarray], dim: int, seed: int = 0,
                     special: Collection[str] | None = None, marker: str = "##") -> tuple[np.ndarray, list[str]]:
    """A ``(len(vocab), dim)`` float32 matrix with a vector for every entry, and each row's source.

    Sources (see the module docstring): ``learned``, ``twin`` (:func:`twin` with ``marker``), ``random``.
    ``special``: the special tokens (default: a ``vocab.txt``'s, BERT's), always ``random``, so
    ``init_word_embeddings`` can skip them without losing anything learned.
    """
    _, specials, _, _ = vocabulary_of(vocab, special)
    learned = {t: v for t, v in learned.items() if t not in specials}  # e.g. [UNK]: context, not kept
    if learned:
        stack = np.stack(list(learned.values())).astype(np.float32)
        mean, std = stack.mean(0), stack.std(0)
    else:
        mean, std = np.zeros(dim, np.float32), np.full(dim, 0.1, np.float32)
    matrix = np.empty((len(vocab), dim), np.float32)
    sources: list[str] = []
    for i, token in enumerate(vocab):
        if token in learned:
            matrix[i], source = learned[token], "learned"
        elif token not in specials and twin(token, marker) in learned:
            matrix[i], source = learned[twin(token, marker)], "twin"
        else:
            matrix[i] = mean + std * np.random.default_rng([seed, i]).standard_normal(dim)
            source = "random"
        sources.append(source)
    return matrix, sources


def write_word2vec_text(path: str | Path, tokens: Sequence[str], matrix: np.ndarray) -> Path:
    """Write word2vec text format (``count dim``, then ``token v1 ... vD``) atomically (temp file, rename)."""
    path = Path(path)
    for i, token in enumerate(tokens):
        if not token or any(c.isspace() for c in token):
            raise ElectraError(f"vocabulary entry {i} ({token!r}) is empty or has whitespace: "
                               "cannot be written in word2vec text format")
    if path.is_dir():
        raise ElectraError(f"--out {path}: is a directory (expected a file name, e.g. vectors.txt)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(f"{len(tokens)} {matrix.shape[1]}\n")
            for token, row in zip(tokens, matrix.tolist()):
                f.write(token + " " + " ".join(f"{x:.7g}" for x in row) + "\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def train_word_vectors(inputs: Sequence[str | Path], out: str | Path, tokenizer: str | Path | None = None, *,
                       dim: int = 100, method: str = "skipgram", window: int = 5, epochs: int = 5,
                       min_count: int = 1, workers: int = 1, seed: int = 0, max_sentences: int | None = None,
                       text_field: str = "text", errors: str = "strict", progress: bool = True
                       ) -> WordVectorsReport:
    """Train word2vec over the tokens (pieces) of ``inputs`` and write a vocabulary-complete vectors file.

    ``inputs``: raw text files/folders (then ``tokenizer``, a tokenizer directory, is required) or a single
    folder written by ``electra prepare`` (then its own tokenizer copy is used; a ``tokenizer`` given too
    must have the same vocabulary). ``max_sentences``: read only the first N sentences (lines) per pass.
    """
    t0 = time.perf_counter()
    _check_options(dim, method, window, epochs, min_count, workers, seed, max_sentences)
    sentences, tok, source = _sentences_and_vocab(inputs, tokenizer, text_field, errors, max_sentences)
    vocab, specials, marker, _ = vocabulary_of(tok)
    try:
        from gensim.models import Word2Vec
    except ImportError:
        raise ElectraError("wordvectors: needs gensim (pip install 'electra[wordvectors]')") from None

    model = Word2Vec(vector_size=dim, window=window, min_count=min_count, sg=METHODS[method], workers=workers,
                     seed=seed, epochs=epochs)
    model.build_vocab(sentences)
    where = " ".join(map(str, inputs))
    if model.corpus_count == 0:
        raise ElectraError(f"no text in {where} (every line empty or skipped)")
    if not model.wv.index_to_key:
        raise ElectraError(f"--min-count {min_count}: no token of {where} occurs that often")
    model.train(sentences, total_examples=model.corpus_count, epochs=model.epochs,
                callbacks=[_EpochProgress(model.epochs, t0)] if progress else ())
    learned = {t: model.wv[t] for t in model.wv.index_to_key}
    matrix, sources = complete_vectors(vocab, learned, dim, seed, specials, marker)
    write_word2vec_text(out, vocab, matrix)
    return WordVectorsReport(out=Path(out), source=source, sentences=model.corpus_count,
                             tokens=model.corpus_total_words, vocab_size=len(vocab),
                             learned=sources.count("learned"), twin=sources.count("twin"),
                             random=sources.count("random"), dim=dim, method=method, epochs=epochs,
                             seconds=time.perf_counter() - t0)
