"""Extractive question answering (SQuAD 1.1, SQuAD 2.0, CMRC 2018): head, span decoding, the task.

The head is google-research/electra's ``finetune/qa/qa_tasks.py`` (``joint_prediction``): start logits from
one linear layer; end logits from ``dense(512, GELU)`` over [start token's hidden state; each token's hidden
state], conditioned on the gold start when training and on each of the ``beam_size`` best starts when
predicting; plus, for SQuAD 2.0, the answerability classifier over the cls token and the start-probability-weighted
hidden state (its logit is positive for *unanswerable*, trained with sigmoid cross-entropy, weight 0.5).
``joint=False`` gives the simple independent start/end head. Decoding follows ``qa_metrics.py``: the n best
start/end pairs inside the context, start in its max-context window, at most ``max_answer_length`` tokens,
scored by the sum of log-probabilities (joint) or logits (independent), mapped back to the original text
through the tokenizer's character offsets. For 2.0, the no-answer score of a question is the minimum of the
classifier's logit over its windows and the answer is "" when it exceeds the threshold tuned on dev.
"""

from __future__ import annotations

import json
import math
import random
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from electra.config import Rule, at_least, interval, one_of, validate
from electra.data.squad import QAExample, QAFeature, WindowConfig, load_json, make_features, parse_squad, read_squad
from electra.errors import ElectraError
from electra.files import write_text_atomic
from electra.metrics.squad import cmrc2018, squad_v1, squad_v2
from electra.tasks.heads import SpanQAHead
from electra.tasks.runner import (
    Batch,
    FinetuneConfig,
    RunLoader,
    TaskModel,
    check_tokenizer_fits,
    collate,
    finetune,
    load_encoder,
    load_run_with_tokenizer,
    official_hparams,
    run_inference,
    run_tokenizer_dir,
)
from electra.tokenization import load_tokenizer


@dataclass(frozen=True)
class QATask:
    name: str
    version: int  # 1: every question has an answer; 2: unanswerable questions (is_impossible)
    main_metric: str
    max_seq_length: int = 384


TASKS: dict[str, QATask] = {
    "squad1": QATask("squad1", 1, "f1"),
    "squad2": QATask("squad2", 2, "best_f1"),
    "cmrc2018": QATask("cmrc2018", 1, "AVERAGE", max_seq_length=512),
}
NA_THRESHOLD = -2.75  # google-research/electra's default ``qa_na_threshold`` before tuning on dev


def get_task(name: str) -> QATask:
    if name not in TASKS:
        raise ElectraError(f"--task {name!r}: expected one of {', '.join(TASKS)}")
    return TASKS[name]


# ---- the head -------------------------------------------------------------------------------------------
# ---- batches --------------------------------------------------------------------------------------------
def feature_dict(f: QAFeature, index: int, training: bool) -> dict[str, Any]:
    d = {"input_ids": f.input_ids, "token_type_ids": f.token_type_ids, "attention_mask": [1] * len(f.input_ids),
         "feature_index": index}
    if training:
        d.update(start_positions=f.start, end_positions=f.end, is_impossible=int(f.is_impossible))
    return d


def batches(features: list[QAFeature], batch_size: int, training: bool = False,
            seed: int | None = None) -> Iterator[Batch]:
    order = list(range(len(features)))
    if seed is not None:
        random.Random(seed).shuffle(order)
    for i in range(0, len(order), batch_size):
        chunk = order[i:i + batch_size]
        yield collate([feature_dict(features[j], j, training) for j in chunk], features[chunk[0]].pad_id)


# ---- decoding -------------------------------------------------------------------------------------------
@dataclass
class Prediction:
    text: str  # the answer ("" for no answer in SQuAD 2.0)
    start: int  # character offsets into the context (-1 for no answer)
    end: int
    score: float  # span score of the best non-null answer
    null_score: float | None = None  # SQuAD 2.0: no-answer score (higher: more likely unanswerable)
    nbest: list[dict[str, Any]] = field(default_factory=list)


def _softmax(scores: list[float]) -> list[float]:
    if not scores:
        return []
    m = max(scores)
    e = [math.exp(s - m) for s in scores]
    total = sum(e)
    return [x / total for x in e]


