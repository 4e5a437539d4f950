"""Mixed precision: bf16 autocast where the hardware multiplies bf16 fast, fp32 elsewhere.

bf16 keeps fp32's exponent range, so no loss scaling is needed (unlike fp16).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from electra.errors import ElectraError

PRECISIONS = ("fp32", "bf16")


def cpu_has_fast_bf16() -> bool:
    """Whether the CPU has bf16 matrix instructions (AMX-BF16 or AVX512-BF16)."""
    try:
        caps = torch._C._cpu._get_cpu_capability()  # torch >= 2.4: a dict of ISA flags
        return bool(caps.get("amx_bf16") or caps.get("avx512_bf16"))
    except (AttributeError, RuntimeError):
        pass
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def default_precision(device: str | torch.device) -> str:
    """"bf16" on CUDA GPUs with native bf16 (Ampere+) and CPUs with bf16 matrix units, else "fp32"."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp32"
    if dev.type == "cpu":
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    return "fp32"


def autocast_context(device: str | torch.device, precision: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to bfloat16 for "bf16" (matmuls in bf16, reductions in fp32); nothing for "fp32"."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
    raise ElectraError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
