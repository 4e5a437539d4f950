"""Task heads on top of the encoder's hidden states (sequence-level: classification and regression)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from electra.config import EncoderConfig
from electra.dropout import Dropout
from electra.modeling import activation
from electra.tasks.runner import Batch, Head


class ClassificationHead(Head):
    """Scores from the ``[CLS]`` vector; ``num_labels == 1`` is regression (MSE loss).

    ``style="electra"`` is google-research/electra's head (dropout -> linear); ``style="transformers"`` is
    ``ElectraClassificationHead`` (dropout -> dense -> GELU -> dropout -> linear).
    """

    reads_cls_only = True

    def __init__(self, config: EncoderConfig, num_labels: int = 2, style: str = "electra",
                 dropout: float | None = None):
        super().__init__(config, num_labels=num_labels, style=style, dropout=dropout)
        if style not in ("electra", "transformers"):
            raise ValueError(f"head style {style!r}: expected 'electra' or 'transformers'")
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
        x = self.dropout(hidden[:, 0])
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
