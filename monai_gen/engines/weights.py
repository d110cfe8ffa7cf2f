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

__all__ = ["save_weights", "load_weights", "warm_start_weights", "save_tensors", "load_tensor", "ExportWeights"]


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


def warm_start_weights(module: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Start ``module`` from the weights of a network whose condition list it extends by appended conditions.

    A tensor of the file whose shape matches the module's is copied whole; one that differs only in its first
    dimension and is shorter (a per-condition table such as ``PhenotypeEncoder.value_weight`` or ``null_tokens``,
    or the category table, with conditions appended after the old ones) fills the leading rows; the remaining rows
    and every parameter the file lacks (e.g. a new zero-initialised projection) keep their initialisation. So a
    network grown from ``[heart_rate, ..., sex]`` to ``[heart_rate, ..., sex, lvh]`` keeps everything the old one
    learned, and only the new conditions' tokens start untrained. Nothing else is accepted.

    Returns:
        ``module``, with the file's weights copied in.

    Raises:
        FileNotFoundError / ValueError: as :func:`load_weights` for the file; ValueError naming the tensors when a
            tensor of the file has no counterpart in ``module`` or a shape that cannot be a prefix of it.
    """
    path = Path(path)
    source = _read_safetensors(path, "weights")
    target = module.state_dict()
    unknown = sorted(set(source) - set(target))
    misfit = [
        f"{k} {list(v.shape)} -> {list(target[k].shape)}"
        for k, v in source.items()
        if k in target
        and v.shape != target[k].shape
        and not (v.ndim == target[k].ndim and v.shape[1:] == target[k].shape[1:] and v.shape[0] < target[k].shape[0])
    ]
    if unknown or misfit:
        raise ValueError(
            f"weights file {path} cannot warm-start this network: tensors without a counterpart {unknown[:8]}, "
            f"shapes that are not a leading block {misfit[:8]}."
        )
    with torch.no_grad():
        for key, value in source.items():
            target[key][: value.shape[0]].copy_(value)
    module.load_state_dict(target, strict=True)
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
