"""Numeric precision: where bf16 autocast is used, and the process-level memory setting that large batches need."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os

import torch

PRECISIONS = ("auto", "float32", "bfloat16")


_NATIVE_BF16: dict[str, bool] = {}


def native_bf16(device_type: str) -> bool:
    """Whether `device_type` ("cpu", "cuda") computes bf16 matmuls and convolutions in hardware.

    Asked once per device type and kept in a plain dict, which torch.compile reads as a constant; call it once
    before compiling (the hardware queries themselves cannot be traced and would split the graph).
    """
    if device_type not in _NATIVE_BF16:
        if device_type == "cuda":
            native = torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
        elif device_type == "cpu":  # AVX-512 BF16 or AMX: plain AVX-512 only emulates bf16, slower than float32
            native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
        else:
            native = False
        _NATIVE_BF16[device_type] = native
    return _NATIVE_BF16[device_type]


def wide_autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for wide computations: under "auto" where the hardware has bf16, always under "bfloat16".

    Wide means many rows at once: convolutions over a batch of frames, the behavior heads over all imagined
    states. There the matmuls dominate and bf16 pays; the recurrent steps over a few rows are bound by per-op
    overhead and get slower from the casts, so they stay in float32 (measured in benchmarks/RESULTS.md).
    """
    enabled = precision == "bfloat16" or (precision == "auto" and native_bf16(device.type))
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def update_autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for a whole training update, only under precision="bfloat16"."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16")


@functools.cache
def reuse_freed_memory() -> bool:
    """Ask glibc to keep large freed blocks for reuse instead of unmapping them (once per process).

    By default glibc serves every allocation above 32 MB with a fresh mmap and unmaps it on free, so each
    update page-faults its large activations again (an image batch's first feature map is 67 MB): training
    on 64x64 images measured 1.27x faster with it (benchmarks/RESULTS.md). A user's own
    MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ wins.
    Returns whether the setting was applied (False off glibc).
    """
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # mallopt's parameter numbers (malloc.h)
    limit = 1 << 30  # 1 GB: blocks below it come from the heap and stay there when freed
    return bool(mallopt(m_mmap_threshold, limit)) and bool(mallopt(m_trim_threshold, limit))
