"""SQuAD v1.1 / v2.0 and CMRC 2018 scoring, ported line for line from the official evaluation scripts.

* SQuAD v1.1: ``evaluate-v1.1.py`` (EM and F1 over whitespace tokens after lower-casing, removing
  punctuation and the articles a/an/the; max over gold answers; unanswered questions score 0).
* SQuAD v2.0: ``evaluate-v2.0.py`` (the same normalisation; unanswerable questions have the empty string
  as their only gold answer; HasAns/NoAns breakdown; with no-answer probabilities, the thresholded scores and
  ``best_exact``/``best_f1`` with their thresholds).
* CMRC 2018: ``cmrc2018_evaluate.py`` (Chinese characters and CMRC punctuation are single segments, other
  runs are word-tokenised as ``nltk.word_tokenize``; F1 from the longest common substring of segments, EM on
  the text with CMRC punctuation removed; reports AVERAGE, F1, EM, TOTAL, SKIP).
"""

from __future__ import annotations

import collections
import re
import string
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from electra.config import Rule, check_values
from electra.data.squad import load_json, parse_squad
from electra.errors import ElectraError
from electra.word_tokenize import word_tokenize

# ---- SQuAD (identical normalisation in v1.1 and v2.0) ---------------------------------------------------
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace (official order)."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = re.sub(_ARTICLES, " ", s)
    return " ".join(s.split())


def exact_match_v1(prediction: str, ground_truth: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(ground_truth)


def f1_v1(prediction: str, ground_truth: str) -> float:
    """v1.1 ``f1_score``: 0 when nothing is shared (including when either side normalises to empty)."""
    pred = normalize_answer(prediction).split()
    gold = normalize_answer(ground_truth).split()
    num_same = sum((collections.Counter(pred) & collections.Counter(gold)).values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred)
    recall = 1.0 * num_same / len(gold)
    return (2 * precision * recall) / (precision + recall)


def _tokens_v2(s: str) -> list[str]:
    return normalize_answer(s).split() if s else []


def exact_v2(a_gold: str, a_pred: str) -> int:
    return int(normalize_answer(a_gold) == normalize_answer(a_pred))


def f1_v2(a_gold: str, a_pred: str) -> float:
    """v2.0 ``compute_f1``: if either side is empty, 1 when both are, else 0."""
    gold, pred = _tokens_v2(a_gold), _tokens_v2(a_pred)
    num_same = sum((collections.Counter(gold) & collections.Counter(pred)).values())
    if len(gold) == 0 or len(pred) == 0:
        return int(gold == pred)
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred)
    recall = 1.0 * num_same / len(gold)
    return (2 * precision * recall) / (precision + recall)


def _questions(dataset: list[dict]) -> Iterable[dict]:
    for article in dataset:
        for paragraph in article["paragraphs"]:
            yield from paragraph["qas"]


def _warn(msg: str) -> None:
    print(msg, file=sys.stderr)


def squad_v1(dataset: list[dict], predictions: Mapping[str, str]) -> dict[str, float]:
    """``evaluate-v1.1.py``'s ``evaluate``: {'exact_match', 'f1'} in percent (missing predictions score 0)."""
    f1 = exact_match = total = 0
    for qa in _questions(dataset):
        total += 1
        if qa["id"] not in predictions:
            _warn(f"Unanswered question {qa['id']} will receive score 0.")
            continue
        golds = [a["text"] for a in qa.get("answers", [])]
        if not golds:
            raise ElectraError(f"question {qa['id']!r} has no gold answer (a SQuAD 2.0 file? use squad2)")
        pred = predictions[qa["id"]]
        exact_match += max(exact_match_v1(pred, g) for g in golds)
        f1 += max(f1_v1(pred, g) for g in golds)
    return {"exact_match": 100.0 * exact_match / total, "f1": 100.0 * f1 / total}


def _raw_scores_v2(dataset: list[dict], preds: Mapping[str, str]) -> tuple[dict, dict]:
    exact, f1 = {}, {}
    for qa in _questions(dataset):
        qid = qa["id"]
        golds = [a["text"] for a in qa.get("answers", []) if normalize_answer(a["text"])] or [""]
        if qid not in preds:
            _warn(f"Missing prediction for {qid}")
            continue
        exact[qid] = max(exact_v2(a, preds[qid]) for a in golds)
        f1[qid] = max(f1_v2(a, preds[qid]) for a in golds)
    return exact, f1


def _apply_threshold(scores: dict, na_probs: Mapping[str, float], has_ans: dict, thresh: float) -> dict:
    return {qid: (float(not has_ans[qid]) if na_probs[qid] > thresh else s) for qid, s in scores.items()}


