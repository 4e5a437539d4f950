"""Conversion to and from ``transformers`` DeBERTa-v2/v3 checkpoints (``DebertaV2Model``, ``DebertaV2ForMaskedLM``).

Our :class:`electra.deberta.DebertaEncoder` holds the same tensors under other names: the mapping is the rename
table :data:`ENCODER_KEYS` / :data:`LAYER_KEYS` (no transposes, no fused projections). The generator head is
``DebertaV2ForMaskedLM``'s: the legacy ``cls.predictions`` (dense to the embedding size, activation, LayerNorm,
output tied to the word embeddings plus a bias), which exports write and transformers builds by default, or
the newer ``lm_predictions.lm_head`` (the same at embedding size = hidden size), which imports also read.

Import (:func:`import_deberta`): a DeBERTa directory becomes our discriminator body; the replaced-token head is
new (ours: dense -> GELU -> logit). The DeBERTa-v3 releases' own RTD head (``mask_predictions``: dense, GELU,
LayerNorm, classifier) has another layout and is dropped, as are the pooler and task heads (all reported). The
generator is a ``DebertaV2ForMaskedLM`` directory when one is given (its own embeddings: sharing nes, or es when
its word table equals the discriminator's), else made as :func:`electra.interop.hf_bert.import_bert` makes one
for BERT (``truncate``: the lowest blocks and, when present, the checkpoint's MLM head; ``new``).

Export: the discriminator as ``DebertaV2Model`` (our RTD head separately, :func:`rtd_head_state`, in ELECTRA's
``discriminator_predictions`` names), the generator as ``DebertaV2ForMaskedLM`` (legacy head).
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from electra.checkpoint import save_checkpoint
from electra.config import EncoderConfig, ModelConfig, check_field_types
from electra.errors import ElectraError
from electra.interop.hf import load_network, read_hf_dir
from electra.interop.hf_bert import checked_generator_shape, write_bert_tokenizer
from electra.modeling import Electra, merged_state_dict

# Our EncoderConfig field -> transformers DebertaV2Config field (the deberta-v2 ones have the same names).
CONFIG_FIELDS = {
    "vocab_size": "vocab_size", "hidden_size": "hidden_size", "num_layers": "num_hidden_layers",
    "num_heads": "num_attention_heads", "intermediate_size": "intermediate_size",
    "max_position_embeddings": "max_position_embeddings", "type_vocab_size": "type_vocab_size",
    "hidden_act": "hidden_act", "hidden_dropout": "hidden_dropout_prob",
    "attention_dropout": "attention_probs_dropout_prob", "layer_norm_eps": "layer_norm_eps",
    "initializer_range": "initializer_range", "pad_token_id": "pad_token_id", "embedding_size": "embedding_size",
    "relative_attention": "relative_attention", "max_relative_positions": "max_relative_positions",
    "position_buckets": "position_buckets", "position_biased_input": "position_biased_input",
    "norm_rel_ebd": "norm_rel_ebd", "share_att_key": "share_att_key",
}
REQUIRED = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
# transformers' defaults where its config.json omits a field (DebertaV2Config, getattr defaults of the model).
HF_DEFAULTS = {"type_vocab_size": 0, "layer_norm_eps": 1e-7, "relative_attention": False,
               "max_relative_positions": -1, "position_buckets": -1, "position_biased_input": True,
               "norm_rel_ebd": "none", "share_att_key": False, "hidden_act": "gelu", "max_position_embeddings": 512}
ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_new", "gelu_pytorch_tanh": "gelu_new"}

# Our key (relative to a DebertaEncoder) -> transformers key (relative to DebertaV2Model).
ENCODER_KEYS = {
    "embeddings.word_embeddings.weight": "embeddings.word_embeddings.weight",
    "embeddings.position_embeddings.weight": "embeddings.position_embeddings.weight",
    "embeddings.token_type_embeddings.weight": "embeddings.token_type_embeddings.weight",
    "embeddings.project.weight": "embeddings.embed_proj.weight",
    "embeddings.norm.weight": "embeddings.LayerNorm.weight",
    "embeddings.norm.bias": "embeddings.LayerNorm.bias",
    "rel_embeddings.weight": "encoder.rel_embeddings.weight",
    "rel_norm.weight": "encoder.LayerNorm.weight",
    "rel_norm.bias": "encoder.LayerNorm.bias",
}
LAYER_KEYS = {  # our module in layers.{i} -> transformers' in encoder.layer.{i}
    "attention.query_proj": "attention.self.query_proj",
    "attention.key_proj": "attention.self.key_proj",
    "attention.value_proj": "attention.self.value_proj",
    "attention.pos_key_proj": "attention.self.pos_key_proj",
    "attention.pos_query_proj": "attention.self.pos_query_proj",
    "attention.out": "attention.output.dense",
    "attention_norm": "attention.output.LayerNorm",
    "ffn_in": "intermediate.dense",
    "ffn_out": "output.dense",
    "ffn_norm": "output.LayerNorm",
}
MLM_HEADS = {  # layout -> our generator head key -> transformers key
    "legacy": {"head.dense.weight": "cls.predictions.transform.dense.weight",
               "head.dense.bias": "cls.predictions.transform.dense.bias",
               "head.norm.weight": "cls.predictions.transform.LayerNorm.weight",
               "head.norm.bias": "cls.predictions.transform.LayerNorm.bias",
               "head.bias": "cls.predictions.bias"},
    "lm_head": {"head.dense.weight": "lm_predictions.lm_head.dense.weight",
                "head.dense.bias": "lm_predictions.lm_head.dense.bias",
                "head.norm.weight": "lm_predictions.lm_head.LayerNorm.weight",
                "head.norm.bias": "lm_predictions.lm_head.LayerNorm.bias",
                "head.bias": "lm_predictions.lm_head.bias"},
}
RTD_HEAD_KEYS = {"head.dense": "discriminator_predictions.dense",
                 "head.out": "discriminator_predictions.dense_prediction"}


# ---- configs -----------------------------------------------------------------------------------------------------
def pos_att_type_from_hf(value: Any, source: str) -> str:
    """transformers' ``pos_att_type`` (a list, or an "a|b" string) as our "c2p|p2c"-style string."""
    if value is None:
        return ""
    items = [str(v).strip().lower() for v in value] if isinstance(value, (list, tuple)) else (
        [v.strip().lower() for v in str(value).split("|") if v.strip()])
    unknown = [v for v in items if v not in ("c2p", "p2c")]
    if unknown:
        raise ElectraError(f"{source}: pos_att_type entry {unknown[0]!r} is not supported (expected c2p and/or p2c)")
    return "|".join(dict.fromkeys(items))


