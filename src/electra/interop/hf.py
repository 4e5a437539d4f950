"""Conversion to and from Hugging Face ``transformers`` ELECTRA checkpoints (config.json + safetensors).

``transformers`` is not needed for either direction: the mapping is a rename table plus the split of our
fused query/key/value projection into ``query``, ``key`` and ``value``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

from electra.checkpoint import (
    save_checkpoint,
)
from electra.config import EncoderConfig, ModelConfig, check_field_types, read_json
from electra.errors import ElectraError
from electra.modeling import Electra

EXPORT_KINDS = ("discriminator", "generator")
# Our detection head beside an export whose transformers class has none (RobertaModel, DebertaV2Model), in
# ELECTRA's names (discriminator_predictions.*): a re-import with `import-hf --model` restores it.
RTD_HEAD_FILE = "rtd_head.safetensors"
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")

# Our EncoderConfig field -> transformers ElectraConfig field.
CONFIG_FIELDS = {
    "vocab_size": "vocab_size",
    "embedding_size": "embedding_size",
    "hidden_size": "hidden_size",
    "num_layers": "num_hidden_layers",
    "num_heads": "num_attention_heads",
    "intermediate_size": "intermediate_size",
    "max_position_embeddings": "max_position_embeddings",
    "type_vocab_size": "type_vocab_size",
    "hidden_act": "hidden_act",
    "hidden_dropout": "hidden_dropout_prob",
    "attention_dropout": "attention_probs_dropout_prob",
    "layer_norm_eps": "layer_norm_eps",
    "initializer_range": "initializer_range",
    "pad_token_id": "pad_token_id",
}

# Our key (relative to an Encoder) -> transformers key (relative to ElectraModel, prefix "electra.").
ENCODER_KEYS = {
    "embeddings.word_embeddings.weight": "embeddings.word_embeddings.weight",
    "embeddings.position_embeddings.weight": "embeddings.position_embeddings.weight",
    "embeddings.token_type_embeddings.weight": "embeddings.token_type_embeddings.weight",
    "embeddings.norm.weight": "embeddings.LayerNorm.weight",
    "embeddings.norm.bias": "embeddings.LayerNorm.bias",
    "project.weight": "embeddings_project.weight",
    "project.bias": "embeddings_project.bias",
}
LAYER_KEYS = {
    "attention.out": "attention.output.dense",
    "attention_norm": "attention.output.LayerNorm",
    "ffn_in": "intermediate.dense",
    "ffn_out": "output.dense",
    "ffn_norm": "output.LayerNorm",
}
HEAD_KEYS = {
    "discriminator": {"head.dense": "discriminator_predictions.dense",
                      "head.out": "discriminator_predictions.dense_prediction"},
    "generator": {"head.dense": "generator_predictions.dense",
                  "head.norm": "generator_predictions.LayerNorm"},
}


# ---- state dicts --------------------------------------------------------------------------------------
def to_hf_state_dict(network: torch.nn.Module, kind: str) -> dict[str, Tensor]:
    """Our Generator/Discriminator state dict in transformers' ``ElectraForMaskedLM``/``ForPreTraining`` keys."""
    ours = network.state_dict()
    out: dict[str, Tensor] = {}
    for key, t in ours.items():
        if key.startswith("encoder.layers."):
            i, rest = key[len("encoder.layers."):].split(".", 1)
            prefix = f"electra.encoder.layer.{i}."
            if rest.startswith("attention.qkv."):
                param = rest.rsplit(".", 1)[1]
                for name, part in zip(("query", "key", "value"), t.chunk(3, dim=0)):
                    out[f"{prefix}attention.self.{name}.{param}"] = part
                continue
            module, param = rest.rsplit(".", 1)
            out[prefix + LAYER_KEYS[module] + "." + param] = t
        elif key.startswith("encoder."):
            out["electra." + ENCODER_KEYS[key[len("encoder."):]]] = t
        elif key == "head.bias":
            out["generator_lm_head.bias"] = t
        else:
            module, param = key.rsplit(".", 1)
            out[HEAD_KEYS[kind][module] + "." + param] = t
    return {k: v.detach().clone().contiguous() for k, v in out.items()}


def from_hf_state_dict(hf: dict[str, Tensor], kind: str, num_layers: int, source: str) -> dict[str, Tensor]:
    """The inverse of :func:`to_hf_state_dict`; errors name the missing transformers key."""
    hf = {(k if k.startswith(("electra.", "generator_", "discriminator_")) else "electra." + k): v
          for k, v in hf.items()}
    take = _taker(hf, source)
    out = encoder_from_hf(hf, num_layers, source, prefix="electra.")
    for ours, theirs in HEAD_KEYS[kind].items():
        for param in ("weight", "bias"):
            out[f"{ours}.{param}"] = take(f"{theirs}.{param}")
    if kind == "generator":
        out["head.bias"] = take("generator_lm_head.bias")
    return out


