"""Condition encoders (phenotypes, external embeddings) and the model-level conditional denoiser.

Conditions arrive as the project's condition contract (``monai_gen.transforms.conditions``): ``values (B, P)``
float32 (continuous phenotypes as z-scores, periodic ones as the fraction of their period, categorical ones as
category indices stored as floats) and
``mask (B, P)`` (1 = present, 0 = missing). Each encoder emits cross-attention tokens of width ``embed_dim``;
a missing or dropped condition is replaced by its own learned null token, so classifier-free guidance can drop
any one attribute at sampling time by zeroing its mask entry (:mod:`monai_gen.diffusion.guidance`).

See: xMADD §3.1 (cross-attention over phenotype, autoencoder and paired-modality embeddings, Fig. 1C);
Ho & Salimans 2022, "Classifier-Free Diffusion Guidance" (condition dropout in training).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from monai_gen.networks.nets.denoising_unet import select_timesteps

__all__ = ["CONDITION_MASK_KEYS", "PhenotypeEncoder", "EmbeddingEncoder", "ConditionalDenoiser"]

#: mask argument of :meth:`ConditionalDenoiser.forward` -> the value argument it masks (guidance reads this).
CONDITION_MASK_KEYS = {
    "condition_mask": "conditions", "embedding_mask": "embedding", "spatial_condition_mask": "spatial_condition",
}


def _check_probability(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}.")
    return float(value)


def _shape_text(shape: list[int]) -> str:
    """``[2, 3]`` -> ``"(2, 3)"`` (written out, as TorchScript has no ``tuple(list)``)."""
    return "(" + ", ".join([str(size) for size in shape]) + ("," if len(shape) == 1 else "") + ")"


def _check_mask(mask: torch.Tensor | None, shape: list[int], name: str, like: torch.Tensor) -> torch.Tensor:
    """The mask as a bool tensor of ``shape`` (all present when None)."""
    if mask is None:
        return torch.ones(shape, dtype=torch.bool, device=like.device)
    if list(mask.shape) != shape:
        raise ValueError(f"{name} must have shape {_shape_text(shape)}, got {_shape_text(list(mask.shape))}.")
    return mask.to(device=like.device) > 0.5


def _check_given(name: str, given: torch.Tensor | None, has_encoder: bool, x: torch.Tensor) -> None:
    """Raise if a condition is given without an encoder for it, or with another batch size than ``x``."""
    if given is not None and not has_encoder:
        raise ValueError(f"{name} was given but this ConditionalDenoiser has no encoder for it.")
    if given is not None and given.shape[0] != x.shape[0]:
        raise ValueError(f"{name} has batch size {given.shape[0]} but x has {x.shape[0]}.")


def _drop(keep: torch.Tensor, prob: float, training: bool) -> torch.Tensor:
    """Training-time condition dropout: each entry of ``keep`` is cleared with probability ``prob``."""
    if not training or prob == 0.0:
        return keep
    return keep & (torch.rand(keep.shape, device=keep.device) >= prob)


class PhenotypeEncoder(nn.Module):
    """One cross-attention token per phenotype; missing phenotypes get that phenotype's learned null token.

    A continuous phenotype ``p`` becomes ``MLP(v * w_p + b_p)``; a periodic one, given as the fraction ``v`` of its
    period, ``MLP(sin(2 pi v) * w_p + cos(2 pi v) * u_p + b_p)``, so phase 0.99 lies next to phase 0 (a cardiac cycle's
    end meets its start); a categorical one a row of its own embedding table. The per-phenotype weights make tokens
    distinguishable without a separate position embedding.

    Args:
        num_categories: per phenotype, 0 = continuous (or periodic), ``k >= 2`` = categorical with classes
            ``0 .. k-1``.
        embed_dim: token width (the backbone's ``cross_attention_dim``).
        periodic: per phenotype, whether it is periodic (only continuous ones can be); None = none is. Only an
            encoder with a periodic phenotype has the parameter ``u`` (``phase_weight``), so the state dict of one
            without is unchanged.

    Examples:
        >>> enc = PhenotypeEncoder([0, 2], embed_dim=16)  # e.g. QT z-score, sex
        >>> enc(torch.tensor([[0.3, 1.0]]), torch.tensor([[1.0, 0.0]])).shape
        torch.Size([1, 2, 16])

    See: xMADD §3.1 "Phenotype Conditioning".
    """

    def __init__(self, num_categories: Sequence[int], embed_dim: int, periodic: Sequence[bool] | None = None) -> None:
        super().__init__()
        num_categories = [int(k) for k in num_categories]
        if not num_categories or any(k < 0 or k == 1 for k in num_categories):
            raise ValueError(
                f"num_categories must be a non-empty list of 0 (continuous) or k >= 2, got {num_categories}."
            )
        if embed_dim < 1:
            raise ValueError(f"embed_dim must be a positive integer, got {embed_dim!r}.")
        periodic = [False] * len(num_categories) if periodic is None else [bool(p) for p in periodic]
        if len(periodic) != len(num_categories) or any(p and k for p, k in zip(periodic, num_categories, strict=True)):
            raise ValueError(
                f"periodic must give one flag per phenotype, set only for continuous ones (num_categories 0); got "
                f"periodic {periodic} for num_categories {num_categories}."
            )
        self.num_categories = num_categories
        self.periodic = periodic
        self.embed_dim = embed_dim
        num_p = len(num_categories)
        self.register_buffer("is_categorical", torch.tensor([k > 0 for k in num_categories]), persistent=False)
        self.register_buffer("num_classes", torch.tensor(num_categories), persistent=False)
        self.register_buffer("is_periodic", torch.tensor(periodic), persistent=False)
        offsets = torch.tensor([0, *num_categories[:-1]]).cumsum(0)
        self.register_buffer("offsets", offsets, persistent=False)
        self.category_table = nn.Embedding(max(sum(num_categories), 1), embed_dim)
        self.value_weight = nn.Parameter(torch.randn(num_p, embed_dim))
        self.value_bias = nn.Parameter(torch.zeros(num_p, embed_dim))
        if any(periodic):
            self.phase_weight = nn.Parameter(torch.randn(num_p, embed_dim))
        else:
            self.register_parameter("phase_weight", None)
        self.value_mlp = nn.Sequential(nn.SiLU(), nn.Linear(embed_dim, embed_dim))
        self.null_tokens = nn.Parameter(torch.randn(num_p, embed_dim) * 0.02)

    def _check_values(self, values: torch.Tensor, present: torch.Tensor) -> None:
        missing = present & ~values.isfinite()
        if missing.any():
            b, p = int(missing.nonzero()[0, 0]), int(missing.nonzero()[0, 1])
            raise ValueError(f"conditions[{b}, {p}] = {float(values[b, p])} is marked present; set its mask to 0.")
        cat = present & self.is_categorical
        bad = cat & ((values != values.round()) | (values < 0) | (values >= self.num_classes))
        if bad.any():
            b, p = int(bad.nonzero()[0, 0]), int(bad.nonzero()[0, 1])
            raise ValueError(
                f"conditions[{b}, {p}] = {float(values[b, p])} is not a category index in "
                f"0..{self.num_categories[p] - 1} (phenotype {p} is categorical with {self.num_categories[p]} classes)."
            )

    def forward(self, values: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Encode phenotypes.

        Args:
            values: ``(B, P)`` z-scores / category indices (anything where ``mask`` is 0, NaN included).
            mask: ``(B, P)``, 1 = present, 0 = missing or dropped; None = all present.

        Returns:
            Tokens ``(B, P, embed_dim)`` in the dtype of the encoder parameters.
        """
        if values.ndim != 2 or values.shape[1] != len(self.num_categories):
            raise ValueError(
                f"conditions must have shape (B, {len(self.num_categories)}), got {_shape_text(list(values.shape))}."
            )
        present = _check_mask(mask, list(values.shape), "condition_mask", values)
        self._check_values(values, present)
        values = torch.where(present, values, torch.zeros_like(values)).to(self.value_weight.dtype)
        scaled = values.unsqueeze(-1) * self.value_weight
        phase_weight = self.phase_weight
        if phase_weight is not None:
            angle = values.unsqueeze(-1) * (2.0 * math.pi)
            on_circle = torch.sin(angle) * self.value_weight + torch.cos(angle) * phase_weight
            scaled = torch.where(self.is_periodic.unsqueeze(-1), on_circle, scaled)
        continuous = self.value_mlp(scaled + self.value_bias)
        index = torch.where(self.is_categorical, values.long() + self.offsets, torch.zeros_like(self.offsets))
        categorical = self.category_table(index)
        tokens = torch.where(self.is_categorical.unsqueeze(-1), categorical, continuous)
        return torch.where(present.unsqueeze(-1), tokens, self.null_tokens.expand_as(tokens))


class EmbeddingEncoder(nn.Module):
    """Tokens from an external embedding (autoencoder latent or paired-modality encoder output).

    ``(B, D)`` is projected to ``num_tokens`` tokens; ``(B, N, D)`` token-wise to ``N`` tokens. A sample whose
    embedding is missing / dropped gets learned null tokens instead.

    Args:
        in_dim: width ``D`` of the incoming embedding.
        embed_dim: token width (the backbone's ``cross_attention_dim``).
        num_tokens: tokens made from a ``(B, D)`` vector.

    Examples:
        >>> enc = EmbeddingEncoder(256, embed_dim=16, num_tokens=4)  # e.g. an ECG encoder conditioning cardiac MRI
        >>> enc(torch.randn(2, 256)).shape
        torch.Size([2, 4, 16])

    See: xMADD §3.1 "Autoencoder Conditioning" and "Cross-Modal Conditioning".
    """

    def __init__(self, in_dim: int, embed_dim: int, *, num_tokens: int = 1) -> None:
        super().__init__()
        for name, value in (("in_dim", in_dim), ("embed_dim", embed_dim), ("num_tokens", num_tokens)):
            if value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        self.in_dim, self.embed_dim, self.num_tokens = in_dim, embed_dim, num_tokens
        self.vector_proj = nn.Linear(in_dim, num_tokens * embed_dim)
        self.token_proj = nn.Linear(in_dim, embed_dim)
        self.null_token = nn.Parameter(torch.randn(embed_dim) * 0.02)

    def forward(self, embedding: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Encode an embedding.

        Args:
            embedding: ``(B, D)`` or ``(B, N, D)``.
            mask: ``(B,)``, 1 = present, 0 = missing or dropped; None = all present.

        Returns:
            Tokens ``(B, num_tokens, embed_dim)`` or ``(B, N, embed_dim)``.
        """
        if embedding.ndim not in (2, 3) or embedding.shape[-1] != self.in_dim:
            raise ValueError(
                f"embedding must have shape (B, {self.in_dim}) or (B, N, {self.in_dim}), got {_shape_text(list(embedding.shape))}."
            )
        present = _check_mask(mask, [embedding.shape[0]], "embedding_mask", embedding)
        embedding = torch.nan_to_num(embedding.to(self.token_proj.weight.dtype))
        if embedding.ndim == 2:
            tokens = self.vector_proj(embedding).unflatten(-1, (self.num_tokens, self.embed_dim))
        else:
            tokens = self.token_proj(embedding)
        return torch.where(present[:, None, None], tokens, self.null_token.expand_as(tokens))


class ConditionalDenoiser(nn.Module):
    """A denoiser backbone plus condition encoders: the whole conditional model a bundle config builds.

    The encoders' tokens are concatenated (phenotypes first, then embedding tokens) into the backbone's
    cross-attention context. In training mode each phenotype, and each sample's embedding, is dropped
    independently with probability ``condition_dropout``, and all conditions of a sample together with
    probability ``drop_all_prob``; in eval mode nothing is dropped (guidance decides what to drop). With
    ``condition_noise``, training also adds Gaussian noise of that standard deviation to every present
    continuous value (z-score units; periodic and categorical values stay exact): labels measured with an error of about that
    size then cannot serve as an exact identifier of the few subjects they came from, and the model learns how
    the signal changes *with* a value instead of which subject a value names.

    With ``spatial_channels = K > 0`` a spatial condition ``(B, K, *spatial)`` on the grid of ``x`` (e.g. organ label
    fractions at the latent grid, :class:`~monai_gen.transforms.ct.OrganLabelMaps`) is concatenated to ``x`` as the
    backbone's input, followed by one indicator channel that is 1 where the sample's spatial condition is present: a
    missing or dropped one enters as zeros with indicator 0 (dropped with ``condition_dropout`` and ``drop_all_prob``
    like the others, so guidance can drop it). The backbone then takes ``C + K + 1`` input channels.

    Args:
        backbone: a network with ``forward(x, t, *, context=None, class_labels=None)``, e.g.
            :class:`monai_gen.networks.nets.DenoisingUNet` with ``with_conditioning=True``.
        phenotype_encoder: encodes ``conditions`` / ``condition_mask``.
        embedding_encoder: encodes ``embedding`` / ``embedding_mask``.
        condition_dropout: per-condition dropout probability in training.
        drop_all_prob: probability of dropping every condition of a sample in training (unconditional pass).
        condition_noise: standard deviation (z-score units) of the training-time noise on continuous values; about
            the labels' measurement error (0 = none).
        spatial_channels: channels ``K`` of the spatial condition concatenated to the input (0 = none).

    Examples:
        >>> from monai_gen.networks.nets import DenoisingUNet
        >>> net = ConditionalDenoiser(
        ...     DenoisingUNet(1, 12, 12, channels=(16, 32), attention_levels=(False, True), norm_num_groups=8,
        ...                   with_conditioning=True, cross_attention_dim=16),
        ...     phenotype_encoder=PhenotypeEncoder([0, 2], embed_dim=16))
        >>> net(torch.randn(2, 12, 64), torch.rand(2), conditions=torch.tensor([[0.1, 1.0], [-1.2, 0.0]])).shape
        torch.Size([2, 12, 64])

    See: xMADD §3.1, Fig. 1C.
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        phenotype_encoder: PhenotypeEncoder | None = None,
        embedding_encoder: EmbeddingEncoder | None = None,
        condition_dropout: float = 0.1,
        drop_all_prob: float = 0.1,
        condition_noise: float = 0.0,
        spatial_channels: int = 0,
    ) -> None:
        super().__init__()
        if not (isinstance(spatial_channels, int) and spatial_channels >= 0):
            raise ValueError(f"spatial_channels must be a non-negative integer, got {spatial_channels!r}.")
        encoders = [e for e in (phenotype_encoder, embedding_encoder) if e is not None]
        context_dim = getattr(backbone, "cross_attention_dim", None)
        for enc in encoders:
            if enc.embed_dim != context_dim:
                raise ValueError(
                    f"{type(enc).__name__}.embed_dim = {enc.embed_dim} must equal the backbone's cross_attention_dim "
                    f"({context_dim}); build the backbone with with_conditioning=True and that cross_attention_dim."
                )
        self.backbone = backbone
        self.phenotype_encoder = phenotype_encoder
        self.embedding_encoder = embedding_encoder
        self.condition_dropout = _check_probability("condition_dropout", condition_dropout)
        self.drop_all_prob = _check_probability("drop_all_prob", drop_all_prob)
        if not condition_noise >= 0.0:
            raise ValueError(f"condition_noise must be >= 0, got {condition_noise!r}.")
        self.condition_noise = float(condition_noise)
        self.spatial_channels = int(spatial_channels)

    def _context(
        self, batch: int, like: torch.Tensor, cond: dict[str, torch.Tensor | None], keep_all: torch.Tensor
    ) -> torch.Tensor | None:
        tokens = []
        if self.phenotype_encoder is not None:
            values = cond["conditions"]
            if values is None:  # unconditional: every phenotype missing
                values = like.new_zeros(batch, len(self.phenotype_encoder.num_categories))
                cond["condition_mask"] = torch.zeros_like(values)
            keep = _check_mask(cond["condition_mask"], list(values.shape), "condition_mask", like)
            keep = _drop(keep, self.condition_dropout, self.training) & keep_all.unsqueeze(1)
            if self.training and self.condition_noise > 0.0:
                encoder = self.phenotype_encoder
                noisy = keep & ~encoder.is_categorical & ~encoder.is_periodic  # z-scores only
                values = torch.where(noisy, values + self.condition_noise * torch.randn_like(values), values)
            tokens.append(self.phenotype_encoder(values, keep))
        if self.embedding_encoder is not None:
            embedding = cond["embedding"]
            if embedding is None:
                embedding = like.new_zeros(batch, self.embedding_encoder.in_dim)
                cond["embedding_mask"] = torch.zeros(batch, device=like.device)
            keep = _check_mask(cond["embedding_mask"], [batch], "embedding_mask", like)
            tokens.append(
                self.embedding_encoder(embedding, _drop(keep, self.condition_dropout, self.training) & keep_all)
            )
        return torch.cat(tokens, dim=1).to(like.dtype) if tokens else None

    def _with_spatial(
        self, x: torch.Tensor, spatial: torch.Tensor | None, mask: torch.Tensor | None, keep_all: torch.Tensor
    ) -> torch.Tensor:
        """``x`` with the (kept) spatial condition and its presence indicator concatenated as channels."""
        batch = x.shape[0]
        expected = [batch, self.spatial_channels] + list(x.shape[2:])
        if spatial is None:  # unconditional: the condition is missing for every sample
            spatial = torch.zeros(expected, dtype=x.dtype, device=x.device)
            keep = torch.zeros([batch], dtype=torch.bool, device=x.device)
        else:
            if list(spatial.shape) != expected:
                raise ValueError(
                    f"spatial_condition must have shape {_shape_text(expected)} (the grid of x), got "
                    f"{_shape_text(list(spatial.shape))}."
                )
            keep = _check_mask(mask, [batch], "spatial_condition_mask", x)
        keep = _drop(keep, self.condition_dropout, self.training) & keep_all
        weight = keep.to(x.dtype).reshape([batch] + [1] * (x.dim() - 1))
        indicator = weight.expand([batch, 1] + list(x.shape[2:]))
        return torch.cat([x, spatial.to(x.dtype) * weight, indicator], dim=1)

    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor | None = None,
        conditions: torch.Tensor | None = None,
        condition_mask: torch.Tensor | None = None,
        embedding: torch.Tensor | None = None,
        embedding_mask: torch.Tensor | None = None,
        class_labels: torch.Tensor | None = None,
        t: torch.Tensor | None = None,
        spatial_condition: torch.Tensor | None = None,
        spatial_condition_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run the backbone with the encoded conditions as cross-attention context.

        The arguments after ``x`` may be given by position (TorchScript compiles no keyword-only arguments), but
        read better by name.

        Args:
            x: noisy input ``(B, C, *spatial)``.
            timesteps: diffusion time ``(B,)`` in ``[0, 1]``; None = the backbone's default
                (:class:`~monai_gen.networks.nets.DenoisingUNet`: 1, pure noise).
            conditions: phenotype values ``(B, P)``; None = all missing (unconditional).
            condition_mask: ``(B, P)``, 1 = present; None = all present.
            embedding: external embedding ``(B, D)`` or ``(B, N, D)``; None = missing.
            embedding_mask: ``(B,)``, 1 = present; None = all present.
            class_labels: integer classes ``(B,)`` for a backbone with a class embedding.
            t: the former name of ``timesteps``, still accepted by keyword.
            spatial_condition: ``(B, K, *spatial)`` on the grid of ``x``, for ``spatial_channels = K``; None = missing.
            spatial_condition_mask: ``(B,)``, 1 = present; None = all present.

        Returns:
            The backbone's raw prediction ``(B, C_out, *spatial)``.
        """
        _check_given("conditions", conditions, self.phenotype_encoder is not None, x)
        _check_given("embedding", embedding, self.embedding_encoder is not None, x)
        _check_given("spatial_condition", spatial_condition, self.spatial_channels > 0, x)
        cond: dict[str, torch.Tensor | None] = {
            "conditions": conditions,
            "condition_mask": condition_mask,
            "embedding": embedding,
            "embedding_mask": embedding_mask,
        }
        keep_all = _drop(torch.ones(x.shape[0], dtype=torch.bool, device=x.device), self.drop_all_prob, self.training)
        context = self._context(x.shape[0], x, cond, keep_all)
        if self.spatial_channels > 0:
            x = self._with_spatial(x, spatial_condition, spatial_condition_mask, keep_all)
        return self.backbone(x, select_timesteps(timesteps, t), context=context, class_labels=class_labels)