def deberta_config_from_hf(hf: dict, source: str) -> EncoderConfig:
    """Our EncoderConfig from a transformers DeBERTa-v2 ``config.json``; anything we do not compute is refused in
    one line naming the option."""
    if hf.get("model_type", "deberta-v2") != "deberta-v2":
        raise ElectraError(f"{source}: model_type is {hf.get('model_type')!r}, expected 'deberta-v2'")
    for name in REQUIRED:
        if hf.get(name) is None:
            raise ElectraError(f"{source}: missing field {name!r}")
    if (hf.get("conv_kernel_size") or 0) > 0:
        raise ElectraError(f"{source}: conv_kernel_size {hf['conv_kernel_size']} is not supported (DeBERTa-v2's "
                           "convolution layer; expected 0 or absent)")
    heads, hidden = hf["num_attention_heads"], hf["hidden_size"]
    head_size = hf.get("attention_head_size")
    if head_size is not None and isinstance(heads, int) and head_size * heads != hidden:
        raise ElectraError(f"{source}: attention_head_size {head_size} is not supported (expected hidden_size / "
                           f"num_attention_heads = {hidden // max(heads, 1)})")
    act = hf.get("hidden_act", "gelu")
    if act not in ACTIVATIONS:
        raise ElectraError(f"{source}: hidden_act {act!r} is not supported (expected gelu or gelu_new)")
    norm = str(hf.get("norm_rel_ebd", "none")).lower()
    norm_items = {x.strip() for x in norm.split("|")} - {"none", ""}
    if norm_items - {"layer_norm"}:
        raise ElectraError(f"{source}: norm_rel_ebd {hf['norm_rel_ebd']!r} is not supported (expected none or "
                           "layer_norm)")
    relative = bool(hf.get("relative_attention", False))
    if not relative and (hf.get("position_buckets") or -1) > 0:
        raise ElectraError(f"{source}: position_buckets {hf['position_buckets']} without relative_attention is not "
                           "supported (expected relative_attention true)")
    values: dict[str, Any] = {}
    for ours, theirs in CONFIG_FIELDS.items():
        value = hf.get(theirs)
        if value is None:
            if theirs not in HF_DEFAULTS:
                continue
            value = HF_DEFAULTS[theirs]
        values[ours] = value
    values["hidden_act"] = ACTIVATIONS[act]
    values["norm_rel_ebd"] = "layer_norm" if norm_items else "none"
    values["pos_att_type"] = pos_att_type_from_hf(hf.get("pos_att_type"), source) if relative else ""
    values["architecture"] = "deberta-v2"
    values.setdefault("embedding_size", hidden)
    if not relative:  # transformers ignores these without relative attention
        values.update(norm_rel_ebd="none", share_att_key=False, position_buckets=-1)
        if hf.get("pos_att_type"):
            raise ElectraError(f"{source}: pos_att_type {hf['pos_att_type']!r} without relative_attention is not "
                               "supported (expected relative_attention true)")
    check_field_types(EncoderConfig, values, source)
    try:
        return EncoderConfig(**values)
    except ElectraError as e:
        raise ElectraError(f"{source}: {e}") from None


