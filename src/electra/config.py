"""Model configuration and the paper's presets (Clark et al. 2020, Table 6), loadable from TOML or JSON."""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from electra.errors import ElectraError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


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

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ElectraError(f"hidden_size {self.hidden_size} is not a multiple of num_heads {self.num_heads}")
        if self.hidden_act not in ("gelu", "gelu_new"):
            raise ElectraError(f"hidden_act {self.hidden_act!r}: expected 'gelu' or 'gelu_new'")


@dataclass(frozen=True)
class ModelConfig:
    """The discriminator's shape plus how the generator is derived from it.

    The generator has the discriminator's depth (times ``generator_depth``) and ``generator_size`` times its
    width, with FFN = 4 x hidden and max(1, hidden // 64) heads, as google-research/electra's
    ``get_generator_config``. With ``tie_embeddings`` both networks share one embeddings module (word,
    position and token-type tables and their LayerNorm), sized ``embedding_size``.
    """

    discriminator: EncoderConfig = field(default_factory=EncoderConfig)
    generator_size: float = 0.25
    generator_depth: float = 1.0
    tie_embeddings: bool = True
    generator_num_heads: int | None = None  # None: max(1, hidden // 64)
    generator_intermediate_size: int | None = None  # None: 4 x hidden

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
    def preset(cls, name: str, **overrides: Any) -> ModelConfig:
        if name not in PRESETS:
            raise ElectraError(f"unknown preset {name!r}: expected one of {', '.join(PRESETS)}")
        return cls.from_dict({**PRESETS[name], **overrides})

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> ModelConfig:
        """Build from a flat dict: discriminator fields plus ``generator_size`` etc.; unknown keys are errors."""
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
        return cls.from_dict(data.get("model", data), source=str(path))

    def save(self, path: str | Path) -> None:
        path = Path(path)
        if path.suffix == ".toml":
            import tomli_w

            path.write_text(tomli_w.dumps(self.to_dict()))
        else:
            path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with discriminator or top-level fields changed."""
        return ModelConfig.from_dict({**self.to_dict(), **changes})


# The Python types a config file may give each annotated field type (bool is not accepted as a number).
_ACCEPTED: dict[str, tuple[type, ...]] = {
    "int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "int | None": (int, type(None)),
}


def check_field_types(cls: type, values: dict[str, Any], source: str) -> None:
    """Raise a one-line error naming the first field of ``values`` whose value has the wrong type."""
    for f in fields(cls):
        if f.name not in values or f.type not in _ACCEPTED:
            continue
        v = values[f.name]
        if not isinstance(v, _ACCEPTED[f.type]) or (isinstance(v, bool) and f.type != "bool"):
            raise ElectraError(f"{source}: field {f.name!r} must be {f.type}, got {v!r}")


def load_mapping(path: Path) -> dict[str, Any]:
    """Read a TOML or JSON file into a dict, with a one-line error naming the file and position."""
    if not path.is_file():
        raise ElectraError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except json.JSONDecodeError as e:
        raise ElectraError(f"{path}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None
    except tomllib.TOMLDecodeError as e:
        raise ElectraError(f"{path}: invalid TOML: {e}") from None
    if not isinstance(data, dict):
        raise ElectraError(f"{path}: expected a JSON object / TOML table at the top level")
    return data


PRESETS: dict[str, dict[str, Any]] = {
    # A few-second CPU model for tests and the demo.
    "tiny": dict(embedding_size=64, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=256,
                 max_position_embeddings=128, generator_size=0.5),
    # The paper's Table 6.
    "small": dict(embedding_size=128, hidden_size=256, num_layers=12, num_heads=4, intermediate_size=1024,
                  generator_size=0.25),
    "base": dict(embedding_size=768, hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072,
                 generator_size=1 / 3),
    "large": dict(embedding_size=1024, hidden_size=1024, num_layers=24, num_heads=16, intermediate_size=4096,
                  generator_size=0.25),
}


# The paper's pre-training hyperparameters (Table 6 / google-research/electra configure_pretraining.py).
TRAINING_PRESETS: dict[str, dict[str, Any]] = {
    # tiny (ours, for CPUs): a 100-step warm-up needs Adam's bias correction. Without it the first ~1k updates are
    # 2-6x the nominal step (sqrt(1 - beta2^t) is small), which the official code's 10k-step warm-up hides; a
    # 4-layer tiny discriminator so trained stayed at the all-"original" solution (docs/learning-at-cpu-scale.md).
    "tiny": dict(batch_size=32, lr=1e-3, warmup_steps=100, max_steps=2000, mask_prob=0.15, bias_correction=True),
    "small": dict(batch_size=128, lr=5e-4, warmup_steps=10_000, max_steps=1_000_000, mask_prob=0.15),
    "base": dict(batch_size=256, lr=2e-4, warmup_steps=10_000, max_steps=766_000, mask_prob=0.15),
    "large": dict(batch_size=2048, lr=2e-4, warmup_steps=10_000, max_steps=400_000, mask_prob=0.25),
    # continue (ours): continued RTD from an existing checkpoint (--init-from: a BERT-family import, an ELECTRA
    # pair, one of our runs), e.g. domain adaptation on a CPU. A short warm-up and a lower LR than pre-training
    # from scratch, so the pre-trained body is adapted rather than overwritten (cf. Gururangan et al. 2020, DAPT:
    # 1e-4 for RoBERTa-base); bias correction because the warm-up is short (see tiny). The model's shape comes
    # from the checkpoint.
    "continue": dict(batch_size=32, lr=1e-4, warmup_steps=100, max_steps=1200, mask_prob=0.15, bias_correction=True),
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
    generator_weight: float = 1.0
    discriminator_weight: float = 50.0
    temperature: float = 1.0
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
    init_embeddings: str = ""  # word2vec/GloVe file to initialise the word embeddings from (electra.embeddings_init)
    init_from: str = ""  # checkpoint or run folder whose weights start the run (shape from it; optimizer/step fresh)

    # Fields that may change when a run is resumed (they don't change the optimisation so far).
    RESUMABLE_CHANGES = ("max_steps", "max_minutes", "stop_step", "log_every", "save_every", "keep_last", "device",
                         "compile", "out", "data")

    @classmethod
    def for_preset(cls, preset: str, **overrides: Any) -> PretrainConfig:
        if preset not in TRAINING_PRESETS:
            raise ElectraError(f"unknown preset {preset!r}: expected one of {', '.join(TRAINING_PRESETS)}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ElectraError(f"pretrain config: unknown field(s) {', '.join(unknown)}")
        return cls(preset=preset, **{**TRAINING_PRESETS[preset], **overrides})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
