"""The generic evaluation on a generated image cohort: a bright / striped item per condition, an oracle generator
reaches the real ceiling, a constant one does not, and the report, its Markdown, figures and summary are written;
counterfactual sweeps follow a generator that obeys its request and not one that ignores it."""

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
    SweepFidelity,
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
                                output_dir=tmp_path, max_samples=None, seed=3, model_id="m-1", figures=[figure],
                                sampling={"steps": 25, "phenotype_guidance": {"brightness": 6.0}})
    measured = report["measured_fidelity"]["conditions"]["brightness"]
    assert measured["synthetic"]["value"] == measured["real"]["value"] > 0.99
    probes = report["probe_fidelity"]["conditions"]
    assert probes["pattern"]["synthetic"]["metric"] == "auroc" and probes["pattern"]["synthetic"]["value"] > 0.95
    assert probes["brightness"]["synthetic"]["value"] == pytest.approx(probes["brightness"]["real"]["value"])
    assert report["distribution"]["frechet_distance"]["synthetic_vs_test"] == pytest.approx(0.0, abs=1e-6)
    assert report["memorisation"]["min_to_test"] == 0.0
    assert report["n_synthetic"] == len(split.test) and report["test_subjects"] == 6 and report["figures"] == ["grid.png"]
    assert seen[0].seed == 3 and seen[0].requested[0] == {k: v for k, v in split.test.rows[0].items() if k != "subject_id"}
    written = json.loads((tmp_path / "evaluation.json").read_text())
    assert written["measures"] == [m.name for m in measures()]
    assert written["sampling"] == {"steps": 25, "phenotype_guidance": {"brightness": 6.0}}
    markdown = (tmp_path / "evaluation.md").read_text()
    assert "sampled with steps 25, phenotype_guidance {'brightness': 6.0}." in markdown
    assert markdown.startswith("# Generator evaluation m-1") and "| brightness | mean intensity |" in markdown
    assert "## Memorisation (nearest-neighbour L2 distance, a.u.)" in markdown and "![grid.png](grid.png)" in markdown
    summary = report_summary(report, tmp_path)
    assert "brightness R 1.00" in summary and "pattern AUROC" in summary and str(tmp_path / "grid.png") in summary
    assert "  sampling: steps 25, phenotype_guidance {'brightness': 6.0}" in summary


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
    with pytest.raises(ValueError, match="at least two categories"):
        ProbeFidelity(categorical={"pattern": ["a"]})
    with pytest.raises(ValueError, match=r"a period must be positive, got \{'phase': 0\}"):
        ProbeFidelity(periodic={"phase": 0})


def test_periodic_and_many_category_probes_score_an_oracle_at_the_ceiling(tmp_path):
    rng = np.random.default_rng(2)
    basis = rng.normal(size=(5, 1, 8, 8)).astype(np.float32)  # cos / sin directions of the phase, three patterns
    items, rows = [], []
    for subject in range(30):
        pattern = ("a", "b", "c")[subject % 3]
        for _ in range(3):
            frames = float(rng.integers(0, 24))  # a phase in frames of a 24-frame cycle
            angle = 2 * np.pi * frames / 24
            item = np.cos(angle) * basis[0] + np.sin(angle) * basis[1] + basis[2 + "abc".index(pattern)]
            items.append(item + rng.normal(0, 0.1, item.shape).astype(np.float32))
            rows.append({"subject_id": f"s{subject}", "frame": frames, "pattern": pattern})
    cohort = split_by_subject(Cohort(torch.from_numpy(np.stack(items)), rows), test_fraction=0.3, seed=0)
    probes = ProbeFidelity(categorical={"pattern": ["a", "b", "c"]}, periodic={"frame": 24.0}, n_components=8)
    report = evaluate_generator(oracle_for(cohort.test), cohort.train, cohort.test, measures=[probes],
                                output_dir=tmp_path, max_samples=None)
    scores = report["probe_fidelity"]["conditions"]
    assert scores["frame"]["synthetic"]["metric"] == "circular_r" and scores["frame"]["synthetic"]["value"] > 0.9
    assert scores["pattern"]["synthetic"]["metric"] == "auroc_ovr" and scores["pattern"]["real"]["value"] > 0.95
    assert "frame circular R" in report["probe_fidelity"]["summary"]
    assert "linear probe on real training items (one-vs-rest AUROC)" in (tmp_path / "evaluation.md").read_text()


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


def faithful(rows, seeds):
    """A generator that obeys its request: an item of the requested brightness (5 when unset), seeded stripes."""
    return torch.from_numpy(np.stack([
        _item(r.get("brightness", 5.0), ("vertical", "horizontal")[s % 2], np.random.default_rng(s))
        for r, s in zip(rows, seeds, strict=True)
    ]))


