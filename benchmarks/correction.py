"""Detect-and-correct on held-out text with planted errors: detection AUC / P / R / F0.5, correction P / R / F0.5
(the right word restored), WER (CER for Chinese) to the original before and after; and HyPoradise 5-best lists
corrected with the other hypotheses' words.

    python benchmarks/correction.py --model RUN [--model RUN2 ...] [--sentences 200] [--rate 0.1]
        [--thresholds 0.5,0.7,0.8,0.9,0.95] [--min-generator-probs 0.6] [--skip 0] [--lang en|zh|both]
        [--nbest 200] [--plot docs/correction-threshold.png]

English: sentences of SQuAD v1.1 dev contexts (Wikipedia articles not in ``corpus/en``, so not pre-trained on by
our checkpoints), 8-40 words. Chinese: sentences of ``corpus/zh`` (the last part of the Wikipedia file), one
unit per character. Corruption (seeded): ``--rate`` of the corruptible units, at least one per sentence, each
replaced either (half) by a word of the same length class (1-3, 4-6, 7+ characters) drawn from the text's
unigram distribution, or (half) by one of the generator's top-10 at that word masked. Corruptible: words that
are one vocabulary token (lower-cased), so that a single-token proposal can restore them (a stated limit:
rare multi-piece words are never corrupted); Chinese: characters in the vocabulary.

Detection is scored per unit (its largest piece p(replaced)); correction per edit: an edit is right when the
replacement equals the original unit (case-insensitive). One ``Corrector`` run per threshold; the first
threshold equal to the library default (``DEFAULT_THRESHOLD``, 0.8) is the headline. ``--skip N`` starts at the
N-th sentence: the library's defaults were chosen on ``--skip 200 --sentences 300 --min-generator-probs
0.2,0.4,0.5,0.6,0.7`` (disjoint from the default ``--skip 0 --sentences 200``). Prints a table and a final JSON line.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections import Counter
from pathlib import Path

import numpy as np

import harness
from electra.generation import (
    DEFAULT_MIN_GENERATOR_PROB,
    DEFAULT_THRESHOLD,
    Corrector,
    generator_probs,
    load_pair,
    replaced_probs,
)
from electra.metrics import roc_auc
from electra.metrics.nbest import compositional_oracle_wer
from electra.metrics.speech import cer, wer, word_errors

SQUAD = harness.DATA / "squad" / "v1.1" / "dev-v1.1.json"
ZH = harness.DATA / "corpus" / "zh" / "zhwiki_00.txt"
HYPO = harness.DATA / "asr-nbest" / "hyporadise" / "test_ls_clean.json"


def english_sentences(n: int, skip: int = 0) -> list[str]:
    paras = [p["context"] for a in json.loads(SQUAD.read_text())["data"] for p in a["paragraphs"]]
    seen, out = set(), []
    for para in paras:
        for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", para):
            if 8 <= len(s.split()) <= 40 and s not in seen:
                seen.add(s)
                out.append(s)
    return out[skip:skip + n]


def chinese_sentences(n: int, skip: int = 0) -> list[str]:
    text = ZH.read_text(encoding="utf-8")
    text = text[len(text) // 2:]  # the second half of the file
    out = [s.strip() for s in re.split(r"(?<=[。！？])", text) if 10 <= len(s.strip()) <= 60]
    return out[skip:skip + n]


def units(text: str, lang: str) -> list[tuple[int, int]]:
    if lang == "zh":
        return [(i, i + 1) for i, c in enumerate(text) if not c.isspace()]
    return [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]


def length_class(w: str) -> int:
    return 0 if len(w) <= 3 else 1 if len(w) <= 6 else 2


def corrupt(pair, sentences: list[str], lang: str, rate: float, seed: int) -> list[dict]:
    """Each sentence with its planted errors: {"text", "original", "corrupted": {unit index: original}}."""
    rng = np.random.default_rng(seed)
    vocab = pair.tokenizer.get_vocab()

    def ok(w: str) -> bool:
        if lang == "zh":
            return "\u4e00" <= w <= "\u9fff" and w in vocab
        return w.isalpha() and w.lower() in vocab

    counts = Counter(t[s:e] for t in sentences for s, e in units(t, lang) if ok(t[s:e]))
    by_class: dict[int, tuple[list[str], np.ndarray]] = {}
    for c in range(3):
        ws = [w for w in counts if length_class(w) == c or lang == "zh"]
        f = np.array([counts[w] for w in ws], dtype=np.float64)
        by_class[c] = (ws, f / f.sum())
    out = []
    for text in sentences:
        us = units(text, lang)
        cand = [i for i, (s, e) in enumerate(us) if ok(text[s:e])]
        if not cand:
            continue
        k = max(1, round(rate * len(us)))
        picked = sorted(rng.choice(cand, size=min(k, len(cand)), replace=False).tolist())
        pieces = list(text)
        changes = {}
        for i in picked:
            s, e = us[i]
            orig = text[s:e]
            new = None
            if rng.random() < 0.5:  # the generator's own top-10 at this word masked
                pre = pair.tokenizer.encode(text[:s], add_special_tokens=False).ids
                post = pair.tokenizer.encode(text[e:], add_special_tokens=False).ids
                enc = [pair.cls_id] + pre + [pair.mask_id] + post + [pair.sep_id]
                p = generator_probs(pair, [enc], [[len(pre) + 1]])[0][0]
                top = [pair.tokenizer.id_to_token(int(t)) for t in np.argsort(-p)[:15]]
                top = [t for t in top if ok(t) and t.lower() != orig.lower()][:10]
                if top:
                    new = top[rng.integers(len(top))]
            if new is None:
                ws, f = by_class[length_class(orig)]
                for _ in range(20):
                    new = ws[rng.choice(len(ws), p=f)]
                    if new.lower() != orig.lower():
                        break
            if orig[:1].isupper():
                new = new[:1].upper() + new[1:]
            changes[i] = (orig, new)
        for i in sorted(changes, reverse=True):
            s, e = us[i]
            pieces[s:e] = list(changes[i][1])
        corrupted = "".join(pieces)
        # unit i of the corrupted text covers the replaced characters (unit boundaries are unchanged)
        out.append({"text": corrupted, "original": text, "corrupted": {i: o for i, (o, _) in changes.items()}})
    return out


def detection(pair, items: list[dict], lang: str) -> tuple[list[float], list[int]]:
    scores, labels = [], []
    for it in items:
        text = it["text"]
        enc = pair.tokenizer.encode(text)
        p = replaced_probs(pair, [enc.ids])[0]
        us = units(text, lang)
        best = np.zeros(len(us))
        for tok_i, (s, e) in enumerate(enc.offsets):
            if e <= s:
                continue
            for u, (us_, ue) in enumerate(us):
                if us_ <= s < ue:
                    best[u] = max(best[u], p[tok_i])
                    break
        scores += best.tolist()
        labels += [int(u in it["corrupted"]) for u in range(len(us))]
    return scores, labels


def f05(p: float, r: float) -> float:
    return 1.25 * p * r / (0.25 * p + r) if p + r else 0.0


def correction(pair, items: list[dict], lang: str, threshold: float, det: tuple[list[float], list[int]],
               min_generator_prob: float = DEFAULT_MIN_GENERATOR_PROB) -> dict:
    corrector = Corrector(pair, threshold=threshold, min_generator_prob=min_generator_prob)
    right = edits = 0
    outputs = []
    t0 = time.perf_counter()
    for it in items:
        res = corrector.correct(it["text"])
        outputs.append(res.text)
        us = units(it["text"], lang)
        for e in res.edits:
            edits += 1
            u = next((k for k, (s, end) in enumerate(us) if s <= e.start < end), None)
            orig = it["corrupted"].get(u)
            if orig is not None and us[u] == (e.start, e.end) and e.replacement.lower() == orig.lower():
                right += 1
    seconds = (time.perf_counter() - t0) / len(items)
    planted = sum(len(it["corrupted"]) for it in items)
    scores, labels = det
    flagged = np.array(scores) > threshold
    lab = np.array(labels, dtype=bool)
    dp = float((flagged & lab).sum() / max(flagged.sum(), 1))
    dr = float((flagged & lab).sum() / max(lab.sum(), 1))
    cp = right / edits if edits else 1.0
    cr = right / planted
    err = cer if lang == "zh" else wer
    refs = [it["original"] for it in items]
    return {"threshold": threshold, "min_generator_prob": min_generator_prob, "det_p": dp, "det_r": dr,
            "det_f05": f05(dp, dr), "edits": edits,
            "right": right, "corr_p": cp, "corr_r": cr, "corr_f05": f05(cp, cr),
            "err_before": err(refs, [it["text"] for it in items]), "err_after": err(refs, outputs),
            "s_per_sentence": seconds}


def nbest(pair, n: int, threshold: float) -> dict:
    data = json.loads(HYPO.read_text())[:n]
    corrector = Corrector(pair, threshold=threshold)
    refs = [d["output"] for d in data]
    first = [d["input"][0] for d in data]
    oracle = [min(d["input"], key=lambda h: word_errors(d["output"], h)[0]) for d in data]
    t0 = time.perf_counter()
    fixed = [corrector.correct(d["input"][0], d["input"][1:]).text for d in data]
    return {"utterances": len(data), "wer_1best": wer(refs, first), "wer_nbest_oracle": wer(refs, oracle),
            "wer_compositional_oracle": compositional_oracle_wer(refs, [d["input"] for d in data]),
            "wer_corrected": wer(refs, fixed), "changed": sum(a != b for a, b in zip(first, fixed)),
            "s_per_utterance": (time.perf_counter() - t0) / len(data)}


def plot(results: dict, path: str) -> None:
    """Correction precision (with the number of edits at each point) and recall against the threshold, one line
    per model, language and generator-probability floor; detection precision dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_p, ax_r) = plt.subplots(1, 2, figsize=(10, 4))
    for name, res in results.items():
        for lang in ("en", "zh"):
            rows = res.get(lang, {}).get("rows", [])
            if not any(r["edits"] for r in rows):
                continue  # a model that never edits has no curve
            def floor(r: dict) -> float:
                return r.get("min_generator_prob", DEFAULT_MIN_GENERATOR_PROB)

            floors = sorted({floor(r) for r in rows})
            for g in floors:
                sel = [r for r in rows if floor(r) == g]
                if not any(r["edits"] for r in sel):
                    continue
                ts = [r["threshold"] for r in sel]
                tag = f"{name} {lang}, gen p >= {g:g}" + (" (default)" if g == DEFAULT_MIN_GENERATOR_PROB else "")
                (line,) = ax_p.plot(ts, [r["corr_p"] if r["edits"] else float("nan") for r in sel], "o-", label=tag)
                for t, r in zip(ts, sel):
                    if r["edits"]:
                        ax_p.annotate(str(r["edits"]), (t, r["corr_p"]), textcoords="offset points", xytext=(0, 5),
                                      fontsize=7, color=line.get_color(), ha="center")
                ax_r.plot(ts, [r["corr_r"] for r in sel], "s--", color=line.get_color(), label=tag)
            first = [r for r in rows if floor(r) == floors[0]]  # detection does not depend on the floor
            ax_p.plot([r["threshold"] for r in first], [r["det_p"] for r in first], "^:", color="grey",
                      alpha=0.6, label=f"{name} {lang}: detection precision")
    for ax in (ax_p, ax_r):
        ax.axvline(DEFAULT_THRESHOLD, color="grey", lw=0.8, ls="--")  # the default
        ax.set_xlabel("threshold on p(replaced)")
    ax_p.axhline(0.9, color="grey", lw=0.8, ls=":")
    ax_p.set_ylim(0, 1.08)
    ax_p.set_ylabel("correction precision (labels: edits)")
    ax_r.set_ylabel("correction recall (errors restored / planted)")
    ax_p.set_title("precision: right word restored / edits")
    ax_r.set_title("recall")
    ax_p.legend(fontsize=6, loc="lower left")
    fig.suptitle("electra correct: planted errors in held-out text")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", action="append", default=[], help="NAME=PATH or PATH; repeat")
    ap.add_argument("--sentences", type=int, default=200)
    ap.add_argument("--rate", type=float, default=0.1)
    ap.add_argument("--thresholds", default="0.5,0.7,0.8,0.9,0.95")
    ap.add_argument("--min-generator-probs", default=str(DEFAULT_MIN_GENERATOR_PROB),
                    help="generator-probability floors to try (each with every threshold)")
    ap.add_argument("--skip", type=int, default=0, help="start at this sentence (tuning slices)")
    ap.add_argument("--lang", choices=["en", "zh", "both"], default="en")
    ap.add_argument("--nbest", type=int, default=0, help="HyPoradise LibriSpeech test-clean utterances (0: skip)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plot", help="PNG of correction precision/recall against the threshold")
    ap.add_argument("--out", help="also write the JSON here")
    ap.add_argument("--replot", help="only redraw --plot from a JSON written with --out")
    args = ap.parse_args()
    if args.replot:
        plot(json.loads(Path(args.replot).read_text()), args.plot)
        return
    thresholds = [float(x) for x in args.thresholds.split(",")]
    floors = [float(x) for x in args.min_generator_probs.split(",")]
    results = {}
    for spec in args.model:
        name, path = harness.named(spec)
        pair = load_pair(path, command="the benchmark")
        langs = ["en", "zh"] if args.lang == "both" else [args.lang]
        res: dict = {"path": path}
        for lang in langs:
            sents = (english_sentences if lang == "en" else chinese_sentences)(args.sentences, args.skip)
            if lang == "zh":
                vocab = pair.tokenizer.get_vocab()
                chars = [c for s in sents for c in s if "\u4e00" <= c <= "\u9fff"]
                res["zh_vocab_coverage"] = sum(c in vocab for c in chars) / max(len(chars), 1)
            items = corrupt(pair, sents, lang, args.rate, args.seed)
            det = detection(pair, items, lang)
            rows = [correction(pair, items, lang, t, det, g) for g in floors for t in thresholds]
            res[lang] = {"sentences": len(items), "planted": sum(len(i["corrupted"]) for i in items),
                         "units": len(det[1]), "det_auc": roc_auc(det[1], det[0]), "rows": rows}
            print(f"\n{name} [{lang}] {len(items)} sentences, {res[lang]['planted']} planted errors in "
                  f"{len(det[1])} units; detection AUC {res[lang]['det_auc']:.3f}"
                  + (f"; vocabulary covers {res['zh_vocab_coverage']:.1%} of the characters" if lang == "zh" else ""))
            err = "CER" if lang == "zh" else "WER"
            print(harness.table(
                [("gen>=", ">5.2f"), ("tau", ">5.2f"), ("det P", ">6.3f"), ("det R", ">6.3f"), ("F0.5", ">6.3f"),
                 ("edits", ">6d"), ("corr P", ">7"), ("corr R", ">7.3f"), ("F0.5", ">6.3f"),
                 (err + " before", ">11.4f"), (err + " after", ">10.4f"), ("s/sent", ">7.3f")],
                [(r["min_generator_prob"], r["threshold"], r["det_p"], r["det_r"], r["det_f05"], r["edits"],
                  f"{r['corr_p']:.3f}" if r["edits"] else "-", r["corr_r"], r["corr_f05"], r["err_before"],
                  r["err_after"], r["s_per_sentence"]) for r in rows], sep=" "))
        if args.nbest:
            nb = nbest(pair, args.nbest, 0.5)
            res["nbest"] = nb
            print(f"HyPoradise LS test-clean, {nb['utterances']} utterances (threshold 0.5): WER 1-best "
                  f"{nb['wer_1best']:.4f}, corrected {nb['wer_corrected']:.4f} ({nb['changed']} changed), "
                  f"n-best oracle {nb['wer_nbest_oracle']:.4f}, compositional oracle "
                  f"{nb['wer_compositional_oracle']:.4f}; {nb['s_per_utterance']:.3f} s/utterance")
        results[name] = res
    if args.plot:
        plot(results, args.plot)
    if args.out:
        Path(args.out).write_text(json.dumps(results) + "\n")
    harness.emit(results)


if __name__ == "__main__":
    main()