def _candidates(f: QAFeature, out: dict[str, np.ndarray], n_best: int, max_len: int, joint: bool
                ) -> Iterator[tuple[float, int, int]]:
    """(score, start token, end token) pairs allowed by the official filters."""
    n = len(f.input_ids)
    if joint:
        starts, ends = out["start_top_index"].astype(int), out["end_top_index"].astype(int)
        pairs = ((i, s, j, e) for i, s in enumerate(starts) for j, e in enumerate(ends[i]))
    else:
        starts = np.argsort(-out["start_logits"][:n], kind="stable")[:n_best]
        ends = np.argsort(-out["end_logits"][:n], kind="stable")[:n_best]
        pairs = ((i, s, j, e) for i, s in enumerate(starts) for j, e in enumerate(ends))
    for i, s, j, e in pairs:
        if s >= n or e >= n or s == 0 or f.offsets[s] is None or f.offsets[e] is None:
            continue
        if not f.max_context[s] or e < s or e - s + 1 > max_len:
            continue
        if joint:
            yield float(out["start_top_log_probs"][i] + out["end_top_log_probs"][i][j]), int(s), int(e)
        else:
            yield float(out["start_logits"][s] + out["end_logits"][e]), int(s), int(e)


def decode(examples: list[QAExample], features: list[QAFeature], outputs: list[dict[str, np.ndarray]],
           version: int = 1, joint: bool = True, n_best: int = 20, max_answer_length: int = 30,
           na_threshold: float | None = None) -> dict[str, Prediction]:
    """Best answer per question from per-window outputs (google-research/electra ``write_predictions``)."""
    by_example: dict[int, list[int]] = {}
    for fi, f in enumerate(features):
        by_example.setdefault(f.example_index, []).append(fi)
    preds = {}
    for ei, ex in enumerate(examples):
        prelim, null = [], math.inf
        for fi in by_example.get(ei, []):
            f, out = features[fi], outputs[fi]
            if version == 2:
                if "answerable_logit" in out:
                    null = min(null, float(out["answerable_logit"]))
                elif "end_logits" in out:
                    null = min(null, float(out["start_logits"][0] + out["end_logits"][0]))
                else:
                    raise ElectraError("SQuAD 2.0 decoding needs the answerability classifier with the joint "
                                       "head")
            prelim.extend((score, fi, s, e) for score, s, e in _candidates(f, out, n_best, max_answer_length,
                                                                            joint))
        prelim.sort(key=lambda x: -x[0])
        nbest, seen = [], set()
        for score, fi, s, e in prelim:
            if len(nbest) >= n_best:
                break
            f = features[fi]
            c0, c1 = f.offsets[s][0], f.offsets[e][1]
            text = ex.context[c0:c1]
            if text in seen:
                continue
            seen.add(text)
            nbest.append({"text": text, "start": c0, "end": c1, "score": score})
        if not nbest:  # no valid span at all (official: a nonce "empty" answer)
            nbest.append({"text": "", "start": -1, "end": -1, "score": -math.inf})
        for entry, p in zip(nbest, _softmax([x["score"] for x in nbest if x["score"] > -math.inf])):
            entry["probability"] = p
        best = nbest[0]
        null_score = None
        if version == 2:  # official: the classifier's logit, else null span score minus the best span's
            fis = by_example.get(ei, [])
            null_score = null if fis and "answerable_logit" in outputs[fis[0]] else null - best["score"]
        text, c0, c1 = best["text"], best["start"], best["end"]
        if version == 2 and na_threshold is not None and null_score is not None and null_score > na_threshold:
            text, c0, c1 = "", -1, -1
        preds[ex.qid] = Prediction(text, c0, c1, best["score"], null_score, nbest)
    return preds


