"""Replaced-token detection vs masked language modelling at equal pre-training compute (the paper's claim).

    python benchmarks/rtd_vs_mlm.py [--scale 1.0] [--arms electra,mlm,none] [--seeds 3]
        [--tasks sst2,cola,mrpc] [--corpus ../shared/data/corpus/en] [--glue ../shared/data/glue]
        [--out runs/rtd-vs-mlm]

1. Trains an 8000-token WordPiece tokenizer on part of the corpus and prepares it (cached in OUT/data).
2. Pre-trains the ``tiny`` preset (``--preset cpu [--word-vectors]``: the CPU recipe) with each objective for
   the same number of training FLOPs, counted from the model shapes (:mod:`electra.flops`): ELECTRA gets
   ``--electra-steps x scale`` steps, the others as many steps as that budget buys (MLM trains one
   discriminator-sized network, so it gets more steps; two-stage pays a frozen generator forward in its second
   half). Checkpoints at half and all of the budget.
3. Fine-tunes every checkpoint, and a randomly initialised encoder of the same shape (arm ``none``), on
   SST-2, CoLA and MRPC (training sets subsampled by ``--scale``; full dev sets), ``--seeds`` seeds each;
   reports medians of each task's metric and their mean.
4. Prints a table, writes OUT/results.json and OUT/score_vs_compute.png, and prints a final JSON line.

Arms: ``electra`` (joint), ``mlm``, ``none`` (no pre-training), and optionally ``adversarial``, ``two-stage``,
``electra-15``, ``replace-mlm``, ``all-tokens-mlm``, ``deberta`` (ELECTRA on a DeBERTa-v3-style body; with several
pre-training seeds and held-out detection: ``benchmarks/architecture.py``). The default size takes about an hour on
2 CPU cores; ``--scale`` multiplies pre-training steps, corpus share and fine-tuning data for bigger (or smaller)
machines.
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
from electra.config import PretrainConfig
from electra.errors import ElectraError
from electra.flops import run_flops
from finetune_glue import FOLDERS

# DeBERTa-v3's body options (microsoft/deberta-v3-*) at 128 tokens: v3 has 256 log buckets for 512 positions (exact
# distances up to 128, log-spaced beyond); 64 buckets for the tiny preset's 128 positions keep that ratio (exact up to
# 32, log-spaced to 127), and reach 128 relative rows instead of 255 (docs/architecture.md).
DEBERTA_V3_SEQ128 = dict(architecture="deberta-v2", relative_attention=True, position_buckets=64,
                         max_relative_positions=-1, position_biased_input=False, pos_att_type="p2c|c2p",
                         norm_rel_ebd="layer_norm", share_att_key=True, type_vocab_size=0)
ARM_OPTIONS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {  # arm -> (PretrainConfig fields, model overrides)
    "electra": ({}, {}),
    "deberta": ({}, DEBERTA_V3_SEQ128),  # ELECTRA on a DeBERTa-v3-style body (benchmarks/architecture.py)
    "mlm": ({"objective": "mlm"}, {}),
    "adversarial": ({"generator_training": "adversarial"}, {}),
    "two-stage": ({"generator_training": "two-stage"}, {"generator_size": 1.0}),
    "electra-15": ({"objective": "electra-15"}, {}),
    "replace-mlm": ({"objective": "replace-mlm"}, {}),
    "all-tokens-mlm": ({"objective": "all-tokens-mlm"}, {}),
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=float, default=1.0, help="multiplies steps, corpus share and fine-tuning data")
    p.add_argument("--preset", default="tiny", choices=["tiny", "cpu"],
                   help="model shape + recipe of every arm (cpu: word embeddings held fixed, with --word-vectors)")
    p.add_argument("--word-vectors", action="store_true",
                   help="initialise every arm's word embeddings from one epoch of word2vec over the prepared data")
    p.add_argument("--arms", default="electra,mlm,none",
                   help=f"comma-separated: none, {', '.join(ARM_OPTIONS)}")
    p.add_argument("--tasks", default="sst2,cola,mrpc")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--corpus", default=str(harness.DATA / "corpus" / "en"))
    p.add_argument("--glue", default=str(harness.DATA / "glue"))
    p.add_argument("--out", default="runs/rtd-vs-mlm")
    p.add_argument("--electra-steps", type=int, default=3000, help="ELECTRA's steps at scale 1 (sets the budget)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-seq-len", type=int, default=128)
    p.add_argument("--vocab-size", type=int, default=8000)
    p.add_argument("--corpus-files", type=int, default=12, help="corpus files used at scale 1")
    p.add_argument("--train-limit", type=int, default=10000, help="fine-tuning examples per task at scale 1")
    p.add_argument("--checkpoints", choices=["half,final", "final"], default="half,final",
                   help="which pre-training checkpoints to fine-tune (half and all of the budget, or all only)")
    p.add_argument("--ft-epochs", type=float, default=3.0)
    p.add_argument("--ft-lr", type=float, default=1e-3, help="fine-tuning peak LR (tiny model: higher than Small)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1: robust on a shared machine; 2 threads on 2 busy cores ran 15x slower)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


# ---- data ---------------------------------------------------------------------------------------------
def prepare_data(args: argparse.Namespace, out: Path) -> Path:
    """Tokenizer + token shards from the first files of the corpus (cached)."""
    from electra.data.corpus import Corpus
    from electra.data.prepare import prepare
    from electra.tokenization import train_tokenizer

    files = sorted(p for p in Path(args.corpus).glob("*.txt"))
    if not files:
        raise ElectraError(f"{args.corpus}: no .txt files (the English corpus of ../shared/data)")
    files = files[: max(1, round(args.corpus_files * args.scale))]
    data = out / f"data-{len(files)}files-v{args.vocab_size}-l{args.max_seq_len}"
    if (data / "meta.json").is_file():
        return data
    tok = out / f"tokenizer-{len(files)}files-v{args.vocab_size}"
    if not (tok / "tokenizer.json").is_file():
        print(f"training a {args.vocab_size}-token WordPiece tokenizer on {len(files)} corpus files", flush=True)
        train_tokenizer(Corpus([str(f) for f in files]).texts(), tok, args.vocab_size, show_progress=False)
    print(f"preparing {len(files)} corpus files", flush=True)
    prepare([str(f) for f in files], tok, data, max_seq_len=args.max_seq_len, seed=args.seed, progress=False)
    return data


# ---- pre-training at equal compute ----------------------------------------------------------------------
def word_vectors(data: Path) -> str:
    """One epoch of 64-dimensional word2vec over the prepared shards (cached beside them)."""
    from electra.init.wordvectors import train_word_vectors

    path = data.parent / f"{data.name}-w2v64.txt"
    if not path.is_file():
        print(train_word_vectors([data], path, dim=64, epochs=1, progress=False).format(), flush=True)
    return str(path)


def arm_config(arm: str, args: argparse.Namespace, data: Path, out: Path, steps: int) -> PretrainConfig:
    fields, _ = ARM_OPTIONS[arm]
    if args.word_vectors:
        fields = {**fields, "init_embeddings": word_vectors(data)}
    return PretrainConfig.for_preset(
        args.preset, data=str(data), out=str(out / "pretrain" / arm), max_steps=steps, batch_size=args.batch_size,
        warmup_steps=max(1, steps // 10), save_every=max(1, (steps + 1) // 2), keep_last=0,
        log_every=max(1, steps // 50), device=args.device, seed=args.seed, **fields)


def model_shape(cfg: PretrainConfig, overrides: dict[str, Any], vocab_size: int):  # noqa: ANN201
    from electra.training.pretrainer import resolve_model_config

    return resolve_model_config(cfg, vocab_size, None, overrides)


def steps_for_budget(arm: str, args: argparse.Namespace, data: Path, out: Path, budget: float,
                     vocab_size: int) -> int:
    """The number of steps whose training FLOPs are closest to ``budget``."""
    probe = arm_config(arm, args, data, out, 1000)
    per_1000 = run_flops(model_shape(probe, ARM_OPTIONS[arm][1], vocab_size), probe, args.max_seq_len)
    return max(2, round(1000 * budget / per_1000))


def flops_at(arm: str, args: argparse.Namespace, data: Path, out: Path, total_steps: int, step: int,
             vocab_size: int) -> float:
    cfg = arm_config(arm, args, data, out, total_steps)
    shape = model_shape(cfg, ARM_OPTIONS[arm][1], vocab_size)
    if cfg.generator_training == "two-stage":
        from electra.flops import step_flops
        from electra.objectives import generator_steps

        n = generator_steps(cfg)
        return (min(step, n) * step_flops(shape, cfg, args.max_seq_len, 1)
                + max(0, step - n) * step_flops(shape, cfg, args.max_seq_len, 2))
    cfg.max_steps = step
    return run_flops(shape, cfg, args.max_seq_len)


# ---- fine-tuning ---------------------------------------------------------------------------------------
def finetune_scores(ckpt: Path, args: argparse.Namespace, out: Path, random_init: bool = False
                    ) -> dict[str, float]:
    """Median (over seeds) of each task's main metric for one checkpoint."""
    from electra.data.glue import get_task
    from electra.tasks.classification import TaskOptions, finetune_seeds
    from electra.tasks.runner import FinetuneConfig

    result = {}
    for name in args.tasks.split(","):
        task = get_task(name)
        folder = Path(args.glue) / FOLDERS[name]
        target = out / name
        cached = target / "summary.json"
        if cached.is_file():
            result[name] = json.loads(cached.read_text())["median"]
            continue
        config = FinetuneConfig(lr=args.ft_lr, epochs=args.ft_epochs, batch_size=32, layerwise_decay=0.8,
                                seed=args.seed + 1, device=args.device, progress=False)
        options = TaskOptions(max_seq_len=args.max_seq_len, random_init=random_init,
                              train_limit=max(200, round(args.train_limit * args.scale)))
        values = []
        for k in range(args.seeds):
            res = finetune_seeds(task, ckpt, folder, target / f"seed-{k}",
                                 FinetuneConfig(**{**config.__dict__, "seed": config.seed + k}), options, 1)
            values.append(float(res["best"][task.metric]))
        median = statistics.median(values)
        target.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps({"metric": task.metric, "values": values, "median": median}) + "\n")
        result[name] = median
    result["mean"] = statistics.fmean(result[t] for t in args.tasks.split(","))
    return result


