"""Initialise the word embeddings from pre-trained word vectors (word2vec text or binary, GloVe text).

Vocabulary entries found in the vectors file (exactly, else lower-cased) take its vector; the tokenizer's
special tokens (its roles' and any other it marks special) and the pieces inside a word keep their random
initialisation: in an ordinary word2vec or GloVe file a word ``ing`` is not the WordPiece continuation
``##ing``. With a SentencePiece (Unigram) vocabulary a word is a piece with the word-start mark, ``▁the``,
looked up as ``the``; the pieces without the mark are its continuations.

A *vocabulary-complete* file is different: a word2vec file (text or binary) whose header count equals the
vocabulary size and whose words are exactly the vocabulary in id order, as ``electra wordvectors train``
writes (``electra.init.wordvectors``: word2vec trained over the tokenizer's pieces themselves). Such a file is
recognised automatically (``vocabulary_complete=None``) and then every entry but the tokenizer's special tokens
takes its vector, ``##pieces`` included; other bracketed entries (``[unused0]``) are ordinary entries there.
``vocabulary_complete=True`` demands such a file, ``False`` applies the ordinary rule to any file.

A bare token list given as the vocabulary is read as a ``vocab.txt`` (BERT's WordPiece format, whose special
tokens are ``[PAD] [UNK] [CLS] [SEP] [MASK]``) unless ``special`` names its special tokens.

When the vectors' dimension differs from the model's embedding size a fixed linear projection maps them:

- ``pca`` (default when reducing): the covered vectors are centred and projected on their top principal
  directions (SVD), which keeps as much of their variance as the target size allows;
- ``random`` (and always when the target is larger): a fixed random matrix with orthonormal rows/columns
  (QR of a Gaussian seeded by ``seed``), which preserves distances (an isometry when enlarging).

The projected vectors are then rescaled so their standard deviation equals that of the model's freshly
initialised embedding table (0.02 truncated normal): the tied generator output layer and the LayerNorm after
the embeddings see inputs of the scale they were designed for. With tied embeddings the table is shared by
generator and discriminator; untied tables both receive the vectors.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

from electra.errors import ElectraError
from electra.modeling import Electra, owned_tables
from electra.tokenization import SPECIAL_TOKENS, continuation_prefix, load_tokenizer, special_tokens, vocab_tokens


@dataclass
class EmbeddingInitReport:
    file: str
    file_format: str  # word2vec-binary, word2vec-text or glove
    vocab_size: int
    candidates: int  # vocabulary entries eligible (not special tokens or ##pieces; complete: not special)
    covered: int
    source_dim: int
    target_dim: int
    projection: str
    vocabulary_complete: bool = False  # the file has every vocabulary entry in id order (electra wordvectors)
    pieces: str = "##pieces"  # what the pieces inside a word are called (SentencePiece: "pieces without ▁")

    def format(self) -> str:
        dims = (f"{self.source_dim} dims" if self.source_dim == self.target_dim else
                f"{self.source_dim} -> {self.target_dim} dims by {self.projection} projection")
        rule = ("all but the special tokens: a vocabulary-complete file" if self.vocabulary_complete else
                f"not special tokens or {self.pieces}")
        return (f"init-embeddings: {self.covered:,} of {self.vocab_size:,} vocabulary entries covered "
                f"({100 * self.covered / max(1, self.vocab_size):.1f}%; {self.candidates:,} eligible: {rule}) "
                f"from {self.file} ({self.file_format}, {dims})")


def _open(path: Path) -> io.BufferedReader:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # noqa: SIM115


def _is_header(line: bytes) -> bool:
    parts = line.split()
    return len(parts) == 2 and all(p.isdigit() for p in parts)


def detect_format(path: Path) -> str:
    """``word2vec-binary``, ``word2vec-text`` (a "count dim" header) or ``glove`` (no header)."""
    with _open(path) as f:
        first = f.readline()
        chunk = f.read(4096)
    if not _is_header(first):
        return "glove"
    try:
        chunk[: len(chunk) - 4].decode("utf-8")  # float32 bytes are almost never valid UTF-8
    except UnicodeDecodeError:
        return "word2vec-binary"
    return "word2vec-binary" if b"\x00" in chunk else "word2vec-text"


def header_count(path: Path) -> int | None:
    """The vector count of a word2vec header line (``count dim``), or None for a file without one."""
    with _open(path) as f:
        first = f.readline()
    return int(first.split()[0]) if _is_header(first) else None


def read_word_vectors(path: str | Path, wanted: set[str] | None = None, fmt: str = "auto"
                      ) -> tuple[dict[str, np.ndarray], int, str]:
    """Vectors of the words in ``wanted`` (all when None), their dimension and the file's format."""
    path = Path(path)
    if not path.is_file():
        raise ElectraError(f"{path}: word-vector file not found")
    if fmt not in ("auto", "word2vec-binary", "word2vec-text", "glove"):
        raise ElectraError(f"word-vector format {fmt!r}: expected auto, word2vec-binary, word2vec-text or glove")
    try:
        fmt = detect_format(path) if fmt == "auto" else fmt
        if fmt == "word2vec-binary":
            vectors, dim = _read_binary(path, wanted)
        else:
            vectors, dim = _read_text(path, wanted, header=fmt == "word2vec-text")
    except (OSError, EOFError) as e:  # e.g. a truncated or corrupt .gz
        raise ElectraError(f"{path}: unreadable word-vector file ({e})") from None
    bad = next((w for w, v in vectors.items() if not np.isfinite(v).all()), None)
    if bad is not None:
        raise ElectraError(f"{path}: the vector of {bad!r} has a non-finite value (inf or nan, e.g. 1e39 in float32)")
    return vectors, dim, fmt


