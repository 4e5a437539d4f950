"""Text in, JSON-ready results out, for every kind of model: detect, fill, correct, rescore, classify, answer, tag,
rank.

Each pipeline has two halves so that a server can batch across requests (``electra.serve.batching``):
``prepare(value)`` tokenizes and validates one input (a user error raises :class:`ElectraError`, an HTTP 422)
and says how many tokens it costs; ``run(items)`` puts any number of prepared inputs through the model in one
padded batch and decodes each. ``prepare`` runs on the caller's thread and ``run`` on the inference thread;
they use two copies of the tokenizer (a ``tokenizers.Tokenizer`` must not be changed while another thread
reads it, and QA windowing changes its truncation settings).

Result shapes follow ``transformers``' pipelines where it has one: fill-mask (``sequence, score, token,
token_str``), text-classification (``label, score``, best first), question-answering (``answer, score, start,
end``; no answer: ``""`` with start = end = 0), token-classification with simple aggregation (``entity_group,
score, word, start, end``); rescore and rank return ``scores, ranking``; detect returns what ``electra detect
--json`` prints, correct what :meth:`electra.generation.Correction.to_dict` gives (``text, edits``).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from electra.data.squad import QAExample, WindowConfig, make_features
from electra.errors import ElectraError
from electra.generation import Corrector, Pair, detect_encoded, fill_encoded
from electra.generation.fill import mask_markers, no_mask_error
from electra.generation.pair import roles
from electra.inference import LoadedModel, as_task_model
from electra.metrics.ranking import rank
from electra.scoring import SCORERS, Scorer
from electra.tasks.qa import get_task, predict_features
from electra.tasks.registry import FAMILIES
from electra.tokenization import copy_tokenizer, encode_candidates, pad_batch, special_tokens


@dataclass
class Item:
    """One prepared input: what ``run`` needs, and its cost in tokens (for batching by tokens)."""

    data: Any
    tokens: int


class Pipeline:
    task = ""

    def __init__(self, model: LoadedModel, max_input_tokens: int | None = None):
        self.model = model
        self.tokenizer = model.tokenizer
        self.run_tokenizer = copy_tokenizer(model.tokenizer)  # with the same special-token roles
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        limit = model.max_sequence
        self.max_tokens = min(limit, max_input_tokens) if max_input_tokens else limit

    def _encode(self, text: Any, pair: Any = None):  # noqa: ANN202
        if not isinstance(text, str) or (pair is not None and not isinstance(pair, str)):
            raise ElectraError("each input must be a string")
        enc = self.tokenizer.encode(text, pair) if pair is not None else self.tokenizer.encode(text)
        if len(enc.ids) > self.max_tokens:
            raise ElectraError(f"input is {len(enc.ids)} tokens long; this model takes at most {self.max_tokens} "
                               "(inputs are not truncated or split: shorten it)")
        return enc

    def prepare(self, value: Any) -> Item:  # pragma: no cover - interface
        raise NotImplementedError

    def run(self, items: list[Item]) -> list[Any]:  # pragma: no cover - interface
        raise NotImplementedError

    def __call__(self, values: list[Any]) -> list[Any]:
        """prepare + run, for callers without a batching queue (the CLI, tests)."""
        return self.run([self.prepare(v) for v in values])


class DetectPipeline(Pipeline):
    task = "detect"

    def prepare(self, value: Any) -> Item:
        enc = self._encode(value)
        return Item((enc, value), len(enc.ids))

    def run(self, items: list[Item]) -> list[dict[str, Any]]:
        encodings, texts = zip(*(i.data for i in items), strict=True)
        return [d.to_dict() for d in detect_encoded(self.model.runners["discriminator"], list(encodings), texts)]


class FillPipeline(Pipeline):
    task = "fill"
    max_top_k = 50

    def prepare(self, value: Any, top_k: int = 5) -> Item:
        if not isinstance(top_k, int) or not 1 <= top_k <= self.max_top_k:
            raise ElectraError(f"top_k {top_k!r}: expected an integer from 1 to {self.max_top_k}")
        mask_id = roles(self.tokenizer).need_mask("fill needs one")
        enc = self._encode(mask_markers(self.tokenizer, value) if isinstance(value, str) else value)
        if mask_id not in enc.ids:  # [MASK] markers and the model's own mask token (<mask>) both count
            raise no_mask_error(self.tokenizer)
        return Item((enc, top_k), len(enc.ids))

    def run(self, items: list[Item]) -> list[Any]:
        k = max(i.data[1] for i in items)
        res = fill_encoded(self.model.runners["generator"], self.run_tokenizer, [i.data[0] for i in items], k)
        out = []
        for item, per_mask in zip(items, res):
            per_mask = [c[:item.data[1]] for c in per_mask]
            out.append(per_mask[0] if len(per_mask) == 1 else per_mask)  # as transformers: one mask, one list
        return out


def corrector_defaults() -> dict[str, Any]:
    """The options of :class:`electra.generation.Corrector` with its own defaults (one source for them)."""

    params = inspect.signature(Corrector.__init__).parameters
    return {k: params[k].default for k in CORRECT_OPTIONS}


CORRECT_OPTIONS = ("threshold", "min_generator_prob", "max_new_p", "top_k", "rounds", "keep_names")


class CorrectPipeline(Pipeline):
    """Detect and correct (:class:`electra.generation.Corrector`) with a pre-trained pair: ``{"text", "edits"}``.

    Correction is multi-pass (read, propose, re-read, for each flagged word and round), so it is not batched token
    by token like detect: each prepared text is one batch item, and ``run`` corrects the items of a batch one after
    the other on the inference thread, where the model's other forward passes run (never two thread pools at
    once). The per-input token limit is the other endpoints' (``max_tokens``): the corrector could split a longer
    text into windows of whole words, but a request's work stays bounded by refusing it instead. Options
    (``threshold``, ``min_generator_prob``, ``max_new_p``, ``top_k``, ``rounds``, ``keep_names``) default to the
    :class:`Corrector` constructor's defaults; a corrector is built once per distinct set of options (cached).
    """

    task = "correct"
    max_top_k, max_rounds = 50, 5

    def __init__(self, model: LoadedModel, max_input_tokens: int | None = None):
        super().__init__(model, max_input_tokens)
        self.run_tokenizer.no_padding()
        self.run_tokenizer.no_truncation()
        self.pair = Pair(model.runners["generator"], model.runners["discriminator"], self.run_tokenizer,
                         model.max_sequence)
        self.defaults = corrector_defaults()

    @functools.lru_cache(maxsize=16)  # noqa: B019 - one pipeline per served model, kept for the process
    def _corrector(self, options: tuple[tuple[str, Any], ...]) -> Any:
        return Corrector(self.pair, **dict(options))

    def prepare(self, value: Any, **options: Any) -> Item:
        unknown = sorted(set(options) - set(CORRECT_OPTIONS))
        if unknown:
            raise ElectraError(f"unknown correct option {unknown[0]!r}; expected {', '.join(CORRECT_OPTIONS)}")
        opts = {**self.defaults, **options}
        for name in ("top_k", "rounds"):
            most = self.max_top_k if name == "top_k" else self.max_rounds
            if not isinstance(opts[name], int) or isinstance(opts[name], bool) or not 1 <= opts[name] <= most:
                raise ElectraError(f"{name} {opts[name]!r}: expected an integer from 1 to {most}")
        for name in ("threshold", "min_generator_prob", "max_new_p"):
            v = opts[name]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise ElectraError(f"{name} {v!r}: expected a number from 0 to 1")
        if not isinstance(opts["keep_names"], bool):
            raise ElectraError(f"keep_names {opts['keep_names']!r}: expected true or false")
        enc = self._encode(value)
        if not value.strip():
            raise ElectraError("empty text: nothing to correct")
        key = tuple((k, float(opts[k]) if k in ("threshold", "min_generator_prob", "max_new_p") else opts[k])
                    for k in CORRECT_OPTIONS)
        return Item((value, self._corrector(key)), len(enc.ids))

    def run(self, items: list[Item]) -> list[dict[str, Any]]:
        return [corrector.correct(text).to_dict() for text, corrector in (i.data for i in items)]


class RescorePipeline(Pipeline):
    """Zero-shot rescoring of a list of candidates (:mod:`electra.scoring`, no tuning): each candidate's sentence
    score (``rtd``: the discriminator's sum of log p(original) over its tokens; ``pll``/``pll-word``: the
    generator's pseudo-log-likelihood) and the ranking, best first (ties keep the given order)."""

    task = "rescore"

    def __init__(self, model: LoadedModel, max_input_tokens: int | None = None):
        super().__init__(model, max_input_tokens)
        self.scorer = Scorer(model)

    def prepare(self, value: Any, method: str = "rtd") -> Item:
        if method not in SCORERS:
            raise ElectraError(f"method {method!r}: expected one of {', '.join(SCORERS)}")
        if method != "rtd" and "generator" not in self.model.runners:
            raise ElectraError(f"method {method!r} needs a generator; this model has none (use \"rtd\")")
        if method != "rtd" and self.scorer.special.mask_id is None:
            raise ElectraError(f"method {method!r} needs a mask token; this model's tokenizer has none (use \"rtd\")")
        if not isinstance(value, list) or not value:
            raise ElectraError("each input must be a non-empty list of candidate strings")
        encs = []
        for j, cand in enumerate(value):
            try:
                encs.append(self._encode(cand))
            except ElectraError as e:
                raise ElectraError(f"candidate {j}: {e}") from None
        return Item((encs, method), max(len(e.ids) for e in encs) * len(encs))

    def run(self, items: list[Item]) -> list[dict[str, Any]]:
        out = []
        for encs, method in (i.data for i in items):
            scores = self.scorer.score_encodings(method, encs)
            values = [round(s.score, 4) for s in scores]
            out.append({"scores": values, "ranking": sorted(range(len(values)), key=lambda k: -scores[k].score)})
        return out


class ClassifyPipeline(Pipeline):
    """A text, or a pair ``[a, b]`` for sentence-pair tasks: every label with its probability, best first
    (regression: one entry, the predicted value as ``score``). A label is given by its name where the run's spec
    names it (``label_names``, e.g. SST-2's ``"1"`` is ``"positive"``; :attr:`LoadedModel.label_names`)."""

    task = "classify"

    def prepare(self, value: Any) -> Item:
        if isinstance(value, list) and len(value) == 2:
            enc = self._encode(value[0], value[1])
        elif isinstance(value, list):
            raise ElectraError(f"a pair must have 2 texts, not {len(value)}")
        else:
            enc = self._encode(value)
        return Item(enc, len(enc.ids))

    def run(self, items: list[Item]) -> list[list[dict[str, Any]]]:
        batch = pad_batch([i.data.ids for i in items], [i.data.type_ids for i in items])
        logits = self.model.runners["task"](batch)["logits"].astype(np.float64)
        labels = self.model.label_names
        if logits.ndim == 1 or not labels:
            name = self.model.spec.get("task", "value")
            return [[{"label": name, "score": round(float(v), 4)}] for v in logits.reshape(len(items), -1)[:, 0]]
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        return [[{"label": labels[j], "score": round(float(row[j]), 4)} for j in np.argsort(-row, kind="stable")]
                for row in probs]


class AnswerPipeline(Pipeline):
    """``{"question", "context"}``: the answer span in the context (character offsets), as the QA task decodes
    it; the context is split into windows as in evaluation (``max_context_tokens`` bounds the work)."""

    task = "answer"
    max_context_tokens = 4096

    def prepare(self, value: Any) -> Item:
        if not isinstance(value, dict) or not isinstance(value.get("question"), str) or not isinstance(
                value.get("context"), str):
            raise ElectraError("each input must be an object with string fields \"question\" and \"context\"")
        question, context = value["question"], value["context"]
        if not context.strip() or not question.strip():
            raise ElectraError("question and context must not be empty")
        n = len(self.tokenizer.encode(context, add_special_tokens=False).ids)
        if n > self.max_context_tokens:
            raise ElectraError(f"context is {n} tokens long; at most {self.max_context_tokens}")
        ex = QAExample("q", question, context)
        feats = make_features([ex], self.tokenizer, WindowConfig(**self.model.spec["window"]))
        return Item((ex, feats), sum(len(f.input_ids) for f in feats))

    def run(self, items: list[Item]) -> list[dict[str, Any]]:
        examples, feats = [], []
        for i, item in enumerate(items):
            ex, fs = item.data
            examples.append(dataclasses.replace(ex, qid=str(i)))
            feats += [dataclasses.replace(f, example_index=i) for f in fs]
        preds = predict_features(as_task_model(self.model), examples, feats)
        version = get_task(self.model.spec["task"]).version
        out = []
        for i in range(len(items)):
            p = preds[str(i)]
            if p.start < 0:
                null = p.null_score if p.null_score is not None and version == 2 else 0.0
                out.append({"answer": "", "score": round(_sigmoid(null), 4), "start": 0, "end": 0})
            else:
                prob = p.nbest[0].get("probability", 1.0) if p.nbest else 1.0
                out.append({"answer": p.text, "score": round(float(prob), 4), "start": p.start, "end": p.end})
        return out


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, x))))


