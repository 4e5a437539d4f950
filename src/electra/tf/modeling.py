"""The ELECTRA networks in Keras 3, written with ``keras.ops`` so they run on every Keras backend.

The same math and the same module tree as :mod:`electra.modeling` (attribute names equal to our PyTorch
module names, ``layers`` -> ``blocks`` because Keras reserves the name): embeddings (+ a projection when the
embedding size differs from the hidden size), post-LN blocks with exact (erf) GELU, the generator head tied to
the word embeddings, the discriminator head, the classification head. No pooler (our checkpoints have none).
Each layer's :meth:`torch_weights` names its variables by our checkpoint keys, which is all
:mod:`electra.tf.weights` needs: a rename table (``weight`` -> ``kernel``/``embeddings``/``gamma``, ``bias``
-> ``bias``/``beta``) plus a transpose for dense kernels.

Inputs are ``input_ids``, ``attention_mask`` (1 real, 0 padding) and ``token_type_ids``, int (batch, seq).
"""

from __future__ import annotations

from typing import Any

from electra.config import EncoderConfig, ModelConfig
from electra.errors import ElectraError
from electra.tf import keras_module

keras = keras_module()
ops = keras.ops
layers = keras.layers

# (variable, transposed?) by our key: the rename table of one Keras layer, used by electra.tf.weights.
WeightTable = dict[str, tuple[Any, bool]]


def params(layer: Any) -> WeightTable:
    """A Keras core layer's variables by our PyTorch parameter names (dense kernels are stored transposed)."""
    if isinstance(layer, layers.Dense):
        return {"weight": (layer.kernel, True), "bias": (layer.bias, False)}
    if isinstance(layer, layers.Embedding):
        return {"weight": (layer.embeddings, False)}
    if isinstance(layer, layers.LayerNormalization):
        return {"weight": (layer.gamma, False), "bias": (layer.beta, False)}
    return layer.torch_weights()


def nest(tables: dict[str, Any]) -> WeightTable:
    """``{"name": layer}`` -> one table with ``name.`` before each of the layer's keys."""
    return {f"{name}.{k}": v for name, layer in tables.items() if layer is not None
            for k, v in params(layer).items()}


def activation(name: str, x: Any) -> Any:
    return ops.gelu(x, approximate=name == "gelu_new")


def _init(cfg: EncoderConfig) -> Any:
    return keras.initializers.TruncatedNormal(stddev=cfg.initializer_range)  # +-2 std, as TF's truncated_normal


def dense(cfg: EncoderConfig, units: int, name: str) -> Any:
    return layers.Dense(units, kernel_initializer=_init(cfg), name=name)


def layer_norm(cfg: EncoderConfig, name: str) -> Any:
    return layers.LayerNormalization(epsilon=cfg.layer_norm_eps, name=name)


class Embeddings(layers.Layer):
    """Word + position + token-type embeddings, then LayerNorm and dropout (shareable between networks)."""

    def __init__(self, cfg: EncoderConfig, **kwargs: Any):
        super().__init__(**kwargs)
        e, init = cfg.embedding_size, _init(cfg)
        self.word_embeddings = layers.Embedding(cfg.vocab_size, e, embeddings_initializer=init, name="word_embeddings")
        self.position_embeddings = layers.Embedding(cfg.max_position_embeddings, e, embeddings_initializer=init,
                                                    name="position_embeddings")
        self.token_type_embeddings = layers.Embedding(cfg.type_vocab_size, e, embeddings_initializer=init,
                                                      name="token_type_embeddings")
        self.norm = layer_norm(cfg, "norm")
        self.dropout = layers.Dropout(cfg.hidden_dropout)
        self.embedding_size = e

    def call(self, input_ids: Any, token_type_ids: Any, training: bool = False) -> Any:
        positions = ops.arange(ops.shape(input_ids)[1])
        if self.token_type_embeddings.input_dim == 1:  # one token type (RoBERTa): segment ids unused
            token_type_ids = ops.zeros_like(token_type_ids)
        x = (self.word_embeddings(input_ids) + self.position_embeddings(positions)[None]
             + self.token_type_embeddings(token_type_ids))
        return self.dropout(self.norm(x), training=training)

    def torch_weights(self) -> WeightTable:
        return nest({"word_embeddings": self.word_embeddings, "position_embeddings": self.position_embeddings,
                     "token_type_embeddings": self.token_type_embeddings, "norm": self.norm})


