"""Our SQuAD v1.1/v2.0 and CMRC 2018 metrics equal the official evaluation scripts.

The reference functions below are faithful Python 3 copies of the official scripts' logic
(rajpurkar SQuAD ``evaluate-v1.1.py`` / ``evaluate-v2.0.py``, ymcui/cmrc2018 ``cmrc2018_evaluate.py``),
with nltk.word_tokenize replaced by the tokenizer it resolves to when nltk is absent.
"""

from __future__ import annotations

import collections
import json
import re
import string

import pytest

from electra.errors import ElectraError
from electra.metrics import squad as sm
from electra.word_tokenize import word_tokenize


# ---- reference: evaluate-v1.1.py ------------------------------------------------------------------------
def ref_normalize_answer(s):
    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def ref_f1_score(prediction, ground_truth):
    prediction_tokens = ref_normalize_answer(prediction).split()
    ground_truth_tokens = ref_normalize_answer(ground_truth).split()
    common = collections.Counter(prediction_tokens) & collections.Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def ref_exact_match_score(prediction, ground_truth):
    return ref_normalize_answer(prediction) == ref_normalize_answer(ground_truth)


def ref_metric_max_over_ground_truths(metric_fn, prediction, ground_truths):
    return max(metric_fn(prediction, gt) for gt in ground_truths)


def ref_evaluate_v1(dataset, predictions):
    f1 = exact_match = total = 0
    for article in dataset:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                total += 1
                if qa["id"] not in predictions:
                    continue
                ground_truths = [x["text"] for x in qa["answers"]]
                prediction = predictions[qa["id"]]
                exact_match += ref_metric_max_over_ground_truths(ref_exact_match_score, prediction,
                                                                 ground_truths)
                f1 += ref_metric_max_over_ground_truths(ref_f1_score, prediction, ground_truths)
    return {"exact_match": 100.0 * exact_match / total, "f1": 100.0 * f1 / total}


# ---- reference: evaluate-v2.0.py ------------------------------------------------------------------------
def ref_make_qid_to_has_ans(dataset):
    qid_to_has_ans = {}
    for article in dataset:
        for p in article["paragraphs"]:
            for qa in p["qas"]:
                qid_to_has_ans[qa["id"]] = bool(qa["answers"])
    return qid_to_has_ans


def ref_get_tokens(s):
    if not s:
        return []
    return ref_normalize_answer(s).split()


def ref_compute_exact(a_gold, a_pred):
    return int(ref_normalize_answer(a_gold) == ref_normalize_answer(a_pred))


def ref_compute_f1(a_gold, a_pred):
    gold_toks = ref_get_tokens(a_gold)
    pred_toks = ref_get_tokens(a_pred)
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        return int(gold_toks == pred_toks)
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred_toks)
    recall = 1.0 * num_same / len(gold_toks)
    return (2 * precision * recall) / (precision + recall)


def ref_get_raw_scores(dataset, preds):
    exact_scores = {}
    f1_scores = {}
    for article in dataset:
        for p in article["paragraphs"]:
            for qa in p["qas"]:
                qid = qa["id"]
                gold_answers = [a["text"] for a in qa["answers"] if ref_normalize_answer(a["text"])]
                if not gold_answers:
                    gold_answers = [""]
                if qid not in preds:
                    continue
                a_pred = preds[qid]
                exact_scores[qid] = max(ref_compute_exact(a, a_pred) for a in gold_answers)
                f1_scores[qid] = max(ref_compute_f1(a, a_pred) for a in gold_answers)
    return exact_scores, f1_scores


def ref_apply_no_ans_threshold(scores, na_probs, qid_to_has_ans, na_prob_thresh):
    new_scores = {}
    for qid, s in scores.items():
        pred_na = na_probs[qid] > na_prob_thresh
        if pred_na:
            new_scores[qid] = float(not qid_to_has_ans[qid])
        else:
            new_scores[qid] = s
    return new_scores


