"""dtype resolution: 'auto' follows the hardware flags (faked here), explicit names pass through."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from chartdistill import device
from chartdistill.device import resolve_dtype, resolve_dtype_name, use_bf16

AVX2_FLAGS = "processor\t: 0\nflags\t\t: fpu sse sse2 avx avx2 fma\n"
BF16_FLAGS = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_tile\n"
AMX_FLAGS = "processor\t: 0\nflags\t\t: fpu avx2 avx512f amx_bf16 amx_tile\n"


def fake_host(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    *,
    cpuinfo: str | None,
    capability: str = "AVX512",
    cuda: bool = False,
    cuda_bf16: bool = False,
) -> None:
    path = tmp_path / "cpuinfo"
    if cpuinfo is not None:
        path.write_text(cpuinfo, encoding="utf-8")
    monkeypatch.setattr(device, "CPUINFO", path)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: cuda_bf16)


def test_cpu_flags_reads_the_flags_lines(tmp_path: Path) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(BF16_FLAGS + "\nprocessor\t: 1\nflags\t\t: sse4_2\n", encoding="utf-8")
    assert {"avx512_bf16", "amx_tile", "sse4_2"} <= device.cpu_flags(path)
    assert device.cpu_flags(tmp_path / "missing") == set()


@pytest.mark.parametrize(
    ("cpuinfo", "capability", "expected"),
    [
        (AVX2_FLAGS, "AVX2", "float32"),  # the AVX2-only EPYC: bf16 is ~20x slower
        (BF16_FLAGS, "AVX512", "bfloat16"),
        (AMX_FLAGS, "AVX512", "bfloat16"),
        (BF16_FLAGS, "AVX2", "float32"),  # ATen capped below AVX512 (ATEN_CPU_CAPABILITY)
        ("processor\t: 0\nflags\t\t: avx512f avx512bw\n", "AVX512", "float32"),  # no bf16 flag
        (None, "AVX512", "float32"),  # /proc/cpuinfo unreadable
    ],
)
def test_auto_on_cpu_follows_the_flags(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    cpuinfo: str | None,
    capability: str,
    expected: str,
) -> None:
    fake_host(monkeypatch, tmp_path, cpuinfo=cpuinfo, capability=capability)
    assert resolve_dtype_name("auto") == expected
    assert resolve_dtype("auto") == getattr(torch, expected)
    assert use_bf16("auto") is (expected == "bfloat16")


@pytest.mark.parametrize(("cuda_bf16", "expected"), [(True, "bfloat16"), (False, "float32")])
def test_auto_on_cuda_follows_the_gpu_not_the_cpu(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cuda_bf16: bool, expected: str
) -> None:
    # The CPU flags say the opposite of the GPU: the GPU decides.
    cpuinfo = AVX2_FLAGS if cuda_bf16 else BF16_FLAGS
    fake_host(monkeypatch, tmp_path, cpuinfo=cpuinfo, cuda=True, cuda_bf16=cuda_bf16)
    assert resolve_dtype_name("auto") == expected


def test_auto_is_logged(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake_host(monkeypatch, tmp_path, cpuinfo=AVX2_FLAGS, capability="AVX2")
    with caplog.at_level("INFO", logger="chartdistill.device"):
        resolve_dtype_name("auto")
    assert "dtype auto -> float32" in caplog.text


def test_explicit_names_do_not_look_at_the_host(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_host(monkeypatch, tmp_path, cpuinfo=AVX2_FLAGS, capability="AVX2")
    assert resolve_dtype("bfloat16") == torch.bfloat16
    assert resolve_dtype("float16") == torch.float16
    assert resolve_dtype(torch.float32) == torch.float32
    assert use_bf16(True) is True and use_bf16(False) is False
    with pytest.raises(ValueError, match="dtype 'fp32'"):
        resolve_dtype_name("fp32")


def test_params_accept_auto_and_reject_other_names() -> None:
    from pydantic import ValidationError

    from chartdistill.llm.types import EmbeddedParams
    from chartdistill.student.predict import PredictParams

    assert EmbeddedParams().dtype == "auto" and PredictParams(dtype="auto").dtype == "auto"
    with pytest.raises(ValidationError):
        EmbeddedParams(dtype="fp32")  # type: ignore[arg-type]
