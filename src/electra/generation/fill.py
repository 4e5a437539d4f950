"""Filling masks with the generator: top-k candidates, mask-predict infilling, and generation.

:func:`fill_mask` / :func:`fill_encoded` give the generator's ``top_k`` candidates for every ``[MASK]`` (as
``transformers``' fill-mask pipeline). ``[MASK]`` and ``[MASK*]`` are our markers, for any tokenizer; the
tokenizer's own mask token (XLM-R's ``<mask>``) may be typed instead of a ``[MASK]`` (:func:`mask_markers`).
:func:`mask_predict` fills several masks together by mask-predict (Ghazvininejad et al. 2019): predict every mask,
then repeatedly re-mask the least confident predictions and predict them again; the confidence is the generator's
probability (the paper's) or, our variant, the discriminator's p(original) of the filled text. :func:`fill_text`
fills a text written with ``[MASK]`` (one token each) and ``[MASK*]`` (a span of unknown length) markers
(:func:`parse_markers`) and ranks the fillings by the discriminator; :func:`generate` continues a prompt the same
way.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tokenizers import Encoding, Tokenizer

from electra.config import at_least, check_values, positive
from electra.errors import ElectraError
from electra.generation.pair import (
    MASK,
    Pair,
    banned_ids,
    choose,
    decode_span,
    encode,
    fit,
    generator_probs,
    inner_tokens,
    piece_style,
    replaced_probs,
    roles,
    sentence_score,
    torch_runner,
)
from electra.modeling import Electra
from electra.tokenization import pad_batch

MASK_ANY = "[MASK*]"  # a span of unknown length: 1..max_span tokens are tried
MARKER = re.compile(r"\[MASK\*?\]")
CONFIDENCES = ("generator", "discriminator")


def marker_pattern(mask_token: str | None = None) -> re.Pattern[str]:
    """``[MASK]`` and ``[MASK*]`` markers, and the tokenizer's own ``mask_token`` (``<mask>``) as a ``[MASK]``."""
    if not mask_token or mask_token in (MASK, MASK_ANY):
        return MARKER
    return re.compile(r"\[MASK\*?\]|" + re.escape(mask_token))


def mask_markers(tokenizer: Tokenizer, text: str) -> str:
    """``text`` with each ``[MASK]`` marker written as the tokenizer's own mask token (``<mask>`` for XLM-R's),
    so either may be typed. For a tokenizer whose pieces carry the word-start mark (SentencePiece's ``▁``) the
    spaces before a mask are dropped, as XLM-R's ``<mask>`` (lstrip) does: the mask stands for a whole
    ``▁word``, not for the piece after a lone ``▁``."""
    mask = roles(tokenizer).mask
    if mask is None:
        return text
    style = piece_style(tokenizer)
    spaces = r"\s*" if style.marker and style.starts_word else ""
    found = re.compile(spaces + r"(?:\[MASK\](?!\*)|" + re.escape(mask) + ")")
    return found.sub(lambda m: mask, text)


def no_mask_error(tokenizer: Tokenizer) -> ElectraError:
    """The one-line error for a text without a mask: it names our marker and the model's own mask token."""
    mask = roles(tokenizer).mask
    own = f" (or this model's own mask token {mask})" if mask and mask != MASK else ""
    return ElectraError(f"no {MASK} in the text; write {MASK}{own} where a word should be filled")


def encode_masked(tokenizer: Tokenizer, text: str, max_len: int) -> Encoding:
    """:func:`electra.generation.encode` of a text with ``[MASK]`` markers or the tokenizer's own mask token
    (:func:`mask_markers`); a one-line error when it has none, or the tokenizer has no mask token."""
    roles(tokenizer).need_mask("filling needs one")
    enc = encode(tokenizer, mask_markers(tokenizer, text), max_len)
    if roles(tokenizer).mask_id not in enc.ids:
        raise no_mask_error(tokenizer)
    return enc