def hf_deberta_config(cfg: EncoderConfig, kind: str) -> dict[str, Any]:
    """transformers' ``config.json`` for our discriminator (``DebertaV2Model``) or generator
    (``DebertaV2ForMaskedLM``, legacy head)."""
    if cfg.architecture != "deberta-v2":
        raise ElectraError(f"architecture {cfg.architecture!r}: expected 'deberta-v2' for a DeBERTa export")
    out: dict[str, Any] = {theirs: getattr(cfg, ours) for ours, theirs in CONFIG_FIELDS.items()}
    out.update(
        model_type="deberta-v2",
        architectures=["DebertaV2Model" if kind == "discriminator" else "DebertaV2ForMaskedLM"],
        pos_att_type=cfg.pos_att_type or None,
        legacy=True,
        tie_word_embeddings=True,
    )
    return out


# ---- state dicts -------------------------------------------------------------------------------------------------
def hf_key(ours: str) -> str:
    """transformers' key (relative to DebertaV2Model) for our encoder key."""
    if ours in ENCODER_KEYS:
        return ENCODER_KEYS[ours]
    if ours.startswith("layers."):
        i, rest = ours[len("layers."):].split(".", 1)
        module, param = rest.rsplit(".", 1)
        if module in LAYER_KEYS:
            return f"encoder.layer.{i}.{LAYER_KEYS[module]}.{param}"
    raise ElectraError(f"no transformers name for our tensor {ours!r}")


def our_key(theirs: str) -> str | None:
    """Our encoder key for a DebertaV2Model key, or None when it is no part of our body."""
    inverse = {v: k for k, v in ENCODER_KEYS.items()}
    if theirs in inverse:
        return inverse[theirs]
    if theirs.startswith("encoder.layer."):
        i, rest = theirs[len("encoder.layer."):].split(".", 1)
        module, param = rest.rsplit(".", 1)
        for ours, hf in LAYER_KEYS.items():
            if hf == module:
                return f"layers.{i}.{ours}.{param}"
    return None


def strip_prefix(weights: dict[str, Tensor]) -> dict[str, Tensor]:
    """Keys without the ``deberta.`` prefix of the task classes."""
    return {k.removeprefix("deberta."): v for k, v in weights.items()}


def encoder_keys(cfg: EncoderConfig) -> list[str]:
    """Our encoder's state-dict keys for ``cfg`` (the module built on the meta device: no memory)."""
    from electra.deberta import DebertaEncoder

    with torch.device("meta"):
        return list(DebertaEncoder(cfg).state_dict())


