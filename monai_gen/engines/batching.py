"""Batch size of a generation job chosen from the device's free memory and one measured probe batch.

:func:`probe_batch_size` runs ``generate_batch`` once on a probe batch of :data:`PROBE_SIZE` request(s), measures the
peak memory that batch needed above what was in use before
(:class:`PeakMemory`: CUDA's ``max_memory_allocated``; on the CPU the process's peak resident set, ``VmHWM``, reset
first) and divides it by the probe's size. That per-sample figure includes the batch's fixed costs (kernel
workspaces, the first call's one-off allocations), so it over-estimates and the choice errs small.
:func:`batch_size_from_memory` then takes ``memory_fraction`` of the free memory (:func:`free_memory`: CUDA's
``mem_get_info`` plus what torch's allocator holds unused; on the CPU ``MemAvailable``, bounded by a cgroup limit),
rounds the number of samples that fit down to a power of two (small changes of free memory do not change it) and
caps it (default 256).

The batch size changes no sample's randomness: every sample draws its noise from its own seed, so a sample is the
same at any batch size up to float rounding in the batched kernels (about 1e-5 of the signal; tested in
``tests/engines/test_batching.py``). Give the batch size explicitly where the files must be the same byte for byte
across machines.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "AUTO",
    "MAX_BATCH_SIZE",
    "MEMORY_FRACTION",
    "PROBE_SIZE",
    "PeakMemory",
    "batch_size_from_memory",
    "free_memory",
    "is_auto",
    "local_processes",
    "probe_batch_size",
]

logger = logging.getLogger(__name__)

AUTO = "auto"
"""The config value (like ``None``) that asks for the batch size to be chosen from free memory."""
MAX_BATCH_SIZE = 256
MEMORY_FRACTION = 0.5
"""Share of the free memory a job may fill: room for other processes, fragmentation and the writers' copies."""
PROBE_SIZE = 1

_GIB, _MIB = 1024**3, 1024**2


def is_auto(batch_size: Any) -> bool:
    """True when ``batch_size`` asks for automatic sizing (``None`` or ``"auto"``); raises for anything else that
    is not a positive integer.

    Raises:
        ValueError: not None, ``"auto"`` or an integer >= 1 (e.g. 0, -3, ``"big"``, 2.5).
    """
    if batch_size is None or (isinstance(batch_size, str) and batch_size.strip().lower() == AUTO):
        return True
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, or null / {AUTO!r} to choose it from free memory; "
                         f"got {batch_size!r}.")
    return False


def free_memory(device: torch.device | str) -> int:
    """Bytes that new tensors on ``device`` can still take.

    CUDA: the driver's free memory plus what torch's caching allocator reserves but does not use. CPU: the
    kernel's ``MemAvailable`` (``/proc/meminfo``), bounded by the cgroup (container) limit minus its usage when
    one is set.

    Raises:
        ValueError: a device that is neither CPU nor CUDA, or a CPU without ``/proc/meminfo`` (not Linux).
    """
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    if device.type != "cpu":
        raise ValueError(f"free_memory measures cpu and cuda devices, got {device}; set batch_size explicitly.")
    try:
        available = _meminfo_kib("MemAvailable") * 1024
    except (OSError, KeyError) as err:
        raise ValueError(f"free CPU memory is read from /proc/meminfo, which this system lacks ({err}); set "
                         "batch_size explicitly.") from err
    limit = _cgroup_room()
    return available if limit is None else min(available, limit)


