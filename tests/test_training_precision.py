"""autocast_context and default_precision."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from electra.errors import ElectraError
from electra.training.precision import autocast_context, default_precision


def test_fp32_leaves_matmuls_in_fp32() -> None:
    a, b = torch.randn(4, 8), torch.randn(8, 3)
    with autocast_context("cpu", "fp32"):
        out = a @ b
    assert out.dtype == torch.float32 and torch.equal(out, a @ b)


def test_bf16_autocast_gives_bf16_matmul_outputs() -> None:
    torch.manual_seed(0)
    x, w = torch.randn(4, 16), torch.randn(8, 16)
    with autocast_context(torch.device("cpu"), "bf16"):
        out = F.linear(x, w)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), x @ w.T, rtol=2e-2, atol=5e-2)


def test_unknown_precision_is_a_user_error() -> None:
    with pytest.raises(ElectraError, match="fp16"):
        autocast_context("cpu", "fp16")


def test_default_precision_is_a_known_value() -> None:
    assert default_precision("cpu") in ("fp32", "bf16")
    assert default_precision("meta") == "fp32"


def test_default_precision_follows_cpu_bf16_capability(monkeypatch: pytest.MonkeyPatch) -> None:
    import electra.training.precision as precision

    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: True)
    assert default_precision("cpu") == "bf16"
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: False)
    assert default_precision("cpu") == "fp32"


@pytest.mark.parametrize("value, native", [("emulated", False), ("0", False), ("native", True), ("1", True)])
def test_environment_override_decides_native_bf16(monkeypatch: pytest.MonkeyPatch, value: str, native: bool) -> None:
    from electra.training.precision import cpu_has_fast_bf16, emulated_bf16

    monkeypatch.setenv("ELECTRA_CPU_BF16", value)
    assert cpu_has_fast_bf16() is native
    assert emulated_bf16("cpu") is (not native)
    assert default_precision("cpu") == ("bf16" if native else "fp32")


@pytest.mark.parametrize("isa", ["AVX2", "avx512_core"])
def test_onednn_isa_cap_without_bf16_means_emulated(monkeypatch: pytest.MonkeyPatch, isa: str) -> None:
    from electra.training.precision import cpu_has_fast_bf16

    monkeypatch.delenv("ELECTRA_CPU_BF16", raising=False)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
    assert not cpu_has_fast_bf16()


def test_cuda_devices_are_never_called_emulated() -> None:
    from electra.training.precision import emulated_bf16

    assert not emulated_bf16("cuda")
