"""Whole-word masking against per-token masking at equal compute: Chinese continued RTD from a real multilingual
encoder (multilingual-e5-small imported with ``import-hf --bert``, optionally ``trim-vocab``-ed), all through our
own CLI; docs/whole-word-masking.md ("Measured").

    python benchmarks/whole_word_masking.py --model ckpt/e5-trimmed [--work runs/wwm] [--seeds 0,1]
        [--only prepare,pretrain,detection,finetune] [--steps 200] [--batch 16] [--seq 128] [--lr 1e-4]
        [--warmup 20] [--new-parts-lr 1e-3] [--en-lines 800] [--held-lines 300] [--eval-batches 5]
        [--train-limit 2000] [--ft-epochs 1] [--ft-lr 5e-5] [--threads 1] [--nice 19]

Steps (each ``electra`` command one subprocess, run with ``--threads`` intra-op threads under ``nice -n --nice``;
a step whose output is already in ``--work`` is not run again; results merged into ``WORK/wwm.json``):

1. ``prepare``: text in ``WORK/text``: the last ``--held-lines`` lines of ``corpus/zh/zhwiki_00.txt`` are held out
   (never trained on); the training text is the rest of ``zhwiki_00.txt``, the three novels of ``corpus/zh`` and the
   first ``--en-lines`` lines of ``corpus/en-sample.txt`` (about 10% of the lines). Both prepared ONCE with
   ``--segmenter jieba`` (word starts recorded); per-token masking ignores them, so both arms read the same examples.
2. ``pretrain``: two continued-RTD runs per seed from ``--model`` (the ``continue`` preset) with identical settings
   and the same ``--steps`` (equal compute: same batches, same optimizer steps), one with ``--whole-word-masking``
   (arm ``wwm``), one without (arm ``token``); ``--held-out`` the held-out data, so each run writes detection.json.
3. ``detection``: each final checkpoint on the held-out examples (the first ``--eval-batches`` x 32, seed 1), masked
   per token (as detection.json) and masked by whole words: detection AUC against the model's own generator's
   replacements and against unigram replacements (the training shards' frequencies), and the generator's accuracy
   at the masked positions. The masked positions are the same for both arms and both replacement sources (one
   seeded generator for masking, another for sampling).
4. ``finetune``: ``electra finetune --task chnsenticorp`` from each final checkpoint with the same settings
   (``--train-limit`` sentences, ``--ft-epochs``, LR ``--ft-lr``, batch ``--batch``, ``--seq`` tokens); accuracy on
   all 1,200 dev sentences.

Prints a table per seed (both arms and the ratio wwm / token) and a final JSON line. Wall-clock times are of this
machine under its load (with ``--threads 1 --nice 19`` on a shared machine they are not speed figures).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import time
from pathlib import Path

import harness
from chinese import Runner, dev_metric

DATA = harness.DATA
STEPS = ("prepare", "pretrain", "detection", "finetune")
ARMS = {"wwm": ["--whole-word-masking"], "token": []}


# ---- step 1: text and prepared data ------------------------------------------------------------------------------
def write_text(text: Path, held_lines: int, en_lines: int) -> tuple[list[Path], Path]:
    """(training files, held-out file) in ``text``, written only when their content changed."""
    text.mkdir(parents=True, exist_ok=True)
    zh = DATA / "corpus" / "zh"
    wiki = (zh / "zhwiki_00.txt").read_text(encoding="utf-8").splitlines(keepends=True)
    files = {"zhwiki-train.txt": "".join(wiki[:-held_lines]), "zhwiki-held.txt": "".join(wiki[-held_lines:]),
             **{name: (zh / name).read_text(encoding="utf-8")
                for name in ("sanguoyanyi.txt", "shuihuzhuan.txt", "xiyouji.txt")},
             "en-train.txt": "".join((DATA / "corpus" / "en-sample.txt").read_text(encoding="utf-8")
                                     .splitlines(keepends=True)[:en_lines])}
    for name, body in files.items():
        path = text / name
        if not path.is_file() or path.read_text(encoding="utf-8") != body:
            path.write_text(body, encoding="utf-8")
    return [text / n for n in files if n != "zhwiki-held.txt"], text / "zhwiki-held.txt"


def prepare(run: Runner, tokenizer: Path, work: Path, args: argparse.Namespace) -> dict:
    train, held = write_text(work / "text", args.held_lines, args.en_lines)
    out = {}
    for name, inputs in (("data-train", train), ("data-zh-held", [held])):
        if not (work / name / "meta.json").is_file():
            run("electra", "prepare", "--tokenizer", tokenizer, "--input", *inputs, "--out", work / name,
                "--max-seq-len", args.seq, "--segmenter", "jieba", "--workers", 0, "--quiet", "--overwrite")
        meta = json.loads((work / name / "meta.json").read_text())
        out[name] = {"tokens": meta["counts"]["tokens"], "examples": meta["counts"]["examples_epoch0"],
                     "segmenter": meta.get("segmenter")}
    return out


# ---- step 2: continued RTD ---------------------------------------------------------------------------------------
def pretrain(run: Runner, model: Path, work: Path, arm: str, seed: int, args: argparse.Namespace) -> dict:
    out = work / f"rtd-{arm}-s{seed}"
    seconds = None
    if not (out / "detection.json").is_file():
        _, seconds = run("electra", "pretrain", "--init-from", model, "--data", work / "data-train", "--held-out",
                         work / "data-zh-held", "--out", out, "--preset", "continue", "--batch-size", args.batch,
                         "--max-steps", args.steps, "--warmup-steps", args.warmup, "--lr", args.lr,
                         "--new-parts-lr", args.new_parts_lr, "--log-every", 10, "--save-every", 100_000,
                         "--seed", seed, "--device", "cpu", "--no-progress", "--overwrite", *ARMS[arm])
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    last = rows[-1]
    tail = rows[-5:]  # the last 50 steps (log every 10): training metrics averaged over them
    return {"run": str(out), "steps": int(float(last["step"])),
            "minutes": round(seconds / 60, 1) if seconds else None,
            "train_mlm_acc_last50": sum(float(r["mlm_accuracy"]) for r in tail) / len(tail),
            "train_disc_loss_last50": sum(float(r["disc_loss"]) for r in tail) / len(tail),
            "detection_json": json.loads((out / "detection.json").read_text())}


# ---- step 3: held-out detection, per-token and whole-word masked ------------------------------------------------
def detection(ckpt: Path, work: Path, batches: int, threads: int) -> dict:
    import numpy as np
    import torch

    from electra.checkpoint import load_checkpoint, resolve_checkpoint
    from electra.data.pretraining_data import PretrainingData
    from electra.metrics import roc_auc
    from electra.pretraining import (
        SpecialIds,
        mask_tokens,
        max_predictions_per_seq,
        sample_from_softmax,
        scatter_replace,
        whole_word_mask,
    )

    torch.set_num_threads(threads)
    held = PretrainingData(work / "data-zh-held", seed=0)
    unigram = harness.unigram_for(work / "data-train", held, *held.other_special_ids)
    special = SpecialIds.of(held)
    n = min(batches, max(1, held.num_examples() // 32))
    model = load_checkpoint(resolve_checkpoint(ckpt)).eval()
    out: dict[str, dict] = {}
    for masking in ("token", "word"):
        for source in ("own", "unigram"):
            mask_rng, sample_rng = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
            probs, labels, hits, total = [], [], 0.0, 0.0
            with torch.no_grad():
                for b in itertools.islice(held.batches(32), n):
                    ids, am, tt = b["input_ids"], b["attention_mask"], b["token_type_ids"]
                    most = max_predictions_per_seq(ids.shape[1], 0.15)
                    m = (mask_tokens(ids, am, special, 0.15, most, mask_rng) if masking == "token" else
                         whole_word_mask(ids, am, b["word_start"], special, 0.15, most, mask_rng))
                    gen_logits = model.generator(m.input_ids, am, tt, positions=m.positions)
                    hits += float(((gen_logits.argmax(-1) == m.ids).float() * m.weights).sum())
                    total += float(m.weights.sum())
                    sampled = (sample_from_softmax(gen_logits, sample_rng) if source == "own" else
                               torch.multinomial(unigram, m.positions.numel(), replacement=True,
                                                 generator=sample_rng).view_as(m.positions))
                    fake = scatter_replace(ids, m.positions, m.ids, sampled, m.weights)
                    real = am.bool()
                    probs.append(torch.sigmoid(model.discriminator(fake, am, tt).float()[real]).numpy())
                    labels.append((fake != ids)[real].numpy())
            y = np.concatenate(labels)
            out[f"{masking}/{source}"] = {"auc": roc_auc(y, np.concatenate(probs)), "tokens": int(len(y)),
                                          "replaced": int(y.sum()), "masked": int(total),
                                          "generator_acc": hits / max(1.0, total)}
    return out


# ---- step 4: ChnSentiCorp ----------------------------------------------------------------------------------------
def finetune(run: Runner, work: Path, arm: str, seed: int, args: argparse.Namespace) -> dict:
    out = work / f"chn-{arm}-s{seed}"
    seconds = None
    if not (out / "results.json").is_file():
        _, seconds = run("electra", "finetune", "--task", "chnsenticorp", "--model", work / f"rtd-{arm}-s{seed}",
                         "--data", DATA / "chnsenticorp", "--out", out, "--train-limit", args.train_limit,
                         "--epochs", args.ft_epochs, "--lr", args.ft_lr, "--batch-size", args.batch,
                         "--max-seq-len", args.seq, "--device", "cpu", "--quiet")
    res = json.loads((out / "results.json").read_text())
    final = res.get("final", {}).get("acc")
    return {"dev_acc": dev_metric(res, "acc"), "dev_acc_final": final, "best_step": res.get("best_step"),
            "steps": res.get("steps"), "minutes": round(seconds / 60, 1) if seconds else None}


# ---- main --------------------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="multilingual-e5-small, import-hf --bert (+ trim-vocab)")
    ap.add_argument("--work", type=Path, default=harness.ROOT / "runs" / "wwm")
    ap.add_argument("--only", default=",".join(STEPS), help=f"comma-separated steps of {', '.join(STEPS)}")
    ap.add_argument("--seeds", default="0", help="comma-separated pre-training seeds")
    ap.add_argument("--steps", type=int, default=200, help="continued-RTD steps of each arm (equal compute)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--new-parts-lr", type=float, default=1e-3, help="LR of the new detection and MLM heads")
    ap.add_argument("--en-lines", type=int, default=800, help="lines of corpus/en-sample.txt in the training text")
    ap.add_argument("--held-lines", type=int, default=300, help="last lines of zhwiki_00.txt held out")
    ap.add_argument("--eval-batches", type=int, default=5, help="held-out batches of 32 examples")
    ap.add_argument("--train-limit", type=int, default=2000)
    ap.add_argument("--ft-epochs", type=float, default=1)
    ap.add_argument("--ft-lr", type=float, default=5e-5)
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads of every command")
    ap.add_argument("--nice", type=int, default=19, help="nice level of every command (0: off)")
    args = ap.parse_args()
    steps = [s for s in args.only.split(",") if s]
    if unknown := sorted(set(steps) - set(STEPS)):
        raise SystemExit(f"whole_word_masking.py: --only {','.join(unknown)}: expected steps of {', '.join(STEPS)}")
    seeds = [int(s) for s in args.seeds.split(",") if s]
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    harness.set_threads(args.threads)
    run = Runner(args.threads, args.nice, work / "commands.log")
    results_file = work / "wwm.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}

    def save(key: str, value: object) -> None:
        results[key] = value
        results_file.write_text(json.dumps(results, indent=2) + "\n")

    settings = {k: getattr(args, k) for k in ("steps", "batch", "seq", "lr", "warmup", "new_parts_lr", "en_lines",
                                               "held_lines", "eval_batches", "train_limit", "ft_epochs", "ft_lr")}
    save("settings", {**settings, "model": str(args.model)})
    if "prepare" in steps:
        save("data", prepare(run, args.model / "tokenizer", work, args))
    for seed in seeds:
        for arm in ARMS:
            key = f"s{seed}/{arm}"
            t = time.perf_counter()
            if "pretrain" in steps:
                save(f"{key}/pretrain", pretrain(run, args.model, work, arm, seed, args))
            if "detection" in steps:
                save(f"{key}/detection", detection(work / f"rtd-{arm}-s{seed}", work, args.eval_batches,
                                                   args.threads))
            if "finetune" in steps:
                save(f"{key}/finetune", finetune(run, work, arm, seed, args))
            print(f"{key}: {time.perf_counter() - t:.0f} s", flush=True)
    print_table(results, seeds)
    harness.emit(results)


def rows_of(results: dict, seed: int) -> dict[str, dict[str, float | None]]:
    out = {}
    for arm in ARMS:
        p, d, f = (results.get(f"s{seed}/{arm}/{k}", {}) for k in ("pretrain", "detection", "finetune"))
        out[arm] = {"auc own (token-masked)": d.get("token/own", {}).get("auc"),
                    "auc unigram (token-masked)": d.get("token/unigram", {}).get("auc"),
                    "gen acc (token-masked)": d.get("token/own", {}).get("generator_acc"),
                    "auc own (word-masked)": d.get("word/own", {}).get("auc"),
                    "auc unigram (word-masked)": d.get("word/unigram", {}).get("auc"),
                    "gen acc (word-masked)": d.get("word/own", {}).get("generator_acc"),
                    "detection.json auc": p.get("detection_json", {}).get("auc"),
                    "train gen acc (last 50 steps)": p.get("train_mlm_acc_last50"),
                    "ChnSentiCorp dev acc": f.get("dev_acc")}
    return out


def print_table(results: dict, seeds: list[int]) -> None:
    for seed in seeds:
        rows = rows_of(results, seed)
        print(f"\nseed {seed}: held-out Chinese ({results['settings']['held_lines']} lines of zhwiki_00.txt), "
              f"{results['settings']['steps']} steps x batch {results['settings']['batch']} each")
        print(harness.table([("metric", "<32"), ("wwm", ">8"), ("token", ">8"), ("wwm/token", ">10")],
                            [(name, *(fmt(rows[a][name]) for a in ARMS), ratio(rows["wwm"][name],
                                                                                  rows["token"][name]))
                             for name in rows["wwm"]]))


def fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or not b else f"{a / b:.3f}"


if __name__ == "__main__":
    main()
