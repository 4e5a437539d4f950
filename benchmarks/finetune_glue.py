"""Pre-trained vs randomly initialised: fine-tune one checkpoint on GLUE tasks twice and compare dev scores.

    python benchmarks/finetune_glue.py --model runs/tiny-en [--tasks sst2,cola] [--data ../shared/data/glue]
        [--epochs 3] [--train-limit N] [--seeds 1] [--out runs/finetune-glue]

Both arms use the same recipe, tokenizer, data and seeds; the only difference is the encoder's starting
weights (`--random-init` keeps the checkpoint's shape). Prints a table and a final JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from electra.checkpoint import read_checkpoint_meta, resolve_checkpoint
from electra.config import ModelConfig
from electra.data.glue import get_task
from electra.tasks.classification import TaskOptions, finetune_seeds
from electra.tasks.runner import FinetuneConfig, official_hparams

FOLDERS = {"cola": "CoLA", "sst2": "SST-2", "mrpc": "MRPC", "stsb": "STS-B", "qqp": "QQP", "mnli": "MNLI",
           "qnli": "QNLI", "rte": "RTE", "wnli": "WNLI"}
DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "glue"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="pre-trained checkpoint or pre-training run folder")
    p.add_argument("--tasks", default="sst2,cola")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="GLUE folder with one sub-folder per task")
    p.add_argument("--out", default="runs/finetune-glue")
    p.add_argument("--epochs", type=float, help="default: the task's (3; 10 for RTE/STS-B)")
    p.add_argument("--max-steps", type=int)
    p.add_argument("--lr", type=float, help="default: by model size (3e-4 for Small and smaller)")
    p.add_argument("--layerwise-decay", type=float, help="default: by model size (0.8 for Small and Base)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-seq-len", type=int, default=128)
    p.add_argument("--train-limit", type=int, help="a fixed random subset of the training split")
    p.add_argument("--dev-limit", type=int)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--device", default="auto")
    p.add_argument("--arms", default="pretrained,random", help="which arms to run")
    args = p.parse_args()

    ckpt = resolve_checkpoint(args.model)
    shape = ModelConfig.from_dict(read_checkpoint_meta(ckpt)["model"]).discriminator
    official = official_hparams(shape)
    rows, out = [], {}
    for name in args.tasks.split(","):
        task = get_task(name)
        data = Path(args.data) / FOLDERS[name]
        if not (data / "train.tsv").is_file():
            print(f"skip {name}: no {data}/train.tsv", file=sys.stderr)
            continue
        out[name] = {}
        for arm in args.arms.split(","):
            config = FinetuneConfig(lr=args.lr or official["lr"], epochs=args.epochs or task.epochs,
                                    max_steps=args.max_steps, batch_size=args.batch_size,
                                    layerwise_decay=args.layerwise_decay or official["layerwise_decay"], seed=args.seed,
                                    device=args.device)
            options = TaskOptions(max_seq_len=args.max_seq_len, train_limit=args.train_limit,
                                  dev_limit=args.dev_limit, random_init=arm == "random")
            start = time.perf_counter()
            res = finetune_seeds(task, ckpt, data, Path(args.out) / name / arm, config, options, args.seeds)
            best = res["best"]
            scores = {m: (best[m]["median"] if args.seeds > 1 else best[m]) for m in task.report}
            out[name][arm] = {**scores, "seconds": round(time.perf_counter() - start, 1)}
            rows.append((name, arm, scores))
    print(f"\ncheckpoint: {ckpt}  (hidden {shape.hidden_size}, {shape.num_layers} layers, "
          f"vocab {shape.vocab_size}); seeds {args.seeds}{' (median)' if args.seeds > 1 else ''}")
    print(f"{'task':8} {'start':11} " + "metrics")
    for name, arm, scores in rows:
        print(f"{name:8} {arm:11} " + ", ".join(f"{m} {v:.4f}" for m, v in scores.items()))
    print(json.dumps({"benchmark": "finetune_glue", "checkpoint": str(ckpt), "results": out}))


if __name__ == "__main__":
    main()
