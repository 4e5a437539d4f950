"""One entry for every transformers architecture we read and write: ``import-hf --model DIR`` reads config.json's
``model_type`` and hands DIR to that architecture's importer (:func:`import_model`); ``export --format hf`` writes
each network in the layout of its ``architecture`` (:func:`hf_layout`).

- electra: :func:`electra.interop.hf.import_hf` (DIR the discriminator, ``generator_dir`` the generator);
  exported as ``ElectraForPreTraining`` / ``ElectraForMaskedLM`` (our architecture "bert").
- bert: :func:`electra.interop.hf_bert.import_bert`; exported as electra (our bert body is ELECTRA's).
- roberta, xlm-roberta: :func:`electra.interop.hf_roberta.import_roberta`; exported as ``(XLM)RobertaModel`` with
  ``rtd_head.safetensors`` beside it / ``(XLM)RobertaForMaskedLM``.
- deberta-v2: ``electra.interop.hf_deberta.import_deberta`` (``generator_dir``: a DebertaV2ForMaskedLM); exported
  by that module's functions, the detection head beside in ``rtd_head.safetensors``.

A roberta network that transformers' classes cannot hold (an embedding projection: a generator narrower than the
shared embeddings) is written in ELECTRA's layout instead, which computes the same function (its positions count
from 0, as ours do).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from electra.config import EncoderConfig, read_json
from electra.errors import ElectraError
from electra.interop.hf import RTD_HEAD_FILE, import_hf, rtd_head_state, to_hf_config, to_hf_state_dict
from electra.interop.hf_bert import DEFAULT_GENERATOR_INIT, bert_source, import_bert
from electra.interop.hf_roberta import (
    fits_roberta,
    hf_roberta_config,
    hf_roberta_state,
    import_roberta,
)
from electra.tokenization import SpecialTokens

MODEL_TYPES = ("electra", "bert", "roberta", "xlm-roberta", "deberta-v2")
OWN_GENERATOR = ("electra", "deberta-v2")  # model types whose generator may come from its own directory


def read_model_type(directory: Path) -> str:
    """``model_type`` of a transformers directory's config.json (one-line errors when there is none)."""
    if not directory.is_dir():
        raise ElectraError(f"--model {directory}: not a directory")
    file = directory / "config.json"
    if not file.is_file():
        raise ElectraError(f"--model {directory}: no config.json (not a transformers checkpoint directory)")
    config = read_json(file, "config")
    if not isinstance(config, dict) or not isinstance(config.get("model_type"), str):
        raise ElectraError(f"{file}: no model_type; expected one of {', '.join(MODEL_TYPES)}")
    return config["model_type"]


def import_model(model_dir: str | Path, out: str | Path, *, generator_dir: str | Path | None = None,
                 generator_init: str | None = None, generator_size: float | None = None,
                 generator_depth: float | None = None, seed: int = 0) -> tuple[Path, str]:
    """Our checkpoint from a transformers directory of any supported ``model_type``; returns its path and a
    one-line report. ``generator_dir``: electra's generator, or deberta-v2's DebertaV2ForMaskedLM (bert and
    roberta build their generator from the body: ``generator_init`` new or truncate, ``generator_size`` and
    ``generator_depth`` its fractions, ``seed`` of the new weights)."""
    model_dir = bert_source(model_dir)  # a packaged encoder's name (all-MiniLM-L6-v2) or a directory
    model_type = read_model_type(model_dir)
    if model_type not in MODEL_TYPES:
        raise ElectraError(f"{model_dir / 'config.json'}: model_type {model_type!r} is not supported; --model reads "
                           f"{', '.join(MODEL_TYPES)}")
    if generator_dir is not None and model_type not in OWN_GENERATOR:
        raise ElectraError(f"--generator {generator_dir}: not supported for model_type {model_type!r} (its generator "
                           "is built from the body: --generator-init, --generator-size, --generator-depth)")
    shaped = generator_init is not None or generator_size is not None or generator_depth is not None
    if model_type == "electra":
        if shaped:
            raise ElectraError("--generator-size/--generator-depth/--generator-init: not for an ELECTRA checkpoint "
                               "(its generator is its own; give it with --generator)")
        path = import_hf(model_dir, out, generator_dir)
        pair = "" if generator_dir is None else f" + generator {generator_dir}"
        return path, f"imported ELECTRA discriminator {model_dir}{pair}"
    init = generator_init or DEFAULT_GENERATOR_INIT
    options: dict[str, Any] = dict(generator_init=init, generator_size=generator_size,
                                   generator_depth=generator_depth, seed=seed)
    if model_type == "bert":
        path, report = import_bert(model_dir, out, **options)
    elif model_type in ("roberta", "xlm-roberta"):
        path, report = import_roberta(model_dir, out, **options)
    else:
        from electra.interop.hf_deberta import import_deberta

        report = import_deberta(model_dir, out, generator_dir=generator_dir, **options)
        path = report.path
    return Path(path), report.format()


def hf_layout(network: torch.nn.Module, cfg: EncoderConfig, kind: str, roles: SpecialTokens | None
              ) -> tuple[dict[str, Any], dict[str, Tensor], dict[str, dict[str, Tensor]]]:
    """(config.json, model.safetensors tensors, {file name: tensors} written beside) for one network (``kind``
    discriminator or generator) in its architecture's transformers layout; ``roles``: the checkpoint tokenizer's
    special tokens (``pad_token_id`` from them)."""
    pad = cfg.pad_token_id if roles is None else roles.pad_id  # the tokenizer's, whatever the config was made with
    if cfg.architecture in ("roberta", "xlm-roberta") and fits_roberta(cfg):
        ends = (None, None) if roles is None else (roles.cls_id, roles.sep_id)
        config = hf_roberta_config(cfg, kind, pad, *ends)
        state = hf_roberta_state(network, kind, pad)
        beside = {RTD_HEAD_FILE: rtd_head_state(network)} if kind == "discriminator" else {}
        return config, state, beside
    if cfg.architecture == "deberta-v2":
        from electra.interop import hf_deberta

        config = {**hf_deberta.hf_deberta_config(cfg, kind), "pad_token_id": pad}
        beside = {RTD_HEAD_FILE: hf_deberta.rtd_head_state(network)} if kind == "discriminator" else {}
        return config, hf_deberta.hf_deberta_state(network, kind), beside
    return {**to_hf_config(cfg, kind), "pad_token_id": pad}, to_hf_state_dict(network, kind), {}


def exported_class(folder: Path) -> str:
    """The transformers class an export folder's config.json names (for messages)."""
    config = read_json(folder / "config.json", "config")
    return ", ".join(config.get("architectures") or []) if isinstance(config, dict) else "?"