# ---- running a model ------------------------------------------------------------------------------------
def model_outputs(model: TaskModel, features: list[QAFeature], batch_size: int = 32,
                  device: str | torch.device | None = None) -> list[dict[str, np.ndarray]]:
    """Per-window head outputs (numpy), in feature order."""
    outs: list[dict[str, np.ndarray] | None] = [None] * len(features)
    keep = ("start_logits", "end_logits", "start_top_log_probs", "start_top_index", "end_top_log_probs",
            "end_top_index", "answerable_logit")
    for batch, out in run_inference(model, batches(features, batch_size), device):
        for row, fi in enumerate(batch["feature_index"].tolist()):
            outs[fi] = {k: out[k][row].numpy() for k in keep if k in out}
    return outs  # type: ignore[return-value]


def predict_examples(model: TaskModel, tokenizer: Any, examples: list[QAExample], batch_size: int = 32,
                     na_threshold: float | None = None) -> dict[str, Prediction]:
    features = make_features(examples, tokenizer, WindowConfig(**model.spec["window"]))
    return predict_features(model, examples, features, batch_size, na_threshold)


def predict_features(model: TaskModel, examples: list[QAExample], features: list[QAFeature], batch_size: int = 32,
                     na_threshold: float | None = None) -> dict[str, Prediction]:
    """Answers from windows already made (``make_features``); ``model`` is a :class:`TaskModel` or any module
    with its face (``electra.inference.as_task_model``)."""
    spec = model.spec
    task = get_task(spec["task"])
    outputs = model_outputs(model, features, batch_size)
    thresh = spec.get("na_threshold", NA_THRESHOLD) if na_threshold is None else na_threshold
    return decode(examples, features, outputs, task.version, model.head.joint, spec.get("n_best", 20),
                  spec.get("max_answer_length", 30), thresh if task.version == 2 else None)


def score_predictions(task: QATask, data: dict, preds: dict[str, Prediction]) -> tuple[dict[str, float], float]:
    """Official metrics of predictions; for SQuAD 2.0 also the best no-answer threshold (by F1)."""
    texts = {qid: p.text for qid, p in preds.items()}
    if task.name == "cmrc2018":
        return {k: float(v) for k, v in cmrc2018(data["data"], texts).items()}, math.nan
    if task.version == 1:
        return squad_v1(data["data"], texts), math.nan
    best_text = {qid: p.nbest[0]["text"] for qid, p in preds.items()}
    na = {qid: float(p.null_score) for qid, p in preds.items()}
    tuned = squad_v2(data["data"], best_text, na)
    thresh = tuned["best_f1_thresh"]
    out = squad_v2(data["data"], best_text, na, na_prob_thresh=thresh)
    out.update({k: tuned[k] for k in ("best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh")})
    return {k: float(v) for k, v in out.items()}, thresh


# ---- data splits ----------------------------------------------------------------------------------------
def split_articles(data: dict, dev_fraction: float, seed: int = 0) -> tuple[dict, dict]:
    """Split a SQuAD-format object by article (shuffled with ``seed``) into train and dev parts."""
    articles = list(data["data"])
    if len(articles) < 2:
        raise ElectraError("cannot split a data set with fewer than 2 articles into train and dev; pass --dev")
    order = list(range(len(articles)))
    random.Random(seed).shuffle(order)
    n_dev = min(len(articles) - 1, max(1, round(dev_fraction * len(articles))))
    dev_idx = set(order[:n_dev])
    train = {**data, "data": [a for i, a in enumerate(articles) if i not in dev_idx]}
    dev = {**data, "data": [a for i, a in enumerate(articles) if i in dev_idx]}
    return train, dev


def limit_questions(data: dict, n: int | None) -> dict:
    """The first ``n`` questions of a SQuAD-format object (whole structure kept), for quick runs."""
    if n is None:
        return data
    out, left = [], n
    for article in data["data"]:
        paras = []
        for p in article["paragraphs"]:
            if left <= 0:
                break
            qas = p["qas"][:left]
            left -= len(qas)
            paras.append({**p, "qas": qas})
        if paras:
            out.append({**article, "paragraphs": paras})
        if left <= 0:
            break
    return {**data, "data": out}


