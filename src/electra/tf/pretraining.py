"""The replaced-token-detection objective in Keras 3 (§2 of the paper), as :mod:`electra.pretraining` does it.

:class:`ReplacedTokenDetection` wraps a Keras :class:`~electra.tf.modeling.Electra`. Its ``call`` runs one step's
forward pass: mask 15% of the real tokens (85% of them become ``[MASK]``, the rest stay; special tokens never;
the official count rule), let the generator predict them (vocabulary logits at the masked positions only),
sample replacements from its softmax with ``keras.random`` and a ``SeedGenerator`` (``stop_gradient``: no
gradient flows through sampling), and let the discriminator label every token. ``compute_loss`` adds the
generator's MLM loss on the masked positions and 50 x the discriminator's sigmoid BCE over real tokens, and
tracks the metrics the PyTorch trainer logs. So ``model.fit`` trains it on every Keras backend.

The masking rule is :func:`electra.pretraining.mask_tokens`'s (positions drawn without replacement by top-k of
uniform keys over the candidates); the random streams differ from torch's. For parity checks, ``inputs`` may
carry fixed ``positions``/``weights``/``masked_input_ids`` (a :class:`electra.pretraining.Masked`) and
``sampled`` ids, which then replace the random draws.
"""

from __future__ import annotations

from typing import Any

from electra.pretraining import SpecialIds, max_predictions_per_seq
from electra.tf import keras_module
from electra.tf.modeling import Electra, unpack

keras = keras_module()
ops = keras.ops

METRICS = ("loss", "mlm_loss", "mlm_accuracy", "disc_loss", "disc_accuracy", "disc_precision", "disc_recall",
           "replaced_fraction")


def mask_tokens(input_ids: Any, attention_mask: Any, special: SpecialIds, mask_prob: float, max_predictions: int,
                seed: Any, mask_token_prob: float = 0.85) -> dict[str, Any]:
    """``masked_input_ids``, ``positions``, ``ids``, ``weights`` (batch, k) as :func:`electra.pretraining.mask_tokens`:
    ``max(1, min(max_predictions, round(n_real * mask_prob)))`` distinct non-special positions per sequence."""
    ids = ops.cast(input_ids, "int32")
    seq_len = ops.shape(ids)[1]
    real = ops.cast(attention_mask, "bool")
    candidates = real & (ids != special.cls) & (ids != special.sep) & (ids != special.pad) & (ids != special.mask)
    for other in special.others:
        candidates = candidates & (ids != other)
    n_real = ops.sum(ops.cast(real, "float32"), axis=-1)
    n_predict = ops.clip(ops.round(n_real * mask_prob), 1, max_predictions)
    n_predict = ops.minimum(n_predict, ops.sum(ops.cast(candidates, "float32"), axis=-1))
    k = min(max_predictions, int(seq_len)) if isinstance(seq_len, int) else max_predictions
    keys = ops.where(candidates, keras.random.uniform(ops.shape(ids), seed=seed), -1.0)
    _, positions = ops.top_k(keys, k)
    weights = ops.cast(ops.arange(k)[None, :] < ops.cast(n_predict, "int32")[:, None], "float32")
    positions = positions * ops.cast(weights, "int32")
    original = ops.take_along_axis(ids, positions, axis=1)
    u = keras.random.uniform(ops.shape(positions), seed=seed)
    replacement = ops.where(u < mask_token_prob, special.mask, original)
    return {"masked_input_ids": scatter_replace(ids, positions, original, replacement, weights),
            "positions": positions, "ids": original, "weights": weights}


def scatter_replace(input_ids: Any, positions: Any, ids: Any, new_ids: Any, weights: Any) -> Any:
    """``input_ids`` with ``new_ids`` at ``positions`` where ``weights`` is 1 (an addition of the difference,
    so padding slots, which point at position 0 with weight 0, change nothing)."""
    one_hot = ops.one_hot(positions, ops.shape(input_ids)[1], dtype="int32")  # (batch, k, seq)
    delta = (ops.cast(new_ids, "int32") - ops.cast(ids, "int32")) * ops.cast(weights, "int32")
    return ops.cast(input_ids, "int32") + ops.sum(one_hot * delta[..., None], axis=1)


def masked_lm_loss(logits: Any, ids: Any, weights: Any) -> tuple[Any, Any]:
    """Weighted mean cross-entropy over the predicted positions, and the generator's accuracy there."""
    log_probs = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)
    coef = weights / (ops.sum(weights) + 1e-6)
    picked = ops.squeeze(ops.take_along_axis(log_probs, ops.cast(ids, "int32")[..., None], axis=-1), -1)
    correct = ops.cast(ops.equal(ops.cast(ops.argmax(log_probs, axis=-1), "int32"), ops.cast(ids, "int32")), "float32")
    return -ops.sum(picked * coef), ops.sum(correct * coef)


def bce_with_logits(logits: Any, labels: Any) -> Any:
    """Elementwise sigmoid cross-entropy, the stable form max(x, 0) - x z + log(1 + exp(-|x|))."""
    return ops.relu(logits) - logits * labels + ops.log1p(ops.exp(-ops.abs(logits)))


