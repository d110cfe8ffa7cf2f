"""Diffusion denoiser backbone for 1D signals, 2D images and 3D volumes on top of MONAI's ``DiffusionModelUNet``.

MONAI 1.6's ``DiffusionModelUNet(spatial_dims=1)`` builds, but its forward crashes: ``DiffusionUNetResnetBlock.forward``
broadcasts the time embedding with ``[:, :, None, None, None]`` for every ``spatial_dims != 2`` (a 5-D tensor added
to a 3-D feature map), and ``SpatialTransformer.forward`` only flattens / restores 2-D and 3-D feature maps.
:class:`DenoisingUNet` therefore runs a 1-D signal as a 2-D image of width one: it builds the 2-D MONAI network and
turns every ``3 x 3`` convolution into ``k x 1``, every stride / pooling / upsampling factor ``2`` into ``(2, 1)``.
A ``k x 1`` kernel on a width-one image has exactly the parameters and arithmetic of a width-``k`` 1-D kernel.
The same pass makes the kernel size configurable in 2-D / 3-D (``k x k [x k]`` or per axis, e.g. Medical Diffusion's
``3 x 3 x 1``); MONAI hard-codes 3.

Upstream fix (MONAI): in ``DiffusionUNetResnetBlock.forward`` broadcast with
``monai.utils.unsqueeze_right(temb, h.ndim)``; in ``SpatialTransformer.forward`` use
``x.flatten(2).transpose(1, 2)`` and ``x.transpose(1, 2).reshape(batch, inner_dim, *spatial)``; thread a
``kernel_size`` argument through the blocks. With that, the 1-D branch of this module reduces to nothing.

TorchScript (``torch.jit.script``, what ``python -m monai.bundle ckpt_export`` runs): MONAI 1.6's network does not
compile, because ``WrappedUpsample.forward`` calls ``super().forward`` and ``DiffusionModelUNet.forward`` annotates
its ControlNet residuals as a 1-tuple that it ``zip``s over. :class:`DenoisingUNet` swaps the upsampling wrappers for
an equivalent parameter-free module and runs MONAI's forward steps on MONAI's blocks in ``_unet_forward`` (a test
checks it against ``DiffusionModelUNet.forward``). Upstream fix: loop over the children in ``WrappedUpsample`` and
annotate the residuals ``list[torch.Tensor] | None``; then ``_unet_forward`` can go.

Gradient checkpointing (MONAI 1.6 has none for this network) wraps each residual block and spatial transformer with
``torch.distributed.algorithms._checkpoint.checkpoint_wrapper``, whose state-dict hooks keep parameter names
unchanged, so weights move freely between checkpointed and plain models.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from monai.networks.nets import DiffusionModelUNet
from monai.networks.nets.diffusion_model_unet import (
    DiffusionUNetResnetBlock,
    SpatialTransformer,
    WrappedUpsample,
    get_timestep_embedding,
)
from monai.utils import ensure_tuple_rep
from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import apply_activation_checkpointing

__all__ = ["DenoisingUNet", "select_timesteps"]

SUPPORTED_SPATIAL_DIMS = (1, 2, 3)
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def select_timesteps(timesteps: torch.Tensor | None, t: torch.Tensor | None) -> torch.Tensor | None:
    """The diffusion time given as ``timesteps`` or by its former name ``t`` (None when neither is given).

    Raises:
        ValueError: both are given.
    """
    if timesteps is not None and t is not None:
        raise ValueError("give the diffusion time once, as timesteps (t is its former name), not both.")
    return t if timesteps is None else timesteps


def _coordinates(x: torch.Tensor) -> torch.Tensor:
    """One channel per spatial axis holding the normalised position along it, ``-1 ... 1`` (CoordConv)."""
    axes = [torch.linspace(-1.0, 1.0, n, device=x.device, dtype=x.dtype) for n in x.shape[2:]]
    grids = torch.meshgrid(axes, indexing="ij")
    return torch.stack(grids).unsqueeze(0).expand([x.shape[0], -1] + list(x.shape[2:]))


def _check_config(
    spatial_dims: int, kernel_size: int | Sequence[int], time_scale: float, padding_mode: str
) -> tuple[int, ...]:
    """Validate the arguments MONAI does not check; return the kernel size per spatial axis."""
    if spatial_dims not in SUPPORTED_SPATIAL_DIMS:
        raise ValueError(f"spatial_dims must be one of {SUPPORTED_SPATIAL_DIMS}, got {spatial_dims!r}.")
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}.")
    try:
        kernel = ensure_tuple_rep(kernel_size, spatial_dims)
    except ValueError as err:
        raise ValueError(f"kernel_size must be one int or {spatial_dims} ints, got {kernel_size!r}.") from err
    if any(isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0 for k in kernel):
        raise ValueError(
            f"kernel_size must be an odd positive integer or one per spatial dim (it keeps sizes with padding k // 2), "
            f"got {kernel_size!r}."
        )
    if not time_scale > 0:
        raise ValueError(f"time_scale must be positive, got {time_scale!r}.")
    return kernel


class _WidthOneConv2d(nn.Conv2d):
    """A ``k x 1`` ``Conv2d`` on a width-one image, computed as the width-``k`` ``conv1d`` it equals.

    Same parameters and state dict as ``nn.Conv2d`` (weight ``(out, in, k, 1)``), same output; on CPU oneDNN runs
    the 1-D convolution (forward and backward) about 1.7x faster than the 2-D one of a ``k x 1`` kernel.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        signal = x.squeeze(-1)
        padding = self.padding[0]
        if self.padding_mode != "zeros" and padding > 0:
            signal = nn.functional.pad(signal, [padding, padding], mode=self.padding_mode)
            padding = 0
        out = nn.functional.conv1d(
            signal, self.weight.squeeze(-1), self.bias, self.stride[0], padding, self.dilation[0], self.groups
        )
        return out.unsqueeze(-1)


