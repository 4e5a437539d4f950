"""AdamW as the official ELECTRA code (optional bias correction), parameter groups with layer-wise LR decay."""

from __future__ import annotations

import re
from collections.abc import Iterable

import torch
from torch import Tensor, nn


def layer_depth(name: str, num_layers: int) -> int:
    """Depth of a parameter for layer-wise LR decay, as the official ``_get_layer_lrs``.

    Embeddings (and their projection) are depth 0, encoder layer i is depth i + 1, everything above the
    encoder (task heads) is depth ``num_layers + 2``. With the official rule the last encoder layer gets
    decay ** 2, not decay ** 1 (an off-by-one kept for fidelity; see :func:`param_groups`).
    """
    m = re.search(r"encoder\.layers\.(\d+)\.", name)
    if m:
        return int(m.group(1)) + 1
    if any(f"encoder.{part}." in name for part in ("embeddings", "project", "rel_embeddings", "rel_norm")):
        return 0  # rel_*: DeBERTa's relative-position table, read by every layer
    return num_layers + 2


def param_groups(model: nn.Module, lr: float, weight_decay: float = 0.01, layerwise_decay: float | None = None,
                 num_layers: int | None = None, official_depths: bool = True) -> list[dict]:
    """Decay / no-decay groups, each split by layer depth when ``layerwise_decay`` is given.

    ``official_depths=False`` gives the head depth ``num_layers + 1`` (last layer decayed once), the variant
    most PyTorch ports use.
    """
    groups: dict[tuple[bool, int], list[Tensor]] = {}
    names: dict[tuple[bool, int], list[str]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        module = name.rsplit(".", 1)[0].rsplit(".", 1)[-1]
        decay = not (name.endswith(".bias") or "norm" in module)
        depth = 0
        if layerwise_decay is not None:
            assert num_layers is not None, "num_layers is needed for layer-wise LR decay"
            depth = layer_depth(name, num_layers)
            if not official_depths:
                depth = min(depth, num_layers + 1)
        groups.setdefault((decay, depth), []).append(p)
        names.setdefault((decay, depth), []).append(name)
    top = (num_layers + 2 if official_depths else num_layers + 1) if layerwise_decay is not None else 0
    out = []
    for (decay, depth), params in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        scale = layerwise_decay ** (top - depth) if layerwise_decay is not None else 1.0
        out.append({"params": params, "names": names[(decay, depth)], "lr": lr * scale,
                    "base_lr": lr * scale, "weight_decay": weight_decay if decay else 0.0})
    return out


class AdamW(torch.optim.Optimizer):
    """Adam with decoupled weight decay; ``bias_correction=False`` is the official ELECTRA optimizer.

    The update is applied with ``torch._foreach`` kernels over each group, so one step is a handful of
    fused launches rather than one per tensor.
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-6, weight_decay: float = 0.01, bias_correction: bool = False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      bias_correction=bias_correction))

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001 - torch signature
        assert closure is None
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            beta1, beta2 = group["betas"]
            grads = [p.grad for p in params]
            states = [self.state[p] for p in params]
            for p, s in zip(params, states):
                if not s:
                    s["step"] = torch.zeros((), dtype=torch.float32)
                    s["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    s["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            m = [s["exp_avg"] for s in states]
            v = [s["exp_avg_sq"] for s in states]
            for s in states:
                s["step"] += 1
            torch._foreach_lerp_(m, grads, 1 - beta1)
            torch._foreach_mul_(v, beta2)
            torch._foreach_addcmul_(v, grads, grads, 1 - beta2)
            denom = torch._foreach_sqrt(v)
            lr = group["lr"]
            if group["bias_correction"]:
                step = float(states[0]["step"])
                torch._foreach_div_(denom, (1 - beta2**step) ** 0.5)
                lr = lr / (1 - beta1**step)
            torch._foreach_add_(denom, group["eps"])
            if group["weight_decay"]:
                # Official ELECTRA: update = m / (sqrt(v) + eps) + wd * p; p -= lr * update.
                torch._foreach_add_(params, params, alpha=-group["lr"] * group["weight_decay"])
            torch._foreach_addcdiv_(params, m, denom, value=-lr)
