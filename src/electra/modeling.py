"""The ELECTRA networks: a BERT-style encoder, the generator and discriminator heads, and the pair.

Reads top to bottom like the paper's §2 and google-research/electra's ``model/modeling.py``: embeddings
(with a projection when the embedding size differs from the hidden size), post-LN Transformer blocks with
attention through ``scaled_dot_product_attention``, then a head. Weight names map one-to-one onto the
Hugging Face ``transformers`` ELECTRA classes (see ``electra.hf``).
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from electra.config import EncoderConfig, ModelConfig
from electra.dropout import Dropout, cheap_masks, dropout


def activation(name: str, x: Tensor) -> Tensor:
    return F.gelu(x, approximate="tanh" if name == "gelu_new" else "none")


class Embeddings(nn.Module):
    """Word + position + token-type embeddings, then LayerNorm and dropout (shareable between networks)."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.embedding_size)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.embedding_size)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.embedding_size)
        self.norm = nn.LayerNorm(cfg.embedding_size, eps=cfg.layer_norm_eps)
        self.dropout = Dropout(cfg.hidden_dropout)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        seq_len = input_ids.shape[1]
        x = self.word_embeddings(input_ids) + self.position_embeddings.weight[:seq_len]
        if token_type_ids is None:
            x = x + self.token_type_embeddings.weight[0]
        else:
            x = x + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.norm(x))


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused query/key/value projection."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.dropout = cfg.attention_dropout
        self.qkv = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size)
        self.out = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        batch, seq_len, hidden = x.shape
        qkv = self.qkv(x).view(batch, seq_len, 3, self.num_heads, hidden // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (batch, heads, seq, head_dim)
        p = self.dropout if self.training else 0.0
        if p > 0 and cheap_masks(x):
            y = attention_with_dropout(q, k, v, mask, p)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        return self.out(y.transpose(1, 2).reshape(batch, seq_len, hidden))


def attention_with_dropout(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, p: float) -> Tensor:
    """softmax(q k^T / sqrt(d) + mask) with dropout on the probabilities, times v: what SDPA computes with
    ``dropout_p`` (its CPU path is this same unfused math), but with :func:`electra.dropout.dropout`'s masks."""
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return dropout(scores.softmax(-1), p) @ v


class Block(nn.Module):
    """Post-LN Transformer block, as BERT and ELECTRA: x = LN(x + Attn(x)); x = LN(x + FFN(x))."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.act = cfg.hidden_act
        self.attention = SelfAttention(cfg)
        self.attention_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.ffn_in = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.ffn_out = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.ffn_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = Dropout(cfg.hidden_dropout)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        x = self.attention_norm(x + self.dropout(self.attention(x, mask)))
        return self.ffn_norm(x + self.dropout(self.ffn_out(activation(self.act, self.ffn_in(x)))))


class Encoder(nn.Module):
    """Embeddings (optionally another encoder's), projection to the hidden size when needed, blocks."""

    def __init__(self, cfg: EncoderConfig, embeddings: Embeddings | None = None):
        super().__init__()
        self.config = cfg
        self.embeddings = embeddings if embeddings is not None else Embeddings(cfg)
        embedding_size = self.embeddings.word_embeddings.embedding_dim
        self.project = nn.Linear(embedding_size, cfg.hidden_size) if embedding_size != cfg.hidden_size else None
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None) -> Tensor:
        """Hidden states (batch, seq, hidden). ``attention_mask`` is 1 for real tokens, 0 for padding."""
        x = self.embeddings(input_ids, token_type_ids)
        if self.project is not None:
            x = self.project(x)
        mask = None if no_padding(attention_mask) else attention_mask.bool()[:, None, None, :]
        for layer in self.layers:
            x = layer(x, mask)
        return x


def no_padding(attention_mask: Tensor | None) -> bool:
    """True when there is no mask or, for a CPU tensor outside compilation, it has no padding: attention then
    runs without a mask (same result, no masking work). Never inspects accelerator tensors (no host sync)."""
    if attention_mask is None:
        return True
    if attention_mask.device.type != "cpu" or torch.compiler.is_compiling():
        return False
    return bool(attention_mask.all())


class GeneratorHead(nn.Module):
    """dense -> GELU -> LayerNorm -> output layer tied to the word embeddings, plus a bias."""

    def __init__(self, cfg: EncoderConfig, embedding_size: int):
        super().__init__()
        self.act = cfg.hidden_act
        self.dense = nn.Linear(cfg.hidden_size, embedding_size)
        self.norm = nn.LayerNorm(embedding_size, eps=cfg.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))

    def forward(self, hidden: Tensor, word_embeddings: Tensor) -> Tensor:
        return F.linear(self.norm(activation(self.act, self.dense(hidden))), word_embeddings, self.bias)


class DiscriminatorHead(nn.Module):
    """dense -> GELU -> dense to one logit per token: is this token replaced?"""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.act = cfg.hidden_act
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.out = nn.Linear(cfg.hidden_size, 1)

    def forward(self, hidden: Tensor) -> Tensor:
        return self.out(activation(self.act, self.dense(hidden))).squeeze(-1)


class Generator(nn.Module):
    """A small masked language model that proposes replacements for masked tokens."""

    def __init__(self, cfg: EncoderConfig, embeddings: Embeddings | None = None):
        super().__init__()
        self.encoder = Encoder(cfg, embeddings)
        self.head = GeneratorHead(cfg, self.encoder.embeddings.word_embeddings.embedding_dim)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None, positions: Tensor | None = None) -> Tensor:
        """Vocabulary logits, at every position or only at ``positions`` (batch, n) — the cheap path."""
        hidden = self.encoder(input_ids, attention_mask, token_type_ids)
        if positions is not None:
            hidden = hidden.gather(1, positions[..., None].expand(-1, -1, hidden.shape[-1]))
        return self.head(hidden, self.encoder.embeddings.word_embeddings.weight)


class Discriminator(nn.Module):
    """The encoder kept for fine-tuning, with its replaced-token-detection head."""

    def __init__(self, cfg: EncoderConfig, embeddings: Embeddings | None = None):
        super().__init__()
        self.encoder = Encoder(cfg, embeddings)
        self.head = DiscriminatorHead(cfg)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None) -> Tensor:
        """One logit per token (batch, seq); positive means 'replaced'."""
        return self.head(self.encoder(input_ids, attention_mask, token_type_ids))


class Electra(nn.Module):
    """Generator and discriminator, sharing one embeddings module when ``tie_embeddings`` is set."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.discriminator = Discriminator(config.discriminator)
        shared = self.discriminator.encoder.embeddings if config.tie_embeddings else None
        self.generator = Generator(config.generator, shared)
        self.apply(partial(init_weights, std=config.discriminator.initializer_range))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def truncated_normal_(weight: Tensor, std: float) -> Tensor:
    """N(0, std^2) restricted to +-2 std, as TF's ``truncated_normal``, drawn in one pass by inverting the CDF
    (``nn.init.trunc_normal_`` re-draws whole tensors until none falls outside: seconds for a Small model)."""
    lo = 0.5 * math.erfc(math.sqrt(2))  # Phi(-2)
    with torch.no_grad():
        weight.uniform_(lo, 1 - lo)
        return torch.special.ndtri(weight, out=weight).mul_(std).clamp_(-2 * std, 2 * std)


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """As google-research/electra: truncated normal (2 std) for weights, zeros for biases, unit LayerNorm."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        truncated_normal_(module.weight, std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