def _read_text(path: Path, wanted: set[str] | None, header: bool) -> tuple[dict[str, np.ndarray], int]:
    vectors: dict[str, np.ndarray] = {}
    dim = 0
    with _open(path) as f:
        for lineno, raw in enumerate(f, 1):
            if lineno == 1 and header:
                dim = int(raw.split()[1])
                continue
            parts = raw.decode("utf-8", errors="replace").rstrip("\n\r").split(" ")
            if parts and parts[-1] == "":
                parts.pop()
            if not parts:
                continue
            if not dim:
                dim = len(parts) - 1
            if len(parts) < dim + 1:
                raise ElectraError(f"{path}:{lineno}: expected a word and {dim} numbers, got {len(parts)} fields")
            word = " ".join(parts[: len(parts) - dim])  # GloVe 840B has words with spaces
            if wanted is not None and word not in wanted:
                continue
            try:
                with np.errstate(over="ignore"):  # an overflow becomes inf, refused below
                    vectors[word] = np.asarray(parts[len(parts) - dim:], dtype=np.float32)
            except ValueError:
                raise ElectraError(f"{path}:{lineno}: non-numeric vector value") from None
    if not dim:
        raise ElectraError(f"{path}: no vectors in the file")
    return vectors, dim


def _read_binary(path: Path, wanted: set[str] | None) -> tuple[dict[str, np.ndarray], int]:
    with _open(path) as f:
        data = f.read()
    end = data.find(b"\n")
    header = data[:end].split() if end > 0 else []
    if len(header) != 2 or not all(x.isdigit() for x in header):
        raise ElectraError(f"{path}: binary word2vec file without a \"count dim\" header line")
    count, dim = (int(x) for x in header)
    pos, vectors = end + 1, {}
    width = 4 * dim
    for i in range(count):
        space = data.find(b" ", pos)
        if space < 0 or space + 1 + width > len(data):
            raise ElectraError(f"{path}: truncated binary word2vec file at vector {i + 1} of {count}")
        word = data[pos:space].decode("utf-8", errors="replace").strip()
        if wanted is None or word in wanted:
            vectors[word] = np.frombuffer(data, dtype="<f4", count=dim, offset=space + 1).copy()
        pos = space + 1 + width
        if pos < len(data) and data[pos:pos + 1] == b"\n":
            pos += 1
    return vectors, dim


def projection_matrix(vectors: np.ndarray, target: int, method: str = "pca", seed: int = 0) -> np.ndarray:
    """A (source_dim, target) matrix; see the module docstring for ``pca`` and ``random``."""
    source = vectors.shape[1]
    if source == target:
        return np.eye(source, dtype=np.float32)
    if method == "pca" and source > target and len(vectors) >= target:
        centred = vectors - vectors.mean(0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        return vt[:target].T.astype(np.float32)
    if method not in ("pca", "random"):
        raise ElectraError(f"projection {method!r}: expected 'pca' or 'random'")
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((max(source, target), min(source, target))))
    return (q if source > target else q.T).astype(np.float32)


def word_of(token: str, marker: str = "##", starts_word: bool = False, special: Collection[str] = ()) -> str | None:
    """The word an ordinary word-vector file holds for this vocabulary entry, or None: not for a special token
    or a piece inside a word. WordPiece (``marker`` ``##``, a continuation prefix): the entry itself unless
    ``##piece`` or bracketed (``[unused0]``); SentencePiece (``marker`` ``▁``, ``starts_word``): ``▁the`` is
    ``the``, a piece without the mark continues a word."""
    if token in special:
        return None
    if starts_word:
        return token[len(marker):] if token.startswith(marker) and len(token) > len(marker) else None
    if (marker and token.startswith(marker)) or (token.startswith("[") and token.endswith("]")):
        return None
    return token


