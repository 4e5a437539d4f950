"""Model configuration and the paper's presets (Clark et al. 2020, Table 6), loadable from TOML or JSON."""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from electra.errors import ElectraError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


# ---- validation rules: each config dataclass declares RULES (field -> Rule) next to its fields ----------------
@dataclass(frozen=True)
class Rule:
    """What a field's value must satisfy: ``ok(value)``, described as ``expected`` in the error message."""

    expected: str
    ok: Callable[[Any], bool]

    def optional(self) -> Rule:
        """The same rule, with ``None`` also allowed (meaning: the default / off)."""
        return Rule(f"{self.expected} or none", lambda v: v is None or self.ok(v))


def _finite(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def at_least(n: float) -> Rule:
    return Rule(f"a number >= {n:g}", lambda v: _finite(v) and v >= n)


def positive() -> Rule:
    return Rule("a number > 0", lambda v: _finite(v) and v > 0)


def interval(lo: float, hi: float, closed: str = "[]") -> Rule:
    """``lo .. hi`` with ``closed`` saying which ends belong to it: "[]", "[)", "(]" or "()"."""
    left, right = closed
    text = f"a number in {left}{lo:g}, {hi:g}{right}"
    return Rule(text, lambda v: _finite(v) and (v >= lo if left == "[" else v > lo)
                and (v <= hi if right == "]" else v < hi))


def one_of(*choices: Any) -> Rule:
    return Rule("one of " + ", ".join(map(repr, choices)), lambda v: v in choices)


def matches(pattern: str, description: str) -> Rule:
    return Rule(description, lambda v: isinstance(v, str) and re.fullmatch(pattern, v) is not None)


def existing_file() -> Rule:
    return Rule("an existing file (or empty: none)", lambda v: not v or Path(v).is_file())


def existing_folder() -> Rule:
    return Rule("an existing folder", lambda v: bool(v) and Path(v).is_dir())


def existing_path() -> Rule:
    return Rule("an existing file or folder (or empty: none)", lambda v: not v or Path(v).exists())


def not_a_file() -> Rule:
    return Rule("a folder path (not an existing file)", lambda v: not v or not Path(v).is_file())


DEVICE = matches(r"auto|cpu|mps|xpu|cuda(:\d+)?", "auto, cpu, cuda or cuda:N")


def check_values(kind: str, values: Mapping[str, Any], rules: Mapping[str, Rule]) -> None:
    """Raise one ``ElectraError`` naming the first value that breaks its rule, the value and the expectation."""
    for name, rule in rules.items():
        if name in values and not rule.ok(values[name]):
            raise ElectraError(f"{kind} {name} = {values[name]!r}: expected {rule.expected}")


def validate(obj: Any) -> None:
    """Check a config dataclass: field types from the annotations, then the class's ``RULES``."""
    values = {f.name: getattr(obj, f.name) for f in fields(obj)}
    kind = getattr(obj, "KIND", type(obj).__name__)
    check_field_types(type(obj), values, kind, sep=" ")
    check_values(kind, values, getattr(obj, "RULES", {}))


ARCHITECTURES = ("bert", "roberta", "xlm-roberta", "deberta-v2")
# The deberta-v2 fields of EncoderConfig and their defaults (off): any other value needs that architecture.
DEBERTA_DEFAULTS = {"relative_attention": False, "max_relative_positions": -1, "position_buckets": -1,
                    "position_biased_input": True, "pos_att_type": "", "norm_rel_ebd": "none", "share_att_key": False}
EMBEDDING_SHARING = ("es", "nes", "gdes")


@dataclass(frozen=True)
class EncoderConfig:
    """Shape of one Transformer encoder (the discriminator, or the generator derived from it)."""

    vocab_size: int = 30522
    embedding_size: int = 128
    hidden_size: int = 256
    num_layers: int = 12
    num_heads: int = 4
    intermediate_size: int = 1024
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    hidden_act: str = "gelu"  # "gelu" (erf, as transformers) or "gelu_new" (tanh approximation, as the TF code)
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    pad_token_id: int = 0
    # The body: "bert" (BERT / ELECTRA; RoBERTa and XLM-R import into it, positions shifted by pad + 1, and
    # export back to their own layout) or "deberta-v2" (DeBERTa-v2/v3: disentangled attention, the fields below).
    architecture: str = "bert"
    relative_attention: bool = False  # deberta-v2: relative-position (disentangled) attention terms
    max_relative_positions: int = -1  # deberta-v2: the attention span; < 1 means max_position_embeddings
    position_buckets: int = -1  # deberta-v2: log-bucketed relative positions (v3: 256); < 1: none
    position_biased_input: bool = True  # deberta-v2: add absolute position embeddings to the input (v3: false)
    pos_att_type: str = ""  # deberta-v2: "c2p", "p2c" or "c2p|p2c" (v3: "p2c|c2p")
    norm_rel_ebd: str = "none"  # deberta-v2: "layer_norm" normalises the relative embeddings (v3)
    share_att_key: bool = False  # deberta-v2: position projections reuse the content key/query (v3: true)

    KIND: ClassVar[str] = "model field"
    RULES: ClassVar[dict[str, Rule]] = {
        "vocab_size": at_least(1), "embedding_size": at_least(1), "hidden_size": at_least(1),
        "num_layers": at_least(1), "num_heads": at_least(1), "intermediate_size": at_least(1),
        "max_position_embeddings": at_least(1), "type_vocab_size": at_least(0),
        "hidden_act": one_of("gelu", "gelu_new"), "hidden_dropout": interval(0, 1, "[)"),
        "attention_dropout": interval(0, 1, "[)"), "layer_norm_eps": positive(), "initializer_range": positive(),
        "pad_token_id": at_least(0), "architecture": one_of(*ARCHITECTURES),
        "pos_att_type": one_of("", "c2p", "p2c", "c2p|p2c", "p2c|c2p"), "norm_rel_ebd": one_of("none", "layer_norm"),
    }

    def __post_init__(self) -> None:
        validate(self)
        self._check_deberta()
        if self.type_vocab_size < 1 and self.architecture != "deberta-v2":
            raise ElectraError(f"model field type_vocab_size = {self.type_vocab_size}: expected a number >= 1 "
                               f"(only deberta-v2 has no token types)")
        if self.hidden_size % self.num_heads:
            raise ElectraError(f"model field hidden_size = {self.hidden_size}: expected a multiple of num_heads "
                               f"{self.num_heads}")
        if self.pad_token_id >= self.vocab_size:
            raise ElectraError(f"model field pad_token_id = {self.pad_token_id}: expected below vocab_size "
                               f"{self.vocab_size}")
        if (n := self.num_parameters()) > MAX_PARAMETERS:
            raise ElectraError(f"model fields ask for {n:,.0f} parameters (vocab_size {self.vocab_size}, hidden_size "
                               f"{self.hidden_size}, num_layers {self.num_layers}, intermediate_size "
                               f"{self.intermediate_size}): expected at most {MAX_PARAMETERS:,}")

    def num_parameters(self) -> int:
        """Parameters of an encoder of this shape (embeddings, projection, layers), computed without building it."""
        e, h, f = self.embedding_size, self.hidden_size, self.intermediate_size
        layer = 4 * h * h + 4 * h + 2 * h * f + f + h + 4 * h
        if self.architecture == "deberta-v2":
            return self._deberta_parameters(layer)
        embeddings = (self.vocab_size + self.max_position_embeddings + self.type_vocab_size + 2) * e
        project = (e * h + h) if e != h else 0
        return embeddings + project + self.num_layers * layer

    def _deberta_parameters(self, layer: int) -> int:
        """deberta-v2: positions only when biased input, no token types at 0, the projection (no bias) before a
        LayerNorm at the hidden size, relative embeddings (2 x span rows, + LayerNorm) and position projections."""
        e, h = self.embedding_size, self.hidden_size
        positions = self.max_position_embeddings if self.position_biased_input else 0
        embeddings = (self.vocab_size + positions + self.type_vocab_size) * e + 2 * h + (e * h if e != h else 0)
        relative = 0
        if self.relative_attention:
            span = self.position_buckets if self.position_buckets > 0 else (
                self.max_relative_positions if self.max_relative_positions >= 1 else self.max_position_embeddings)
            relative = 2 * span * h + (2 * h if self.norm_rel_ebd == "layer_norm" else 0)
            if not self.share_att_key:
                layer += len({t for t in self.pos_att_type.split("|") if t}) * (h * h + h)
        return embeddings + relative + self.num_layers * layer

    def _check_deberta(self) -> None:
        """One-line errors for deberta-v2 fields that are set on another body or contradict each other."""
        fields_set = [f for f, default in DEBERTA_DEFAULTS.items() if getattr(self, f) != default]
        if self.architecture != "deberta-v2":
            if fields_set:
                raise ElectraError(f"model field {fields_set[0]} = {getattr(self, fields_set[0])!r}: a deberta-v2 "
                                   f"field; expected architecture 'deberta-v2' (got {self.architecture!r})")
            return
        if not self.relative_attention:
            needing = [f for f in ("position_buckets", "pos_att_type", "norm_rel_ebd", "share_att_key")
                       if f in fields_set]
            if needing:
                raise ElectraError(f"model field {needing[0]} = {getattr(self, needing[0])!r}: expected "
                                   "relative_attention = true with it (deberta-v2)")
        elif not self.pos_att_type:
            raise ElectraError("model field pos_att_type = '': relative_attention needs 'c2p', 'p2c' or both")
        span = self.max_relative_positions if self.max_relative_positions >= 1 else self.max_position_embeddings
        if self.relative_attention and self.position_buckets > 0 and span - 1 <= self.position_buckets // 2:
            raise ElectraError(f"model field max_relative_positions = {self.max_relative_positions}: log buckets "
                               f"need a maximum distance above position_buckets / 2 + 1 "
                               f"({self.position_buckets // 2 + 1}); got {span}")

    @classmethod
    def from_dict(cls, data: Any, source: str = "config") -> EncoderConfig:
        """Build from a dict (e.g. a saved ``config.json``'s ``model``), with one-line errors naming ``source``."""
        if not isinstance(data, dict):
            raise ElectraError(f"{source}: expected an object of model fields, got {type(data).__name__}")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ElectraError(f"{source}: unknown field(s) {', '.join(map(str, unknown))}")
        check_field_types(cls, data, source)
        try:
            return cls(**data)
        except ElectraError as e:
            raise ElectraError(f"{source}: {e}") from None


@dataclass(frozen=True)
class ModelConfig:
    """The discriminator's shape plus how the generator is derived from it.

    The generator has the discriminator's depth (times ``generator_depth``) and ``generator_size`` times its
    width, with FFN = 4 x hidden and max(1, hidden // 64) heads, as google-research/electra's
    ``get_generator_config``. ``embedding_sharing`` says how the two networks' embeddings relate:

    - ``es`` (ELECTRA's): one embeddings module for both (word, position and token-type tables and their
      LayerNorm; for deberta-v2, whose LayerNorm is at each network's width, the word and position tables);
    - ``nes``: each network its own;
    - ``gdes`` (DeBERTa-v3's gradient-disentangled sharing): the discriminator's word and position tables are
      ``stop_gradient(E_G) + E_delta``, ``E_delta`` a zero-initialised parameter of its own, so only the
      generator's MLM loss moves ``E_G``; exports write the sum.
    """

    discriminator: EncoderConfig = field(default_factory=EncoderConfig)
    generator_size: float = 0.25
    generator_depth: float = 1.0
    embedding_sharing: str = "es"
    generator_num_heads: int | None = None  # None: max(1, hidden // 64)
    generator_intermediate_size: int | None = None  # None: 4 x hidden

    KIND: ClassVar[str] = "model field"
    RULES: ClassVar[dict[str, Rule]] = {
        "generator_size": interval(0, 1, "(]"), "generator_depth": interval(0, 1, "(]"),
        "generator_num_heads": at_least(1).optional(), "generator_intermediate_size": at_least(1).optional(),
        "embedding_sharing": one_of(*EMBEDDING_SHARING),
    }

    @property
    def tie_embeddings(self) -> bool:
        """Whether both networks use one embeddings module (``embedding_sharing`` es)."""
        return self.embedding_sharing == "es"

    def __post_init__(self) -> None:
        validate(self)
        total = self.discriminator.num_parameters() + self.generator.num_parameters()  # also checks its shape
        if total > MAX_PARAMETERS:
            raise ElectraError(f"model fields ask for {total:,} parameters (discriminator + generator): expected at "
                               f"most {MAX_PARAMETERS:,}")

    @property
    def generator(self) -> EncoderConfig:
        d = self.discriminator
        hidden = max(1, int(round(d.hidden_size * self.generator_size)))
        return dataclasses.replace(
            d,
            hidden_size=hidden,
            num_layers=max(1, int(round(d.num_layers * self.generator_depth))),
            intermediate_size=self.generator_intermediate_size or 4 * hidden,
            num_heads=self.generator_num_heads or max(1, hidden // 64),
        )

    # ---- construction -------------------------------------------------------------------------------
    @classmethod
    def preset(cls, name: str, source: str = "config", **overrides: Any) -> ModelConfig:
        if not isinstance(name, str) or name not in PRESETS:
            raise ElectraError(f"unknown preset {name!r}: expected one of {', '.join(PRESETS)}")
        return cls.from_dict({**PRESETS[name], **overrides}, source=source)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> ModelConfig:
        """Build from a flat dict: discriminator fields plus ``generator_size`` etc.; unknown keys are errors.
        ``tie_embeddings`` (configs written before ``embedding_sharing``) reads as es (true) or nes (false)."""
        if "tie_embeddings" in data:
            data = _legacy_sharing(data, source)
        top = {f.name for f in fields(cls)} - {"discriminator"}
        enc = {f.name for f in fields(EncoderConfig)}
        unknown = sorted(set(data) - top - enc - {"discriminator"})
        if unknown:
            raise ElectraError(f"{source}: unknown field(s) {', '.join(unknown)}")
        nested = data.get("discriminator", {})
        if not isinstance(nested, dict):
            raise ElectraError(f"{source}: field 'discriminator' must be a table/object, got {nested!r}")
        unknown = sorted(set(nested) - enc)
        if unknown:
            raise ElectraError(f"{source}: unknown field(s) {', '.join(unknown)}")
        disc = {**nested, **{k: v for k, v in data.items() if k in enc}}
        rest = {k: v for k, v in data.items() if k in top}
        check_field_types(EncoderConfig, disc, source)
        check_field_types(cls, rest, source)
        try:
            return cls(discriminator=EncoderConfig(**disc), **rest)
        except (TypeError, ElectraError) as e:
            raise ElectraError(f"{source}: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dataclasses.asdict(self.discriminator)
        out.update({f.name: getattr(self, f.name) for f in fields(self) if f.name != "discriminator"})
        return {k: v for k, v in out.items() if v is not None}

    @classmethod
    def load(cls, path: str | Path) -> ModelConfig:
        """Load a config from ``.toml`` or ``.json``; a ``[model]`` table in TOML is used when present."""
        path = Path(path)
        data = load_mapping(path)
        return cls.from_dict(table(data, "model", path) if "model" in data else data, source=str(path))

    def save(self, path: str | Path) -> None:
        path = Path(path)
        if path.suffix == ".toml":
            import tomli_w

            path.write_text(tomli_w.dumps(self.to_dict()))
        else:
            path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with discriminator or top-level fields changed."""
        if "tie_embeddings" in changes:
            changes = _legacy_sharing(changes, "config")
        return ModelConfig.from_dict({**self.to_dict(), **changes})


def _legacy_sharing(data: Mapping[str, Any], source: str) -> dict[str, Any]:
    """``tie_embeddings`` true / false (before ``embedding_sharing`` existed) as ``embedding_sharing`` es / nes."""
    tie = data["tie_embeddings"]
    if not isinstance(tie, bool):
        raise ElectraError(f"{source}: field 'tie_embeddings' must be bool, got {tie!r}")
    sharing = "es" if tie else "nes"
    if data.get("embedding_sharing", sharing) != sharing:
        raise ElectraError(f"{source}: tie_embeddings = {str(tie).lower()} contradicts embedding_sharing = "
                           f"{data['embedding_sharing']!r}; give embedding_sharing alone")
    return {**{k: v for k, v in data.items() if k != "tie_embeddings"}, "embedding_sharing": sharing}


# A model this large is refused before anything is allocated (80 GB of fp32 weights): a typo, not a plan.
MAX_PARAMETERS = 20_000_000_000

# The Python types a config file may give each annotated field type (bool is not accepted as a number).
_NONE = type(None)
_ACCEPTED: dict[str, tuple[type, ...]] = {
    "int": (numbers.Integral,), "float": (numbers.Real,), "str": (str, os.PathLike), "bool": (bool,),
    "int | None": (numbers.Integral, _NONE), "float | None": (numbers.Real, _NONE),
    "str | None": (str, os.PathLike, _NONE), "bool | None": (bool, _NONE),
}


def check_field_types(cls: type, values: Mapping[str, Any], source: str, sep: str = ": field ") -> None:
    """Raise a one-line error naming the first field of ``values`` whose value has the wrong type."""
    for f in fields(cls):
        if f.name not in values or f.type not in _ACCEPTED:
            continue
        v = values[f.name]
        if not isinstance(v, _ACCEPTED[f.type]) or (isinstance(v, bool) and "bool" not in f.type):
            raise ElectraError(f"{source}{sep}{f.name!r} must be {f.type}, got {v!r}")


def read_json(path: str | Path, what: str = "file") -> Any:
    """Parse a JSON file; a missing, unreadable, non-UTF-8 or malformed file is one ``ElectraError`` naming the
    file and position."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ElectraError(f"{path}: {what} not found") from None
    except UnicodeDecodeError as e:
        raise ElectraError(f"{path}: {what} is not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise ElectraError(f"{path}: cannot read the {what} ({e.strerror or e})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ElectraError(f"{path}:{e.lineno}:{e.colno}: malformed JSON in the {what}: {e.msg}") from None


def load_mapping(path: Path) -> dict[str, Any]:
    """Read a TOML or JSON file into a dict, with a one-line error naming the file and position."""
    if not path.is_file():
        raise ElectraError(f"{path}: config file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ElectraError(f"{path}: not UTF-8 text (byte {e.start})") from None
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except json.JSONDecodeError as e:
        raise ElectraError(f"{path}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None
    except tomllib.TOMLDecodeError as e:
        raise ElectraError(f"{path}: invalid TOML: {e}") from None
    if not isinstance(data, dict):
        raise ElectraError(f"{path}: expected a JSON object / TOML table at the top level")
    return data


def table(data: Mapping[str, Any], name: str, source: str | Path) -> dict[str, Any]:
    """``data[name]`` as a dict (empty when absent), or a one-line error when it is not a table/object."""
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ElectraError(f"{source}: [{name}] must be a table/object, got {type(value).__name__}")
    return dict(value)


_TINY = dict(embedding_size=64, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=256,
             max_position_embeddings=128, generator_size=0.5)
PRESETS: dict[str, dict[str, Any]] = {
    # A few-second CPU model for tests and the demo.
    "tiny": _TINY,
    # cpu: the tiny shape, for the CPU recipe (TRAINING_PRESETS["cpu"]).
    "cpu": _TINY,
    # The paper's Table 6.
    "small": dict(embedding_size=128, hidden_size=256, num_layers=12, num_heads=4, intermediate_size=1024,
                  generator_size=0.25),
    "base": dict(embedding_size=768, hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072,
                 generator_size=1 / 3),
    "large": dict(embedding_size=1024, hidden_size=1024, num_layers=24, num_heads=16, intermediate_size=4096,
                  generator_size=0.25),
}


OBJECTIVES = ("electra", "mlm", "electra-15", "replace-mlm", "all-tokens-mlm")  # see electra.objectives
GENERATOR_TRAINING = ("joint", "two-stage", "adversarial")
POSITION_INITS = ("normal", "sinusoidal")  # see electra.init.positions

_TINY_RECIPE = dict(batch_size=32, lr=1e-3, warmup_steps=100, max_steps=2000, mask_prob=0.15, bias_correction=True)
# The paper's pre-training hyperparameters (Table 6 / google-research/electra configure_pretraining.py).
TRAINING_PRESETS: dict[str, dict[str, Any]] = {
    # tiny (ours, for CPUs): a 100-step warm-up needs Adam's bias correction. Without it the first ~1k updates are
    # 2-6x the nominal step (sqrt(1 - beta2^t) is small), which the official code's 10k-step warm-up hides; a
    # 4-layer tiny discriminator so trained stayed at the all-"original" solution (docs/learning-at-cpu-scale.md).
    "tiny": _TINY_RECIPE,
    # cpu (ours): from scratch on 2 CPU cores, pays off in 30 minutes on CoLA and low-data SST-2
    # (docs/learning-at-cpu-scale.md §5): tiny's recipe with the word embeddings held fixed at their initialisation,
    # best word2vec vectors (`electra wordvectors train --epochs 1`, under a minute) given with --init-embeddings.
    # Trained, the shared embeddings drift (rare tokens' rows collapse onto one direction) and the discriminator
    # stays near the constant solution; held fixed, after 6 minutes it ends 18-26x further below the constant
    # prediction and fine-tuning beats random initialisation on SST-2. Size max_steps to the budget
    # (benchmarks/cpu_recipe.py does: 33-37k tokens/s on 2 cores with bf16).
    "cpu": {**_TINY_RECIPE, "warmup_steps": 500, "max_steps": 20_000, "train_word_embeddings": False},
    "small": dict(batch_size=128, lr=5e-4, warmup_steps=10_000, max_steps=1_000_000, mask_prob=0.15),
    "base": dict(batch_size=256, lr=2e-4, warmup_steps=10_000, max_steps=766_000, mask_prob=0.15),
    "large": dict(batch_size=2048, lr=2e-4, warmup_steps=10_000, max_steps=400_000, mask_prob=0.25),
    # continue (ours): continued RTD from an existing checkpoint (--init-from: a BERT-family import, an ELECTRA
    # pair, one of our runs), e.g. domain adaptation on a CPU. A short warm-up and a lower LR than pre-training
    # from scratch, so the pre-trained body is adapted rather than overwritten (cf. Gururangan et al. 2020, DAPT:
    # 1e-4 for RoBERTa-base); bias correction because the warm-up is short (see tiny). The model's shape comes
    # from the checkpoint.
    # One LR for everything, nothing frozen: with import-hf's default generator (the BERT's lowest block, truncate)
    # this is the recipe measured best in docs/results.md (all-MiniLM-L6-v2 + 30 minutes on 2 cores: held-out AUC
    # 0.93 against its own generator, the `detect` showcase passes). --freeze-body-steps / --new-parts-lr hold the
    # body and train the untrained parts faster (a new generator: docs/results.md has both measured).
    "continue": dict(batch_size=32, lr=1e-4, warmup_steps=100, max_steps=1200, mask_prob=0.15, bias_correction=True,
                     freeze_body_steps=0, new_parts_lr=0.0),
}


@dataclass
class PretrainConfig:
    """Everything about a pre-training run except the model's shape; paper defaults for the preset."""

    data: str = ""
    out: str = ""
    preset: str = "small"
    # "electra" (replaced-token detection), "mlm" (BERT-style baseline), or the paper's §3.2 ablations
    # "electra-15", "replace-mlm", "all-tokens-mlm" (see electra.objectives)
    objective: str = "electra"
    max_steps: int = 1_000_000
    max_minutes: float = 0.0  # > 0: also stop (and save) once this process has trained this many minutes
    stop_step: int = 0  # > 0: stop (and save) at this step; the LR schedule still runs to max_steps
    batch_size: int = 128  # global: summed over data-parallel ranks and accumulation steps
    grad_accum: int = 1
    lr: float = 5e-4
    warmup_steps: int = 10_000
    weight_decay: float = 0.01
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-6
    bias_correction: bool = False  # the official optimizer has none
    grad_clip: float = 1.0
    mask_prob: float = 0.15
    # Mask whole words (Google BERT's whole-word masking): the data's word starts (electra prepare --segmenter) or
    # the vocabulary's ("##" continues a WordPiece word, "▁" starts a SentencePiece one); electra.data.words.
    whole_word_masking: bool = False
    generator_weight: float = 1.0
    discriminator_weight: float = 50.0
    temperature: float = 1.0
    # > 0: a replacement curriculum. The generator's samples are drawn at this temperature at step 0, falling
    # linearly to ``temperature`` at max_steps: flatter, easier-to-spot replacements early, while both networks are
    # weak (the paper's §3.2 and google-research/electra#37: a generator that gets good fast makes detection too
    # hard too early). 0: ``temperature`` throughout (the paper's recipe).
    temperature_start: float = 0.0
    # False: the generator's output layer (tied to the word embeddings) sends no gradient into them, so rows of
    # rare tokens are not all pushed along one direction by the softmax (docs/learning-at-cpu-scale.md §5).
    generator_output_grad: bool = True
    # False: the word embeddings stay as initialised (random, or --init-embeddings) for the whole run; the rest of
    # the network learns around them (docs/learning-at-cpu-scale.md §5).
    train_word_embeddings: bool = True
    # The word embeddings' LR as a fraction of ``lr`` (the middle ground between frozen and trained at the body's LR;
    # needs train_word_embeddings). Weight decay follows it (AdamW's decay is scaled by the LR).
    word_embeddings_lr_scale: float = 1.0
    precision: str = "auto"  # "auto" (bf16 where the hardware is fast at it), "fp32", "bf16"
    device: str = "auto"
    compile: bool = False
    seed: int = 0
    log_every: int = 20
    save_every: int = 1000
    keep_last: int = 3
    # How the generator learns (electra.objectives): "joint" (paper default), "two-stage", "adversarial".
    generator_training: str = "joint"
    two_stage_generator_steps: int = 0  # two-stage: generator-only MLM steps (0: half of max_steps)
    adversarial_mlm_steps: int = 0  # adversarial: MLM warm-start steps before REINFORCE
    adversarial_baseline: str = "learned"  # adversarial: "learned" (the paper's) or "mean" (running mean)
    adversarial_entropy: float = 0.0  # adversarial: entropy bonus coefficient
    init_embeddings: str = ""  # word2vec/GloVe file to initialise the word embeddings from (electra.init.embeddings)
    position_init: str = "normal"  # "sinusoidal": the position table starts as sinusoids (electra.init.positions)
    init_from: str = ""  # checkpoint or run folder whose weights start the run (shape from it; optimizer/step fresh)
    held_out: str = ""  # prepared folder of text not trained on: the end-of-run detection report is measured there
    # --init-from an imported BERT, whose detection head (and a new generator) start untrained: > 0 holds the
    # discriminator's body (encoder and the embeddings it shares with the generator) fixed for this many steps while
    # those parts learn, then warms its LR up over warmup_steps. Nothing is frozen when no part is untrained.
    freeze_body_steps: int = 0
    # > 0: the LR of those untrained parts (at the body's continued-training LR a new head alone learns very slowly).
    new_parts_lr: float = 0.0

    # Fields that may change when a run is resumed (they don't change the optimisation so far).
    RESUMABLE_CHANGES: ClassVar[tuple[str, ...]] = (
        "max_steps", "max_minutes", "stop_step", "log_every", "save_every", "keep_last", "device", "compile", "out",
        "data", "held_out")

    KIND: ClassVar[str] = "pretrain option"
    # Checked by check_paths() when the run starts (a config may be written before its data exists).
    PATH_RULES: ClassVar[dict[str, Rule]] = {
        "data": existing_folder(), "out": Rule("a run folder path (not an existing file)",
                                               lambda v: bool(v) and not Path(v).is_file()),
        "init_embeddings": existing_file(), "init_from": existing_path(),
        "held_out": Rule("a folder written by `electra prepare` (or empty: none)", lambda v: not v or Path(v).is_dir()),
    }
    RULES: ClassVar[dict[str, Rule]] = {
        "preset": one_of(*TRAINING_PRESETS), "objective": one_of(*OBJECTIVES),
        "max_steps": at_least(1), "max_minutes": at_least(0), "stop_step": at_least(0),
        "batch_size": at_least(1), "grad_accum": at_least(1),
        "lr": positive(), "warmup_steps": at_least(0), "weight_decay": at_least(0),
        "adam_beta1": interval(0, 1, "[)"), "adam_beta2": interval(0, 1, "[)"), "adam_eps": positive(),
        "grad_clip": at_least(0), "mask_prob": interval(0, 1, "()"), "generator_weight": at_least(0),
        "discriminator_weight": at_least(0), "temperature": positive(), "temperature_start": at_least(0),
        "precision": one_of("auto", "fp32", "bf16"),
        "device": DEVICE, "seed": at_least(0), "log_every": at_least(1), "save_every": at_least(1),
        "keep_last": Rule("a number >= 0 (0: keep every checkpoint)", lambda v: _finite(v) and v >= 0),
        "generator_training": one_of(*GENERATOR_TRAINING), "two_stage_generator_steps": at_least(0),
        "position_init": one_of(*POSITION_INITS),
        "adversarial_mlm_steps": at_least(0), "adversarial_baseline": one_of("learned", "mean"),
        "adversarial_entropy": at_least(0), "freeze_body_steps": at_least(0),
        "new_parts_lr": at_least(0), "word_embeddings_lr_scale": positive(),
    }

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Every field's type and range, then the combinations (one ``ElectraError`` for the first problem)."""
        validate(self)
        if self.batch_size % self.grad_accum:
            raise ElectraError(f"pretrain option batch_size = {self.batch_size}: expected a multiple of grad_accum "
                               f"{self.grad_accum}")
        if self.generator_training != "joint" and self.objective != "electra":
            raise ElectraError(f"pretrain option generator_training = {self.generator_training!r}: needs objective "
                               f"'electra' (got {self.objective!r})")
        if self.generator_training == "two-stage" and not self.two_stage_generator_steps < self.max_steps:
            raise ElectraError(f"pretrain option two_stage_generator_steps = {self.two_stage_generator_steps}: "
                               f"expected below max_steps {self.max_steps}")
        if self.position_init != "normal" and self.init_from:
            raise ElectraError(f"pretrain option position_init = {self.position_init!r}: not with init_from "
                               f"{self.init_from!r}, whose trained position table would be replaced; drop one of them")
        if self.temperature_start > 0 and self.compile:
            raise ElectraError(f"pretrain option temperature_start = {self.temperature_start}: not with compile (a "
                               "temperature that changes every step would recompile the step); drop one of them")
        if self.word_embeddings_lr_scale != 1 and not self.train_word_embeddings:
            raise ElectraError(f"pretrain option word_embeddings_lr_scale = {self.word_embeddings_lr_scale}: needs "
                               "train_word_embeddings (they are held fixed); drop one of them")
        if self.generator_weight == 0 and self.discriminator_weight == 0:
            raise ElectraError("pretrain options generator_weight = 0 and discriminator_weight = 0: expected at "
                               "least one > 0 (nothing would be trained)")

    def check_paths(self) -> None:
        """The data folder exists, the run folder is not a file, the files to start from exist."""
        check_values(self.KIND, self.to_dict(), self.PATH_RULES)

    @classmethod
    def for_preset(cls, preset: str, source: str | None = None, **overrides: Any) -> PretrainConfig:
        """The preset's recipe with ``overrides``; errors start with ``source`` (e.g. the config file) if given."""
        if not isinstance(preset, str) or preset not in TRAINING_PRESETS:
            where = f"{source}: " if source else ""
            raise ElectraError(f"{where}unknown preset {preset!r}: expected one of {', '.join(TRAINING_PRESETS)}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ElectraError(f"{source or 'pretrain config'}: unknown field(s) {', '.join(unknown)}")
        try:
            return cls(preset=preset, **{**TRAINING_PRESETS[preset], **overrides})
        except ElectraError as e:
            raise ElectraError(f"{source}: {e}" if source else str(e)) from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
