"""Detect and correct: the discriminator flags the words it finds replaced, the generator proposes others.

A text is read as words (the tokenizer's pre-tokenization, :func:`words_of`, with offsets into the text);
:class:`Corrector` flags the words whose pieces the discriminator finds replaced, proposes candidates (the
generator's, a given vocabulary's, or the words other n-best hypotheses put there: HyPoradise's compositional
correction) and keeps one only when the discriminator's verdict on the whole text improves
and it finds the new word original (the method is ours; its steps are listed on the class). The output is
the original text with only the replaced words' characters changed (:class:`Edit`, :func:`apply_edits`; case
follows the original word, :func:`match_case`; capitalised words inside a sentence are taken for names and
left to the vocabulary, :func:`is_name`). :func:`correct_lines` corrects a file line by line.
"""

from __future__ import annotations

import difflib
import json
import unicodedata
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from electra.config import at_least, check_values, interval
from electra.errors import ElectraError
from electra.generation.fill import mask_predict
from electra.generation.pair import (
    Pair,
    PieceStyle,
    banned_ids,
    decode_span,
    fit,
    generator_probs,
    piece_style,
    pieces_of,
    replaced_probs,
    roles,
    sentence_score,
    token_spans,
)

KINDS = ("word", "cjk", "punct")  # what an edit puts in place of a word: a token of the same kind


@dataclass
class Word:
    """A word of the original text (the unit an edit replaces): its characters [start, end) and its pieces;
    ``kind``: ``"cjk"`` for Chinese/Japanese characters (no spaces: each piece is a unit), ``"punct"`` for
    punctuation, else ``"word"`` (:data:`KINDS`; an edit puts a token of the same kind in its place)."""

    start: int
    end: int
    ids: list[int]
    unknown: bool = False  # the unk token: never flagged or replaced (what it stands for is not known)
    kind: str = "word"


@dataclass
class Edit:
    start: int  # in the original text's characters
    end: int
    original: str
    replacement: str
    p_replaced: float

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "original": self.original, "replacement": self.replacement,
                "p_replaced": round(self.p_replaced, 4)}


@dataclass
class Correction:
    text: str
    edits: list[Edit]
    windows: int = 1  # how many windows a text longer than the model's positions was corrected in

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "edits": [e.to_dict() for e in self.edits]}


def is_cjk(text: str) -> bool:
    """Whether ``text`` holds a CJK ideograph (the characters BERT's tokenizer splits one by one)."""
    return any("\u3400" <= c <= "\u4dbf" or "\u4e00" <= c <= "\u9fff" or "\uf900" <= c <= "\ufaff"
               or "\U00020000" <= c <= "\U0002fa1f" for c in text)


def _is_punctuation(text: str) -> bool:
    return bool(text) and all(unicodedata.category(c)[0] in "PS" for c in text)


def _units(tokens: list[str], ids: list[int], spans: list[tuple[int, int]], text: str, style: PieceStyle,
           special: frozenset[int]) -> list[list[int]]:
    """Token indices grouped into words for pieces with a word-start mark (SentencePiece's ``▁``, byte-level
    BPE's ``Ġ``): a word starts at a piece with the mark, and continues with the pieces without it; a special
    token, a piece of CJK characters (Chinese has no spaces: each piece is a unit) or of punctuation is a unit of
    its own. A lone mark (``▁``) joins the unit after it (the space before a word), else, at the end, the word
    before it; a piece that shares characters with the one before (byte-level pieces of one character) joins
    its unit."""

    def lone_mark(unit: list[int]) -> bool:
        return len(unit) == 1 and tokens[unit[0]] == style.marker

    units: list[list[int]] = []
    closed, last_end = True, -1  # whether the last unit takes no continuation pieces; where its characters end
    for i, tok in enumerate(tokens):
        s, e = spans[i]
        chars = text[s:e]
        alone = ids[i] in special or is_cjk(chars) or _is_punctuation(chars)
        shared = s < e and s < last_end
        if units and (shared or lone_mark(units[-1]) or not (closed or alone or tok.startswith(style.marker))):
            units[-1].append(i)
        else:
            units.append([i])
        closed = alone
        last_end = max(last_end, e) if s < e else last_end
    if len(units) > 1 and lone_mark(units[-1]):  # a trailing space
        last = units.pop()
        units[-1] += last
    return units


