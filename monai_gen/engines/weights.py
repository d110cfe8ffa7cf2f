"""Model weights as safetensors: atomic export (also as an Ignite handler) and safe loading with clear errors."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from ignite.engine import Engine, Events
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from monai_gen.utils.atomic import atomic_output_path

__all__ = ["save_weights", "load_weights", "save_tensors", "load_tensor", "ExportWeights"]


def save_tensors(tensors: Mapping[str, torch.Tensor], path: str | os.PathLike) -> Path:
    """Write named tensors to ``path`` as safetensors, atomically; returns the path."""
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    with atomic_output_path(path) as tmp:
        save_file(state, str(tmp))
    return path


def save_weights(module: nn.Module, path: str | os.PathLike) -> Path:
    """Write ``module``'s state dict to ``path`` as safetensors, atomically; returns the path."""
    return save_tensors(module.state_dict(), path)


def _read_safetensors(path: Path, what: str) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} does not exist; train the model first (configs/train.json).")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{what} file {path} is not a readable safetensors file: {err}") from err


def load_tensor(path: str | os.PathLike, key: str) -> torch.Tensor:
    """The tensor ``key`` of a safetensors file (e.g. a model's mean beat), with errors naming file and key."""
    tensors = _read_safetensors(Path(path), "tensor")
    if key not in tensors:
        raise ValueError(f"tensor file {path} holds no tensor {key!r} (it has {sorted(tensors)}).")
    return tensors[key]


def load_weights(module: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load safetensors weights into ``module`` (strictly) and return it. No pickle is involved.

    Raises:
        FileNotFoundError: no file at ``path`` (the message says how weights are produced).
        ValueError: not a safetensors file, or keys / shapes that do not match the network.
    """
    path = Path(path)
    state = _read_safetensors(path, "weights")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"weights file {path} does not fit the network definition: {str(err)[:500]}") from err
    return module


class ExportWeights:
    """Ignite handler: at the end of training, export ``module`` (e.g. the EMA model) to ``path``.

    Args:
        module: what to export.
        path: the safetensors file written (atomically).
        event: when to export (default ``Events.COMPLETED``).
    """

    def __init__(self, module: nn.Module, path: str | os.PathLike, event: Events = Events.COMPLETED) -> None:
        self.module, self.path, self.event = module, Path(path), event

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(self.event, self)

    def __call__(self, engine: Engine) -> None:
        save_weights(self.module, self.path)
