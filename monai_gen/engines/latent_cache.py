"""Encode a data set once with a frozen autoencoder; train the stage-2 diffusion model on the cached latents.

:func:`build_latent_cache` runs the encoder over the data set in batches (no gradients, eval mode) and writes one
safetensors file holding the latents ``(N, C_z, *spatial_z)`` and the per-sample tensors kept alongside them
(the conditions ``"conditions"`` / ``"condition_mask"`` by default), atomically. Its metadata records the item
count, a fingerprint of the encoder's weights and one of the first and last items, so a later call reuses a complete cache built by the same
encoder and rebuilds a missing, truncated or stale one. In a multi-process run rank 0 encodes and the other ranks
wait for it. :class:`LatentCacheDataset` serves the items as dicts
with the latent under ``"image"``, ready for :class:`~monai_gen.engines.diffusion_trainer.DiffusionIteration`.

See: Medfusion (shared/papers 003), Methods, "Model architecture and training details": in the second training phase the pre-trained
autoencoder, its weights frozen, encodes the images and the diffusion U-Net is trained on those latents;
Medical Diffusion (shared/papers 001), §2.3.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import torch
from monai.data import DataLoader
from monai.utils import convert_to_tensor
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset

from monai_gen.utils.atomic import atomic_output_path

__all__ = ["LatentCacheDataset", "build_latent_cache", "encoder_fingerprint"]

CACHE_NAME = "latents.safetensors"
logger = logging.getLogger(__name__)


def encoder_fingerprint(encode: Callable[[torch.Tensor], torch.Tensor]) -> str:
    """SHA-256 of the weights of the module behind ``encode`` (a module or a bound method of one); else its name."""
    owner = getattr(encode, "__self__", encode)
    digest = hashlib.sha256(getattr(encode, "__qualname__", type(encode).__qualname__).encode())
    if isinstance(owner, torch.nn.Module):
        for name, tensor in owner.state_dict().items():
            digest.update(name.encode())
            digest.update(_tensor_bytes(tensor))
    return digest.hexdigest()


def _data_fingerprint(dataset: Sequence[dict[str, Any]], keys: Sequence[str]) -> str:
    """SHA-256 of the first and last items' tensors under ``keys``.

    A cheap check (two items are loaded, not the whole data set) that a cache of the same size was built from the
    same data: another split, record selection or preprocessing almost always changes one of the two.
    """
    digest = hashlib.sha256()
    for index in sorted({0, len(dataset) - 1}):
        item = dataset[index]
        for key in keys:
            if key in item:
                digest.update(key.encode())
                digest.update(_tensor_bytes(convert_to_tensor(item[key], track_meta=False)))
    return digest.hexdigest()


def _tensor_bytes(tensor: torch.Tensor) -> bytes:
    return tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def _read_metadata(path: Path) -> dict[str, str] | None:
    """The cache's metadata if the file is a complete safetensors file, else None."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        load_file(str(path))  # reads every tensor: a truncated file fails here
    except (SafetensorError, OSError, RuntimeError, ValueError) as err:
        logger.warning("latent cache %s is unreadable: %s", path, err)
        return None
    return metadata


