"""Realism as a distance between real and synthetic sample distributions, in a feature space fitted here.

No downloaded feature extractor is needed: :class:`PCAFeatures` learns a feature space from the real
training samples (standardise, then PCA), and the distances are MONAI's own — Fréchet distance
(:func:`monai.metrics.get_fid_score`) and unbiased linear-kernel MMD (:func:`monai.metrics.mmd.compute_mmd`).
"""

from __future__ import annotations

import numpy as np
import torch
from monai.metrics.fid import get_fid_score
from monai.metrics.mmd import compute_mmd
from sklearn.decomposition import PCA
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

__all__ = ["PCAFeatures", "frechet_distance", "linear_mmd"]


class PCAFeatures:
    """A feature space fitted on real samples: flatten, standardise per feature, project on principal axes.

    Args:
        n_components: principal components kept (capped by the number of samples - 1).
        random_state: seed of the PCA solver.
    """

    def __init__(self, n_components: int = 16, *, random_state: int = 0) -> None:
        self.n_components, self.random_state = int(n_components), random_state
        self._pipeline = None

    def fit(self, samples: np.ndarray | torch.Tensor) -> PCAFeatures:
        """Fit on real samples ``(N, ...)``."""
        flat = _flatten(samples)
        n_components = max(1, min(self.n_components, flat.shape[0] - 1, flat.shape[1]))
        self._pipeline = make_pipeline(StandardScaler(), PCA(n_components, random_state=self.random_state)).fit(flat)
        return self

    def __call__(self, samples: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Features ``(N, n_components)`` float64."""
        if self._pipeline is None:
            raise RuntimeError("PCAFeatures called before fit.")
        return torch.from_numpy(self._pipeline.transform(_flatten(samples)))


def frechet_distance(real_features: torch.Tensor, synthetic_features: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets ``(N, F)`` and ``(M, F)`` (0 = identical).

    Clipped at 0: for identical sets the matrix square root leaves a rounding residue of either sign (-1e-13).
    """
    _check_features(real_features, synthetic_features)
    return max(0.0, float(get_fid_score(synthetic_features, real_features)))


def linear_mmd(
    real_features: torch.Tensor, synthetic_features: torch.Tensor, *, generator: torch.Generator | None = None
) -> float:
    """Unbiased linear-kernel MMD² (MONAI); the larger set is subsampled to the smaller one's size."""
    _check_features(real_features, synthetic_features)
    n = min(real_features.shape[0], synthetic_features.shape[0])
    pick = [f[torch.randperm(f.shape[0], generator=generator)[:n]] for f in (real_features, synthetic_features)]
    return float(compute_mmd(pick[0].double(), pick[1].double(), None))


def _flatten(samples: np.ndarray | torch.Tensor) -> np.ndarray:
    array = samples.detach().cpu().numpy() if isinstance(samples, torch.Tensor) else np.asarray(samples)
    if array.ndim < 2 or array.shape[0] < 2:
        raise ValueError(f"need at least two samples shaped (N, ...), got shape {array.shape}.")
    flat = array.reshape(array.shape[0], -1).astype(np.float64)
    if not np.isfinite(flat).all():
        raise ValueError("samples contain NaN or infinite values.")
    return flat


def _check_features(real: torch.Tensor, synthetic: torch.Tensor) -> None:
    if real.ndim != 2 or synthetic.ndim != 2 or real.shape[1] != synthetic.shape[1]:
        raise ValueError(f"feature sets must be (N, F) with the same F, got {tuple(real.shape)} and {tuple(synthetic.shape)}.")
    if min(real.shape[0], synthetic.shape[0]) < 2:
        raise ValueError("each feature set needs at least two samples.")