def words_of(tokenizer: Tokenizer, text: str) -> list[Word]:
    """The text's words with character offsets into ``text`` itself: the tokenizer's pre-tokenizer words
    (WordPiece: BERT's split, one word per CJK character), or, for pieces that mark word starts (Unigram /
    SentencePiece ``▁``), words from the marks (:func:`_units`: Chinese per piece). A word's characters are its
    pieces', less the space a ``▁`` piece carries before its word."""
    enc = tokenizer.encode(text, add_special_tokens=False)
    special = roles(tokenizer)
    style = piece_style(tokenizer)
    spans = token_spans(enc, text)
    if style.marker and style.starts_word:  # the unknown token stands for text: not a unit by itself
        units = _units(enc.tokens, enc.ids, spans, text, style, special.all_ids - {special.unk_id})
    else:
        units, last = [], None
        for i, wid in enumerate(enc.word_ids):
            if wid is None:
                continue
            if wid != last:
                units.append([i])
                last = wid
            else:
                units[-1].append(i)
    words: list[Word] = []
    for u in units:
        filled = [spans[i] for i in u if spans[i][1] > spans[i][0]] or [spans[u[0]]]
        start, end = filled[0][0], filled[-1][1]
        ids = [enc.ids[i] for i in u]
        chars = text[start:end]
        words.append(Word(start, end, ids, special.unk_id is not None and special.unk_id in ids,
                          "cjk" if is_cjk(chars) else "punct" if _is_punctuation(chars) else "word"))
    return words


_SENTENCE_END = ".!?\u2026\u3002\uff01\uff1f"  # . ! ? … 。 ！ ？
_OPENING = "\"'([{\u201c\u2018\u00ab"


def is_name(text: str, word: Word) -> bool:
    """A word that starts with a capital letter and does not start a sentence (nothing but opening quotes or
    brackets between it and the text's start or the last sentence-final mark): taken for a name."""
    if not text[word.start:word.end][:1].isupper():
        return False
    before = text[:word.start].rstrip().rstrip(_OPENING).rstrip()
    return bool(before) and before[-1] not in _SENTENCE_END


def apply_edits(text: str, edits: Sequence[Edit]) -> str:
    """``text`` with each edit's [start, end) replaced; everything else byte for byte."""
    out, cursor = [], 0
    for e in sorted(edits, key=lambda e: e.start):
        out += [text[cursor:e.start], e.replacement]
        cursor = e.end
    return "".join(out + [text[cursor:]])


