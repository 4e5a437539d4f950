"""Linear probes on frozen features: what does pre-training leave in an encoder's last layer?

For each checkpoint: the discriminator encoder's last-layer ``[CLS]`` vector and its mean over real tokens, for
``--train`` sentences of a GLUE single-sentence task (SST-2 by default) and for its dev split; a logistic regression
(scikit-learn) fitted on the train features and scored on dev; and the mean cosine similarity of ``[CLS]`` vectors
between dev sentences (near 1: every sentence looks alike to a head reading ``[CLS]``).

    python benchmarks/linear_probe.py runs/warm-start/minilm-new runs/adapted/checkpoints/step-00000923 \\
        [--data ../shared/data/glue/SST-2] [--train 2000] [--seed 0]

Prints a table and a final JSON line.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from electra.checkpoint import load_checkpoint, resolve_checkpoint, tokenizer_dir  # noqa: E402
from electra.inference import pad_batch  # noqa: E402
from electra.tokenization import load_tokenizer  # noqa: E402

SST2 = Path(__file__).resolve().parents[2] / "shared" / "data" / "glue" / "SST-2"


def read_tsv(path: Path) -> tuple[list[str], np.ndarray]:
    """(sentences, labels) of a GLUE single-sentence TSV with a header (``sentence``, ``label`` columns)."""
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    head = rows[0]
    s, y = head.index("sentence"), head.index("label")
    return [r[s] for r in rows[1:]], np.array([int(r[y]) for r in rows[1:]])


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
    ap.add_argument("--data", type=Path, default=SST2, help="folder with train.tsv and dev.tsv")
    ap.add_argument("--train", type=int, default=2000, help="training sentences (a seeded random subset)")
    ap.add_argument("--dev-limit", type=int, default=0, help="0: the whole dev split")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    for split in ("train.tsv", "dev.tsv"):
        if not (args.data / split).is_file():
            raise SystemExit(f"linear_probe: {args.data / split} not found (--data: a GLUE single-sentence task)")
    tr_x, tr_y = read_tsv(args.data / "train.tsv")
    pick = np.random.default_rng(args.seed).permutation(len(tr_x))[:args.train]
    tr_x, tr_y = [tr_x[i] for i in pick], tr_y[pick]
    dv_x, dv_y = read_tsv(args.data / "dev.tsv")
    if args.dev_limit:
        dv_x, dv_y = dv_x[:args.dev_limit], dv_y[:args.dev_limit]
    rows = []
    for name in args.checkpoints:
        ckpt = resolve_checkpoint(name)
        (tc, tm), (dc, dm) = features(ckpt, tr_x), features(ckpt, dv_x)
        row = {"checkpoint": str(ckpt), "cls_cosine": mean_cosine(dc)}
        for key, (a, b) in {"cls": (tc, dc), "mean": (tm, dm)}.items():
            row[f"probe_{key}"] = float(LogisticRegression(max_iter=2000).fit(a, tr_y).score(b, dv_y))
        rows.append(row)
    print(f"{args.data.name}: {len(tr_x):,} training sentences, {len(dv_x):,} dev; dev accuracy of a logistic "
          "regression on frozen last-layer features")
    print(f"{'checkpoint':70}{'[CLS]':>8}{'mean':>8}{'[CLS] cosine':>14}")
    for r in rows:
        print(f"{r['checkpoint'][-70:]:70}{r['probe_cls']:>8.4f}{r['probe_mean']:>8.4f}{r['cls_cosine']:>14.3f}")
    print(json.dumps({"benchmark": "linear_probe", "data": str(args.data), "train": len(tr_x), "rows": rows}))


if __name__ == "__main__":
    main()
