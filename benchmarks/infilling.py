"""Span infilling on held-out sentences: one-shot filling vs mask-predict (T = 2, 4, 10), with the generator's
probability or the discriminator's p(original) choosing what to re-mask.

    python benchmarks/infilling.py --model RUN [--model RUN2 ...] [--sentences 300] [--seed 0]

Sentences of SQuAD v1.1 dev contexts (Wikipedia articles not in ``corpus/en``), 8-40 words. In each, a span of
1-5 consecutive words (letters only; length drawn uniformly, position uniformly) is replaced by as many
``[MASK]`` tokens as it has pieces (the length is given, as in mask-predict's evaluation with a known target
length), then filled. Scored on the span against the original span (lower-cased, as the vocabulary is
uncased; punctuation dropped): exact match, BLEU (sacrebleu, 13a) and ROUGE-L (rouge-score), overall and on the
multi-word spans (2-5 words). Batches of 32 sentences. Prints a table and a final JSON line.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import harness
from correction import english_sentences
from electra.generation import decode_span, load_pair, mask_predict, words_of
from electra.metrics.speech import normalize
from electra.metrics.text import bleu, exact_match, rouge

SETTINGS = [("one-shot", 1, "generator"), ("mask-predict T=2", 2, "generator"), ("mask-predict T=4", 4, "generator"),
            ("mask-predict T=10", 10, "generator"), ("T=4, discriminator re-masks", 4, "discriminator"),
            ("T=10, discriminator re-masks", 10, "discriminator")]


def make_spans(pair, sentences: list[str], seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for text in sentences:
        words = words_of(pair.tokenizer, text)
        length = int(rng.integers(1, 6))
        starts = [i for i in range(len(words) - length + 1)
                  if all(text[w.start:w.end].isalpha() and not w.unknown for w in words[i:i + length])]
        if not starts:
            continue
        i = starts[int(rng.integers(len(starts)))]
        ids = [pair.cls_id]
        for w in words[:i]:
            ids += w.ids
        first = len(ids)
        span = [t for w in words[i:i + length] for t in w.ids]
        ids += [pair.mask_id] * len(span)
        for w in words[i + length:]:
            ids += w.ids
        ids.append(pair.sep_id)
        if len(ids) > pair.max_len:
            continue
        out.append({"ids": ids, "positions": list(range(first, first + len(span))), "words": length,
                    "reference": normalize(text[words[i].start:words[i + length - 1].end])})
    return out


def run(pair, spans: list[dict], iterations: int, confidence: str) -> tuple[list[str], float]:
    preds = []
    t0 = time.perf_counter()
    for b in range(0, len(spans), 32):
        batch = spans[b:b + 32]
        rows, _ = mask_predict(pair, [s["ids"] for s in batch], [s["positions"] for s in batch], iterations,
                               confidence)
        for row, s in zip(rows, batch):
            preds.append(normalize(decode_span(pair.tokenizer, [row[p] for p in s["positions"]])))
    return preds, (time.perf_counter() - t0) / len(spans)


def scores(preds: list[str], refs: list[str]) -> dict:
    return {"em": exact_match(preds, refs), "bleu": bleu(preds, [refs])["score"],
            "rougeL": rouge(preds, refs)["rougeL"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", action="append", required=True, help="NAME=PATH or PATH; repeat")
    ap.add_argument("--sentences", type=int, default=300)
    ap.add_argument("--skip", type=int, default=1000, help="sentences skipped first (the correction benchmark "
                                                           "uses the first ones)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    results = {}
    sents = english_sentences(args.sentences, skip=args.skip)
    for spec in args.model:
        name, path = harness.named(spec)
        pair = load_pair(path, command="the benchmark")
        spans = make_spans(pair, sents, args.seed)
        refs = [s["reference"] for s in spans]
        multi = [i for i, s in enumerate(spans) if s["words"] > 1]
        rows = []
        for label, t, conf in SETTINGS:
            preds, sec = run(pair, spans, t, conf)
            row = {"setting": label, "iterations": t, "confidence": conf, **scores(preds, refs),
                   "multi": scores([preds[i] for i in multi], [refs[i] for i in multi]), "s_per_span": sec}
            rows.append(row)
        results[name] = {"path": path, "spans": len(spans), "multi_word_spans": len(multi), "rows": rows}
        print(f"\n{name}: {len(spans)} spans ({len(multi)} of 2-5 words)")
        bar = ("|", "")
        print(harness.table(
            [("setting", "<30"), ("EM", ">6.3f"), ("BLEU", ">6.2f"), ("R-L", ">6.3f"), bar, ("EM 2-5", ">6.3f"),
             ("BLEU", ">6.2f"), ("R-L", ">6.3f"), bar, ("ms/span", ">7.1f")],
            [(r["setting"], r["em"], r["bleu"], r["rougeL"], "|", r["multi"]["em"], r["multi"]["bleu"],
              r["multi"]["rougeL"], "|", 1000 * r["s_per_span"]) for r in rows], sep=" "))
    harness.emit(results)


if __name__ == "__main__":
    main()
