"""``electra detect/fill --framework tf``: the Keras models behind the :class:`electra.inference.Runner`
interface, so :func:`electra.generation.detect_encoded` and :func:`~electra.generation.fill_encoded` (and the
pipelines) run on them unchanged."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from electra.errors import ElectraError
from electra.generation import Detection, encode
from electra.generation.fill import encode_masked
from electra.inference import Arrays, LoadedModel, Runner
from electra.tf import keras_module
from electra.tf.modeling import Electra

keras = keras_module()


class KerasRunner(Runner):
    """``fn(dict of int32 arrays) -> dict of tensors`` in inference mode; outputs as fp32 numpy."""

    backend = "tf"
    precision = "fp32"

    def __init__(self, fn: Callable[[dict[str, Any]], dict[str, Any]], outputs: tuple[str, ...] = ("logits",)):
        self.fn, self.outputs = fn, outputs

    def __call__(self, batch: Arrays) -> Arrays:
        out = self.fn({k: np.ascontiguousarray(v, dtype=np.int32) for k, v in batch.items()})
        return {k: np.asarray(keras.ops.convert_to_numpy(v), dtype=np.float32) for k, v in out.items()}


def pretrained_runners(model: Electra) -> dict[str, Runner]:
    """Discriminator and generator runners of a Keras :class:`~electra.tf.modeling.Electra`."""
    disc, gen = model.discriminator, model.generator

    def detect(b: dict[str, Any]) -> dict[str, Any]:
        return {"logits": disc(b["input_ids"], b["attention_mask"], b["token_type_ids"])}

    def fill(b: dict[str, Any]) -> dict[str, Any]:  # with "positions": the vocabulary projection there only
        return {"logits": gen(b["input_ids"], b["attention_mask"], b["token_type_ids"], positions=b.get("positions"))}

    return {"discriminator": KerasRunner(detect), "generator": KerasRunner(fill)}


def load_pretrained(path: str | Path) -> LoadedModel:
    """A checkpoint or run folder as Keras runners plus its tokenizer."""
    from electra.checkpoint import check_tokenizer_fits, resolve_checkpoint, tokenizer_dir
    from electra.tf.weights import load_checkpoint
    from electra.tokenization import load_tokenizer, special_tokens

    ckpt = resolve_checkpoint(path)
    tok = tokenizer_dir(ckpt)
    if tok is None:
        raise ElectraError(f"{ckpt}: checkpoint has no tokenizer/ folder")
    model = load_checkpoint(ckpt)
    tokenizer = load_tokenizer(tok)
    check_tokenizer_fits(tokenizer, model.config.discriminator.vocab_size, tok, path)
    runners, pad = pretrained_runners(model), special_tokens(tokenizer).pad_id
    for runner in runners.values():
        runner.pad_id = pad
    return LoadedModel("pretrained", runners, tokenizer, {}, {}, model.config.discriminator, str(path), "tf", "fp32")


def detect(loaded: LoadedModel, text: str) -> Detection:
    """The discriminator's probability that each token of ``text`` was replaced (as
    :func:`electra.generation.detect`)."""
    from electra.generation import detect_encoded

    enc = encode(loaded.tokenizer, text, loaded.max_sequence)
    return detect_encoded(loaded.runners["discriminator"], [enc], [text])[0]


def fill_mask(loaded: LoadedModel, text: str, top_k: int = 5) -> list[list[tuple[str, float]]]:
    """The generator's top-k candidates for every mask token (as :func:`electra.generation.fill_mask`)."""
    from electra.config import at_least, check_values
    from electra.generation import fill_encoded

    check_values("fill option", {"top_k": top_k}, {"top_k": at_least(1)})
    enc = encode_masked(loaded.tokenizer, text, loaded.max_sequence)  # [MASK] or the tokenizer's own mask token
    return [[(c["token_str"], c["score"]) for c in cands]
            for cands in fill_encoded(loaded.runners["generator"], loaded.tokenizer, [enc], top_k)[0]]
