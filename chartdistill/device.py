"""Which torch dtype to compute in: one name-to-dtype map, and what ``auto`` means.

``auto`` is bfloat16 only where the hardware runs it natively: a CUDA GPU with bf16 support, or
a CPU with AVX512-BF16 or AMX (ATen at its AVX512 level and the /proc/cpuinfo flag
``avx512_bf16`` or ``amx_bf16``). Anywhere else it is float32: on an AVX2-only CPU a bf16 matmul
is ~20x slower than fp32 (measured with torch 2.13 on a 2-core AMD EPYC).

Importing this module does not import torch; explicit names resolve without it too.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

AUTO = "auto"
DTYPES = ("float32", "bfloat16", "float16")
DtypeName = Literal["auto", "float32", "bfloat16", "float16"]
CPUINFO = Path("/proc/cpuinfo")
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
BF16_CPU_CAPABILITY = "AVX512"  # prefix of torch.backends.cpu.get_cpu_capability()


def cpu_flags(path: Path | None = None) -> set[str]:
    """The CPU feature flags (the 'flags' lines of /proc/cpuinfo); empty where unreadable."""
    try:
        text = (path or CPUINFO).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return flags


def cpu_native_bf16() -> bool:
    """True when this CPU computes bf16 natively (AVX512-BF16 or AMX) and ATen can use it."""
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    flags = cpu_flags()
    return capability.startswith(BF16_CPU_CAPABILITY) and any(f in flags for f in BF16_CPU_FLAGS)


def cuda_native_bf16() -> bool:
    """True when a CUDA GPU is visible and supports bf16 without emulation."""
    import torch

    return bool(
        torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    )


def auto_dtype_name() -> str:
    """'bfloat16' where the device that will compute (CUDA if visible, else the CPU) runs it
    natively, else 'float32'."""
    import torch

    if torch.cuda.is_available():
        native, where = cuda_native_bf16(), "cuda"
    else:
        native = cpu_native_bf16()
        where = f"cpu {torch.backends.cpu.get_cpu_capability()}"
    name = "bfloat16" if native else "float32"
    log.info("dtype auto -> %s (%s, native bf16: %s)", name, where, native)
    return name


def resolve_dtype_name(name: str) -> str:
    """'auto' | 'float32' | 'bfloat16' | 'float16' -> the concrete name ('auto' resolved)."""
    if name == AUTO:
        return auto_dtype_name()
    if name not in DTYPES:
        raise ValueError(f"dtype '{name}': expected one of auto, {', '.join(DTYPES)}")
    return name


def resolve_dtype(name: str | torch.dtype) -> torch.dtype:
    """'auto' | 'float32' | 'bfloat16' | 'float16' | a torch.dtype -> torch.dtype."""
    import torch

    if isinstance(name, torch.dtype):
        return name
    return getattr(torch, resolve_dtype_name(str(name)))


def use_bf16(setting: Literal["auto"] | bool) -> bool:
    """bf16 mixed precision for training: as set, or 'auto' = where bf16 is native."""
    if setting == AUTO:
        return resolve_dtype_name(AUTO) == "bfloat16"
    return bool(setting)