def _eval_dict(exact: dict, f1: dict, qids: list[str] | None = None) -> dict[str, float]:
    qids = qids if qids else list(exact)
    total = len(qids)
    return {"exact": 100.0 * sum(exact[k] for k in qids) / total,
            "f1": 100.0 * sum(f1[k] for k in qids) / total, "total": total}


def find_best_thresh(preds: Mapping[str, str], scores: dict, na_probs: Mapping[str, float],
                     has_ans: dict) -> tuple[float, float]:
    """The official sweep over no-answer probabilities: (best score in percent, its threshold)."""
    cur = best = sum(1 for k in has_ans if not has_ans[k])
    best_thresh = 0.0
    for qid in sorted(na_probs, key=lambda k: na_probs[k]):
        if qid not in scores:
            continue
        if has_ans[qid]:
            diff = scores[qid]
        else:
            diff = -1 if preds[qid] else 0
        cur += diff
        if cur > best:
            best = cur
            best_thresh = na_probs[qid]
    return 100.0 * best / len(scores), best_thresh


def squad_v2(dataset: list[dict], preds: Mapping[str, str], na_probs: Mapping[str, float] | None = None,
             na_prob_thresh: float = 1.0) -> dict[str, float]:
    """``evaluate-v2.0.py``'s ``main``: exact, f1, total, HasAns_*, NoAns_*, and best_* with ``na_probs``.

    Questions without a prediction are left out (the official script prints "Missing prediction" and
    leaves them out of ``total``); the breakdowns count only scored questions.
    """
    with_probs = na_probs is not None
    na_probs = na_probs if with_probs else {k: 0.0 for k in preds}
    has_ans = {qa["id"]: bool(qa.get("answers")) for qa in _questions(dataset)}
    exact_raw, f1_raw = _raw_scores_v2(dataset, preds)
    if not exact_raw:
        raise ElectraError("predictions: no question of the data set has a prediction")
    missing_na = [q for q in exact_raw if q not in na_probs]
    if missing_na:
        raise ElectraError(f"no-answer probabilities: missing question id {missing_na[0]!r} "
                           f"({len(missing_na)} in all)")
    exact = _apply_threshold(exact_raw, na_probs, has_ans, na_prob_thresh)
    f1 = _apply_threshold(f1_raw, na_probs, has_ans, na_prob_thresh)
    out = _eval_dict(exact, f1)
    for prefix, flag in (("HasAns", True), ("NoAns", False)):
        qids = [k for k, v in has_ans.items() if v is flag and k in exact]
        if qids:
            out.update({f"{prefix}_{k}": v for k, v in _eval_dict(exact, f1, qids).items()})
    if with_probs:
        scored = {k: v for k, v in na_probs.items() if k in has_ans}
        out["best_exact"], out["best_exact_thresh"] = find_best_thresh(preds, exact_raw, scored, has_ans)
        out["best_f1"], out["best_f1_thresh"] = find_best_thresh(preds, f1_raw, scored, has_ans)
    return out


# ---- CMRC 2018 ------------------------------------------------------------------------------------------
CMRC_PUNCT = ["-", ":", "_", "*", "^", "/", "\\", "~", "`", "+", "=",
              "，", "。", "：", "？", "！", "“", "”", "；", "’", "《", "》", "……", "·", "、",
              "「", "」", "（", "）", "－", "～", "『", "』"]
_CJK = re.compile(r"[\u4e00-\u9fa5]")


def _word_tokenize(text: str) -> list[str]:
    """``nltk.word_tokenize`` when nltk and its punkt data are installed, else our port of it."""
    try:
        import nltk

        return nltk.word_tokenize(text)
    except (ImportError, LookupError):

        return word_tokenize(text)


def mixed_segmentation(in_str: str, rm_punc: bool = False) -> list[str]:
    """CMRC segmentation: each Chinese character / CMRC punctuation mark alone, other runs word-tokenised."""
    in_str = str(in_str).lower().strip()
    segs: list[str] = []
    temp = ""
    for char in in_str:
        if rm_punc and char in CMRC_PUNCT:
            continue
        if _CJK.search(char) or char in CMRC_PUNCT:
            if temp != "":
                segs.extend(_word_tokenize(temp))
                temp = ""
            segs.append(char)
        else:
            temp += char
    if temp != "":
        segs.extend(_word_tokenize(temp))
    return segs


