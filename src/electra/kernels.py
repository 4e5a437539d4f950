"""The model's CPU fast paths: the same operations as :mod:`electra.modeling` writes them, cheaper in eager CPU mode.

:mod:`electra.modeling` reads like the paper and calls these where a fast path applies; each computes what the
plain PyTorch expression computes (the tests compare them), and each is taken only for eager CPU tensors
(:func:`eager_cpu`). Accelerators and compiled graphs take the plain expressions, which are fused there.

**Dropout** (:func:`dropout`, :class:`Dropout`). PyTorch's CPU dropout draws a float Bernoulli sample per
element (``bernoulli_``), then multiplies twice and converts the mask to bool: ~24 ms for 4M elements on a
2-core EPYC, a quarter of an ELECTRA-Small bf16 step. Here the mask comes from 15 random bits per element (one
``int64`` draw of 63 uniform bits per four elements, viewed as ``int16`` with the sign bit cleared) compared with
a threshold: element i is dropped iff ``bits_i < round(p * 2^15)``. The drop rate is therefore p rounded to a
multiple of 2^-15 (0.1 becomes 0.1000061, a relative change of 6e-5) and kept values are scaled by
``1 / (1 - rate)``, so the output stays unbiased; the bool mask is kept for the backward pass, as
``native_dropout`` does. Randomness comes from the default generator, so ``torch.manual_seed`` makes it
reproducible.

**Attention** (:func:`self_attention` for the fused q/k/v projection, :func:`attend` for separate q and k/v).
Two paths compute softmax(q k^T / sqrt(d) + mask) v with dropout on the probabilities:

- ``F.scaled_dot_product_attention`` (SDPA): taken on accelerators, under compilation, and on the CPU in fp32
  without attention dropout (evaluation, inference, dropout 0), where its fused CPU kernel is the fastest.
- :func:`attention`, written out with two batched matmuls and a softmax, taken where
  :func:`written_out_attention` says so: eager CPU tensors with dropout (SDPA's CPU dropout path is the same math
  with ``bernoulli_`` masks; here the cheap masks above, and one probability tensor kept for backward instead of
  two, see :class:`_DropoutAttentionOutput`) or in bf16 (the CPU flash kernel is 3-5x slower than two bf16
  batched matmuls and a softmax for ELECTRA-Small heads, 32x128, forward and backward). Its no-dropout branch
  is the bf16 evaluation case. Neither path is redundant: removing either changes speed, and replacing the
  written-out dropout by SDPA's would change the random masks (the same distribution, other draws).

**GELU then the FFN output layer** (:func:`recomputes_gelu`, :class:`_GeluThenLinear`). Training in fp32 on the
CPU, only the pre-activation h is kept for backward and GELU(h) is recomputed there (one GELU pass more, ~4 ms of
a 124 ms fp32 Small block; saves ``intermediate_size`` floats per token and layer). Under bf16 autocast, where
elementwise work weighs more, the plain ``ffn_out(gelu(h))`` keeps both as usual.

**Padding check** (:func:`no_padding`): a CPU attention mask without padding is dropped, so attention runs
unmasked (same result, no masking work); accelerator masks are never inspected (no host synchronisation).

:func:`accelerator_path` (or ``ELECTRA_ACCELERATOR_PATH=1``) sends CPU tensors down the code accelerators run
(``F.dropout``, SDPA attention, no host-side padding check, no GELU recomputation), so that tests on a CPU
exercise what a first GPU run executes.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# ---- which path: eager CPU, or the accelerators' ------------------------------------------------------------
_accelerator_path = os.environ.get("ELECTRA_ACCELERATOR_PATH", "") == "1"


@contextlib.contextmanager
def accelerator_path(enabled: bool = True) -> Iterator[None]:
    """Within the block, treat CPU tensors as accelerator tensors (see the module docstring)."""
    global _accelerator_path
    previous, _accelerator_path = _accelerator_path, enabled
    try:
        yield
    finally:
        _accelerator_path = previous


def eager_cpu(x: Tensor) -> bool:
    """Whether ``x`` is a CPU tensor outside compilation (and outside :func:`accelerator_path`): where the fast
    paths of this module apply."""
    return x.device.type == "cpu" and not _accelerator_path and not torch.compiler.is_compiling()


# ---- dropout ----------------------------------------------------------------------------------------------------
def dropped_fraction(p: float) -> float:
    """The drop rate actually used for ``p``: p rounded to a multiple of 2^-15 (0.1 -> 0.1000061)."""
    return round(p * 2**15) / 2**15


def keep_mask(shape: torch.Size | tuple[int, ...], p: float) -> Tensor:
    """A bool CPU tensor of ``shape``, each element False (dropped) with probability ``dropped_fraction(p)``."""
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64).random_()  # 63 uniform bits each (the top one is 0)
    bits = words.view(torch.int16)[:n].bitwise_and_(0x7FFF)  # 15 uniform bits per element
    return (bits >= round(p * 2**15)).view(shape)


def draw_mask(shape: torch.Size | tuple[int, ...], p: float) -> tuple[Tensor, float]:
    """A :func:`keep_mask` and the scale that keeps the output unbiased, ``1 / (1 - dropped_fraction(p))``."""
    return keep_mask(shape, p), 1.0 / (1.0 - dropped_fraction(p))


def apply_mask(keep: Tensor, x: Tensor, scale: float) -> Tensor:
    """x * keep * scale, as ``native_dropout`` (a same-dtype multiply: much faster than one with a bool)."""
    return keep.view(torch.uint8).to(x.dtype).mul_(x).mul_(scale)


class _CpuDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, p: float) -> Tensor:  # type: ignore[override]
        keep, ctx.scale = draw_mask(x.shape, p)
        ctx.save_for_backward(keep)
        return apply_mask(keep, x, ctx.scale)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (keep,) = ctx.saved_tensors
        return apply_mask(keep, grad, ctx.scale), None


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """``F.dropout(x, p, training)``, with cheap masks for CPU tensors in eager mode."""
    if not training or p == 0.0:
        return x
    if p >= 1.0 or not eager_cpu(x):
        return F.dropout(x, p, True)
    return _CpuDropout.apply(x, p)


class Dropout(nn.Dropout):
    """``nn.Dropout`` computed by :func:`dropout` (same module, same state dict: none)."""

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)


# ---- attention --------------------------------------------------------------------------------------------------
def written_out_attention(q: Tensor, p: float) -> bool:
    """Whether :func:`attention` beats ``scaled_dot_product_attention`` here: eager CPU with dropout, or in bf16."""
    return eager_cpu(q) and (0 < p < 1 or q.dtype == torch.bfloat16)


def self_attention(qkv: Tensor, mask: Tensor | None, p: float) -> Tensor:
    """Attention with dropout ``p`` for ``qkv`` (3, batch, heads, seq, head_dim): q, k, v stacked, as the fused
    projection's permuted view. On the written-out path it is made contiguous first: one copy, after which q,
    k^T and v enter the batched matmuls as views (no hidden clones), and backward keeps this one tensor instead of
    the projection's output plus clones of q and k."""
    if written_out_attention(qkv, p):
        return attention(*qkv.contiguous(), mask, p)
    return F.scaled_dot_product_attention(*qkv, attn_mask=mask, dropout_p=p)


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, p: float) -> Tensor:
    """Attention with dropout ``p``: :func:`attention` where :func:`written_out_attention` says so, else SDPA."""
    if written_out_attention(q, p):
        return attention(q, k, v, mask, p)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, p: float) -> Tensor:
    """softmax(q k^T / sqrt(d) + mask) v with dropout on the probabilities: what SDPA computes with
    ``dropout_p``, with this module's cheap masks and one probability tensor kept for backward instead of two
    (see :class:`_DropoutAttentionOutput`). ``mask`` is True where a key may be attended."""
    scores = (q @ k.transpose(-2, -1)).mul_(q.shape[-1] ** -0.5)
    if mask is not None:
        scores.masked_fill_(~mask, float("-inf"))
    if p == 0:
        return scores.softmax(-1) @ v
    return _DropoutAttentionOutput.apply(scores, v, p)