def test_a_sweep_follows_a_faithful_generator_and_not_a_constant_one(split, tmp_path):
    calls = []

    def recorded(rows, seeds):
        calls.append((list(rows), list(seeds)))
        return faithful(rows, seeds)

    sweep = SweepFidelity(brightness, ["brightness"], n_values=4, n_seeds=3, method="mean intensity")
    report = evaluate_generator(recorded, split.train, split.test, measures=[sweep], output_dir=tmp_path, max_samples=4,
                                seed=5)
    entry = report["sweep_fidelity"]["conditions"]["brightness"]
    train = np.array([r["brightness"] for r in split.train.rows])
    half = 1.5 * train.std()
    np.testing.assert_allclose(entry["values"], np.linspace(train.mean() - half, train.mean() + half, 4), atol=1e-3)
    assert entry["span_in_train_sd"] == pytest.approx(3.0, abs=1e-3)
    rows, seeds = calls[1]  # calls[0] is the evaluation's own samples
    assert rows == [{"brightness": v} for v in entry["values"] for _ in range(3)] and seeds == [5, 6, 7] * 4
    assert entry["synthetic"]["value"] > 0.99 and entry["slope"] == pytest.approx(1.0, abs=0.05)
    assert entry["real"]["value"] > 0.99 and entry["synthetic"]["n"] == 12 and entry["synthetic"]["n_failed"] == 0
    assert [v["n"] for v in entry["per_value"]] == [3] * 4
    assert all(v["iqr"][0] <= v["median"] <= v["iqr"][1] for v in entry["per_value"])
    assert entry["per_value"][-1]["median"] == pytest.approx(entry["values"][-1], abs=0.1)
    assert "## Counterfactual sweeps" in (tmp_path / "evaluation.md").read_text()
    assert "sweeps: brightness R 1.00 slope 1.0" in report_summary(report, tmp_path)

    mean_item = split.train.items.mean(0)
    sweep = SweepFidelity(brightness, ["brightness"], values={"brightness": [1, 9]}, n_seeds=2)
    constant = evaluate_generator(lambda rows, seeds: mean_item.expand(len(rows), -1, -1, -1).clone(), split.train,
                                  split.test, measures=[sweep], output_dir=tmp_path, max_samples=4)
    entry = constant["sweep_fidelity"]["conditions"]["brightness"]
    assert entry["values"] == [1.0, 9.0] and np.isnan(entry["synthetic"]["value"])
    assert entry["slope"] == pytest.approx(0.0, abs=1e-6) and entry["real"]["value"] > 0.99


def test_a_sweep_counts_failed_measurements_and_rejects_bad_settings(split, tmp_path):
    def dark_fails(items):  # a measurement that fails (NaN) on dark items
        values = items.mean(dim=(1, 2, 3)).numpy()
        return {"brightness": np.where(values < 4, np.nan, values)}

    report = evaluate_generator(faithful, split.train, split.test, output_dir=tmp_path, max_samples=4,
                                measures=[SweepFidelity(dark_fails, ["brightness"], values={"brightness": [2, 6, 8]},
                                                        n_seeds=2)])
    entry = report["sweep_fidelity"]["conditions"]["brightness"]
    assert [v["n_failed"] for v in entry["per_value"]] == [2, 0, 0] and np.isnan(entry["per_value"][0]["median"])
    assert entry["synthetic"]["n"] == 4 and entry["synthetic"]["n_failed"] == 2
    with pytest.raises(ValueError, match=r"not swept; swept: \['brightness'\]"):
        SweepFidelity(brightness, ["brightness"], values={"qt": [1, 2]})
    with pytest.raises(ValueError, match="at least two distinct values"):
        SweepFidelity(brightness, ["brightness"], values={"brightness": [3, 3]})
    data = EvaluationData(split.test.items, [], split.train, split.test, 0)
    with pytest.raises(ValueError, match="EvaluationData.generate must be given"):
        SweepFidelity(brightness, ["brightness"])(data)
    data.generate = lambda rows, seeds: torch.zeros(len(rows), 1, 4, 4)
    with pytest.raises(ValueError, match=r"returned \(16, 1, 4, 4\)"):
        SweepFidelity(brightness, ["brightness"], n_values=2)(data)


def test_the_config_evaluator_serves_the_sweeps_through_its_sample_generator(split, tmp_path):
    conditions = []

    def sample_generator(requests):
        conditions.extend(r.conditions for r in requests)
        return faithful([r.conditions for r in requests], [r.seed for r in requests])

    sweep = SweepFidelity(brightness, ["brightness"], n_values=3, n_seeds=2)
    report = GeneratorEvaluation(sample_generator, split, measures=[sweep], output_dir=tmp_path, max_samples=2,
                                 batch_size=4).run()
    assert len(conditions) == 2 + 6 and all(list(c) == ["brightness"] for c in conditions[2:])
    assert report["sweep_fidelity"]["conditions"]["brightness"]["synthetic"]["value"] > 0.99


