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
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from electra.checkpoint import load_checkpoint, resolve_checkpoint  # noqa: E402
from electra.config import ModelConfig, PretrainConfig  # noqa: E402
from electra.data.pretraining_data import PretrainingData  # noqa: E402
from electra.detection_eval import evaluate_on_data, unigram_distribution  # noqa: E402
from electra.init.wordvectors import train_word_vectors  # noqa: E402
from electra.training.pretrainer import pretrain  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="a folder written by `electra prepare`")
    ap.add_argument("--held-out", type=Path, required=True, help="prepared held-out text (same tokenizer)")
    ap.add_argument("--steps", type=int, default=3000, help="the plain arm's steps (the budget)")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--dim", type=int, help="vector size (default: the preset's embedding size)")
    ap.add_argument("--epochs", type=int, default=1, help="word2vec passes over the corpus")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "word-vectors")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args()
    dim = args.dim or ModelConfig.preset(args.preset).discriminator.embedding_size
    args.work.mkdir(parents=True, exist_ok=True)

    t = time.perf_counter()
    report = train_word_vectors([args.data], args.work / "vectors.txt", dim=dim, epochs=args.epochs, seed=0)
    vector_minutes = (time.perf_counter() - t) / 60
    print(report.format())
    held = PretrainingData(args.held_out, seed=0)
    specials = [held.pad_id, held.cls_id, held.sep_id, held.mask_id]
    unigram = unigram_distribution(PretrainingData(args.data, seed=0), exclude=specials)
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
        model = load_checkpoint(resolve_checkpoint(run)).eval()
        own = evaluate_on_data(model, held, 16, seed=1)
        uni = evaluate_on_data(model, held, 16, seed=1, unigram=unigram)
        results[arm] = {"pretrain_minutes": round(minutes_spent, 2), "steps": steps, "auc": own.auc,
                        "auc_unigram": uni.auc, "mlm_accuracy": own.mlm_accuracy}
    results["vectors"]["word2vec_minutes"] = round(vector_minutes, 2)
    print(f"\n{'arm':10}{'word2vec min':>14}{'pretrain min':>14}{'steps':>8}{'AUC own':>9}{'AUC unigram':>13}"
          f"{'gen acc':>9}")
    for arm, r in results.items():
        print(f"{arm:10}{r.get('word2vec_minutes', 0):>14.2f}{r['pretrain_minutes']:>14.2f}{r['steps']:>8}"
              f"{r['auc']:>9.3f}{r['auc_unigram']:>13.3f}{r['mlm_accuracy']:>9.3f}")
    print(json.dumps({"benchmark": "word_vectors", "preset": args.preset, "dim": dim, "budget_steps": args.steps,
                      "vectors": {"learned": report.learned, "twin": report.twin, "random": report.random},
                      "results": results}))


if __name__ == "__main__":
    main()