def encoder_state_from_hf(weights: dict[str, Tensor], cfg: EncoderConfig, source: str,
                          num_layers: int | None = None) -> dict[str, Tensor]:
    """Our encoder's state dict (keys relative to the encoder) from DebertaV2 weights (with or without the
    ``deberta.`` prefix); ``num_layers``: only the lowest blocks. Missing tensors are one-line errors."""
    weights = strip_prefix(weights)
    if num_layers is not None:
        cfg = dataclasses.replace(cfg, num_layers=num_layers)
    out = {}
    for ours in encoder_keys(cfg):
        theirs = hf_key(ours)
        if theirs not in weights:
            raise ElectraError(f"{source}: missing tensor {theirs!r} (expected by its config)")
        out[ours] = weights[theirs]
    return out


def mlm_head_from_hf(weights: dict[str, Tensor]) -> tuple[dict[str, Tensor], str] | None:
    """Our generator head (``head.*``) from a DebertaV2ForMaskedLM's weights, and which layout it had ("legacy":
    ``cls.predictions``; "lm_head": ``lm_predictions.lm_head``); None when there is none."""
    for layout, keys in MLM_HEADS.items():
        if keys["head.dense.weight"] in weights:
            head = {ours: weights[theirs] for ours, theirs in keys.items() if theirs in weights}
            if "head.bias" not in head and layout == "legacy" and "cls.predictions.decoder.bias" in weights:
                head["head.bias"] = weights["cls.predictions.decoder.bias"]
            if len(head) != len(keys):
                missing = sorted(set(keys.values()) - set(weights))[0]
                raise ElectraError(f"MLM head: missing tensor {missing!r}")
            return head, layout
    return None


def hf_deberta_state(network: nn.Module, kind: str) -> dict[str, Tensor]:
    """Our Discriminator's body as ``DebertaV2Model`` keys, or our Generator as ``DebertaV2ForMaskedLM`` keys
    (``deberta.`` body + legacy ``cls.predictions`` head). GDES tables are written as the table read."""
    state = merged_state_dict(network)
    out: dict[str, Tensor] = {}
    prefix = "" if kind == "discriminator" else "deberta."
    for key, t in state.items():
        if key.startswith("encoder."):
            out[prefix + hf_key(key[len("encoder."):])] = t
    if kind == "generator":
        for ours, theirs in MLM_HEADS["legacy"].items():
            out[theirs] = state[ours]
    return {k: v.detach().clone().contiguous() for k, v in out.items()}


def rtd_head_state(network: nn.Module) -> dict[str, Tensor]:
    """Our discriminator's replaced-token head (no transformers class has it) in ELECTRA's names:
    ``discriminator_predictions.dense`` and ``.dense_prediction`` (weight, bias)."""
    state = network.state_dict()
    return {f"{theirs}.{p}": state[f"{ours}.{p}"].detach().clone().contiguous()
            for ours, theirs in RTD_HEAD_KEYS.items() for p in ("weight", "bias")}


# ---- import ------------------------------------------------------------------------------------------------------
@dataclass
class DebertaImportReport:
    source: str
    config: ModelConfig
    generator: str  # "directory <path>", "truncate", "new"
    generator_layers_copied: int = 0
    mlm_head: str = "absent"  # "copied (legacy|lm_head)", "absent" (new head), "unused"
    dropped: dict[str, int] = field(default_factory=dict)  # group -> number of tensors
    tokenizer: str = ""
    path: Path | None = None

    def format(self) -> str:
        d, g = self.config.discriminator, self.config.generator
        dropped = ", ".join(f"{k} ({n} tensors)" for k, n in self.dropped.items()) or "nothing"
        return (f"imported DeBERTa-v2 {self.source}: discriminator {d.num_layers} x {d.hidden_size} (body from the "
                f"checkpoint, detection head new); generator {g.num_layers} x {g.hidden_size} ({self.generator}: "
                f"{self.generator_layers_copied} block{'s' * (self.generator_layers_copied != 1)} copied, MLM head "
                f"{self.mlm_head}, embedding sharing {self.config.embedding_sharing}); dropped {dropped}; "
                f"tokenizer {self.tokenizer}")


