"""Model weights as safetensors: atomic export (also as an Ignite handler) and safe loading with clear errors."""

from __future__ import annotations

import os
from pathlib import Path

from ignite.engine import Engine, Events
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from monai_gen.utils.atomic import atomic_output_path

__all__ = ["save_weights", "load_weights", "ExportWeights"]


def save_weights(module: nn.Module, path: str | os.PathLike) -> Path:
    """Write ``module``'s state dict to ``path`` as safetensors, atomically; returns the path."""
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    with atomic_output_path(path) as tmp:
        save_file(state, str(tmp))
    return path


def load_weights(module: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load safetensors weights into ``module`` (strictly) and return it. No pickle is involved.

    Raises:
        FileNotFoundError: no file at ``path`` (the message says how weights are produced).
        ValueError: not a safetensors file, or keys / shapes that do not match the network.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist; train the model first (configs/train.json).")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ValueError(f"weights file {path} is not a readable safetensors file: {err}") from err
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