def test_a_probe_sweep_follows_a_faithful_generator_and_not_a_constant_one(split, tmp_path):
    from monai_gen.metrics.evaluation import ProbeSweepFidelity

    sweep = ProbeSweepFidelity(["brightness"], n_components=8, n_values=4, n_seeds=3)
    report = evaluate_generator(faithful, split.train, split.test, measures=[sweep], output_dir=tmp_path, max_samples=4)
    entry = report["probe_sweep_fidelity"]["conditions"]["brightness"]
    assert entry["method"].startswith("linear probe on real training items")
    assert entry["synthetic"]["value"] > 0.99 and entry["slope"] == pytest.approx(1.0, abs=0.1)
    assert entry["real"]["value"] > 0.99 and entry["span_in_train_sd"] == pytest.approx(3.0, abs=1e-3)
    assert "## Counterfactual sweeps read by probes" in (tmp_path / "evaluation.md").read_text()
    mean_item = split.train.items.mean(0)
    constant = evaluate_generator(lambda rows, seeds: mean_item.expand(len(rows), -1, -1, -1).clone(), split.train,
                                  split.test, measures=[sweep], output_dir=tmp_path, max_samples=4)
    entry = constant["probe_sweep_fidelity"]["conditions"]["brightness"]
    assert np.isnan(entry["synthetic"]["value"]) and entry["slope"] == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="at least two distinct values"):
        ProbeSweepFidelity(["brightness"], values={"brightness": [3, 3]})


def _three_patterns(pattern: str, rng: np.random.Generator) -> np.ndarray:
    if pattern == "checker":
        board = (np.indices((8, 8)).sum(0) % 2) * 2.0 - 1.0
        return (5.0 + board + rng.normal(0, 0.1, (8, 8)))[None].astype(np.float32)
    return _item(5.0, pattern, rng)


def test_a_category_sweep_of_three_categories_scores_one_vs_rest_and_skips_an_untrained_one(tmp_path):
    from monai_gen.metrics.evaluation import CategorySweepFidelity

    rng, items, rows = np.random.default_rng(1), [], []
    for subject in range(18):
        pattern = ("vertical", "horizontal", "checker")[subject % 3]
        for _ in range(2):
            items.append(_three_patterns(pattern, rng))
            rows.append({"subject_id": f"s{subject}", "pattern": pattern})
    split = split_by_subject(Cohort(torch.from_numpy(np.stack(items)), rows), test_fraction=0.3, seed=0,
                             stratify_by="pattern")
    categories = {"pattern": ["vertical", "horizontal", "checker", "spiral"]}  # no training item is a spiral
    asked = []

    def follows(rows, seeds):
        asked.extend(r["pattern"] for r in rows)
        return torch.from_numpy(np.stack([_three_patterns(r["pattern"], np.random.default_rng(s))
                                          for r, s in zip(rows, seeds, strict=True)]))

    def ignores(rows, seeds):
        return torch.from_numpy(np.stack([_three_patterns(("vertical", "horizontal", "checker")[s % 3],
                                                          np.random.default_rng(s)) for s in seeds]))

    sweep = CategorySweepFidelity(categories, n_seeds=6, n_components=8)
    good = evaluate_generator(follows, split.train, split.test, measures=[sweep], output_dir=tmp_path, max_samples=None)
    entry = good["category_sweep_fidelity"]["conditions"]["pattern"]
    assert entry["metric"] == "auroc_ovr" and entry["synthetic"]["metric"] == "auroc_ovr"
    assert entry["categories"] == ["vertical", "horizontal", "checker"] and entry["untrained"] == ["spiral"]
    sweep_asked = asked[len(split.test):]  # after the evaluation's own samples, one per test item
    assert sweep_asked == ["vertical"] * 6 + ["horizontal"] * 6 + ["checker"] * 6
    assert entry["synthetic"]["value"] > 0.95 and entry["real"]["value"] > 0.95
    assert entry["real_reference"] == "real test items"
    assert "| pattern |" in (tmp_path / "evaluation.md").read_text() and "spiral" in (tmp_path / "evaluation.md").read_text()
    bad = evaluate_generator(ignores, split.train, split.test, measures=[sweep], output_dir=tmp_path, max_samples=2)
    assert bad["category_sweep_fidelity"]["conditions"]["pattern"]["synthetic"]["value"] < 0.75
    with pytest.raises(ValueError, match="at least two categories per condition"):
        CategorySweepFidelity({"pattern": ["vertical"]})
