"""Fidelity of conditional samples: does a generated sample carry the phenotype it was asked for?

Two ways, as in xMADD §4.2 / Table 3: (1) *measurement* — measure the phenotype on the sample with the same
independent method used on real data (e.g. QRS and QT by ECG delineation) and correlate with the requested
value; (2) *probe* — train a simple model on real data to predict the phenotype from the signal, then score
it on synthetic samples against the requested values, beside the same probe's score on real test data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

__all__ = ["FidelityScore", "pearson_fidelity", "auroc_fidelity", "PhenotypeProbe"]


@dataclass(frozen=True)
class FidelityScore:
    """A fidelity number with what it rests on.

    Args:
        metric: ``"pearson_r"`` (continuous phenotype) or ``"auroc"`` (binary phenotype).
        value: the score (NaN when fewer than 3 valid pairs or a constant input).
        n: pairs used.
        n_failed: pairs dropped because the measurement failed (NaN).
    """

    metric: str
    value: float
    n: int
    n_failed: int

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def _valid_pairs(requested: Sequence[float], measured: Sequence[float]) -> tuple[np.ndarray, np.ndarray, int]:
    requested = np.asarray(requested, dtype=np.float64).reshape(-1)
    measured = np.asarray(measured, dtype=np.float64).reshape(-1)
    if requested.shape != measured.shape:
        raise ValueError(f"requested and measured values differ in length: {requested.size} vs {measured.size}.")
    keep = np.isfinite(requested) & np.isfinite(measured)
    return requested[keep], measured[keep], int((~keep).sum())


def pearson_fidelity(requested: Sequence[float], measured: Sequence[float]) -> FidelityScore:
    """Pearson R between requested and measured values of a continuous phenotype; NaN measurements are dropped."""
    req, meas, failed = _valid_pairs(requested, measured)
    if req.size < 3 or np.ptp(req) == 0 or np.ptp(meas) == 0:
        return FidelityScore("pearson_r", float("nan"), int(req.size), failed)
    return FidelityScore("pearson_r", float(stats.pearsonr(req, meas).statistic), int(req.size), failed)


def auroc_fidelity(requested: Sequence[float], scores: Sequence[float]) -> FidelityScore:
    """AUROC of ``scores`` for the binary ``requested`` labels (0 / 1); NaN pairs are dropped."""
    req, score, failed = _valid_pairs(requested, scores)
    if req.size < 2 or np.unique(req).size != 2:
        return FidelityScore("auroc", float("nan"), int(req.size), failed)
    return FidelityScore("auroc", float(roc_auc_score(req, score)), int(req.size), failed)


class PhenotypeProbe:
    """A linear probe trained on real samples to read a phenotype back from a signal (xMADD §4.2).

    Features are the flattened samples, standardised and reduced by PCA (fitted on the training data only);
    a continuous phenotype is fitted by ridge regression (penalty chosen by cross-validation), a binary one
    by logistic regression.

    Args:
        kind: ``"continuous"`` or ``"binary"``.
        n_components: PCA components kept (capped by the number of training samples - 1).
        random_state: seed of the PCA solver.
    """

    def __init__(self, kind: str = "continuous", *, n_components: int = 32, random_state: int = 0) -> None:
        if kind not in ("continuous", "binary"):
            raise ValueError(f"probe kind must be 'continuous' or 'binary', got {kind!r}.")
        self.kind, self.n_components, self.random_state = kind, int(n_components), random_state
        self._model = None

    def fit(self, samples: np.ndarray, targets: Sequence[float]) -> PhenotypeProbe:
        """Fit on real ``samples`` ``(N, ...)`` with their phenotype ``targets`` ``(N,)`` (NaN targets skipped)."""
        features, targets = self._features(samples), np.asarray(targets, dtype=np.float64).reshape(-1)
        if features.shape[0] != targets.size:
            raise ValueError(f"probe: {features.shape[0]} samples but {targets.size} targets.")
        keep = np.isfinite(targets)
        if keep.sum() < 4:
            raise ValueError(f"probe: needs at least 4 samples with a known target, got {int(keep.sum())}.")
        n_components = max(1, min(self.n_components, int(keep.sum()) - 1, features.shape[1]))
        head = RidgeCV(alphas=np.logspace(-2, 4, 13)) if self.kind == "continuous" else LogisticRegression(max_iter=2000)
        self._model = make_pipeline(
            StandardScaler(), PCA(n_components=n_components, random_state=self.random_state), head
        ).fit(features[keep], targets[keep])
        return self

    def predict(self, samples: np.ndarray) -> np.ndarray:
        """Predicted phenotype ``(N,)``: a value (continuous) or the probability of class 1 (binary)."""
        if self._model is None:
            raise RuntimeError("PhenotypeProbe.predict called before fit.")
        features = self._features(samples)
        if self.kind == "binary":
            return self._model.predict_proba(features)[:, 1]
        return self._model.predict(features)

    def score(self, samples: np.ndarray, targets: Sequence[float]) -> FidelityScore:
        """Pearson R (continuous) or AUROC (binary) of the probe's prediction against ``targets``."""
        prediction = self.predict(samples)
        return pearson_fidelity(targets, prediction) if self.kind == "continuous" else auroc_fidelity(targets, prediction)

    @staticmethod
    def _features(samples: np.ndarray) -> np.ndarray:
        samples = np.asarray(samples, dtype=np.float64)
        if samples.ndim < 2:
            raise ValueError(f"probe: samples must be (N, ...), got shape {samples.shape}.")
        features = samples.reshape(samples.shape[0], -1)
        if not np.isfinite(features).all():
            raise ValueError("probe: samples contain NaN or infinite values.")
        return features
