"""Sentence scores from a pre-trained pair: how plausible is each candidate text?

Scorers, each returning a :class:`SentenceScore` (per-token and per-sentence scores; ``similarity``: the
sentence score only):

``rtd``
    The discriminator's log-probability that every token is *original*, summed over the scored tokens:
    ``sum_t log sigmoid(-logit_t)``. One forward pass per sentence (Clark et al. 2020, "Pre-Training
    Transformers as Energy-Based Cloze Models" (Electric), which scores with the energy of its cloze model;
    we use the RTD discriminator of our pair, which needs no further training). The per-token
    ``1 - exp(token_score)`` is the probability that the token was replaced: a word-level confidence.
``pll``
    The generator's pseudo-log-likelihood (Salazar et al. 2020, "Masked Language Model Scoring"): mask one
    position at a time and add ``log p(original token | the rest)``; one masked pass per scored token,
    all of them batched together. ``pll-word`` is Kauf & Ivanova (2023)'s ``PLL-word-l2r``: when a
    word-piece is scored, the later pieces of the same word are masked too (so ``##ing`` cannot give away
    ``walk``).

``similarity`` (needs a context per candidate, e.g. the MT source)
    The cosine of the discriminator's mean-pooled last hidden states of the context and of the candidate, each
    encoded alone: a source-aware, reference-free score from an encoder trained for cross-lingual similarity
    (multilingual-e5 pools this way; give its ``"query: "`` prefix with the texts). Torch backend only.

A candidate may come with a context (``cls context sep candidate sep``, e.g. a dialogue history or an MT
source); only the candidate's tokens are scored and summed. The tokenizer's cls/sep are never scored; ``pll``
masks with the tokenizer's own mask token (``[MASK]``, XLM-R's ``<mask>``).
Everything runs on :class:`electra.inference.Runner` objects, so any backend/precision of
:func:`electra.inference.load_model` works (the torch runner computes the generator's vocabulary projection at
the masked positions only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tokenizers import Encoding

from electra.errors import ElectraError
from electra.inference import LoadedModel, load_model
from electra.tokenization import encode_candidates, pad_batch, special_tokens

SCORERS = ("rtd", "pll", "pll-word")
PAIR_SCORERS = ("similarity",)  # compare the candidate with its context, each encoded alone


@dataclass
class SentenceScore:
    """Scores of one candidate: ``token_scores[i]`` is the log-score of ``tokens[i]``; ``score`` their sum."""

    tokens: list[str]
    token_scores: list[float]
    score: float
    replaced_prob: list[float] = field(default_factory=list)  # rtd only: p(replaced) per scored token

    @property
    def length(self) -> int:
        return len(self.tokens)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"tokens": self.tokens, "token_scores": [round(s, 4) for s in self.token_scores],
                               "score": round(self.score, 4)}
        if self.replaced_prob:
            out["replaced_prob"] = [round(p, 4) for p in self.replaced_prob]
        return out


def scored_positions(enc: Encoding) -> list[int]:
    """Positions that count: the candidate's (second segment when there is a context), never special tokens."""
    seq = enc.sequence_ids
    target = 1 if any(s == 1 for s in seq) else 0
    return [i for i, (s, special) in enumerate(zip(seq, enc.special_tokens_mask)) if s == target and not special]


