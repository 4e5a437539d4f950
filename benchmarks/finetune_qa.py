"""Fine-tune a pre-trained checkpoint on the shared QA and NER data and print the official scores.

    python benchmarks/finetune_qa.py --model /work/pretrained/tiny-en --max-steps 300
    python benchmarks/finetune_qa.py --model ckpt --tasks squad1 --random-init   # baseline without pre-training

Data (../shared/data, or --data-root): SQuAD 1.1 dev articles split into train/dev by article (no SQuAD train
split is shipped), the SQuAD 2.0 sample split the same way, the CMRC 2018 trial set split by article (only
run when the vocabulary has Chinese characters), CoNLL-2003 train/valid. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import harness
from electra.checkpoint import tokenizer_dir
from electra.tasks.qa import QAParams, finetune_qa
from electra.tasks.runner import FinetuneConfig, load_encoder, official_hparams
from electra.tasks.tagging import TagParams, finetune_tagging

FILES = {"squad1": "squad/v1.1/dev-v1.1.json", "squad2": "squad/v2.0-sample.json",
         "cmrc2018": "cmrc2018/cmrc2018_trial.json", "conll2003": "ner/conll2003"}
REPORT = {"squad1": ["exact_match", "f1"], "squad2": ["exact", "f1", "HasAns_f1", "NoAns_f1", "best_f1"],
          "cmrc2018": ["EM", "F1", "AVERAGE"], "conll2003": ["precision", "recall", "f1"]}


def has_chinese(model: str, tokenizer: str | None = None) -> bool:
    d = Path(tokenizer) if tokenizer else tokenizer_dir(model)
    vocab = (d / "vocab.txt") if d else None
    return bool(vocab and vocab.is_file() and "的" in vocab.read_text(encoding="utf-8").split())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="pre-trained checkpoint")
    p.add_argument("--out", default="runs/bench-qa")
    p.add_argument("--tokenizer", help="tokenizer folder (default: the checkpoint's tokenizer/)")
    p.add_argument("--tasks", default="squad1,squad2,cmrc2018,conll2003")
    p.add_argument("--data-root", type=Path, default=harness.DATA)
    p.add_argument("--max-steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, help="default: the official LR for the model's width")
    p.add_argument("--train-limit", type=int, help="questions / sentences used for training")
    p.add_argument("--dev-limit", type=int, default=500, help="questions / sentences used for dev")
    p.add_argument("--max-seq-len", type=int, help="default: the task's, capped by the model's positions")
    p.add_argument("--doc-stride", type=int, help="default: 128, or a third of the length for short models")
    p.add_argument("--random-init", action="store_true", help="same shape, random weights (baseline)")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args()

    encoder = load_encoder(args.model)
    official = official_hparams(encoder.config)
    positions = encoder.config.max_position_embeddings
    stride = args.doc_stride or min(128, (args.max_seq_len or positions) // 3)
    rows = []
    for task in args.tasks.split(","):
        path = args.data_root / FILES[task]
        if not path.exists():
            print(f"skip {task}: {path} not present", file=sys.stderr)
            continue
        if task == "cmrc2018" and not has_chinese(args.model, args.tokenizer):
            print(f"skip {task}: the checkpoint's vocabulary has no Chinese characters", file=sys.stderr)
            continue
        config = FinetuneConfig(lr=args.lr or official["lr"], max_steps=args.max_steps, batch_size=args.batch_size,
                                layerwise_decay=official["layerwise_decay"], seed=args.seed, device=args.device)
        out = Path(args.out) / task
        start = time.perf_counter()
        if task == "conll2003":
            res = finetune_tagging(TagParams(task, args.model, str(out), str(path / "train.txt"),
                                             str(path / "valid.txt"), max_seq_length=args.max_seq_len or 128,
                                             max_train_sentences=args.train_limit, max_dev_sentences=args.dev_limit,
                                             random_init=args.random_init, tokenizer=args.tokenizer), config)
        else:
            res = finetune_qa(QAParams(task, args.model, str(out), str(path), dev_fraction=0.2,
                                       max_seq_length=args.max_seq_len, doc_stride=stride,
                                       max_train_questions=args.train_limit, max_dev_questions=args.dev_limit,
                                       random_init=args.random_init, tokenizer=args.tokenizer), config)
        seconds = time.perf_counter() - start
        rows.append({"task": task, "steps": res["steps"], "seconds": round(seconds, 1),
                     **{k: round(res["best"][k], 4) for k in REPORT[task] if k in res["best"]},
                     **({"data": res["data"]} if "data" in res else {})})
    print("\n" + harness.table([("task", "<10"), ("steps", ">6"), ("seconds", ">8"), (" scores (dev)", "")],
                               [(r["task"], r["steps"], r["seconds"],
                                 " " + ", ".join(f"{k} {r[k]}" for k in REPORT[r["task"]] if k in r)) for r in rows],
                               sep=" "))
    harness.emit({"model": args.model, "random_init": args.random_init, "max_steps": args.max_steps, "results": rows})


if __name__ == "__main__":
    main()
