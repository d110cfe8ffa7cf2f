"""Atomic training checkpoints, exact resume and the random-number states they need.

MONAI's ``CheckpointSaver`` writes through ignite's ``DiskSaver(atomic=False)``, so a run killed while saving
leaves a truncated file that the next ``CheckpointLoader`` chokes on. :class:`AtomicCheckpointSaver` writes each
checkpoint through :func:`monai_gen.utils.atomic.atomic_output_path` (temporary file, fsync, ``os.replace``) and
only on rank 0; :class:`ResumeFromLatest` loads the newest checkpoint of a folder that reads back completely
(``torch.load(..., weights_only=True)``) through MONAI's ``CheckpointLoader``, so "resume if present" is one
handler. :class:`RandomStates` puts the torch (CPU and CUDA), numpy and python ``random`` states into a checkpoint
as tensors, which survive ``weights_only=True`` loading.

Exact resume also needs the data order: use :func:`monai_gen.engines.distributed.seeded_sampler`, whose epoch
MONAI's workflow sets at every epoch start and which :class:`ResumeFromLatest` tells to skip the batches of an
interrupted epoch that were already trained on (ignite restarts the rest of that epoch from a fresh iterator).
"""

from __future__ import annotations

import logging
import os
import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.handlers import CheckpointLoader
from monai.transforms import Randomizable, Transform
from torch.nn.parallel import DistributedDataParallel

from monai_gen.utils.atomic import atomic_output_path

__all__ = [
    "AtomicCheckpointSaver",
    "RandomStates",
    "ResumeFromLatest",
    "TransformRandomStates",
    "find_latest_checkpoint",
    "list_checkpoints",
]

_NAME = re.compile(r"^(?P<prefix>.+)_(?P<iteration>\d+)\.pt$")
logger = logging.getLogger(__name__)


class RandomStates:
    """The global random-number states as a ``state_dict`` of tensors (checkpointable, ``weights_only``-safe).

    Covers torch's CPU generator, every visible CUDA device's generator, numpy's legacy global ``RandomState`` (used
    by MONAI's ``set_determinism``) and python's ``random``. Put an instance into the checkpoint dictionary.
    Randomizable MONAI transforms keep their own ``RandomState``: :class:`TransformRandomStates` covers those.

    Examples:
        >>> save_dict = {"network": net, "optimizer": opt, "trainer": trainer, "rng": RandomStates()}
    """

    def state_dict(self) -> dict[str, Any]:
        version, internal, gauss_next = random.getstate()
        states = {
            "torch": torch.get_rng_state(),
            **_pack_numpy_state(np.random.get_state(), "numpy"),
            "python": torch.tensor(internal, dtype=torch.int64),
            "python_extra": torch.tensor([version, gauss_next is not None], dtype=torch.int64),
            "python_gauss": torch.tensor(0.0 if gauss_next is None else gauss_next, dtype=torch.float64),
        }
        if torch.cuda.is_available():
            states["cuda"] = torch.stack(torch.cuda.get_rng_state_all())
        return states

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        missing = {"torch", "numpy_keys", "numpy_extra", "numpy_gauss", "python", "python_extra"} - set(state)
        if missing:
            raise ValueError(f"random-state checkpoint entry lacks {sorted(missing)}; keys: {sorted(state)}.")
        torch.set_rng_state(state["torch"].cpu().to(torch.uint8))
        np.random.set_state(_unpack_numpy_state(state, "numpy"))
        version, has_next = (int(v) for v in state["python_extra"])
        gauss_next = float(state["python_gauss"]) if has_next else None
        random.setstate((version, tuple(int(v) for v in state["python"]), gauss_next))
        if "cuda" in state and torch.cuda.is_available():
            saved = list(state["cuda"].cpu().to(torch.uint8))
            torch.cuda.set_rng_state_all(saved[: torch.cuda.device_count()])



class TransformRandomStates:
    """The ``R`` states of the randomizable MONAI transforms in a pipeline as a ``state_dict`` of tensors.

    MONAI's random transforms draw from their own ``numpy.random.RandomState`` (``self.R``), which
    :class:`RandomStates` does not cover; put an instance of this class into the checkpoint dictionary too, so that
    a resumed run continues the augmentation stream where the interrupted one stopped. The pipeline is searched
    recursively (``Compose`` members, the array transforms inside dictionary transforms). Exact with
    ``num_workers=0``, where the transforms run in the training process.

    Args:
        transform: the data set's transform (e.g. a ``Compose``).

    Examples:
        >>> save_dict = {"network": net, "trainer": trainer, "rng": RandomStates(),
        ...              "augmentation_rng": TransformRandomStates(dataset.transform)}
    """

    def __init__(self, transform: Any) -> None:
        self.randomizables = _find_randomizables(transform)

    def state_dict(self) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for index, transform in enumerate(self.randomizables):
            out |= _pack_numpy_state(transform.R.get_state(), f"t{index}")
        return out

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        count = len({key.split("_")[0] for key in state})
        if count != len(self.randomizables):
            raise ValueError(
                f"the checkpoint holds the random states of {count} transforms, but the pipeline has "
                f"{len(self.randomizables)} randomizable transforms; was the transform chain changed?"
            )
        for index, transform in enumerate(self.randomizables):
            transform.R.set_state(_unpack_numpy_state(state, f"t{index}"))


