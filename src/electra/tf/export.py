"""``electra export --format tf-savedmodel``: TensorFlow SavedModels with a ``serving_default`` signature.

``OUT/discriminator/1/`` and ``OUT/generator/1/`` (TF Serving's ``MODEL/VERSION/`` layout: point
``--model_base_path`` at ``OUT/discriminator``). Each signature takes ``input_ids``, ``attention_mask`` and
``token_type_ids`` (int64, ``[batch, seq]``) and returns ``logits`` (discriminator: ``[batch, seq]``, positive =
replaced; generator: ``[batch, seq, vocab]``). ``OUT/KIND/tf_savedmodel.json`` records the shapes and the
measured agreement of the loaded SavedModel with the PyTorch model; the tokenizer files are copied beside it.
The whole ``OUT`` is written atomically. Needs the TensorFlow Keras backend.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from electra.errors import ElectraError
from electra.tf import keras_module

keras = keras_module()

META_FILE = "tf_savedmodel.json"
VERSION = "1"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _signature_fn(network: Any) -> Any:
    import tensorflow as tf

    def serve(input_ids: Any, attention_mask: Any, token_type_ids: Any) -> dict[str, Any]:
        ids, mask, types = (tf.cast(t, tf.int32) for t in (input_ids, attention_mask, token_type_ids))
        return {"logits": network(ids, mask, types, training=False)}

    return serve


def write_savedmodel(network: Any, folder: Path) -> None:
    """One network (a Keras ``Discriminator`` or ``Generator`` layer) as a SavedModel in ``folder``."""
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(network)
    spec = [tf.TensorSpec([None, None], tf.int64, name=n) for n in INPUTS]
    archive.add_endpoint("serving_default", _signature_fn(network), input_signature=spec)
    archive.write_out(str(folder), verbose=False)


def sample_batch(vocab_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Two rows of random tokens, the second padded, with a second segment: the parity check's input."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, vocab_size, (2, 12)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[1, 7:] = 0
    types = np.zeros_like(ids)
    types[:, 6:] = 1
    return {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": types * mask}


def export_savedmodel(checkpoint: str | Path, out: str | Path) -> list[Path]:
    """Export a checkpoint (or run folder's newest) as SavedModels; returns the written version folders."""
    import tensorflow as tf
    import torch

    from electra.checkpoint import load_checkpoint, read_checkpoint_meta, resolve_checkpoint
    from electra.checkpoint import tokenizer_dir as find_tokenizer
    from electra.files import atomic_directory
    from electra.tf.weights import from_torch

    if keras.backend.backend() != "tensorflow":
        raise ElectraError(f"--format tf-savedmodel needs the TensorFlow Keras backend (KERAS_BACKEND is "
                           f"{keras.backend.backend()!r})")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ElectraError(f"--out {out}: exists and is not a folder; expected a new or an export folder")
    if out.is_dir() and (other := sorted(p.name for p in out.iterdir() if p.name not in ("discriminator",
                                                                                          "generator"))):
        raise ElectraError(f"--out {out}: holds other files ({', '.join(other[:3])}); expected a new or an export "
                           "folder (discriminator/, generator/)")
    ckpt = resolve_checkpoint(checkpoint)
    meta = read_checkpoint_meta(ckpt)
    torch_model = load_checkpoint(ckpt).eval()
    model = from_torch(torch_model)
    tok = find_tokenizer(ckpt)
    kinds = ["discriminator"] + (["generator"] if meta.get("has_generator", True) else [])
    batch = sample_batch(model.config.discriminator.vocab_size)
    written = []
    with atomic_directory(out, "SavedModel export") as tmp:
        for kind in kinds:
            folder = tmp / kind / VERSION
            write_savedmodel(getattr(model, kind), folder)
            served = tf.saved_model.load(str(folder)).signatures["serving_default"]
            got = served(**{k: tf.constant(v) for k, v in batch.items()})["logits"].numpy()
            with torch.no_grad():
                want = getattr(torch_model, kind)(*(torch.from_numpy(batch[k]) for k in INPUTS)).numpy()
            real = batch["attention_mask"].astype(bool)
            diff = float(np.abs(got - want)[real].max())
            record = {"kind": kind, "checkpoint": str(ckpt), "signature": "serving_default",
                      "inputs": {n: {"dtype": "int64", "shape": ["batch", "seq"]} for n in INPUTS},
                      "outputs": {"logits": {"dtype": "float32",
                                             "shape": ["batch", "seq"] + (["vocab"] if kind == "generator" else [])}},
                      "parity": {"max_abs_diff_vs_pytorch": diff, "batch": "2 x 12, padding, two segments"}}
            (tmp / kind / META_FILE).write_text(json.dumps(record, indent=2) + "\n")
            if tok is not None:
                shutil.copytree(tok, tmp / kind / "tokenizer")
            written.append(out / kind / VERSION)
    return written
