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

__all__ = [
    "FidelityScore", "PROBE_KINDS", "pearson_fidelity", "auroc_fidelity", "circular_fidelity", "multiclass_auroc_fidelity",
    "PhenotypeProbe",
]

PROBE_KINDS = ("continuous", "periodic", "binary", "categorical")


@dataclass(frozen=True)
class FidelityScore:
    """A fidelity number with what it rests on.

    Args:
        metric: ``"pearson_r"`` (continuous phenotype), ``"circular_r"`` (periodic), ``"auroc"`` (binary) or
            ``"auroc_ovr"`` (categorical: one-vs-rest AUROC averaged over the categories).
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


def circular_fidelity(requested: Sequence[float], measured: Sequence[float]) -> FidelityScore:
    """Circular correlation (Jammalamadaka & SenGupta 2001) of two phases given as fractions of their cycle.

    ``sum sin(a - mean a) sin(b - mean b) / sqrt(sum sin^2(a - mean a) sum sin^2(b - mean b))`` with circular means:
    1 when ``b`` follows ``a`` round the cycle, about 0 when unrelated; phase 0.98 and 0.02 count as 0.04 apart.
    """
    req, meas, failed = _valid_pairs(requested, measured)
    if req.size < 3:
        return FidelityScore("circular_r", float("nan"), int(req.size), failed)
    a, b = 2 * np.pi * req, 2 * np.pi * meas
    da = np.sin(a - np.angle(np.exp(1j * a).mean()))
    db = np.sin(b - np.angle(np.exp(1j * b).mean()))
    denominator = np.sqrt((da**2).sum() * (db**2).sum())
    value = float("nan") if denominator == 0 else float((da * db).sum() / denominator)
    return FidelityScore("circular_r", value, int(req.size), failed)


def multiclass_auroc_fidelity(requested: Sequence[float], probabilities: np.ndarray) -> FidelityScore:
    """Macro one-vs-rest AUROC of class ``probabilities`` ``(N, K)`` for ``requested`` class indices ``(N,)``.

    Classes absent from ``requested`` are left out of the average (their AUROC is undefined); NaN when fewer than
    two classes are present.
    """
    req = np.asarray(requested, dtype=np.float64).reshape(-1)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[0] != req.size:
        raise ValueError(f"probabilities must be (N, K) with N = {req.size}, got shape {probabilities.shape}.")
    keep = np.isfinite(req) & np.isfinite(probabilities).all(axis=1)
    req, probabilities = req[keep].astype(int), probabilities[keep]
    present = np.unique(req)
    if present.size < 2:
        return FidelityScore("auroc_ovr", float("nan"), int(req.size), int((~keep).sum()))
    value = float(np.mean([roc_auc_score(req == k, probabilities[:, k]) for k in present]))
    return FidelityScore("auroc_ovr", value, int(req.size), int((~keep).sum()))


class PhenotypeProbe:
    """A linear probe trained on real samples to read a phenotype back from a signal (xMADD §4.2).

    Features are the flattened samples, standardised and reduced by PCA (fitted on the training data only);
    a continuous phenotype is fitted by ridge regression (penalty chosen by cross-validation); a periodic one
    (targets: fractions of the cycle) by ridge regression of its sine and cosine, read back as the angle; a binary
    or categorical one (targets: class indices) by logistic regression.

    Args:
        kind: one of :data:`PROBE_KINDS`.
        n_components: PCA components kept (capped by the number of training samples - 1).
        random_state: seed of the PCA solver.
    """

    def __init__(self, kind: str = "continuous", *, n_components: int = 32, random_state: int = 0) -> None:
        if kind not in PROBE_KINDS:
            raise ValueError(f"probe kind must be one of {PROBE_KINDS}, got {kind!r}.")
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
        regression = self.kind in ("continuous", "periodic")
        head = RidgeCV(alphas=np.logspace(-2, 4, 13)) if regression else LogisticRegression(max_iter=2000)
        fitted_targets = targets[keep]
        if self.kind == "periodic":
            fitted_targets = np.stack([np.sin(2 * np.pi * fitted_targets), np.cos(2 * np.pi * fitted_targets)], axis=1)
        self._model = make_pipeline(
            StandardScaler(), PCA(n_components=n_components, random_state=self.random_state), head
        ).fit(features[keep], fitted_targets)
        return self

    def predict(self, samples: np.ndarray) -> np.ndarray:
        """Predicted phenotype: a value ``(N,)`` (continuous), a fraction of the cycle in ``[0, 1)`` ``(N,)``
        (periodic), the probability of class 1 ``(N,)`` (binary), or of each class ``(N, K)`` (categorical; ``K`` the
        largest class index seen in training + 1, unseen classes 0)."""
        if self._model is None:
            raise RuntimeError("PhenotypeProbe.predict called before fit.")
        features = self._features(samples)
        if self.kind == "binary":
            return self._model.predict_proba(features)[:, 1]
        if self.kind == "categorical":
            seen = self._model.classes_.astype(int)
            probabilities = np.zeros((features.shape[0], int(seen.max()) + 1))
            probabilities[:, seen] = self._model.predict_proba(features)
            return probabilities
        prediction = self._model.predict(features)
        if self.kind == "periodic":
            return np.mod(np.arctan2(prediction[:, 0], prediction[:, 1]) / (2 * np.pi), 1.0)
        return prediction

    def score(self, samples: np.ndarray, targets: Sequence[float]) -> FidelityScore:
        """Pearson R, circular R, AUROC or one-vs-rest AUROC (by :attr:`kind`) of the prediction against ``targets``."""
        prediction = self.predict(samples)
        if self.kind == "categorical":
            labels = np.asarray(targets, dtype=np.float64)
            top = int(np.nanmax(labels)) + 1 if np.isfinite(labels).any() else 0
            wide = np.zeros((prediction.shape[0], max(prediction.shape[1], top)))
            wide[:, : prediction.shape[1]] = prediction  # a class never seen in training scores 0
            return multiclass_auroc_fidelity(targets, wide)
        score = {"continuous": pearson_fidelity, "periodic": circular_fidelity, "binary": auroc_fidelity}[self.kind]
        return score(targets, prediction)

    @staticmethod
    def _features(samples: np.ndarray) -> np.ndarray:
        samples = np.asarray(samples, dtype=np.float64)
        if samples.ndim < 2:
            raise ValueError(f"probe: samples must be (N, ...), got shape {samples.shape}.")
        features = samples.reshape(samples.shape[0], -1)
        if not np.isfinite(features).all():
            raise ValueError("probe: samples contain NaN or infinite values.")
        return features
