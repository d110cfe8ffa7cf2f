"""Image measures of a generator: diversity as MS-SSIM between pairs of synthetic vs pairs of real images.

Mode collapse shows as synthetic images more alike than real ones: the mean multi-scale SSIM (MONAI's
``MultiScaleSSIMMetric``) over random pairs of synthetic images is compared with the same mean over random pairs
of real test images (the conditional brain-MRI LDM paper reports it this way; lower = more diverse). Small images
(a 64 x 64 slice) cannot take MS-SSIM's five scales at an 11-pixel kernel, so :func:`ms_ssim_weights` keeps the
first scales of MONAI's weights that the image size allows, renormalised to sum to 1.

:class:`MSSSIMDiversity` is a measure of :func:`monai_gen.metrics.evaluation.evaluate_generator`: called with the
evaluation data (``synthetic`` ``(N, C, *spatial)`` and the real ``test`` cohort, both in physical units) it returns
its JSON section, and :meth:`MSSSIMDiversity.markdown` the report lines of that section.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.metrics import MultiScaleSSIMMetric

__all__ = ["MS_SSIM_WEIGHTS", "ms_ssim_weights", "pairwise_ms_ssim", "MSSSIMDiversity"]

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
"""MONAI's (and Wang et al. 2003's) five-scale MS-SSIM weights, finest scale first."""


def ms_ssim_weights(spatial_shape: Sequence[int], kernel_size: int) -> tuple[float, ...]:
    """The first scales of :data:`MS_SSIM_WEIGHTS` that MONAI's size check allows for ``spatial_shape``, summing to 1.

    MONAI needs ``size // max(1, scales - 1) ** 2 > kernel_size - 1`` along every axis.

    Raises:
        ValueError: the image is too small even for one scale at this kernel size.
    """
    fitting = [n for n in range(1, len(MS_SSIM_WEIGHTS) + 1)
               if all(int(s) // max(1, n - 1) ** 2 > kernel_size - 1 for s in spatial_shape)]
    if not fitting:
        raise ValueError(f"images of size {tuple(spatial_shape)} are too small for SSIM with kernel_size {kernel_size}.")
    weights = MS_SSIM_WEIGHTS[: max(fitting)]
    return tuple(w / sum(weights) for w in weights)


def pairwise_ms_ssim(
    images: torch.Tensor, *, max_pairs: int = 64, seed: int = 0, kernel_size: int = 7, data_range: float = 1.0
) -> dict[str, Any]:
    """Mean MS-SSIM over up to ``max_pairs`` random pairs of distinct images ``(N, C, *spatial)`` (2D or 3D).

    Returns:
        ``{"mean": float, "std": float, "pairs": int, "scales": int}``.

    Raises:
        ValueError: fewer than two images, or images that are not ``(N, C, *spatial)`` with 2 or 3 spatial axes.
    """
    images = torch.as_tensor(images, dtype=torch.float32)
    if images.ndim not in (4, 5) or images.shape[0] < 2:
        raise ValueError(f"pairwise MS-SSIM needs at least two images (N, C, *spatial), got shape {tuple(images.shape)}.")
    rng = np.random.default_rng(seed)
    n = images.shape[0]
    first = rng.integers(0, n, size=int(max_pairs))
    second = (first + rng.integers(1, n, size=int(max_pairs))) % n  # never the same image
    pairs = sorted({(int(a), int(b)) for a, b in zip(first, second, strict=True)})
    weights = ms_ssim_weights(images.shape[2:], kernel_size)
    metric = MultiScaleSSIMMetric(spatial_dims=images.ndim - 2, data_range=data_range, kernel_size=kernel_size,
                                  weights=weights, reduction="none")
    index_a, index_b = (torch.as_tensor(list(side)) for side in zip(*pairs, strict=True))
    scores = metric(images[index_a], images[index_b]).reshape(-1).double()
    return {"mean": float(scores.mean()), "std": float(scores.std()) if len(scores) > 1 else 0.0,
            "pairs": len(pairs), "scales": len(weights)}


class MSSSIMDiversity:
    """Diversity measure: mean MS-SSIM of synthetic pairs beside that of real test pairs (lower = more diverse).

    Args:
        max_pairs: random pairs drawn from each set (seeded by the evaluation's ``seed``).
        kernel_size: SSIM Gaussian window (pixels); smaller windows allow more scales on small images.
        data_range: intensity range of the images in physical units (1.0 for images scaled to [0, 1]).
        name: the measure's section name in the report.
    """

    def __init__(self, max_pairs: int = 64, kernel_size: int = 7, data_range: float = 1.0, name: str = "diversity") -> None:
        if int(max_pairs) < 1:
            raise ValueError(f"max_pairs must be >= 1, got {max_pairs!r}.")
        self.max_pairs, self.kernel_size, self.data_range, self.name = int(max_pairs), int(kernel_size), float(data_range), name

    def __call__(self, data: Any) -> dict[str, Any]:
        """``{"method", "synthetic_pairs", "real_test_pairs", "difference"}`` for the evaluation data."""
        options = {"max_pairs": self.max_pairs, "seed": int(data.seed), "kernel_size": self.kernel_size,
                   "data_range": self.data_range}
        synthetic = pairwise_ms_ssim(data.synthetic, **options)
        real = pairwise_ms_ssim(data.test.items, **options)
        return {
            "method": f"MS-SSIM (MONAI, {synthetic['scales']} scales, kernel {self.kernel_size}) over random pairs",
            "synthetic_pairs": synthetic,
            "real_test_pairs": real,
            "difference": synthetic["mean"] - real["mean"],
        }

    def markdown(self, section: Mapping[str, Any]) -> list[str]:
        """Report lines of a section returned by :meth:`__call__`."""
        synthetic, real = section["synthetic_pairs"], section["real_test_pairs"]
        return [
            f"## Diversity ({section['method']}; lower = more diverse)",
            "",
            "| pairs | mean MS-SSIM | std | n |",
            "| --- | --- | --- | --- |",
            f"| synthetic | {synthetic['mean']:.3f} | {synthetic['std']:.3f} | {synthetic['pairs']} |",
            f"| real test | {real['mean']:.3f} | {real['std']:.3f} | {real['pairs']} |",
            "",
            f"Synthetic minus real: {section['difference']:+.3f}.",
        ]
