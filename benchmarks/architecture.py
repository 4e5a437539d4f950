"""BERT vs DeBERTa-v3-style body, ELECTRA from scratch at equal training FLOPs: does disentangled attention pay?

    python benchmarks/architecture.py [--arms bert,deberta] [--seeds 3] [--deberta-steps 600] [--preset tiny]
        [--tasks sst2,mrpc,cola] [--train-limit 2000] [--work runs/architecture]

Both arms pre-train ELECTRA (joint generator, ``es`` sharing) with the ``tiny`` shape and recipe (``--preset cpu
--word-vectors``: the CPU recipe) on rtd_vs_mlm's data (an 8000-token WordPiece tokenizer and shards from the first
``--corpus-files`` files of the corpus, cached); the ``deberta`` arm's body is ``rtd_vs_mlm.DEBERTA_V3_SEQ128``
(relative attention p2c|c2p with shared keys, 64 log buckets, normalised relative embeddings, no absolute positions,
no token types). The budget is ``--deberta-steps`` DeBERTa steps; BERT gets the steps that buy the same training
FLOPs (:func:`electra.flops.run_flops`, which counts the c2p / p2c products as :mod:`electra.deberta` computes
them), so more of them. For each of ``--seeds`` pre-training seeds per arm:

1. held-out detection ROC AUC on the last corpus file (never trained on), against the model's own generator and
   against unigram replacements (``harness.detection``, ``--eval-batches`` x 32 examples, evaluation seed 1);
2. GLUE fine-tuning (``rtd_vs_mlm.finetune_scores``, one fine-tuning seed per pre-training seed; training sets
   limited to ``--train-limit`` examples, full dev sets), task by task in ``--tasks`` order.

All runs' step 1 comes first, then each task for all runs, so an interrupted run has the most important figures;
everything is cached in ``--work`` and a rerun continues (an interrupted pre-training resumes from its half-way
checkpoint). Prints a table of medians over the seeds (with the wall time per training step measured from each run's
metrics: on a shared machine, not a speed figure), writes WORK/results.json and prints a final JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import harness

ARMS = {"bert": "electra", "deberta": "deberta"}  # arm -> its entry in rtd_vs_mlm.ARM_OPTIONS
TASK_COLUMNS = {"sst2": "SST-2", "mrpc": "MRPC", "cola": "CoLA"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--seeds", type=int, default=3, help="pre-training seeds per arm")
    p.add_argument("--preset", default="tiny", choices=["tiny", "cpu"], help="model shape and recipe of both arms")
    p.add_argument("--word-vectors", action="store_true",
                   help="initialise both arms' word embeddings from one epoch of word2vec (with --preset cpu)")
    p.add_argument("--deberta-steps", type=int, default=600, help="the DeBERTa arm's steps (sets the FLOP budget)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-seq-len", type=int, default=128)
    p.add_argument("--vocab-size", type=int, default=8000)
    p.add_argument("--corpus-files", type=int, default=12, help="training files (the corpus's last one is held out)")
    p.add_argument("--corpus", default=str(harness.DATA / "corpus" / "en"))
    p.add_argument("--glue", default=str(harness.DATA / "glue"))
    p.add_argument("--tasks", default="sst2,mrpc,cola", help="comma-separated, in order of priority (or empty)")
    p.add_argument("--train-limit", type=int, default=2000, help="fine-tuning examples per task")
    p.add_argument("--ft-epochs", type=float, default=3.0)
    p.add_argument("--ft-lr", type=float, default=1e-3)
    p.add_argument("--eval-batches", type=int, default=16, help="held-out detection batches of 32 examples")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", default="runs/architecture")
    return p.parse_args(argv)


# ---- data ----------------------------------------------------------------------------------------------------------
def data_folders(args: argparse.Namespace, work: Path) -> tuple[Path, Path]:
    """(training shards, held-out shards): rtd_vs_mlm's tokenizer and preparation; the corpus's last file held out."""
    from electra.data.prepare import prepare
    from electra.errors import ElectraError
    from rtd_vs_mlm import prepare_data

    files = sorted(Path(args.corpus).glob("*.txt"))
    if len(files) < 2:
        raise ElectraError(f"{args.corpus}: needs at least two .txt files (the English corpus of ../shared/data)")
    n = min(args.corpus_files, len(files) - 1)
    ns = argparse.Namespace(corpus=args.corpus, corpus_files=n, scale=1.0, vocab_size=args.vocab_size,
                            max_seq_len=args.max_seq_len, seed=0)
    data = prepare_data(ns, work)
    held = work / f"{data.name}-held-out-{files[-1].stem}"
    if not (held / "meta.json").is_file():
        prepare([str(files[-1])], data / "tokenizer", held, max_seq_len=args.max_seq_len, progress=False)
    return data, held


# ---- pre-training at equal compute ---------------------------------------------------------------------------------
def overrides(arm: str) -> dict[str, Any]:
    from rtd_vs_mlm import ARM_OPTIONS

    return ARM_OPTIONS[ARMS[arm]][1]


def run_config(arm: str, seed: int, steps: int, args: argparse.Namespace, data: Path, held: Path, work: Path):  # noqa: ANN201
    from electra.config import PretrainConfig
    from rtd_vs_mlm import word_vectors

    extra = {"init_embeddings": word_vectors(data)} if args.word_vectors else {}
    return PretrainConfig.for_preset(
        args.preset, data=str(data), held_out=str(held), out=str(work / f"seed-{seed}" / arm), max_steps=steps,
        batch_size=args.batch_size, warmup_steps=max(1, steps // 10), save_every=max(1, (steps + 1) // 2),
        keep_last=1, log_every=max(1, steps // 50), device="cpu", seed=seed, **extra)


def training_flops(arm: str, steps: int, args: argparse.Namespace, data: Path, held: Path, work: Path) -> float:
    from electra.flops import run_flops
    from rtd_vs_mlm import model_shape

    cfg = run_config(arm, 0, steps, args, data, held, work)
    vocab_size = json.loads((data / "meta.json").read_text())["vocab_size"]
    return run_flops(model_shape(cfg, overrides(arm), vocab_size), cfg, args.max_seq_len)


def arm_steps(args: argparse.Namespace, arms: list[str], data: Path, held: Path, work: Path) -> dict[str, int]:
    """Each arm's steps: DeBERTa ``--deberta-steps``, the others as many as the same training FLOPs buy."""
    budget = training_flops("deberta", args.deberta_steps, args, data, held, work)
    steps = {}
    for arm in arms:
        per_1000 = training_flops(arm, 1000, args, data, held, work)
        steps[arm] = args.deberta_steps if arm == "deberta" else max(2, round(1000 * budget / per_1000))
    return steps


