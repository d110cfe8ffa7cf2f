"""The thin part multi-process training needs: ``torchrun`` initialisation, seeded sharding, DDP wrapping.

Launch the same script or bundle with ``torchrun --nproc_per_node N ...``: :func:`init_distributed` reads the
``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` environment ``torchrun`` sets and joins the process group (NCCL on GPU,
gloo on CPU); in a plain single process it does nothing, so the same code runs both ways. Every rank sees a
disjoint shard of each epoch through :func:`seeded_sampler` (MONAI's ``DistributedSampler``, whose epoch MONAI's
workflow sets at every epoch start, which also makes the data order of a resumed run exact). Only rank 0 writes
checkpoints (:class:`monai_gen.engines.checkpointing.AtomicCheckpointSaver` checks ``ignite.distributed``).
"""

from __future__ import annotations

import os
from collections.abc import Sized
from datetime import timedelta

import ignite.distributed as idist
import torch
import torch.distributed as dist
from monai.data import DistributedSampler
from monai.utils import look_up_option
from torch.nn.parallel import DistributedDataParallel

__all__ = ["BACKENDS", "ResumableShardSampler", "init_distributed", "seeded_sampler", "wrap_distributed"]

BACKENDS = ("nccl", "gloo", "mpi")


def init_distributed(*, backend: str | None = None, timeout_s: float = 1800.0) -> torch.device:
    """Join the ``torchrun`` process group if the environment asks for one; return this process's device.

    Args:
        backend: ``"nccl"`` / ``"gloo"``; default NCCL when CUDA is available, else gloo.
        timeout_s: collective-operation timeout in seconds.

    Returns:
        ``cuda:<LOCAL_RANK>`` when CUDA is available, else ``cpu``.

    Raises:
        ValueError: ``WORLD_SIZE`` / ``RANK`` / ``LOCAL_RANK`` are not integers, or an unknown ``backend``.
    """
    try:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        int(os.environ.get("RANK", "0"))
    except ValueError as err:
        raise ValueError(f"torchrun environment variables must be integers: {err}") from err
    device = torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        backend = look_up_option(backend or ("nccl" if device.type == "cuda" else "gloo"), BACKENDS)
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    return device


class ResumableShardSampler(DistributedSampler):
    """MONAI's ``DistributedSampler`` that can skip the part of an epoch a resumed run has already trained on.

    :class:`~monai_gen.engines.checkpointing.ResumeFromLatest` calls :meth:`skip_next` when it loads a checkpoint
    taken in the middle of an epoch; the next epoch iteration then starts after the samples already consumed.
    Build it with :func:`seeded_sampler`.

    Examples:
        >>> loader = DataLoader(dataset, batch_size=16, sampler=seeded_sampler(dataset, seed=0))
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._skip = 0

    def skip_next(self, n_samples: int) -> None:
        """Drop the first ``n_samples`` of this rank's shard in the next iteration over the sampler (once)."""
        if not 0 <= int(n_samples) <= self.num_samples:
            raise ValueError(f"cannot skip {n_samples} samples of a shard of {self.num_samples}.")
        self._skip = int(n_samples)

    def __iter__(self):
        indices = list(super().__iter__())
        skip, self._skip = self._skip, 0
        return iter(indices[skip:])


def seeded_sampler(
    dataset: Sized, *, seed: int = 0, shuffle: bool = True, drop_last: bool = False
) -> ResumableShardSampler:
    """A seeded sampler giving this rank its shard of every epoch (the whole data set in one process).

    The order of epoch ``e`` depends only on ``(seed, e)``; MONAI's ``Workflow`` calls ``set_epoch`` at each
    epoch start, and a run resumed by :class:`~monai_gen.engines.checkpointing.ResumeFromLatest` skips the
    batches of the interrupted epoch it already trained on, so it sees the same batches as an uninterrupted one.

    Args:
        dataset: the data set (anything with ``len``).
        seed: shuffling seed, the same on every rank.
        shuffle: shuffle each epoch.
        drop_last: drop the tail so that every rank gets the same number of samples without padding.
    """
    return ResumableShardSampler(
        dataset, shuffle=shuffle, num_replicas=idist.get_world_size(), rank=idist.get_rank(),
        seed=int(seed), drop_last=drop_last,
    )


def wrap_distributed(
    network: torch.nn.Module, device: torch.device, *, find_unused_parameters: bool = False
) -> torch.nn.Module:
    """Wrap ``network`` in ``DistributedDataParallel`` when a process group with more than one rank is running.

    DDP broadcasts rank 0's weights on construction and averages gradients across ranks in ``backward``.

    Args:
        network: the model, already on ``device``.
        device: this process's device (from :func:`init_distributed`).
        find_unused_parameters: needed when some parameters get no gradient in a step (e.g. condition
            embeddings of a batch without conditions).
    """
    if idist.get_world_size() <= 1:
        return network
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(
        network, device_ids=ids, output_device=ids[0] if ids else None, find_unused_parameters=find_unused_parameters
    )