def eligible(token: str) -> bool:
    """Whether an ordinary word-vector file can hold this WordPiece entry: not a special token or a ##piece."""
    return word_of(token) is not None


def vocabulary_of(vocab: Sequence[str] | str | Path | Tokenizer, special: Collection[str] | None = None
                  ) -> tuple[list[str], frozenset[str], str, bool]:
    """(tokens in id order, special tokens, piece marker, whether the marker starts a word) of a tokenizer, a
    tokenizer directory, or a bare token list (a ``vocab.txt``: WordPiece, BERT's special tokens unless
    ``special`` names them)."""
    if isinstance(vocab, (str, Path)):
        vocab = load_tokenizer(vocab)
    if isinstance(vocab, Tokenizer):
        marker, starts_word = continuation_prefix(vocab) or ("", False)
        tokens = vocab_tokens(vocab)
        names = {tokens[i] for i in special_tokens(vocab).all_ids if i < len(tokens)}
        return tokens, frozenset(names if special is None else special), marker, starts_word
    tokens = list(vocab)
    return tokens, frozenset(SPECIAL_TOKENS if special is None else special), "##", False


def init_word_embeddings(model: Electra, vectors_file: str | Path, vocab: Sequence[str] | str | Path | Tokenizer,
                         projection: str = "pca", seed: int = 0, vocabulary_complete: bool | None = None,
                         special: Collection[str] | None = None) -> EmbeddingInitReport:
    """Write pre-trained vectors into ``model``'s word embeddings for the vocabulary entries they cover.

    ``vocab`` is a tokenizer, a tokenizer directory, or the token list in id order (:func:`vocabulary_of`;
    ``special``: its special tokens). ``vocabulary_complete``: None detects a vocabulary-complete file (module
    docstring), True requires one, False never treats a file as one. Returns the coverage report.
    """
    vocab, specials, marker, starts_word = vocabulary_of(vocab, special)
    words = [word_of(t, marker, starts_word, specials) for t in vocab]
    tables = owned_tables(model, "word_embeddings")  # gdes: the generator's (the discriminator's delta stays 0)
    target = tables[0].embedding_dim
    if len(vocab) > tables[0].num_embeddings:
        raise ElectraError(f"vocabulary of {len(vocab)} entries is larger than the model's {tables[0].num_embeddings}")
    path = Path(vectors_file)
    if not path.is_file():
        raise ElectraError(f"{path}: word-vector file not found")
    fmt = detect_format(path)
    maybe_complete = vocabulary_complete is not False and fmt != "glove" and header_count(path) == len(vocab)
    wanted = {form for w in words if w is not None for form in (w, w.lower())}
    if maybe_complete:
        wanted |= set(vocab)
    vectors, dim, fmt = read_word_vectors(path, wanted, fmt)
    complete = maybe_complete and list(vectors) == list(vocab)
    if vocabulary_complete and not complete:
        raise ElectraError(f"{path}: not a vocabulary-complete vectors file (expected {len(vocab)} vectors, one per "
                           "vocabulary entry in id order, as `electra wordvectors train` writes)")
    use = [t not in specials for t in vocab] if complete else [w is not None for w in words]
    ids, rows = [], []
    for i, token in enumerate(vocab):
        if not use[i]:
            continue
        v = vectors.get(token if complete else words[i])
        if v is None and not complete:
            v = vectors.get(words[i].lower())
        if v is not None:
            ids.append(i)
            rows.append(v)
    report = EmbeddingInitReport(str(vectors_file), fmt, len(vocab), sum(use), len(ids), dim, target,
                                 "identity" if dim == target else
                                 ("pca" if projection == "pca" and dim > target and len(ids) >= target else "random"),
                                 vocabulary_complete=complete,
                                 pieces=f"pieces without {marker}" if starts_word else "##pieces")
    if not ids:
        return report
    matrix = np.stack(rows)
    projected = (matrix - (matrix.mean(0) if report.projection == "pca" else 0)) @ projection_matrix(
        matrix, target, projection, seed)
    with torch.no_grad():
        for table in tables:
            std = float(table.weight.std())
            values = torch.from_numpy(projected * (std / max(float(projected.std()), 1e-12))).to(table.weight)
            table.weight[torch.tensor(ids, device=table.weight.device)] = values
    return report
