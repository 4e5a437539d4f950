"""Sinusoidal initialisation of the learned position embeddings (an option for short pre-training runs).

BERT's position table starts as noise: before a model can use "the token to my left", it has to learn a
position code in which neighbours are related. Filling the table with the Transformer's sinusoids (Vaswani et al.
2017, §3.5: ``PE(p, 2i) = sin(p / 10000^(2i/d))``, ``PE(p, 2i+1) = cos(...)``), in which every relative offset is a
fixed linear map, gives that structure from step 0. The table stays an ordinary learned ``nn.Embedding``: the
architecture, checkpoints and exports are unchanged. Rescaled to the standard deviation of the freshly initialised
table (0.02) so the embedding LayerNorm sees the word and position terms at the scale they were designed for.
"""

from __future__ import annotations

import math

import torch

from electra.config import POSITION_INITS  # noqa: F401 (re-exported)
from electra.modeling import Electra, owned_tables


def sinusoids(positions: int, dim: int) -> torch.Tensor:
    """The ``positions x dim`` sinusoid table of Vaswani et al. (even columns sin, odd columns cos)."""
    pos = torch.arange(positions, dtype=torch.float64)[:, None]
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    table = torch.zeros(positions, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return table


@torch.no_grad()
def init_position_embeddings(model: Electra, kind: str) -> None:
    """Overwrite every position table of ``model`` (one when the networks share embeddings) with ``kind``."""
    if kind == "normal":
        return
    for emb in owned_tables(model, "position_embeddings"):  # gdes: the generator's; the discriminator follows
        w = emb.weight
        table = sinusoids(w.shape[0], w.shape[1])
        w.copy_((table * (w.float().std().item() / table.std().item())).to(w.dtype))
