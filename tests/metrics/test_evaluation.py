"""The generic evaluation on a generated image cohort: a bright / striped item per condition, an oracle generator
reaches the real ceiling, a constant one does not, and the report, its Markdown, figures and summary are written."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from monai_gen.engines.cohort import Cohort, split_by_subject
from monai_gen.engines.evaluation import GeneratorEvaluation
from monai_gen.metrics.evaluation import (
    DistributionDistances,
    EvaluationData,
    MeasuredFidelity,
    Memorisation,
    ProbeFidelity,
    evaluate_generator,
    report_summary,
)


def _item(brightness: float, pattern: str, rng: np.random.Generator) -> np.ndarray:
    """A 1 x 8 x 8 image: mean ``brightness``, vertical or horizontal stripes, a little noise."""
    stripes = np.tile((np.arange(8) % 2) * 2.0 - 1.0, (8, 1))
    image = brightness + (stripes if pattern == "vertical" else stripes.T) + rng.normal(0, 0.1, (8, 8))
    return image[None].astype(np.float32)


@pytest.fixture(scope="module")
def split():
    rng = np.random.default_rng(0)
    items, rows = [], []
    for subject in range(24):
        pattern = ("vertical", "horizontal")[subject % 2]
        for _ in range(3):
            brightness = float(rng.uniform(0, 10))
            items.append(_item(brightness, pattern, rng))
            rows.append({"subject_id": f"s{subject}", "brightness": round(brightness, 3), "pattern": pattern})
    return split_by_subject(Cohort(torch.from_numpy(np.stack(items)), rows), test_fraction=0.25, seed=0)


def brightness(items: torch.Tensor) -> dict[str, np.ndarray]:
    return {"brightness": items.mean(dim=(1, 2, 3)).numpy()}


def measures():
    return [MeasuredFidelity(brightness, method="mean intensity"),
            ProbeFidelity(["brightness"], {"pattern": ["vertical", "horizontal"]}, n_components=8),
            DistributionDistances(4), Memorisation(unit="a.u.")]


def oracle_for(test):
    lookup = {tuple(sorted(r.items())): i for i, r in enumerate({k: v for k, v in row.items() if k != "subject_id"}
                                                                 for row in test.rows)}
    return lambda rows, seeds: torch.stack([test.items[lookup[tuple(sorted(r.items()))]] for r in rows])


def test_an_oracle_generator_reaches_the_ceiling_and_the_report_is_written(split, tmp_path):
    seen = []

    def figure(data: EvaluationData, output_dir):
        seen.append(data)
        path = output_dir / "grid.png"
        path.write_bytes(b"png")
        return path

    report = evaluate_generator(oracle_for(split.test), split.train, split.test, measures=measures(),
                                output_dir=tmp_path, max_samples=None, seed=3, model_id="m-1", figures=[figure])
    measured = report["measured_fidelity"]["conditions"]["brightness"]
    assert measured["synthetic"]["value"] == measured["real"]["value"] > 0.99
    probes = report["probe_fidelity"]["conditions"]
    assert probes["pattern"]["synthetic"]["metric"] == "auroc" and probes["pattern"]["synthetic"]["value"] > 0.95
    assert probes["brightness"]["synthetic"]["value"] == pytest.approx(probes["brightness"]["real"]["value"])
    assert report["distribution"]["frechet_distance"]["synthetic_vs_test"] == pytest.approx(0.0, abs=1e-6)
    assert report["memorisation"]["min_to_test"] == 0.0
    assert report["n_synthetic"] == len(split.test) and report["test_subjects"] == 6 and report["figures"] == ["grid.png"]
    assert seen[0].seed == 3 and seen[0].requested[0] == {k: v for k, v in split.test.rows[0].items() if k != "subject_id"}
    assert json.loads((tmp_path / "evaluation.json").read_text())["measures"] == [m.name for m in measures()]
    markdown = (tmp_path / "evaluation.md").read_text()
    assert markdown.startswith("# Generator evaluation m-1") and "| brightness | mean intensity |" in markdown
    assert "## Memorisation (nearest-neighbour L2 distance, a.u.)" in markdown and "![grid.png](grid.png)" in markdown
    summary = report_summary(report, tmp_path)
    assert "brightness R 1.00" in summary and "pattern AUROC" in summary and str(tmp_path / "grid.png") in summary


def test_a_generator_ignoring_its_conditions_scores_no_fidelity(split, tmp_path):
    mean_item = split.train.items.mean(0)
    report = evaluate_generator(lambda rows, seeds: mean_item.expand(len(rows), -1, -1, -1).clone(), split.train,
                                split.test, measures=measures()[:2], output_dir=tmp_path, max_samples=10)
    assert report["n_synthetic"] == 10
    assert np.isnan(report["measured_fidelity"]["conditions"]["brightness"]["synthetic"]["value"])  # constant: no R
    assert report["probe_fidelity"]["conditions"]["pattern"]["synthetic"]["value"] == pytest.approx(0.5)


def test_bad_generators_and_measures_are_clear_errors(split, tmp_path):
    with pytest.raises(ValueError, match=r"returned \(4, 1, 4, 4\).*expected \(4, 1, 8, 8\)"):
        evaluate_generator(lambda rows, seeds: torch.zeros(len(rows), 1, 4, 4), split.train, split.test,
                           measures=measures(), output_dir=tmp_path, max_samples=4)
    with pytest.raises(ValueError, match="distinct names"):
        evaluate_generator(oracle_for(split.test), split.train, split.test, measures=[Memorisation(), Memorisation()],
                           output_dir=tmp_path)
    with pytest.raises(ValueError, match="two categories"):
        ProbeFidelity(categorical={"pattern": ["a", "b", "c"]})


def test_the_config_evaluator_generates_in_batches_from_a_split_or_a_pair(split, tmp_path):
    oracle, calls = oracle_for(split.test), []

    def sample_generator(requests):
        calls.append(len(requests))
        return oracle([r.conditions for r in requests], [r.seed for r in requests])

    evaluation = GeneratorEvaluation(sample_generator, split, measures=measures()[:1], output_dir=tmp_path,
                                     max_samples=7, batch_size=3)
    report = evaluation.run()
    assert calls == [3, 3, 1] and report["measured_fidelity"]["conditions"]["brightness"]["synthetic"]["value"] > 0.99
    again = GeneratorEvaluation(sample_generator, (split.train, split.test), measures=measures()[:1],
                                output_dir=tmp_path, max_samples=7, batch_size=3).run()
    assert again["measured_fidelity"] == report["measured_fidelity"]
