"""Latent diffusion plumbing: latent scaling fitted on data, and an encode / (tiled) decode wrapper.

The diffusion model (and the samplers) see scaled latents ``z`` of shape ``(B, C_z, *spatial / f)``, where ``f`` is
the autoencoder's compression factor. :class:`LatentSpace` encodes images before training, and decodes sampled
latents afterwards, optionally tile by tile with MONAI's ``sliding_window_inference`` so that a 3D volume is decoded
in bounded memory: peak memory is one tile's decoder activations plus the assembled output (which can live on
another device).

See:
    Rombach et al. 2022 (LDM; not in shared/papers): rescale KL latents by ``1 / std(z)`` estimated on data.
    Medical Diffusion (Khader et al. 2023), §2.3 "Putting It All Together": unquantised latents min-max normalised
    to [-1, 1] with the codebook range; sampled latents are quantised, then decoded.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from monai.data.utils import dense_patch_slices
from monai.utils import ensure_tuple, ensure_tuple_rep, look_up_option
from torch import nn

__all__ = ["SCALING_MODES", "LatentScaler", "LatentSpace"]

SCALING_MODES = ("std", "minmax")


class LatentScaler(nn.Module):
    """Invertible affine latent normalisation ``z_n = (z - shift) * scale``, with statistics fitted on data.

    ``mode="std"`` (LDM) keeps ``shift = 0`` and sets ``scale = 1 / std(z)``, so fitted latents have unit standard
    deviation; ``mode="minmax"`` (Medical Diffusion) maps ``[min(z), max(z)]`` onto ``[-1, 1]``. The statistics are
    global scalars kept in buffers, so they follow ``.to()`` and are saved in ``state_dict``.

    Args:
        mode: ``"std"`` or ``"minmax"``.
        scale: initial scale (e.g. a published scale factor such as 0.18215); replaced by :meth:`fit`.
        shift: initial shift; replaced by :meth:`fit`.

    Medical Diffusion takes the min-max range from the VQ codebook instead of data:
    ``LatentScaler("minmax").fit(vqvae.quantizer.quantizer.embedding.weight)``.

    Examples:
        >>> scaler = LatentScaler("minmax").fit(latents)  # latents: (N, C, *spatial) or an iterable of batches
        >>> z_n = scaler(z); z_back = scaler.inverse(z_n)
    """

    def __init__(self, mode: str = "std", *, scale: float = 1.0, shift: float = 0.0) -> None:
        super().__init__()
        self.mode = look_up_option(mode, SCALING_MODES)
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale!r}.")
        self.register_buffer("scale", torch.tensor(float(scale), dtype=torch.float64))
        self.register_buffer("shift", torch.tensor(float(shift), dtype=torch.float64))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Normalise latents ``(B, C, *spatial)``; same shape, dtype and device."""
        return ((z - self.shift.to(z.dtype)) * self.scale.to(z.dtype)).to(z.dtype)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """Undo :meth:`forward` on normalised latents ``(B, C, *spatial)``."""
        return (z / self.scale.to(z.dtype) + self.shift.to(z.dtype)).to(z.dtype)

    @torch.no_grad()
    def fit(self, latents: torch.Tensor | Iterable[torch.Tensor]) -> LatentScaler:
        """Set ``scale`` / ``shift`` from latents: one tensor or an iterable of batches (streamed, float64 sums).

        Raises:
            ValueError: no latent values, non-finite values, or constant latents (no spread to normalise).
        """
        batches = [latents] if isinstance(latents, torch.Tensor) else latents
        count, total, squares = 0, 0.0, 0.0
        low, high = float("inf"), float("-inf")
        for batch in batches:
            values = batch.detach().to(torch.float64)
            if not torch.isfinite(values).all():
                raise ValueError(f"latents must be finite; a batch of shape {tuple(batch.shape)} has NaN or inf.")
            count += values.numel()
            total, squares = total + values.sum().item(), squares + values.square().sum().item()
            low, high = min(low, values.min().item()), max(high, values.max().item())
        if count < 2 or high <= low:
            raise ValueError(f"latents must hold at least 2 distinct values to fit a scale, got {count} values.")
        if self.mode == "std":
            mean = total / count
            std = max(squares / count - mean * mean, 0.0) ** 0.5 * (count / (count - 1)) ** 0.5
            scale, shift = 1.0 / std, 0.0
        else:
            scale, shift = 2.0 / (high - low), (high + low) / 2.0
        self.scale.fill_(scale)
        self.shift.fill_(shift)
        return self

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, scale={self.scale.item():.6g}, shift={self.shift.item():.6g}"