# ---- top-k candidates per [MASK] -----------------------------------------------------------------------
def fill_encoded(runner: Any, tokenizer: Tokenizer, encodings: list[Encoding], top_k: int = 5
                 ) -> list[list[list[dict[str, Any]]]]:
    """For each text, for each mask token: the generator's ``top_k`` candidates as ``transformers``' fill-mask
    pipeline gives them (``sequence``: the text with that mask filled, ``score``, ``token`` id, ``token_str``:
    the token decoded). ``encodings`` hold the tokenizer's own mask token (:func:`encode_masked` writes
    ``[MASK]`` markers so).

    Special tokens (the tokenizer's cls, sep, pad, mask, unk and any other it marks special), WordPiece's
    ``[unusedN]`` and output rows past the tokenizer's vocabulary are never candidates; ``transformers``'
    pipeline does not exclude them, so it can answer ``[UNK]`` or ``[SEP]``. Scores stay the probabilities over
    the whole vocabulary (not renormalised)."""
    mask_id = roles(tokenizer).need_mask("filling needs one")
    positions = [[i for i, t in enumerate(e.ids) if t == mask_id] for e in encodings]
    for p in positions:
        if not p:
            raise no_mask_error(tokenizer)
    batch = pad_batch([e.ids for e in encodings], pad_id=roles(tokenizer).pad_id)
    width = max(len(p) for p in positions)
    if runner.backend in ("torch", "tf"):  # the vocabulary projection at the masked positions only
        pos = np.array([p + [0] * (width - len(p)) for p in positions], dtype=np.int64)
        logits = runner({**batch, "positions": pos})["logits"]
    else:
        full = runner(batch)["logits"]
        logits = np.stack([full[i, p + [0] * (width - len(p))] for i, p in enumerate(positions)])
    logits = logits.astype(np.float64)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    ranked = probs.copy()
    ranked[..., banned_ids(tokenizer, ranked.shape[-1])] = -1.0
    results = []
    for i, (enc, pos) in enumerate(zip(encodings, positions)):
        per_mask = []
        for j, at in enumerate(pos):
            top = np.argsort(-ranked[i, j], kind="stable")[:top_k]
            cands = []
            for t in top:
                ids = list(enc.ids)
                ids[at] = int(t)
                cands.append({"sequence": tokenizer.decode(ids[inner_tokens(enc)], skip_special_tokens=False),
                              "score": round(float(probs[i, j, t]), 4), "token": int(t),
                              "token_str": tokenizer.decode([int(t)], skip_special_tokens=False)})
            per_mask.append(cands)
        results.append(per_mask)
    return results


@torch.no_grad()
def fill_mask(model: Electra, tokenizer: Tokenizer, text: str, top_k: int = 5) -> list[list[tuple[str, float]]]:
    """The generator's top-k candidates (token, probability) for every ``[MASK]`` (or the tokenizer's own mask
    token) in ``text``."""
    check_values("fill option", {"top_k": top_k}, {"top_k": at_least(1)})
    enc = encode_masked(tokenizer, text, model.config.discriminator.max_position_embeddings)
    return [[(c["token_str"], c["score"]) for c in cands]
            for cands in fill_encoded(torch_runner(model, "generator"), tokenizer, [enc], top_k)[0]]