def _as_width_one_conv(conv: nn.Conv2d) -> _WidthOneConv2d:
    """``conv`` (a ``k x 1`` convolution with unit width stride and no width padding) as :class:`_WidthOneConv2d`."""
    new = _WidthOneConv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
    )
    new.load_state_dict(conv.state_dict())
    return new


def _resized_conv(conv: nn.Conv2d | nn.Conv3d, kernel: tuple[int, ...], stride: tuple[int, ...]) -> nn.Module:
    """A fresh convolution like ``conv`` with a new kernel / stride; keeps MONAI's zero initialisation where used."""
    new = type(conv)(
        conv.in_channels,
        conv.out_channels,
        kernel,
        stride=stride,
        padding=tuple(k // 2 for k in kernel),
        bias=conv.bias is not None,
    )
    if not conv.weight.detach().any():  # MONAI's zero_module (output convs of residual / attention branches)
        nn.init.zeros_(new.weight)
        if new.bias is not None:
            nn.init.zeros_(new.bias)
    return new


def _set_padding_mode(net: nn.Module, mode: str) -> None:
    """Pad every size-keeping / strided convolution with ``mode`` instead of zeros (same parameters, same state dict).

    ``torch.nn.Conv*d`` reads ``padding_mode`` in every forward and pads with ``torch.nn.functional.pad`` first, so
    setting it after construction is what passing it to the constructor does.
    """
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.Conv3d)) and any(p > 0 for p in module.padding):
            module.padding_mode = mode


def _context_time_embedding(
    num_tokens: int | None, token_dim: int | None, with_conditioning: bool, time_embed: nn.Sequential
) -> nn.Linear | None:
    """The zero-initialised projection of ``num_tokens`` flattened context tokens to the time embedding width."""
    if num_tokens is None:
        return None
    if not with_conditioning or token_dim is None:
        raise ValueError("context_time_tokens needs with_conditioning=True and a cross_attention_dim.")
    if num_tokens < 1:
        raise ValueError(f"context_time_tokens must be a positive number of tokens, got {num_tokens!r}.")
    projection = nn.Linear(num_tokens * token_dim, time_embed[-1].out_features)
    nn.init.zeros_(projection.weight)
    nn.init.zeros_(projection.bias)
    return projection