def match_case(original: str, replacement: str) -> str:
    """``replacement`` in the case of ``original``: all capitals (two letters or more) or a capital first."""
    if original.isupper() and len(original) > 1:
        return replacement.upper()
    if original[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    return replacement


def read_vocabulary(path: str | Path) -> list[str]:
    """One candidate word per line (blank lines and duplicates skipped)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise ElectraError(f"{path}: not UTF-8 text (byte {e.start})") from None
    words = list(dict.fromkeys(w.strip() for w in lines if w.strip()))
    if not words:
        raise ElectraError(f"{path}: no words (expected one candidate word per line)")
    return words


# The correction defaults, chosen on planted errors in SQuAD dev sentences 200-499 (the benchmark scores 0-199),
# with the full-depth-generator pair: docs/generation-and-correction.md, "Detect and correct".
DEFAULT_THRESHOLD = 0.8
DEFAULT_MAX_NEW_P = 0.1
DEFAULT_MIN_GENERATOR_PROB = 0.6


_WHOLE: weakref.WeakKeyDictionary[Tokenizer, dict[str, np.ndarray]] = weakref.WeakKeyDictionary()


def whole_tokens(tokenizer: Tokenizer) -> dict[str, np.ndarray]:
    """Per :attr:`Word.kind`, a bool mask of the tokens that can stand for a whole word of that kind: ``word``,
    a token that begins a word (not a ``##`` continuation; with SentencePiece pieces, one with the ``▁`` mark),
    neither CJK nor punctuation; ``cjk``, a piece of CJK characters only, as they come inside Chinese text (no
    ``##`` or ``▁`` mark); ``punct``, a punctuation token (no mark either). Any token for a kind the vocabulary has
    none of (a byte-level one may have no whole CJK character). Special tokens never. Read once per tokenizer
    object (1.8 s for a 250k vocabulary); the masks are shared, not to be changed."""
    if tokenizer in _WHOLE:
        return _WHOLE[tokenizer]
    style = piece_style(tokenizer)
    ban = banned_ids(tokenizer)
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda x: x[1])
    shown = tokenizer.decode_batch([[i] for _, i in vocab], skip_special_tokens=False)  # byte-level: the chars
    out = {kind: np.zeros(len(ban), dtype=bool) for kind in KINDS}
    for (tok, i), text in zip(vocab, shown):
        if i >= len(ban) or ban[i]:
            continue
        unmarked = not (style.marker and tok.startswith(style.marker))
        if text and all(is_cjk(c) for c in text):
            out["cjk"][i] = unmarked
        elif _is_punctuation(text.strip()):
            out["punct"][i] = unmarked
        elif not is_cjk(text):  # a piece mixing CJK and other characters ("。數學家") stands for no word
            out["word"][i] = style.is_word_start(tok)
    for kind in KINDS:
        if not out[kind].any():
            out[kind] = ~ban
    _WHOLE[tokenizer] = out
    return out


class Corrector:
    """Detect and correct (our method; each step stated so it can be checked):

    1. the discriminator reads the text; a word is *flagged* when its largest piece p(replaced) > ``threshold``;
    2. flagged words are visited from the most to the least suspicious; for each, candidates are proposed:
       the generator's ``top_k`` whole-word tokens at the word masked as one position, plus (for a word of
       n > 1 pieces) its n-piece mask-predict filling; or, when restricted, the candidate words
       (``vocabulary``, or the words the other n-best ``hypotheses`` align with this one: HyPoradise's
       compositional correction), ranked by the generator;
    3. every candidate is put in place and the discriminator re-reads the text; the best is kept only if the
       sentence score (mean log p(original)) rises by more than ``min_gain`` and the discriminator then finds the
       new word original (its p(replaced) <= ``max_new_p``); generator proposals must also have a generator
       probability >= ``min_generator_prob``: proposer and critic must both be sure. With ``keep_names`` a
       capitalised word that does not start a sentence (:func:`is_name`) gets no generator proposals: an uncased
       generator proposes common words there ("the", "he"), never the name. These filters (the defaults, chosen
       on planted errors in held-out sentences disjoint from the benchmark's, ``benchmarks/correction.py
       --skip 200``) are what buys precision: without them the critic accepts any fluent word, right or not;
    4. repeat from 1 until nothing changes or ``rounds`` rounds. Words already replaced stay as they are.

    The output is the original text with only the replaced words' characters changed (the tokenizer's
    offsets; case follows the original word when the vocabulary is uncased). Words with the tokenizer's unknown
    token are never touched.
    A text longer than the model's positions is corrected in consecutive windows of whole words.
    """

    def __init__(self, pair: Pair, threshold: float = DEFAULT_THRESHOLD, top_k: int = 10, rounds: int = 3,
                 min_gain: float = 0.0, vocabulary: Sequence[str] | None = None,
                 max_new_p: float = DEFAULT_MAX_NEW_P, min_generator_prob: float = DEFAULT_MIN_GENERATOR_PROB,
                 keep_names: bool = True):
        check_values("correct option", {"threshold": threshold, "top_k": top_k, "rounds": rounds,
                                        "max_new_p": max_new_p, "min_generator_prob": min_generator_prob},
                     {"threshold": interval(0, 1, "[]"), "top_k": at_least(1), "rounds": at_least(1),
                      "max_new_p": interval(0, 1, "[]"), "min_generator_prob": interval(0, 1, "[]")})
        self.pair, self.threshold, self.top_k, self.rounds, self.min_gain = pair, threshold, top_k, rounds, min_gain
        self.max_new_p, self.min_generator_prob, self.keep_names = max_new_p, min_generator_prob, keep_names
        self.whole = whole_tokens(pair.tokenizer)  # per word kind: the tokens that may replace a word
        style = piece_style(pair.tokenizer)  # a lone word-start mark (▁) before a word is kept, not replaced
        self.lone_mark = pair.tokenizer.token_to_id(style.marker) if style.marker and style.starts_word else None
        self.vocabulary = None if vocabulary is None else [(w, pieces_of(pair.tokenizer, w)) for w in vocabulary]

    # -- candidates
    def _generator_candidates(self, ids: list[int], w: int, spans: list[tuple[int, int]], kind: str = "word"
                              ) -> list[list[int]]:
        s, e = spans[w]
        lead = ids[s:s + 1] if e - s > 1 and self.lone_mark is not None and ids[s] == self.lone_mark else []
        s += len(lead)  # "▁" + "孙": the character is proposed for, the space mark kept
        one = ids[:s] + [self.pair.mask_id] + ids[e:]
        probs = generator_probs(self.pair, [one], [[s]])[0][0].copy()
        allowed = fit(self.whole[kind], len(probs), False)
        probs[~allowed] = 0
        cands = [lead + [int(t)] for t in np.argsort(-probs, kind="stable")[:self.top_k]
                 if allowed[t] and probs[t] >= self.min_generator_prob]
        if e - s > 1:
            rows, gen_p = mask_predict(self.pair, [ids[:s] + [self.pair.mask_id] * (e - s) + ids[e:]],
                                       [list(range(s, e))], iterations=2)
            if np.exp(np.log(np.maximum(gen_p[0], 1e-12)).mean()) >= self.min_generator_prob:
                cands.append(lead + rows[0][s:e])
        return cands

    def _listed_candidates(self, ids: list[int], w: int, spans: list[tuple[int, int]],
                           words: list[tuple[str, list[int]]]) -> list[list[int]]:
        """Candidate words ranked by the generator: mean log probability of their pieces, the word masked."""
        s, e = spans[w]
        by_len: dict[int, list[tuple[str, list[int]]]] = {}
        for word, pieces in words:
            if pieces and len(pieces) <= 8:
                by_len.setdefault(len(pieces), []).append((word, pieces))
        scored = []
        for n, group in by_len.items():
            row = ids[:s] + [self.pair.mask_id] * n + ids[e:]
            if len(row) > self.pair.max_len:
                continue
            lp = np.log(np.maximum(generator_probs(self.pair, [row], [list(range(s, s + n))])[0], 1e-12))
            scored += [(float(np.mean([lp[j, t] for j, t in enumerate(p)])), p) for _, p in group]
        scored.sort(key=lambda x: -x[0])
        return [p for _, p in scored[:self.top_k]]

    # -- one window of words
    def _correct_words(self, words: list[Word], alternatives: list[dict[int, list[list[int]]]] | None,
                       names: frozenset[int] | set[int] = frozenset()
                       ) -> dict[int, tuple[list[int], float]]:
        """{word index: (new pieces, p(replaced) of the original)} for the words to replace; ``names``: word
        indices that get no generator proposals."""
        pair = self.pair
        current = [list(w.ids) for w in words]
        done: dict[int, tuple[list[int], float]] = {}

        def layout(pieces: list[list[int]]) -> tuple[list[int], list[tuple[int, int]]]:
            ids, spans = [pair.cls_id], []
            for p in pieces:
                spans.append((len(ids), len(ids) + len(p)))
                ids += p
            return ids + [pair.sep_id], spans

        ids, spans = layout(current)
        p = replaced_probs(pair, [ids])[0]
        score = sentence_score(p)
        for _ in range(self.rounds):
            changed = False
            word_p = [float(p[s:e].max()) for s, e in spans]
            order = [i for i in np.argsort(word_p, kind="stable")[::-1]
                     if word_p[i] > self.threshold and i not in done and not words[i].unknown]
            for w in order:
                ids, spans = layout(current)
                if float(p[spans[w][0]:spans[w][1]].max()) <= self.threshold:  # an earlier fix cleared it
                    continue
                if alternatives is not None:
                    cands = [c for c in alternatives[0].get(w, [])]
                elif self.vocabulary is not None:
                    cands = self._listed_candidates(ids, w, spans, self.vocabulary)
                elif w in names:
                    continue
                else:
                    cands = self._generator_candidates(ids, w, spans, words[w].kind)
                shown = decode_span(pair.tokenizer, current[w])  # "▁the" and "▁" "the" read the same: no edit
                cands = [c for c in dict.fromkeys(map(tuple, cands))
                         if list(c) != current[w] and decode_span(pair.tokenizer, list(c)) != shown]
                trials = [current[:w] + [list(c)] + current[w + 1:] for c in cands]
                rows = [layout(t)[0] for t in trials]
                rows_ok = [(t, r) for t, r in zip(trials, rows) if len(r) <= pair.max_len]
                if not rows_ok:
                    continue
                probs = replaced_probs(pair, [r for _, r in rows_ok])
                s0 = spans[w][0]
                fine = [j for j, (t, _) in enumerate(rows_ok)  # the critic finds the new word original
                        if float(probs[j][s0:s0 + len(t[w])].max()) <= self.max_new_p]
                if not fine:
                    continue
                best = max(fine, key=lambda j: sentence_score(probs[j]))
                gain = sentence_score(probs[best]) - score
                if gain > self.min_gain:
                    done[w] = (rows_ok[best][0][w], word_p[w])
                    current = rows_ok[best][0]
                    p, score = probs[best], sentence_score(probs[best])
                    changed = True
            if not changed:
                break
            ids, spans = layout(current)
        return done

    def correct(self, text: str, hypotheses: Sequence[str] | None = None) -> Correction:
        """Correct ``text``; ``hypotheses``: the other entries of its n-best list, the only candidates then."""
        if not isinstance(text, str) or not text.strip():
            raise ElectraError("empty text: nothing to correct")
        words = words_of(self.pair.tokenizer, text)
        alternatives = None
        if hypotheses is not None:
            alternatives = [self._aligned(words, text, hypotheses)]
            if len(words) + 2 > self.pair.max_len or sum(len(w.ids) for w in words) + 2 > self.pair.max_len:
                raise ElectraError(f"text is longer than the model's {self.pair.max_len} positions; n-best "
                                   "correction takes one window only")
        windows, cur, size = [], [], 0
        for i, w in enumerate(words):  # consecutive windows of whole words that fit the positions
            if cur and size + len(w.ids) > self.pair.max_len - 2:
                windows.append(cur)
                cur, size = [], 0
            if len(w.ids) > self.pair.max_len - 2:
                raise ElectraError(f"a word of {len(w.ids)} pieces at character {w.start} is longer than the "
                                   f"model's {self.pair.max_len} positions")
            cur.append(i)
            size += len(w.ids)
        if cur:
            windows.append(cur)
        edits = []
        for win in windows:
            names = {k for k, i in enumerate(win) if self.keep_names and is_name(text, words[i])}
            done = self._correct_words([words[i] for i in win], alternatives, names)
            for local, (pieces, pr) in sorted(done.items()):
                w = words[win[local]]
                original = text[w.start:w.end]
                repl = match_case(original, decode_span(self.pair.tokenizer, pieces))
                edits.append(Edit(w.start, w.end, original, repl, pr))
        return Correction(apply_edits(text, edits), edits, len(windows))

    def _aligned(self, words: list[Word], text: str, hypotheses: Sequence[str]) -> dict[int, list[list[int]]]:
        """For each word of the 1-best: the pieces of the words other hypotheses put in its place (one-for-one
        substitutions of a difflib alignment over normalised word strings)."""
        tok = self.pair.tokenizer

        def norm(ws: list[Word]) -> list[str]:
            return [tok.decode(w.ids) for w in ws]

        base = norm(words)
        out: dict[int, list[list[int]]] = {}
        for h in hypotheses:
            if not isinstance(h, str) or not h.strip():
                continue
            hw = words_of(tok, h)
            other = norm(hw)
            for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=base, b=other, autojunk=False).get_opcodes():
                if op == "replace" and i2 - i1 == j2 - j1:
                    for k in range(i2 - i1):
                        if not hw[j1 + k].unknown:
                            out.setdefault(i1 + k, []).append(hw[j1 + k].ids)
        return out


def correct(pair: Pair, text: str, threshold: float = DEFAULT_THRESHOLD, top_k: int = 10, rounds: int = 3,
            vocabulary: Sequence[str] | None = None, hypotheses: Sequence[str] | None = None, **filters: float
            ) -> Correction:
    """Detect and correct ``text`` (see :class:`Corrector`; ``filters``: ``max_new_p``, ``min_generator_prob``,
    ``keep_names``)."""
    return Corrector(pair, threshold, top_k, rounds, vocabulary=vocabulary, **filters).correct(text, hypotheses)


def correct_lines(corrector: Corrector, path: str | Path, nbest: bool = False) -> Iterator[Correction]:
    """Correct a file one line at a time, yielding each result as soon as it is done (empty lines pass
    through). ``nbest``: each line is a JSON list of hypotheses, the first corrected with the others' words."""
    path = Path(path)
    if not path.is_file():
        raise ElectraError(f"{path}: file not found")
    with open(path, encoding="utf-8", newline="") as f:
        i = 0
        while True:
            try:
                line = f.readline()
            except UnicodeDecodeError as e:
                raise ElectraError(f"{path}:{i + 1}: not UTF-8 text (byte {e.start} of the chunk read)") from None
            if not line:
                return
            i += 1
            line = line.rstrip("\r\n")
            if not line.strip():
                yield Correction(line, [])
                continue
            try:
                if not nbest:
                    yield corrector.correct(line)
                    continue
                try:
                    hyps = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ElectraError(f"invalid JSON ({e.msg}); expected a list of hypotheses") from None
                if not isinstance(hyps, list) or not hyps or not all(isinstance(h, str) for h in hyps):
                    raise ElectraError("expected a JSON list of hypothesis strings, the 1-best first")
                yield corrector.correct(hyps[0], hyps[1:])
            except ElectraError as e:
                raise ElectraError(f"{path}:{i}: {e}") from None