# ---- mask-predict --------------------------------------------------------------------------------------
def mask_predict(pair: Pair, rows: Sequence[Sequence[int]], positions: Sequence[Sequence[int]],
                 iterations: int = 4, confidence: str = "generator", top_k: int = 0, temperature: float = 1.0,
                 rng: np.random.Generator | None = None) -> tuple[list[list[int]], list[np.ndarray]]:
    """Mask-predict (Ghazvininejad et al. 2019) over a batch of rows, each with its own masked ``positions``.

    Iteration 0 fills every masked position; iteration t = 1..T-1 re-masks the n = N·(T-t)/T least confident
    of them (rounded down; N masked positions in the row) and predicts those again, the others staying as
    they are. ``confidence``: ``"generator"`` — the generator's probability of the token when it was last
    predicted (the paper's); ``"discriminator"`` — 1 - p(replaced) of the current sequence (our variant: the
    critic of the same vocabulary re-reads the whole filled text each round). ``rng`` None: argmax;
    otherwise sampling from the ``top_k`` tokens at ``temperature``. Special tokens are never proposed.
    Returns the filled rows and the generator probability of each filled token (per row, in ``positions`` order).
    """
    if confidence not in CONFIDENCES:
        raise ElectraError(f"confidence {confidence!r}: expected one of {', '.join(CONFIDENCES)}")
    if iterations < 1:
        raise ElectraError(f"iterations {iterations}: must be >= 1")
    ban = banned_ids(pair.tokenizer)
    rows = [list(r) for r in rows]
    conf = [np.zeros(len(p)) for p in positions]
    gen_p = [np.zeros(len(p)) for p in positions]
    todo = [list(range(len(p))) for p in positions]  # indices into positions[i] to (re)predict
    for t in range(iterations):
        for r, p, idx in zip(rows, positions, todo):
            for j in idx:
                r[p[j]] = pair.mask_id
        ask = [[p[j] for j in idx] for p, idx in zip(positions, todo)]
        live = [i for i, a in enumerate(ask) if a]
        if live:
            probs = generator_probs(pair, [rows[i] for i in live], [ask[i] for i in live], temperature)
            for i, pr in zip(live, probs):
                pr = pr.copy()
                pr[:, fit(ban, pr.shape[1], True)] = 0.0
                pr /= pr.sum(-1, keepdims=True)
                for j, dist in zip(todo[i], pr):
                    tok, prob = choose(dist, top_k, rng)
                    rows[i][positions[i][j]] = tok
                    gen_p[i][j] = conf[i][j] = prob
        if confidence == "discriminator":
            for i, pr in enumerate(replaced_probs(pair, rows)):
                conf[i] = 1.0 - pr[list(positions[i])]
        if t + 1 < iterations:
            todo = []
            for i, p in enumerate(positions):
                n = len(p) * (iterations - t - 1) // iterations
                todo.append(sorted(np.argsort(conf[i], kind="stable")[:n].tolist()))
    return rows, gen_p


# ---- text with [MASK] / [MASK*] markers ------------------------------------------------------------------
@dataclass
class Filled:
    """A filled text, its spans (in the filled text's characters) and scores."""

    text: str
    spans: list[dict[str, Any]]
    score: float  # the discriminator's sentence score (mean log p(original)) of the filled text
    span_score: float  # mean log generator probability of the filled tokens (length-normalised)

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "spans": self.spans, "score": round(self.score, 4),
                "span_score": round(self.span_score, 4)}


def parse_markers(text: str, mask_token: str | None = None) -> list[tuple[int, int, int]]:
    """Runs of markers separated by whitespace only: (start, end, number of masks), the number -1 for a
    ``[MASK*]`` (unknown length). ``mask_token`` (the tokenizer's own, e.g. ``<mask>``) counts as a ``[MASK]``."""
    runs: list[list[Any]] = []
    for m in marker_pattern(mask_token).finditer(text):
        star = m.group() == MASK_ANY
        if runs and not text[runs[-1][1]:m.start()].strip() and not star and not runs[-1][3]:
            runs[-1][1] = m.end()
            runs[-1][2] += 1
        else:
            runs.append([m.start(), m.end(), 1, star])
    return [(s, e, n if not star else -1) for s, e, n, star in runs]