class _TimeIgnoringUpsample(nn.Sequential):
    """MONAI's ``WrappedUpsample`` (interpolation that ignores the time embedding), compilable by TorchScript.

    ``WrappedUpsample.forward`` calls ``super().forward(x)``, which TorchScript cannot compile; this runs the same
    children in order. It holds no parameters, so the state dict is unchanged.
    """

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self:
            x = layer(x)
        return x


def _make_scriptable(net: nn.Module) -> None:
    """Replace MONAI's ``WrappedUpsample`` blocks by :class:`_TimeIgnoringUpsample` (same children)."""
    for name, module in list(net.named_modules()):
        if isinstance(module, WrappedUpsample):
            _set_submodule(net, name, _TimeIgnoringUpsample(OrderedDict(module.named_children())))


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, module)


def _adapt_layers(net: nn.Module, *, kernel: tuple[int, ...], as_1d: bool) -> None:
    """Resize ``3 x ...`` convolutions to ``kernel``; in 1-D mode also freeze the (unit) width axis."""
    for name, module in list(net.named_modules()):
        if isinstance(module, (nn.Conv2d, nn.Conv3d)) and module.kernel_size[0] == 3:
            stride = (module.stride[0], 1) if as_1d else module.stride
            _set_submodule(net, name, _resized_conv(module, (*kernel, 1) if as_1d else kernel, stride))
        elif as_1d and isinstance(module, nn.AvgPool2d):
            module.kernel_size, module.stride = (2, 1), (2, 1)
        elif as_1d and isinstance(module, nn.Upsample):
            module.scale_factor = (2.0, 1.0)
    if as_1d:
        for name, module in list(net.named_modules()):
            if type(module) is nn.Conv2d and (module.kernel_size[1], module.stride[1], module.padding[1]) == (1, 1, 0):
                _set_submodule(net, name, _as_width_one_conv(module))


