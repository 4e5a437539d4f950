"""Fine-tuning with and without corrupt-and-reconstruct augmentation (``finetune --augment N``): SST-2 with few
training sentences (and ChnSentiCorp), medians of several seeds on the full dev set.

    python benchmarks/augmentation.py --model RUN [--task sst2] [--train 500] [--copies 2] [--seeds 3]
        [--budget-minutes 10] [--work runs/augmentation]

Each (arm, seed) is one ``finetune_task`` run (the official recipe for the checkpoint's size, 3 epochs, batch
32, ``--train-limit`` sentences: the same fixed subset in both arms), saved under ``--work``; a rerun skips the
runs already done, so a long benchmark is run in pieces of ``--budget-minutes`` (the next run is not started
past it). The augmented arm adds ``--copies`` SSMBA copies of each training sentence from the checkpoint's own
generator, filtered by its discriminator (seeded by the fine-tuning seed). Prints a table and a final JSON line
(the arms' medians and their difference, when every run is done).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

import harness
from electra.checkpoint import read_checkpoint_meta, resolve_checkpoint
from electra.config import ModelConfig
from electra.tasks.classification import TaskOptions, finetune_task, get_task
from electra.tasks.runner import FinetuneConfig, official_hparams

FOLDERS = {"sst2": harness.DATA / "glue" / "SST-2", "chnsenticorp": harness.DATA / "chnsenticorp"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="NAME=PATH or PATH (a pre-trained pair)")
    ap.add_argument("--task", default="sst2", choices=sorted(FOLDERS))
    ap.add_argument("--train", type=int, default=500)
    ap.add_argument("--copies", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=float, default=3.0)
    ap.add_argument("--budget-minutes", type=float, default=10.0)
    ap.add_argument("--work", default=str(harness.ROOT / "runs" / "augmentation"))
    args = ap.parse_args()
    name, path = harness.named(args.model)
    task = get_task(args.task)
    shape = ModelConfig.from_dict(read_checkpoint_meta(resolve_checkpoint(path))["model"]).discriminator
    hp = official_hparams(shape)
    start = time.time()
    arms = {"baseline": 0, f"augment {args.copies}": args.copies}
    results: dict[str, list[dict]] = {a: [] for a in arms}
    pending = 0
    for seed in range(42, 42 + args.seeds):
        for arm, copies in arms.items():
            out = Path(args.work) / name / f"{args.task}-{args.train}" / f"{arm.replace(' ', '')}-seed{seed}"
            done = out / "done.json"
            if not done.is_file():
                if (time.time() - start) / 60 > args.budget_minutes:
                    pending += 1
                    continue
                if out.exists():
                    shutil.rmtree(out)
                t0 = time.time()
                cfg = FinetuneConfig(lr=hp["lr"], layerwise_decay=hp["layerwise_decay"], epochs=args.epochs,
                                     batch_size=32, seed=seed, device="cpu", progress=False, tensorboard=False)
                res = finetune_task(task, path, FOLDERS[args.task], out, cfg,
                                    TaskOptions(train_limit=args.train, augment=copies))
                for heavy in ("best", "checkpoints"):  # keep the numbers, not the weights
                    shutil.rmtree(out / heavy, ignore_errors=True)
                done.write_text(json.dumps({"acc": res["best"]["acc"], "train_examples": res["train_examples"],
                                            "steps": res["steps"], "seconds": time.time() - t0}) + "\n")
            results[arm].append(json.loads(done.read_text()))
    print(f"{name}: {args.task}, {args.train} training sentences, dev acc over seeds 42..{41 + args.seeds}")
    summary = {}
    for arm, rs in results.items():
        if not rs:
            continue
        acc = [r["acc"] for r in rs]
        summary[arm] = {"median": float(np.median(acc)), "min": min(acc), "max": max(acc), "acc": acc,
                        "train_examples": rs[0]["train_examples"],
                        "seconds": float(np.mean([r["seconds"] for r in rs]))}
    print(harness.table([("arm", "<12"), ("median", ">7.4f"), ("min", ">7.4f"), ("max", ">7.4f"),
                         ("train ex", ">9d"), ("s/run", ">6.0f")],
                        [(arm, *(s[k] for k in ("median", "min", "max", "train_examples", "seconds")))
                         for arm, s in summary.items()], sep=" "))
    if pending:
        print(f"{pending} runs not started (past --budget-minutes): run again to continue")
    keys = list(summary)
    delta = summary[keys[1]]["median"] - summary[keys[0]]["median"] if len(keys) == 2 and not pending else None
    harness.emit({"model": name, "path": path, "task": args.task, "train": args.train, "copies": args.copies,
                  "seeds": args.seeds, "arms": summary, "pending": pending, "delta_median": delta})


if __name__ == "__main__":
    main()
