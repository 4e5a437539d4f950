"""Text-generation metrics: BLEU and chrF (sacrebleu), ROUGE-1/2/L (rouge-score), exact match, distinct-n.

Every corpus score comes with the metric's signature (sacrebleu's, or ours for ROUGE) so a number can be
reproduced. Chinese: BLEU uses sacrebleu's ``zh`` tokenizer, and ROUGE a CJK-aware tokenizer (one token per
CJK character, Latin/digit runs as words): rouge-score's default tokenizer keeps only ``[a-z0-9]`` and so scores
every Chinese pair 0, even identical strings.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sacrebleu.metrics import BLEU, CHRF

from electra.errors import ElectraError

# CJK Unified Ideographs (+ Ext. A, compatibility), kana, hangul, CJK symbols and full-width forms' letters.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_CJK_RE = re.compile(f"[{_CJK}]")
_CJK_TOKEN_RE = re.compile(f"[{_CJK}]|[a-z0-9]+")


def has_cjk(text: str) -> bool:
    return _CJK_RE.search(text) is not None


def _streams(predictions: Sequence[str], references: Sequence[Sequence[str]] | Sequence[str]) -> list[list[str]]:
    """References as sacrebleu's list of streams; a plain list of strings is one stream."""
    if references and isinstance(references[0], str):
        references = [list(references)]  # type: ignore[list-item]
    streams = [list(s) for s in references]
    if not streams:
        raise ElectraError("metrics: no references given")
    for i, s in enumerate(streams):
        if len(s) != len(predictions):
            raise ElectraError(f"metrics: reference stream {i + 1} has {len(s)} segments, predictions have "
                               f"{len(predictions)}")
    return streams


def bleu_tokenizer(lang: str) -> str:
    return "zh" if lang == "zh" else "13a"


def bleu(predictions: Sequence[str], references: Sequence[Sequence[str]] | Sequence[str], lang: str = "en") -> dict:
    """Corpus BLEU (sacrebleu defaults; ``zh`` tokenizer for Chinese): ``{"score", "signature"}``."""
    metric = BLEU(tokenize=bleu_tokenizer(lang))
    res = metric.corpus_score(list(predictions), _streams(predictions, references))
    return {"score": float(res.score), "signature": str(metric.get_signature())}


def chrf(predictions: Sequence[str], references: Sequence[Sequence[str]] | Sequence[str]) -> dict:
    """Corpus chrF (sacrebleu defaults: character 6-grams, beta 2): ``{"score", "signature"}``."""
    metric = CHRF()
    res = metric.corpus_score(list(predictions), _streams(predictions, references))
    return {"score": float(res.score), "signature": str(metric.get_signature())}


def sentence_bleu(hypothesis: str, references: Sequence[str], lang: str = "en") -> float:
    """Smoothed sentence BLEU (sacrebleu's ``sentence_score`` with effective order)."""
    return float(BLEU(tokenize=bleu_tokenizer(lang), effective_order=True).sentence_score(
        hypothesis, list(references)).score)


def sentence_chrf(hypothesis: str, references: Sequence[str]) -> float:
    return float(CHRF().sentence_score(hypothesis, list(references)).score)


class CJKTokenizer:
    """rouge-score tokenizer: lowercase; each CJK character a token; runs of ``[a-z0-9]`` as words (as the default)."""

    def tokenize(self, text: str) -> list[str]:
        return _CJK_TOKEN_RE.findall(text.lower())


def rouge(predictions: Sequence[str], references: Sequence[str], lang: str | None = None,
          use_stemmer: bool = False) -> dict:
    """Mean ROUGE-1/2/L F1 (0..1) with rouge-score; the CJK tokenizer when ``lang == "zh"`` or (``lang`` None) the
    text has CJK characters. Returns ``{"rouge1", "rouge2", "rougeL", "tokenizer", "signature"}``."""
    from rouge_score import rouge_scorer

    refs = _streams(predictions, references)
    if len(refs) != 1:
        raise ElectraError("metrics: ROUGE takes one reference per segment")
    cjk = lang == "zh" if lang is not None else any(has_cjk(t) for t in [*predictions, *refs[0]])
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=use_stemmer,
                                      tokenizer=CJKTokenizer() if cjk else None)
    n = len(predictions)
    totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for pred, ref in zip(predictions, refs[0]):
        s = scorer.score(ref, pred)  # rouge-score's order: (target, prediction)
        for k in totals:
            totals[k] += s[k].fmeasure
    out: dict = {k: (v / n if n else 0.0) for k, v in totals.items()}
    tok = "cjk" if cjk else "default"
    out["tokenizer"] = tok
    out["signature"] = f"rouge-score|f1|tok:{tok}|stem:{'yes' if use_stemmer else 'no'}"
    return out


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Fraction of predictions equal to their reference after stripping surrounding whitespace."""
    refs = _streams(predictions, references)[0]
    return sum(p.strip() == r.strip() for p, r in zip(predictions, refs)) / len(refs) if refs else 0.0


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Unique n-grams over all n-grams (Li et al. 2016) across the texts; CJK text counts characters as tokens."""
    if n < 1:
        raise ElectraError(f"metrics: distinct-n needs n >= 1, got {n}")
    grams: list[tuple[str, ...]] = []
    for t in texts:
        toks = CJKTokenizer().tokenize(t) if has_cjk(t) else t.split()
        grams += [tuple(toks[i:i + n]) for i in range(len(toks) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0