def pretrained(arm: str, seed: int, steps: int, args: argparse.Namespace, data: Path, held: Path, work: Path
               ) -> Path:
    """The final checkpoint of one run, trained now unless cached (resumed from its half-way checkpoint)."""
    from electra.checkpoint import find_latest_checkpoint
    from electra.training.pretrainer import pretrain

    cfg = run_config(arm, seed, steps, args, data, held, work)
    ckpt = find_latest_checkpoint(cfg.out)
    if ckpt is None or not ckpt.name.endswith(f"{steps:08d}"):
        t = time.perf_counter()
        print(f"pre-training {arm} seed {seed}: {steps} steps of {cfg.batch_size} x {args.max_seq_len}", flush=True)
        pretrain(cfg, model_overrides=overrides(arm), resume=ckpt is not None, overwrite=ckpt is None, progress=False)
        ckpt = find_latest_checkpoint(cfg.out)
        print(f"  {time.perf_counter() - t:.0f} s (wall, shared machine)", flush=True)
    return ckpt


def seconds_per_step(run: Path, tokens_per_step: int) -> float | None:
    """Median wall time per training step from the run's logged tokens/s (a resumed run: both parts' rows)."""
    from electra.training.metrics_log import METRICS_FILE, read_metrics_csv

    _, rows = read_metrics_csv(run / METRICS_FILE)
    rates = [float(r["tokens_per_s"]) for r in rows if r.get("tokens_per_s")]
    return tokens_per_step / statistics.median(rates) if rates else None


def evaluate(ckpt: Path, held, unigram, batches: int) -> dict[str, Any]:  # noqa: ANN001
    """Held-out detection of one checkpoint (cached beside it)."""
    from electra.checkpoint import load_checkpoint

    cached = ckpt / "architecture_eval.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    own, uni = harness.detection(load_checkpoint(ckpt), held, unigram, batches)
    result = {"auc_own": own.auc, "auc_unigram": uni.auc, "generator_accuracy": own.mlm_accuracy,
              "disc_loss": own.disc_loss, "constant_loss": own.constant_loss, "tokens": own.tokens}
    cached.write_text(json.dumps(result) + "\n")
    return result


def finetune(ckpt: Path, task: str, seed: int, args: argparse.Namespace) -> float:
    """One task's dev score after fine-tuning ``ckpt`` (one seed; cached by ``rtd_vs_mlm.finetune_scores``)."""
    from rtd_vs_mlm import finetune_scores

    ns = argparse.Namespace(tasks=task, glue=args.glue, ft_lr=args.ft_lr, ft_epochs=args.ft_epochs, seed=seed,
                            device="cpu", max_seq_len=args.max_seq_len, scale=1.0, seeds=1,
                            train_limit=args.train_limit)
    return finetune_scores(ckpt, ns, ckpt.parent.parent / "finetune")[task]


# ---- report --------------------------------------------------------------------------------------------------------
COLUMNS = [("auc_own", "AUC own"), ("auc_unigram", "AUC unigram"), ("generator_accuracy", "gen acc")]


