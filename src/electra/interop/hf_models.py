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

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor

from electra.checkpoint import (
    check_tokenizer_fits,
    load_checkpoint,
    read_checkpoint_meta,
    resolve_checkpoint,
    tokenizer_dir,
)
from electra.config import EncoderConfig, read_json
from electra.errors import ElectraError
from electra.files import atomic_directory
from electra.interop import hf_deberta
from electra.interop.hf import (
    EXPORT_KINDS,
    RTD_HEAD_FILE,
    import_hf,
    rtd_head_state,
    to_hf_config,
    to_hf_state_dict,
)
from electra.interop.hf_bert import DEFAULT_GENERATOR_INIT, bert_source, import_bert
from electra.interop.hf_roberta import (
    fits_roberta,
    hf_roberta_config,
    hf_roberta_state,
    import_roberta,
)
from electra.tokenization import SpecialTokens, load_tokenizer, save_tokenizer, special_tokens

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
        report = hf_deberta.import_deberta(model_dir, out, generator_dir=generator_dir, **options)
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
        config = {**hf_deberta.hf_deberta_config(cfg, kind), "pad_token_id": pad}
        beside = {RTD_HEAD_FILE: hf_deberta.rtd_head_state(network)} if kind == "discriminator" else {}
        return config, hf_deberta.hf_deberta_state(network, kind), beside
    return {**to_hf_config(cfg, kind), "pad_token_id": pad}, to_hf_state_dict(network, kind), {}


def exported_class(folder: Path) -> str:
    """The transformers class an export folder's config.json names (for messages)."""
    config = read_json(folder / "config.json", "config")
    return ", ".join(config.get("architectures") or []) if isinstance(config, dict) else "?"


def export_hf(checkpoint: str | Path, out: str | Path) -> Path:
    """Write ``out/discriminator`` and ``out/generator`` in the transformers layout of the checkpoint's
    architecture (:func:`electra.interop.hf_models.hf_layout`): bert as ``ElectraForPreTraining``/``ForMaskedLM``;
    roberta / xlm-roberta as ``(XLM)RobertaModel`` (+ ``rtd_head.safetensors``) / ``(XLM)RobertaForMaskedLM``;
    deberta-v2 as ``electra.interop.hf_deberta`` writes it. Each gets the checkpoint's tokenizer files
    (:func:`electra.tokenization.save_tokenizer`: its special-token roles in ``special_tokens_map.json``, so
    ``AutoTokenizer`` encodes as we do) and ``pad_token_id`` from its roles.

    ``out`` is written as a whole, atomically (a temporary sibling, then a rename): an existing export there is
    replaced, anything else is refused, and a failed write leaves it as it was."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ElectraError(f"--out {out}: exists and is not a folder; expected a new or an export folder")
    if out.is_dir() and (other := sorted(p.name for p in out.iterdir() if p.name not in EXPORT_KINDS)):
        raise ElectraError(f"--out {out}: holds other files ({', '.join(other[:3])}); expected a new or an export "
                           "folder (discriminator/, generator/)")
    checkpoint = resolve_checkpoint(checkpoint)
    meta = read_checkpoint_meta(checkpoint)
    model = load_checkpoint(checkpoint)
    tok_dir = tokenizer_dir(checkpoint)
    tok = None if tok_dir is None else load_tokenizer(tok_dir)
    if tok is not None:
        check_tokenizer_fits(tok, model.config.discriminator.vocab_size, tok_dir, checkpoint)
    kinds = ["discriminator"] + (["generator"] if meta.get("has_generator", True) else [])
    roles = None if tok is None else special_tokens(tok)
    with atomic_directory(out, "export") as tmp:
        for kind in kinds:
            network = getattr(model, kind)
            target = tmp / kind
            target.mkdir()
            cfg = model.config.discriminator if kind == "discriminator" else model.config.generator
            hf_config, state, beside = hf_layout(network, cfg, kind, roles)
            (target / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")
            save_file(state, str(target / "model.safetensors"), metadata={"format": "pt"})
            for name, tensors in beside.items():
                save_file(tensors, str(target / name), metadata={"format": "pt"})
            if tok is not None:
                save_tokenizer(tok, target)
                if cfg.type_vocab_size == 1:  # one token type (RoBERTa's): AutoTokenizer gives no segment ids
                    _drop_token_type_ids(target / "tokenizer_config.json")
    return out


def _drop_token_type_ids(file: Path) -> None:
    """A tokenizer_config.json's ``model_input_names`` without ``token_type_ids``, as RobertaTokenizer's (segment 1
    of a pair would index past a one-row token-type table)."""
    settings = json.loads(file.read_text())
    settings["model_input_names"] = ["input_ids", "attention_mask"]
    file.write_text(json.dumps(settings, indent=2) + "\n")