class ReplacedTokenDetection(keras.Model):
    """The ELECTRA objective around a Keras :class:`Electra`; ``fit(dataset)`` on batches of ``input_ids``,
    ``attention_mask``, ``token_type_ids`` (no targets: the objective makes its own)."""

    def __init__(self, model: Electra, special: SpecialIds, max_seq_len: int, mask_prob: float = 0.15,
                 generator_weight: float = 1.0, discriminator_weight: float = 50.0, temperature: float = 1.0,
                 seed: int = 0, **kwargs: Any):
        super().__init__(**kwargs)
        self.model = model
        self.special = special
        self.mask_prob = mask_prob
        self.max_predictions = max_predictions_per_seq(max_seq_len, mask_prob)
        self.generator_weight = generator_weight
        self.discriminator_weight = discriminator_weight
        self.temperature = temperature
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in METRICS}

    def call(self, inputs: dict[str, Any], training: bool = False) -> dict[str, Any]:
        """The step's tensors: generator logits at the masked positions, labels, discriminator logits."""
        input_ids, attention_mask, token_type_ids = unpack(inputs)
        input_ids = ops.cast(input_ids, "int32")
        gen, disc = self.model.generator, self.model.discriminator
        # 1. Mask (or take the given masking).
        if "positions" in inputs:
            m = {k: inputs[k] for k in ("masked_input_ids", "positions", "weights")}
            m["ids"] = ops.take_along_axis(input_ids, ops.cast(m["positions"], "int32"), axis=1)
        else:
            m = mask_tokens(input_ids, attention_mask, self.special, self.mask_prob, self.max_predictions,
                            self.seed_generator)
        weights = ops.cast(m["weights"], "float32")
        # 2. Generator: vocabulary logits at the masked positions only.
        gen_logits = gen(m["masked_input_ids"], attention_mask, token_type_ids, positions=m["positions"],
                         training=training)
        # 3. Sample replacements from its softmax, without gradient; a sample equal to the original is original.
        if "sampled" in inputs:
            sampled = ops.cast(inputs["sampled"], "int32")
        else:
            scaled = ops.stop_gradient(ops.cast(gen_logits, "float32")) / self.temperature
            flat = ops.reshape(scaled, (-1, ops.shape(scaled)[-1]))
            sampled = ops.reshape(keras.random.categorical(flat, 1, seed=self.seed_generator, dtype="int32"),
                                  ops.shape(m["positions"]))
        sampled = ops.stop_gradient(sampled)
        fake_ids = scatter_replace(input_ids, m["positions"], m["ids"], sampled, weights)
        labels = ops.cast(fake_ids != input_ids, "float32")
        # 4. Discriminator on every token.
        disc_logits = disc(fake_ids, attention_mask, token_type_ids, training=training)
        return {"gen_logits": gen_logits, "ids": m["ids"], "weights": weights, "disc_logits": disc_logits,
                "labels": labels, "real": ops.cast(attention_mask, "float32")}

    def compute_loss(self, x: Any = None, y: Any = None, y_pred: Any = None, sample_weight: Any = None,
                     training: bool = True) -> Any:
        """MLM loss + 50 x discriminator BCE over real tokens; updates the metric trackers."""
        if y_pred is None:
            y_pred = self(x, training=training)
        losses = self.losses_of(y_pred)
        for name, value in losses.items():
            self.trackers[name].update_state(value)
        return losses["loss"]

    def losses_of(self, out: dict[str, Any]) -> dict[str, Any]:
        """The total loss and every metric of :data:`METRICS` from :meth:`call`'s output."""
        mlm_loss, mlm_acc = masked_lm_loss(out["gen_logits"], out["ids"], out["weights"])
        real, labels, disc_logits = out["real"], out["labels"], ops.cast(out["disc_logits"], "float32")
        disc_loss = ops.sum(bce_with_logits(disc_logits, labels) * real) / (ops.sum(real) + 1e-6)
        loss = self.generator_weight * mlm_loss + self.discriminator_weight * disc_loss
        predicted = ops.stop_gradient(ops.cast(disc_logits > 0, "float32") * real)
        tp = ops.sum(predicted * labels)
        return {"loss": loss, "mlm_loss": mlm_loss, "mlm_accuracy": mlm_acc, "disc_loss": disc_loss,
                "disc_accuracy": ops.sum(ops.cast(predicted == labels, "float32") * real) / ops.sum(real),
                "disc_precision": tp / ops.maximum(ops.sum(predicted), 1.0),
                "disc_recall": tp / ops.maximum(ops.sum(labels), 1.0),
                "replaced_fraction": ops.sum(labels) / ops.sum(real)}

    @property
    def metrics(self) -> list[Any]:
        return list(self.trackers.values())

    def compute_metrics(self, x: Any, y: Any, y_pred: Any, sample_weight: Any = None) -> dict[str, Any]:
        return {name: t.result() for name, t in self.trackers.items()}