def ref_make_eval_dict(exact_scores, f1_scores, qid_list=None):
    if not qid_list:
        total = len(exact_scores)
        return collections.OrderedDict([
            ("exact", 100.0 * sum(exact_scores.values()) / total),
            ("f1", 100.0 * sum(f1_scores.values()) / total),
            ("total", total),
        ])
    total = len(qid_list)
    return collections.OrderedDict([
        ("exact", 100.0 * sum(exact_scores[k] for k in qid_list) / total),
        ("f1", 100.0 * sum(f1_scores[k] for k in qid_list) / total),
        ("total", total),
    ])


def ref_merge_eval(main_eval, new_eval, prefix):
    for k in new_eval:
        main_eval[f"{prefix}_{k}"] = new_eval[k]


def ref_find_best_thresh(preds, scores, na_probs, qid_to_has_ans):
    num_no_ans = sum(1 for k in qid_to_has_ans if not qid_to_has_ans[k])
    cur_score = num_no_ans
    best_score = cur_score
    best_thresh = 0.0
    qid_list = sorted(na_probs, key=lambda k: na_probs[k])
    for qid in qid_list:
        if qid not in scores:
            continue
        if qid_to_has_ans[qid]:
            diff = scores[qid]
        else:
            diff = -1 if preds[qid] else 0
        cur_score += diff
        if cur_score > best_score:
            best_score = cur_score
            best_thresh = na_probs[qid]
    return 100.0 * best_score / len(scores), best_thresh


def ref_main_v2(dataset, preds, na_probs=None, na_prob_thresh=1.0):
    has_file = na_probs is not None
    if not has_file:
        na_probs = {k: 0.0 for k in preds}
    qid_to_has_ans = ref_make_qid_to_has_ans(dataset)
    has_ans_qids = [k for k, v in qid_to_has_ans.items() if v]
    no_ans_qids = [k for k, v in qid_to_has_ans.items() if not v]
    exact_raw, f1_raw = ref_get_raw_scores(dataset, preds)
    exact_thresh = ref_apply_no_ans_threshold(exact_raw, na_probs, qid_to_has_ans, na_prob_thresh)
    f1_thresh = ref_apply_no_ans_threshold(f1_raw, na_probs, qid_to_has_ans, na_prob_thresh)
    out_eval = ref_make_eval_dict(exact_thresh, f1_thresh)
    if has_ans_qids:
        ref_merge_eval(out_eval, ref_make_eval_dict(exact_thresh, f1_thresh, qid_list=has_ans_qids), "HasAns")
    if no_ans_qids:
        ref_merge_eval(out_eval, ref_make_eval_dict(exact_thresh, f1_thresh, qid_list=no_ans_qids), "NoAns")
    if has_file:
        out_eval["best_exact"], out_eval["best_exact_thresh"] = ref_find_best_thresh(
            preds, exact_raw, na_probs, qid_to_has_ans)
        out_eval["best_f1"], out_eval["best_f1_thresh"] = ref_find_best_thresh(
            preds, f1_raw, na_probs, qid_to_has_ans)
    return dict(out_eval)


# ---- reference: cmrc2018_evaluate.py (v5 - special) -----------------------------------------------------
REF_SP_CHAR = ["-", ":", "_", "*", "^", "/", "\\", "~", "`", "+", "=",
               "，", "。", "：", "？", "！", "“", "”", "；", "’", "《", "》", "……", "·", "、",
               "「", "」", "（", "）", "－", "～", "『", "』"]


def ref_mixed_segmentation(in_str, rm_punc=False):
    in_str = str(in_str).lower().strip()
    segs_out = []
    temp_str = ""
    for char in in_str:
        if rm_punc and char in REF_SP_CHAR:
            continue
        if re.search(r"[\u4e00-\u9fa5]", char) or char in REF_SP_CHAR:
            if temp_str != "":
                segs_out.extend(word_tokenize(temp_str))
                temp_str = ""
            segs_out.append(char)
        else:
            temp_str += char
    if temp_str != "":
        segs_out.extend(word_tokenize(temp_str))
    return segs_out