# ---- the task -------------------------------------------------------------------------------------------
@dataclass
class QAParams:
    """What ``electra finetune --task squad1|squad2|cmrc2018`` needs besides :class:`FinetuneConfig`."""

    task: str
    model: str  # pre-trained checkpoint
    out: str  # run directory
    train: str  # SQuAD-format JSON
    dev: str | None = None  # None: split ``train`` by article with ``dev_fraction``
    dev_fraction: float = 0.1
    max_seq_length: int | None = None  # None: the task's (384 SQuAD, 512 CMRC)
    doc_stride: int = 128
    max_query_length: int = 64
    n_best: int = 20
    max_answer_length: int = 30
    joint: bool = True  # False: independent start/end head
    answerable: bool | None = None  # None: on for SQuAD 2.0
    beam_size: int = 20
    max_train_questions: int | None = None
    max_dev_questions: int | None = None
    eval_batch_size: int = 64
    random_init: bool = False
    tokenizer: str | None = None  # default: the checkpoint's tokenizer/

    KIND: ClassVar[str] = "QA option"
    RULES: ClassVar[dict[str, Rule]] = {
        "task": one_of(*TASKS), "dev_fraction": interval(0, 1, "()"), "max_seq_length": at_least(8).optional(),
        "doc_stride": at_least(1), "max_query_length": at_least(1), "n_best": at_least(1),
        "max_answer_length": at_least(1), "beam_size": at_least(1), "max_train_questions": at_least(1).optional(),
        "max_dev_questions": at_least(1).optional(), "eval_batch_size": at_least(1),
        "train": Rule("an existing file", lambda v: Path(v).is_file()),
        "dev": Rule("an existing file (or none: split the training file)", lambda v: v is None or Path(v).is_file()),
    }

    def __post_init__(self) -> None:
        validate(self)


def _read(path: str | Path) -> dict:
    data = load_json(path, "data set")
    parse_squad(data, path)  # validate early, with path-named errors
    return data


def finetune_qa(params: QAParams, config: FinetuneConfig | None = None, resume: bool = False) -> dict[str, Any]:
    """Fine-tune a pre-trained checkpoint on a QA task; the best dev model goes to ``out/best``; ``resume``
    continues the run in ``out`` from its last checkpoint."""
    task = get_task(params.task)
    encoder = load_encoder(params.model, params.random_init)
    if config is None:
        config = FinetuneConfig(**official_hparams(encoder.config), epochs=2.0, batch_size=32)
    tok_dir = params.tokenizer or run_tokenizer_dir(params.model)
    if tok_dir is None:
        raise ElectraError(f"{params.model}: checkpoint has no tokenizer/ folder (give --tokenizer)")
    tokenizer = load_tokenizer(tok_dir)
    check_tokenizer_fits(tokenizer, encoder.config.vocab_size, tok_dir, params.model)
    train_data = _read(params.train)
    if params.dev is not None:
        dev_data = _read(params.dev)
    else:
        train_data, dev_data = split_articles(train_data, params.dev_fraction, config.seed)
    train_data = limit_questions(train_data, params.max_train_questions)
    dev_data = limit_questions(dev_data, params.max_dev_questions)
    train_ex, report = parse_squad(train_data, params.train)
    report.warn(params.train)
    dev_ex, dev_report = parse_squad(dev_data, params.dev or params.train)
    if params.dev is not None:
        dev_report.warn(params.dev)
    max_len = params.max_seq_length or min(task.max_seq_length, encoder.config.max_position_embeddings)
    if max_len > encoder.config.max_position_embeddings:
        raise ElectraError(f"--max-seq-length {max_len} exceeds the model's {encoder.config.max_position_embeddings}"
                           " positions")
    window = WindowConfig(max_len, params.doc_stride, params.max_query_length)
    train_feats = make_features(train_ex, tokenizer, window, training=True)
    if not train_feats:
        raise ElectraError(f"{params.train}: no usable training question (all empty or without located answers)")
    answerable = task.version == 2 if params.answerable is None else params.answerable
    if task.version == 2 and params.joint and not answerable:
        raise ElectraError("squad2 with the joint head needs the answerability classifier (drop --no-answerable "
                           "or use --independent)")
    torch.manual_seed(config.seed)  # the new head's weights: reproducible whatever ran before in this process
    head = SpanQAHead(encoder.config, joint=params.joint, answerable=answerable, beam_size=params.beam_size)
    spec = {"task": task.name, "window": asdict(window), "n_best": params.n_best,
            "max_answer_length": params.max_answer_length, "lowercase": True}
    if task.version == 2:
        spec["na_threshold"] = NA_THRESHOLD
    model = TaskModel(encoder, head, spec)
    dev_feats = make_features(dev_ex, tokenizer, window)
    steps_per_epoch = math.ceil(len(train_feats) / config.batch_size)

    def evaluate(m: TaskModel) -> dict[str, float]:
        outputs = model_outputs(m, dev_feats, params.eval_batch_size)
        preds = decode(dev_ex, dev_feats, outputs, task.version, params.joint, params.n_best,
                       params.max_answer_length)
        metrics, thresh = score_predictions(task, dev_data, preds)
        if task.version == 2:
            m.spec["na_threshold"] = thresh  # saved with the model when this evaluation is the best
        return metrics

    print(f"{task.name}: {len(train_ex)} train questions -> {len(train_feats)} windows, "
          f"{len(dev_ex)} dev questions -> {len(dev_feats)} windows, max length {max_len}", file=sys.stderr)
    results = finetune(model, lambda epoch: batches(train_feats, config.batch_size, True, config.seed + epoch),
                       steps_per_epoch, evaluate, task.main_metric, params.out, config, tokenizer=tok_dir,
                       greater_is_better=True, resume=resume)
    results["data"] = {"train_questions": len(train_ex), "dev_questions": len(dev_ex),
                       "train_windows": len(train_feats), "dev_windows": len(dev_feats)}
    write_text_atomic(Path(params.out) / "results.json", json.dumps(results, indent=2) + "\n", "results")
    return results


