"""The ELECTRA networks: a BERT-style encoder, the generator and discriminator heads, and the pair.

Reads top to bottom like the paper's §2 and google-research/electra's ``model/modeling.py``: embeddings
(with a projection when the embedding size differs from the hidden size), post-LN Transformer blocks, then a
head. Weight names map one-to-one onto the Hugging Face ``transformers`` ELECTRA classes (see
``electra.interop.hf``). Where an eager CPU run has a faster way to compute the same thing (dropout masks,
attention with dropout or in bf16, GELU recomputed in backward, skipping an all-ones attention mask), the
modules call :mod:`electra.kernels`, which says when and why each path is taken.
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from electra import kernels
from electra.config import EncoderConfig, ModelConfig
from electra.deberta import DebertaEncoder


def activation(name: str, x: Tensor) -> Tensor:
    return F.gelu(x, approximate=kernels.gelu_approximation(name))


class Embeddings(nn.Module):
    """Word + position + token-type embeddings, then LayerNorm and dropout (shareable between networks)."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.embedding_size)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.embedding_size)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.embedding_size)
        self.norm = nn.LayerNorm(cfg.embedding_size, eps=cfg.layer_norm_eps)
        self.dropout = kernels.Dropout(cfg.hidden_dropout)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        seq_len = input_ids.shape[1]
        x = self.word_embeddings(input_ids) + self.position_embeddings.weight[:seq_len]
        if token_type_ids is None or self.token_type_embeddings.num_embeddings == 1:  # one type (RoBERTa): ids unused
            x = x + self.token_type_embeddings.weight[0]
        else:
            x = x + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.norm(x))


class DeltaEmbedding(nn.Module):
    """GDES (DeBERTa-v3): a table read as ``stop_gradient(base.weight) + delta``, ``delta`` its only parameter.

    ``base`` is the generator's table, held by reference (it is the generator's parameter, saved there), so
    the discriminator's loss reaches ``delta`` and never ``base``; ``weight`` is the table the discriminator
    sees, what an export writes."""

    def __init__(self, base: nn.Embedding):
        super().__init__()
        self.__dict__["base"] = base  # not a submodule: its weight belongs to the generator
        self.delta = nn.Parameter(torch.zeros_like(base.weight))
        self.num_embeddings, self.embedding_dim = base.num_embeddings, base.embedding_dim

    @property
    def weight(self) -> Tensor:
        return self.base.weight.detach() + self.delta

    def forward(self, ids: Tensor) -> Tensor:
        """The rows of ``weight`` at ``ids``, summed per row (the same values; the whole table is never built)."""
        return F.embedding(ids, self.base.weight.detach()) + F.embedding(ids, self.delta)


def table_parameters(table: nn.Module) -> list[nn.Parameter]:
    """The parameters a table trains: its weight, or under GDES its delta (the base is the generator's)."""
    return [table.delta] if isinstance(table, DeltaEmbedding) else [table.weight]


def owned_tables(model: nn.Module, name: str) -> list[nn.Module]:
    """Each distinct ``name`` table (``word_embeddings``, ``position_embeddings``) of ``model`` that holds its own
    weight: one under es, two under nes, the generator's under gdes (the discriminator's follows it with its delta
    at zero). What an initialisation writes into."""
    tables = {id(t): t for m in model.modules() if (t := getattr(m, name, None)) is not None
              and not isinstance(m, DeltaEmbedding) and isinstance(t, nn.Embedding)}
    return list(tables.values())


def share_gdes(discriminator: nn.Module, generator: nn.Module) -> None:
    """Make ``discriminator``'s word and (if any) absolute-position tables GDES views of ``generator``'s."""
    for name in ("word_embeddings", "position_embeddings"):
        if getattr(generator, name, None) is not None:
            setattr(discriminator, name, DeltaEmbedding(getattr(generator, name)))


