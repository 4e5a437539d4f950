"""Mixed precision: bf16 autocast where the hardware multiplies bf16 fast, fp32 elsewhere.

bf16 keeps fp32's exponent range, so no loss scaling is needed (unlike fp16).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch

from electra.errors import ElectraError

PRECISIONS = ("fp32", "bf16")


# ELECTRA_CPU_BF16=native|emulated overrides the detection below (tests use it to take the emulated-bf16 path on
# any CPU). oneDNN ISA caps that leave out bf16 (ONEDNN_MAX_CPU_ISA=AVX2, ...) and an ATen dispatch below AVX512
# (ATEN_CPU_CAPABILITY=avx2) make bf16 emulated even where the silicon has it, so they count too.
BF16_ENV = "ELECTRA_CPU_BF16"


def cpu_has_fast_bf16() -> bool:
    """Whether bf16 matmuls run natively here (AMX-BF16 or AVX512-BF16, not capped by the environment)."""
    forced = os.environ.get(BF16_ENV, "").strip().lower()
    if forced in ("native", "1"):
        return True
    if forced in ("emulated", "0"):
        return False
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if isa and not any(s in isa for s in ("BF16", "AMX", "AVX10", "ALL", "DEFAULT")):
        return False
    if os.environ.get("ATEN_CPU_CAPABILITY", "").lower() in ("default", "avx2", "zvector", "vsx"):
        return False
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


def emulated_bf16(device: str | torch.device) -> bool:
    """True on a CPU without native bf16: every bf16 matmul there is emulated, ~100x slower than fp32."""
    return torch.device(device).type == "cpu" and not cpu_has_fast_bf16()


EMULATED_BF16_MESSAGE = ("this CPU has no native bf16 (no AVX512-BF16 or AMX-BF16): bf16 matmuls are emulated, "
                         "about 100x slower than fp32")


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
