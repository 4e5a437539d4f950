"""CoNLL column files (one token per line, columns separated by whitespace, blank lines between sentences,
``-DOCSTART-`` lines skipped) and the sub-token features for token tagging.

Labels are read from a column (the last by default) and checked against BIO/IOB1/BIOES (``O`` or
``B-``/``I-``/``E-``/``S-`` + type). ``to_iob2`` rewrites IOB1 (CoNLL-2003's original scheme) to BIO, which
keeps every entity. A word's label goes on its first sub-token; the other sub-tokens are ignored (-100).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from electra.errors import ElectraError

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


def make_tag_features(sentences: list[Sentence], tokenizer: Tokenizer, label_ids: dict[str, int],
                      max_seq_length: int = 128) -> list[TagFeature]:
    """[CLS] sub-tokens [SEP] per sentence, split at word boundaries where it would exceed ``max_seq_length``."""
    tokenizer.no_truncation()
    tokenizer.no_padding()
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    unk = tokenizer.token_to_id("[UNK]")
    if cls is None or sep is None:
        raise ElectraError("tokenizer: no [CLS]/[SEP] tokens in the vocabulary")
    room = max_seq_length - 2
    features = []
    encodings = tokenizer.encode_batch([s.words for s in sentences], is_pretokenized=True,
                                       add_special_tokens=False)
    for si, (s, enc) in enumerate(zip(sentences, encodings)):
        pieces: list[list[int]] = [[] for _ in s.words]
        for tok_id, w in zip(enc.ids, enc.word_ids):
            if w is not None:
                pieces[w].append(tok_id)
        pieces = [p[:room] if p else [unk] for p in pieces]  # a word the normaliser erased keeps a slot
        start = 0
        while start < len(s.words):
            ids, labels, firsts, w = [cls], [IGNORE], [], start
            while w < len(s.words) and len(ids) - 1 + len(pieces[w]) <= room:
                firsts.append(len(ids))
                labels += [label_ids.get(s.labels[w], IGNORE)] + [IGNORE] * (len(pieces[w]) - 1)
                ids += pieces[w]
                w += 1
            features.append(TagFeature(si, start, [*ids, sep], [*labels, IGNORE], firsts))
            start = w
    return features