def merged_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """``model.state_dict()`` with every GDES table written as the table its network reads (``...weight`` =
    base + delta, no ``...delta``): what an export or a fine-tuned copy keeps."""
    state = dict(model.state_dict())
    for name, module in model.named_modules():
        if isinstance(module, DeltaEmbedding):
            prefix = f"{name}." if name else ""
            del state[prefix + "delta"]
            state[prefix + "weight"] = module.weight.detach()
    return state


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused query/key/value projection."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.dropout = cfg.attention_dropout
        self.qkv = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size)
        self.out = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, x: Tensor, mask: Tensor | None, queries: slice | None = None) -> Tensor:
        """Attention output at every position, or only at the ``queries`` positions (keys: all positions)."""
        batch, seq_len, hidden = x.shape
        if queries is not None:
            return self._some_queries(x, mask, queries)
        qkv = self.qkv(x).view(batch, seq_len, 3, self.num_heads, hidden // self.num_heads)
        heads = qkv.permute(2, 0, 3, 1, 4)  # q, k, v: each (batch, heads, seq, head_dim)
        y = kernels.self_attention(heads, mask, self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(batch, seq_len, hidden))

    def _some_queries(self, x: Tensor, mask: Tensor | None, queries: slice) -> Tensor:
        """Keys and values from every position, queries only from ``x[:, queries]`` (same weights, same result
        at those rows, the query projection and attention of the other rows skipped)."""
        batch, seq_len, hidden = x.shape
        d = hidden // self.num_heads
        w, b = self.qkv.weight, self.qkv.bias
        kv = F.linear(x, w[hidden:], b[hidden:]).view(batch, seq_len, 2, self.num_heads, d).permute(2, 0, 3, 1, 4)
        xq = x[:, queries]
        q = F.linear(xq, w[:hidden], b[:hidden]).view(batch, -1, self.num_heads, d).transpose(1, 2)
        y = kernels.attend(q, *kv, mask, self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(batch, xq.shape[1], hidden))


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
        self.dropout = kernels.Dropout(cfg.hidden_dropout)

    def forward(self, x: Tensor, mask: Tensor | None, queries: slice | None = None) -> Tensor:
        """The block's output at every position, or only at ``queries`` (attending to every position)."""
        attended = self.attention(x, mask, queries)
        if queries is not None:
            x = x[:, queries]
        x = self.attention_norm(x + self.dropout(attended))
        return self.ffn_norm(x + self.dropout(self.feed_forward_out(self.ffn_in(x))))

    def feed_forward_out(self, h: Tensor) -> Tensor:
        """ffn_out(GELU(h)); fp32 training on the CPU keeps only h for backward and recomputes GELU(h) there
        (:func:`electra.kernels.recomputes_gelu`)."""
        if kernels.recomputes_gelu(h):
            return kernels.gelu_then_linear(h, self.ffn_out.weight, self.ffn_out.bias,
                                            kernels.gelu_approximation(self.act))
        return self.ffn_out(activation(self.act, h))


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
                token_type_ids: Tensor | None = None, cls_only: bool = False) -> Tensor:
        """Hidden states (batch, seq, hidden). ``attention_mask`` is 1 for real tokens, 0 for padding.

        ``cls_only``: return (batch, 1, hidden), the first position only, for heads that read nothing else;
        the last layer then computes that row alone (the same values as ``forward(...)[:, :1]``).
        """
        x = self.embeddings(input_ids, token_type_ids)
        if self.project is not None:
            x = self.project(x)
        mask = None if kernels.no_padding(attention_mask) else attention_mask.bool()[:, None, None, :]
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x, mask, slice(0, 1) if cls_only and i == last else None)
        if cls_only and not self.layers:
            x = x[:, :1]
        return x


def make_encoder(cfg: EncoderConfig, embeddings: nn.Module | None = None) -> nn.Module:
    """The body ``cfg.architecture`` names (bert, roberta and xlm-roberta are all :class:`Encoder`; deberta-v2 is
    :class:`electra.deberta.DebertaEncoder`), optionally on another network's embeddings module (es sharing)."""
    if cfg.architecture == "deberta-v2":
        return DebertaEncoder(cfg, embeddings)
    return Encoder(cfg, embeddings)


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
    """A small masked language model that proposes replacements for masked tokens.

    ``output_grad = False`` (a training switch; the function is unchanged) detaches the tied output layer: the
    softmax then trains the generator but sends no gradient into the word embeddings."""

    def __init__(self, cfg: EncoderConfig, embeddings: Embeddings | None = None):
        super().__init__()
        self.encoder = make_encoder(cfg, embeddings)
        self.head = GeneratorHead(cfg, self.encoder.embeddings.word_embeddings.embedding_dim)
        self.output_grad = True

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None, positions: Tensor | None = None) -> Tensor:
        """Vocabulary logits, at every position or only at ``positions`` (batch, n) — the cheap path."""
        hidden = self.encoder(input_ids, attention_mask, token_type_ids)
        if positions is not None:
            hidden = hidden.gather(1, positions[..., None].expand(-1, -1, hidden.shape[-1]))
        output = self.encoder.embeddings.word_embeddings.weight
        return self.head(hidden, output if self.output_grad else output.detach())


class Discriminator(nn.Module):
    """The encoder kept for fine-tuning, with its replaced-token-detection head."""

    def __init__(self, cfg: EncoderConfig, embeddings: Embeddings | None = None):
        super().__init__()
        self.encoder = make_encoder(cfg, embeddings)
        self.head = DiscriminatorHead(cfg)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None) -> Tensor:
        """One logit per token (batch, seq); positive means 'replaced'."""
        return self.head(self.encoder(input_ids, attention_mask, token_type_ids))


class Electra(nn.Module):
    """Generator and discriminator, their embeddings related as ``config.embedding_sharing`` says: one module
    (es), two (nes), or the discriminator's word and position tables GDES views of the generator's (gdes)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.discriminator = Discriminator(config.discriminator)
        shared = self.discriminator.encoder.embeddings if config.embedding_sharing == "es" else None
        self.generator = Generator(config.generator, shared)
        self.apply(partial(init_weights, std=config.discriminator.initializer_range))
        if config.embedding_sharing == "gdes":
            share_gdes(self.discriminator.encoder.embeddings, self.generator.encoder.embeddings)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def merge_gdes(self) -> Electra:
        """Turn GDES sharing into two separate tables in place (the discriminator's = E_G + E_delta, config nes):
        the same function, what fine-tuning, inference and export work on. Other modes are left as they are."""
        if self.config.embedding_sharing != "gdes":
            return self
        embeddings = self.discriminator.encoder.embeddings
        for name, module in list(embeddings.named_children()):
            if isinstance(module, DeltaEmbedding):
                setattr(embeddings, name, nn.Embedding.from_pretrained(module.weight.detach().clone(), freeze=False))
        self.config = self.config.replace(embedding_sharing="nes")
        return self


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
