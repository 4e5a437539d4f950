"""Ranking metrics: R@1, R@2 and MRR as MuTual's official ``eval_sample/eval.py``, and its submission format.

The official script reads one line per example, ``id<TAB>X<TAB>Y<TAB>Z<TAB>W`` with the four option letters
best first, finds the gold letter's position ``index`` in that list, and counts R@1 (``index == 0``), R@2
(``index <= 1``) and MRR (the mean of ``1 / (index + 1)``). :func:`rank` turns scores into such an order,
ties broken toward the lower candidate index (for n-best lists: toward the recogniser's better rank).
"""

from __future__ import annotations

from collections.abc import Sequence

from electra.data.ranking import read_mutual
from electra.errors import ElectraError

LETTERS = ("A", "B", "C", "D")


def rank(scores: Sequence[float]) -> list[int]:
    """Candidate indices, best (highest score) first; equal scores keep the lower index first."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


def ranking_metrics(rankings: Sequence[Sequence[int]], labels: Sequence[int]) -> dict[str, float]:
    """``r1``, ``r2``, ``mrr`` of rankings (best first) against the gold candidate index, as MuTual's eval.py."""
    if len(rankings) != len(labels):
        raise ValueError(f"{len(rankings)} rankings but {len(labels)} labels")
    n = len(labels)
    if n == 0:
        return {"r1": 0.0, "r2": 0.0, "mrr": 0.0, "n": 0}
    r1 = r2 = 0
    mrr = 0.0
    for order, gold in zip(rankings, labels):
        index = list(order).index(gold)
        if index == 0:
            r1 += 1
        elif index == 1:
            r2 += 1
        mrr += 1 / (index + 1)
    return {"r1": r1 / n, "r2": r1 / n + r2 / n, "mrr": mrr / n, "n": n}


def mutual_submission(ids: Sequence[str], rankings: Sequence[Sequence[int]]) -> str:
    """MuTual's submission file: ``id<TAB>letters best first``, one line per example."""
    return "".join(f"{i}\t" + "\t".join(LETTERS[k] for k in order) + "\n" for i, order in zip(ids, rankings))


def parse_mutual_submission(text: str, source: str = "submission") -> dict[str, list[int]]:
    """id -> ranking (indices, best first) from a submission file; each line must rank A, B, C, D once."""
    out = {}
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.strip().split("\t")
        if sorted(parts[1:]) != list(LETTERS):
            raise ElectraError(f"{source}: line {n}: expected id and the letters A B C D in some order, "
                               f"tab-separated; got {line.strip()!r}")
        out[parts[0]] = [LETTERS.index(x) for x in parts[1:]]
    return out


def score_mutual_file(predictions: str, references: str) -> dict[str, float]:
    """R@1/R@2/MRR of a MuTual submission file against a labelled MuTual JSONL (every id must be ranked)."""
    from pathlib import Path


    gold = read_mutual(references)
    try:
        text = Path(predictions).read_text(encoding="utf-8")
    except OSError as e:
        raise ElectraError(f"{predictions}: cannot read the submission ({e.strerror or e})") from None
    ranked = parse_mutual_submission(text, predictions)
    missing = [it.id for it in gold if it.id not in ranked]
    if missing:
        raise ElectraError(f"{predictions}: no ranking for {len(missing)} of {len(gold)} ids (first: {missing[0]})")
    if any(it.label is None for it in gold):
        raise ElectraError(f"{references}: has examples without \"answers\"; cannot score")
    return ranking_metrics([ranked[it.id] for it in gold], [int(it.label) for it in gold])  # type: ignore[arg-type]
