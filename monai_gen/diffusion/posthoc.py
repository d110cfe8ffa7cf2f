"""Post-hoc (autoencoder) conditioning: a linear probe on embeddings, and steering along its direction.

A diffusion model conditioned on autoencoder embeddings ``e(x)`` is trained without labels. Afterwards a linear
probe ``f(e) = w . e + b`` is fitted from embeddings to a phenotype defined later; moving an embedding along ``w``
changes what the probe reads, and the moved embedding is fed back as the model's ``embedding`` condition
(:class:`monai_gen.networks.conditioning.ConditionalDenoiser`), so the generated sample follows the phenotype.

See:
    xMADD §3.1 "Autoencoder Conditioning": "a linear probe is derived from the latent space and synthesis is
    performed by interpolating along probe weights".
"""

from __future__ import annotations

import numpy as np
import torch
from monai.utils import look_up_option
from sklearn.linear_model import LogisticRegression, Ridge
from torch import nn

__all__ = ["PROBE_KINDS", "LinearProbe"]

PROBE_KINDS = ("regression", "logistic")


def _as_matrix(embeddings: torch.Tensor | np.ndarray, name: str = "embeddings") -> torch.Tensor:
    """``(N, *feature)`` -> float64 ``(N, D)``."""
    values = torch.as_tensor(embeddings)
    if values.ndim < 2 or values.shape[0] == 0:
        raise ValueError(f"{name} must have shape (N, D) or (N, *feature) with N >= 1, got {tuple(values.shape)}.")
    if not torch.isfinite(values).all():
        raise ValueError(f"{name} must be finite, got NaN or inf in a tensor of shape {tuple(values.shape)}.")
    return values.detach().to(torch.float64).flatten(1)


