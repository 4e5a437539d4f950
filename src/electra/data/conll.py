"""CoNLL column files (one token per line, columns separated by whitespace, blank lines between sentences,
``-DOCSTART-`` lines skipped) and the sub-token features for token tagging.

Labels are read from a column (the last by default) and checked against BIO/IOB1/BIOES (``O`` or
``B-``/``I-``/``E-``/``S-`` + type). ``to_iob2`` rewrites IOB1 (CoNLL-2003's original scheme) to BIO, which
keeps every entity. A word's label goes on its first sub-token; the other sub-tokens are ignored (-100).

Each word is encoded on its own (``is_pretokenized``), so its pieces are its own whatever the tokenizer: WordPiece
``word ##piece``, or SentencePiece ``▁word piece`` (Metaspace marks every word's start). A bare ``▁`` mark before a
piece without one (``▁`` ``北京``) holds no character of the word: the label goes on the first piece that does.
Sequences are ``cls pieces sep`` with the tokenizer's role ids (:func:`electra.tokenization.special_tokens`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from electra.data.squad import marker_ids
from electra.errors import ElectraError
from electra.tokenization import special_tokens

_LABEL = re.compile(r"^(O|[BIES]-.+)$")
IGNORE = -100


@dataclass
class Sentence:
    words: list[str]
    labels: list[str]
    line: int  # 1-based line of the first word, for messages


def read_conll(path: str | Path, label_column: int = -1, unlabelled: bool = False) -> list[Sentence]:
    """Sentences of a CoNLL file; errors name the file and line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ElectraError(f"{path}: CoNLL file not found") from None
    except UnicodeDecodeError as e:
        raise ElectraError(f"{path}: not UTF-8 text (byte {e.start})") from None
    sentences: list[Sentence] = []
    words: list[str] = []
    labels: list[str] = []
    first = 0
    for n, line in enumerate([*lines, ""], start=1):
        cols = line.split()
        if not cols or cols[0] == "-DOCSTART-":
            if words:
                sentences.append(Sentence(words, labels, first))
                words, labels = [], []
            continue
        if not words:
            first = n
        if unlabelled:
            words.append(cols[0])
            labels.append("O")
            continue
        if len(cols) < 2:
            raise ElectraError(f"{path}:{n}: expected a token and a label column, got {line.strip()!r}")
        try:
            label = cols[label_column]
        except IndexError:
            raise ElectraError(f"{path}:{n}: no column {label_column} in {line.strip()!r}") from None
        if not _LABEL.match(label):
            raise ElectraError(f"{path}:{n}: label {label!r} is not O or B-/I-/E-/S- + type (BIO/BIOES)")
        words.append(cols[0])
        labels.append(label)
    if not sentences:
        raise ElectraError(f"{path}: no sentences")
    return sentences


def to_iob2(labels: list[str]) -> list[str]:
    """IOB1 -> BIO: an ``I-X`` that does not continue an ``X`` entity becomes ``B-X``."""
    out = []
    for i, label in enumerate(labels):
        if label.startswith("I-"):
            prev = out[i - 1] if i else "O"
            if prev == "O" or prev[2:] != label[2:]:
                label = "B-" + label[2:]
        out.append(label)
    return out


def label_list(sentences: list[Sentence]) -> list[str]:
    """Sorted labels with ``O`` first."""
    labels = {label for s in sentences for label in s.labels}
    return ["O", *sorted(labels - {"O"})]


@dataclass
class TagFeature:
    sentence_index: int
    word_offset: int  # index of this piece's first word in the sentence (long sentences are split)
    input_ids: list[int]
    labels: list[int]  # label id on each word's first sub-token, IGNORE elsewhere
    first_tokens: list[int]  # position of each word's first sub-token
    pad_id: int = 0  # the tokenizer's pad id, which batches of this piece are padded with


def make_tag_features(sentences: list[Sentence], tokenizer: Tokenizer, label_ids: dict[str, int],
                      max_seq_length: int = 128) -> list[TagFeature]:
    """cls sub-tokens sep per sentence, split at word boundaries where it would exceed ``max_seq_length``."""
    tokenizer.no_truncation()
    tokenizer.no_padding()
    roles = special_tokens(tokenizer)
    cls, sep, unk, pad = roles.cls_id, roles.sep_id, roles.unk_id, roles.pad_id
    markers = marker_ids(tokenizer)
    room = max_seq_length - 2
    features = []
    encodings = tokenizer.encode_batch([s.words for s in sentences], is_pretokenized=True,
                                       add_special_tokens=False)
    for si, (s, enc) in enumerate(zip(sentences, encodings)):
        pieces: list[list[int]] = [[] for _ in s.words]
        for tok_id, w in zip(enc.ids, enc.word_ids):
            if w is not None:
                pieces[w].append(tok_id)
        # a word the normaliser erased keeps a slot: the unknown token (the sep token if the tokenizer has none)
        pieces = [p[:room] if p else [sep if unk is None else unk] for p in pieces]
        start = 0
        while start < len(s.words):
            ids, labels, firsts, w = [cls], [IGNORE], [], start
            while w < len(s.words) and len(ids) - 1 + len(pieces[w]) <= room:
                p = pieces[w]
                lead = next((k for k, t in enumerate(p) if t not in markers), 0)  # past a bare ▁ mark
                firsts.append(len(ids) + lead)
                labels += [IGNORE] * lead + [label_ids.get(s.labels[w], IGNORE)] + [IGNORE] * (len(p) - lead - 1)
                ids += p
                w += 1
            features.append(TagFeature(si, start, [*ids, sep], [*labels, IGNORE], firsts, pad))
            start = w
    return features
