"""Learning-rate schedule of google-research/electra: linear warm-up multiplied into linear decay to zero."""

from __future__ import annotations


def lr_multiplier(step: int, total_steps: int, warmup_steps: int) -> float:
    """Factor applied to the peak LR at ``step`` (0-based): min(1, step / warmup) * (1 - step / total).

    As the official ``optimization.create_optimizer``: polynomial (power 1) decay to zero over
    ``total_steps``, multiplied by a linear warm-up over ``warmup_steps``.
    """
    decay = max(0.0, 1.0 - step / max(1, total_steps))
    warmup = min(1.0, step / warmup_steps) if warmup_steps > 0 else 1.0
    return decay * warmup