def _core_weights(tile: tuple[slice, ...], spatial: Sequence[int], halo: int, zoom: Sequence[int]) -> torch.Tensor:
    """Output-resolution weights ``(1, 1, *tile * zoom)``: 1 in the tile's core, 0 in a ``halo`` rim (latent voxels)
    on every side that is a cut inside the volume; sides on the volume border keep no rim, as the full decode pads
    there too."""
    weights = torch.ones([1, 1] + [(t.stop - t.start) * f for t, f in zip(tile, zoom, strict=True)])
    for axis, (cut, size, factor) in enumerate(zip(tile, spatial, zoom, strict=True)):
        profile = torch.ones((cut.stop - cut.start) * factor)
        if cut.start > 0:
            profile[: halo * factor] = 0.0
        if cut.stop < size:
            profile[len(profile) - halo * factor :] = 0.0
        weights = weights * profile.reshape([-1 if d == axis + 2 else 1 for d in range(weights.ndim)])
    return weights


class LatentSpace(nn.Module):
    """An autoencoder plus a :class:`LatentScaler`: ``encode(x) -> z_n`` and ``decode(z_n) -> x``, tiled on request.

    Works with MONAI's ``AutoencoderKL`` and ``VQVAE`` (their ``encode`` / ``encode_stage_2_inputs`` /
    ``decode_stage_2_outputs``).
    Put the autoencoder in ``eval()`` mode for inference: a ``VQVAE`` in training mode updates its codebook on every
    call.

    Tiled decoding: overlapping latent tiles are decoded one at a time. A tile's output within ``halo`` latent voxels
    of a cut inside the volume saw zero padding where the full decode saw neighbours, so it gets weight 0 there, and
    each output voxel is the mean of the tile cores that hold it (a tile side on the volume border keeps its rim: the
    full decode pads there too). For a purely convolutional decoder (``vq_autoencoder``'s) whose receptive-field
    radius at latent resolution is at most ``halo``, this equals a full decode to float round-off. GroupNorm in an
    ``AutoencoderKL`` decoder normalises each tile with its own statistics and attention sees one tile, so such
    decoders match only approximately (closer for larger tiles).

    Args:
        autoencoder: a MONAI ``AutoencoderKL`` or ``VQVAE`` (or any module with those three methods).
        scaler: latent normalisation; an identity ``LatentScaler()`` if omitted (fit it with :meth:`fit_scaler`).
        sample_posterior: encode with MONAI's ``encode_stage_2_inputs`` (KL: a posterior sample ``mu + sigma * eps``;
            VQ: the quantised latents) instead of the deterministic encoder output (KL: the posterior mean ``mu``; VQ:
            the pre-quantisation features, which LDM and Medical Diffusion diffuse; ``decode`` quantises them).
        tile_size: latent tile size per spatial axis (int or sequence); ``None`` decodes the whole latent at once.
        tile_overlap: fraction of ``tile_size`` shared by neighbouring tiles; needs ``overlap * tile >= 2 * halo``.
        halo: rim width in latent voxels whose decoded output is discarded at cuts inside the volume; at least the
            decoder's receptive-field radius at latent resolution (6 covers ``vq_autoencoder`` with 2 levels, 1 residual
            layer).
        tile_device: where each tile is decoded (e.g. the GPU); defaults to the latent's device.
        output_device: where the full output is assembled (e.g. ``"cpu"`` for large volumes).

    Examples:
        >>> space = LatentSpace(vq_autoencoder(3, 1, channels=(64, 128)), LatentScaler("minmax"), tile_size=32)
        >>> space.fit_scaler(volume_batches); z = space.encode(volumes); x = space.decode(z)
    """

    def __init__(
        self,
        autoencoder: nn.Module,
        scaler: LatentScaler | None = None,
        *,
        sample_posterior: bool = False,
        tile_size: Sequence[int] | int | None = None,
        tile_overlap: float = 0.5,
        halo: int = 6,
        tile_device: torch.device | str | None = None,
        output_device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        for name in ("encode", "encode_stage_2_inputs", "decode_stage_2_outputs"):
            if not callable(getattr(autoencoder, name, None)):
                raise TypeError(
                    f"autoencoder must have the method {name}() (MONAI AutoencoderKL / VQVAE), got "
                    f"{type(autoencoder).__name__}."
                )
        if not 0.0 <= tile_overlap < 1.0:
            raise ValueError(f"tile_overlap must be in [0, 1), got {tile_overlap!r}.")
        if tile_size is not None and min(ensure_tuple(tile_size)) * tile_overlap < 2 * halo:
            raise ValueError(
                f"tile_overlap * tile_size must be >= 2 * halo so every voxel lies in some tile's core, got "
                f"tile_size={tile_size}, tile_overlap={tile_overlap}, halo={halo}."
            )
        self.autoencoder = autoencoder
        self.scaler = LatentScaler() if scaler is None else scaler
        self.sample_posterior = sample_posterior
        self.tile_size, self.tile_overlap, self.halo = tile_size, tile_overlap, halo
        self.tile_device, self.output_device = tile_device, output_device

    @property
    def compression(self) -> int:
        """Spatial compression factor ``f``: the product of the encoder's convolution strides (isotropic strides)."""
        factor = 1
        for module in getattr(self.autoencoder, "encoder", self.autoencoder).modules():
            if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                factor *= module.stride[0]
        return factor

    def _raw_latent(self, x: torch.Tensor) -> torch.Tensor:
        bad = [s for s in x.shape[2:] if s % self.compression]
        if bad:
            raise ValueError(
                f"image spatial size {tuple(x.shape[2:])} must be divisible by the compression factor "
                f"{self.compression} along every axis; pad or crop first (monai.transforms.DivisiblePad / "
                f"CenterSpatialCrop)."
            )
        if self.sample_posterior:
            return self.autoencoder.encode_stage_2_inputs(x)
        # deterministic: AutoencoderKL.encode gives (z_mu, z_sigma), VQVAE.encode the pre-quantisation features
        encoded = self.autoencoder.encode(x)
        return encoded[0] if isinstance(encoded, (tuple, list)) else encoded

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, *spatial)`` -> scaled latents ``(B, C_z, *spatial / f)``."""
        return self.scaler(self._raw_latent(x))

    @torch.no_grad()
    def fit_scaler(self, images: torch.Tensor | Iterable[torch.Tensor]) -> LatentScaler:
        """Encode ``images`` (one batch or an iterable of batches) and fit the scaler on the raw latents."""
        batches = [images] if isinstance(images, torch.Tensor) else images
        return self.scaler.fit(self._raw_latent(batch) for batch in batches)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Scaled latents ``(B, C_z, *spatial_z)`` -> images ``(B, C, *spatial_z * f)``, tiled if ``tile_size`` is set."""
        raw = self.scaler.inverse(z)
        if self.tile_size is None:
            return self.autoencoder.decode_stage_2_outputs(raw)
        return self._decode_tiled(raw)

    def _decode_tiled(self, raw: torch.Tensor) -> torch.Tensor:
        """Decode overlapping latent tiles one at a time; each output voxel is the mean of the tile cores holding it."""
        spatial = raw.shape[2:]
        roi = [min(t, s) for t, s in zip(ensure_tuple_rep(self.tile_size, len(spatial)), spatial, strict=True)]
        interval = [max(1, int(r * (1 - self.tile_overlap))) for r in roi]
        tile_device = self.tile_device if self.tile_device is not None else raw.device
        out_device = self.output_device if self.output_device is not None else raw.device
        output = count = zoom = None
        for tile in dense_patch_slices(spatial, roi, interval):
            tile = tuple(slice(int(t.start), int(t.stop)) for t in tile)
            decoded = self.autoencoder.decode_stage_2_outputs(raw[(Ellipsis, *tile)].to(tile_device)).to(out_device)
            if output is None:
                zoom = [o // r for o, r in zip(decoded.shape[2:], roi, strict=True)]
                output = decoded.new_zeros((*decoded.shape[:2], *(s * f for s, f in zip(spatial, zoom, strict=True))))
                count = decoded.new_zeros((1, 1, *output.shape[2:]))
            weights = _core_weights(tile, spatial, self.halo, zoom).to(decoded)
            out_tile = tuple(slice(t.start * f, t.stop * f) for t, f in zip(tile, zoom, strict=True))
            output[(Ellipsis, *out_tile)] += decoded * weights
            count[(Ellipsis, *out_tile)] += weights
        return output / count
