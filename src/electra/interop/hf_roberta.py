"""RoBERTa and XLM-RoBERTa checkpoints in and out: the BERT body (:class:`electra.modeling.Encoder`), with two
differences, both in the embeddings.

- Positions. RoBERTa numbers the real tokens from ``padding_idx + 1`` (``padding_idx`` = ``pad_token_id``, 1 in
  roberta-base and xlm-roberta-base): the first ``pad_token_id + 1`` rows of its position table are never read by
  a real token. An import drops them (514 rows become our 512, our position 0 their row 2); an export puts them
  back as zeros (transformers keeps the padding row at zero). Our positions count from 0 over every slot, so on a
  right-padded batch both compute the same hidden states at every real token (padding rows differ; masked out).
  The offset is the config's ``pad_token_id``, which must be the tokenizer's pad id (checked on import).
- Token types. RoBERTa has one (``type_vocab_size`` 1): segment ids are ignored, as our ``Embeddings`` does
  when its table has one row, so sentence-pair tasks run unchanged.

Import (:func:`import_roberta`): the weights are renamed into BERT's layout (``roberta.`` dropped, ``lm_head.dense``
/ ``layer_norm`` / ``bias`` as ``cls.predictions.*``, the position rows shifted) and
:func:`electra.interop.hf_bert.warm_start` does the rest as for BERT: the body becomes the discriminator, the
generator is new or the lowest blocks plus the MLM head (``truncate``), the detection head new, or ours again from
an ``rtd_head.safetensors`` beside the weights (what our export writes). Export (:func:`hf_roberta_config`,
:func:`hf_roberta_state`): the discriminator as ``RobertaModel`` / ``XLMRobertaModel``, its pooler (never
trained by ELECTRA; written so loading reports nothing missing) the identity and zero bias, so ``pooler_output`` =
tanh(first token's hidden state); the generator as ``RobertaForMaskedLM`` / ``XLMRobertaForMaskedLM``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from electra.config import EncoderConfig
from electra.errors import ElectraError
from electra.interop.hf import CONFIG_FIELDS, from_hf_config, read_hf_dir, to_hf_state_dict
from electra.interop.hf_bert import (
    DEFAULT_GENERATOR_INIT,
    BertImportReport,
    checked_generator_shape,
    warm_start,
)
from electra.tokenization import load_tokenizer, special_tokens

# model_type -> (the body's class, the masked-LM class, the name reports use)
CLASSES = {
    "roberta": ("RobertaModel", "RobertaForMaskedLM", "RoBERTa"),
    "xlm-roberta": ("XLMRobertaModel", "XLMRobertaForMaskedLM", "XLM-RoBERTa"),
}
# RoBERTa's MLM head key prefix -> BERT's (cls.predictions.*), which warm_start reads.
LM_HEAD_KEYS = {
    "lm_head.dense.": "cls.predictions.transform.dense.",
    "lm_head.layer_norm.": "cls.predictions.transform.LayerNorm.",
    "lm_head.decoder.": "cls.predictions.decoder.",
    "lm_head.bias": "cls.predictions.bias",
}
POSITIONS = "embeddings.position_embeddings.weight"


def position_offset(pad_token_id: int) -> int:
    """Rows of RoBERTa's position table before its first real position: ``padding_idx + 1``."""
    return pad_token_id + 1


def bert_layout(weights: dict[str, Tensor], offset: int) -> dict[str, Tensor]:
    """RoBERTa's tensors under BERT's names, the position table without its first ``offset`` rows."""
    out = {}
    for key, t in weights.items():
        key = key.removeprefix("roberta.")
        for theirs, bert in LM_HEAD_KEYS.items():
            if key.startswith(theirs):
                key = bert + key[len(theirs):]
                break
        out[key] = t[offset:] if key == POSITIONS else t
    return out


def roberta_encoder_config(hf: dict[str, Any], weights: dict[str, Tensor], source: str) -> EncoderConfig:
    """Our EncoderConfig for a (XLM-)RoBERTa ``config.json``: ``max_position_embeddings`` less the offset rows,
    ``architecture`` its model_type; the tables' sizes checked against the config."""
    model_type = hf.get("model_type")
    if model_type not in CLASSES:
        raise ElectraError(f"{source}: model_type {model_type!r}, expected one of {', '.join(CLASSES)}")
    pad = hf.get("pad_token_id")
    hf = {**hf, "pad_token_id": 1 if pad is None else pad}  # transformers' RobertaConfig default
    cfg = from_hf_config(hf, source, model_type=model_type)
    offset = position_offset(cfg.pad_token_id)
    for key, rows, field in (("embeddings.word_embeddings.weight", cfg.vocab_size, "vocab_size"),
                             (POSITIONS, cfg.max_position_embeddings, "max_position_embeddings")):
        table = weights.get(key, weights.get("roberta." + key))
        if table is None:
            raise ElectraError(f"{source}: missing tensor {key!r} (not a {CLASSES[model_type][2]} checkpoint)")
        if table.shape[0] != rows:
            raise ElectraError(f"{source}: {field} {rows} but {key} has {table.shape[0]} rows; expected the same")
    if cfg.max_position_embeddings <= offset:
        raise ElectraError(f"{source}: max_position_embeddings {cfg.max_position_embeddings}: expected more than "
                           f"pad_token_id + 1 = {offset} (real positions start after the padding id)")
    return dataclasses.replace(cfg, max_position_embeddings=cfg.max_position_embeddings - offset,
                               architecture=model_type)