def load_qa_run(run: str | Path) -> tuple[TaskModel, Any]:
    return load_run_with_tokenizer(run, TASKS, "question-answering")


def predict_file(run: str | Path, data: str | Path, out: str | Path | None = None, batch_size: int = 32,
                 na_threshold: float | None = None, load: RunLoader | None = None) -> dict[str, Prediction]:
    """Predict every question of a SQuAD-format file; ``out`` gets predictions.json (official format),
    nbest.json and, for SQuAD 2.0, na_probs.json (the no-answer scores the official script takes).
    ``load(run)`` gives the model and tokenizer another way than PyTorch fp32 (``--backend onnx``: see
    :func:`electra.inference.load_task_runner`)."""
    model, tokenizer = load(run) if load is not None else load_qa_run(run)
    preds = predict_examples(model, tokenizer, read_squad(data), batch_size, na_threshold)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "predictions.json").write_text(json.dumps({q: p.text for q, p in preds.items()},
                                                         ensure_ascii=False, indent=1) + "\n")
        (out / "nbest.json").write_text(json.dumps({q: p.nbest for q, p in preds.items()}, ensure_ascii=False,
                                                   indent=1) + "\n")
        if get_task(model.spec["task"]).version == 2:
            (out / "na_probs.json").write_text(json.dumps({q: p.null_score for q, p in preds.items()},
                                                          indent=1) + "\n")
    return preds


def evaluate_file(run: str | Path, data: str | Path, batch_size: int = 32) -> dict[str, float]:
    """Official metrics of a fine-tuned run on a SQuAD-format file (SQuAD 2.0: at the stored threshold,
    plus best_f1/best_exact over thresholds)."""
    model, tokenizer = load_qa_run(run)
    task = get_task(model.spec["task"])
    dataset = load_json(data, "data set")
    preds = predict_examples(model, tokenizer, parse_squad(dataset, data)[0], batch_size)
    texts = {q: p.text for q, p in preds.items()}
    if task.name == "cmrc2018":
        return {k: float(v) for k, v in cmrc2018(dataset["data"], texts).items()}
    if task.version == 1:
        return squad_v1(dataset["data"], texts)
    best_text = {q: p.nbest[0]["text"] for q, p in preds.items()}
    na = {q: float(p.null_score) for q, p in preds.items()}
    out = squad_v2(dataset["data"], best_text, na, na_prob_thresh=model.spec.get("na_threshold", NA_THRESHOLD))
    return {k: float(v) for k, v in out.items()}


