"""Task heads on top of the encoder's hidden states, one per task family.

Every head is built as ``cls(encoder_config, **args)`` and saved with its ``args`` in a run's ``task.json``, so
:func:`electra.tasks.runner.load_task_model` rebuilds it from :data:`HEADS` by class name. ``kind`` names the
task family (:mod:`electra.tasks.registry`); :meth:`Head.output_names` are the outputs an ONNX graph of the
head returns (:mod:`electra.export.onnx`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from electra.config import EncoderConfig
from electra.data.conll import IGNORE
from electra.kernels import Dropout
from electra.modeling import activation

Batch = dict[str, Tensor]
POOLINGS = ("cls", "mean")


def pool(hidden: Tensor, attention_mask: Tensor | None, pooling: str) -> Tensor:
    """(batch, hidden): the first token's vector (``cls``), or the mean over the real tokens (``mean``)."""
    if pooling == "cls":
        return hidden[:, 0]
    if attention_mask is None:
        return hidden.mean(1)
    mask = attention_mask.to(hidden.dtype)[..., None]
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class Head(nn.Module):
    """Base of task heads. Built as ``cls(encoder_config, **args)``; ``args`` (JSON values) are saved with the
    run so :func:`load_task_model` can rebuild the head. ``forward(hidden, batch)`` returns a dict with
    ``"logits"`` and, when the batch carries the labels, ``"loss"`` (a scalar). A head that reads only the
    ``[CLS]`` position sets ``reads_cls_only``: the encoder's last layer then computes that row alone."""

    reads_cls_only = False
    kind = ""  # the task family: "classification", "qa", "tagging", "ranking"

    def __init__(self, config: EncoderConfig, **args: Any):
        super().__init__()
        self.args = args

    def forward(self, hidden: Tensor, batch: Batch) -> dict[str, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def output_names(self) -> tuple[str, ...]:
        """What an exported graph of this head returns (its forward's outputs without the loss)."""
        return ("logits",)


class ClassificationHead(Head):
    """Scores from the first (cls) token's vector, or with ``pooling="mean"`` from the mean of the real tokens'
    vectors (what sentence encoders such as multilingual-e5 are trained to be read by); ``num_labels == 1`` is
    regression (MSE loss).

    ``style="electra"`` is google-research/electra's head (dropout -> linear); ``style="transformers"`` is
    ``ElectraClassificationHead`` (dropout -> dense -> GELU -> dropout -> linear).
    """

    reads_cls_only = True
    kind = "classification"

    def __init__(self, config: EncoderConfig, num_labels: int = 2, style: str = "electra",
                 dropout: float | None = None, pooling: str = "cls"):
        super().__init__(config, num_labels=num_labels, style=style, dropout=dropout, pooling=pooling)
        if style not in ("electra", "transformers"):
            raise ValueError(f"head style {style!r}: expected 'electra' or 'transformers'")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling {pooling!r}: expected one of {', '.join(POOLINGS)}")
        self.pooling = pooling
        self.reads_cls_only = pooling == "cls"
        self.num_labels = num_labels
        self.act = config.hidden_act
        self.dropout = Dropout(config.hidden_dropout if dropout is None else dropout)
        self.dense = nn.Linear(config.hidden_size, config.hidden_size) if style == "transformers" else None
        self.out = nn.Linear(config.hidden_size, num_labels)
        for layer in (self.dense, self.out):
            if layer is not None:
                nn.init.trunc_normal_(layer.weight, std=config.initializer_range,
                                      a=-2 * config.initializer_range, b=2 * config.initializer_range)
                nn.init.zeros_(layer.bias)

    def forward(self, hidden: Tensor, batch: Batch) -> dict[str, Tensor]:
        x = self.dropout(pool(hidden, batch.get("attention_mask"), self.pooling))
        if self.dense is not None:
            x = self.dropout(activation(self.act, self.dense(x)))
        logits = self.out(x)
        if self.num_labels == 1:
            logits = logits.squeeze(-1)
        out = {"logits": logits}
        if "labels" in batch:
            labels = batch["labels"]
            out["loss"] = (F.mse_loss(logits, labels.float()) if self.num_labels == 1
                           else F.cross_entropy(logits, labels.long()))
        return out

def _init(layer: nn.Linear, std: float) -> nn.Linear:
    nn.init.trunc_normal_(layer.weight, std=std, a=-2 * std, b=2 * std)
    nn.init.zeros_(layer.bias)
    return layer


class SpanQAHead(Head):
    """Start/end span head (joint or independent) with an optional answerability classifier."""

    kind = "qa"

    def __init__(self, config: EncoderConfig, joint: bool = True, answerable: bool = False, beam_size: int = 20,
                 answerable_weight: float = 0.5, inner_size: int = 512):
        super().__init__(config, joint=joint, answerable=answerable, beam_size=beam_size,
                         answerable_weight=answerable_weight, inner_size=inner_size)
        h, std = config.hidden_size, config.initializer_range
        self.act = config.hidden_act
        self.joint, self.answerable = joint, answerable
        self.beam_size, self.answerable_weight = beam_size, answerable_weight
        self.start = _init(nn.Linear(h, 1), std)
        if joint:
            self.end_hidden = _init(nn.Linear(2 * h, inner_size), std)  # official "qa_hidden"
        self.end = _init(nn.Linear(inner_size if joint else h, 1), std)
        if answerable:
            self.answerable_hidden = _init(nn.Linear(2 * h, inner_size), std)
            self.answerable_out = _init(nn.Linear(inner_size, 1), std)

    @staticmethod
    def answer_mask(batch: Batch) -> Tensor:
        """1 on context tokens (segment 1, not padding) and on [CLS]; as the official ``answer_mask``."""
        mask = (batch["token_type_ids"] * batch["attention_mask"]).float()
        mask[:, 0] = 1.0
        return mask

    def joint_end_logits(self, hidden: Tensor, start_hidden: Tensor, mask: Tensor, chunk: int = 4) -> Tensor:
        """End logits (batch, k, seq) given start hidden states (batch, k, hidden).

        dense([s; h]) = W_s s + W_h h + b is computed without materialising the concatenation, ``chunk``
        starts at a time (the (batch, chunk, seq, 512) activation is the memory peak).
        """
        h = hidden.shape[-1]
        w, b = self.end_hidden.weight, self.end_hidden.bias
        per_token = hidden @ w[:, h:].T + b  # (batch, seq, inner)
        per_start = start_hidden @ w[:, :h].T  # (batch, k, inner)
        logits = torch.cat([self.end(activation(self.act, per_start[:, i:i + chunk, None, :]
                                                 + per_token[:, None, :, :])).squeeze(-1)
                            for i in range(0, per_start.shape[1], chunk)], dim=1)
        return logits + 1000.0 * (mask[:, None, :] - 1)

    def forward(self, hidden: Tensor, batch: Batch) -> dict[str, Tensor]:
        mask = self.answer_mask(batch)
        start_logits = self.start(hidden).squeeze(-1) + 1000.0 * (mask - 1)
        out: dict[str, Tensor] = {"logits": start_logits, "start_logits": start_logits}
        training = "start_positions" in batch
        if not self.joint:
            out["end_logits"] = self.end(hidden).squeeze(-1) + 1000.0 * (mask - 1)
        elif training:
            starts = batch["start_positions"].long()
            start_hidden = hidden[torch.arange(hidden.shape[0]), starts][:, None]
            out["end_logits"] = self.joint_end_logits(hidden, start_hidden, mask)[:, 0]
        else:
            k = min(self.beam_size, hidden.shape[1])
            start_lp = F.log_softmax(start_logits, -1)
            top_lp, top_idx = start_lp.topk(k, -1)
            start_hidden = hidden.gather(1, top_idx[..., None].expand(-1, -1, hidden.shape[-1]))
            end_lp = F.log_softmax(self.joint_end_logits(hidden, start_hidden, mask), -1)
            end_top_lp, end_top_idx = end_lp.topk(k, -1)
            out.update(start_top_log_probs=top_lp, start_top_index=top_idx, end_top_log_probs=end_top_lp,
                       end_top_index=end_top_idx)
        if self.answerable:
            start_p = F.softmax(start_logits, -1)
            start_feature = (start_p[..., None] * hidden).sum(1)
            inner = activation(self.act, self.answerable_hidden(torch.cat([hidden[:, 0], start_feature], -1)))
            out["answerable_logit"] = self.answerable_out(inner).squeeze(-1)  # > 0: unanswerable
        if training:
            loss = (F.cross_entropy(start_logits, batch["start_positions"].long(), reduction="none")
                    + F.cross_entropy(out["end_logits"], batch["end_positions"].long(), reduction="none")) / 2
            if self.answerable:
                loss = loss + self.answerable_weight * F.binary_cross_entropy_with_logits(
                    out["answerable_logit"], batch["is_impossible"].float(), reduction="none")
            out["loss"] = loss.mean()
        return out

    def output_names(self) -> tuple[str, ...]:
        beams = ("start_logits", "start_top_log_probs", "start_top_index", "end_top_log_probs", "end_top_index")
        return (beams if self.joint else ("start_logits", "end_logits")) + (
            ("answerable_logit",) if self.answerable else ())

    @torch.no_grad()
    def span_log_probs(self, hidden: Tensor, batch: Batch, rows: Tensor, starts: Tensor, ends: Tensor) -> Tensor:
        """Score of given spans (row of the batch, start, end): start + end log-probs (joint) or logits."""
        mask = self.answer_mask(batch)
        start_logits = self.start(hidden).squeeze(-1) + 1000.0 * (mask - 1)
        if not self.joint:
            end_logits = self.end(hidden).squeeze(-1) + 1000.0 * (mask - 1)
            return start_logits[rows, starts] + end_logits[rows, ends]
        start_lp = F.log_softmax(start_logits, -1)[rows, starts]
        end = self.joint_end_logits(hidden[rows], hidden[rows, starts][:, None], mask[rows])[:, 0]
        return start_lp + F.log_softmax(end, -1)[torch.arange(len(rows)), ends]

class TokenClassificationHead(Head):
    """dropout -> linear on every token; loss over labelled (first sub-token) positions only."""

    kind = "tagging"

    def __init__(self, config: EncoderConfig, num_labels: int = 9, dropout: float | None = None):
        super().__init__(config, num_labels=num_labels, dropout=dropout)
        self.dropout = Dropout(config.hidden_dropout if dropout is None else dropout)
        self.out = nn.Linear(config.hidden_size, num_labels)
        std = config.initializer_range
        nn.init.trunc_normal_(self.out.weight, std=std, a=-2 * std, b=2 * std)
        nn.init.zeros_(self.out.bias)

    def forward(self, hidden: Tensor, batch: Batch) -> dict[str, Tensor]:
        logits = self.out(self.dropout(hidden))
        out = {"logits": logits}
        if "labels" in batch:
            out["loss"] = F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=IGNORE)
        return out

