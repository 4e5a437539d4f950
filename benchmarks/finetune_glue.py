"""Pre-trained vs randomly initialised: fine-tune checkpoints on GLUE tasks and compare dev scores.

    python benchmarks/finetune_glue.py --model runs/tiny-en [--tasks sst2,cola] [--data ../shared/data/glue]
        [--epochs 3] [--train-limit N] [--seeds 1] [--out runs/finetune-glue]
    python benchmarks/finetune_glue.py --model minilm=ckpt/minilm --model rtd30=runs/rtd ... --seeds 3

Every arm uses the same recipe, data and seeds; the only difference is the encoder's starting weights
(``random`` keeps the first checkpoint's shape and tokenizer). ``--model NAME=PATH`` may be repeated (one
``pretrained`` arm per model; the random arm once, with the first model's shape). Prints a table and a final
JSON line.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import harness
from electra.checkpoint import read_checkpoint_meta, resolve_checkpoint
from electra.config import ModelConfig
from electra.data.glue import get_task
from electra.tasks.classification import TaskOptions, finetune_seeds
from electra.tasks.runner import FinetuneConfig, official_hparams

FOLDERS = {"cola": "CoLA", "sst2": "SST-2", "mrpc": "MRPC", "stsb": "STS-B", "qqp": "QQP", "mnli": "MNLI",
           "qnli": "QNLI", "rte": "RTE", "wnli": "WNLI"}
DEFAULT_DATA = harness.DATA / "glue"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, action="append",
                   help="pre-trained checkpoint or run folder, or NAME=PATH (repeatable)")
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
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"],
                   help="auto: bf16 where the CPU/GPU has native bf16")
    p.add_argument("--arms", default="pretrained,random", help="which arms to run")
    args = p.parse_args()

    models = [harness.named(m, "pretrained") for m in args.model]
    ckpts = {name: resolve_checkpoint(path) for name, path in models}
    first = next(iter(ckpts.values()))
    shape = ModelConfig.from_dict(read_checkpoint_meta(first)["model"]).discriminator
    official = official_hparams(shape)
    precision = args.precision
    if precision == "auto":
        from electra.training.precision import default_precision

        precision = default_precision("cuda" if args.device in ("auto", "cuda") and _cuda() else "cpu")
    arms = [(name, ckpt, False) for name, ckpt in ckpts.items()] if "pretrained" in args.arms.split(",") else []
    if "random" in args.arms.split(","):
        arms.append(("random", first, True))
    rows, out = [], {}
    for name in args.tasks.split(","):
        task = get_task(name)
        data = Path(args.data) / FOLDERS[name]
        if not (data / "train.tsv").is_file():
            print(f"skip {name}: no {data}/train.tsv", file=sys.stderr)
            continue
        out[name] = {}
        for arm, ckpt, random_init in arms:
            config = FinetuneConfig(lr=args.lr or official["lr"], epochs=args.epochs or task.epochs,
                                    max_steps=args.max_steps, batch_size=args.batch_size,
                                    layerwise_decay=args.layerwise_decay or official["layerwise_decay"], seed=args.seed,
                                    device=args.device, precision=precision)
            options = TaskOptions(max_seq_len=args.max_seq_len, train_limit=args.train_limit,
                                  dev_limit=args.dev_limit, random_init=random_init)
            start = time.perf_counter()
            res = finetune_seeds(task, ckpt, data, Path(args.out) / name / arm, config, options, args.seeds)
            best = res["best"]
            scores = {m: (best[m]["median"] if args.seeds > 1 else best[m]) for m in task.report}
            spread = {m: best[m] for m in task.report} if args.seeds > 1 else {}
            out[name][arm] = {**scores, "seconds": round(time.perf_counter() - start, 1), "spread": spread}
            rows.append((name, arm, scores))
            print(f"{name} {arm}: " + ", ".join(f"{m} {v:.4f}" for m, v in scores.items()), flush=True)
    print(f"\ncheckpoints: {', '.join(f'{n}={c}' for n, c in ckpts.items())}  (hidden {shape.hidden_size}, "
          f"{shape.num_layers} layers, vocab {shape.vocab_size}); seeds {args.seeds}"
          f"{' (median)' if args.seeds > 1 else ''}; lr {args.lr or official['lr']}, {precision}, "
          f"train limit {args.train_limit}")
    print(harness.table([("task", "<8"), ("start", "<14"), ("metrics", "")],
                        [(name, arm, ", ".join(f"{m} {v:.4f}" for m, v in scores.items()))
                         for name, arm, scores in rows], sep=" "))
    harness.emit({"benchmark": "finetune_glue", "checkpoints": {n: str(c) for n, c in ckpts.items()},
                  "precision": precision, "train_limit": args.train_limit, "results": out})


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    main()