def remove_punctuation(in_str: str) -> str:
    in_str = str(in_str).lower().strip()
    return "".join(c for c in in_str if c not in CMRC_PUNCT)


def find_lcs(s1: list[str], s2: list[str]) -> tuple[list[str], int]:
    """Longest common contiguous run of segments (the first maximal one, as the official loop)."""
    m = [[0] * (len(s2) + 1) for _ in range(len(s1) + 1)]
    mmax = p = 0
    for i in range(len(s1)):
        for j in range(len(s2)):
            if s1[i] == s2[j]:
                m[i + 1][j + 1] = m[i][j] + 1
                if m[i + 1][j + 1] > mmax:
                    mmax = m[i + 1][j + 1]
                    p = i + 1
    return s1[p - mmax:p], mmax


def cmrc_f1(answers: list[str], prediction: str) -> float:
    scores = []
    pred_segs = mixed_segmentation(prediction, rm_punc=True)
    for ans in answers:
        ans_segs = mixed_segmentation(ans, rm_punc=True)
        _, lcs_len = find_lcs(ans_segs, pred_segs)
        if lcs_len == 0:
            scores.append(0)
            continue
        precision = 1.0 * lcs_len / len(pred_segs)
        recall = 1.0 * lcs_len / len(ans_segs)
        scores.append((2 * precision * recall) / (precision + recall))
    return max(scores)


def cmrc_em(answers: list[str], prediction: str) -> int:
    pred = remove_punctuation(prediction)
    return int(any(remove_punctuation(a) == pred for a in answers))


def cmrc2018(dataset: list[dict], predictions: Mapping[str, str]) -> dict[str, Any]:
    """``cmrc2018_evaluate.py``: AVERAGE, F1, EM (percent, unanswered questions count 0), TOTAL, SKIP."""
    f1 = em = total = skip = 0
    for qa in _questions(dataset):
        total += 1
        qid = str(qa["id"]).strip()
        answers = [a["text"] for a in qa.get("answers", [])]
        if not answers:
            raise ElectraError(f"question {qid!r} has no gold answer (CMRC 2018 questions all have one)")
        if qid not in predictions:
            _warn(f"Unanswered question: {qid}")
            skip += 1
            continue
        pred = str(predictions[qid])
        f1 += cmrc_f1(answers, pred)
        em += cmrc_em(answers, pred)
    f1_score, em_score = 100.0 * f1 / total, 100.0 * em / total
    return {"AVERAGE": (em_score + f1_score) * 0.5, "F1": f1_score, "EM": em_score, "TOTAL": total,
            "SKIP": skip}


# ---- files ----------------------------------------------------------------------------------------------
def _check_map(obj: Any, path: str | Path, what: str, value_type: type | tuple) -> dict:
    if not isinstance(obj, dict):
        raise ElectraError(f"{path}: {what} must be a JSON object mapping question id to "
                           f"{'answer text' if value_type is str else 'a number'}")
    for k, v in obj.items():
        if not isinstance(v, value_type) or isinstance(v, bool):
            raise ElectraError(f"{path}: {what} for question {k!r} is {type(v).__name__}, expected "
                               f"{'a string' if value_type is str else 'a number'}")
    return obj


TASKS = ("squad1", "squad2", "cmrc2018")


def score_files(task: str, data: str | Path, predictions: str | Path, na_probs: str | Path | None = None,
                na_prob_thresh: float = 1.0) -> dict[str, Any]:
    """Score an official-format predictions file (question id -> answer text) against a data set file."""
    if task not in TASKS:
        raise ElectraError(f"--task {task!r}: expected one of {', '.join(TASKS)}")
    check_values("score option", {"na_prob_thresh": na_prob_thresh},
                 {"na_prob_thresh": Rule("a finite number", lambda v: v == v and abs(v) != float("inf"))})

    dataset = load_json(data, "data set")
    if not parse_squad(dataset, data)[0]:  # checks the structure, with JSON-path-named errors
        raise ElectraError(f"{data}: the data set has no questions to score")
    preds = _check_map(load_json(predictions, "predictions"), predictions, "predictions", str)
    if task == "squad2":
        probs = None
        if na_probs is not None:
            probs = _check_map(load_json(na_probs, "no-answer probabilities"), na_probs,
                               "no-answer probabilities", (int, float))
        return squad_v2(dataset["data"], preds, probs, na_prob_thresh)
    if na_probs is not None:
        raise ElectraError(f"--na-probs is only meaningful for --task squad2, not {task}")
    if task == "squad1":
        return squad_v1(dataset["data"], preds)
    return cmrc2018(dataset["data"], preds)