class LinearProbe(nn.Module):
    """A linear read-out ``score(e) = w . e + b`` of a phenotype from embeddings, with exact steering.

    ``kind="regression"`` fits ridge regression (sklearn ``Ridge``) and the score is the predicted value;
    ``kind="logistic"`` fits L2 logistic regression (sklearn ``LogisticRegression``, ``C = 1 / alpha``) to binary
    targets and the score is the logit, :meth:`predict` the probability. Embeddings may carry any trailing shape
    ``(N, *feature)``; they are flattened to ``D`` features. ``w`` and ``b`` are buffers, saved in ``state_dict``.

    Args:
        kind: ``"regression"`` or ``"logistic"``.
        alpha: L2 penalty (ridge ``alpha``; inverse of the logistic ``C``).

    Examples:
        >>> probe = LinearProbe("regression").fit(embeddings, heart_rate_bpm)     # (N, D), (N,)
        >>> steered = probe.steer(embeddings[:1], 90.0)                            # probe now reads 90 bpm
        >>> path = probe.sweep(embeddings[:1], 50.0, 110.0, steps=7)               # (7, D), 50 -> 110 bpm
    """

    def __init__(self, kind: str = "regression", *, alpha: float = 1.0) -> None:
        super().__init__()
        self.kind = look_up_option(kind, PROBE_KINDS)
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0, got {alpha!r}.")
        self.alpha = float(alpha)
        self.register_buffer("weight", torch.zeros(0, dtype=torch.float64))
        self.register_buffer("bias", torch.zeros((), dtype=torch.float64))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # an unfitted probe has an empty weight; take the saved one's size so load_state_dict works
        if prefix + "weight" in state_dict:
            self.weight = torch.empty_like(state_dict[prefix + "weight"], dtype=torch.float64)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def fit(self, embeddings: torch.Tensor | np.ndarray, targets: torch.Tensor | np.ndarray) -> LinearProbe:
        """Fit ``w``, ``b`` on embeddings ``(N, *feature)`` and targets ``(N,)`` (0 / 1 for ``"logistic"``).

        Raises:
            ValueError: mismatched ``N``, non-finite values, or non-binary targets for ``"logistic"``.
        """
        x = _as_matrix(embeddings).cpu().numpy()
        y = _as_matrix(torch.as_tensor(targets).reshape(-1, 1), "targets").cpu().numpy()[:, 0]
        if len(y) != len(x):
            raise ValueError(f"targets must hold one value per embedding ({len(x)}), got {len(y)}.")
        if self.kind == "logistic":
            if not np.isin(y, (0.0, 1.0)).all() or len(np.unique(y)) != 2:
                raise ValueError(f"logistic targets must be 0 / 1 with both classes present, got {np.unique(y)[:5]}.")
            model = LogisticRegression(C=1.0 / self.alpha, max_iter=1000).fit(x, y)
        else:
            model = Ridge(alpha=self.alpha).fit(x, y)
        self.weight = torch.as_tensor(np.ravel(model.coef_), dtype=torch.float64, device=self.bias.device)
        self.bias.fill_(float(np.ravel(model.intercept_)[0]))
        return self

    def _features(self, embeddings: torch.Tensor | np.ndarray) -> torch.Tensor:
        if self.weight.numel() == 0:
            raise ValueError("this LinearProbe is not fitted yet: call fit(embeddings, targets) first.")
        x = _as_matrix(embeddings).to(self.weight.device)
        if x.shape[1] != self.weight.numel():
            raise ValueError(f"embeddings must have {self.weight.numel()} features per sample, got {x.shape[1]}.")
        return x

    def forward(self, embeddings: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Score ``(N,)`` float64: the predicted value (regression) or logit (logistic)."""
        return self._features(embeddings) @ self.weight + self.bias

    def predict(self, embeddings: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Prediction ``(N,)`` float64: the value (regression) or the probability of class 1 (logistic)."""
        score = self(embeddings)
        return torch.sigmoid(score) if self.kind == "logistic" else score

    def _score_of(self, target: torch.Tensor) -> torch.Tensor:
        if self.kind == "regression":
            return target
        if not ((target > 0) & (target < 1)).all():
            raise ValueError(f"logistic steering targets are probabilities in (0, 1), got {target.tolist()}.")
        return torch.logit(target)

    def steer(self, embeddings: torch.Tensor | np.ndarray, target: float | torch.Tensor | np.ndarray) -> torch.Tensor:
        """Move each embedding along ``w`` so that the probe predicts ``target`` (the smallest such move).

        ``e' = e + (s(target) - score(e)) / ||w||^2 * w``, where ``s`` is the identity (regression) or the logit
        (logistic, ``target`` a probability), so ``score(e') = s(target)`` exactly (up to float round-off).

        Args:
            embeddings: ``(N, *feature)``; the result has the same shape, dtype (float) and device.
            target: one value, or one per embedding ``(N,)``.
        """
        reference = torch.as_tensor(embeddings)
        x = self._features(reference)
        wanted = self._score_of(torch.as_tensor(target, dtype=torch.float64, device=x.device).reshape(-1))
        if wanted.numel() not in (1, x.shape[0]):
            raise ValueError(f"target must be one value or one per embedding ({x.shape[0]}), got {wanted.numel()}.")
        step = (wanted - (x @ self.weight + self.bias)) / self.weight.square().sum()
        moved = x + step[:, None] * self.weight
        dtype = reference.dtype if reference.is_floating_point() else torch.get_default_dtype()
        return moved.reshape(reference.shape).to(device=reference.device, dtype=dtype)

    def sweep(self, embedding: torch.Tensor | np.ndarray, start: float, stop: float, *, steps: int) -> torch.Tensor:
        """Embeddings ``(steps, *feature)`` along ``w`` whose predictions go from ``start`` to ``stop`` evenly.

        Args:
            embedding: one embedding ``(1, *feature)``, the sample to morph.
            start: first prediction (a value, or a probability for ``"logistic"``).
            stop: last prediction.
            steps: number of embeddings (>= 2).
        """
        if steps < 2:
            raise ValueError(f"steps must be >= 2, got {steps}.")
        one = torch.as_tensor(embedding)
        if one.ndim < 2 or one.shape[0] != 1:
            raise ValueError(f"embedding must be one sample of shape (1, *feature), got {tuple(one.shape)}.")
        targets = torch.linspace(start, stop, steps, dtype=torch.float64)
        return self.steer(one.expand(steps, *one.shape[1:]), targets)