class SelfAttention(layers.Layer):
    """Multi-head self-attention with one fused query/key/value projection (our ``qkv`` layout)."""

    def __init__(self, cfg: EncoderConfig, **kwargs: Any):
        super().__init__(**kwargs)
        self.num_heads = cfg.num_heads
        self.head_dim = cfg.hidden_size // cfg.num_heads
        self.qkv = dense(cfg, 3 * cfg.hidden_size, "qkv")
        self.out = dense(cfg, cfg.hidden_size, "out")
        self.dropout = layers.Dropout(cfg.attention_dropout)

    def call(self, x: Any, mask_bias: Any, training: bool = False) -> Any:
        """softmax(q k^T / sqrt(d) + mask_bias) v; ``mask_bias`` is 0 where a key may be attended, else -1e9."""
        batch, seq = ops.shape(x)[0], ops.shape(x)[1]
        qkv = ops.reshape(self.qkv(x), (batch, seq, 3, self.num_heads, self.head_dim))
        q, k, v = ops.unstack(ops.transpose(qkv, (2, 0, 3, 1, 4)), 3)  # each (batch, heads, seq, head_dim)
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * (self.head_dim ** -0.5) + mask_bias
        probs = self.dropout(ops.softmax(scores, axis=-1), training=training)
        y = ops.transpose(ops.matmul(probs, v), (0, 2, 1, 3))
        return self.out(ops.reshape(y, (batch, seq, self.num_heads * self.head_dim)))

    def torch_weights(self) -> WeightTable:
        return nest({"qkv": self.qkv, "out": self.out})


class Block(layers.Layer):
    """Post-LN Transformer block, as BERT and ELECTRA: x = LN(x + Attn(x)); x = LN(x + FFN(x))."""

    def __init__(self, cfg: EncoderConfig, **kwargs: Any):
        super().__init__(**kwargs)
        self.act = cfg.hidden_act
        self.attention = SelfAttention(cfg, name="attention")
        self.attention_norm = layer_norm(cfg, "attention_norm")
        self.ffn_in = dense(cfg, cfg.intermediate_size, "ffn_in")
        self.ffn_out = dense(cfg, cfg.hidden_size, "ffn_out")
        self.ffn_norm = layer_norm(cfg, "ffn_norm")
        self.dropout = layers.Dropout(cfg.hidden_dropout)

    def call(self, x: Any, mask_bias: Any, training: bool = False) -> Any:
        attended = self.attention(x, mask_bias, training=training)
        x = self.attention_norm(x + self.dropout(attended, training=training))
        h = self.ffn_out(activation(self.act, self.ffn_in(x)))
        return self.ffn_norm(x + self.dropout(h, training=training))

    def torch_weights(self) -> WeightTable:
        return nest({"attention": self.attention, "attention_norm": self.attention_norm, "ffn_in": self.ffn_in,
                     "ffn_out": self.ffn_out, "ffn_norm": self.ffn_norm})


def mask_bias(attention_mask: Any) -> Any:
    """(batch, 1, 1, seq) additive attention bias: 0 for real keys, -1e9 for padding (exp underflows to 0)."""
    real = ops.cast(attention_mask, "float32")[:, None, None, :]
    return (1.0 - real) * -1e9