def encoder_from_hf(hf: dict[str, Tensor], num_layers: int, source: str, prefix: str = "",
                    target: str = "encoder.") -> dict[str, Tensor]:
    """Our ``Encoder`` keys (under ``target``) from an ``ElectraModel``/``BertModel`` state dict whose keys
    start with ``prefix``: the same names, with query/key/value fused into one projection."""
    take = _taker(hf, source)
    out: dict[str, Tensor] = {}
    for ours, theirs in ENCODER_KEYS.items():
        if ours.startswith("project.") and prefix + theirs not in hf:
            continue
        out[target + ours] = take(prefix + theirs)
    for i in range(num_layers):
        layer = f"{prefix}encoder.layer.{i}."
        for param in ("weight", "bias"):
            out[f"{target}layers.{i}.attention.qkv.{param}"] = torch.cat(
                [take(f"{layer}attention.self.{n}.{param}") for n in ("query", "key", "value")])
            for ours, theirs in LAYER_KEYS.items():
                out[f"{target}layers.{i}.{ours}.{param}"] = take(layer + theirs + "." + param)
    return out


def rtd_head_state(network: torch.nn.Module) -> dict[str, Tensor]:
    """A Discriminator's detection head in ``ElectraForPreTraining``'s names (what :data:`RTD_HEAD_FILE` holds)."""
    head = {f"head.{k}": v for k, v in network.head.state_dict().items()}
    out: dict[str, Tensor] = {}
    for key, t in head.items():
        module, param = key.rsplit(".", 1)
        out[HEAD_KEYS["discriminator"][module] + "." + param] = t.detach().clone().contiguous()
    return out


def read_rtd_head(directory: str | Path) -> dict[str, Tensor] | None:
    """Our ``head.*`` keys from ``directory``'s :data:`RTD_HEAD_FILE`, or None when it has none."""
    file = Path(directory) / RTD_HEAD_FILE
    if not file.is_file():
        return None
    try:
        hf = load_file(str(file))
    except (SafetensorError, OSError, ValueError) as e:
        raise ElectraError(f"{file}: unreadable weights ({e})") from None
    take = _taker(hf, str(file))
    return {f"{ours}.{param}": take(f"{theirs}.{param}")
            for ours, theirs in HEAD_KEYS["discriminator"].items() for param in ("weight", "bias")}


def _taker(hf: dict[str, Tensor], source: str):  # noqa: ANN202
    def take(key: str) -> Tensor:
        if key not in hf:
            raise ElectraError(f"{source}: missing tensor {key!r}")
        return hf[key]

    return take


# ---- configs ------------------------------------------------------------------------------------------
def to_hf_config(cfg: EncoderConfig, kind: str) -> dict[str, Any]:
    out = {theirs: getattr(cfg, ours) for ours, theirs in CONFIG_FIELDS.items()}
    out.update(
        model_type="electra",
        architectures=["ElectraForPreTraining" if kind == "discriminator" else "ElectraForMaskedLM"],
        position_embedding_type="absolute",
        tie_word_embeddings=True,
    )
    return out


def from_hf_config(hf: dict[str, Any], source: str, model_type: str = "electra") -> EncoderConfig:
    """Our EncoderConfig from a transformers ``config.json`` of ``model_type`` ("electra", or "bert", "roberta",
    "xlm-roberta": the same fields, embedding size = hidden size)."""
    if hf.get("model_type", model_type) != model_type:
        raise ElectraError(f"{source}: model_type is {hf.get('model_type')!r}, expected {model_type!r}")
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise ElectraError(f"{source}: position_embedding_type {hf['position_embedding_type']!r} is not "
                           "supported (only 'absolute')")
    values: dict[str, Any] = {}
    for ours, theirs in CONFIG_FIELDS.items():
        if theirs in hf and hf[theirs] is not None:
            values[ours] = hf[theirs]
        elif ours in ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size"):
            raise ElectraError(f"{source}: missing field {theirs!r}")
    if model_type in ("bert", "roberta", "xlm-roberta"):  # no embedding size of their own
        values.pop("embedding_size", None)
    check_field_types(EncoderConfig, values, source)
    values.setdefault("embedding_size", values["hidden_size"])
    if values.get("hidden_act") == "gelu_pytorch_tanh":
        values["hidden_act"] = "gelu_new"
    if values.get("pad_token_id") is None:
        values["pad_token_id"] = 0
    try:
        return EncoderConfig(**values)
    except ElectraError as e:
        raise ElectraError(f"{source}: {e}") from None


