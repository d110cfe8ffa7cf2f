"""The machine's practical limits, measured in the same process as the benchmarks that are compared to them."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

__all__ = ["MachineLimits", "median_seconds", "measure_machine_limits"]


@dataclass(frozen=True)
class MachineLimits:
    """Measured peaks: fp32 / bf16 matmul GFLOP/s (bf16 NaN where unsupported) and copy bandwidth in GB/s."""

    device: str
    threads: int
    matmul_fp32_gflops: float
    matmul_bf16_gflops: float
    copy_gbps: float

    def as_dict(self) -> dict:
        return asdict(self)


def median_seconds(fn: Callable[[], object], *, repeats: int = 5, warmup: int = 2, device: torch.device) -> float:
    """Median wall time of ``fn()`` over ``repeats`` after ``warmup`` calls, synchronising CUDA around each call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _matmul_gflops(n: int, dtype: torch.dtype, device: torch.device, repeats: int) -> float:
    try:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        seconds = median_seconds(lambda: a @ b, repeats=repeats, device=device)
    except RuntimeError:
        return float("nan")
    return 2 * n**3 / seconds / 1e9


def measure_machine_limits(device: torch.device, *, size: int = 2048, repeats: int = 5) -> MachineLimits:
    """Matmul peak (square ``size`` matrices) and copy bandwidth (a 256 MB tensor; 16 MB when ``size`` < 1024).

    On CPU bf16 matmul is measured at ``min(size, 512)``: it runs two orders of magnitude below fp32 on CPUs
    without native bf16 units, and a full-size product would take minutes.
    """
    numel = (64 if size >= 1024 else 4) * 2**20
    src = torch.empty(numel, device=device, dtype=torch.float32).uniform_()
    dst = torch.empty_like(src)
    copy_seconds = median_seconds(lambda: dst.copy_(src), repeats=repeats, device=device)
    return MachineLimits(
        device=str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        threads=torch.get_num_threads(),
        matmul_fp32_gflops=_matmul_gflops(size, torch.float32, device, repeats),
        matmul_bf16_gflops=_matmul_gflops(size if device.type == "cuda" else min(size, 512), torch.bfloat16, device, repeats),
        copy_gbps=2 * src.numel() * src.element_size() / copy_seconds / 1e9,
    )


def rss_mb() -> float:
    """Current resident memory of this process (MB), from /proc (Linux); NaN elsewhere."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except OSError:
        return float("nan")
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