class TagPipeline(Pipeline):
    """Entities: each word labelled at its first sub-token, B-/I-/E-/S- runs of one type grouped; ``score``
    is the mean probability of the group's word labels, ``start``/``end`` character offsets in the text."""

    task = "tag"

    def prepare(self, value: Any) -> Item:
        enc = self._encode(value)
        return Item((value, enc), len(enc.ids))

    def run(self, items: list[Item]) -> list[list[dict[str, Any]]]:
        batch = pad_batch([i.data[1].ids for i in items])
        logits = self.model.runners["task"](batch)["logits"].astype(np.float64)
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        labels = self.model.labels
        out = []
        for row, item in zip(probs, items):
            text, enc = item.data
            words: list[tuple[str, float, int, int]] = []  # label, score, start, end per word
            seen: set[int] = set()
            for t, w in enumerate(enc.word_ids):
                if w is None:
                    continue
                s, e = enc.offsets[t]
                if w in seen:
                    words[-1] = (words[-1][0], words[-1][1], words[-1][2], e)
                    continue
                seen.add(w)
                j = int(row[t].argmax())
                words.append((labels[j], float(row[t, j]), s, e))
            out.append(group_entities(text, words))
        return out


def group_entities(text: str, words: list[tuple[str, float, int, int]]) -> list[dict[str, Any]]:
    """Runs of B-/I-/E-/S- word labels of one type -> entities (``O`` and a change of type end a run)."""
    groups: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for label, score, start, end in words:
        prefix, _, kind = label.partition("-")
        if label == "O" or not kind:
            current = None
            continue
        if current is None or prefix in ("B", "S") or current["entity_group"] != kind:
            current = {"entity_group": kind, "scores": [], "start": start, "end": end}
            groups.append(current)
        current["scores"].append(score)
        current["end"] = end
        if prefix in ("E", "S"):
            current = None
    return [{"entity_group": g["entity_group"], "score": round(float(np.mean(g["scores"])), 4),
             "word": text[g["start"]:g["end"]], "start": g["start"], "end": g["end"]} for g in groups]