# ---- answering one question -----------------------------------------------------------------------------
@dataclass
class CandidateScore:
    text: str
    score: float  # best span score over the candidate's occurrences in the context (-inf: not found)
    start: int = -1
    end: int = -1


def answer(run: str | Path, context: str, question: str, candidates: list[str] | None = None,
           model_and_tokenizer: tuple[TaskModel, Any] | None = None) -> Prediction | list[CandidateScore]:
    """The model's answer to ``question`` about ``context``; with ``candidates``, them ranked by span score."""
    if not context.strip():
        raise ElectraError("answer: the context is empty")
    model, tokenizer = model_and_tokenizer or load_qa_run(run)
    ex = QAExample("q", question, context)
    if candidates is None:
        return predict_examples(model, tokenizer, [ex])["q"]
    window = WindowConfig(**model.spec["window"])
    features = make_features([ex], tokenizer, window)
    batch = collate([feature_dict(f, i, False) for i, f in enumerate(features)], features[0].pad_id)
    model.eval()
    with torch.no_grad():
        hidden = model.encoder(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    results = []
    for cand in candidates:
        spans, lower, i = [], context.lower(), context.find(cand)
        while i != -1 and cand:
            spans.append((i, i + len(cand)))
            i = context.find(cand, i + 1)
        if not spans and cand:  # fall back to case-insensitive matching
            i = lower.find(cand.lower())
            while i != -1:
                spans.append((i, i + len(cand)))
                i = lower.find(cand.lower(), i + 1)
        rows, starts, ends, chars = [], [], [], []
        for c0, c1 in spans:
            for fi, f in enumerate(features):
                toks = [t for t, o in enumerate(f.offsets) if o is not None and o[1] > c0 and o[0] < c1]
                if toks and f.offsets[toks[0]][0] <= c0 and f.offsets[toks[-1]][1] >= c1:
                    rows.append(fi)
                    starts.append(toks[0])
                    ends.append(toks[-1])
                    chars.append((c0, c1))
        if not rows:
            results.append(CandidateScore(cand, -math.inf))
            continue
        scores = model.head.span_log_probs(hidden, batch, torch.tensor(rows), torch.tensor(starts),
                                           torch.tensor(ends))
        k = int(scores.argmax())
        results.append(CandidateScore(cand, float(scores[k]), *chars[k]))
    return sorted(results, key=lambda c: -c.score)


# ---- command-line entry points (``electra finetune/evaluate/predict --task squad1|squad2|cmrc2018``) --------


def resolve_qa_data(data: str | Path) -> tuple[str, str | None]:
    """(train file, dev file or None) from a JSON file or a directory with ``*train*.json``/``*dev*.json``."""
    p = Path(data)
    if p.is_file():
        return str(p), None
    if not p.is_dir():
        raise ElectraError(f"{p}: no such file or directory")
    trains, devs = sorted(p.glob("*train*.json")), sorted(p.glob("*dev*.json"))
    if trains:
        return str(trains[0]), str(devs[0]) if devs else None
    files = sorted(p.glob("*.json"))
    if len(files) == 1:
        return str(files[0]), None
    raise ElectraError(f"{p}: expected a *train*.json (and *dev*.json), or a single .json file to split")


def write_predictions(run: str | Path, data: str | Path, out: str | Path, load: RunLoader | None = None) -> int:
    """``out`` ending in ``.json`` gets the official predictions (question id -> answer), with ``.nbest.json``
    and, when the run predicts no-answer scores, ``.na_probs.json`` beside it; any other ``out`` is a directory
    (:func:`predict_file`). Returns the number of questions."""
    out = Path(out)
    preds = predict_file(run, data, out if out.suffix != ".json" else None, load=load)
    if out.suffix == ".json":
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({q: p.text for q, p in preds.items()}, ensure_ascii=False, indent=1) + "\n")
        out.with_suffix(".nbest.json").write_text(json.dumps({q: p.nbest for q, p in preds.items()},
                                                             ensure_ascii=False, indent=1) + "\n")
        if any(p.null_score is not None for p in preds.values()):
            out.with_suffix(".na_probs.json").write_text(json.dumps({q: p.null_score for q, p in preds.items()},
                                                                    indent=1) + "\n")
    return len(preds)
