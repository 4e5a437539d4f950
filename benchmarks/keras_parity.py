"""Keras (electra.tf) vs PyTorch logits on the same weights: the parity figures of the README's TensorFlow section.

For random ``tiny`` and ``small`` models (embedding size = and != hidden size) and any checkpoints given with
``--checkpoint``, on a padded two-segment batch: the largest |Keras - PyTorch| over real tokens of the
discriminator logits, the generator logits and (random models) a classifier's logits, and the SavedModel's
discriminator logits. Prints a table and a final JSON line.

  python benchmarks/keras_parity.py --checkpoint runs/warm-start/rtd-from-minilm-truncate/checkpoints/step-00000364
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

import harness
from electra.config import ModelConfig
from electra.modeling import Electra

RANDOM = {
    "tiny (E = H = 64)": ModelConfig.preset("tiny", vocab_size=1000),
    "small (E 128 < H 256)": ModelConfig.preset("small", vocab_size=30522),
}


def batch(vocab: int, rows: int = 4, seq: int = 128, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, vocab, (rows, seq))
    ids[:, 0] = 2
    mask = np.ones_like(ids)
    for i in range(1, rows):
        mask[i, seq * (rows - i) // rows:] = 0
    types = np.zeros_like(ids)
    types[:, seq // 3:] = 1
    return {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": types * mask}


def compare(model: Electra, with_classifier: bool) -> dict[str, float]:
    import tensorflow as tf

    from electra.tasks.heads import ClassificationHead
    from electra.tasks.runner import TaskModel
    from electra.tf.export import write_savedmodel
    from electra.tf.weights import classifier_from_torch, from_torch

    model = model.eval()
    b = batch(model.config.discriminator.vocab_size)
    t = [torch.from_numpy(b[k]) for k in ("input_ids", "attention_mask", "token_type_ids")]
    real = b["attention_mask"].astype(bool)
    km = from_torch(model)
    out = km(b)
    with torch.no_grad():
        d, g = model.discriminator(*t).numpy(), model.generator(*t).numpy()
    res = {"discriminator": float(np.abs(np.asarray(out["discriminator_logits"]) - d)[real].max()),
           "generator": float(np.abs(np.asarray(out["generator_logits"]) - g)[real].max())}
    if with_classifier:
        cfg = model.config.discriminator
        task = TaskModel(model.discriminator.encoder, ClassificationHead(cfg, num_labels=3)).eval()
        with torch.no_grad():
            want = task({k: torch.from_numpy(v) for k, v in b.items()})["logits"].numpy()
        res["classifier"] = float(np.abs(np.asarray(classifier_from_torch(task)(b)) - want).max())
    with tempfile.TemporaryDirectory() as tmp:
        write_savedmodel(km.discriminator, Path(tmp) / "1")
        served = tf.saved_model.load(str(Path(tmp) / "1")).signatures["serving_default"]
        got = served(**{k: tf.constant(v.astype(np.int64)) for k, v in b.items()})["logits"].numpy()
    res["savedmodel_discriminator"] = float(np.abs(got - d)[real].max())
    return res


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", action="append", default=[], help="also compare on this checkpoint / run")
    args = p.parse_args(argv)
    from electra.checkpoint import load_checkpoint, resolve_checkpoint
    from electra.tf import keras_module

    keras = keras_module()
    rows = {}
    for name, cfg in RANDOM.items():
        torch.manual_seed(0)
        rows[name] = compare(Electra(cfg), with_classifier=True)
    for path in args.checkpoint:
        rows[str(path)] = compare(load_checkpoint(resolve_checkpoint(path)), with_classifier=False)
    cols = ["discriminator", "generator", "classifier", "savedmodel_discriminator"]
    print(f"max |Keras - PyTorch| over real tokens, batch 4 x 128 with padding and two segments, fp32, keras "
          f"{keras.__version__} ({keras.backend.backend()})")
    print(harness.table([("model", "<40"), *((c, ">26") for c in cols)],
                        [(name[-40:], *(f"{r[c]:.2e}" if c in r else "-" for c in cols)) for name, r in rows.items()]))
    return harness.emit({"benchmark": "keras_parity", "keras": keras.__version__, "backend": keras.backend.backend(),
                         "max_abs_diff": rows})


if __name__ == "__main__":
    main()
