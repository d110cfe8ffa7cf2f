"""Latent diffusion plumbing: latent scaling fitted on data, and an encode / (tiled) decode wrapper.

The diffusion model (and the samplers) see scaled latents ``z`` of shape ``(B, C_z, *spatial / f)``, where ``f`` is
the autoencoder's compression factor. :class:`LatentSpace` encodes images before training, and decodes sampled
latents afterwards in one of three ways:

- whole, MONAI's own ``decode_stage_2_outputs``;
- tile by tile (``tile_size``): peak memory is one tile's decoder activations plus the assembled output (which can
  live on another device), for any decoder; exact for a purely convolutional one (``vq_autoencoder``'s), approximate
  for MONAI's ``AutoencoderKL``, whose GroupNorm layers normalise each tile with its own statistics;
- streamed (``slab_size``, MONAI ``AutoencoderKL`` only): the decoder runs layer by layer over the whole volume, each
  convolution computed in slabs of output slices along the last axis and each GroupNorm with the whole volume's
  statistics, so the result equals the full decode to float round-off while peak memory stays about three
  full-resolution activations (a block's input and two outputs; MONAI's full decode also holds each normalised
  activation and the layers' temporaries).

See:
    Rombach et al. 2022 (LDM; not in shared/papers): rescale KL latents by ``1 / std(z)`` estimated on data.
    Medical Diffusion (Khader et al. 2023), §2.3 "Putting It All Together": unquantised latents min-max normalised
    to [-1, 1] with the codebook range; sampled latents are quantised, then decoded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from monai.data.utils import dense_patch_slices
from monai.networks.blocks import Convolution, UpSample
from monai.networks.nets.autoencoderkl import AEKLResBlock
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
        slab_size: decode streamed (see the module docstring): output slices per convolution slab along the last
            spatial axis (a MONAI ``AutoencoderKL``; not with ``tile_size``). Smaller slabs need less memory for each
            layer's temporaries, larger ones run with less overhead.

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
        slab_size: int | None = None,
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
        if slab_size is not None:
            if tile_size is not None:
                raise ValueError("LatentSpace decodes tiled (tile_size) or streamed (slab_size), not both.")
            if not (isinstance(slab_size, int) and slab_size >= 1):
                raise ValueError(f"slab_size must be a positive number of slices, got {slab_size!r}.")
            blocks = getattr(getattr(autoencoder, "decoder", None), "blocks", None)
            if not (isinstance(blocks, nn.ModuleList) and isinstance(getattr(autoencoder, "post_quant_conv", None), nn.Module)):
                raise TypeError(
                    f"slab_size (streamed decoding) needs a MONAI AutoencoderKL, got {type(autoencoder).__name__}."
                )
        self.slab_size = slab_size
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
        """Scaled latents ``(B, C_z, *spatial_z)`` -> images ``(B, C, *spatial_z * f)``: tiled if ``tile_size`` is set,
        streamed (without gradients) if ``slab_size`` is."""
        raw = self.scaler.inverse(z)
        if self.slab_size is not None:
            return self._decode_streamed(raw)
        if self.tile_size is None:
            return self.autoencoder.decode_stage_2_outputs(raw)
        return self._decode_tiled(raw)

    @torch.no_grad()
    def _decode_streamed(self, raw: torch.Tensor) -> torch.Tensor:
        """MONAI ``AutoencoderKL.decode`` layer by layer: its ``post_quant_conv``, then each decoder block streamed."""
        x = self.autoencoder.post_quant_conv(raw)
        for block in self.autoencoder.decoder.blocks:
            x = _streamed(block, x, self.slab_size)
        return x

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


# --- streamed decoding: MONAI AutoencoderKL's decoder blocks, each convolution in slabs along the last axis ---------


def _slabs(size: int, slab: int) -> list[tuple[int, int]]:
    return [(start, min(start + slab, size)) for start in range(0, size, slab)]


def _halo_slice(
    x: torch.Tensor, start: int, stop: int, halo: int, transform: Callable[[torch.Tensor], torch.Tensor] | None = None
) -> torch.Tensor:
    """``transform(x[..., start - halo : stop + halo])`` along the last axis, zero-padded where it leaves ``x`` (after
    the transform: a convolution pads its input, here the normalised activation, with zeros)."""
    low, high = max(0, start - halo), min(x.shape[-1], stop + halo)
    piece = x[..., low:high] if transform is None else transform(x[..., low:high])
    return F.pad(piece, (low - (start - halo), stop + halo - high)) if (low, high) != (start - halo, stop + halo) else piece


def _conv_padding(conv: nn.Module) -> int | None:
    """The last axis's padding of a stride-1 'same' zero-padded convolution, or None when it is not one."""
    kernel, padding = ensure_tuple(conv.kernel_size), ensure_tuple(conv.padding)
    ok = (
        isinstance(conv, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and conv.padding_mode == "zeros"
        and all(s == 1 for s in ensure_tuple(conv.stride)) and all(d == 1 for d in ensure_tuple(conv.dilation))
        and not isinstance(conv.padding, str) and all(k == 2 * p + 1 for k, p in zip(kernel, padding, strict=True))
    )
    return int(padding[-1]) if ok else None


def _conv_streamed(
    conv: nn.Module, x: torch.Tensor, slab: int, source: Callable[[int, int, int], torch.Tensor] | None = None
) -> torch.Tensor:
    """A 'same' convolution of ``x`` (or of ``source(start, stop, halo)``, the input slab it needs) slab by slab."""
    halo = _conv_padding(conv)
    size = x.shape[-1] if source is None else source.size
    out = None
    convolve = (F.conv1d, F.conv2d, F.conv3d)[conv.weight.dim() - 3]
    padding = (*ensure_tuple(conv.padding)[:-1], 0)
    for start, stop in _slabs(size, slab):
        piece = _halo_slice(x, start, stop, halo) if source is None else source(start, stop, halo)
        y = convolve(piece, conv.weight, conv.bias, 1, padding, 1, conv.groups)
        if out is None:
            out = y.new_empty((*y.shape[:-1], size))
        out[..., start:stop] = y
    return out


class _NormalisedSlabs:
    """GroupNorm (then SiLU if asked) of ``x`` with the whole tensor's statistics, applied to the slabs asked for, so a
    following convolution never needs the normalised tensor whole."""

    def __init__(self, norm: nn.GroupNorm, x: torch.Tensor, *, silu: bool) -> None:
        batch, channels, groups = x.shape[0], x.shape[1], norm.num_groups
        var, mean = torch.var_mean(x.reshape(batch, groups, -1), dim=2, unbiased=False)
        stat_shape = [batch, groups] + [1] * (x.dim() - 1)
        self.mean, self.rstd = mean.reshape(stat_shape), torch.rsqrt(var + norm.eps).reshape(stat_shape)
        affine_shape = [1, channels] + [1] * (x.dim() - 2)
        self.weight = norm.weight.reshape(affine_shape) if norm.affine else None
        self.bias = norm.bias.reshape(affine_shape) if norm.affine else None
        self.x, self.size, self.groups, self.silu = x, x.shape[-1], groups, silu

    def apply(self, piece: torch.Tensor) -> torch.Tensor:
        grouped = piece.reshape([piece.shape[0], self.groups, piece.shape[1] // self.groups] + list(piece.shape[2:]))
        y = ((grouped - self.mean) * self.rstd).reshape(piece.shape)
        if self.weight is not None:
            y = y * self.weight + self.bias
        return F.silu(y) if self.silu else y

    def __call__(self, start: int, stop: int, halo: int) -> torch.Tensor:
        return _halo_slice(self.x, start, stop, halo, self.apply)


def _group_norm_streamed(norm: nn.GroupNorm, x: torch.Tensor, slab: int) -> torch.Tensor:
    """A GroupNorm block of its own: ``x`` normalised with its whole statistics, into a new tensor, slab by slab."""
    slabs, out = _NormalisedSlabs(norm, x, silu=False), torch.empty_like(x)
    for start, stop in _slabs(x.shape[-1], slab):
        out[..., start:stop] = slabs.apply(x[..., start:stop])
    return out


def _resblock_streamed(block: AEKLResBlock, x: torch.Tensor, slab: int) -> torch.Tensor:
    """``AEKLResBlock.forward`` (norm1, SiLU, conv1, norm2, SiLU, conv2, + shortcut): each norm fused into the
    convolution after it, the shortcut added slab by slab, so ``x`` and two activations are all that is alive."""
    h = _conv_streamed(block.conv1.conv, x, slab, source=_NormalisedSlabs(block.norm1, x, silu=True))
    out = _conv_streamed(block.conv2.conv, h, slab, source=_NormalisedSlabs(block.norm2, h, silu=True))
    del h
    if isinstance(block.nin_shortcut, nn.Identity):
        return out.add_(x)
    shortcut = block.nin_shortcut.conv
    if any(k != 1 for k in ensure_tuple(shortcut.kernel_size)):  # not MONAI's 1x1 shortcut: with its halo
        return out.add_(_conv_streamed(shortcut, x, slab))
    convolve = (F.conv1d, F.conv2d, F.conv3d)[shortcut.weight.dim() - 3]
    for start, stop in _slabs(x.shape[-1], slab):  # a 1x1 convolution: no halo
        out[..., start:stop] += convolve(x[..., start:stop], shortcut.weight, shortcut.bias)
    return out


class _UpsampledSlabs:
    """The slabs of ``nearest-upsample(x, 2)`` a following convolution needs, each computed from ``x`` when asked."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x, self.size = x, 2 * x.shape[-1]  # the upsampled length of the last axis

    def __call__(self, start: int, stop: int, halo: int) -> torch.Tensor:
        low, high = max(0, start - halo), min(self.size, stop + halo)
        first = low // 2
        up = F.interpolate(self.x[..., first : (high + 1) // 2], scale_factor=2.0, mode="nearest")
        return F.pad(up[..., low - 2 * first : high - 2 * first], (low - (start - halo), stop + halo - high))


def _is_nearest_upsample(block: nn.Module) -> bool:
    up = getattr(block, "upsample_non_trainable", None)
    post = getattr(block, "postconv", None)
    return (
        isinstance(block, UpSample) and isinstance(up, nn.Upsample) and up.mode == "nearest"
        and all(float(f) == 2.0 for f in ensure_tuple(up.scale_factor)) and up.size is None
        and isinstance(post, Convolution) and _conv_padding(post.conv) is not None
        and [name for name, _ in block.named_children()] == ["upsample_non_trainable", "postconv"]
    )


def _streamed(block: nn.Module, x: torch.Tensor, slab: int) -> torch.Tensor:
    """One decoder block, streamed when it is one this module knows; any other block (attention) runs whole."""
    if isinstance(block, AEKLResBlock) and all(_conv_padding(c.conv) is not None for c in (block.conv1, block.conv2)):
        return _resblock_streamed(block, x, slab)
    if isinstance(block, Convolution) and [n for n, _ in block.named_children()] == ["conv"]:
        if _conv_padding(block.conv) is not None:
            return _conv_streamed(block.conv, x, slab)
    if isinstance(block, nn.GroupNorm):
        return _group_norm_streamed(block, x, slab)
    if _is_nearest_upsample(block):
        return _conv_streamed(block.postconv.conv, x, slab, source=_UpsampledSlabs(x))
    return block(x)