def medians(runs: list[dict[str, Any]], keys: list[str]) -> dict[str, float | None]:
    """Median over ``runs`` of each key (runs lacking it, or holding None, left out; None when none has it)."""
    out = {}
    for key in keys:
        values = [r[key] for r in runs if r.get(key) is not None]
        out[key] = statistics.median(values) if values else None
    return out


def report(results: dict[str, list[dict[str, Any]]], steps: dict[str, int], flops: dict[str, float],
           step_seconds: dict[str, float | None], tasks: list[str], args: argparse.Namespace) -> dict:
    keys = [k for k, _ in COLUMNS] + tasks
    heads = [h for _, h in COLUMNS] + [TASK_COLUMNS.get(t, t) for t in tasks]
    recipe = args.preset + (" + word vectors" if args.word_vectors else "")
    print(f"\n{recipe} recipe from scratch, equal training FLOPs; medians over {args.seeds} pre-training seed(s); "
          f"fine-tuning on {args.train_limit} examples per task, full dev sets; s/step: wall time per training step "
          f"on a shared machine (not a speed figure)")
    print(f"{'arm':8} {'steps':>6} {'PFLOPs':>7} {'s/step':>7} {'runs':>4} " + " ".join(f"{h:>11}" for h in heads))
    summary = {}
    for arm, runs in results.items():
        med = medians(runs, keys)
        summary[arm] = {"steps": steps[arm], "flops": flops[arm], "seconds_per_step": step_seconds[arm],
                        "runs": len(runs), **med}
        sec = f"{step_seconds[arm]:.3f}" if step_seconds[arm] else "-"
        print(f"{arm:8} {steps[arm]:>6} {flops[arm] / 1e15:7.4f} {sec:>7} {len(runs):>4} "
              + " ".join(f"{'-' if med[k] is None else f'{med[k]:.3f}':>11}" for k in keys))
    print("per seed (AUC own / unigram):")
    for arm, runs in results.items():
        print(f"  {arm:8} " + "  ".join(f"{r['auc_own']:.3f}/{r['auc_unigram']:.3f}" for r in runs))
    return summary


def main() -> None:
    args = parse_args()
    harness.set_threads(args.threads)
    arms = args.arms.split(",")
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        sys.exit(f"unknown arm(s) {unknown}: expected {', '.join(ARMS)}")
    tasks = [t for t in args.tasks.split(",") if t]
    if tasks and not (Path(args.glue) / "SST-2").is_dir():
        sys.exit(f"{args.glue}: GLUE data not found (../shared/data/glue)")
    from electra.data.pretraining_data import PretrainingData

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    data, held_dir = data_folders(args, work)
    held = PretrainingData(held_dir, seed=0)
    unigram = harness.unigram_for(data, held, *held.other_special_ids)
    batches = min(args.eval_batches, max(1, held.num_examples() // 32))
    steps = arm_steps(args, arms, data, held_dir, work)
    flops = {arm: training_flops(arm, steps[arm], args, data, held_dir, work) for arm in arms}
    print("equal training FLOPs: " + ", ".join(f"{a} {steps[a]} steps = {flops[a] / 1e15:.4f} PFLOPs" for a in arms),
          flush=True)

    results: dict[str, list[dict[str, Any]]] = {arm: [] for arm in arms}
    ckpts: dict[tuple[str, int], Path] = {}
    for seed in range(args.seeds):  # 1. pre-training and held-out detection for every run
        for arm in arms:
            ckpt = ckpts[arm, seed] = pretrained(arm, seed, steps[arm], args, data, held_dir, work)
            scores = evaluate(ckpt, held, unigram, batches)
            results[arm].append({"seed": seed, **scores})
            print(f"  {arm} seed {seed}: held-out AUC own {scores['auc_own']:.3f}, unigram {scores['auc_unigram']:.3f}",
                  flush=True)
    tokens = args.batch_size * args.max_seq_len
    step_seconds = {}
    for arm in arms:
        measured = [s for seed in range(args.seeds) if (s := seconds_per_step(ckpts[arm, seed].parent.parent, tokens))]
        step_seconds[arm] = statistics.median(measured) if measured else None
    for task in tasks:  # 2. fine-tuning, task by task
        for seed in range(args.seeds):
            for arm in arms:
                results[arm][seed][task] = finetune(ckpts[arm, seed], task, seed, args)
            print(f"  {task} seed {seed}: " + ", ".join(f"{a} {results[a][seed][task]:.3f}" for a in arms), flush=True)

    summary = report(results, steps, flops, step_seconds, tasks, args)
    out = {"benchmark": "architecture", "preset": args.preset, "word_vectors": args.word_vectors,
           "seeds": args.seeds, "tasks": tasks, "train_limit": args.train_limit,
           "seconds": round(time.perf_counter() - start, 1), "medians": summary}
    (work / "results.json").write_text(json.dumps({**out, "runs": results}, indent=2) + "\n")
    print(f"wrote {work / 'results.json'}")
    harness.emit(out)


if __name__ == "__main__":
    main()
