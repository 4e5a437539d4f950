"""The DeBERTa-v2/v3 body (He et al. 2021, 2023): disentangled attention over relative positions.

The same interface as :class:`electra.modeling.Encoder` (``embeddings``, ``layers``, ``forward``), so the ELECTRA
heads and objective run on it unchanged. Computes what ``transformers``' ``DebertaV2Model`` computes (the tests
compare them to 1e-5); module names map onto its checkpoint keys by a rename table (``electra.interop.hf_deberta``):

- embeddings: word (+ absolute positions when ``position_biased_input``, + token types when ``type_vocab_size``),
  then the projection to the hidden size (``embed_proj``, no bias) *before* the LayerNorm, which is therefore at
  the hidden size, and padding rows zeroed;
- attention: scores = (q k^T + c2p + p2c) / sqrt(d * (1 + number of terms)), where c2p[i, j] = q_i . k_r(δ(i, j))
  and p2c[i, j] = k_j . q_r(-δ(j, i)) read projections of the relative-position embeddings (their own
  projections, or with ``share_att_key`` the content key/query projections), δ the relative position clamped
  to the span, log-bucketed beyond half of ``position_buckets``;
- the padding mask is transformers' pairwise one: a padded query row attends uniformly to every position
  (its output is never read, but it is what transformers computes);
- only the relative embeddings a sequence can reach (distances below its length) are normalised, projected and
  multiplied with q and k (transformers takes all 2 x span rows): at DeBERTa-v3's 256 buckets and 128 tokens
  255 of 512 rows, a fifth off a training step (benchmarks/pretrain_throughput.py --deberta).

Deviations from transformers: no ``padding_idx`` on the word table (transformers' zeroes that row's gradient;
here it trains like any row, as in our BERT body); attention through ``scaled_dot_product_attention`` with the
relative terms as an additive bias (the same sums in another order). The convolution layer of DeBERTa-v2-xlarge
(``conv_kernel_size``) is not implemented; importing a config with one is refused.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from electra import kernels
from electra.config import EncoderConfig


def relative_span(cfg: EncoderConfig) -> int:
    """Half the number of relative-position embeddings: ``position_buckets``, else the maximum distance."""
    return cfg.position_buckets if cfg.position_buckets > 0 else max_distance(cfg)


def max_distance(cfg: EncoderConfig) -> int:
    """``max_relative_positions``, or ``max_position_embeddings`` when that is below 1 (transformers' rule)."""
    return cfg.max_relative_positions if cfg.max_relative_positions >= 1 else cfg.max_position_embeddings


def log_bucket_position(relative: Tensor, buckets: int, max_position: int) -> Tensor:
    """Distances below ``buckets // 2`` kept, longer ones mapped to log-spaced buckets (transformers'
    ``make_log_bucket_position``, the same float32 operations so that every bucket boundary agrees)."""
    sign = torch.sign(relative)
    mid = buckets // 2
    abs_pos = torch.where((relative < mid) & (relative > -mid), torch.tensor(mid - 1).type_as(relative),
                          torch.abs(relative))
    log_pos = torch.ceil(torch.log(abs_pos / mid) / torch.log(torch.tensor((max_position - 1) / mid))
                         * (mid - 1)) + mid
    return torch.where(abs_pos <= mid, relative.type_as(log_pos), log_pos * sign).long()


def relative_positions(seq_len: int | Tensor, cfg: EncoderConfig, device: torch.device) -> Tensor:
    """δ(i, j) = i - j (log-bucketed when ``position_buckets`` > 0), a (seq, seq) int64 tensor."""
    ids = torch.arange(seq_len, dtype=torch.long, device=device)
    relative = ids[:, None] - ids[None, :]
    if cfg.position_buckets > 0:
        relative = log_bucket_position(relative, cfg.position_buckets, max_distance(cfg))
    return relative


def no_mask(attention_mask: Tensor | None) -> bool:
    """No padding to mask (never decided by inspecting values while tracing for ONNX)."""
    return attention_mask is None or (not torch.jit.is_tracing() and kernels.no_padding(attention_mask))


class DebertaEmbeddings(nn.Module):
    """Word (+ position, + token-type) embeddings, projection to the hidden size, LayerNorm, padding zeroed."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        e, h = cfg.embedding_size, cfg.hidden_size
        self.hidden_size = h
        self.word_embeddings = nn.Embedding(cfg.vocab_size, e)
        self.position_embeddings = (nn.Embedding(cfg.max_position_embeddings, e) if cfg.position_biased_input
                                    else None)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, e) if cfg.type_vocab_size > 0 else None
        self.project = nn.Linear(e, h, bias=False) if e != h else None
        self.norm = nn.LayerNorm(h, eps=cfg.layer_norm_eps)
        self.dropout = kernels.Dropout(cfg.hidden_dropout)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None,
                attention_mask: Tensor | None = None) -> Tensor:
        x = self.word_embeddings(input_ids)
        if self.position_embeddings is not None:
            x = x + self.position_embeddings.weight[: input_ids.shape[1]]
        if self.token_type_embeddings is not None:
            types = self.token_type_embeddings
            x = x + (types.weight[0] if token_type_ids is None else types(token_type_ids))
        if self.project is not None:
            x = self.project(x)
        x = self.norm(x)
        if attention_mask is not None:
            x = x * attention_mask[..., None].to(x.dtype)
        return self.dropout(x)


class DisentangledAttention(nn.Module):
    """Content-to-content plus the content-to-position (c2p) and position-to-content (p2c) terms."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        h = cfg.hidden_size
        self.num_heads = cfg.num_heads
        self.dropout = cfg.attention_dropout
        self.terms = [t for t in ("c2p", "p2c") if t in cfg.pos_att_type.split("|")]
        self.relative = cfg.relative_attention
        self.share_att_key = cfg.share_att_key
        self.query_proj, self.key_proj, self.value_proj = nn.Linear(h, h), nn.Linear(h, h), nn.Linear(h, h)
        own = self.relative and not cfg.share_att_key
        self.pos_key_proj = nn.Linear(h, h) if own and "c2p" in self.terms else None
        self.pos_query_proj = nn.Linear(h, h) if own and "p2c" in self.terms else None
        self.pos_dropout = kernels.Dropout(cfg.hidden_dropout)
        self.out = nn.Linear(h, h)
        # transformers divides by sqrt(head_dim * (1 + number of terms)), computed as a float32 tensor
        head_dim = torch.tensor(h // cfg.num_heads, dtype=torch.float, device="cpu")
        self.scale = 1.0 / float(torch.sqrt(head_dim * (1 + len(self.terms))))

    def heads(self, x: Tensor) -> Tensor:
        """(..., n, hidden) -> (..., heads, n, head_dim)."""
        return x.unflatten(-1, (self.num_heads, -1)).transpose(-3, -2)

    def forward(self, x: Tensor, mask_bias: Tensor | None, rel_embeddings: Tensor | None,
                c2p_index: Tensor | None, p2c_index: Tensor | None) -> Tensor:
        q, k, v = self.heads(self.query_proj(x)), self.heads(self.key_proj(x)), self.heads(self.value_proj(x))
        scale = self.scale
        bias = mask_bias
        if self.relative and self.terms:
            relative = self.position_bias(q, k, self.pos_dropout(rel_embeddings), c2p_index, p2c_index, scale)
            bias = relative if bias is None else relative + bias
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=p, scale=scale)
        return self.out(y.transpose(1, 2).flatten(2))

    def position_bias(self, q: Tensor, k: Tensor, rel: Tensor, c2p_index: Tensor, p2c_index: Tensor,
                      scale: float) -> Tensor:
        """c2p + p2c, each scaled as the content scores: (batch, heads, n, n); the indices (batch, heads, n, n)
        pick, for query i and key j, the column of relative position δ(i, j) (c2p) and -δ(j, i) (p2c)."""
        bias: Tensor | None = None
        if "c2p" in self.terms:
            pos_key = self.heads((self.key_proj if self.share_att_key else self.pos_key_proj)(rel))
            c2p = torch.gather(q @ pos_key.transpose(-1, -2), -1, c2p_index)
            bias = c2p * scale
        if "p2c" in self.terms:
            pos_query = self.heads((self.query_proj if self.share_att_key else self.pos_query_proj)(rel))
            p2c = torch.gather(k @ pos_query.transpose(-1, -2), -1, p2c_index).transpose(-1, -2)
            bias = p2c * scale if bias is None else bias + p2c * scale
        assert bias is not None
        return bias


class DebertaBlock(nn.Module):
    """Post-LN block: x = LN(x + Attn(x)); x = LN(x + FFN(x)), attention disentangled."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.act = cfg.hidden_act
        self.attention = DisentangledAttention(cfg)
        self.attention_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.ffn_in = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.ffn_out = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.ffn_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = kernels.Dropout(cfg.hidden_dropout)

    def forward(self, x: Tensor, mask_bias: Tensor | None, rel_embeddings: Tensor | None,
                c2p_index: Tensor | None, p2c_index: Tensor | None) -> Tensor:
        attended = self.attention(x, mask_bias, rel_embeddings, c2p_index, p2c_index)
        x = self.attention_norm(x + self.dropout(attended))
        h = self.ffn_in(x)
        approximate = kernels.gelu_approximation(self.act)
        if kernels.recomputes_gelu(h):
            out = kernels.gelu_then_linear(h, self.ffn_out.weight, self.ffn_out.bias, approximate)
        else:
            out = self.ffn_out(F.gelu(h, approximate=approximate))
        return self.ffn_norm(x + self.dropout(out))


def embeddings_for(cfg: EncoderConfig, given: DebertaEmbeddings | None) -> DebertaEmbeddings:
    """Own embeddings, ``given`` itself (es sharing at the same width), or, for a narrower network (its LayerNorm
    and projection are at its own width), own ones reading ``given``'s word and position tables."""
    if given is None:
        return DebertaEmbeddings(cfg)
    if given.hidden_size == cfg.hidden_size:
        return given
    own = DebertaEmbeddings(cfg)
    own.word_embeddings = given.word_embeddings
    if own.position_embeddings is not None:
        own.position_embeddings = given.position_embeddings
    return own


class DebertaEncoder(nn.Module):
    """Embeddings, relative-position embeddings (normalised when ``norm_rel_ebd`` is layer_norm), blocks."""

    def __init__(self, cfg: EncoderConfig, embeddings: DebertaEmbeddings | None = None):
        super().__init__()
        self.config = cfg
        self.embeddings = embeddings_for(cfg, embeddings)
        self.layers = nn.ModuleList(DebertaBlock(cfg) for _ in range(cfg.num_layers))
        self.span = relative_span(cfg)
        self.rel_embeddings = nn.Embedding(2 * self.span, cfg.hidden_size) if cfg.relative_attention else None
        self.rel_norm = (nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
                         if cfg.relative_attention and cfg.norm_rel_ebd == "layer_norm" else None)

    def rows_used(self, seq_len: int) -> tuple[int, int]:
        """The rows of the relative embeddings a sequence of ``seq_len`` can index: distances (bucketed or not)
        are below ``seq_len``, so only rows span - seq_len + 1 .. span + seq_len - 1 are read; only they are
        normalised and projected (v3 at 128 tokens: 255 of 512). All rows while tracing for ONNX, whose graph
        must serve every length."""
        if torch.jit.is_tracing():
            return 0, 2 * self.span
        return max(self.span - seq_len + 1, 0), min(self.span + seq_len, 2 * self.span)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None, cls_only: bool = False) -> Tensor:
        """Hidden states (batch, seq, hidden); ``attention_mask`` 1 for real tokens, 0 for padding.
        ``cls_only``: the first position only (batch, 1, hidden), computed as part of the whole."""
        padded = not no_mask(attention_mask)
        x = self.embeddings(input_ids, token_type_ids, attention_mask if padded else None)
        mask_bias = None
        if padded:
            keep = attention_mask.bool()
            pairs = keep[:, None, :, None] & keep[:, None, None, :]  # transformers' mask: query and key real
            mask_bias = torch.zeros(pairs.shape, dtype=x.dtype, device=x.device).masked_fill(
                ~pairs, torch.finfo(x.dtype).min)
        rel = c2p_index = p2c_index = None
        if self.rel_embeddings is not None:
            lo, hi = self.rows_used(input_ids.shape[1])
            rel = self.rel_embeddings.weight[lo:hi]
            if self.rel_norm is not None:
                rel = self.rel_norm(rel)
            relative = relative_positions(input_ids.shape[1], self.config, input_ids.device)
            # gather indices (batch, heads, seq, seq); sizes from size(): dynamic when traced for ONNX
            shape = (input_ids.size(0), self.config.num_heads, input_ids.size(1), input_ids.size(1))
            c2p_index = (torch.clamp(relative + self.span, 0, 2 * self.span - 1) - lo).expand(shape)
            p2c_index = (torch.clamp(-relative + self.span, 0, 2 * self.span - 1) - lo).expand(shape)
        for layer in self.layers:
            x = layer(x, mask_bias, rel, c2p_index, p2c_index)
        return x[:, :1] if cls_only else x
