"""Pre-training compute, counted from the model shapes: floating-point operations per optimiser step.

A multiply-add is 2 FLOPs; a training pass (forward + backward) is 3x the forward, a frozen network's
forward 1x, as the paper's compute comparisons count. Counted: the matrix products of every layer
(query/key/value/output projections, attention scores and mixing, the feed-forward pair, the embedding
projection) and of the heads at the positions where they run (the MLM heads only at the masked positions
the code computes, ``max_predictions`` per sequence, except all-tokens MLM; the discriminator head at every
position). Not counted: embedding look-ups, LayerNorm, softmax, activations (a few percent at these sizes).

A ``deberta-v2`` body (:mod:`electra.deberta`) adds, per layer, its disentangled-attention terms as the code
computes them (:func:`relative_attention_flops`): each of c2p / p2c projects the relative-embedding rows a sequence
can reach (once per batch, shared by its sequences) and multiplies them with every query (c2p) or key (p2c). Its
embedding projection has no bias, which changes nothing here (biases are not counted); the gathers that pick
δ(i, j) out of those products move data and are not counted either.
"""

from __future__ import annotations

from electra.config import EncoderConfig, ModelConfig, PretrainConfig
from electra.deberta import relative_span
from electra.objectives import generator_steps
from electra.pretraining import max_predictions_per_seq


def encoder_flops(cfg: EncoderConfig, seq_len: int, batch_size: int = 1) -> float:
    """Forward FLOPs of one encoder over one sequence of ``seq_len`` tokens, in a batch of ``batch_size`` (which
    only a deberta-v2 body's count depends on: its relative-embedding projections are computed once per batch)."""
    h, inner = cfg.hidden_size, cfg.intermediate_size
    dense = 2 * (4 * h * h + 2 * h * inner)  # qkv + output projection + feed-forward, per token
    attention = 2 * 2 * seq_len * h  # scores QK^T and the weighted sum AV, per token
    project = 2 * cfg.embedding_size * h if cfg.embedding_size != h else 0
    relative = cfg.num_layers * relative_attention_flops(cfg, seq_len, batch_size)
    return seq_len * (cfg.num_layers * (dense + attention) + project) + relative


def relative_rows(cfg: EncoderConfig, seq_len: int) -> int:
    """The relative-embedding rows a sequence of ``seq_len`` reaches, the only ones :class:`electra.deberta.
    DebertaEncoder` projects (its ``rows_used``): rows span - seq_len + 1 .. span + seq_len - 1 within 0 .. 2 span."""
    span = relative_span(cfg)
    return min(span + seq_len, 2 * span) - max(span - seq_len + 1, 0)


def relative_attention_flops(cfg: EncoderConfig, seq_len: int, batch_size: int = 1) -> float:
    """deberta-v2's disentangled-attention FLOPs per layer and sequence (0 for other bodies or without
    ``relative_attention``). For each term of ``pos_att_type``, with R = :func:`relative_rows`:

    - the R rows through the key (c2p) or query (p2c) projection (the content ones with ``share_att_key``, else
      their own; the same count): 2 R h^2, once per batch, so divided by ``batch_size``;
    - every query (c2p) or key (p2c) against those R projected rows, per head: 2 seq R (h / heads) x heads.
    """
    if cfg.architecture != "deberta-v2" or not cfg.relative_attention:
        return 0.0
    terms = len({t for t in cfg.pos_att_type.split("|") if t})
    rows, h = relative_rows(cfg, seq_len), cfg.hidden_size
    return terms * (2 * rows * h * h / batch_size + 2 * seq_len * rows * h)


def mlm_head_flops(cfg: EncoderConfig, positions: int) -> float:
    """dense (hidden -> embedding) and the tied output layer (embedding -> vocabulary) at ``positions``."""
    return positions * 2 * (cfg.hidden_size * cfg.embedding_size + cfg.embedding_size * cfg.vocab_size)


def detection_head_flops(cfg: EncoderConfig, positions: int) -> float:
    return positions * 2 * (cfg.hidden_size * cfg.hidden_size + cfg.hidden_size)


def step_flops(model_cfg: ModelConfig, cfg: PretrainConfig, seq_len: int, stage: int | None = None) -> float:
    """Training FLOPs of one optimiser step (``cfg.batch_size`` sequences of ``seq_len`` tokens).

    ``model_cfg`` is the resolved shape (:func:`electra.objectives.adjust_model_config`: for ``mlm`` the
    generator is discriminator-sized). ``stage`` (1 or 2) selects a two-stage run's phase.
    """
    g, d = model_cfg.generator, model_cfg.discriminator
    n_pred = max_predictions_per_seq(seq_len, cfg.mask_prob)
    b = cfg.batch_size
    generator = encoder_flops(g, seq_len, b) + mlm_head_flops(g, n_pred)
    discriminator = encoder_flops(d, seq_len, b) + detection_head_flops(d, seq_len)
    if cfg.objective == "mlm":  # the generator network alone
        per_seq = 3 * generator
    elif cfg.generator_training == "two-stage":
        per_seq = 3 * generator if stage == 1 else generator + 3 * discriminator
    elif cfg.objective == "replace-mlm":
        per_seq = 3 * generator + 3 * (encoder_flops(d, seq_len, b) + mlm_head_flops(d, n_pred))
    elif cfg.objective == "all-tokens-mlm":
        per_seq = 3 * generator + 3 * (discriminator + mlm_head_flops(d, seq_len))
    else:  # electra, electra-15, adversarial (its baseline is one dot product per masked position)
        per_seq = 3 * (generator + discriminator)
    return b * per_seq


def run_flops(model_cfg: ModelConfig, cfg: PretrainConfig, seq_len: int) -> float:
    """Training FLOPs of the whole run (``cfg.max_steps`` steps)."""
    if cfg.generator_training == "two-stage":
        n = generator_steps(cfg)
        return (n * step_flops(model_cfg, cfg, seq_len, 1)
                + (cfg.max_steps - n) * step_flops(model_cfg, cfg, seq_len, 2))
    return cfg.max_steps * step_flops(model_cfg, cfg, seq_len)