# ---- report -------------------------------------------------------------------------------------------
def plot(points: list[dict[str, Any]], tasks: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = ["mean", *tasks]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4), squeeze=False)
    arms = [a for a in dict.fromkeys(p["arm"] for p in points) if a != "none"]
    for ax, key in zip(axes[0], panels):
        for arm in arms:
            ps = sorted((p for p in points if p["arm"] == arm), key=lambda p: p["flops"])
            ax.plot([p["flops"] / 1e15 for p in ps], [p["scores"][key] for p in ps], marker="o", label=arm)
        for p in points:
            if p["arm"] == "none":
                ax.axhline(p["scores"][key], color="grey", linestyle="--", label="no pre-training")
        ax.set_title(key if key == "mean" else f"{key} ({'MCC' if key == 'cola' else 'dev'})")
        ax.set_xlabel("pre-training PFLOPs")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("dev score (median over seeds)")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    args = parse_args()
    harness.set_threads(args.threads)
    arms = args.arms.split(",")
    unknown = [a for a in arms if a != "none" and a not in ARM_OPTIONS]
    if unknown:
        sys.exit(f"unknown arm(s) {unknown}: expected none or {', '.join(ARM_OPTIONS)}")
    if not (Path(args.glue) / "SST-2").is_dir():
        sys.exit(f"{args.glue}: GLUE data not found (../shared/data/glue)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    data = prepare_data(args, out)
    vocab_size = json.loads((data / "meta.json").read_text())["vocab_size"]
    from electra.training.pretrainer import pretrain

    electra_steps = max(2, round(args.electra_steps * args.scale))
    budget = flops_at("electra", args, data, out, electra_steps, electra_steps, vocab_size)
    points: list[dict[str, Any]] = []
    for arm in arms:
        if arm == "none":
            continue
        steps = electra_steps if arm == "electra" else steps_for_budget(arm, args, data, out, budget, vocab_size)
        cfg = arm_config(arm, args, data, out, steps)
        t0 = time.perf_counter()
        print(f"pre-training {arm}: {steps} steps, {budget / 1e15:.3f} PFLOPs budget", flush=True)
        run = pretrain(cfg, model_overrides=ARM_OPTIONS[arm][1], resume=True, progress=sys.stderr.isatty())
        pre_seconds = time.perf_counter() - t0
        for ckpt in sorted((run / "checkpoints").glob("step-*")):
            step = int(ckpt.name.split("-")[1])
            if args.checkpoints == "final" and step != steps:
                continue
            t1 = time.perf_counter()
            scores = finetune_scores(ckpt, args, out / "finetune" / arm / ckpt.name)
            points.append({"arm": arm, "step": step, "steps": steps,
                           "flops": flops_at(arm, args, data, out, steps, step, vocab_size), "scores": scores,
                           "pretrain_seconds": round(pre_seconds, 1),
                           "finetune_seconds": round(time.perf_counter() - t1, 1)})
            print(f"  {arm} step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()), flush=True)
    if "none" in arms:
        ref = next((p for p in points), None)
        if ref is None:
            sys.exit("arm none needs at least one pre-trained arm (for the model shape and tokenizer)")
        ckpt = out / "pretrain" / ref["arm"] / "checkpoints" / f"step-{ref['steps']:08d}"
        scores = finetune_scores(ckpt, args, out / "finetune" / "none", random_init=True)
        points.append({"arm": "none", "step": 0, "steps": 0, "flops": 0.0, "scores": scores})

    tasks = args.tasks.split(",")
    names = {"sst2": "SST-2 acc", "cola": "CoLA MCC", "mrpc": "MRPC F1"}
    header = f"{'arm':15} {'steps':>11} {'PFLOPs':>8} " + " ".join(f"{names.get(t, t):>10}" for t in tasks)
    recipe = args.preset + (" + word vectors" if args.word_vectors else "")
    print(f"\n{recipe} preset, scale {args.scale}, {args.seeds} seed(s) (median), fine-tuning on "
          f"{max(200, round(args.train_limit * args.scale))} training examples per task, full dev sets")
    print(header + f" {'mean':>7}")
    for p in points:
        steps = f"{p['step']}/{p['steps']}" if p["steps"] else "-"
        print(f"{p['arm']:15} {steps:>11} {p['flops'] / 1e15:8.3f} "
              + " ".join(f"{p['scores'][t]:10.3f}" for t in tasks) + f" {p['scores']['mean']:7.3f}")
    plot(points, tasks, out / "score_vs_compute.png")
    summary = {"benchmark": "rtd_vs_mlm", "preset": args.preset, "word_vectors": args.word_vectors,
               "scale": args.scale, "seeds": args.seeds, "budget_flops": budget,
               "seconds": round(time.perf_counter() - start, 1), "points": points}
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {out / 'results.json'} and {out / 'score_vs_compute.png'}")
    harness.emit({k: v for k, v in summary.items() if k != "points"} | {
        "final": {p["arm"]: round(p["scores"]["mean"], 4) for p in points if p["step"] == p["steps"]}})


if __name__ == "__main__":
    main()