def check_pad_id(directory: Path, pad_token_id: int, source: str) -> None:
    """config.json's ``pad_token_id`` (the position offset) must be the tokenizer's pad id."""
    if not (directory / "tokenizer.json").is_file():
        return  # warm_start names the missing tokenizer
    roles = special_tokens(load_tokenizer(directory / "tokenizer.json"))
    if roles.pad_id != pad_token_id:
        raise ElectraError(f"{source}: pad_token_id {pad_token_id} but the tokenizer's pad token "
                           f"{roles.tokens['pad']!r} is id {roles.pad_id} ({directory / 'tokenizer.json'}); expected "
                           "the same (positions start after the padding id)")


def import_roberta(model_dir: str | Path, out: str | Path, *, generator_size: float | None = None,
                   generator_depth: float | None = None, generator_init: str = DEFAULT_GENERATOR_INIT, seed: int = 0
                   ) -> tuple[Path, BertImportReport]:
    """Write one of our checkpoints from a RobertaModel / RobertaForMaskedLM (or XLM-R) directory, as
    :func:`electra.interop.hf_bert.import_bert` does for BERT (the same generator options and defaults)."""
    model_dir = Path(model_dir)
    shape = checked_generator_shape(generator_init, generator_size, generator_depth)
    hf_config, raw = read_hf_dir(model_dir)
    source = str(model_dir / "config.json")
    cfg = roberta_encoder_config(hf_config, raw, source)
    check_pad_id(model_dir, cfg.pad_token_id, source)
    weights = bert_layout(raw, position_offset(cfg.pad_token_id))
    return warm_start(model_dir, out, cfg, weights, shape, generator_init, seed,
                      architecture=CLASSES[cfg.architecture][2], meta_key=cfg.architecture)


# ---- export --------------------------------------------------------------------------------------------
def hf_roberta_config(cfg: EncoderConfig, kind: str, pad_token_id: int, bos_token_id: int | None = None,
                      eos_token_id: int | None = None) -> dict[str, Any]:
    """transformers' config.json for ``cfg`` (architecture roberta / xlm-roberta, embedding size = hidden size) as
    the body (discriminator) or the masked LM (generator), positions offset by ``pad_token_id + 1``."""
    body, mlm, _ = CLASSES[cfg.architecture]
    out = {theirs: getattr(cfg, ours) for ours, theirs in CONFIG_FIELDS.items() if ours != "embedding_size"}
    out.update(model_type=cfg.architecture, architectures=[body if kind == "discriminator" else mlm],
               max_position_embeddings=cfg.max_position_embeddings + position_offset(pad_token_id),
               pad_token_id=pad_token_id, tie_word_embeddings=True)
    for name, value in (("bos_token_id", bos_token_id), ("eos_token_id", eos_token_id)):
        if value is not None:
            out[name] = value
    return out


def hf_roberta_state(network: torch.nn.Module, kind: str, pad_token_id: int) -> dict[str, Tensor]:
    """Our Discriminator's body as a ``RobertaModel`` state dict (keys without prefix, the identity pooler), or our
    Generator as a ``RobertaForMaskedLM`` one (``roberta.`` + ``lm_head.*``); ``pad_token_id + 1`` zero rows
    before the position table."""
    electra = to_hf_state_dict(network, kind)
    prefix = "" if kind == "discriminator" else "roberta."
    out = {prefix + k.removeprefix("electra."): v for k, v in electra.items() if k.startswith("electra.")}
    table = out[prefix + POSITIONS]
    out[prefix + POSITIONS] = torch.cat([table.new_zeros(position_offset(pad_token_id), table.shape[1]), table])
    if kind == "discriminator":
        hidden = network.encoder.config.hidden_size
        out["pooler.dense.weight"] = torch.eye(hidden)
        out["pooler.dense.bias"] = torch.zeros(hidden)
    else:
        names = {"generator_predictions.dense.": "lm_head.dense.", "generator_predictions.LayerNorm.":
                 "lm_head.layer_norm.", "generator_lm_head.bias": "lm_head.bias"}
        for key, t in electra.items():
            for theirs, ours in names.items():
                if key.startswith(theirs):
                    out[ours + key[len(theirs):]] = t
    return out


def fits_roberta(cfg: EncoderConfig) -> bool:
    """Whether transformers' RoBERTa classes can hold ``cfg``'s network: no projection from a smaller embedding
    (a generator made narrower than the embeddings, or a from-scratch roberta model with its own embedding size)."""
    return cfg.embedding_size == cfg.hidden_size