def fill_text(pair: Pair, text: str, iterations: int = 4, confidence: str = "generator", max_span: int = 5,
              samples: int = 1, top_k: int = 0, temperature: float = 1.0, seed: int | None = None) -> list[Filled]:
    """Fill every ``[MASK]`` (one token each; adjacent ones form a multi-token span) and ``[MASK*]`` (a span of
    unknown length: 1..``max_span`` tokens are tried, every ``[MASK*]`` of the text taking the same length in a
    candidate, and the candidate with the best length-normalised score — the mean log generator probability
    of its filled tokens — is kept) by mask-predict. ``samples`` > 1 (with ``top_k`` or ``temperature``)
    draws that many fillings; the results are ranked by the discriminator's sentence score, best first.
    ``iterations`` 1 is one-shot filling (every mask at once, argmax)."""
    check_values("fill option", {"iterations": iterations, "max_span": max_span, "samples": samples,
                                 "top_k": top_k, "temperature": temperature},
                 {"iterations": at_least(1), "max_span": at_least(1), "samples": at_least(1), "top_k": at_least(0),
                  "temperature": positive()})
    if not text.strip():
        raise ElectraError("empty text: nothing to fill")
    pair.special.need_mask("filling needs one")
    mask = pair.special.mask
    runs = parse_markers(text, mask)
    if not runs:
        own = f" (or this model's own mask token {mask})" if mask != MASK else ""
        raise ElectraError(f"no {MASK} or {MASK_ANY} in the text; write {MASK}{own} where a token should be filled")
    style = piece_style(pair.tokenizer)
    lstrip = bool(style.marker and style.starts_word)  # as mask_markers: a mask stands for a whole ▁word
    lengths = range(1, max_span + 1) if any(n < 0 for _, _, n in runs) else [0]
    sampling = samples > 1 or top_k > 0 or temperature != 1.0
    rng = np.random.default_rng(seed) if sampling else None
    if samples > 1 and top_k == 0 and temperature == 1.0:
        top_k = 10  # several greedy fillings would all be the same
    results: list[Filled] = []
    for length in lengths:
        masked, where, cursor, total = [], [], 0, 0
        for s, e, n in runs:  # the text with k mask tokens per run, encoded whole (pieces depend on context)
            before = text[cursor:s]
            masked.append(before.rstrip() if lstrip else before)
            k = n if n > 0 else length
            where.append((s, e, total, k))
            masked.append(mask * k)
            total += k
            cursor = e
        masked.append(text[cursor:])
        ids = pair.tokenizer.encode("".join(masked)).ids
        positions = [i for i, t in enumerate(ids) if t == pair.mask_id]
        if len(positions) != total:  # not expected: the tokenizer splits its own mask token
            raise ElectraError(f"the tokenizer does not keep its mask token {mask} whole in this text")
        if len(ids) > pair.max_len:
            raise ElectraError(f"text is {len(ids)} tokens long with its masks; the model takes at most "
                               f"{pair.max_len} (shorten it)")
        rows, gen_p = mask_predict(pair, [ids] * samples, [positions] * samples, iterations, confidence, top_k,
                                   temperature, rng)
        scores = replaced_probs(pair, rows)
        for row, gp, pr in zip(rows, gen_p, scores):
            out, spans, cursor = [], [], 0
            for s, e, first, k in where:
                out.append(text[cursor:s])
                fill = decode_span(pair.tokenizer, [row[positions[j]] for j in range(first, first + k)])
                start = sum(len(x) for x in out)
                out.append(fill)
                spans.append({"start": start, "end": start + len(fill), "text": fill, "tokens": k})
                cursor = e
            out.append(text[cursor:])
            results.append(Filled("".join(out), spans, sentence_score(pr), float(np.log(np.maximum(gp, 1e-12)).mean())))
    if len(lengths) > 1:  # unknown lengths: the best length-normalised candidate per sample
        per_sample = [results[i::samples] for i in range(samples)]
        results = [max(c, key=lambda f: f.span_score) for c in per_sample]
    unique: dict[str, Filled] = {}
    for f in sorted(results, key=lambda f: -f.score):
        unique.setdefault(f.text, f)
    return list(unique.values())


def generate(pair: Pair, prompt: str, length: int = 8, iterations: int = 10, samples: int = 1,
             confidence: str = "generator", top_k: int = 0, temperature: float = 1.0,
             seed: int | None = None) -> list[Filled]:
    """Continue ``prompt`` with ``length`` new tokens (or, when it holds ``[MASK]``/``[MASK*]``, fill those)
    by mask-predict; ``samples`` candidates ranked by the discriminator, best first."""
    check_values("generate option", {"length": length}, {"length": at_least(1)})
    if marker_pattern(pair.special.mask).search(prompt):
        text = prompt
    else:
        text = (prompt.rstrip() + " " + " ".join([MASK] * length)).strip()
    return fill_text(pair, text, iterations, confidence, samples=samples, top_k=top_k, temperature=temperature,
                     seed=seed)
