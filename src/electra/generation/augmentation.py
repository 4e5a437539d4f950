"""Data augmentation by corrupting and reconstructing text with the generator and discriminator.

SSMBA (Ng et al. 2020) makes new training examples near the data: corrupt a text (mask some of its words) and
let a masked language model reconstruct it by sampling. :func:`augment_text` does so with the pre-trained
generator (whole words resampled from its softmax) and, our addition, lets the discriminator keep the most
plausible reconstructions (highest sentence score). :func:`augment_file` augments a task's TSV file; labels
and the other columns are copied. :func:`augmenter` augments examples in memory (``electra finetune --augment``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from electra.config import at_least, check_values, interval
from electra.data.glue import Example, _rows
from electra.errors import ElectraError
from electra.files import write_text_atomic
from electra.generation.correction import Edit, apply_edits, match_case, whole_tokens, words_of
from electra.generation.pair import (
    Pair,
    choose,
    decode_span,
    fit,
    generator_probs,
    replaced_probs,
    sentence_score,
)


def augment_text(pair: Pair, text: str, copies: int, rng: np.random.Generator, mask_prob: float = 0.15,
                 min_score: float | None = None, tries: int = 2) -> list[str]:
    """Up to ``copies`` new versions of ``text`` (SSMBA, Ng et al. 2020, with our generator): mask ``mask_prob``
    of the words (at least one), resample each masked word from the generator's softmax (whole-word tokens
    only), and keep the ``copies`` candidates (of ``tries × copies`` drawn) the discriminator finds most
    plausible (highest sentence score; above ``min_score`` when given), different from the text and each
    other. Untouched words keep their original characters. A text too long for the model is returned
    without copies."""
    words = [w for w in words_of(pair.tokenizer, text)]
    if not words or sum(len(w.ids) for w in words) + 2 > pair.max_len:
        return []
    whole = whole_tokens(pair.tokenizer)  # per word kind; special tokens excluded
    n = max(1, round(mask_prob * len(words)))
    rows, positions, chosen = [], [], []
    for _ in range(copies * tries):
        pick = sorted(rng.choice(len(words), size=min(n, len(words)), replace=False).tolist())
        ids, pos = [pair.cls_id], []
        for i, w in enumerate(words):
            if i in pick:
                pos.append(len(ids))
                ids.append(pair.mask_id)
            else:
                ids += w.ids
        rows.append(ids + [pair.sep_id])
        positions.append(pos)
        chosen.append(pick)
    probs = generator_probs(pair, rows, positions)
    texts = []
    for row, pos, pick, pr in zip(rows, positions, chosen, probs):
        pr = pr.copy()
        edits = []
        for at, i, dist in zip(pos, pick, pr):
            dist[~fit(whole[words[i].kind], len(dist), False)] = 0  # a token of the word's kind (cjk, word)
            dist /= dist.sum()
            t, _ = choose(dist, 0, rng)
            row[at] = t
            w = words[i]
            orig = text[w.start:w.end]
            edits.append(Edit(w.start, w.end, orig, match_case(orig, decode_span(pair.tokenizer, [t])), 0.0))
        texts.append(apply_edits(text, edits))
    scores = [sentence_score(p) for p in replaced_probs(pair, rows)]
    kept: list[str] = []
    for j in np.argsort(scores, kind="stable")[::-1]:
        if len(kept) == copies or (min_score is not None and scores[j] < min_score):
            break
        if texts[j] != text and texts[j] not in kept:
            kept.append(texts[j])
    return kept


def augment_file(pair: Pair, task: Any, input_path: str | Path, out_path: str | Path, copies: int,
                 mask_prob: float = 0.15, seed: int = 0, progress: bool = False) -> tuple[int, int]:
    """Write ``out_path``: every line of the task's TSV file ``input_path``, then ``copies`` augmented rows per
    example (text columns replaced by :func:`augment_text`, the other columns copied). Written to a temporary
    file and renamed. Returns (examples, new rows)."""
    check_values("augment option", {"copies": copies, "mask_prob": mask_prob},
                 {"copies": at_least(1), "mask_prob": interval(0, 1, "(]")})
    path = Path(input_path)
    if not path.is_file():
        raise ElectraError(f"{path}: file not found")
    if path.suffix.lower() in (".csv", ".jsonl", ".json"):
        raise ElectraError(f"{path}: augment reads tab-separated files (.tsv, GLUE layout)")
    rows = _rows(path, "tsv")
    if not rows:
        raise ElectraError(f"{path}: no examples")
    layout = task.labelled
    if layout.header:
        header = rows[0][1]
        missing = [c for c in layout.text if c not in header]
        if missing:
            raise ElectraError(f"{path}:{rows[0][0]}: no column {missing[0]!r} in the header (expected "
                               f"{', '.join(map(str, layout.text))})")
        cols, data = [header.index(c) for c in layout.text], rows[1:]
    else:
        cols, data = list(layout.text), rows
    rng = np.random.default_rng(seed)
    new = []
    for i, (line, fields) in enumerate(data):
        if len(fields) <= max(cols):
            raise ElectraError(f"{path}:{line}: {len(fields)} fields; expected at least {max(cols) + 1}")
        per_col = [augment_text(pair, fields[c], copies, rng, mask_prob) for c in cols]
        for k in range(min(len(x) for x in per_col) if per_col else 0):
            f = list(fields)
            for c, versions in zip(cols, per_col):
                f[c] = " ".join(versions[k].split())
            new.append("\t".join(f))
        if progress and (i + 1) % 100 == 0:
            print(f"  {i + 1}/{len(data)} examples, {len(new)} new rows", flush=True)
    original = path.read_text(encoding="utf-8-sig").rstrip("\n").split("\n")
    write_text_atomic(out_path, "\n".join(original + new) + "\n", "augmented file")
    return len(data), len(new)


def augmenter(pair: Pair) -> Callable[[Sequence[Example], int, int], list[Example]]:
    """``augment(examples, copies, seed)``: up to ``copies`` new versions of each example (:func:`augment_text`
    on each of its texts, labels kept; fewer when the discriminator finds no plausible distinct version), the
    :data:`electra.tasks.classification.Augmenter` that fine-tuning takes. Pairs get both texts augmented."""

    def augment(examples: Sequence[Example], copies: int, seed: int) -> list[Example]:
        rng = np.random.default_rng(seed)
        out = []
        for e in examples:
            versions = [augment_text(pair, t, copies, rng) for t in e.texts]
            for k in range(min(len(v) for v in versions)):
                out.append(dataclasses.replace(e, texts=tuple(v[k] for v in versions), guid=f"{e.guid}-aug{k}"))
        return out

    return augment