def build_latent_cache(
    dataset: Sequence[dict[str, Any]],
    encode: Callable[[torch.Tensor], torch.Tensor],
    cache_dir: str | os.PathLike,
    *,
    image_key: str = "image",
    keep_keys: Sequence[str] = ("conditions", "condition_mask"),
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    fingerprint: str | None = None,
) -> Path:
    """Encode ``dataset`` once into ``cache_dir/latents.safetensors``; reuse the file if it is complete and current.

    Args:
        dataset: items (dicts) with ``image_key`` ``(C, *spatial)`` tensors; ``keep_keys`` present in the first
            item are stored too (each must be a tensor of the same shape in every item).
        encode: ``(B, C, *spatial) -> (B, C_z, *spatial_z)``, e.g. ``LatentSpace(...).encode``; run without
            gradients, with its module in eval mode.
        cache_dir: folder of the cache (created if missing).
        image_key: input key; the latents are stored under the same key.
        keep_keys: per-item tensors stored alongside (conditions).
        batch_size: encoding batch size.
        device: where the encoder runs.
        fingerprint: identifies the encoder; default :func:`encoder_fingerprint` (its weights).

    Returns:
        The cache file's path.

    Raises:
        ValueError: the data set is empty or an item lacks ``image_key``.
    """
    if len(dataset) == 0:
        raise ValueError("cannot build a latent cache of an empty data set.")
    path = Path(cache_dir) / CACHE_NAME
    fingerprint = fingerprint or encoder_fingerprint(encode)
    wanted = {"count": str(len(dataset)), "fingerprint": fingerprint, "image_key": image_key,
              "data": _data_fingerprint(dataset, [image_key, *keep_keys])}
    if idist.get_rank() == 0 and not _is_current(path, wanted):
        tensors = _encode_all(dataset, encode, image_key=image_key, keep_keys=keep_keys, batch_size=batch_size,
                              device=torch.device(device))
        with atomic_output_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=wanted)
    if idist.get_world_size() > 1:
        idist.barrier()  # the other ranks wait for rank 0's cache
    return path


def _is_current(path: Path, wanted: dict[str, str]) -> bool:
    """Whether ``path`` is a complete cache whose metadata matches ``wanted``."""
    metadata = _read_metadata(path) if path.is_file() else None
    return metadata is not None and all(metadata.get(k) == v for k, v in wanted.items())


def _encode_all(
    dataset: Sequence[dict[str, Any]], encode: Callable, *, image_key: str, keep_keys: Sequence[str],
    batch_size: int, device: torch.device,
) -> dict[str, torch.Tensor]:
    first = dataset[0]
    if image_key not in first:
        raise ValueError(f"latent cache: data set items have no {image_key!r}; keys: {sorted(first)}.")
    kept = [k for k in keep_keys if k in first and k != image_key]
    owner = getattr(encode, "__self__", encode)
    was_training = owner.training if isinstance(owner, torch.nn.Module) else False
    if isinstance(owner, torch.nn.Module):
        owner.eval()
    chunks: dict[str, list[torch.Tensor]] = {k: [] for k in [image_key, *kept]}
    try:
        with torch.no_grad():
            for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
                chunks[image_key].append(torch.as_tensor(encode(batch[image_key].to(device))).detach().cpu())
                for key in kept:
                    chunks[key].append(torch.as_tensor(batch[key]).cpu())
    finally:
        if isinstance(owner, torch.nn.Module):
            owner.train(was_training)
    return {k: torch.cat(v).contiguous() for k, v in chunks.items()}


class LatentCacheDataset(Dataset):
    """Items of a cache written by :func:`build_latent_cache`: ``{"image": (C_z, *spatial_z), <kept keys>: ...}``.

    Args:
        path: the cache file, or the folder holding ``latents.safetensors``.

    The tensors are memory-mapped from the file (safetensors); rebuilding the cache replaces the file atomically,
    so an open data set keeps reading the old one.

    Raises:
        FileNotFoundError: no cache file there.
        ValueError: the file is not a complete cache.

    Examples:
        >>> build_latent_cache(train_items, latent_space.encode, "runs/latents")
        >>> loader = DataLoader(LatentCacheDataset("runs/latents"), batch_size=64, shuffle=True)
    """

    def __init__(self, path: str | os.PathLike) -> None:
        path = Path(path)
        path = path / CACHE_NAME if path.is_dir() else path
        if not path.is_file():
            raise FileNotFoundError(f"latent cache {path} does not exist; build it with build_latent_cache().")
        metadata = _read_metadata(path)
        if metadata is None or "count" not in metadata:
            raise ValueError(f"latent cache {path} is incomplete or not a latent cache; rebuild it.")
        self.path, self.tensors = path, load_file(str(path))
        self.image_key = metadata.get("image_key", "image")
        self.length = int(metadata["count"])

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not -self.length <= index < self.length:
            raise IndexError(f"latent cache {self.path} has {self.length} items, got index {index}.")
        return {key: value[index] for key, value in self.tensors.items()}