def _find_randomizables(transform: Any) -> list[Randomizable]:
    """Every ``Randomizable`` reachable from ``transform`` through transform attributes and lists, in a fixed order."""
    found: list[Randomizable] = []
    stack, seen = [transform], set()
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, Randomizable):
            found.append(obj)
        for child in reversed(list(getattr(obj, "__dict__", {}).values())):
            members = child if isinstance(child, (list, tuple)) else (child,)
            stack.extend(m for m in reversed(members) if isinstance(m, (Transform, Randomizable)))
    return found


def _pack_numpy_state(state: tuple, prefix: str) -> dict[str, torch.Tensor]:
    """``numpy.random`` MT19937 state tuple -> tensors ``<prefix>_keys`` / ``_extra`` / ``_gauss``."""
    _, keys, pos, has_gauss, gauss = state
    return {
        f"{prefix}_keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        f"{prefix}_extra": torch.tensor([pos, has_gauss], dtype=torch.int64),
        f"{prefix}_gauss": torch.tensor(gauss, dtype=torch.float64),
    }


def _unpack_numpy_state(state: Mapping[str, Any], prefix: str) -> tuple:
    """The inverse of :func:`_pack_numpy_state`."""
    pos, has_gauss = (int(v) for v in state[f"{prefix}_extra"])
    keys = state[f"{prefix}_keys"].cpu().numpy().astype(np.uint32)
    return "MT19937", keys, pos, has_gauss, float(state[f"{prefix}_gauss"])

