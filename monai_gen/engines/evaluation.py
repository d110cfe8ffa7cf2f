"""The evaluator of a bundle's ``evaluate.json``: drive a sample generator over held-out conditions, then report.

:class:`GeneratorEvaluation` turns the real test items' conditions into seeded
:class:`~monai_gen.engines.requests.SampleRequest` batches for a sample generator (e.g.
:class:`~monai_gen.engines.sampling.ConditionalSampleGenerator`) and hands the samples to
:func:`monai_gen.metrics.evaluation.evaluate_generator`, which runs the configured measures and writes the report.
The same :meth:`GeneratorEvaluation.generate` serves the measures that request samples of their own (the
counterfactual sweeps of :class:`~monai_gen.metrics.evaluation.SweepFidelity`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from monai_gen.engines.cohort import Cohort
from monai_gen.engines.requests import SampleRequest
from monai_gen.metrics.evaluation import EvaluationData, Measure, evaluate_generator

__all__ = ["GeneratorEvaluation"]


class GeneratorEvaluation:
    """The ``evaluator`` of a bundle's ``evaluate.json``: ``run()`` generates in batches and writes the report.

    Args:
        sample_generator: ``sample_generator(requests) -> (B, C, *spatial)`` in physical units, e.g.
            :class:`monai_gen.engines.sampling.ConditionalSampleGenerator`.
        cohorts: the real cohorts (disjoint subjects): a :class:`~monai_gen.engines.cohort.CohortSplit` (its
            ``train`` and ``test``) or ``(train, test)``.
        measures, output_dir, max_samples, seed, model_id, sampling, figures: see :func:`evaluate_generator`.
        batch_size: samples per generator call.
    """

    def __init__(
        self,
        sample_generator: Callable[[list[Any]], torch.Tensor],
        cohorts: Sequence[Cohort],
        *,
        measures: Sequence[Measure],
        output_dir: str | os.PathLike,
        max_samples: int | None = 128,
        seed: int = 0,
        batch_size: int = 32,
        model_id: str = "",
        sampling: Mapping[str, Any] | None = None,
        figures: Sequence[Callable[[EvaluationData, Path], Path]] = (),
    ) -> None:
        self.sample_generator, self.train, self.test = sample_generator, cohorts[0], cohorts[-1]
        self.measures, self.figures = list(measures), list(figures)
        self.output_dir, self.max_samples, self.seed = output_dir, max_samples, seed
        self.batch_size, self.model_id, self.sampling = int(batch_size), model_id, sampling

    def generate(self, rows: Sequence[dict[str, Any]], seeds: Sequence[int]) -> torch.Tensor:
        """``(len(rows), C, *spatial)`` physical units: ``rows[i]`` (absent conditions unset) with seed ``seeds[i]``."""
        requests = [SampleRequest(f"eval_{i}", int(s), r) for i, (r, s) in enumerate(zip(rows, seeds, strict=True))]
        chunks = [requests[i : i + self.batch_size] for i in range(0, len(requests), self.batch_size)]
        return torch.cat([self.sample_generator(chunk) for chunk in chunks])

    def run(self) -> dict[str, Any]:
        return evaluate_generator(
            self.generate, self.train, self.test, measures=self.measures, output_dir=self.output_dir,
            max_samples=self.max_samples, seed=self.seed, model_id=self.model_id, sampling=self.sampling,
            figures=self.figures,
        )
