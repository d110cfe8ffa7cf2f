"""Builders for the latent-diffusion autoencoders: MONAI ``AutoencoderKL`` and ``VQVAE`` for 1D, 2D and 3D data.

Both builders return the MONAI class itself (so MONAI's ``LatentDiffusionInferer`` and our
:class:`~monai_gen.diffusion.latent.LatentSpace` use its ``encode_stage_2_inputs`` / ``decode_stage_2_outputs``),
configured from a few plain arguments that a bundle config can hold, with the configuration checked before any
layer is allocated. The adversarial critic is MONAI's ``PatchDiscriminator`` as is: it already accepts
``spatial_dims=1``.

MONAI 1.6 gap: ``EMAQuantizer`` refuses ``spatial_dims=1`` with an ``assert`` although its permutations are
rank-generic, so :func:`vq_autoencoder` builds the 1D model through a 2D one and swaps in MONAI's own 1D
``Encoder`` / ``Decoder``. Upstream fix: allow ``spatial_dims`` 1 in ``EMAQuantizer.__init__``.

See:
    Medfusion (Müller-Franzes et al. 2023), Results and Figs. 1-2: 2D VAE, 8x compression, 4 or 8 latent channels.
    Medical Diffusion (Khader et al. 2023), §2.3 "VQ-GAN" and §3.3: 3D VQ-GAN; compression 4 keeps anatomy, 8 loses it.
"""

from __future__ import annotations

from collections.abc import Sequence

from monai.networks.nets import VQVAE, AutoencoderKL
from monai.networks.nets.vqvae import Decoder as VQDecoder
from monai.networks.nets.vqvae import Encoder as VQEncoder

__all__ = ["SPATIAL_DIMS", "kl_autoencoder", "vq_autoencoder"]

SPATIAL_DIMS = (1, 2, 3)
# VQ-VAE resampling: stride 2, kernel 4, dilation 1, padding 1 (+ output padding 0 for the transposed conv).
_VQ_DOWN = (2, 4, 1, 1)
_VQ_UP = (2, 4, 1, 1, 0)


def _check_common(spatial_dims: int, in_channels: int, channels: Sequence[int]) -> None:
    if spatial_dims not in SPATIAL_DIMS:
        raise ValueError(f"spatial_dims must be one of {SPATIAL_DIMS}, got {spatial_dims!r}.")
    if not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"in_channels must be a positive integer, got {in_channels!r}.")
    if len(channels) == 0 or any(not isinstance(c, int) or c < 1 for c in channels):
        raise ValueError(f"channels must be a non-empty sequence of positive integers, got {channels!r}.")


def kl_autoencoder(
    spatial_dims: int,
    in_channels: int = 1,
    *,
    out_channels: int | None = None,
    channels: Sequence[int] = (32, 64, 128, 128),
    latent_channels: int = 4,
    num_res_blocks: int = 1,
    norm_num_groups: int = 8,
    attention: bool = False,
) -> AutoencoderKL:
    """A KL-regularised autoencoder (Medfusion's VAE) with spatial compression ``2 ** (len(channels) - 1)``.

    Args:
        spatial_dims: 1 (ECG ``(B, leads, T)``), 2 or 3.
        in_channels: image / signal channels.
        out_channels: decoder channels; defaults to ``in_channels``.
        channels: feature channels per resolution level; each level after the first halves every spatial size,
            so the default four levels compress 8x (Medfusion). Each must be a multiple of ``norm_num_groups``.
        latent_channels: channels of the latent ``z`` (Medfusion: 4 or 8).
        num_res_blocks: residual blocks per level.
        norm_num_groups: GroupNorm groups.
        attention: add MONAI's non-local attention in the bottleneck of encoder and decoder. Off by default:
            attention is global, so a tiled decode can no longer match a full decode (see ``LatentSpace``).

    Returns:
        ``monai.networks.nets.AutoencoderKL``; ``forward(x) -> (reconstruction, z_mu, z_sigma)``.

    Raises:
        ValueError: a bad ``spatial_dims``, channel count or group count (checked before building).

    Examples:
        >>> ae = kl_autoencoder(1, 12, channels=(8, 16, 16), latent_channels=4)  # 12-lead ECG, 4x compression
    """
    _check_common(spatial_dims, in_channels, channels)
    bad = [c for c in channels if c % norm_num_groups]
    if bad:
        raise ValueError(f"channels {tuple(channels)} must all be multiples of norm_num_groups={norm_num_groups}.")
    if latent_channels < 1:
        raise ValueError(f"latent_channels must be a positive integer, got {latent_channels!r}.")
    return AutoencoderKL(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=in_channels if out_channels is None else out_channels,
        channels=tuple(channels),
        latent_channels=latent_channels,
        num_res_blocks=num_res_blocks,
        norm_num_groups=norm_num_groups,
        attention_levels=(False,) * len(channels),
        with_encoder_nonlocal_attn=attention,
        with_decoder_nonlocal_attn=attention,
    )