def read_deberta_dir(directory: Path) -> tuple[EncoderConfig, dict[str, Tensor], str]:
    """(our config, weights without the ``deberta.`` prefix, config source) of a DeBERTa-v2 directory."""
    hf, raw = read_hf_dir(directory)
    source = str(directory / "config.json")
    if hf.get("model_type") != "deberta-v2":
        raise ElectraError(f"{source}: model_type {hf.get('model_type')!r} is not 'deberta-v2' (DeBERTa-v2/v3)")
    cfg = deberta_config_from_hf(hf, source)
    weights = strip_prefix(raw)
    table = weights.get("embeddings.word_embeddings.weight")
    if table is None:
        raise ElectraError(f"{directory}: missing tensor 'embeddings.word_embeddings.weight' (not a DeBERTa "
                           "checkpoint)")
    if table.shape[0] != cfg.vocab_size:
        raise ElectraError(f"{source}: vocab_size {cfg.vocab_size} but the word embeddings have {table.shape[0]} "
                           "rows; expected the same")
    return cfg, weights, source


def _dropped_group(key: str) -> str:
    if key.startswith("mask_predictions."):
        return "DeBERTa RTD head (mask_predictions)"
    if key.startswith("pooler."):
        return "pooler"
    if key.startswith(("cls.predictions.", "lm_predictions.")):
        return "MLM head"
    return "other: " + key.split(".")[0]


def _generator_config(disc: EncoderConfig, gen: EncoderConfig, source: str) -> ModelConfig:
    for f in ("vocab_size", "embedding_size", "max_position_embeddings", "type_vocab_size", "relative_attention",
              "max_relative_positions", "position_buckets", "position_biased_input", "pos_att_type", "norm_rel_ebd",
              "share_att_key", "hidden_act", "layer_norm_eps"):
        if getattr(gen, f) != getattr(disc, f):
            raise ElectraError(f"{source}: {f} {getattr(gen, f)!r} differs from the discriminator's "
                               f"{getattr(disc, f)!r}; expected the same")
    config = ModelConfig(discriminator=disc, generator_size=gen.hidden_size / disc.hidden_size,
                         generator_depth=gen.num_layers / disc.num_layers)
    derived = config.generator
    config = config.replace(
        generator_num_heads=None if derived.num_heads == gen.num_heads else gen.num_heads,
        generator_intermediate_size=None if derived.intermediate_size == gen.intermediate_size
        else gen.intermediate_size)
    if (config.generator.hidden_size, config.generator.num_layers) != (gen.hidden_size, gen.num_layers):
        raise ElectraError(f"{source}: a generator of {gen.num_layers} x {gen.hidden_size} has no exact fraction of "
                           f"the discriminator's {disc.num_layers} x {disc.hidden_size}")
    return config