class Encoder(layers.Layer):
    """Embeddings (optionally another encoder's), projection to the hidden size when needed, blocks."""

    def __init__(self, cfg: EncoderConfig, embeddings: Embeddings | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        if cfg.architecture == "deberta-v2":
            raise ElectraError("architecture deberta-v2: the Keras networks are the BERT body only; train and "
                               "fine-tune DeBERTa checkpoints with PyTorch")
        self.config = cfg
        self.embeddings = embeddings if embeddings is not None else Embeddings(cfg, name="embeddings")
        e = self.embeddings.embedding_size
        self.project = dense(cfg, cfg.hidden_size, "project") if e != cfg.hidden_size else None
        self.blocks = [Block(cfg, name=f"layers_{i}") for i in range(cfg.num_layers)]

    def call(self, input_ids: Any, attention_mask: Any, token_type_ids: Any, training: bool = False) -> Any:
        """Hidden states (batch, seq, hidden)."""
        x = self.embeddings(input_ids, token_type_ids, training=training)
        if self.project is not None:
            x = self.project(x)
        bias = mask_bias(attention_mask)
        for block in self.blocks:
            x = block(x, bias, training=training)
        return x

    def torch_weights(self) -> WeightTable:
        return nest({"embeddings": self.embeddings, "project": self.project,
                     **{f"layers.{i}": b for i, b in enumerate(self.blocks)}})


class GeneratorHead(layers.Layer):
    """dense -> GELU -> LayerNorm -> output layer tied to the word embeddings, plus a bias."""

    def __init__(self, cfg: EncoderConfig, embedding_size: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.act = cfg.hidden_act
        self.dense = dense(cfg, embedding_size, "dense")
        self.norm = layer_norm(cfg, "norm")
        self.bias = self.add_weight(shape=(cfg.vocab_size,), initializer="zeros", name="bias")

    def call(self, hidden: Any, word_embeddings: Any) -> Any:
        h = self.norm(activation(self.act, self.dense(hidden)))
        return ops.matmul(h, ops.transpose(word_embeddings)) + self.bias

    def torch_weights(self) -> WeightTable:
        return {**nest({"dense": self.dense, "norm": self.norm}), "bias": (self.bias, False)}


class DiscriminatorHead(layers.Layer):
    """dense -> GELU -> dense to one logit per token: is this token replaced?"""

    def __init__(self, cfg: EncoderConfig, **kwargs: Any):
        super().__init__(**kwargs)
        self.act = cfg.hidden_act
        self.dense = dense(cfg, cfg.hidden_size, "dense")
        self.out = dense(cfg, 1, "out")

    def call(self, hidden: Any) -> Any:
        return ops.squeeze(self.out(activation(self.act, self.dense(hidden))), -1)

    def torch_weights(self) -> WeightTable:
        return nest({"dense": self.dense, "out": self.out})


class Generator(layers.Layer):
    """A small masked language model that proposes replacements for masked tokens."""

    def __init__(self, cfg: EncoderConfig, embeddings: Embeddings | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.encoder = Encoder(cfg, embeddings, name="encoder")
        self.head = GeneratorHead(cfg, self.encoder.embeddings.embedding_size, name="head")

    def call(self, input_ids: Any, attention_mask: Any, token_type_ids: Any, positions: Any = None,
             training: bool = False) -> Any:
        """Vocabulary logits, at every position or only at ``positions`` (batch, n) — the cheap path."""
        hidden = self.encoder(input_ids, attention_mask, token_type_ids, training=training)
        if positions is not None:
            hidden = ops.take_along_axis(hidden, ops.cast(positions, "int32")[..., None], axis=1)
        return self.head(hidden, self.encoder.embeddings.word_embeddings.embeddings)

    def torch_weights(self) -> WeightTable:
        return nest({"encoder": self.encoder, "head": self.head})


class Discriminator(layers.Layer):
    """The encoder kept for fine-tuning, with its replaced-token-detection head."""

    def __init__(self, cfg: EncoderConfig, embeddings: Embeddings | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.encoder = Encoder(cfg, embeddings, name="encoder")
        self.head = DiscriminatorHead(cfg, name="head")

    def call(self, input_ids: Any, attention_mask: Any, token_type_ids: Any, training: bool = False) -> Any:
        """One logit per token (batch, seq); positive means 'replaced'."""
        return self.head(self.encoder(input_ids, attention_mask, token_type_ids, training=training))

    def torch_weights(self) -> WeightTable:
        return nest({"encoder": self.encoder, "head": self.head})


def unpack(inputs: dict[str, Any]) -> tuple[Any, Any, Any]:
    """``input_ids``, ``attention_mask`` (default: all ones) and ``token_type_ids`` (default: zeros)."""
    ids = inputs["input_ids"]
    mask = inputs.get("attention_mask")
    types = inputs.get("token_type_ids")
    return ids, ops.ones_like(ids) if mask is None else mask, ops.zeros_like(ids) if types is None else types


class Electra(keras.Model):
    """Generator and discriminator, sharing one embeddings layer under ``embedding_sharing`` es (gdes: refused).

    ``model(inputs)`` gives ``{"discriminator_logits": (batch, seq), "generator_logits": (batch, seq, vocab)}``.
    """

    def __init__(self, config: ModelConfig, **kwargs: Any):
        super().__init__(**kwargs)
        if config.embedding_sharing == "gdes":
            raise ElectraError("embedding_sharing gdes: the Keras networks share embeddings as es or nes; train with "
                               "PyTorch (a GDES checkpoint converts to Keras merged, as nes)")
        self.config = config
        self.discriminator = Discriminator(config.discriminator, name="discriminator")
        shared = self.discriminator.encoder.embeddings if config.tie_embeddings else None
        self.generator = Generator(config.generator, shared, name="generator")

    def call(self, inputs: dict[str, Any], training: bool = False) -> dict[str, Any]:
        ids, mask, types = unpack(inputs)
        return {"discriminator_logits": self.discriminator(ids, mask, types, training=training),
                "generator_logits": self.generator(ids, mask, types, training=training)}

    def torch_weights(self) -> WeightTable:
        """Every variable by our checkpoint key; the generator's shared embeddings are stored once (under the
        discriminator), as :mod:`electra.checkpoint` does."""
        table = nest({"discriminator": self.discriminator, "generator": self.generator})
        if self.config.tie_embeddings:
            table = {k: v for k, v in table.items() if not k.startswith("generator.encoder.embeddings.")}
        return table

    def get_config(self) -> dict[str, Any]:
        return {"config": self.config.to_dict()}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Electra:
        return cls(ModelConfig.from_dict(config["config"]))


class ClassificationHead(layers.Layer):
    """Scores from the ``[CLS]`` vector, as :class:`electra.tasks.heads.ClassificationHead`:
    ``style="electra"`` dropout -> linear; ``style="transformers"`` dropout -> dense -> GELU -> dropout -> linear."""

    def __init__(self, cfg: EncoderConfig, num_labels: int = 2, style: str = "electra", dropout: float | None = None,
                 pooling: str = "cls", **kwargs: Any):
        super().__init__(**kwargs)
        if style not in ("electra", "transformers"):
            raise ValueError(f"head style {style!r}: expected 'electra' or 'transformers'")
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling {pooling!r}: expected 'cls' or 'mean'")
        self.pooling = pooling
        self.act = cfg.hidden_act
        self.num_labels = num_labels
        self.dropout = layers.Dropout(cfg.hidden_dropout if dropout is None else dropout)
        self.dense = dense(cfg, cfg.hidden_size, "dense") if style == "transformers" else None
        self.out = dense(cfg, num_labels, "out")

    def call(self, hidden: Any, mask: Any = None, training: bool = False) -> Any:
        if self.pooling == "cls":
            x = hidden[:, 0]
        else:  # the mean over the real tokens, as electra.tasks.heads.pool
            m = ops.cast(mask, hidden.dtype)[..., None]
            x = ops.sum(hidden * m, axis=1) / ops.maximum(ops.sum(m, axis=1), 1.0)
        x = self.dropout(x, training=training)
        if self.dense is not None:
            x = self.dropout(activation(self.act, self.dense(x)), training=training)
        logits = self.out(x)
        return ops.squeeze(logits, -1) if self.num_labels == 1 else logits

    def torch_weights(self) -> WeightTable:
        return nest({"dense": self.dense, "out": self.out})


class Classifier(keras.Model):
    """The discriminator's encoder + a classification head; ``model(inputs)`` gives logits (batch, labels),
    or (batch,) for regression. Keys as :class:`electra.tasks.runner.TaskModel` (``encoder.``, ``head.``)."""

    def __init__(self, cfg: EncoderConfig, num_labels: int = 2, style: str = "electra",
                 dropout: float | None = None, pooling: str = "cls", **kwargs: Any):
        super().__init__(**kwargs)
        self.encoder_config = cfg
        self.head_args = {"num_labels": num_labels, "style": style, "dropout": dropout, "pooling": pooling}
        self.encoder = Encoder(cfg, name="encoder")
        self.head = ClassificationHead(cfg, name="head", **self.head_args)

    def call(self, inputs: dict[str, Any], training: bool = False) -> Any:
        ids, mask, types = unpack(inputs)
        return self.head(self.encoder(ids, mask, types, training=training), mask, training=training)

    def torch_weights(self) -> WeightTable:
        return nest({"encoder": self.encoder, "head": self.head})


def dummy_inputs(batch: int = 1, seq: int = 2) -> dict[str, Any]:
    """A tiny batch that builds every variable of a model when called on it."""
    import numpy as np

    ids = np.zeros((batch, seq), np.int32)
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}


def build(model: Any) -> Any:
    """Create ``model``'s variables (Keras builds lazily) by calling it once on :func:`dummy_inputs`."""
    model(dummy_inputs())
    return model