def ref_remove_punctuation(in_str):
    in_str = str(in_str).lower().strip()
    return "".join(c for c in in_str if c not in REF_SP_CHAR)


def ref_find_lcs(s1, s2):
    m = [[0 for i in range(len(s2) + 1)] for j in range(len(s1) + 1)]
    mmax = 0
    p = 0
    for i in range(len(s1)):
        for j in range(len(s2)):
            if s1[i] == s2[j]:
                m[i + 1][j + 1] = m[i][j] + 1
                if m[i + 1][j + 1] > mmax:
                    mmax = m[i + 1][j + 1]
                    p = i + 1
    return s1[p - mmax:p], mmax


def ref_calc_f1_score(answers, prediction):
    f1_scores = []
    for ans in answers:
        ans_segs = ref_mixed_segmentation(ans, rm_punc=True)
        prediction_segs = ref_mixed_segmentation(prediction, rm_punc=True)
        lcs, lcs_len = ref_find_lcs(ans_segs, prediction_segs)
        if lcs_len == 0:
            f1_scores.append(0)
            continue
        precision = 1.0 * lcs_len / len(prediction_segs)
        recall = 1.0 * lcs_len / len(ans_segs)
        f1_scores.append((2 * precision * recall) / (precision + recall))
    return max(f1_scores)


def ref_calc_em_score(answers, prediction):
    em = 0
    for ans in answers:
        if ref_remove_punctuation(ans) == ref_remove_punctuation(prediction):
            em = 1
            break
    return em


def ref_evaluate_cmrc(ground_truth_file, prediction_file):
    f1 = em = total_count = skip_count = 0
    for instance in ground_truth_file["data"]:
        for para in instance["paragraphs"]:
            for qas in para["qas"]:
                total_count += 1
                query_id = qas["id"].strip()
                answers = [x["text"] for x in qas["answers"]]
                if query_id not in prediction_file:
                    skip_count += 1
                    continue
                prediction = str(prediction_file[query_id])
                f1 += ref_calc_f1_score(answers, prediction)
                em += ref_calc_em_score(answers, prediction)
    return 100.0 * f1 / total_count, 100.0 * em / total_count, total_count, skip_count


# ---- fixtures -------------------------------------------------------------------------------------------
def _qa(qid, *answers, impossible=False):
    return {"id": qid, "question": "q?", "answers": [{"text": a, "answer_start": 0} for a in answers],
            "is_impossible": impossible}


SQUAD = [{"title": "t", "paragraphs": [{"context": "c", "qas": [
    _qa("punct", "Denver Broncos!"),
    _qa("articles", "the Eiffel Tower"),
    _qa("multi", "1732", "February 22, 1732", "in 1732"),
    _qa("partial", "Steve Smith's car"),
    _qa("wrong", "Paris"),
    _qa("only_articles", "the"),
    _qa("case_ws", "  New   YORK  City "),
    _qa("noans1", impossible=True),
    _qa("noans2", impossible=True),
    _qa("noans3", impossible=True),
]}]}]
PREDS = {"punct": "denver broncos", "articles": "Eiffel Tower.", "multi": "February 22",
         "partial": "steve smith",
         "wrong": "London", "only_articles": "a", "case_ws": "new york city", "noans1": "",
         "noans2": "something", "noans3": "the"}
NA_PROBS = {"punct": 0.1, "articles": 0.3, "multi": 0.45, "partial": 0.5, "wrong": 0.8, "only_articles": 0.2,
            "case_ws": 0.05, "noans1": 0.9, "noans2": 0.7, "noans3": 0.35}


def test_normalize_answer_removes_case_punctuation_articles_and_spaces():
    assert sm.normalize_answer("  The  Denver, Broncos!  ") == "denver broncos"


