"""Realism statistics on feature sets that MONAI lacks: KID and k-NN precision / recall / density / coverage.

MONAI has the Fréchet distance (:func:`monai.metrics.fid.get_fid_score`, wrapped by
:func:`monai_gen.metrics.distribution.frechet_distance`) and a linear-kernel MMD; these add the kernel inception
distance (an unbiased, cubic-kernel MMD², usable on small sets where the Fréchet distance is biased) and the
manifold estimates that split realism into fidelity (precision, density: do synthetic features fall where real ones
are?) and diversity (recall, coverage: is every region of the real features reached?). Every function takes two
feature sets ``(N, F)`` and ``(M, F)`` (any features: an extractor's, PCA components) and is modality-agnostic.
"""

from __future__ import annotations

import torch

__all__ = ["kernel_distance", "manifold_precision_recall"]


def _checked(real: torch.Tensor, synthetic: torch.Tensor, least: int) -> tuple[torch.Tensor, torch.Tensor]:
    real, synthetic = torch.as_tensor(real).double(), torch.as_tensor(synthetic).double()
    if real.ndim != 2 or synthetic.ndim != 2 or real.shape[1] != synthetic.shape[1]:
        raise ValueError(f"feature sets must be (N, F) with the same F, got {tuple(real.shape)} and "
                         f"{tuple(synthetic.shape)}.")
    if min(real.shape[0], synthetic.shape[0]) < least:
        raise ValueError(f"each feature set needs at least {least} items here, got {real.shape[0]} and "
                         f"{synthetic.shape[0]}.")
    if not (torch.isfinite(real).all() and torch.isfinite(synthetic).all()):
        raise ValueError("feature sets contain NaN or infinite values.")
    return real, synthetic


def _unbiased_mmd2(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased MMD² with the polynomial kernel ``k(a, b) = (a.b / F + 1) ** 3`` (Bińkowski et al. 2018, Eq. 4)."""
    d = x.shape[1]
    k_xx, k_yy, k_xy = ((a @ b.T / d + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
    m, n = x.shape[0], y.shape[0]
    within_x = (k_xx.sum() - k_xx.diagonal().sum()) / (m * (m - 1))
    within_y = (k_yy.sum() - k_yy.diagonal().sum()) / (n * (n - 1))
    return float(within_x + within_y - 2 * k_xy.mean())


def kernel_distance(
    real: torch.Tensor,
    synthetic: torch.Tensor,
    *,
    subsets: int = 20,
    subset_size: int = 100,
    generator: torch.Generator | None = None,
) -> dict[str, float | int]:
    """Kernel inception distance: the mean and spread of unbiased cubic-kernel MMD² over random subsets.

    Each of ``subsets`` draws takes ``min(subset_size, N, M)`` items of each set without replacement. KID is 0 in
    expectation for one distribution (so small negative values occur); lower = closer. Unlike the Fréchet
    distance its estimate is unbiased at any set size, so sets of different sizes compare fairly.

    Args:
        real, synthetic: feature sets ``(N, F)`` and ``(M, F)``.
        subsets: number of random subsets.
        subset_size: items per subset and set (capped by the smaller set).
        generator: the subsets' random source (seed it for a reproducible report).

    Returns:
        ``{"mean", "std", "subsets", "subset_size"}``.

    Raises:
        ValueError: sets that are not ``(N, F)`` with one ``F``, hold fewer than two items, or non-finite values.

    See:
        Bińkowski M, et al. Demystifying MMD GANs. ICLR 2018, §4 (KID) and Eq. 4 (unbiased MMD²).
    """
    real, synthetic = _checked(real, synthetic, least=2)
    size = min(int(subset_size), real.shape[0], synthetic.shape[0])
    values = torch.tensor([
        _unbiased_mmd2(real[torch.randperm(real.shape[0], generator=generator)[:size]],
                       synthetic[torch.randperm(synthetic.shape[0], generator=generator)[:size]])
        for _ in range(int(subsets))
    ], dtype=torch.float64)
    return {"mean": float(values.mean()), "std": float(values.std()) if len(values) > 1 else 0.0,
            "subsets": int(subsets), "subset_size": size}


def _ball_radii(features: torch.Tensor, k: int) -> torch.Tensor:
    """Distance of every item to its k-th nearest neighbour within its own set (itself excluded)."""
    return torch.cdist(features, features).kthvalue(k + 1, dim=1).values


def manifold_precision_recall(real: torch.Tensor, synthetic: torch.Tensor, *, k: int = 3) -> dict[str, float | int]:
    """Precision / recall (Kynkäänniemi et al.) and density / coverage (Naeem et al.) of k-NN feature manifolds.

    A set's manifold is the union of balls around its items, each of radius the distance to the item's k-th
    nearest neighbour in its own set. Precision is the fraction of synthetic items inside the real manifold,
    recall the fraction of real items inside the synthetic manifold; density counts, per synthetic item, the real
    balls holding it (divided by k, mean over items; about 1 for one distribution, not capped), and coverage is the
    fraction of real balls holding at least one synthetic item. All but density lie in [0, 1]; higher = better.
    The estimates depend on the set sizes and ``k``: compare sets of equal sizes.

    Args:
        real, synthetic: feature sets ``(N, F)`` and ``(M, F)``.
        k: the neighbour defining each ball (Kynkäänniemi et al. use 3; Naeem et al. 5).

    Returns:
        ``{"precision", "recall", "density", "coverage", "k"}``.

    Raises:
        ValueError: sets that are not ``(N, F)`` with one ``F``, with ``k`` or fewer items, or non-finite values.

    See:
        Kynkäänniemi T, et al. Improved precision and recall metric for assessing generative models. NeurIPS 2019,
        §2, Eq. 1-2. Naeem MF, et al. Reliable fidelity and diversity metrics for generative models. ICML 2020, §3.
    """
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k!r}.")
    real, synthetic = _checked(real, synthetic, least=int(k) + 1)
    real_radii, synthetic_radii = _ball_radii(real, k), _ball_radii(synthetic, k)
    inside_real = torch.cdist(synthetic, real) <= real_radii[None, :]  # (M, N): synthetic j in real ball i
    inside_synthetic = torch.cdist(real, synthetic) <= synthetic_radii[None, :]
    return {
        "precision": float(inside_real.any(dim=1).double().mean()),
        "recall": float(inside_synthetic.any(dim=1).double().mean()),
        "density": float(inside_real.double().sum(dim=1).mean() / k),
        "coverage": float(inside_real.any(dim=0).double().mean()),
        "k": int(k),
    }