class DenoisingUNet(DiffusionModelUNet):
    """Time- (and optionally class- / cross-attention-) conditioned U-Net for ``spatial_dims`` 1, 2 or 3.

    One constructor and forward contract for ECG ``(B, 12, 576)``, slices ``(B, C, H, W)`` and volumes
    ``(B, C, H, W, D)``. Time ``t`` is continuous in ``[0, 1]`` (0 clean, 1 noisiest); MONAI's sinusoidal embedding
    receives ``time_scale * t`` (default 1000): its frequencies ``10000^(-i / half)`` were designed for integer steps
    in ``[0, 1000]``, so the product spans the same range and every frequency band sees a varying input.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: channels of ``x`` (12 for a 12-lead ECG, latent channels in latent diffusion).
        out_channels: channels of the prediction (usually ``in_channels``).
        channels: feature channels per level (each a multiple of ``norm_num_groups``); the input length / size along
            every spatial axis must be divisible by ``2 ** (len(channels) - 1)``.
        num_res_blocks: residual blocks per level (one int or one per level).
        attention_levels: per level, whether to add (cross-)attention.
        norm_num_groups: GroupNorm groups.
        num_head_channels: channels per attention head (one int or one per level).
        kernel_size: odd convolution size, one for every spatial axis or one per axis (xMADD used 7-17 for ECG
            medians; Medical Diffusion used ``(3, 3, 1)`` for volumes).
        with_conditioning: add cross-attention over a context ``(B, N, cross_attention_dim)``.
        cross_attention_dim: token width of the context.
        num_class_embeds: number of classes of an optional class embedding added to the time embedding.
        context_time_tokens: when set to the number ``N`` of context tokens, the flattened context
            ``(B, N * cross_attention_dim)`` is also projected into the time embedding (a zero-initialised linear
            layer), so the conditions shift every residual block at every resolution, not only the attention
            levels (Imagen, Saharia et al. 2022, adds its pooled text embedding this way). Needs
            ``with_conditioning``; None = cross-attention only.
        transformer_num_layers: transformer layers per attention block.
        resblock_updown: down / upsample with residual blocks instead of strided convolution / interpolation.
        dropout_cattn: dropout inside cross-attention.
        use_flash_attention: use ``torch.nn.functional.scaled_dot_product_attention``.
        use_checkpointing: recompute residual / attention blocks in backward to save activation memory (3D).
        time_scale: factor from ``t`` in ``[0, 1]`` to the embedding input.
        coordinate_channels: append one channel per spatial axis holding the normalised position (-1 to 1) to
            the input (CoordConv, Liu et al. 2018). A convolutional U-Net is otherwise translation-equivariant, so
            starting from pure noise it cannot know *where* a structure belongs (e.g. the R peak of an R-aligned
            ECG beat at sample 200, or anatomy in a registered slice); with this it can.
        padding_mode: how every convolution pads its input, one of ``torch.nn.Conv*d``'s modes: ``"zeros"``
            (MONAI's, the default), ``"reflect"``, ``"replicate"`` or ``"circular"``. With zeros a kernel at the
            border of a window sees a step from the signal to 0 that no interior sample sees, so the border of the
            output depends on the padding even for a constant input; ``"reflect"`` continues the window by its
            mirror image, so border samples get interior-like neighbourhoods. Parameters and state dict do not
            depend on it, but a model behaves as it was trained: weights trained with one mode need fine-tuning
            for another.

    Examples:
        >>> net = DenoisingUNet(1, 12, 12, channels=(16, 32), attention_levels=(False, True), norm_num_groups=8,
        ...                     kernel_size=9, with_conditioning=True, cross_attention_dim=16)
        >>> net(torch.randn(2, 12, 576), torch.rand(2), context=torch.randn(2, 3, 16)).shape
        torch.Size([2, 12, 576])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        channels: Sequence[int] = (32, 64, 64, 64),
        num_res_blocks: Sequence[int] | int = 2,
        attention_levels: Sequence[bool] = (False, False, True, True),
        norm_num_groups: int = 32,
        num_head_channels: int | Sequence[int] = 8,
        kernel_size: int | Sequence[int] = 3,
        with_conditioning: bool = False,
        cross_attention_dim: int | None = None,
        num_class_embeds: int | None = None,
        context_time_tokens: int | None = None,
        transformer_num_layers: int = 1,
        resblock_updown: bool = False,
        dropout_cattn: float = 0.0,
        use_flash_attention: bool = False,
        use_checkpointing: bool = False,
        time_scale: float = 1000.0,
        coordinate_channels: bool = False,
        padding_mode: str = "zeros",
    ) -> None:
        kernel = _check_config(spatial_dims, kernel_size, time_scale, padding_mode)
        super().__init__(
            spatial_dims=2 if spatial_dims == 1 else spatial_dims,
            in_channels=in_channels + (spatial_dims if coordinate_channels else 0),
            out_channels=out_channels,
            num_res_blocks=num_res_blocks,
            channels=channels,
            attention_levels=attention_levels,
            norm_num_groups=norm_num_groups,
            resblock_updown=resblock_updown,
            num_head_channels=num_head_channels,
            with_conditioning=with_conditioning,
            transformer_num_layers=transformer_num_layers,
            cross_attention_dim=cross_attention_dim,
            num_class_embeds=num_class_embeds,
            dropout_cattn=dropout_cattn,
            use_flash_attention=use_flash_attention,
        )
        self.spatial_dims = spatial_dims
        self.kernel_size = kernel
        self.cross_attention_dim = cross_attention_dim
        self.time_scale = float(time_scale)
        self.coordinate_channels = bool(coordinate_channels)
        self.padding_mode = padding_mode
        self.context_time_tokens = context_time_tokens
        self.context_time_embed = _context_time_embedding(
            context_time_tokens, cross_attention_dim, with_conditioning, self.time_embed
        )
        if spatial_dims == 1 or kernel != (3,) * spatial_dims:
            _adapt_layers(self, kernel=kernel, as_1d=spatial_dims == 1)
        _make_scriptable(self)
        if padding_mode != "zeros":
            _set_padding_mode(self, padding_mode)
        if use_checkpointing:
            apply_activation_checkpointing(
                self, check_fn=lambda m: isinstance(m, (DiffusionUNetResnetBlock, SpatialTransformer))
            )

    def _check_input(self, x: torch.Tensor, timesteps: torch.Tensor) -> None:
        if x.ndim != self.spatial_dims + 2:
            raise ValueError(
                f"x must have shape (B, C, *spatial) with {self.spatial_dims} spatial dims, got shape {list(x.shape)}."
            )
        factor = 2 ** (len(self.block_out_channels) - 1)
        for size in x.shape[2:]:
            if size % factor:
                raise ValueError(
                    f"x spatial shape {list(x.shape[2:])} must be divisible by {factor} (2 ** (levels - 1)); "
                    "pad or crop it."
                )
        if timesteps.ndim != 1 or timesteps.shape[0] != x.shape[0]:
            raise ValueError(f"timesteps must have shape (B,) = ({x.shape[0]},), got {list(timesteps.shape)}.")

    def forward(  # type: ignore[override]
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
        class_labels: torch.Tensor | None = None,
        t: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict from a noisy input.

        Args:
            x: noisy input ``(B, C, *spatial)``.
            timesteps: diffusion time ``(B,)`` in ``[0, 1]`` (0 clean, 1 noisiest; MONAI's ``DiffusionModelUNet``
                argument name); a scalar applies to the whole batch; None = 1, the first step of sampling from
                pure noise (so ``python -m monai.bundle verify_net_in_out``, which passes only ``x``, runs).
            context: cross-attention tokens ``(B, N, cross_attention_dim)``.
            class_labels: integer classes ``(B,)`` when ``num_class_embeds`` is set.
            t: the former name of ``timesteps``, still accepted by keyword.

        Returns:
            The raw network prediction ``(B, out_channels, *spatial)``; its meaning (epsilon, x0, v) is set by the
            parameterisation wrapper in :mod:`monai_gen.networks.precond`.

        Raises:
            ValueError: both ``timesteps`` and ``t`` given; ``x`` or ``timesteps`` of the wrong shape.
        """
        time = select_timesteps(timesteps, t)
        time = torch.tensor(1.0) if time is None else torch.as_tensor(time)
        time = time.to(dtype=x.dtype, device=x.device)
        time = time.expand(x.shape[0]) if time.ndim == 0 else time
        self._check_input(x, time)
        if self.coordinate_channels:
            x = torch.cat([x, _coordinates(x)], dim=1)
        h = x.unsqueeze(-1) if self.spatial_dims == 1 else x
        out = self._unet_forward(h, time * self.time_scale, context, class_labels)
        return out.squeeze(-1) if self.spatial_dims == 1 else out

    def _unet_forward(
        self, h: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor | None, class_labels: torch.Tensor | None
    ) -> torch.Tensor:
        """MONAI's ``DiffusionModelUNet.forward`` (without ControlNet residuals), in a form TorchScript compiles.

        TorchScript compiles no ``super().forward`` call, and MONAI's forward annotates its ControlNet residuals as
        a 1-tuple it cannot ``zip`` over; the steps are MONAI's, on MONAI's blocks (a test checks both agree).
        """
        emb = self.time_embed(get_timestep_embedding(timesteps, self.block_out_channels[0]).to(dtype=h.dtype))
        if self.num_class_embeds is not None:
            if class_labels is None:
                raise ValueError("class_labels must be given when num_class_embeds is set.")
            emb = emb + self.class_embedding(class_labels).to(dtype=h.dtype)
        if context is not None and not self.with_conditioning:
            raise ValueError("context was given but the network was built with with_conditioning=False.")
        if self.context_time_embed is not None:
            if context is None or context.shape[1] != self.context_time_tokens:
                raise ValueError(
                    f"this network projects {self.context_time_tokens} context tokens into the time embedding; "
                    f"give a context of shape (B, {self.context_time_tokens}, {self.cross_attention_dim})."
                )
            emb = emb + self.context_time_embed(context.flatten(1)).to(dtype=h.dtype)
        h = self.conv_in(h)
        skips: list[torch.Tensor] = [h]
        for down in self.down_blocks:
            h, residuals = down(hidden_states=h, temb=emb, context=context)
            skips.extend(residuals)
        h = self.middle_block(hidden_states=h, temb=emb, context=context)
        for up in self.up_blocks:
            split = len(skips) - len(up.resnets)
            h = up(hidden_states=h, res_hidden_states_list=skips[split:], temb=emb, context=context)
            skips = skips[:split]
        return self.out(h)
