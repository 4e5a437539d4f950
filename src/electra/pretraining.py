"""The replaced-token-detection objective (§2 of the paper; google-research/electra ``run_pretraining.py``).

One step reads like the paper: mask 15% of the real tokens, let the generator predict them (MLM loss on
the masked positions only), sample replacements from its softmax, let the discriminator label every real
token original/replaced, and add the two losses with the discriminator weighted 50x.

Randomness (masking and sampling) comes from an explicit ``torch.Generator`` so that a step is a pure
function of its inputs and seed: resuming, gradient accumulation and data-parallel ranks reproduce it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from electra.errors import ElectraError
from electra.modeling import Electra


@dataclass(frozen=True)
class SpecialIds:
    """The token ids masking needs, from the tokenizer's roles (``electra.tokenization.special_tokens``);
    ``others``: any other special token (``unk``, added ones), never chosen either."""

    pad: int
    cls: int
    sep: int
    mask: int
    others: tuple[int, ...] = ()

    @classmethod
    def of(cls, data: Any) -> SpecialIds:
        """From prepared data (``PretrainingData``: ``pad_id``, ``cls_id``, ``sep_id``, ``mask_id``,
        ``other_special_ids``)."""
        return cls(pad=data.pad_id, cls=data.cls_id, sep=data.sep_id, mask=data.mask_id,
                   others=tuple(data.other_special_ids))

    def candidates(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Where a token may be chosen: real and not special."""
        ok = attention_mask.bool() & (input_ids != self.cls) & (input_ids != self.sep) & (input_ids != self.pad)
        ok &= input_ids != self.mask
        if self.others:
            ok &= ~torch.isin(input_ids, torch.tensor(self.others, device=input_ids.device))
        return ok


@dataclass
class Masked:
    """A batch after masking: ``positions``/``ids``/``weights`` are (batch, max_predictions)."""

    input_ids: Tensor  # the generator's input: [MASK] (85%) or the original token (15%) at masked positions
    positions: Tensor  # masked positions; padding slots point at position 0 with weight 0
    ids: Tensor  # original tokens at those positions
    weights: Tensor  # 1.0 for real predictions, 0.0 for padding slots


def max_predictions_per_seq(max_seq_len: int, mask_prob: float) -> int:
    """The official rule: ``int((mask_prob + 0.005) * max_seq_length)`` (19 for 128 tokens at 15%)."""
    return max(1, int((mask_prob + 0.005) * max_seq_len))


def mask_tokens(input_ids: Tensor, attention_mask: Tensor, special: SpecialIds, mask_prob: float,
                max_predictions: int, rng: torch.Generator, mask_token_prob: float = 0.85,
                random_token_prob: float = 0.0, vocab_size: int | None = None) -> Masked:
    """Choose positions to predict and corrupt the input, as ``pretrain_helpers.mask``.

    Per sequence, ``max(1, min(max_predictions, round(n_real * mask_prob)))`` distinct positions are
    drawn uniformly among tokens that are not special (``cls``, ``sep``, padding, ``mask``, ``unk`` or
    another special token of the tokenizer; n_real counts every real token, as the official code).
    Of them ``mask_token_prob`` become the mask token, ``random_token_prob`` a uniformly random token (0 for
    ELECTRA; 0.1 for BERT-style 80/10/10), the rest stay unchanged.
    The official code draws positions with replacement, so it sometimes masks fewer than intended; we
    draw without replacement so the rate is exactly the configured one.
    """
    batch, seq_len = input_ids.shape
    device = input_ids.device
    candidates = special.candidates(input_ids, attention_mask)
    n_real = attention_mask.sum(-1).float()
    n_predict = torch.clamp(torch.round(n_real * mask_prob), max=max_predictions).clamp(min=1).long()
    n_predict = torch.minimum(n_predict, candidates.sum(-1))
    k = min(max_predictions, seq_len)
    # Uniform sampling without replacement: top-k of random keys over the candidates.
    keys = torch.rand(batch, seq_len, generator=rng, device=device).masked_fill_(~candidates, -1.0)
    positions = keys.topk(k, dim=-1).indices
    weights = (torch.arange(k, device=device)[None, :] < n_predict[:, None]).float()
    positions = positions * weights.long()
    return _replace(input_ids, positions, weights, special, rng, mask_token_prob, random_token_prob, vocab_size)


