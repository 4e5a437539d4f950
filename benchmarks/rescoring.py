"""Rescoring benchmark (issue 15): HyPoradise ASR n-best lists, WMT21 de-en / zh-en system outputs, MuTual dev.

Parts (each resumable: sentence scores are cached per model and scorer under OUT/cache, results per part in OUT):

    python benchmarks/rescoring.py asr      --model NAME=CKPT [--model ...] [--pll-lists 200]
    python benchmarks/rescoring.py asr-reranker [--reranker NAME=RUN]   # ATIS: a supervised reranker (below)
    python benchmarks/rescoring.py mt       --model NAME=CKPT
    python benchmarks/rescoring.py dialogue --model NAME=CKPT
    python benchmarks/rescoring.py speed    --model NAME=CKPT [--lists 1000] [--pll-lists 100]
    python benchmarks/rescoring.py report   [--finetuned NAME=RUN ...]   # the tables and a final JSON line

Tuning (stated in the tables): ATIS test is tuned on ATIS train (minus the 39 ids that occur in both);
every other HyPoradise set has no dev file here, so lambda/beta are chosen by 5-fold cross-validation on the
set itself (contiguous folds). WMT21 de-en: system prior, lambda and beta tuned with reference A, BLEU/chrF
reported on reference B. zh-en: 2-fold on reference A. MuTual dev: 5-fold on dev (zero-shot scorers).
``pll`` costs one pass per token: it runs on the first ``--pll-lists`` lists of each ASR set only (tuned by
5-fold on that subset, with ``rtd`` and the 1-best on the same subset beside it).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

import harness
from electra.data import ranking as R
from electra.rescoring import RerankerScorer, mbr_choice, model_scores, rescore_asr, rescore_choice, rescore_mt

DATA = Path(os.environ.get("ELECTRA_SHARED_DATA", harness.DATA))
HP = DATA / "asr-nbest" / "hyporadise"
ASR_SETS = ["ls_clean", "wsj_score", "atis", "chime4", "cv", "swbd", "td3", "lrs2", "coraal"]
# HyPoradise's published LM-rescoring baseline, relative WER change vs the 1-best (issue 15).
PUBLISHED = {"wsj_score": -4.4, "atis": -16.9, "chime4": -0.9, "td3": -5.9, "swbd": -1.9, "lrs2": -5.0,
             "coraal": 0.0, "cv": 8.0}


class CachedScorer:
    """A :class:`electra.scoring.Scorer` whose sentence scores are kept in OUT/cache/NAME/METHOD.json."""

    def __init__(self, name: str, path: str, out: Path, max_length: int = 256, prefix: str = ""):
        self.name, self.path, self.max_length, self.prefix = name, path, max_length, prefix
        self.dir = out / "cache" / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self._scorer = None
        self.cache: dict[str, dict[str, float]] = {}
        self.seconds = 0.0

    def _file(self, method: str) -> Path:
        return self.dir / f"{method}.json"

    def _load(self, method: str) -> dict[str, float]:
        if method not in self.cache:
            f = self._file(method)
            self.cache[method] = json.loads(f.read_text()) if f.is_file() else {}
        return self.cache[method]

    def save(self) -> None:
        for m, d in self.cache.items():
            tmp = self._file(m).with_suffix(".tmp")
            tmp.write_text(json.dumps(d))
            os.replace(tmp, self._file(m))

    def score(self, method, texts, contexts=None):  # noqa: ANN001, ANN201
        from electra.scoring import Scorer, SentenceScore

        cache = self._load(method)
        keys = [json.dumps([contexts[i] if contexts else None, t]) for i, t in enumerate(texts)]
        todo = [i for i, k in enumerate(keys) if k not in cache]
        if todo:
            if self._scorer is None:
                self._scorer = Scorer(self.path, max_length=self.max_length)
            start = time.perf_counter()
            ctx = [contexts[i] for i in todo] if contexts else None
            todo_texts = [texts[i] for i in todo]
            if method == "similarity" and self.prefix:  # e5 is read with "query: " before both sides
                todo_texts = [self.prefix + t for t in todo_texts]
                ctx = [self.prefix + c for c in ctx] if ctx else None
            got = self._scorer.score(method, todo_texts, ctx)
            self.seconds += time.perf_counter() - start
            for i, s in zip(todo, got):
                cache[keys[i]] = s.score
            self.save()
        return [SentenceScore([], [], cache[k]) for k in keys]


class ZeroScorer:
    """Scores every sentence 0: rescoring then tunes the length term (beta) alone (an ablation)."""

    def score(self, method, texts, contexts=None):  # noqa: ANN001, ANN201
        from electra.scoring import SentenceScore

        return [SentenceScore([], [], 0.0) for _ in texts]


def _write(out: Path, name: str, data: dict) -> None:
    f = out / f"{name}.json"
    tmp = f.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, f)


def _read(out: Path, name: str) -> dict:
    f = out / f"{name}.json"
    return json.loads(f.read_text()) if f.is_file() else {}


def _random_choice(items, seed: int = 0) -> list[int]:  # noqa: ANN001
    rng = np.random.default_rng(seed)
    return [int(rng.integers(len(it.candidates))) for it in items]


# ---- ASR ------------------------------------------------------------------------------------------------------
def part_asr(args: argparse.Namespace, scorers: list[CachedScorer]) -> None:
    from electra.metrics.nbest import choice_wer, edit_matrix

    res = _read(args.out, "asr")
    for s in args.sets or ASR_SETS:
        items = R.read_hyporadise(HP / f"test_{s}.json")
        dev = None
        if s == "atis":
            test_ids = {it.id for it in items}
            dev = [it for it in R.read_hyporadise(HP / "train_atis.json") if it.id not in test_ids]
        row = res.setdefault(s, {})
        if "baselines" not in row:
            refs, nb = [it.references[0] for it in items], [it.candidates for it in items]
            e, w = edit_matrix(refs, nb)
            row["baselines"] = {"lists": len(items), "one_best": choice_wer(e, w, [0] * len(items)),
                                "random": choice_wer(e, w, _random_choice(items)),
                                "mbr_edit": choice_wer(e, w, mbr_choice(items, "edit"))}
            _write(args.out, "asr", res)
        if args.length_only and "length-only" not in row:  # ablation: lambda = 0, only the length term tuned
            r = rescore_asr(ZeroScorer(), items, ["rtd"], dev, k=5)
            row["length-only"] = r.metrics
            _write(args.out, "asr", res)
            print(f"{s} length-only: wer {r.metrics['wer']:.4f} (1-best {r.metrics['one_best_wer']:.4f})", flush=True)
        for sc in scorers:
            key = f"{sc.name}/rtd"
            if key not in row:
                r = rescore_asr(sc, items, ["rtd"], dev, k=5)
                row[key] = r.metrics
                row["baselines"].update(oracle=r.metrics["oracle_wer"],
                                        compositional_oracle=r.metrics["compositional_oracle_wer"])
                _write(args.out, "asr", res)
                print(f"{s} {key}: wer {r.metrics['wer']:.4f} (1-best {r.metrics['one_best_wer']:.4f})", flush=True)
            if args.pll_lists and (not args.pll_sets or s in args.pll_sets):
                sub = items[: args.pll_lists]
                for methods in (["rtd"], ["pll"], ["pll-word"], ["rtd", "pll"]):
                    key = f"{sc.name}/subset/{'+'.join(methods)}"
                    if key not in row:
                        r = rescore_asr(sc, sub, methods, None, k=5)
                        row[key] = r.metrics
                        _write(args.out, "asr", res)
                        print(f"{s} {key}: wer {r.metrics['wer']:.4f} (1-best {r.metrics['one_best_wer']:.4f})",
                              flush=True)


def atis_split(out: Path, dev_lists: int = 400) -> tuple[Path, Path]:
    """ATIS train minus the ids it shares with ATIS test, split (seeded) into OUT/atis-split/train.json (the
    reranker's training lists) and dev.json (``dev_lists`` lists it never sees: lambda/beta are tuned there)."""
    import random

    d = out / "atis-split"
    train_f, dev_f = d / "train.json", d / "dev.json"
    if not dev_f.is_file():
        test_ids = {x["id"] for x in json.loads((HP / "test_atis.json").read_text())}
        train = [x for x in json.loads((HP / "train_atis.json").read_text()) if x["id"] not in test_ids]
        idx = list(range(len(train)))
        random.Random(0).shuffle(idx)
        dev = set(idx[:dev_lists])
        d.mkdir(parents=True, exist_ok=True)
        train_f.write_text(json.dumps([x for i, x in enumerate(train) if i not in dev]))
        dev_f.write_text(json.dumps([train[i] for i in sorted(dev)]))
    return train_f, dev_f


def part_asr_reranker(args: argparse.Namespace, scorers: list[CachedScorer]) -> None:
    """ATIS test with a supervised reranker (``--reranker NAME=RUN``, fine-tuned on OUT/atis-split/train.json)
    as the model score: prior (am_score) + lambda * reranker + beta * length, tuned on OUT/atis-split/dev.json."""
    train_f, dev_f = atis_split(args.out)
    if not args.reranker:
        print(f"split written: {train_f}, {dev_f}; fine-tune with: electra finetune --task asr-nbest --model CKPT "
              f"--data {train_f} --dev-file {dev_f} --out RUN, then pass --reranker NAME=RUN")
        return
    res = _read(args.out, "asr")
    items, dev = R.read_hyporadise(HP / "test_atis.json"), R.read_hyporadise(dev_f)
    for spec in args.reranker:
        if "=" not in spec:
            raise SystemExit(f"--reranker {spec!r}: expected NAME=RUN")
        name, run = harness.named(spec)
        t = time.perf_counter()
        r = rescore_asr(RerankerScorer(run), items, ["reranker"], dev, k=5)
        res.setdefault("atis", {})[f"{name}/reranker"] = {**r.metrics, "run": run, "tuned_on": str(dev_f),
                                                          "seconds": time.perf_counter() - t}
        _write(args.out, "asr", res)
        print(f"atis {name}/reranker: wer {r.metrics['wer']:.4f} (1-best {r.metrics['one_best_wer']:.4f}, "
              f"{100 * (r.metrics['wer'] / r.metrics['one_best_wer'] - 1):+.1f}%)", flush=True)


# ---- MT -------------------------------------------------------------------------------------------------------
def part_mt(args: argparse.Namespace, scorers: list[CachedScorer]) -> None:
    from electra.metrics.text import bleu, chrf

    res = _read(args.out, "mt")
    for pair, lang in (("de-en", "en"), ("zh-en", "en")):
        if args.pairs and pair not in args.pairs:
            continue
        src, ref_a, ref_b, outputs = mt_files(pair)
        cands = [outputs]
        report = [ref_b] if ref_b.is_file() else [ref_a]
        items, systems = R.read_mt(src, cands, report)
        tune = [it.references for it in R.read_mt(src, cands, [ref_a])[0]] if ref_b.is_file() else None
        row = res.setdefault(pair, {})
        streams = [[it.references[0] for it in items]]
        if "baselines" not in row:
            def corpus(pick, items=items, streams=streams, lang=lang):  # noqa: ANN001, ANN202
                hyp = [it.candidates[c] for it, c in zip(items, pick)]
                return {"bleu": bleu(hyp, streams, lang)["score"], "chrf": chrf(hyp, streams)["score"]}

            per_system = {name: corpus([k] * len(items)) for k, name in enumerate(systems)}
            bl = sorted(v["bleu"] for v in per_system.values())
            row["baselines"] = {"segments": len(items), "systems": per_system,
                                "median_system_bleu": float(np.median(bl)), "random": corpus(_random_choice(items)),
                                "mbr_chrf": corpus(mbr_choice(items, "chrf")),
                                "signature": bleu([items[0].candidates[0]], [[streams[0][0]]], lang)["signature"]}
            _write(args.out, "mt", res)
            print(f"{pair} baselines done", flush=True)
        for sc, spec in ((sc, spec) for sc in scorers for spec in args.mt_scorers.split(",")):
            key = f"{sc.name}/{spec}"
            if key not in row:
                r = rescore_mt(sc, items, systems, spec.split("+"), tune, None, 2, lang)
                row[key] = r.metrics
                _write(args.out, "mt", res)
                print(f"{pair} {key}: bleu {r.metrics['bleu']:.2f} (best single "
                      f"{r.metrics['best_single_system']['bleu']:.2f})", flush=True)


class _Fixed:
    """A scorer that answers from scores computed once (``scores[(context, text)]``), so the reranker's scores
    serve both the plain argmax and the tuned combination without a second pass."""

    wants_source = True

    def __init__(self, scores: dict[tuple[str | None, str], float]):
        self.scores = scores

    def score(self, method: str, texts, contexts=None) -> list:  # noqa: ANN001
        from electra.scoring import SentenceScore

        ctx = contexts if contexts is not None else [None] * len(texts)
        return [SentenceScore([], [], self.scores[(c, t)]) for c, t in zip(ctx, texts)]


def mt_files(pair: str) -> tuple[Path, Path, Path, Path]:
    """WMT21 PAIR's source, ref A, ref B (absent for zh-en) and system-outputs folder."""
    d = DATA / "mt" / f"wmt21-{pair}"
    return (d / f"newstest2021.{pair}.src.{pair[:2]}", d / f"newstest2021.{pair}.ref.A.en",
            d / f"newstest2021.{pair}.ref.B.en", d / "system-outputs")


def mt_fold_folder(out: Path, pair: str, items: list, systems: list[str], rows: np.ndarray, tag: str) -> Path:
    """OUT/mt-folds/PAIR/TAG: the ``rows`` of ``items`` (read with ref A) as source, ref A and one file per system,
    in the layout ``electra finetune --task mt-rerank --data`` reads."""
    dst = out / "mt-folds" / pair / tag
    if (dst / "done").is_file():
        return dst
    (dst / "system-outputs").mkdir(parents=True, exist_ok=True)
    sub = [items[i] for i in rows]
    src, ref_a, _, _ = mt_files(pair)
    (dst / src.name).write_text("".join(it.context + "\n" for it in sub), encoding="utf-8")
    (dst / ref_a.name).write_text("".join(it.references[0] + "\n" for it in sub), encoding="utf-8")
    for k, name in enumerate(systems):
        (dst / "system-outputs" / f"newstest2021.{pair}.hyp.{name}.en").write_text(
            "".join(it.candidates[k] + "\n" for it in sub), encoding="utf-8")
    (dst / "done").write_text("")
    return dst


def part_mt_reranker(args: argparse.Namespace, scorers: list[CachedScorer]) -> None:
    """The source-aware cross-encoder (``electra finetune --task mt-rerank``) from each ``--model``, 2-fold by
    segment halves: trained (listwise, costs = -sentence-BLEU against ref A) on one half, it scores the other.
    Reported per pair over all segments: its plain argmax and, as in ``mt``, the system prior + lambda * score +
    beta * length tuned on ref A of the scored half (de-en; reported on ref B) or 2-fold inside it (zh-en)."""
    import subprocess
    import sys

    from electra.metrics.text import bleu, chrf

    res = _read(args.out, "mt-reranker")
    electra_bin = str(Path(sys.executable).with_name("electra"))
    for pair in args.pairs or ["de-en", "zh-en"]:
        src, ref_a, ref_b, outputs = mt_files(pair)
        report = ref_b if ref_b.is_file() else ref_a
        items, systems = R.read_mt(src, [outputs], [report])
        items_a, _ = R.read_mt(src, [outputs], [ref_a])
        tune_all = [it.references for it in items_a]
        n = len(items)
        halves = [np.arange(0, n // 2), np.arange(n // 2, n)]
        streams = [[it.references[0] for it in items]]
        for sc in scorers:
            key = f"{sc.name}/cross-encoder"
            if key in res.get(pair, {}):
                continue
            argmax, tuned, folds = np.zeros(n, int), np.zeros(n, int), []
            for f, held in enumerate(halves):
                train_rows = halves[1 - f]
                folder = mt_fold_folder(args.out, pair, items_a, systems, train_rows, f"train-{f}")
                run = args.out / f"mt-rerank-{pair}-{sc.name}-fold{f}"
                t = time.perf_counter()
                if not (run / "task.json").is_file() and not (run / "best" / "task.json").is_file():
                    cmd = [electra_bin, "finetune", "--task", "mt-rerank", "--model", sc.path, "--data", str(folder),
                           "--out", str(run), "--device", "cpu", *args.finetune_args.split()]
                    print("$", " ".join(cmd), flush=True)
                    subprocess.run(cmd, check=True)
                train_s = time.perf_counter() - t
                t = time.perf_counter()
                held_items = [items[i] for i in held]
                flat = model_scores(RerankerScorer(run), held_items, ["reranker"], use_context=True)["reranker"]
                fixed = _Fixed({(it.context, c): s for it, row in zip(held_items, flat)
                                for c, s in zip(it.candidates, row)})
                argmax[held] = [int(np.argmax(row)) for row in flat]
                tune = [tune_all[i] for i in held] if ref_b.is_file() else None
                r = rescore_mt(fixed, held_items, systems, ["reranker"], tune, None, 2, "en")
                tuned[held] = r.choice
                folds.append({"run": str(run), "train_segments": len(train_rows), "scored_segments": len(held),
                              "train_seconds": train_s, "score_seconds": time.perf_counter() - t,
                              **{k: r.metrics[k] for k in ("tuned", "lambda", "beta") if k in r.metrics}})
                print(f"{pair} {key} fold {f}: trained {train_s:.0f} s, tuned {folds[-1]}", flush=True)

            def corpus(pick: np.ndarray, items=items, streams=streams) -> dict[str, float]:  # noqa: ANN001
                hyp = [it.candidates[c] for it, c in zip(items, pick)]
                return {"bleu": bleu(hyp, streams, "en")["score"], "chrf": chrf(hyp, streams)["score"]}

            row = res.setdefault(pair, {})
            row[key] = {"argmax": corpus(argmax), "tuned": corpus(tuned), "folds": folds,
                        "reported_on": report.name, "finetune_args": args.finetune_args}
            _write(args.out, "mt-reranker", res)
            print(f"{pair} {key}: argmax bleu {row[key]['argmax']['bleu']:.2f}, tuned bleu "
                  f"{row[key]['tuned']['bleu']:.2f} (on {report.name})", flush=True)


# ---- dialogue -------------------------------------------------------------------------------------------------
def part_dialogue(args: argparse.Namespace, scorers: list[CachedScorer]) -> None:

    res = _read(args.out, "dialogue")
    items = R.read_mutual(DATA / "dialogue" / "mutual" / "dev.jsonl")
    res["baselines"] = _mutual_baselines(items)
    for sc in scorers:
        key = f"{sc.name}/rtd"
        if key not in res:
            r = rescore_choice(sc, items, ["rtd"], None, None, 5)
            res[key] = r.metrics
            _write(args.out, "dialogue", res)
            print(f"mutual {key}: r1 {r.metrics['r1']:.3f}", flush=True)
    _write(args.out, "dialogue", res)


def _mutual_baselines(items) -> dict:  # noqa: ANN001
    from electra.metrics.ranking import ranking_metrics

    labels = [it.label for it in items]
    return {"always_D": ranking_metrics([[3, 0, 1, 2]] * len(items), labels),
            "random": ranking_metrics([list(np.random.default_rng(i).permutation(4)) for i in range(len(items))],
                                      labels)}


# ---- speed ----------------------------------------------------------------------------------------------------
def part_speed(args: argparse.Namespace, scorers: list[CachedScorer]) -> None:
    import torch

    from electra.scoring import Scorer

    res = _read(args.out, "speed")
    items = R.read_hyporadise(HP / "test_ls_clean.json")
    for sc in scorers:
        scorer = Scorer(sc.path, max_length=256)
        for method, n in (("rtd", args.lists), ("pll", args.pll_lists)):
            texts = [c for it in items[:n] for c in it.candidates]
            scorer.score(method, texts[:10])  # warm-up
            start = time.perf_counter()
            scorer.score(method, texts)
            sec = time.perf_counter() - start
            res[f"{sc.name}/{method}"] = {"lists": n, "sentences": len(texts), "seconds": sec,
                                          "seconds_per_1000_lists": sec * 1000 / n, "threads": torch.get_num_threads(),
                                          "set": "test_ls_clean (5 hypotheses per list)"}
            print(f"{sc.name} {method}: {n} lists in {sec:.1f} s", flush=True)
            _write(args.out, "speed", res)


# ---- report ---------------------------------------------------------------------------------------------------
def _pct(new: float, old: float) -> str:
    return f"{100 * (new / old - 1):+.1f}%" if old else "n/a"


def part_report(args: argparse.Namespace) -> None:
    summary: dict = {}
    asr = _read(args.out, "asr")
    if asr:
        names = sorted({k.split("/")[0] for row in asr.values() for k in row
                        if k not in ("baselines", "length-only") and not k.endswith("/reranker")})
        print("\n## ASR (HyPoradise test sets): WER % (relative change vs our 1-best); tuning: atis on ATIS train, "
              "others 5-fold")
        head = ["set", "lists", "1-best", "random", "MBR-edit", "oracle", "comp.oracle", "length only"]
        head += [f"{n} rtd" for n in names]
        head += ["published LM"]
        print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
        wins = {n: 0 for n in names}
        strict = {n: 0 for n in names}
        worst = {n: -1.0 for n in names}
        for s in ASR_SETS:
            row = asr.get(s)
            if not row:
                continue
            b = row["baselines"]
            cells = [s, str(b["lists"]), f"{100 * b['one_best']:.2f}", f"{100 * b['random']:.2f}",
                     f"{100 * b['mbr_edit']:.2f}", f"{100 * b.get('oracle', float('nan')):.2f}",
                     f"{100 * b.get('compositional_oracle', float('nan')):.2f}"]
            lo = row.get("length-only")
            cells.append(f"{100 * lo['wer']:.2f} ({_pct(lo['wer'], lo['one_best_wer'])})" if lo else "-")
            for n in names:
                m = row.get(f"{n}/rtd")
                if m:
                    rel = 100 * (m["wer"] / m["one_best_wer"] - 1)
                    cells.append(f"{100 * m['wer']:.2f} ({rel:+.1f}%)")
                    worst[n] = max(worst[n], m["wer"] - m["one_best_wer"])
                    if s in PUBLISHED and rel <= PUBLISHED[s] + 1e-9:  # at least the published reduction
                        wins[n] += 1
                        strict[n] += PUBLISHED[s] < 0  # ... on a set where the published baseline helped
                else:
                    cells.append("-")
            cells.append(f"{PUBLISHED[s]:+.1f}%" if s in PUBLISHED else "-")
            print("| " + " | ".join(cells) + " |")
        summary["asr"] = {n: {"sets_at_least_published_of_8": wins[n], "of_the_6_where_it_helped": strict[n],
                              "worst_abs_wer_increase": worst[n]} for n in names}
        atis = asr.get("atis", {})
        for key in sorted(k for k in atis if k.endswith("/reranker")):
            m, name = atis[key], key.split("/")[0]
            rel = 100 * (m["wer"] / m["one_best_wer"] - 1)
            print(f"\nATIS test, supervised reranker {name} (trained on ATIS train minus 400 lists, lambda/beta tuned "
                  f"on those 400): WER {100 * m['wer']:.2f} ({rel:+.1f}%; published LM {PUBLISHED['atis']:+.1f}%; "
                  f"lambda {m['lambda']}, beta {m['beta']})")
            summary.setdefault("asr_reranker", {})[name] = {"wer": m["wer"], "relative": rel / 100,
                                                            "at_least_published": rel <= PUBLISHED["atis"]}
            for n in names:  # zero-shot rtd everywhere, the supervised reranker where training lists exist
                r = atis.get(f"{n}/rtd")
                if r:
                    before = 100 * (r["wer"] / r["one_best_wer"] - 1) <= PUBLISHED["atis"] + 1e-9
                    after = wins[n] - before + (rel <= PUBLISHED["atis"] + 1e-9)
                    summary["asr"][n][f"sets_at_least_published_with_{name}_on_atis"] = after
                    print(f"  {n} rtd on the other sets + {name} on ATIS: at least the published reduction on "
                          f"{after} of 8 sets")
        sub_keys = sorted({k.split("/", 2)[2] for row in asr.values() for k in row if "/subset/" in k})
        if sub_keys:
            print("\n## ASR subset (first lists of each set; 5-fold on the subset): WER %")
            head = ["set", "lists", "1-best"] + [f"{n} {k}" for n in names for k in sub_keys]
            print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
            for s in ASR_SETS:
                row = asr.get(s, {})
                first = next((row[f"{n}/subset/{k}"] for n in names for k in sub_keys if f"{n}/subset/{k}" in row),
                             None)
                if first is None:
                    continue
                cells = [s, str(first["lists"]), f"{100 * first['one_best_wer']:.2f}"]
                for n in names:
                    for k in sub_keys:
                        m = row.get(f"{n}/subset/{k}")
                        cells.append(f"{100 * m['wer']:.2f} ({_pct(m['wer'], m['one_best_wer'])})" if m else "-")
                print("| " + " | ".join(cells) + " |")
    mt = _read(args.out, "mt")
    if mt:
        print("\n## MT (WMT21): BLEU / chrF; de-en tuned with ref A, reported on ref B; zh-en 2-fold on ref A")
        print("| pair | system | BLEU | chrF |\n|---|---|---|---|")
        for pair, row in mt.items():
            b = row["baselines"]
            best = max(b["systems"].items(), key=lambda kv: kv[1]["bleu"])
            print(f"| {pair} | best single system on the report ref ({best[0]}) | {best[1]['bleu']:.2f} | "
                  f"{best[1]['chrf']:.2f} |")
            print(f"| {pair} | median system | {b['median_system_bleu']:.2f} | - |")
            print(f"| {pair} | random choice | {b['random']['bleu']:.2f} | {b['random']['chrf']:.2f} |")
            print(f"| {pair} | MBR (chrF consensus) | {b['mbr_chrf']['bleu']:.2f} | {b['mbr_chrf']['chrf']:.2f} |")
            for k, m in row.items():
                if k == "baselines":
                    continue
                bs = m["best_single_system"]
                print(f"| {pair} | best single system by the tuning data ({bs['name']}) | {bs['bleu']:.2f} | "
                      f"{bs['chrf']:.2f} |")
                if "tune_oracle" in m:
                    print(f"| {pair} | sentence-BLEU oracle picked on the tuning refs | {m['tune_oracle']['bleu']:.2f} "
                          f"| {m['tune_oracle']['chrf']:.2f} |")
                print(f"| {pair} | {k} (lambda {m['lambda']}, beta {m['beta']}) | {m['bleu']:.2f} | {m['chrf']:.2f} |")
                summary.setdefault("mt", {})[f"{pair}/{k}"] = {"bleu": m["bleu"], "signature": m["bleu_signature"],
                                                             "best_single": bs["bleu"],
                                                             "mbr_chrf_bleu": b["mbr_chrf"]["bleu"],
                                                             "median_system": b["median_system_bleu"]}
    dia = _read(args.out, "dialogue")
    fin = dict(harness.named(x) for x in args.finetuned or [])
    if fin and not dia and (DATA / "dialogue" / "mutual" / "dev.jsonl").is_file():
        dia = {"baselines": _mutual_baselines(R.read_mutual(DATA / "dialogue" / "mutual" / "dev.jsonl"))}
    if dia or fin:
        print("\n## MuTual dev: R@1 / R@2 / MRR")
        print("| method | R@1 | R@2 | MRR |\n|---|---|---|---|")
        for k, m in dia.items():
            for name, v in (m.items() if k == "baselines" else [(k + " (zero-shot, 5-fold)", m)]):
                print(f"| {name} | {v['r1']:.3f} | {v['r2']:.3f} | {v['mrr']:.3f} |")
        for name, run in fin.items():
            if "," in run:  # several seeds: mean and sd of each run's final evaluation
                finals = [json.loads((Path(r) / "results.json").read_text())["final"] for r in run.split(",")]
                values = {m: [f[m] for f in finals] for m in ("r1", "r2", "mrr")}
                stats = {m: {"mean": float(np.mean(v)), "sd": float(np.std(v, ddof=1)), "runs": v}
                         for m, v in values.items()}
                cells = [f"{stats[m]['mean']:.3f} ± {stats[m]['sd']:.3f}" for m in ("r1", "r2", "mrr")]
                print(f"| {name} (fine-tuned, {len(finals)} seeds, final evaluation) | " + " | ".join(cells) + " |")
                summary.setdefault("mutual_finetuned", {})[name] = stats
                continue
            f = Path(run) / "results.json"
            if f.is_file() or _curve(Path(run)):
                r = json.loads(f.read_text()) if f.is_file() else {}
                best = r.get("best") or max((dict(r1=y, r2=r2, mrr=m) for _, y, r2, m in _curve(Path(run))),
                                            key=lambda d: d["r1"])
                if isinstance(best.get("r1"), dict):  # several seeds: mean and sd
                    cells = [f"{best[m]['mean']:.3f} ± {best[m]['sd']:.3f}" for m in ("r1", "r2", "mrr")]
                else:
                    cells = [f"{best.get(m, float('nan')):.3f}" for m in ("r1", "r2", "mrr")]
                print(f"| {name} (fine-tuned) | " + " | ".join(cells) + " |")
                summary.setdefault("mutual_finetuned", {})[name] = best
        summary["mutual"] = {k: v for k, v in dia.items()}
        if fin and args.figure:
            learning_curve(fin, args.figure)
    sp = _read(args.out, "speed")
    if sp:
        print("\n## Speed: seconds per 1,000 five-best lists (LibriSpeech test-clean hypotheses)")
        print("| model/scorer | lists timed | seconds | s per 1,000 lists | threads |\n|---|---|---|---|---|")
        for k, v in sp.items():
            print(f"| {k} | {v['lists']} | {v['seconds']:.1f} | {v['seconds_per_1000_lists']:.1f} | {v['threads']} |")
        summary["speed"] = {k: v["seconds_per_1000_lists"] for k, v in sp.items()}
    harness.emit(summary)


def _curve(run: Path) -> list[tuple[int, float, float, float]]:
    """(training lists seen, dev R@1, R@2, MRR) at each evaluation of a MuTual run (its metrics.csv)."""
    import csv

    f, spec = run / "metrics.csv", run / "best" / "task.json"
    if not f.is_file() or not spec.is_file():
        return []
    per = json.loads(spec.read_text())["spec"].get("lists_per_batch", 1)
    return [(int(r["step"]) * per, float(r["dev/r1"]), float(r["dev/r2"]), float(r["dev/mrr"]))
            for r in csv.DictReader(f.open()) if r.get("dev/r1")]


def learning_curve(runs: dict[str, str], figure: Path) -> None:
    """R@1 on MuTual dev against training lists seen, from each run's metrics.csv (one line per run)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for colour, (name, spec) in enumerate(runs.items()):
        for i, run in enumerate(spec.split(",")):  # one line per seed
            pts = [(x, y) for x, y, _, _ in _curve(Path(run))]
            label = name if "," not in spec else f"{name}, {Path(run).name}"
            if pts:
                ax.plot(*zip(*pts), marker="o", label=label, color=f"C{colour}", alpha=1 - 0.25 * i)
                print(f"learning curve {label}: " + ", ".join(f"{x} lists -> R@1 {y:.3f}" for x, y in pts))
    ax.axhline(0.298, color="grey", ls="--", lw=1, label='"always D" (0.298)')
    ax.axhline(0.50, color="red", ls=":", lw=1, label="target R@1 0.50")
    ax.set_xlabel("training lists seen (4 candidates each)")
    ax.set_ylabel("MuTual dev R@1")
    ax.legend(fontsize=8)
    fig.tight_layout()
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=120)
    print(f"wrote {figure}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=["asr", "asr-reranker", "mt", "mt-reranker", "dialogue", "speed", "report"])
    ap.add_argument("--reranker", action="append", help="asr-reranker: NAME=RUN of a fine-tuned asr-nbest run")
    ap.add_argument("--model", action="append", default=[], help="NAME=CHECKPOINT (repeatable)")
    ap.add_argument("--out", type=Path, default=harness.ROOT / "runs" / "bench-rescoring")
    ap.add_argument("--pll-lists", type=int, default=200, help="asr: lists per set scored with pll; speed: lists timed")
    ap.add_argument("--lists", type=int, default=1000, help="speed: lists timed with rtd")
    ap.add_argument("--finetuned", action="append", help="report: NAME=RUN of a fine-tuned MuTual reranker")
    ap.add_argument("--sets", nargs="+", choices=ASR_SETS, help="asr: only these HyPoradise sets")
    ap.add_argument("--length-only", action="store_true", help="asr: also the length-only ablation (lambda 0)")
    ap.add_argument("--pairs", nargs="+", choices=["de-en", "zh-en"], help="mt: only these language pairs")
    ap.add_argument("--pll-sets", nargs="+", choices=ASR_SETS, help="asr: the subset comparison on these sets only")
    ap.add_argument("--mt-scorers", default="rtd", help="mt: comma-separated scorers, each one or a + combination "
                    "(rtd, pll, similarity: cosine to the source; e.g. rtd,similarity,rtd+similarity)")
    ap.add_argument("--similarity-prefix", default="", help="text put before both sides for similarity (e5: "
                    "'query: '); the cache is per model name, so give each prefix its own NAME")
    ap.add_argument("--finetune-args", default="--lr 5e-5 --bias-correction --epochs 1",
                    help="mt-reranker: extra arguments of each fold's electra finetune --task mt-rerank")
    ap.add_argument("--figure", type=Path, help="report: write the MuTual learning curve (PNG) here")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.part == "report":
        return part_report(args)
    from electra.training.allocator import tune_malloc

    tune_malloc()
    scorers = [CachedScorer(*harness.named(m), args.out, prefix=args.similarity_prefix) for m in args.model]
    {"asr": part_asr, "asr-reranker": part_asr_reranker, "mt": part_mt, "mt-reranker": part_mt_reranker,
     "dialogue": part_dialogue, "speed": part_speed}[args.part](args, scorers)


if __name__ == "__main__":
    main()
