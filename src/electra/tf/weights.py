"""Our checkpoints and Hugging Face ELECTRA directories <-> the Keras models of :mod:`electra.tf.modeling`.

The Keras side names each variable by our checkpoint key (``torch_weights()``), so porting is a rename table
plus a transpose per dense kernel. Reading and writing go through the PyTorch side's own code
(:mod:`electra.checkpoint`, :mod:`electra.interop.hf`): every check, the tied-embedding rule, ``has_generator``, the
atomic write and the tokenizer copy are the same, and a Keras-saved checkpoint loads there with no missing key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from electra import checkpoint as ckpt
from electra.errors import ElectraError
from electra.modeling import Electra as TorchElectra
from electra.tf.modeling import Classifier, Electra, build


def assign(model: Any, tensors: dict[str, Any], source: str, partial: bool = False) -> list[str]:
    """Copy ``tensors`` (our keys; torch tensors or arrays) into ``model``'s variables, checking every name and
    shape; returns the keys of the model left as initialised (``partial`` allows some)."""
    table = model.torch_weights()
    unexpected = sorted(set(tensors) - set(table))
    if unexpected:
        raise ElectraError(f"{source}: tensor {unexpected[0]!r} does not fit this model ({len(unexpected)} in all)")
    missing = sorted(set(table) - set(tensors))
    if missing and not partial:
        raise ElectraError(f"{source}: missing tensor {missing[0]!r} ({len(missing)} in all)")
    for key, value in tensors.items():
        variable, transposed = table[key]
        array = value.detach().float().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        if transposed:
            array = array.T
        if tuple(array.shape) != tuple(variable.shape):
            raise ElectraError(f"{source}: tensor {key!r} has shape {tuple(value.shape)}, the Keras model expects "
                               f"{tuple(variable.shape)}{' (transposed)' if transposed else ''}")
        variable.assign(array.astype(np.float32))
    return missing


def state_dict(model: Any) -> dict[str, torch.Tensor]:
    """``model``'s variables as a PyTorch state dict in our keys (dense kernels transposed back)."""
    out = {}
    for key, (variable, transposed) in model.torch_weights().items():
        array = np.asarray(variable.numpy() if hasattr(variable, "numpy") else variable)
        out[key] = torch.from_numpy(np.ascontiguousarray(array.T if transposed else array))
    return out


def from_torch(model: TorchElectra) -> Electra:
    """A Keras :class:`~electra.tf.modeling.Electra` with the weights of our PyTorch one."""
    keras_model = build(Electra(model.config))
    sd = {k: v for k, v in model.state_dict().items() if k not in ckpt._shared_keys(model)}
    assign(keras_model, sd, "PyTorch model")
    return keras_model


def to_torch(model: Electra) -> TorchElectra:
    """Our PyTorch :class:`~electra.modeling.Electra` with the Keras model's weights (strict: no key missing)."""
    torch_model = TorchElectra(model.config)
    sd = state_dict(model)
    expected = set(torch_model.state_dict()) - ckpt._shared_keys(torch_model)
    if set(sd) != expected:
        raise ElectraError(f"Keras model: keys differ from the PyTorch model's: {sorted(set(sd) ^ expected)[:3]}")
    torch_model.load_state_dict(sd, strict=False)
    return torch_model


def load_checkpoint(path: str | Path) -> Electra:
    """A checkpoint directory or run folder (its newest checkpoint) as a Keras model."""
    return from_torch(ckpt.load_checkpoint(ckpt.resolve_checkpoint(path)))


def save_checkpoint(model: Electra, path: str | Path, *, tokenizer_dir: str | Path | None = None,
                    has_generator: bool = True, extra: dict[str, Any] | None = None) -> Path:
    """Save a Keras model as one of our checkpoint directories (atomically), loadable by the PyTorch side."""
    return ckpt.save_checkpoint(to_torch(model), path, tokenizer_dir=tokenizer_dir, has_generator=has_generator,
                                extra={"saved_by": "electra.tf", **(extra or {})})


def load_hf(disc_dir: str | Path, gen_dir: str | Path | None = None) -> tuple[Electra, bool]:
    """Hugging Face ELECTRA directories (``ElectraForPreTraining`` [+ ``ElectraForMaskedLM``]; safetensors or
    ``pytorch_model.bin``) as a Keras model; returns (model, has_generator)."""
    from electra.interop.hf import electra_from_hf

    model, has_generator = electra_from_hf(disc_dir, gen_dir)
    return from_torch(model), has_generator


def classifier_from_torch(task_model: torch.nn.Module) -> Classifier:
    """A Keras :class:`~electra.tf.modeling.Classifier` from a fine-tuned PyTorch ``TaskModel`` with a
    ``ClassificationHead``."""
    head = task_model.head
    style = "transformers" if head.dense is not None else "electra"
    keras_model = build(Classifier(task_model.encoder.config, head.num_labels, style, head.dropout.p,
                                   getattr(head, "pooling", "cls")))
    assign(keras_model, task_model.state_dict(), "PyTorch task model")
    return keras_model


def classifier_from_checkpoint(path: str | Path, num_labels: int, style: str = "electra",
                               dropout: float | None = None, pooling: str = "cls") -> Classifier:
    """A classifier whose encoder starts from a checkpoint's discriminator (the head freshly initialised)."""
    _, encoder, _ = ckpt.load_encoder_for_finetuning(path)
    model = build(Classifier(encoder.config, num_labels, style, dropout, pooling))
    assign(model, {f"encoder.{k}": v for k, v in encoder.state_dict().items()}, str(path), partial=True)
    return model