def _replace(input_ids: Tensor, positions: Tensor, weights: Tensor, special: SpecialIds, rng: torch.Generator,
             mask_token_prob: float, random_token_prob: float, vocab_size: int | None) -> Masked:
    """The chosen positions' replacement, per position: the mask token with ``mask_token_prob``, a uniformly random
    token with ``random_token_prob``, else unchanged."""
    batch, k = positions.shape
    device = input_ids.device
    ids = input_ids.gather(1, positions)
    u = torch.rand(batch, k, generator=rng, device=device)
    replacement = torch.where(u < mask_token_prob, special.mask, ids)
    if random_token_prob > 0:
        assert vocab_size is not None
        random_ids = torch.randint(0, vocab_size, (batch, k), generator=rng, device=device)
        replacement = torch.where((u >= mask_token_prob) & (u < mask_token_prob + random_token_prob),
                                  random_ids, replacement)
    corrupted = scatter_replace(input_ids, positions, ids, replacement, weights)
    return Masked(corrupted, positions, ids, weights)


def word_spans(word_start: Tensor, candidates: Tensor) -> tuple[Tensor, Tensor]:
    """The candidate words of each sequence: (word index of each token, -1 where not a candidate; each word's
    length in tokens, 0 past the last word), both (batch, seq_len). A word is a run of candidate tokens from a word
    start up to the next word start; a token that is not a candidate (special, padding) ends the word before it."""
    before = torch.nn.functional.pad(candidates[:, :-1], (1, 0), value=False)
    starts = candidates & (word_start.bool() | ~before)
    index = torch.where(candidates, starts.long().cumsum(-1) - 1, -1)
    lengths = torch.zeros_like(index).scatter_add_(1, index.clamp(min=0), candidates.long())
    return index, lengths


def take_whole_words(sizes: Tensor, budget: Tensor) -> Tensor:
    """BERT's selection over shuffled words: in order, take a word while the total stays at most ``budget``, skip a
    word that would exceed it. ``sizes`` (batch, words): tokens per word (0: no word); ``budget`` (batch,). Returns
    which words are taken (bool, like ``sizes``).

    Batched, in rounds rather than one word at a time: drop the words longer than the room left (they can never
    fit: the room only shrinks), then take the longest prefix of the rest that fits. The word that ended the prefix
    is dropped in the next round, so every round takes a word while any are left, and the words taken are the
    one-at-a-time loop's."""
    taken = torch.zeros_like(sizes, dtype=torch.bool)
    pending = sizes > 0
    count = torch.zeros_like(budget)
    while True:
        room = (budget - count)[:, None]
        pending &= sizes <= room
        if not bool(pending.any()):
            return taken
        fits = pending & ((sizes * pending).cumsum(-1) <= room)
        taken |= fits
        pending &= ~fits
        count += (sizes * fits).sum(-1)


def whole_word_mask(input_ids: Tensor, attention_mask: Tensor, word_start: Tensor, special: SpecialIds,
                    mask_prob: float, max_predictions: int, rng: torch.Generator, mask_token_prob: float = 0.85,
                    random_token_prob: float = 0.0, vocab_size: int | None = None) -> Masked:
    """Whole-word masking, as Google BERT's ``create_masked_lm_predictions`` with ``do_whole_word_mask``.

    ``word_start`` (bool, like ``input_ids``) marks the tokens that start a word (:mod:`electra.data.words`);
    the candidate words are the runs of :func:`word_spans` (special tokens never belong to one). Per sequence the
    count rule of :func:`mask_tokens`, ``n = max(1, min(max_predictions, round(n_real * mask_prob)))``; the words
    are shuffled, then taken whole, in that order, while the total stays at most ``n`` (a word that would exceed
    it is skipped): a word is never split, so a sequence may get fewer than ``n`` predictions. The chosen tokens
    are replaced as by :func:`mask_tokens`; ``positions`` are in increasing order, padded to ``max_predictions``.
    """
    batch, seq_len = input_ids.shape
    device = input_ids.device
    candidates = special.candidates(input_ids, attention_mask)
    index, lengths = word_spans(word_start, candidates)
    n_real = attention_mask.sum(-1).float()
    n_predict = torch.clamp(torch.round(n_real * mask_prob), max=max_predictions).clamp(min=1).long()
    # Shuffle the words: sort random keys (words past the last one sort to the end, with length 0).
    keys = torch.rand(batch, seq_len, generator=rng, device=device).masked_fill_(lengths == 0, 2.0)
    order = keys.argsort(-1)
    sizes = lengths.gather(1, order)
    taken = take_whole_words(sizes, n_predict)
    chosen_words = torch.zeros_like(taken).scatter_(1, order, taken)  # back to word order
    chosen = candidates & chosen_words.gather(1, index.clamp(min=0))
    k = min(max_predictions, seq_len)
    rank = torch.where(chosen, seq_len - torch.arange(seq_len, device=device), 0)  # earlier positions first
    positions = rank.topk(k, dim=-1).indices
    weights = (torch.arange(k, device=device)[None, :] < chosen.sum(-1, keepdim=True)).float()
    positions = positions * weights.long()
    return _replace(input_ids, positions, weights, special, rng, mask_token_prob, random_token_prob, vocab_size)


