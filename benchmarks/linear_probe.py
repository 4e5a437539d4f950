"""Linear probes on frozen features: what does pre-training leave in an encoder's last layer?

For each checkpoint: the discriminator encoder's last-layer ``[CLS]`` vector and its mean over real tokens, for
``--train`` sentences of a single-sentence classification task (``--task``, SST-2 by default; read by
``electra.data.glue``) and for its dev split; a logistic regression
(scikit-learn) fitted on the train features and scored on dev; and the mean cosine similarity of ``[CLS]`` vectors
between dev sentences (near 1: every sentence looks alike to a head reading ``[CLS]``).

    python benchmarks/linear_probe.py runs/warm-start/minilm-new runs/adapted/checkpoints/step-00000923 \\
        [--task sst2 --data ../shared/data/glue/SST-2] [--train 2000] [--seed 0]

Prints a table and a final JSON line.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

import harness
from electra.checkpoint import load_checkpoint, resolve_checkpoint, tokenizer_dir
from electra.data.glue import get_task, load_split
from electra.errors import ElectraError
from electra.tokenization import load_tokenizer, pad_batch

SST2 = harness.DATA / "glue" / "SST-2"


@torch.inference_mode()
def features(ckpt: Path, sentences: list[str], max_len: int = 128, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Last-layer ``[CLS]`` vectors and mean-pooled vectors (padding excluded) of the discriminator encoder."""
    model = load_checkpoint(ckpt).eval()
    tok = load_tokenizer(tokenizer_dir(ckpt))
    tok.enable_truncation(max_len)
    encoder = model.discriminator.encoder
    pad = tok.token_to_id("[PAD]") or 0
    cls, mean = [], []
    for i in range(0, len(sentences), batch):
        rows = [e.ids for e in tok.encode_batch(sentences[i:i + batch])]
        b = {k: torch.from_numpy(v) for k, v in pad_batch(rows, pad_id=pad).items()}
        h = encoder(b["input_ids"], b["attention_mask"], b["token_type_ids"]).float()
        m = b["attention_mask"][..., None].float()
        cls.append(h[:, 0].numpy())
        mean.append(((h * m).sum(1) / m.sum(1)).numpy())
    return np.concatenate(cls), np.concatenate(mean)


def mean_cosine(x: np.ndarray) -> float:
    """Mean cosine similarity over all pairs of rows (the diagonal included)."""
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    return float((u @ u.T).mean())


def main(argv: list[str] | None = None) -> None:
    from sklearn.linear_model import LogisticRegression

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="+", help="checkpoints or run folders")
    ap.add_argument("--task", default="sst2", help="a single-sentence classification task (sst2, cola, ...)")
    ap.add_argument("--data", type=Path, default=SST2, help="the task's folder (train and dev splits)")
    ap.add_argument("--train", type=int, default=2000, help="training sentences (a seeded random subset)")
    ap.add_argument("--dev-limit", type=int, default=0, help="0: the whole dev split")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    harness.set_threads(args.threads)
    try:
        task = get_task(args.task)
        train, dev = load_split(task, args.data, "train"), load_split(task, args.data, "dev")
    except ElectraError as e:
        raise SystemExit(f"linear_probe: {e}") from None
    pick = np.random.default_rng(args.seed).permutation(len(train))[:args.train]
    train, dev = [train[i] for i in pick], dev[:args.dev_limit or None]
    tr_x, tr_y = [e.texts[0] for e in train], np.array([str(e.label) for e in train])
    dv_x, dv_y = [e.texts[0] for e in dev], np.array([str(e.label) for e in dev])
    rows = []
    for name in args.checkpoints:
        ckpt = resolve_checkpoint(name)
        (tc, tm), (dc, dm) = features(ckpt, tr_x), features(ckpt, dv_x)
        row = {"checkpoint": str(ckpt), "cls_cosine": mean_cosine(dc)}
        for key, (a, b) in {"cls": (tc, dc), "mean": (tm, dm)}.items():
            row[f"probe_{key}"] = float(LogisticRegression(max_iter=2000).fit(a, tr_y).score(b, dv_y))
        rows.append(row)
    print(f"{args.task}: {len(tr_x):,} training sentences, {len(dv_x):,} dev; dev accuracy of a logistic "
          "regression on frozen last-layer features")
    print(harness.table([("checkpoint", "<70"), ("[CLS]", ">8.4f"), ("mean", ">8.4f"), ("[CLS] cosine", ">14.3f")],
                        [(r["checkpoint"][-70:], r["probe_cls"], r["probe_mean"], r["cls_cosine"]) for r in rows]))
    harness.emit({"benchmark": "linear_probe", "task": args.task, "data": str(args.data), "train": len(tr_x),
                  "rows": rows})


if __name__ == "__main__":
    main()
