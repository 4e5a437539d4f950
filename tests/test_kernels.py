"""electra.kernels: our CPU dropout is the same operation as nn.Dropout (rate, scaling, backward mask), reproducible
from the seed; the written-out attention equals SDPA (values and gradients)."""

import pytest
import torch
import torch.nn.functional as F

from electra.kernels import (
    Dropout,
    attend,
    attention,
    dropout,
    dropped_fraction,
    keep_mask,
    self_attention,
    written_out_attention,
)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.02])
def test_drop_rate_is_p(p):
    torch.manual_seed(0)
    n = 2_000_000
    kept = keep_mask((n,), p).double().mean().item()
    sd = (p * (1 - p) / n) ** 0.5
    assert abs((1 - kept) - p) < 5 * sd
    assert abs(dropped_fraction(p) - p) <= 2**-16


def test_mask_elements_are_independent_of_their_neighbours():
    """The 15-bit groups come from one 63-bit word per four elements: neighbours must not be correlated."""
    torch.manual_seed(1)
    keep = keep_mask((400_000, 4), 0.3).double()
    corr = torch.corrcoef(keep.T)
    off_diagonal = corr[~torch.eye(4, dtype=torch.bool)]
    assert off_diagonal.abs().max() < 0.01
    assert ((1 - keep.mean(0)) - 0.3).abs().max() < 0.005  # every lane drops at the same rate


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_forward_and_backward_apply_one_mask_with_the_scale(dtype):
    torch.manual_seed(0)
    x = torch.randn(64, 33, dtype=dtype, requires_grad=True)
    y = dropout(x, 0.1)
    kept = y != 0
    scale = 1 / (1 - dropped_fraction(0.1))
    assert torch.equal(y[kept], (x[kept].float() * scale).to(dtype))  # same rounding as native_dropout
    g = torch.randn_like(y)
    y.backward(g)
    assert torch.equal(x.grad, torch.where(kept, (g.float() * scale).to(dtype), torch.zeros((), dtype=dtype)))
    assert y.dtype == dtype


def test_same_seed_same_mask_and_eval_is_identity():
    x = torch.randn(10, 50)
    torch.manual_seed(3)
    a = dropout(x, 0.2)
    torch.manual_seed(3)
    b = dropout(x, 0.2)
    assert torch.equal(a, b)
    assert dropout(x, 0.2, training=False) is x
    assert dropout(x, 0.0) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    module = Dropout(0.2).eval()
    assert module(x) is x


def test_non_contiguous_input():
    torch.manual_seed(0)
    x = torch.randn(8, 16).t()
    y = dropout(x, 0.5)
    kept = y != 0
    assert y.shape == x.shape and torch.allclose(y[kept], x[kept] * 2)


def test_attention_equals_sdpa_without_dropout_and_with_mask():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 4) for _ in range(3))
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]).bool()[:, None, None, :]
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.allclose(attention(q, k, v, mask, 0.0), ref, atol=1e-6)
    torch.manual_seed(1)
    out = attention(q, k, v, mask, 0.5)
    torch.manual_seed(1)
    probs = (q @ k.transpose(-2, -1) / 2).masked_fill(~mask, float("-inf")).softmax(-1)
    assert torch.allclose(out, dropout(probs, 0.5) @ v, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_attention_gradients_equal_autograd_of_the_plain_formula(dtype):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 6, 4, dtype=dtype, requires_grad=True) for _ in range(3))
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]]).bool()[:, None, None, :]
    g = torch.randn(2, 3, 6, 4, dtype=dtype)
    torch.manual_seed(5)
    attention(q, k, v, mask, 0.3).backward(g)
    ours = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    torch.manual_seed(5)
    scores = (q * 0.5) @ k.transpose(-2, -1)
    probs = scores.masked_fill(~mask, float("-inf")).softmax(-1)
    (dropout(probs, 0.3) @ v).backward(g)
    tol = 1e-6 if dtype == torch.float32 else 2e-2
    for a, t in zip(ours, (q, k, v)):
        assert torch.allclose(a.float(), t.grad.float(), atol=tol, rtol=tol)


def test_bf16_attention_is_written_out_and_close_to_fp32_sdpa():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 16, 8) for _ in range(3))
    mask = torch.ones(2, 1, 1, 16, dtype=torch.bool)
    mask[0, ..., 10:] = False
    assert written_out_attention(q.bfloat16(), 0.0) and not written_out_attention(q, 0.0)
    assert written_out_attention(q, 0.1)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    out = attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), mask, 0.0)
    assert out.dtype == torch.bfloat16
    assert (out.float() - ref).abs().max() < 0.03


@pytest.mark.parametrize("p,dtype", [(0.0, torch.float32), (0.2, torch.float32), (0.0, torch.bfloat16)])
def test_self_attention_on_the_fused_projections_view_equals_attend(p, dtype):
    """SDPA (fp32, no dropout) and the written-out path (dropout, bf16) alike: the contiguous copy of the
    stacked q/k/v changes nothing, masks included."""
    qkv = torch.randn(2, 6, 3, 4, 8, dtype=dtype).permute(2, 0, 3, 1, 4)  # as SelfAttention's view
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1] * 6]).bool()[:, None, None, :]
    torch.manual_seed(4)
    ours = self_attention(qkv, mask, p)
    torch.manual_seed(4)
    torch.testing.assert_close(ours, attend(*qkv, mask, p))  # same masks; the copy may change the BLAS path