def import_deberta(model_dir: str | Path, out: str | Path, generator_dir: str | Path | None = None,
                   generator_init: str = "truncate", generator_size: float | None = None,
                   generator_depth: float | None = None, seed: int = 0) -> DebertaImportReport:
    """Write one of our checkpoints (generator + discriminator + tokenizer) from a DeBERTa-v2/v3 directory
    (``DebertaV2Model`` or ``DebertaV2ForMaskedLM``) and, optionally, a generator directory
    (``DebertaV2ForMaskedLM``); without one the generator is made by ``generator_init`` as
    :func:`electra.interop.hf_bert.import_bert` does. Returns the report; ``report.path`` is the checkpoint."""
    model_dir = Path(model_dir)
    disc_cfg, weights, source = read_deberta_dir(model_dir)
    torch.manual_seed(seed)
    gen_weights = None
    if generator_dir is not None:
        generator_dir = Path(generator_dir)
        gen_cfg, gen_weights, gen_source = read_deberta_dir(generator_dir)
        config = _generator_config(disc_cfg, gen_cfg, gen_source)
        # es when what es shares is equal: the whole embeddings module at one width, else the word/position tables
        shared = ([k for k in weights if k.startswith("embeddings.") and k != "embeddings.position_ids"]
                  if gen_cfg.hidden_size == disc_cfg.hidden_size else
                  [f"embeddings.{t}_embeddings.weight" for t in ("word", "position")])
        same = all(k not in weights or (k in gen_weights and gen_weights[k].shape == weights[k].shape
                                        and torch.equal(gen_weights[k], weights[k])) for k in shared)
        config = config.replace(embedding_sharing="es" if same else "nes")
        report = DebertaImportReport(str(model_dir), config, f"directory {generator_dir}")
    else:
        generator_size, generator_depth = checked_generator_shape(generator_init, generator_size, generator_depth)
        config = ModelConfig(discriminator=disc_cfg, generator_size=generator_size, generator_depth=generator_depth)
        if generator_init == "truncate":  # the copied blocks keep their head count and FFN width
            config = config.replace(generator_num_heads=disc_cfg.num_heads,
                                    generator_intermediate_size=disc_cfg.intermediate_size)
        report = DebertaImportReport(str(model_dir), config, generator_init)
    model = Electra(config)

    body = encoder_state_from_hf(weights, disc_cfg, source)
    load_network(model.discriminator, {"encoder." + k: v for k, v in body.items()}, str(model_dir), partial=True)
    used = {hf_key(k) for k in body}
    head = mlm_head_from_hf(weights)
    if gen_weights is not None:
        gen_cfg = config.generator
        gen_body = {"encoder." + k: v for k, v in encoder_state_from_hf(gen_weights, gen_cfg, gen_source).items()}
        gen_head = mlm_head_from_hf(gen_weights)
        if gen_head is None:
            raise ElectraError(f"{generator_dir}: no MLM head (cls.predictions or lm_predictions); expected a "
                               "DebertaV2ForMaskedLM checkpoint as the generator")
        load_network(model.generator, {**gen_body, **gen_head[0]}, str(generator_dir), partial=True)
        report.generator_layers_copied = gen_cfg.num_layers
        report.mlm_head = f"copied ({gen_head[1]})"
        if head is not None:
            report.mlm_head += "; the discriminator directory's MLM head unused"
    elif generator_init == "truncate":
        gen_cfg = config.generator
        gen = {"encoder." + k: v for k, v in encoder_state_from_hf(weights, gen_cfg, source).items()
               if not k.startswith("embeddings.")}  # the embeddings are the discriminator's (es)
        report.generator_layers_copied = gen_cfg.num_layers
        if head is not None:
            gen.update(head[0])
            report.mlm_head = f"copied ({head[1]})"
            used |= set(MLM_HEADS[head[1]].values())
        load_network(model.generator, gen, str(model_dir), partial=True)
    elif head is not None:
        report.mlm_head = "unused"
    for k in sorted(set(weights) - used):
        if k in ("embeddings.position_ids", "cls.predictions.decoder.weight", "cls.predictions.decoder.bias"):
            continue  # a buffer, and tied copies of the word table and the bias
        group = _dropped_group(k)
        report.dropped[group] = report.dropped.get(group, 0) + 1
    staging = Path(tempfile.mkdtemp(prefix="electra-tok-"))
    try:
        report.tokenizer = write_deberta_tokenizer(model_dir, staging, disc_cfg.vocab_size)
        report.path = save_checkpoint(model, out, tokenizer_dir=staging, extra={"imported_from": {
            "deberta": str(model_dir), "generator": report.generator, "mlm_head": report.mlm_head,
            "dropped": report.dropped}})
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report


def write_deberta_tokenizer(model_dir: Path, out: Path, vocab_rows: int) -> str:
    """Our tokenizer directory from the checkpoint's ``tokenizer.json`` (as for BERT); a directory with only
    SentencePiece's ``spm.model`` (the DeBERTa-v3 releases) is refused with the conversion to run."""
    if not (model_dir / "tokenizer.json").is_file() and (model_dir / "spm.model").is_file():
        raise ElectraError(f"{model_dir}: only spm.model, no tokenizer.json; write one first: python -c \"from "
                           f"transformers import AutoTokenizer; AutoTokenizer.from_pretrained('{model_dir}')"
                           f".save_pretrained('{model_dir}')\" (needs sentencepiece)")
    return write_bert_tokenizer(model_dir, out, vocab_rows)