def combine_configs(disc: EncoderConfig, gen: EncoderConfig | None, tie: bool) -> ModelConfig:
    """Our ModelConfig that reproduces a transformers discriminator (+ generator) pair exactly."""
    if gen is None:
        return ModelConfig(discriminator=disc)
    for f in ("vocab_size", "embedding_size", "max_position_embeddings", "type_vocab_size"):
        if getattr(gen, f) != getattr(disc, f):
            raise ElectraError(f"generator config: {f} {getattr(gen, f)} differs from the discriminator's "
                               f"{getattr(disc, f)}; expected the same")
    config = ModelConfig(discriminator=disc, generator_size=gen.hidden_size / disc.hidden_size,
                         generator_depth=gen.num_layers / disc.num_layers,
                         embedding_sharing="es" if tie else "nes")
    derived = config.generator
    return config.replace(
        generator_num_heads=None if derived.num_heads == gen.num_heads else gen.num_heads,
        generator_intermediate_size=(None if derived.intermediate_size == gen.intermediate_size
                                     else gen.intermediate_size),
    )


# ---- directories --------------------------------------------------------------------------------------
def read_hf_dir(directory: str | Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """config.json and weights (model.safetensors, or pytorch_model.bin loaded with weights_only)."""
    directory = Path(directory)
    cfg_file = directory / "config.json"
    if not directory.is_dir():
        raise ElectraError(f"{directory}: not a directory")
    if not cfg_file.is_file():
        raise ElectraError(f"{directory}: no config.json (not a transformers checkpoint directory)")
    config = read_json(cfg_file, "config")
    if not isinstance(config, dict):
        raise ElectraError(f"{cfg_file}: expected a JSON object")
    st, pt = directory / "model.safetensors", directory / "pytorch_model.bin"
    try:
        if st.is_file():
            weights = load_file(str(st))
        elif pt.is_file():
            weights = torch.load(pt, map_location="cpu", weights_only=True)
        else:
            raise ElectraError(f"{directory}: no model.safetensors or pytorch_model.bin")
    except (SafetensorError, OSError, RuntimeError, ValueError) as e:
        raise ElectraError(f"{directory}: unreadable weights ({e})") from None
    return config, weights


def electra_from_hf(disc_dir: str | Path, gen_dir: str | Path | None = None) -> tuple[Electra, bool]:
    """Build our model from transformers checkpoint directories; returns (model, has_generator)."""
    disc_hf, disc_w = read_hf_dir(disc_dir)
    disc_cfg = from_hf_config(disc_hf, f"{disc_dir}/config.json")
    gen_cfg = gen_w = None
    if gen_dir is not None:
        gen_hf, gen_w = read_hf_dir(gen_dir)
        gen_cfg = from_hf_config(gen_hf, f"{gen_dir}/config.json")
    disc_sd = from_hf_state_dict(disc_w, "discriminator", disc_cfg.num_layers, str(disc_dir))
    gen_sd = (from_hf_state_dict(gen_w, "generator", gen_cfg.num_layers, str(gen_dir))
              if gen_cfg is not None else None)
    tie = gen_sd is not None and all(
        torch.equal(gen_sd[k], disc_sd[k]) for k in disc_sd if k.startswith("encoder.embeddings."))
    model = Electra(combine_configs(disc_cfg, gen_cfg, tie))
    load_network(model.discriminator, disc_sd, str(disc_dir))
    if gen_sd is not None:
        load_network(model.generator, gen_sd, str(gen_dir))
    return model, gen_sd is not None


def load_network(network: torch.nn.Module, sd: dict[str, Tensor], source: str, partial: bool = False) -> None:
    """Copy ``sd`` into ``network``, checking every name and shape; ``partial``: ``sd`` may cover only some keys
    (the rest keep their initialisation)."""
    expected = network.state_dict()
    for k, v in sd.items():
        if k not in expected:
            raise ElectraError(f"{source}: tensor {k!r} does not fit this config")
        if v.shape != expected[k].shape:
            raise ElectraError(f"{source}: tensor {k!r} has shape {tuple(v.shape)}, config expects "
                               f"{tuple(expected[k].shape)}")
    missing = set(expected) - set(sd)
    if missing and not partial:
        raise ElectraError(f"{source}: missing tensor {sorted(missing)[0]!r}")
    network.load_state_dict(sd, strict=not partial)


def import_hf(disc_dir: str | Path, out: str | Path, gen_dir: str | Path | None = None) -> Path:
    """Turn transformers ELECTRA directories into one of our checkpoints, tokenizer files included."""
    model, has_generator = electra_from_hf(disc_dir, gen_dir)
    tok_sources = [Path(d) for d in (disc_dir, gen_dir) if d is not None]
    found = {}
    for d in tok_sources:
        for name in TOKENIZER_FILES:
            if (d / name).is_file() and name not in found:
                found[name] = d / name
    staging = None
    if "vocab.txt" in found or "tokenizer.json" in found:
        import tempfile

        staging = Path(tempfile.mkdtemp(prefix="electra-tok-"))
        for name, src in found.items():
            shutil.copy2(src, staging / name)
    try:
        return save_checkpoint(model, out, tokenizer_dir=staging, has_generator=has_generator,
                               extra={"imported_from": {"discriminator": str(disc_dir),
                                                        "generator": None if gen_dir is None else str(gen_dir)}})
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
