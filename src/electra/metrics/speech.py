"""Speech-recognition metrics: WER and CER with jiwer, after one normaliser applied to *both* sides.

The normaliser (:func:`normalize`): Unicode NFKC, lowercase, every punctuation or symbol character becomes a
space except an apostrophe between letters ("don't" stays one word), whitespace collapsed. Applying it to the
hypothesis as well as the reference matters: HyPoradise's script normalises only the reference, which counts a
hypothesis' capital letters and commas as errors.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import jiwer

from electra.errors import ElectraError

_APOSTROPHE = re.compile(r"(?<=\w)['’](?=\w)")


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    text = _APOSTROPHE.sub("\x00", text)
    text = "".join(" " if unicodedata.category(c)[0] in "PS" else c for c in text)
    return " ".join(text.replace("\x00", "'").split())


def _prepare(references: Sequence[str], hypotheses: Sequence[str], normalise: bool) -> tuple[list[str], list[str]]:
    if len(references) != len(hypotheses):
        raise ElectraError(f"metrics: {len(references)} references but {len(hypotheses)} hypotheses")
    if not references:
        raise ElectraError("metrics: no segments to score")
    f = normalize if normalise else (lambda s: " ".join(s.split()))
    return [f(r) for r in references], [f(h) for h in hypotheses]


def wer(references: Sequence[str], hypotheses: Sequence[str], normalise: bool = True) -> float:
    """Corpus WER: (substitutions + deletions + insertions) / reference words, summed over all segments."""
    refs, hyps = _prepare(references, hypotheses, normalise)
    if not any(refs):
        raise ElectraError("metrics: every reference is empty; WER is undefined")
    return float(jiwer.wer(refs, hyps))


def cer(references: Sequence[str], hypotheses: Sequence[str], normalise: bool = True) -> float:
    """Corpus CER over characters (spaces between words count as characters, as in jiwer)."""
    refs, hyps = _prepare(references, hypotheses, normalise)
    if not any(refs):
        raise ElectraError("metrics: every reference is empty; CER is undefined")
    return float(jiwer.cer(refs, hyps))


def word_errors(reference: str, hypothesis: str, normalise: bool = True) -> tuple[int, int]:
    """(word edits, reference words) of one pair: the numerator and denominator a corpus WER sums."""
    refs, hyps = _prepare([reference], [hypothesis], normalise)
    n = len(refs[0].split())
    if n == 0:
        return len(hyps[0].split()), 0
    o = jiwer.process_words(refs, hyps)
    return o.substitutions + o.deletions + o.insertions, n