class TokenMasking(nn.Module):
    """The objectives' default masking: :func:`mask_tokens` (independent tokens)."""

    def forward(self, input_ids: Tensor, attention_mask: Tensor, special: SpecialIds, mask_prob: float,
                max_predictions: int, rng: torch.Generator, word_start: Tensor | None = None,
                **replacement: Any) -> Masked:
        return mask_tokens(input_ids, attention_mask, special, mask_prob, max_predictions, rng, **replacement)


class WholeWordMasking(nn.Module):
    """:func:`whole_word_mask` with the batch's ``word_start`` (data prepared with ``--segmenter``), else the
    vocabulary rule: ``table`` (a bool per id, :func:`electra.tokenization.word_start_table`) looked up per token."""

    def __init__(self, table: Any = None):
        super().__init__()
        self.register_buffer("table", None if table is None else torch.as_tensor(table, dtype=torch.bool),
                             persistent=False)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, special: SpecialIds, mask_prob: float,
                max_predictions: int, rng: torch.Generator, word_start: Tensor | None = None,
                **replacement: Any) -> Masked:
        if word_start is None:
            if self.table is None:
                raise ElectraError("whole-word masking: the batch has no word_start and there is no vocabulary "
                                   "table to derive it from")
            word_start = self.table[input_ids]
        return whole_word_mask(input_ids, attention_mask, word_start, special, mask_prob, max_predictions, rng,
                               **replacement)


def scatter_replace(input_ids: Tensor, positions: Tensor, ids: Tensor, new_ids: Tensor,
                    weights: Tensor) -> Tensor:
    """``input_ids`` with ``new_ids`` written at ``positions`` where ``weights`` is 1 (padding slots, which
    all point at position 0, change nothing: the write is an addition of zero)."""
    return input_ids.scatter_add(1, positions, (new_ids - ids) * weights.long())


def sample_from_softmax(logits: Tensor, rng: torch.Generator, temperature: float = 1.0) -> Tensor:
    """Sample token ids from softmax(logits / T), in fp32, without gradient, by inverting the CDF: one uniform
    number per position, found by binary search in the cumulative probabilities. The same distribution as the
    official code's Gumbel-max trick (:func:`gumbel_sample`), at a fraction of its cost: the Gumbel trick draws
    a random number and takes two logarithms per vocabulary entry, here one ``exp`` and one running sum."""
    with torch.no_grad():
        scaled = logits.float() if temperature == 1.0 else logits.float() / temperature
        cdf = scaled.softmax(-1).cumsum_(-1)
        u = torch.rand((*cdf.shape[:-1], 1), generator=rng, device=cdf.device) * cdf[..., -1:]
        # right=True: the first entry whose cumulative probability exceeds u (never a zero-probability one).
        return torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp_(max=cdf.shape[-1] - 1)


def annealed_temperature(step: int, max_steps: int, start: float, end: float) -> float:
    """The sampling temperature at ``step`` of a replacement curriculum: ``start`` at step 0, linearly to ``end``
    at ``max_steps`` (``start`` 0: no curriculum, ``end`` throughout)."""
    if start <= 0:
        return end
    return start + (end - start) * min(1.0, step / max(1, max_steps))


def gumbel_sample(logits: Tensor, rng: torch.Generator, temperature: float = 1.0) -> Tensor:
    """Sample token ids from softmax(logits / T) with the Gumbel-max trick (as google-research/electra), in fp32,
    without gradient. The benchmark's reference uses it; our objectives use :func:`sample_from_softmax`."""
    with torch.no_grad():
        u = torch.rand(logits.shape, generator=rng, device=logits.device, dtype=torch.float32)
        gumbel = -torch.log(-torch.log(u + 1e-9) + 1e-9)
        return (logits.float() / temperature + gumbel).argmax(-1)