class RankingHead(Head):
    """``[CLS]`` -> dropout -> linear -> one score per candidate, reshaped to (lists, candidates)."""

    reads_cls_only = True
    kind = "ranking"

    def __init__(self, config: EncoderConfig, loss: str = "choice", dropout: float | None = None):
        super().__init__(config, loss=loss, dropout=dropout)
        if loss not in ("choice", "listwise"):
            raise ValueError(f"ranking loss {loss!r}: expected 'choice' or 'listwise'")
        self.dropout = Dropout(config.hidden_dropout if dropout is None else dropout)
        self.out = nn.Linear(config.hidden_size, 1)
        nn.init.trunc_normal_(self.out.weight, std=config.initializer_range, a=-2 * config.initializer_range,
                              b=2 * config.initializer_range)
        nn.init.zeros_(self.out.bias)

    def forward(self, hidden: Tensor, batch: Batch) -> dict[str, Tensor]:
        valid = batch["candidate_mask"].bool()
        scores = self.out(self.dropout(hidden[:, 0])).squeeze(-1).view(valid.shape)
        scores = scores.masked_fill(~valid, -1e4)
        out = {"logits": scores}
        if "target" in batch:
            logp = scores.float().log_softmax(-1)
            t = batch["target"].float()
            out["loss"] = (t * (torch.log(t.clamp_min(1e-12)) - logp)).masked_fill(~valid, 0.0).sum(-1).mean()
        elif "labels" in batch:
            out["loss"] = F.cross_entropy(scores.float(), batch["labels"].long())
        return out


HEADS: dict[str, type[Head]] = {h.__name__: h for h in (ClassificationHead, SpanQAHead, TokenClassificationHead,
                                                         RankingHead)}