def vq_autoencoder(
    spatial_dims: int,
    in_channels: int = 1,
    *,
    out_channels: int | None = None,
    channels: Sequence[int] = (64, 128),
    num_res_layers: int = 1,
    num_embeddings: int = 512,
    embedding_dim: int = 8,
    commitment_cost: float = 0.25,
    decay: float = 0.99,
) -> VQVAE:
    """A vector-quantised autoencoder (Medical Diffusion's VQ-GAN generator) with compression ``2 ** len(channels)``.

    The decoder is purely convolutional (no normalisation, no attention), so tiled decoding reproduces a full
    decode away from the volume border (see ``LatentSpace.decode``).

    Args:
        spatial_dims: 1 (ECG ``(B, leads, T)``; through the adapter described in the module docstring), 2 or 3.
        in_channels: image / signal channels.
        out_channels: decoder channels; defaults to ``in_channels``.
        channels: feature channels per level; every level halves each spatial size (two levels = 4x, the
            compression Medical Diffusion found to keep anatomy).
        num_res_layers: residual layers per level.
        num_embeddings: codebook size.
        embedding_dim: latent channels (the size of each codebook vector).
        commitment_cost: weight of the commitment term MONAI returns as the quantisation loss.
        decay: EMA decay of the codebook (the codebook updates in ``train()`` mode only).

    Returns:
        ``monai.networks.nets.VQVAE``; ``forward(x) -> (reconstruction, quantisation_loss)``.

    Raises:
        ValueError: a bad ``spatial_dims``, channel count or codebook size (checked before building).
    """
    _check_common(spatial_dims, in_channels, channels)
    if num_embeddings < 2 or embedding_dim < 1:
        raise ValueError(f"num_embeddings must be >= 2 and embedding_dim >= 1, got {num_embeddings}, {embedding_dim}.")
    levels = len(channels)
    model = VQVAE(
        spatial_dims=max(spatial_dims, 2),
        in_channels=in_channels,
        out_channels=in_channels if out_channels is None else out_channels,
        channels=tuple(channels),
        num_res_channels=tuple(channels),
        num_res_layers=num_res_layers,
        downsample_parameters=(_VQ_DOWN,) * levels,
        upsample_parameters=(_VQ_UP,) * levels,
        num_embeddings=num_embeddings,
        embedding_dim=embedding_dim,
        commitment_cost=commitment_cost,
        decay=decay,
    )
    if spatial_dims == 1:
        _make_vqvae_1d(model)
    return model


def _make_vqvae_1d(model: VQVAE) -> None:
    """Turn a 2D MONAI ``VQVAE`` into the same model over 1D signals, in place, using MONAI's own blocks."""
    enc, dec = model.encoder, model.decoder
    shared = {"channels": enc.channels, "num_res_layers": enc.num_res_layers, "num_res_channels": enc.num_res_channels}
    model.encoder = VQEncoder(
        spatial_dims=1,
        in_channels=enc.in_channels,
        out_channels=enc.out_channels,
        downsample_parameters=enc.downsample_parameters,
        dropout=enc.dropout,
        act=enc.act,
        **shared,
    )
    model.decoder = VQDecoder(
        spatial_dims=1,
        in_channels=dec.in_channels,
        out_channels=dec.out_channels,
        upsample_parameters=dec.upsample_parameters,
        dropout=dec.dropout,
        act=dec.act,
        output_act=dec.output_act,
        **shared,
    )
    model.spatial_dims = 1
    quantizer = model.quantizer.quantizer
    # EMAQuantizer's channel-last permutations written for one spatial axis: (B, D, T) <-> (B, T, D).
    quantizer.spatial_dims = 1
    quantizer.flatten_permutation = [0, 2, 1]
    quantizer.quantization_permutation = [0, 2, 1]