def test_squad_v1_equals_official_script():
    data = [{"paragraphs": [{"qas": [q for q in SQUAD[0]["paragraphs"][0]["qas"] if q["answers"]]}]}]
    preds = {k: v for k, v in PREDS.items() if k != "wrong"}  # one unanswered question scores 0
    assert sm.squad_v1(data, preds) == ref_evaluate_v1(data, preds)


def test_squad_v1_rejects_question_without_gold_answer():
    with pytest.raises(ElectraError, match="'noans1' has no gold answer"):
        sm.squad_v1(SQUAD, PREDS)


def test_squad_v1_hand_computed_partial_f1():
    # "steve smith" vs "steve smiths car": 1 shared ("steve"), P = 1/2, R = 1/3 -> F1 = 2PR/(P+R) = 0.4
    assert sm.f1_v1("steve smith", "Steve Smith's car") == pytest.approx(0.4)


def test_squad_v2_without_na_probs_equals_official_script():
    assert sm.squad_v2(SQUAD, PREDS) == ref_main_v2(SQUAD, PREDS)


def test_squad_v2_with_na_probs_and_threshold_equals_official_script():
    for thresh in (1.0, 0.5, 0.0):
        assert sm.squad_v2(SQUAD, PREDS, NA_PROBS, thresh) == ref_main_v2(SQUAD, PREDS, NA_PROBS, thresh)


def test_squad_v2_reports_breakdown_and_best_threshold():
    out = sm.squad_v2(SQUAD, PREDS, NA_PROBS)
    assert out["HasAns_total"] == 7 and out["NoAns_total"] == 3
    assert {"best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh"} <= set(out)


def test_squad_v2_empty_prediction_on_unanswerable_is_exact():
    assert sm.exact_v2("", "") == 1 and sm.f1_v2("", "") == 1 and sm.f1_v2("", "x") == 0


CMRC = {"data": [{"paragraphs": [{"context": "c", "qas": [
    {"id": "c1", "question": "q", "answers": [{"text": "乔治·华盛顿"}, {"text": "华盛顿"}]},
    {"id": "c2", "question": "q", "answers": [{"text": "1732年2月22日"}]},
    {"id": "c3", "question": "q", "answers": [{"text": "《红楼梦》"}]},
    {"id": "c4", "question": "q", "answers": [{"text": "Apple公司的iPhone 7"}]},
    {"id": "c5", "question": "q", "answers": [{"text": "北京"}]},
    {"id": " c6 ", "question": "q", "answers": [{"text": "长江"}]},
    {"id": "c7", "question": "q", "answers": [{"text": "U.S. Army（美国陆军）"}]},
]}]}]}
CMRC_PREDS = {"c1": "华盛顿", "c2": "1732年2月", "c3": "红楼梦", "c4": "apple公司的iphone 7手机",
              "c5": "北京天安门", "c6": "长江", "c7": "u.s. army"}


def test_cmrc2018_equals_official_script():
    ours = sm.cmrc2018(CMRC["data"], CMRC_PREDS)
    f1, em, total, skip = ref_evaluate_cmrc(CMRC, CMRC_PREDS)
    assert (ours["F1"], ours["EM"], ours["TOTAL"], ours["SKIP"]) == (f1, em, total, skip)
    assert ours["AVERAGE"] == (f1 + em) * 0.5


def test_cmrc2018_counts_missing_prediction_as_skip():
    preds = {k: v for k, v in CMRC_PREDS.items() if k != "c5"}
    ours = sm.cmrc2018(CMRC["data"], preds)
    assert ours["SKIP"] == 1 and ours["TOTAL"] == 7
    assert ours["F1"] == ref_evaluate_cmrc(CMRC, preds)[0]


