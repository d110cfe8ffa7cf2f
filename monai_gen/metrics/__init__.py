"""Evaluation metrics: fidelity to the requested phenotype, distribution distances, memorisation, and the generic
evaluation of a generator as a list of measures (:mod:`.evaluation`)."""

from __future__ import annotations

from .distribution import PCAFeatures, frechet_distance, linear_mmd
from .evaluation import (
    DistributionDistances,
    EvaluationData,
    Measure,
    MeasuredFidelity,
    Memorisation,
    ProbeFidelity,
    evaluate_generator,
)
from .fidelity import FidelityScore, PhenotypeProbe, auroc_fidelity, pearson_fidelity
from .memorisation import MemorisationReport, memorisation_report, nearest_distances

__all__ = [
    "FidelityScore",
    "pearson_fidelity",
    "auroc_fidelity",
    "PhenotypeProbe",
    "PCAFeatures",
    "frechet_distance",
    "linear_mmd",
    "MemorisationReport",
    "memorisation_report",
    "nearest_distances",
    "EvaluationData",
    "Measure",
    "MeasuredFidelity",
    "ProbeFidelity",
    "DistributionDistances",
    "Memorisation",
    "evaluate_generator",
]