def list_checkpoints(folder: str | os.PathLike, *, prefix: str = "checkpoint") -> list[tuple[int, Path]]:
    """``(iteration, path)`` of the checkpoints ``<prefix>_<iteration>.pt`` in ``folder``, oldest first.

    Hidden temporary files of interrupted atomic writes (``.<name>.*.tmp.pt``) are not listed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _NAME.match(path.name)
        if match and match["prefix"] == prefix and path.is_file():
            found.append((int(match["iteration"]), path))
    return sorted(found)


def find_latest_checkpoint(
    folder: str | os.PathLike, *, prefix: str = "checkpoint", required_keys: tuple[str, ...] = ()
) -> Path | None:
    """Newest checkpoint in ``folder`` that loads completely and holds ``required_keys``; None if there is none.

    Unreadable files (truncated by a crash of an older, non-atomic writer, or damaged) are skipped with a warning.
    """
    for iteration, path in reversed(list_checkpoints(folder, prefix=prefix)):
        try:
            content = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # any unpickling / zip error means the file is unusable
            logger.warning("skipping unreadable checkpoint %s (iteration %d): %s", path, iteration, err)
            continue
        lacking = [k for k in required_keys if k not in content]
        if lacking:
            logger.warning("skipping checkpoint %s: it lacks %s", path, lacking)
            continue
        return path
    return None


def _state_dicts(save_dict: Mapping[str, Any]) -> dict[str, Any]:
    """``{name: state_dict}``, unwrapping DDP so single- and multi-process checkpoints are interchangeable."""
    out = {}
    for name, obj in save_dict.items():
        module = obj.module if isinstance(obj, DistributedDataParallel) else obj
        out[name] = module.state_dict()
    return out


class AtomicCheckpointSaver:
    """Save ``save_dict`` every ``every`` iterations (and at the end) atomically, keeping the newest ``n_saved``.

    Files are ``<save_dir>/<prefix>_<iteration>.pt``, each a dictionary of ``state_dict()`` of the objects
    (networks, EMA model, optimizer, LR scheduler, the trainer itself, :class:`RandomStates`). In a distributed
    run only rank 0 writes. Leftover temporary files of a run killed while saving are removed on attach.

    Args:
        save_dir: checkpoint folder (created if missing).
        save_dict: ``{name: object with state_dict()}``.
        every: save every this many iterations (>= 1).
        n_saved: newest checkpoints to keep (None keeps all).
        prefix: file name prefix.
        save_final: also save when the run completes.

    Examples:
        >>> AtomicCheckpointSaver("runs/ckpt", save_dict, every=500, n_saved=2).attach(trainer)
    """

    def __init__(
        self,
        save_dir: str | os.PathLike,
        save_dict: Mapping[str, Any],
        *,
        every: int,
        n_saved: int | None = 2,
        prefix: str = "checkpoint",
        save_final: bool = True,
    ) -> None:
        if int(every) < 1:
            raise ValueError(f"checkpoint interval 'every' must be >= 1, got {every!r}.")
        if n_saved is not None and int(n_saved) < 1:
            raise ValueError(f"n_saved must be >= 1 or None, got {n_saved!r}.")
        if not save_dict:
            raise ValueError("save_dict is empty: nothing to checkpoint.")
        self.save_dir, self.save_dict, self.every = Path(save_dir), dict(save_dict), int(every)
        self.n_saved, self.prefix, self.save_final = n_saved, prefix, save_final

    def attach(self, engine: Engine) -> None:
        """Save on ``ITERATION_COMPLETED(every=...)`` and, if asked, on ``COMPLETED``."""
        if idist.get_rank() == 0:
            self.save_dir.mkdir(parents=True, exist_ok=True)
            for stale in self.save_dir.glob(f".{self.prefix}_*.tmp*"):
                stale.unlink(missing_ok=True)
        engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.every), self)
        if self.save_final:
            engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        """Write the checkpoint of the current iteration (rank 0 only) and drop the oldest beyond ``n_saved``."""
        if idist.get_rank() != 0:
            return
        path = self.save_dir / f"{self.prefix}_{engine.state.iteration}.pt"
        if path.exists():  # COMPLETED right after an interval save of the same iteration
            return
        with atomic_output_path(path) as tmp:
            torch.save(_state_dicts(self.save_dict), tmp)
        if self.n_saved is not None:
            for _, old in list_checkpoints(self.save_dir, prefix=self.prefix)[: -self.n_saved]:
                old.unlink(missing_ok=True)


class ResumeFromLatest:
    """At ``STARTED``, load the newest complete checkpoint of ``save_dir`` into ``load_dict``, if there is one.

    Loading goes through MONAI's ``CheckpointLoader`` (``weights_only=True``, strict keys), so the trainer's
    iteration / epoch and every listed object come back. With no checkpoint the run starts from scratch.

    Args:
        save_dir: folder written by :class:`AtomicCheckpointSaver`.
        load_dict: ``{name: object with load_state_dict()}``, the same names as the saver's ``save_dict``.
        prefix: file name prefix.
        map_location: passed to ``torch.load``.

    Examples:
        >>> ResumeFromLatest("runs/ckpt", save_dict).attach(trainer)  # before trainer.run()
    """

    def __init__(
        self,
        save_dir: str | os.PathLike,
        load_dict: Mapping[str, Any],
        *,
        prefix: str = "checkpoint",
        map_location: Any = "cpu",
    ) -> None:
        self.save_dir, self.load_dict, self.prefix, self.map_location = Path(save_dir), dict(load_dict), prefix, map_location
        self.loaded_from: Path | None = None

    def attach(self, engine: Engine) -> None:
        """Run at ``STARTED``, before the first iteration."""
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine) -> None:
        path = find_latest_checkpoint(self.save_dir, prefix=self.prefix, required_keys=tuple(self.load_dict))
        _check_ranks_agree(path)
        if path is None:
            return
        targets = {k: v.module if isinstance(v, DistributedDataParallel) else v for k, v in self.load_dict.items()}
        CheckpointLoader(load_path=str(path), load_dict=targets, map_location=self.map_location)(engine)
        self.loaded_from = path
        _skip_consumed_batches(engine)


def _check_ranks_agree(path: Path | None) -> None:
    """In a multi-process run every rank must resume from the same checkpoint (e.g. a folder on a shared disk)."""
    if idist.get_world_size() <= 1:
        return
    iteration = -1 if path is None else int(_NAME.match(path.name)["iteration"])
    found = [int(i) for i in idist.all_gather(torch.tensor([iteration]))]
    if len(set(found)) > 1:
        raise ValueError(
            f"ranks resumed from different checkpoints (iteration per rank, -1 = none: {found}); the checkpoint "
            "folder must be the same, shared, on every rank."
        )


def _skip_consumed_batches(engine: Engine) -> None:
    """After a mid-epoch resume, make the sampler skip the batches the interrupted epoch already used.

    Ignite runs the rest of an interrupted epoch from a fresh loader iterator; without the skip those iterations
    would see the epoch's first batches again.
    """
    length, done = engine.state.epoch_length, engine.state.iteration
    if not length or done % length == 0:
        return
    loader = getattr(engine, "data_loader", None)
    sampler, batch_size = getattr(loader, "sampler", None), getattr(loader, "batch_size", None)
    if hasattr(sampler, "skip_next") and batch_size:
        sampler.skip_next((done % length) * batch_size)
    else:
        logger.warning("resumed mid-epoch (iteration %d) without a seeded_sampler: the rest of this epoch repeats "
                       "its first batches.", done)