class RankPipeline(Pipeline):
    """A fine-tuned reranker (``electra finetune --task mutual|asr-nbest|mt-rerank|ranking``): ``{"context",
    "candidates"}`` -> each candidate's cross-encoder score (in input order) and the ranking (indices, best first;
    equal scores keep the lower index first), as the run's own evaluation scores a list
    (:func:`electra.tasks.ranking.encode_lists` and ``list_scores``): ``cls context sep candidate sep`` (the
    tokenizer's own), or ``cls candidate sep`` when the context is absent or empty (asr-nbest runs are trained
    without one; mt-rerank runs take the source sentence as the context). Each pair is scored on its own (a list of
    one), so a score does not depend on the other candidates. A pair longer than the run's ``max_seq_len`` (or the
    per-input token limit) is refused: evaluation would cut its context from the left, the server never cuts."""

    task = "rank"
    max_forward_tokens = 16384  # padded tokens per forward pass within one ``run``

    def __init__(self, model: LoadedModel, max_input_tokens: int | None = None):
        super().__init__(model, max_input_tokens)
        trained = model.spec.get("max_seq_len")
        if isinstance(trained, int) and trained > 0:
            self.max_tokens = min(self.max_tokens, trained)
        self.pad_id = special_tokens(self.tokenizer).pad_id

    def prepare(self, value: Any) -> Item:
        if not isinstance(value, dict) or not isinstance(value.get("candidates"), list):
            raise ElectraError("each input must be an object with \"candidates\" (a list of strings) and an optional "
                               "\"context\" (a string)")
        context, candidates = value.get("context"), value["candidates"]
        if context is not None and not isinstance(context, str):
            raise ElectraError("context must be a string")
        if not candidates:
            raise ElectraError("no candidates: the list is empty")
        bad = next((j for j, c in enumerate(candidates) if not isinstance(c, str)), None)
        if bad is not None:
            raise ElectraError(f"candidate {bad} must be a string, not {type(candidates[bad]).__name__}")
        contexts = [context] * len(candidates) if context else None  # as encode_lists: "" is no context
        encs = encode_candidates(self.tokenizer, candidates, contexts, max_len=1 << 30)  # never cut: refused below
        for j, enc in enumerate(encs):
            if len(enc.ids) > self.max_tokens:
                raise ElectraError(f"candidate {j}: {'context + candidate' if contexts else 'the candidate'} is "
                                   f"{len(enc.ids)} tokens long; this model takes at most {self.max_tokens} "
                                   "(inputs are not truncated or split: shorten it)")
        return Item(encs, max(len(e.ids) for e in encs) * len(encs))

    def run(self, items: list[Item]) -> list[dict[str, Any]]:
        encs = [e for i in items for e in i.data]
        scores = np.zeros(len(encs))
        order = sorted(range(len(encs)), key=lambda k: len(encs[k].ids))
        start = 0
        while start < len(order):  # chunks of similar lengths, at most max_forward_tokens padded tokens each
            end = start + 1
            while end < len(order) and len(encs[order[end]].ids) * (end + 1 - start) <= self.max_forward_tokens:
                end += 1
            chunk = order[start:end]
            batch = pad_batch([encs[k].ids for k in chunk], [encs[k].type_ids for k in chunk], self.pad_id)
            batch["candidate_mask"] = np.ones((len(chunk), 1), dtype=np.int64)  # each pair a list of one
            scores[chunk] = self.model.runners["task"](batch)["logits"].astype(np.float64).reshape(-1)
            start = end
        out, at = [], 0
        for item in items:
            s = scores[at:at + len(item.data)].tolist()
            at += len(item.data)
            out.append({"scores": [round(v, 4) for v in s], "ranking": rank(s)})
        return out