def _batches(order: Sequence[int], lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Groups of indices (in ``order``) whose padded size stays under ``max_tokens``."""
    out: list[list[int]] = []
    cur: list[int] = []
    width = 0
    for i in order:
        w = max(width, lengths[i])
        if cur and w * (len(cur) + 1) > max_tokens:
            out.append(cur)
            cur, w = [], lengths[i]
        cur.append(i)
        width = w
    if cur:
        out.append(cur)
    return out


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)


def rtd_scores(runner: Any, encodings: Sequence[Encoding], max_tokens: int = 8192) -> list[SentenceScore]:
    """The discriminator's ``sum log p(original)`` over each encoding's scored tokens (one pass each)."""
    lengths = [len(e.ids) for e in encodings]
    order = sorted(range(len(encodings)), key=lambda i: lengths[i])
    out: list[SentenceScore | None] = [None] * len(encodings)
    for group in _batches(order, lengths, max_tokens):
        batch = pad_batch([encodings[i].ids for i in group], [encodings[i].type_ids for i in group],
                          getattr(runner, "pad_id", 0))
        logits = runner(batch)["logits"]
        for row, i in zip(logits.astype(np.float64), group):
            pos = scored_positions(encodings[i])
            lp = _log_sigmoid(-row[pos])  # log p(original) = log sigmoid(-logit)
            out[i] = SentenceScore([encodings[i].tokens[p] for p in pos], lp.tolist(), float(lp.sum()),
                                   (1.0 - np.exp(lp)).tolist())
    return out  # type: ignore[return-value]


def pll_masks(enc: Encoding, within_word: bool = False) -> list[tuple[int, list[int]]]:
    """For each scored position: (position, positions to mask). ``within_word`` also masks the later pieces
    of the same word (Kauf & Ivanova 2023, PLL-word-l2r)."""
    pos = scored_positions(enc)
    out = []
    for p in pos:
        masked = [p]
        if within_word and enc.word_ids[p] is not None:
            q = p + 1
            while q in pos and enc.word_ids[q] == enc.word_ids[p]:
                masked.append(q)
                q += 1
        out.append((p, masked))
    return out


def pll_scores(runner: Any, encodings: Sequence[Encoding], mask_id: int, within_word: bool = False,
               max_tokens: int = 8192) -> list[SentenceScore]:
    """The generator's pseudo-log-likelihood: one masked copy per scored token, all batched (longest first)."""
    jobs: list[tuple[int, int, list[int]]] = []  # (encoding, scored position, masked positions)
    for i, enc in enumerate(encodings):
        jobs.extend((i, p, m) for p, m in pll_masks(enc, within_word))
    token_lp: dict[tuple[int, int], float] = {}
    lengths = [len(encodings[j[0]].ids) for j in jobs]
    order = sorted(range(len(jobs)), key=lambda k: lengths[k])
    for group in _batches(order, lengths, max_tokens):
        rows, types, at, gold = [], [], [], []
        for k in group:
            i, p, masked = jobs[k]
            ids = list(encodings[i].ids)
            for m in masked:
                ids[m] = mask_id
            rows.append(ids)
            types.append(encodings[i].type_ids)
            at.append(p)
            gold.append(encodings[i].ids[p])
        batch = pad_batch(rows, types, getattr(runner, "pad_id", 0))
        if getattr(runner, "backend", "torch") == "torch":
            logits = runner({**batch, "positions": np.array(at, dtype=np.int64)[:, None]})["logits"][:, 0]
        else:
            logits = runner(batch)["logits"][np.arange(len(group)), at]
        logits = logits.astype(np.float64)
        lse = np.logaddexp.reduce(logits, axis=-1)
        lp = logits[np.arange(len(group)), gold] - lse
        for k, v in zip(group, lp):
            token_lp[(jobs[k][0], jobs[k][1])] = float(v)
    out = []
    for i, enc in enumerate(encodings):
        pos = scored_positions(enc)
        lp = [token_lp[(i, p)] for p in pos]
        out.append(SentenceScore([enc.tokens[p] for p in pos], lp, float(sum(lp))))
    return out


def mean_pooled(runner: Any, encodings: Sequence[Encoding], max_tokens: int = 8192) -> np.ndarray:
    """Each encoding's hidden states averaged over its tokens (specials included, padding not), unit length."""
    lengths = [len(e.ids) for e in encodings]
    order = sorted(range(len(encodings)), key=lambda i: lengths[i])
    rows: dict[int, np.ndarray] = {}
    for group in _batches(order, lengths, max_tokens):
        batch = pad_batch([encodings[i].ids for i in group], [encodings[i].type_ids for i in group],
                          getattr(runner, "pad_id", 0))
        hidden = runner(batch)["hidden"].astype(np.float64)
        mask = batch["attention_mask"].astype(np.float64)[..., None]
        rows.update(zip(group, (hidden * mask).sum(1) / mask.sum(1)))
    out = np.stack([rows[i] for i in range(len(encodings))])
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def similarity_scores(runner: Any, contexts: Sequence[Encoding], candidates: Sequence[Encoding]
                      ) -> list[SentenceScore]:
    """Cosine of each (context, candidate)'s mean-pooled hidden states; equal contexts are encoded once."""
    first = {tuple(e.ids): e for e in reversed(contexts)}  # one encoding per distinct context
    index = {k: i for i, k in enumerate(first)}
    ctx = mean_pooled(runner, list(first.values()))[[index[tuple(e.ids)] for e in contexts]]
    cand = mean_pooled(runner, candidates)
    cos = (ctx * cand).sum(1)
    return [SentenceScore([], [], float(c)) for c in cos]


class Scorer:
    """A loaded pair (:func:`electra.inference.load_model`) scoring texts with ``rtd``, ``pll``, ``pll-word`` or
    (against a context) ``similarity``."""

    def __init__(self, model: str | Any, backend: str = "torch", precision: str = "fp32",
                 max_length: int | None = None):
        self.loaded: LoadedModel = model if isinstance(model, LoadedModel) else load_model(model, backend, precision)
        if self.loaded.kind != "pretrained":
            raise ElectraError(f"{self.loaded.source}: a fine-tuned {self.loaded.kind} run; zero-shot scoring "
                               "needs a pre-trained checkpoint (generator + discriminator)")
        self.tokenizer = self.loaded.tokenizer
        self.special = special_tokens(self.tokenizer)
        self.max_length = min(max_length or self.loaded.max_sequence, self.loaded.max_sequence)

    def encode(self, candidates: Sequence[str], contexts: Sequence[str | None] | None = None) -> list[Encoding]:
        return encode_candidates(self.tokenizer, candidates, contexts, self.max_length)

    def score(self, method: str, candidates: Sequence[str], contexts: Sequence[str | None] | None = None
              ) -> list[SentenceScore]:
        """Per-token and per-sentence scores of ``candidates`` (each after its context, if given); ``similarity``:
        each candidate's cosine with its context."""
        if method in PAIR_SCORERS:
            if contexts is None or any(c is None for c in contexts):
                raise ElectraError(f"scorer {method!r} compares each candidate with its context (e.g. the MT "
                                   "source), and none was given: use it with rescore --task mt or dialogue")
            if "embedder" not in self.loaded.runners:
                raise ElectraError(f"{self.loaded.source}: scorer {method!r} needs the hidden states, which only "
                                   "the torch backend gives")
            return similarity_scores(self.loaded.runners["embedder"], self.encode(list(contexts)),  # type: ignore
                                     self.encode(candidates))
        return self.score_encodings(method, self.encode(candidates, contexts))

    def score_encodings(self, method: str, encodings: Sequence[Encoding]) -> list[SentenceScore]:
        """:meth:`score` of texts already encoded (e.g. checked against a server's token limit)."""
        if method == "rtd":
            return rtd_scores(self.loaded.runners["discriminator"], encodings)
        if method in ("pll", "pll-word"):
            if "generator" not in self.loaded.runners:
                raise ElectraError(f"{self.loaded.source}: no generator in this checkpoint; pll needs one")
            try:
                mask_id = self.special.need_mask(f"{method} masks one token at a time")
            except ElectraError as e:
                raise ElectraError(f"{self.loaded.source}: {e}") from None
            return pll_scores(self.loaded.runners["generator"], encodings, mask_id, method == "pll-word")
        raise ElectraError(f"scorer {method!r}: expected one of {', '.join(SCORERS)} (or a combination a+b)")


def combine(parts: dict[str, Sequence[SentenceScore]], weights: dict[str, float]) -> list[float]:
    """Per-sentence ``sum_k weights[k] * parts[k].score``: the combination of several scorers."""
    names = list(parts)
    n = len(parts[names[0]])
    return [float(sum(weights.get(k, 1.0) * parts[k][i].score for k in names)) for i in range(n)]
