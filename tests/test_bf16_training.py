"""bf16 autocast trains like fp32: smoothed loss curves of a tiny model agree over a few hundred steps."""

import pytest
import torch

from conftest import needs_native_bf16
from electra.config import ModelConfig
from electra.modeling import Electra
from electra.pretraining import ReplacedTokenDetection, SpecialIds
from electra.training.optim import AdamW, param_groups
from electra.training.pretrainer import StepInputs, train_step

SPECIAL = SpecialIds(pad=0, cls=2, sep=3, mask=4)
STEPS, WINDOW, TOLERANCE = 200, 25, 0.05  # relative difference of 25-step moving averages of the total loss


def losses(precision: str) -> torch.Tensor:
    torch.manual_seed(0)
    cfg = ModelConfig.preset("tiny").replace(vocab_size=64, max_position_embeddings=32)
    obj = ReplacedTokenDetection(Electra(cfg), SPECIAL, 32)
    opt = AdamW(param_groups(obj.model, 2e-3, 0.01), lr=2e-3)
    g = torch.Generator().manual_seed(1)
    motifs = torch.randint(5, 64, (8, 31), generator=g)  # a few repeated sequences: learnable structure
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else None
    out = []
    for step in range(STEPS):
        ids = torch.cat([torch.full((8, 1), SPECIAL.cls), motifs[torch.randperm(8, generator=g)]], 1)
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
        out.append(train_step(obj, opt, StepInputs([batch], [0]), step, 0, 1.0, autocast)["loss"])
    return torch.stack(out).float()


def smooth(x: torch.Tensor) -> torch.Tensor:
    return x.unfold(0, WINDOW, 1).mean(-1)


@pytest.mark.slow
@needs_native_bf16  # 200 bf16 steps: ~20 s natively, minutes where bf16 is emulated
def test_bf16_and_fp32_loss_curves_agree():
    fp32, bf16 = smooth(losses("fp32")), smooth(losses("bf16"))
    assert fp32[-1] < 0.9 * fp32[0]  # it learns, so agreement is not trivial
    assert ((bf16 - fp32).abs() / fp32).max() < TOLERANCE, ((bf16 - fp32).abs() / fp32).max()