class _DropoutAttentionOutput(torch.autograd.Function):
    """dropout(softmax(scores)) @ v, saving the probabilities and the bool mask only: the dropped
    probabilities are recomputed in backward (one multiply) instead of being stored beside them."""

    @staticmethod
    def forward(ctx, scores: Tensor, v: Tensor, p: float) -> Tensor:  # type: ignore[override]
        probs = scores.softmax(-1)
        keep, ctx.scale = draw_mask(probs.shape, p)
        ctx.save_for_backward(probs, keep, v)
        return torch.matmul(apply_mask(keep, probs, ctx.scale), v)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, None]:  # type: ignore[override]
        probs, keep, v = ctx.saved_tensors
        grad = grad.to(v.dtype)
        grad_v = apply_mask(keep, probs, ctx.scale).transpose(-2, -1) @ grad
        grad_probs = apply_mask(keep, grad @ v.transpose(-2, -1), ctx.scale)
        grad_scores = torch._softmax_backward_data(grad_probs, probs, -1, probs.dtype)
        return grad_scores, grad_v, None


def gelu_approximation(name: str) -> str:
    """``F.gelu``'s ``approximate`` for a config's ``hidden_act``: "tanh" for ``gelu_new``, else exact."""
    return "tanh" if name == "gelu_new" else "none"


def no_padding(attention_mask: Tensor | None) -> bool:
    """True when there is no mask or, for a CPU tensor outside compilation, it has no padding: attention then
    runs without a mask (same result, no masking work). Never inspects accelerator tensors (no host sync)."""
    if attention_mask is None:
        return True
    if not eager_cpu(attention_mask):
        return False
    return bool(attention_mask.all())


# ---- GELU then a linear layer -----------------------------------------------------------------------------------
def recomputes_gelu(h: Tensor) -> bool:
    """Whether :func:`gelu_then_linear` should recompute GELU(h) in backward: fp32 training on the eager CPU,
    outside autocast."""
    return h.requires_grad and h.dtype == torch.float32 and eager_cpu(h) and not torch.is_autocast_enabled("cpu")


def gelu_then_linear(h: Tensor, weight: Tensor, bias: Tensor, approximate: str) -> Tensor:
    """``F.linear(F.gelu(h, approximate=approximate), weight, bias)``, keeping h (not GELU(h)) for backward."""
    return _GeluThenLinear.apply(h, weight, bias, approximate)


class _GeluThenLinear(torch.autograd.Function):
    """linear(gelu(h), weight, bias), saving h (not gelu(h)) for backward."""

    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor, bias: Tensor, approximate: str) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(h, weight)
        ctx.approximate = approximate
        return F.linear(F.gelu(h, approximate=approximate), weight, bias)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        h, weight = ctx.saved_tensors
        grad_2d = grad.reshape(-1, grad.shape[-1])
        grad_weight = grad_bias = None
        if ctx.needs_input_grad[1]:
            a = F.gelu(h, approximate=ctx.approximate)
            grad_weight = grad_2d.t() @ a.reshape(-1, a.shape[-1])
        if ctx.needs_input_grad[2]:
            grad_bias = grad_2d.sum(0)
        grad_h = torch.ops.aten.gelu_backward(grad @ weight, h, approximate=ctx.approximate)
        return grad_h, grad_weight, grad_bias, None