def masked_lm_loss(logits: Tensor, ids: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """Weighted mean cross-entropy over predicted positions, and the generator's accuracy there."""
    return _MaskedLMLoss.apply(logits, ids, weights)


class _MaskedLMLoss(torch.autograd.Function):
    """``F.cross_entropy`` over the vocabulary, weighted, in fp32, with its gradient written out:
    d loss / d logits = (softmax - onehot) * weight / sum(weights). Autograd's version of the same math takes
    a zero-filled gradient, a scatter and a generic log-softmax backward, four times the work on
    (positions x vocabulary) tensors; the accuracy reuses the fp32 log-probabilities (argmax over bf16 logits
    is slow on CPUs)."""

    @staticmethod
    def forward(ctx, logits: Tensor, ids: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        log_probs = logits.float().log_softmax(-1)
        coef = weights.float() / (weights.sum() + 1e-6)
        loss = -(log_probs.gather(-1, ids[..., None]).squeeze(-1) * coef).sum()
        accuracy = ((log_probs.argmax(-1) == ids).float() * coef).sum()
        ctx.save_for_backward(log_probs, ids, coef)
        ctx.dtype = logits.dtype
        ctx.mark_non_differentiable(accuracy)
        return loss, accuracy

    @staticmethod
    def backward(ctx, grad_loss: Tensor, _grad_accuracy: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        log_probs, ids, coef = ctx.saved_tensors
        scale = (grad_loss * coef)[..., None]
        grad = log_probs.exp().mul_(scale).scatter_add_(-1, ids[..., None], -scale)
        return grad.to(ctx.dtype), None, None


class ReplacedTokenDetection(nn.Module):
    """The ELECTRA objective around an :class:`Electra` model (the other objectives: :mod:`electra.objectives`)."""

    def __init__(self, model: Electra, special: SpecialIds, max_seq_len: int, mask_prob: float = 0.15,
                 generator_weight: float = 1.0, discriminator_weight: float = 50.0, temperature: float = 1.0):
        super().__init__()
        self.model = model
        self.special = special
        self.mask_prob = mask_prob
        self.max_predictions = max_predictions_per_seq(max_seq_len, mask_prob)
        self.generator_weight = generator_weight
        self.discriminator_weight = discriminator_weight
        self.temperature = temperature
        self.masking: nn.Module = TokenMasking()  # WholeWordMasking: objectives.build_objective

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor,
                rng: torch.Generator, word_start: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """Total loss and detached metric tensors (no host synchronisation); ``word_start``: whole-word masking's
        word starts when the data has them."""
        gen, disc = self.model.generator, self.model.discriminator
        # 1. Mask.
        m = self.masking(input_ids, attention_mask, self.special, self.mask_prob, self.max_predictions, rng,
                         word_start)
        # 2. Generator: MLM on the masked positions only (the vocabulary projection runs only there).
        gen_logits = gen(m.input_ids, attention_mask, token_type_ids, positions=m.positions)
        mlm_loss, mlm_acc = masked_lm_loss(gen_logits, m.ids, m.weights)
        # 3. Sample replacements; a sample equal to the original counts as original.
        sampled = sample_from_softmax(gen_logits.detach(), rng, self.temperature)
        del gen_logits  # (positions x vocabulary): not needed by backward, so not held during the discriminator
        fake_ids = scatter_replace(input_ids, m.positions, m.ids, sampled, m.weights)
        labels = (fake_ids != input_ids).float()
        # 4. Discriminator: sigmoid BCE over every real token.
        disc_logits = disc(fake_ids, attention_mask, token_type_ids)
        real = attention_mask.float()
        bce = F.binary_cross_entropy_with_logits(disc_logits.float(), labels, reduction="none")
        disc_loss = (bce * real).sum() / (real.sum() + 1e-6)
        loss = self.generator_weight * mlm_loss + self.discriminator_weight * disc_loss
        with torch.no_grad():
            predicted = (disc_logits > 0).float() * real
            tp = (predicted * labels).sum()
            metrics = {
                "loss": loss.detach(),
                "mlm_loss": mlm_loss.detach(),
                "mlm_accuracy": mlm_acc,
                "disc_loss": disc_loss.detach(),
                "disc_accuracy": ((predicted == labels).float() * real).sum() / real.sum(),
                "disc_precision": tp / predicted.sum().clamp(min=1),
                "disc_recall": tp / labels.sum().clamp(min=1),
                "replaced_fraction": labels.sum() / real.sum(),
            }
        return loss, metrics
