"""Entity-level precision / recall / F1 for BIO (IOB1, IOB2) and BIOES tag sequences, as seqeval computes
them in its default (conlleval-compatible) mode: chunks are read leniently (an ``I-`` after ``O`` or after
another type starts an entity), an entity counts as correct only when its type, start and end all match,
and the scores are micro-averaged over all entities."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence


def _end_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    return (prev_tag in ("E", "S")
            or (prev_tag in ("B", "I") and tag in ("B", "S", "O"))
            or (prev_tag not in ("O", ".") and prev_type != type_))


def _start_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    return (tag in ("B", "S")
            or (prev_tag in ("E", "S", "O") and tag in ("E", "I"))
            or (tag not in ("O", ".") and prev_type != type_))


def get_entities(seq: Sequence[str] | Sequence[Sequence[str]]) -> list[tuple[str, int, int]]:
    """(type, first, last) of every entity; a list of sentences is joined with an ``O`` between them."""
    if any(isinstance(s, list) for s in seq):
        seq = [t for sentence in seq for t in [*sentence, "O"]]
    chunks = []
    prev_tag, prev_type, begin = "O", "", 0
    for i, chunk in enumerate([*seq, "O"]):
        tag, type_ = chunk[0], chunk[1:].split("-", maxsplit=1)[-1] or "_"
        if _end_of_chunk(prev_tag, tag, prev_type, type_):
            chunks.append((prev_type, begin, i - 1))
        if _start_of_chunk(prev_tag, tag, prev_type, type_):
            begin = i
        prev_tag, prev_type = tag, type_
    return chunks


def _prf(correct: int, pred: int, true: int) -> dict[str, float]:
    p = correct / pred if pred else 0.0
    r = correct / true if true else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0, "support": true}


def entity_scores(y_true: list[list[str]], y_pred: list[list[str]]) -> dict[str, float | dict]:
    """Micro precision/recall/F1 over entities, token accuracy, and per-type scores under ``"types"``."""
    if len(y_true) != len(y_pred) or any(len(t) != len(p) for t, p in zip(y_true, y_pred)):
        raise ValueError("y_true and y_pred must have the same sentences and lengths")
    true, pred = set(get_entities(y_true)), set(get_entities(y_pred))
    correct = true & pred
    out: dict[str, float | dict] = dict(_prf(len(correct), len(pred), len(true)))
    tokens = [(a, b) for t, p in zip(y_true, y_pred) for a, b in zip(t, p)]
    out["accuracy"] = sum(a == b for a, b in tokens) / len(tokens) if tokens else 0.0
    n_true, n_pred, n_ok = (Counter(e[0] for e in s) for s in (true, pred, correct))
    out["types"] = {t: _prf(n_ok[t], n_pred[t], n_true[t]) for t in sorted(set(n_true) | set(n_pred))}
    return out
