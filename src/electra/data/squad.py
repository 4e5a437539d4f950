"""SQuAD-format JSON (SQuAD 1.1, 2.0 with ``is_impossible``, CMRC 2018) and the windows fed to the model.

Reading checks the structure and names the first problem by its JSON path; answers whose ``answer_start``
does not point at their text are counted, re-located by searching the text in the context when possible,
and reported in one warning. Windows follow google-research/electra's ``featurize``: the question is cut to
``max_query_length`` tokens, the context is split into windows of ``max_seq_length - len(question) - 3``
tokens whose starts advance by ``doc_stride`` tokens, and each token remembers whether this window gives it
its maximum context. Token character offsets (from ``tokenizers``) map spans back to the original text.

Windows are ``cls question sep context sep`` with the tokenizer's role ids (:func:`electra.tokenization.special_tokens`:
``[CLS]``/``[SEP]`` for BERT's WordPiece, ``<s>``/``</s>`` for SentencePiece). A context token's character span is
trimmed of white space (a Metaspace piece ``▁word`` starts at the space before the word), and a piece holding only
the word-start mark ``▁`` (which SentencePiece emits before a piece that has none, e.g. ``▁`` ``北京``) has no span:
it is never an answer's start or end, so a predicted span's offsets give the answer text exactly.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from electra.config import read_json
from electra.errors import ElectraError
from electra.tokenization import special_tokens


@dataclass
class Answer:
    text: str
    start: int  # character offset into the context (-1 when it could not be located)


@dataclass
class QAExample:
    qid: str
    question: str
    context: str
    answers: list[Answer] = field(default_factory=list)
    is_impossible: bool = False


@dataclass
class ReadReport:
    """What reading found amiss (each is warned about once, with counts)."""

    examples: int = 0
    mismatched_offsets: int = 0  # answer_start does not point at the answer text
    relocated: int = 0  # ... of which the text was found elsewhere in the context
    empty_questions: list[str] = field(default_factory=list)

    def warn(self, path: str | Path) -> None:
        if self.mismatched_offsets:
            print(f"electra: warning: {path}: {self.mismatched_offsets} answers' answer_start does not match "
                  f"the context ({self.relocated} re-located by searching their text, "
                  f"{self.mismatched_offsets - self.relocated} not found: left out of training)",
                  file=sys.stderr)
        if self.empty_questions:
            print(f"electra: warning: {path}: {len(self.empty_questions)} empty questions (first id "
                  f"{self.empty_questions[0]!r}): left out of training, answered from the context alone",
                  file=sys.stderr)


def _field(obj: Any, key: str, kind: type | tuple, where: str, path: Path) -> Any:
    if not isinstance(obj, dict):
        raise ElectraError(f"{path}: {where}: expected a JSON object, got {type(obj).__name__}")
    if key not in obj:
        raise ElectraError(f"{path}: {where}: missing field {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise ElectraError(f"{path}: {where}.{key}: expected {names}, got {type(value).__name__}")
    return value


def _locate(context: str, text: str, start: int) -> int:
    """``start`` if the answer is there, else the occurrence of ``text`` nearest to it, else -1."""
    if context[start:start + len(text)] == text:
        return start
    hits, i = [], context.find(text)
    while i != -1 and text:
        hits.append(i)
        i = context.find(text, i + 1)
    return min(hits, key=lambda h: abs(h - start)) if hits else -1


def parse_squad(data: Any, path: str | Path = "<data>") -> tuple[list[QAExample], ReadReport]:
    """Examples from a parsed SQuAD-format object, with a report of what was amiss."""
    path = Path(path)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise ElectraError(f"{path}: not a SQuAD-format file (expected an object with a \"data\" list)")
    examples, report, seen = [], ReadReport(), set()
    for a, article in enumerate(data["data"]):
        for p, para in enumerate(_field(article, "paragraphs", list, f"data[{a}]", path)):
            where = f"data[{a}].paragraphs[{p}]"
            context = _field(para, "context", str, where, path)
            for q, qa in enumerate(_field(para, "qas", list, where, path)):
                qwhere = f"{where}.qas[{q}]"
                qid = str(_field(qa, "id", (str, int), qwhere, path)).strip()
                if qid in seen:
                    raise ElectraError(f"{path}: {qwhere}.id: duplicate question id {qid!r}")
                seen.add(qid)
                question = _field(qa, "question", str, qwhere, path)
                if not question.strip():
                    report.empty_questions.append(qid)
                impossible = qa.get("is_impossible", False)
                if not isinstance(impossible, (bool, int)):
                    raise ElectraError(f"{path}: {qwhere}.is_impossible: expected bool, got "
                                       f"{type(impossible).__name__}")
                impossible = bool(impossible)
                listed = _field(qa, "answers", list, qwhere, path) if "answers" in qa else []
                answers = []
                for n, ans in enumerate(listed):  # checked even when unanswerable: scorers read them
                    awhere = f"{qwhere}.answers[{n}]"
                    text = _field(ans, "text", str, awhere, path)
                    start = ans.get("answer_start", -1)
                    if not isinstance(start, int) or isinstance(start, bool):
                        raise ElectraError(f"{path}: {awhere}.answer_start: expected int, got "
                                           f"{type(start).__name__}")
                    found = _locate(context, text, start)
                    if found != start and not impossible:
                        report.mismatched_offsets += 1
                        report.relocated += found != -1
                    answers.append(Answer(text, found))
                examples.append(QAExample(qid, question, context, [] if impossible else answers, impossible))
    report.examples = len(examples)
    return examples, report


def read_squad(path: str | Path, warn: bool = True) -> list[QAExample]:
    """Read a SQuAD-format JSON file (errors name the file and the JSON position or path)."""
    examples, report = parse_squad(load_json(path, "data set"), path)
    if warn:
        report.warn(path)
    return examples


# ---- windows --------------------------------------------------------------------------------------------
@dataclass
class QAFeature:
    """One window of one example: model inputs, training targets, and what decoding needs."""

    example_index: int
    input_ids: list[int]
    token_type_ids: list[int]
    offsets: list[tuple[int, int] | None]  # character span in the context for context tokens, else None
    max_context: list[bool]  # whether this window is the token's max-context window
    start: int = 0  # target token positions (0, the cls position: no answer in this window)
    end: int = 0
    is_impossible: bool = False
    pad_id: int = 0  # the tokenizer's pad id, which batches of this window are padded with


@dataclass(frozen=True)
class WindowConfig:
    max_seq_length: int = 384
    doc_stride: int = 128
    max_query_length: int = 64


def marker_ids(tok: Tokenizer) -> frozenset[int]:
    """Ids of the pieces that are only a Metaspace word-start mark (SentencePiece's bare ``▁``): they hold no
    character of a word. None for tokenizers without a Metaspace pre-tokenizer (WordPiece)."""
    pre = tok.pre_tokenizer
    if pre is None:
        return frozenset()
    spec = json.loads(pre.__getstate__())
    steps = spec.get("pretokenizers", []) if spec.get("type") == "Sequence" else [spec]
    marks = {s["replacement"] for s in steps if s.get("type") == "Metaspace" and s.get("replacement")}
    return frozenset(i for m in marks if (i := tok.token_to_id(m)) is not None)


def context_offsets(text: str, ids: list[int], offsets: list[tuple[int, int]], markers: frozenset[int]
                    ) -> list[tuple[int, int] | None]:
    """Each token's character span in ``text`` without surrounding white space; ``None`` for a piece that holds
    no character of its own (a bare ``▁`` mark, or white space only)."""
    out: list[tuple[int, int] | None] = []
    for i, (s, e) in zip(ids, offsets):
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        out.append((s, e) if s < e and i not in markers else None)
    return out


def _is_max_context(spans: list[tuple[int, int]], index: int, position: int) -> bool:
    """google-research/electra ``_check_is_max_context``: min(left, right) context + 0.01 * length."""
    best_score, best = None, None
    for i, (start, length) in enumerate(spans):
        end = start + length - 1
        if position < start or position > end:
            continue
        score = min(position - start, end - position) + 0.01 * length
        if best_score is None or score > best_score:
            best_score, best = score, i
    return best == index


def _best_windows(spans: list[tuple[int, int]], n: int) -> list[int]:
    """For each of ``n`` context tokens, the index of its max-context window (:func:`_is_max_context`)."""
    best, score = [-1] * n, [-1.0] * n
    for i, (start, length) in enumerate(spans):
        end = start + length - 1
        for p in range(start, end + 1):
            s = min(p - start, end - p) + 0.01 * length
            if s > score[p]:
                best[p], score[p] = i, s
    return best


def _token_span(offsets: list[tuple[int, int] | None], char_start: int, char_end: int) -> tuple[int, int] | None:
    """First and last context token overlapping [char_start, char_end) (tokens without a span skipped)."""
    hits = [i for i, o in enumerate(offsets) if o is not None and o[1] > char_start and o[0] < char_end]
    return (hits[0], hits[-1]) if hits else None


def make_features(examples: list[QAExample], tokenizer: Tokenizer, cfg: WindowConfig = WindowConfig(),
                  training: bool = False) -> list[QAFeature]:
    """Windows for every example; with ``training``, targets from the first answer (as the official code)."""
    tokenizer.no_truncation()
    tokenizer.no_padding()
    roles = special_tokens(tokenizer)
    cls, sep, pad = roles.cls_id, roles.sep_id, roles.pad_id
    markers = marker_ids(tokenizer)
    contexts = sorted({ex.context for ex in examples})
    ctx_enc = dict(zip(contexts, tokenizer.encode_batch(contexts, add_special_tokens=False)))
    ctx_off = {c: context_offsets(c, e.ids, e.offsets, markers) for c, e in ctx_enc.items()}
    q_enc = tokenizer.encode_batch([ex.question for ex in examples], add_special_tokens=False)
    features = []
    best_cache: dict[tuple[int, int], tuple[list[tuple[int, int]], list[int]]] = {}
    for ei, (ex, qe) in enumerate(zip(examples, q_enc)):
        q_ids = qe.ids[:cfg.max_query_length]
        c_ids, c_off = ctx_enc[ex.context].ids, ctx_off[ex.context]
        max_doc = cfg.max_seq_length - len(q_ids) - 3
        if max_doc < 1:
            raise ElectraError(f"max_seq_length {cfg.max_seq_length} leaves no room for the context after a "
                               f"{len(q_ids)}-token question (raise it or lower max_query_length)")
        target = None
        if training and not ex.is_impossible:
            if not ex.answers or ex.answers[0].start < 0 or not ex.question.strip():
                continue  # unusable for training (warned about when reading)
            a = ex.answers[0]
            target = _token_span(c_off, a.start, a.start + len(a.text))
            if target is None:
                continue
        elif training and not ex.question.strip():
            continue
        key = (len(c_ids), max_doc)
        if key not in best_cache:
            spans, start = [], 0
            while True:
                length = min(len(c_ids) - start, max_doc)
                spans.append((start, length))
                if start + length >= len(c_ids):
                    break
                start += min(length, cfg.doc_stride)
            best_cache[key] = spans, _best_windows(spans, len(c_ids))
        spans, best = best_cache[key]
        doc_offset = len(q_ids) + 2
        for si, (start, length) in enumerate(spans):
            ids = [cls, *q_ids, sep, *c_ids[start:start + length], sep]
            types = [0] * doc_offset + [1] * (length + 1)
            offsets = [None] * doc_offset + list(c_off[start:start + length]) + [None]
            maxc = [False] * doc_offset + [best[start + i] == si for i in range(length)] + [False]
            f = QAFeature(ei, ids, types, offsets, maxc, is_impossible=ex.is_impossible, pad_id=pad)
            if target is not None and start <= target[0] and target[1] <= start + length - 1:
                f.start, f.end = target[0] - start + doc_offset, target[1] - start + doc_offset
            features.append(f)
    return features

def load_json(path: str | Path, what: str) -> Any:
    """Parse a JSON file; errors name the file, line and column (``electra.config.read_json``)."""
    return read_json(path, f"{what} file")
