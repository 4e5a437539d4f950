"""What word-vector initialisation buys: pre-training from scratch with and without `electra wordvectors`.

    python benchmarks/word_vectors.py --data runs/warm-start/data-en --held-out runs/warm-start/data-held-out
        [--steps 3000] [--preset tiny] [--dim D] [--epochs 1] [--work runs/word-vectors]

Equal total compute for both arms: ``plain`` pre-trains ``--steps`` steps; ``vectors`` first trains word2vec
(skip-gram, gensim, 1 worker) over the prepared shards' WordPiece tokens, then pre-trains with
``--init-embeddings`` (every vocabulary entry but the special tokens, ``##pieces`` included) for ``--steps``
minus the steps that word2vec's time would have bought at ``plain``'s measured seconds per step (both timed on
the same machine, so a load that slows both leaves the conversion about the same). Each arm's LR schedule runs
to its own step count. Both then report detection on ``--held-out`` (prepared with the same tokenizer: e.g. the SQuAD
contexts ``benchmarks/warm_start.py`` prepares), against their own generator and a unigram corruption; fine-tune
them with ``benchmarks/finetune_glue.py --model plain=WORK/plain --model vectors=WORK/vectors``. Prints a
table and a final JSON line.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import harness
from electra.checkpoint import load_checkpoint, resolve_checkpoint
from electra.config import ModelConfig, PretrainConfig
from electra.data.pretraining_data import PretrainingData
from electra.init.wordvectors import train_word_vectors
from electra.training.pretrainer import pretrain


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="a folder written by `electra prepare`")
    ap.add_argument("--held-out", type=Path, required=True, help="prepared held-out text (same tokenizer)")
    ap.add_argument("--steps", type=int, default=3000, help="the plain arm's steps (the budget)")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--dim", type=int, help="vector size (default: the preset's embedding size)")
    ap.add_argument("--epochs", type=int, default=1, help="word2vec passes over the corpus")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--work", type=Path, default=harness.ROOT / "runs" / "word-vectors")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args()
    dim = args.dim or ModelConfig.preset(args.preset).discriminator.embedding_size
    args.work.mkdir(parents=True, exist_ok=True)

    t = time.perf_counter()
    report = train_word_vectors([args.data], args.work / "vectors.txt", dim=dim, epochs=args.epochs, seed=0)
    vector_minutes = (time.perf_counter() - t) / 60
    print(report.format())
    held = PretrainingData(args.held_out, seed=0)
    unigram = harness.unigram_for(args.data, held)
    results = {}
    seconds_per_step = 0.0
    for arm in ("plain", "vectors"):
        steps = args.steps if arm == "plain" else args.steps - round(60 * vector_minutes / seconds_per_step)
        init = "" if arm == "plain" else str(args.work / "vectors.txt")
        cfg = PretrainConfig.for_preset(args.preset, data=str(args.data), out=str(args.work / arm), max_steps=steps,
                                        batch_size=args.batch, init_embeddings=init, device="cpu", save_every=10**9,
                                        log_every=50)
        t = time.perf_counter()
        run = pretrain(cfg, overwrite=True, progress=not args.no_progress)
        minutes_spent = (time.perf_counter() - t) / 60
        if arm == "plain":
            seconds_per_step = 60 * minutes_spent / steps
        own, uni = harness.detection(load_checkpoint(resolve_checkpoint(run)), held, unigram, 16)
        results[arm] = {"pretrain_minutes": round(minutes_spent, 2), "steps": steps, "auc": own.auc,
                        "auc_unigram": uni.auc, "mlm_accuracy": own.mlm_accuracy}
    results["vectors"]["word2vec_minutes"] = round(vector_minutes, 2)
    print("\n" + harness.table(
        [("arm", "<10"), ("word2vec min", ">14.2f"), ("pretrain min", ">14.2f"), ("steps", ">8"), ("AUC own", ">9.3f"),
         ("AUC unigram", ">13.3f"), ("gen acc", ">9.3f")],
        [(arm, r.get("word2vec_minutes", 0), r["pretrain_minutes"], r["steps"], r["auc"], r["auc_unigram"],
          r["mlm_accuracy"]) for arm, r in results.items()]))
    harness.emit({"benchmark": "word_vectors", "preset": args.preset, "dim": dim, "budget_steps": args.steps,
                  "vectors": {"learned": report.learned, "twin": report.twin, "random": report.random},
                  "results": results})


if __name__ == "__main__":
    main()