PIPELINES: dict[str, type[Pipeline]] = {p.task: p for p in (DetectPipeline, FillPipeline, CorrectPipeline,
                                                            RescorePipeline, ClassifyPipeline, AnswerPipeline,
                                                            TagPipeline, RankPipeline)}


def pipelines_for(model: LoadedModel, max_input_tokens: int | None = None) -> dict[str, Pipeline]:
    """The pipelines a model serves: detect, fill, correct and rescore (pre-trained: fill needs the generator,
    correct both networks, both a tokenizer with a mask token), classify, answer, tag or rank (fine-tuned)."""
    if model.kind == "pretrained":
        needs = (("detect", {"discriminator"}), ("fill", {"generator"}), ("correct", {"generator", "discriminator"}),
                 ("rescore", {"discriminator"}))
        masks = roles(model.tokenizer).mask_id is not None  # fill and correct put the tokenizer's mask token in
        tasks = [t for t, r in needs if r <= set(model.runners) and (masks or t not in ("fill", "correct"))]
    elif model.kind in FAMILIES:
        tasks = [FAMILIES[model.kind].pipeline]  # the task registry says which pipeline a family's runs serve
    else:
        raise ElectraError(f"{model.source}: a {model.kind or 'fine-tuned'} model, which has no pipeline (known: "
                           f"pretrained, {', '.join(FAMILIES)})")
    return {t: PIPELINES[t](model, max_input_tokens) for t in tasks}
