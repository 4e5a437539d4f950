"""How well a pre-trained discriminator detects its generator's replacements, on examples it has not trained on.

The training metrics (``metrics.csv``) are running averages under dropout on the batches being learned from;
this is the held-out view: the model in eval mode, masking and sampling as in training (15% masked, replacements
sampled from the generator), then the discriminator's ROC AUC, precision and recall on replaced tokens, and its
loss next to the loss of the best constant prediction (the entropy of the replaced fraction) — what predicting
"original" everywhere, or the base rate, would score.

Replacements come from the model's own generator (what it trained against), or, with ``unigram``, from a fixed
distribution over the vocabulary (e.g. the corpus's token frequencies, :func:`unigram_distribution`): the same
corruption for every model, so discriminators with generators of different strength are compared fairly.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from electra.metrics import roc_auc
from electra.modeling import Electra
from electra.pretraining import SpecialIds, mask_tokens, max_predictions_per_seq, sample_from_softmax, scatter_replace


@dataclass
class DetectionReport:
    tokens: int
    replaced_fraction: float
    auc: float
    precision: float
    recall: float
    accuracy: float
    disc_loss: float
    constant_loss: float  # binary entropy of replaced_fraction: the loss of predicting the base rate everywhere
    mlm_accuracy: float
    held_out: bool | None = None  # True/False when known whether the model trained on these examples

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    def format(self) -> str:
        where = {True: "held-out detection", False: "detection (examples seen in training)", None: "detection"}
        return (f"{where[self.held_out]} on {self.tokens:,} tokens ({self.replaced_fraction:.1%} replaced): "
                f"AUC {self.auc:.3f} (chance 0.5), recall {self.recall:.3f}, precision {self.precision:.3f}, "
                f"accuracy {self.accuracy:.3f} (all-original {1 - self.replaced_fraction:.3f}), "
                f"loss {self.disc_loss:.4f} vs constant {self.constant_loss:.4f}; "
                f"generator accuracy {self.mlm_accuracy:.3f}")


def binary_entropy(p: float) -> float:
    return 0.0 if p <= 0 or p >= 1 else -(p * math.log(p) + (1 - p) * math.log(1 - p))


def unigram_distribution(data, exclude: Sequence[int] = ()) -> torch.Tensor:
    """Token frequencies of a :class:`PretrainingData`'s shards (a probability vector; ``exclude`` ids get 0)."""
    counts = data.token_counts().astype(np.float64)
    counts[list(exclude)] = 0
    return torch.from_numpy(counts / counts.sum()).float()


@torch.no_grad()
def evaluate_detection(model: Electra, batches, special: SpecialIds, mask_prob: float = 0.15,
                       seed: int = 0, temperature: float = 1.0, unigram: torch.Tensor | None = None
                       ) -> DetectionReport:
    """Score ``model`` on an iterable of batches (``input_ids``, ``attention_mask``, ``token_type_ids``);
    replacements sampled from its generator, or from ``unigram`` (a probability vector) when given."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    rng = torch.Generator(device=device).manual_seed(seed)
    probs, labels, losses = [], [], []
    mlm_hits = mlm_total = 0.0
    try:
        for b in batches:
            ids, am, tt = (b[k].to(device) for k in ("input_ids", "attention_mask", "token_type_ids"))
            m = mask_tokens(ids, am, special, mask_prob, max_predictions_per_seq(ids.shape[1], mask_prob), rng)
            gen_logits = model.generator(m.input_ids, am, tt, positions=m.positions)
            mlm_hits += float(((gen_logits.argmax(-1) == m.ids).float() * m.weights).sum())
            mlm_total += float(m.weights.sum())
            if unigram is None:
                sampled = sample_from_softmax(gen_logits, rng, temperature)
            else:
                flat = torch.multinomial(unigram.to(device), m.positions.numel(), replacement=True, generator=rng)
                sampled = flat.view_as(m.positions)
            fake = scatter_replace(ids, m.positions, m.ids, sampled, m.weights)
            label = (fake != ids).float()
            logits = model.discriminator(fake, am, tt).float()
            real = am.bool()
            losses.append(F.binary_cross_entropy_with_logits(logits[real], label[real], reduction="sum").item())
            probs.append(torch.sigmoid(logits[real]).cpu().numpy())
            labels.append(label[real].cpu().numpy())
    finally:
        model.train(was_training)
    p, y = np.concatenate(probs), np.concatenate(labels).astype(bool)
    predicted = p > 0.5
    tp = int((predicted & y).sum())
    rate = float(y.mean())
    return DetectionReport(
        tokens=len(y), replaced_fraction=rate, auc=roc_auc(y, p),
        precision=tp / max(1, int(predicted.sum())), recall=tp / max(1, int(y.sum())),
        accuracy=float((predicted == y).mean()), disc_loss=sum(losses) / len(y),
        constant_loss=binary_entropy(rate), mlm_accuracy=mlm_hits / max(1.0, mlm_total))


def evaluate_on_data(model: Electra, data, num_batches: int, start: int = 0, batch_size: int = 32,
                     mask_prob: float = 0.15, seed: int = 0, temperature: float = 1.0,
                     unigram: torch.Tensor | None = None) -> DetectionReport:
    """:func:`evaluate_detection` on ``num_batches`` batches of a :class:`PretrainingData` from batch ``start`` on,
    with the special-token ids of the data's tokenizer."""
    special = SpecialIds.of(data)
    batches = itertools.islice(data.batches(batch_size, start=start), num_batches)
    return evaluate_detection(model, batches, special, mask_prob, seed=seed, temperature=temperature,
                              unigram=unigram)