def _meminfo_kib(key: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == key:
            return int(value.split()[0])
    raise KeyError(key)


def _cgroup_room() -> int | None:
    """Bytes left under a cgroup v2 memory limit (``memory.max - memory.current``); None without a limit."""
    root = Path("/sys/fs/cgroup")
    try:
        limit = (root / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(int(limit) - int((root / "memory.current").read_text()), 0)
    except (OSError, ValueError):
        return None


class PeakMemory:
    """Context manager: ``peak_bytes``, the most memory the block used on ``device`` above the level at entry.

    CUDA: ``torch.cuda.max_memory_allocated`` after resetting the peak statistics. CPU: the peak resident set
    (``VmHWM``) after resetting it (``/proc/self/clear_refs``, Linux 4.0+) and returning glibc's free heap to the
    system (``malloc_trim``), so memory the process freed earlier and would reuse does not hide the block's need.

    Raises:
        ValueError: on entry, a CPU without ``/proc/self/clear_refs`` (peak memory cannot be measured there).

    Examples:
        >>> with PeakMemory("cpu") as peak:
        ...     x = torch.ones(64, 1024, 1024)
        >>> peak.peak_bytes >= 256 * 1024**2
        True
    """

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.peak_bytes = 0
        self._start = 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            return self
        _trim_heap()
        try:
            Path("/proc/self/clear_refs").write_text("5")  # 5: reset the peak resident set size to the current one
            self._start = _status_bytes("VmRSS")
        except (OSError, KeyError) as err:
            raise ValueError(f"peak CPU memory is measured through /proc/self/clear_refs, unavailable here ({err}); "
                             "set batch_size explicitly.") from err
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            peak = _status_bytes("VmHWM")
        self.peak_bytes = max(int(peak - self._start), 0)


def _status_bytes(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == key:
            return int(value.split()[0]) * 1024
    raise KeyError(key)


def _trim_heap() -> None:
    """Return glibc's free heap pages to the system (nothing elsewhere: musl, macOS)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim(0)
    except (OSError, AttributeError, TypeError):
        pass


def batch_size_from_memory(
    per_sample_bytes: float,
    free_bytes: float,
    *,
    max_batch_size: int = MAX_BATCH_SIZE,
    memory_fraction: float = MEMORY_FRACTION,
) -> int:
    """The largest power of two of samples fitting in ``memory_fraction`` of ``free_bytes``, at most ``max_batch_size``.

    Args:
        per_sample_bytes: peak memory one sample of a batch needs (> 0).
        free_bytes: memory available to the job.
        max_batch_size: cap (beyond a few hundred samples a batch gains no speed and holds more memory while written).
        memory_fraction: share of ``free_bytes`` the batch may take, in (0, 1].

    Returns:
        A batch size >= 1 (1 even when the estimate says not one sample fits: one did, in the probe).

    Raises:
        ValueError: ``per_sample_bytes <= 0``, ``free_bytes < 0``, ``max_batch_size < 1`` or ``memory_fraction``
            outside (0, 1].
    """
    if not per_sample_bytes > 0:
        raise ValueError(f"per_sample_bytes must be > 0, got {per_sample_bytes}.")
    if free_bytes < 0:
        raise ValueError(f"free_bytes must be >= 0, got {free_bytes}.")
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}.")
    if not 0 < memory_fraction <= 1:
        raise ValueError(f"memory_fraction must be in (0, 1], got {memory_fraction}.")
    fits = int(memory_fraction * free_bytes // per_sample_bytes)
    if fits < 1:
        return 1
    return min(1 << (fits.bit_length() - 1), int(max_batch_size))


def probe_batch_size(
    generate_batch: Callable[[list[Any]], torch.Tensor],
    probe: Sequence[Any],
    *,
    device: torch.device | str,
    max_batch_size: int = MAX_BATCH_SIZE,
    memory_fraction: float = MEMORY_FRACTION,
    processes_sharing: int = 1,
) -> tuple[int, torch.Tensor]:
    """Generate ``probe`` once, measuring its peak memory; the batch size that memory allows, and the probe's samples.

    Args:
        generate_batch: ``generate_batch(requests) -> (B, C, *spatial)``, as a :class:`GenerationJob` calls it.
        probe: the requests of the probe batch (e.g. the job's first :data:`PROBE_SIZE`); their samples are returned
            (a job of only those keeps them).
        device: where ``generate_batch`` runs (whose memory is measured).
        max_batch_size, memory_fraction: as in :func:`batch_size_from_memory`.
        processes_sharing: processes sharing this device's memory (e.g. ranks of one machine on its CPU); each may
            fill its share of the free memory.

    Returns:
        ``(batch_size, samples)``. The per-sample figure is the probe's peak divided by its size, never less than
        the bytes of one returned sample.

    Raises:
        ValueError: an empty probe, ``processes_sharing < 1``, a device whose memory cannot be measured.
    """
    if not probe:
        raise ValueError("the probe batch needs at least one request.")
    if processes_sharing < 1:
        raise ValueError(f"processes_sharing must be >= 1, got {processes_sharing}.")
    device = torch.device(device)
    with PeakMemory(device) as peak:
        samples = generate_batch(list(probe))
    per_sample = max(peak.peak_bytes, samples.element_size() * samples.nelement()) / len(probe)
    free = free_memory(device) / processes_sharing
    size = batch_size_from_memory(per_sample, free, max_batch_size=max_batch_size, memory_fraction=memory_fraction)
    shared = f", shared by {processes_sharing} processes" if processes_sharing > 1 else ""
    logger.info(
        "batch size %d from %.1f GiB free on %s%s (%.1f MiB per sample, measured on a probe batch of %d; at most %d "
        "and %.0f %% of free memory)", size, free / _GIB, device, shared, per_sample / _MIB, len(probe), max_batch_size,
        100 * memory_fraction,
    )
    return size, samples


def local_processes() -> int:
    """Processes of this job on this machine (``LOCAL_WORLD_SIZE`` under ``torchrun``, else 1)."""
    try:
        return max(int(os.environ.get("LOCAL_WORLD_SIZE", "1")), 1)
    except ValueError:
        return 1
