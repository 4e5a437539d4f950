"""N-best list metrics for ASR: the WER of a choice, the n-best oracle and HyPoradise's compositional oracle.

Every word count goes through :func:`electra.metrics.speech.word_errors` (jiwer, with the one normaliser of
:func:`electra.metrics.speech.normalize` applied to both sides), so corpus WER here equals
:func:`electra.metrics.speech.wer` on the chosen hypotheses.

The compositional oracle (Chen et al. 2023, HyPoradise, "o_cp") is the WER left if a corrector could compose
its output from any words of the n-best list: the share of reference words that occur in none of the
hypotheses. We count word membership after normalisation (some public scripts test substrings of the joined
hypothesis string, which counts "a" as present in "cat") and pool over the corpus, as corpus WER does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from electra.metrics.speech import normalize, word_errors


def edit_matrix(references: Sequence[str], nbest: Sequence[Sequence[str]], normalise: bool = True
                ) -> tuple[list[list[int]], list[int]]:
    """Word edits of every hypothesis (items x their hypotheses) and each reference's word count."""
    edits, words = [], []
    for ref, hyps in zip(references, nbest, strict=True):
        row = [word_errors(ref, h, normalise)[0] for h in hyps]
        edits.append(row)
        words.append(word_errors(ref, ref, normalise)[1])
    return edits, words


def choice_wer(edits: Sequence[Sequence[int]], words: Sequence[int], choice: Sequence[int]) -> float:
    """Corpus WER of picking hypothesis ``choice[i]`` of item ``i``."""
    total = sum(words)
    return float(sum(e[c] for e, c in zip(edits, choice)) / total) if total else 0.0


def oracle_choice(edits: Sequence[Sequence[int]]) -> list[int]:
    """The hypothesis with the fewest edits per item (ties: the lowest rank)."""
    return [int(np.argmin(e)) for e in edits]


def oracle_wer(references: Sequence[str], nbest: Sequence[Sequence[str]], normalise: bool = True) -> float:
    """The n-best oracle: corpus WER of the best hypothesis of each list."""
    edits, words = edit_matrix(references, nbest, normalise)
    return choice_wer(edits, words, oracle_choice(edits))


def compositional_oracle_wer(references: Sequence[str], nbest: Sequence[Sequence[str]],
                             normalise: bool = True) -> float:
    """Share of reference words found in none of the item's hypotheses (HyPoradise's compositional oracle)."""
    missing = total = 0
    for ref, hyps in zip(references, nbest, strict=True):
        prep = normalize if normalise else (lambda s: s)
        present = {w for h in hyps for w in prep(h).split()}
        ref_words = prep(ref).split()
        total += len(ref_words)
        missing += sum(w not in present for w in ref_words)
    return missing / total if total else 0.0
