"""Classifier-free guidance, per attribute, as a wrapper around ``denoise(x, t, **cond) -> x0_hat``.

A condition is dropped by zeroing its mask entry (:class:`monai_gen.networks.ConditionalDenoiser` then uses the
learned null token, exactly as condition dropout did in training). With ``x_hat(all)`` the fully conditional
estimate and ``x_hat(all \\ a)`` the estimate without attribute ``a``:

    ``x_hat = x_hat(all) + sum_a (s_a - 1) (x_hat(all) - x_hat(all \\ a))``.

For a single attribute group this is the usual ``x_hat(u) + s (x_hat(c) - x_hat(u))``; all scales 1 give exactly the
conditional estimate. Guiding ``x0_hat`` equals guiding ``eps_hat`` or ``v_hat``: at fixed ``x_t`` they are affine in
each other and the weights sum to one. All passes run as one batched forward.

See: Ho & Salimans 2022, "Classifier-Free Diffusion Guidance", Eq. 6; Liu et al. 2022, "Compositional Visual
Generation with Composable Diffusion Models", Eq. 10 (sum of per-condition guidance terms).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from monai_gen.networks.conditioning import CONDITION_MASK_KEYS

__all__ = ["ALL_CONDITIONS", "ConditionGuidance"]

#: scale key that drops every condition at once (global classifier-free guidance)
ALL_CONDITIONS = "all"


def _full_masks(cond: Mapping[str, object]) -> dict[str, torch.Tensor]:
    """Every present condition's mask, ones where the caller gave none: ``condition_mask (B, P)``, ``embedding_mask (B,)``."""
    masks = {}
    for mask_key, value_key in CONDITION_MASK_KEYS.items():
        value = cond.get(value_key)
        if value is None:
            continue
        mask = cond.get(mask_key)
        shape = tuple(value.shape[:2]) if mask_key == "condition_mask" else (value.shape[0],)
        masks[mask_key] = torch.ones(shape, device=value.device) if mask is None else mask.float()
    return masks


class ConditionGuidance(nn.Module):
    """Per-attribute classifier-free guidance around a denoiser.

    Args:
        denoise: ``denoise(x, t, **cond) -> x0_hat``, e.g. ``make_denoiser(ConditionalDenoiser(...), schedule)``.
        scales: guidance scale per attribute. Keys: ``"condition_mask"`` with one scale per phenotype (a sequence of
            ``P``) or one scale for all phenotypes together (a float); ``"embedding_mask"`` with a float for the
            external embedding; ``"all"`` with a float to drop every condition together. Scale 1 = no guidance.

    Examples:
        >>> guided = ConditionGuidance(denoise, scales={"condition_mask": [3.0, 1.0]})  # guide QT only, not sex
        >>> x = sample_dpmpp_2m(guided, x_T, schedule, ts, conditions=values, condition_mask=mask)

    See: Ho & Salimans 2022, Eq. 6; Liu et al. 2022, Eq. 10.
    """

    def __init__(self, denoise: Callable[..., torch.Tensor], scales: Mapping[str, float | Sequence[float]]) -> None:
        super().__init__()
        allowed = (*CONDITION_MASK_KEYS, ALL_CONDITIONS)
        unknown = [k for k in scales if k not in allowed]
        if unknown:
            raise ValueError(f"scales keys must be among {allowed}, got {unknown}.")
        for key, value in scales.items():
            if key != "condition_mask" and not isinstance(value, (int, float)):
                raise TypeError(f"scales[{key!r}] must be a number, got {value!r}.")
        self.denoise = denoise
        self.scales = dict(scales)

    def for_batch(self, cond: Mapping[str, object]) -> ConditionGuidance:
        """This guidance without the passes that cannot change the estimate of this batch ``cond``.

        An attribute absent from every sample (mask 0 in every row, a phenotype the requests leave unset) has a
        dropped estimate equal to the full one, so its pass costs a forward for nothing: its scale becomes 1, and
        ``"all"`` is dropped when nothing is present. Mathematically the same output (to the float order of a smaller
        batched forward); the masks are read on the host once per batch here, never per solver step.
        """
        present = {key: mask.reshape(mask.shape[0], -1).any(0).tolist() for key, mask in _full_masks(cond).items()}
        scales: dict[str, float | list[float]] = {}
        for key, scale in self.scales.items():
            if key == ALL_CONDITIONS:
                if any(any(columns) for columns in present.values()):
                    scales[key] = scale
            elif key not in present:
                scales[key] = scale  # not in this batch at all: _dropped ignores it
            elif isinstance(scale, (int, float)):
                if any(present[key]):
                    scales[key] = scale
            else:
                columns = present[key]
                if len(scale) != len(columns):
                    raise ValueError(
                        f"scales[{key!r}] has {len(scale)} entries but there are {len(columns)} phenotypes."
                    )
                scales[key] = [float(s) if p else 1.0 for s, p in zip(scale, columns, strict=True)]
        return ConditionGuidance(self.denoise, scales)

    def passes(self, cond: Mapping[str, object]) -> int:
        """Network passes per evaluation for the batch ``cond`` (the full estimate plus one per guided attribute),
        all run as one forward of ``passes x B`` samples."""
        return 1 + len(self._dropped(_full_masks(cond)))

    def _dropped(self, masks: dict[str, torch.Tensor]) -> list[tuple[float, dict[str, torch.Tensor]]]:
        """(weight ``s - 1``, masks with the attribute removed) for every attribute whose scale is not 1."""
        passes = []
        for key, scale in self.scales.items():
            if key == ALL_CONDITIONS:
                if scale != 1 and masks:
                    passes.append((float(scale) - 1, {k: torch.zeros_like(m) for k, m in masks.items()}))
            elif key in masks and isinstance(scale, (int, float)):
                if scale != 1:
                    passes.append((float(scale) - 1, {**masks, key: torch.zeros_like(masks[key])}))
            elif key in masks:
                passes.extend(self._per_column(masks, key, scale))
        return passes

    @staticmethod
    def _per_column(masks, key: str, scales: Sequence[float]) -> list[tuple[float, dict[str, torch.Tensor]]]:
        mask = masks[key]
        if len(scales) != mask.shape[1]:
            raise ValueError(f"scales[{key!r}] has {len(scales)} entries but there are {mask.shape[1]} phenotypes.")
        passes = []
        for column, scale in enumerate(scales):
            if scale != 1:
                dropped = mask.clone()
                dropped[:, column] = 0
                passes.append((float(scale) - 1, {**masks, key: dropped}))
        return passes

    def forward(self, x: torch.Tensor, t: torch.Tensor, **cond) -> torch.Tensor:
        """Guided ``x0_hat`` for ``x`` ``(B, C, *spatial)`` at ``t`` ``(B,)``."""
        masks = _full_masks(cond)
        passes = self._dropped(masks)
        if not passes:
            return self.denoise(x, t, **cond)
        variants = [{**cond, **masks}] + [{**cond, **dropped} for _, dropped in passes]
        k = len(variants)
        batched = {
            key: torch.cat([v[key] for v in variants]) if isinstance(value, torch.Tensor) else value
            for key, value in variants[0].items()
        }
        out = self.denoise(torch.cat([x] * k), torch.cat([t] * k), **batched).unflatten(0, (k, x.shape[0]))
        full = out[0]
        return full + sum(weight * (full - out[i + 1]) for i, (weight, _) in enumerate(passes))