def test_cmrc2018_hand_computed_character_f1():
    # 北京 vs 北京天安门: LCS 2 chars, precision 2/5, recall 1 -> F1 = 2*(0.4*1)/1.4
    assert sm.cmrc_f1(["北京"], "北京天安门") == pytest.approx(0.8 / 1.4)
    assert sm.cmrc_em(["《红楼梦》"], "红楼梦") == 1


def test_mixed_segmentation_splits_chinese_chars_and_tokenises_english():
    assert sm.mixed_segmentation("Apple公司的iPhone 7。", rm_punc=True) == [
        "apple", "公", "司", "的", "iphone", "7"]


def test_word_tokenize_port_matches_nltk_doc_example():
    s = "Good muffins cost $3.88 (roughly 3,36 euros)\nin New York.  Please buy me\ntwo of them.\nThanks."
    assert word_tokenize(s) == ["Good", "muffins", "cost", "$", "3.88", "(", "roughly", "3,36", "euros", ")",
                                "in", "New", "York.", "Please", "buy", "me", "two", "of", "them.", "Thanks",
                                "."]


def test_score_files_reports_malformed_json_position(tmp_path):
    data = tmp_path / "data.json"
    data.write_text(json.dumps({"data": SQUAD}))
    preds = tmp_path / "preds.json"
    preds.write_text('{"punct": "x",\n "articles": }')
    with pytest.raises(ElectraError, match=r"preds\.json:2:\d+: malformed JSON"):
        sm.score_files("squad1", data, preds)


def test_score_files_rejects_non_string_prediction(tmp_path):
    data = tmp_path / "data.json"
    data.write_text(json.dumps({"data": SQUAD}))
    preds = tmp_path / "preds.json"
    preds.write_text(json.dumps({"punct": ["x"]}))
    with pytest.raises(ElectraError, match="question 'punct' is list, expected a string"):
        sm.score_files("squad1", data, preds)


def _perturbed_predictions(dataset, seed):
    """Gold answers, partial answers, wrong words, empty strings and missing ids, mixed at random."""
    import random

    rng = random.Random(seed)
    preds = {}
    for article in dataset:
        for p in article["paragraphs"]:
            for qa in p["qas"]:
                gold = qa["answers"][0]["text"] if qa["answers"] else ""
                r = rng.random()
                if r < 0.1:
                    continue
                preds[qa["id"].strip()] = (gold if r < 0.4 else gold[: len(gold) // 2] if r < 0.6 else "" if r < 0.7
                                           else p["context"][:12] + gold[-3:])
    return preds


def _shared(path):
    from qa_fixtures import DATA

    if not (DATA / path).exists():
        pytest.skip("../shared/data not present")
    return json.loads((DATA / path).read_text(encoding="utf-8"))


def test_cmrc2018_equals_official_script_on_the_trial_set():
    data = _shared("cmrc2018/cmrc2018_trial.json")
    preds = _perturbed_predictions(data["data"], 0)
    ours = sm.cmrc2018(data["data"], preds)
    f1, em, total, skip = ref_evaluate_cmrc(data, preds)
    assert (ours["F1"], ours["EM"], ours["TOTAL"], ours["SKIP"]) == (f1, em, total, skip)


def test_squad_v2_equals_official_script_on_the_shared_sample():
    import random

    data = _shared("squad/v2.0-sample.json")["data"]
    preds = _perturbed_predictions(data, 1)
    qids = [qa["id"] for a in data for p in a["paragraphs"] for qa in p["qas"]]
    preds = {q: preds.get(q, "") for q in qids}  # the official v2 script fails on missing ids in its breakdown
    rng = random.Random(2)
    na = {k: rng.random() for k in preds}
    assert sm.squad_v2(data, preds, na, 0.5) == ref_main_v2(data, preds, na, 0.5)


def test_squad_v1_equals_official_script_on_the_shared_dev_articles():
    data = _shared("squad/v1.1/dev-v1.1.json")["data"]
    preds = _perturbed_predictions(data, 3)
    assert sm.squad_v1(data, preds) == ref_evaluate_v1(data, preds)
