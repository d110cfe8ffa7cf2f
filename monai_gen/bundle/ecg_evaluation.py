"""Evaluation of a conditional ECG beat generator: fidelity, realism and memorisation (xMADD §4.2, §4.4.2).

Given a ``generate(rows, seeds) -> (N, 12, 576) mV`` callable and the real train / test cohorts, the report
answers three questions on the *held-out* test conditions:

- **Fidelity** — does a beat carry the phenotype it was asked for? QRS and QT are measured on every synthetic
  beat with the same independent delineation used on real data (:func:`measure_median_beat`, the RR read from
  the beat itself, never from the request) and correlated with the requested values; heart rate, age and sex
  are read by linear probes trained on real training beats (R / AUROC). Every number is reported beside the
  same measurement on the real test beats, its ceiling.
- **Realism** — Fréchet distance and MMD between real test and synthetic beats in a PCA feature space fitted
  on real training beats (reference: the same distances between real training and real test beats), and
  Einthoven / Goldberger limb-lead consistency.
- **Memorisation** — nearest-neighbour distances of synthetic beats to training vs. test beats.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from monai_gen.bundle.ecg_cohort import BEAT_FS
from monai_gen.engines.cohort import Cohort
from monai_gen.engines.requests import SampleRequest
from monai_gen.metrics import (
    FidelityScore,
    PCAFeatures,
    PhenotypeProbe,
    frechet_distance,
    linear_mmd,
    memorisation_report,
    pearson_fidelity,
)
from monai_gen.metrics.ecg import limb_lead_residual, next_beat_rr_ms, qrs_alignment
from monai_gen.transforms.ecg.functional import MEDIAN_BEAT_R_INDEX
from monai_gen.transforms.ecg.measurements import measure_median_beat
from monai_gen.utils.atomic import atomic_output_path, atomic_write_json, atomic_write_text

__all__ = [
    "REPORT_FILES",
    "measure_beats",
    "evaluate_ecg_generator",
    "report_markdown",
    "report_summary",
    "ECGGeneratorEvaluation",
]

REPORT_FILES = ("evaluation.json", "evaluation.md", "examples.png")
"""What :func:`evaluate_ecg_generator` writes into its output folder."""

GenerateFn = Callable[[Sequence[dict[str, Any]], Sequence[int]], torch.Tensor]


def measure_beats(beats: torch.Tensor | np.ndarray) -> dict[str, np.ndarray]:
    """QRS and QT (ms) of each R-aligned beat ``(N, 12, 576)`` at 500 Hz; NaN where not measurable."""
    qrs, qt = [], []
    for beat in np.asarray(beats, dtype=np.float64):
        rr = next_beat_rr_ms(beat, BEAT_FS, r_index=MEDIAN_BEAT_R_INDEX)
        measured = measure_median_beat(beat, BEAT_FS, r_index=MEDIAN_BEAT_R_INDEX, rr_ms=rr)
        qrs.append(measured.qrs_ms)
        qt.append(measured.qt_ms)
    return {"qrs": np.asarray(qrs, dtype=float), "qt": np.asarray(qt, dtype=float)}


def _column(rows: Sequence[dict[str, Any]], name: str) -> np.ndarray:
    if name == "sex":
        return np.array([{"male": 0.0, "female": 1.0}.get(str(r.get("sex")), np.nan) for r in rows])
    return np.array([np.nan if r.get(name) is None else float(r[name]) for r in rows])


def _fidelity(synthetic: torch.Tensor, rows, train: Cohort, test: Cohort) -> dict[str, Any]:
    measured_synthetic, measured_real = measure_beats(synthetic), measure_beats(test.items)
    fidelity: dict[str, Any] = {}
    for name in ("qrs", "qt"):
        fidelity[name] = {
            "method": "measurement (12-lead prominence delineation)",
            "synthetic": pearson_fidelity(_column(rows, name), measured_synthetic[name]).as_dict(),
            "real": pearson_fidelity(_column(test.rows, name), measured_real[name]).as_dict(),
        }
    for name, kind in (("heart_rate", "continuous"), ("age", "continuous"), ("sex", "binary")):
        method = f"linear probe on real training beats ({'AUROC' if kind == 'binary' else 'Pearson R'})"
        try:
            probe = PhenotypeProbe(kind, n_components=64).fit(train.items.numpy(), _column(train.rows, name))
        except ValueError as err:  # too few training beats with this phenotype, or only one sex among them
            unscored = FidelityScore("auroc" if kind == "binary" else "pearson_r", float("nan"), 0, 0).as_dict()
            fidelity[name] = {"method": f"{method}: not fitted ({err})", "synthetic": unscored, "real": unscored}
            continue
        fidelity[name] = {
            "method": method,
            "synthetic": probe.score(synthetic.numpy(), _column(rows, name)).as_dict(),
            "real": probe.score(test.items.numpy(), _column(test.rows, name)).as_dict(),
        }
    return fidelity


def _realism(synthetic: torch.Tensor, train: Cohort, test: Cohort, seed: int) -> dict[str, Any]:
    features = PCAFeatures(16).fit(train.items)
    real_test, real_train, fake = features(test.items), features(train.items), features(synthetic)
    generator = torch.Generator().manual_seed(seed)
    return {
        "feature_space": "PCA(16) of standardised real training beats",
        "frechet_distance": {"synthetic_vs_test": frechet_distance(real_test, fake), "train_vs_test": frechet_distance(real_test, real_train)},
        "mmd": {
            "synthetic_vs_test": linear_mmd(real_test, fake, generator=generator),
            "train_vs_test": linear_mmd(real_test, real_train, generator=generator),
        },
        "limb_lead_residual_median": {
            "synthetic": float(np.median(limb_lead_residual(synthetic.numpy()))),
            "real_test": float(np.median(limb_lead_residual(test.items.numpy()))),
        },
        "qrs_aligned_fraction": {  # beats whose steepest deflection (or one at least half as steep) sits at R
            "synthetic": float(np.mean(qrs_alignment(synthetic.numpy(), BEAT_FS, r_index=MEDIAN_BEAT_R_INDEX) >= 0.5)),
            "real_test": float(np.mean(qrs_alignment(test.items.numpy(), BEAT_FS, r_index=MEDIAN_BEAT_R_INDEX) >= 0.5)),
        },
    }


def evaluate_ecg_generator(
    generate: GenerateFn,
    train: Cohort,
    test: Cohort,
    *,
    output_dir: str | os.PathLike,
    max_samples: int | None = 128,
    seed: int = 0,
    model_id: str = "",
) -> dict[str, Any]:
    """Generate one beat per held-out test beat's conditions (up to ``max_samples``) and write the report.

    Args:
        generate: ``generate(rows, seeds)`` -> ``(len(rows), 12, 576)`` beats in mV for the phenotype rows.
        train, test: the real cohorts (disjoint records).
        output_dir: receives ``evaluation.json``, ``evaluation.md`` and ``examples.png``.
        max_samples: cap on the number of test conditions used (evenly spread over the test beats).
        seed: first seed (sample i uses ``seed + i``).
        model_id: written into the report.

    Returns:
        The report dictionary (also written as JSON).
    """
    picks = np.arange(len(test)) if max_samples is None or len(test) <= max_samples else np.linspace(0, len(test) - 1, max_samples).round().astype(int)
    test = test.subset(picks.tolist())
    rows = [{k: v for k, v in row.items() if k != "record_id"} for row in test.rows]
    synthetic = torch.as_tensor(generate(rows, [seed + i for i in range(len(rows))]), dtype=torch.float32).cpu()
    if synthetic.shape != test.items.shape or not torch.isfinite(synthetic).all():
        raise ValueError(f"the generator returned {tuple(synthetic.shape)} (finite: {bool(torch.isfinite(synthetic).all())}); expected {tuple(test.items.shape)}.")
    report = {
        "model_id": model_id,
        "n_synthetic": len(rows),
        "n_train_beats": len(train),
        "n_test_beats": len(test),
        "train_records": len(train.subjects()),
        "test_records": len(test.subjects()),
        "fidelity": _fidelity(synthetic, rows, train, test),
        "realism": _realism(synthetic, train, test, seed),
        "memorisation": memorisation_report(synthetic, train.items, test.items).as_dict(),
    }
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    json_file, markdown_file, figure_file = (output_dir / name for name in REPORT_FILES)
    atomic_write_json(json_file, report)
    atomic_write_text(markdown_file, report_markdown(report))
    _plot_examples(synthetic, test, figure_file)
    return report


def report_markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown page (tables of fidelity, realism, memorisation)."""
    lines = [
        f"# ECG generator evaluation {report.get('model_id', '')}".rstrip(),
        "",
        f"{report['n_synthetic']} synthetic beats for the conditions of held-out test beats "
        f"({report['test_records']} test records, {report['train_records']} training records).",
        "",
        "## Fidelity (synthetic vs requested; real test beats vs their own values = ceiling)",
        "",
        "| phenotype | method | synthetic | real | n (failed) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, entry in report["fidelity"].items():
        syn, real = entry["synthetic"], entry["real"]
        lines.append(
            f"| {name} | {entry['method']} | {syn['metric']} {syn['value']:.3f} | {real['value']:.3f} | {syn['n']} ({syn['n_failed']}) |"
        )
    realism = report["realism"]
    lines += [
        "",
        "## Realism",
        "",
        f"Feature space: {realism['feature_space']}.",
        "",
        "| distance | synthetic vs real test | real train vs real test |",
        "| --- | --- | --- |",
        f"| Fréchet | {realism['frechet_distance']['synthetic_vs_test']:.3f} | {realism['frechet_distance']['train_vs_test']:.3f} |",
        f"| MMD (linear) | {realism['mmd']['synthetic_vs_test']:.3f} | {realism['mmd']['train_vs_test']:.3f} |",
        "",
        f"Limb-lead residual (Einthoven / Goldberger, median relative RMS): synthetic "
        f"{realism['limb_lead_residual_median']['synthetic']:.3f}, real {realism['limb_lead_residual_median']['real_test']:.3f}.",
        f"QRS at the R position (12-lead slope energy there >= half the beat's maximum): synthetic "
        f"{realism['qrs_aligned_fraction']['synthetic']:.2f}, real {realism['qrs_aligned_fraction']['real_test']:.2f} of beats.",
        "",
        "## Memorisation (nearest-neighbour L2 distance, mV)",
        "",
        "| to training | to test | closer to training | expected if not memorised | p (train < test) |",
        "| --- | --- | --- | --- | --- |",
    ]
    m = report["memorisation"]
    lines.append(
        f"| mean {m['mean_to_train']:.3f}, min {m['min_to_train']:.3f} | mean {m['mean_to_test']:.3f}, min {m['min_to_test']:.3f} "
        f"| {m['fraction_closer_to_train']:.2f} | {m['expected_fraction']:.2f} | {m['p_value']:.3g} |"
    )
    return "\n".join(lines) + "\n"


def report_summary(report: dict[str, Any], output_dir: str | os.PathLike) -> str:
    """A few lines for the terminal: the report's headline numbers and the paths of its files.

    Args:
        report: as returned by :func:`evaluate_ecg_generator` (or read from ``evaluation.json``).
        output_dir: the folder holding :data:`REPORT_FILES`.
    """
    label = {"pearson_r": "R", "auroc": "AUROC"}
    fidelity = ", ".join(
        f"{name} {label.get(entry['synthetic']['metric'], entry['synthetic']['metric'])} "
        f"{entry['synthetic']['value']:.2f} (real {entry['real']['value']:.2f})"
        for name, entry in report["fidelity"].items()
    )
    realism, memo = report["realism"], report["memorisation"]
    files = [str(Path(output_dir) / name) for name in REPORT_FILES if (Path(output_dir) / name).is_file()]
    return "\n".join([
        f"evaluation of {report.get('model_id') or 'the generator'}: {report['n_synthetic']} synthetic beats for the "
        f"conditions of {report['test_records']} held-out test records ({report['train_records']} training records)",
        f"  fidelity (synthetic, real test beats = ceiling): {fidelity}",
        f"  realism: QRS at R {realism['qrs_aligned_fraction']['synthetic']:.2f} (real "
        f"{realism['qrs_aligned_fraction']['real_test']:.2f}); Fréchet to test "
        f"{realism['frechet_distance']['synthetic_vs_test']:.1f} (train vs test "
        f"{realism['frechet_distance']['train_vs_test']:.1f})",
        f"  memorisation: {memo['fraction_closer_to_train']:.2f} of synthetic beats nearer a training than a test beat "
        f"(expected {memo['expected_fraction']:.2f}, p {memo['p_value']:.2g})",
        f"  wrote {', '.join(files)}",
    ])


def _plot_examples(synthetic: torch.Tensor, test: Cohort, path: Path, count: int = 4) -> None:
    """Lead II of a few real test beats and the synthetic beats generated for their conditions."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(3 * count, 4), dpi=100)
    FigureCanvasAgg(figure)
    time_s = np.arange(synthetic.shape[-1]) / BEAT_FS
    for i, k in enumerate(np.linspace(0, len(test) - 1, min(count, len(test))).round().astype(int)):
        ax = figure.add_subplot(1, count, i + 1)
        ax.plot(time_s, test.items[k, 1].numpy(), color="0.5", label="real")
        ax.plot(time_s, synthetic[k, 1].numpy(), color="tab:red", label="synthetic")
        row = test.rows[k]
        ax.set_title(f"HR {row['heart_rate']} QT {row['qt']}", fontsize=8)
        ax.set_xlabel("s")
    figure.axes[0].set_ylabel("lead II (mV)")
    figure.axes[0].legend(fontsize=7)
    with atomic_output_path(path) as tmp:
        figure.savefig(tmp, format="png")


class ECGGeneratorEvaluation:
    """The ``evaluator`` of the bundle's ``evaluate.json``: ``run()`` generates and writes the report.

    Args:
        sample_generator: ``sample_generator(requests) -> (B, 12, 576)`` in mV, e.g.
            :class:`monai_gen.engines.generation.ConditionalSampleGenerator`.
        cohorts: the real cohorts (disjoint records): a :class:`~monai_gen.engines.cohort.CohortSplit` or ``(train, test)``.
        output_dir, max_samples, seed, model_id: see :func:`evaluate_ecg_generator`.
        batch_size: samples per generator call.
    """

    def __init__(
        self,
        sample_generator: Callable[[list[SampleRequest]], torch.Tensor],
        cohorts: tuple[Cohort, Cohort],
        *,
        output_dir: str | os.PathLike,
        max_samples: int | None = 128,
        seed: int = 0,
        batch_size: int = 32,
        model_id: str = "",
    ) -> None:
        self.sample_generator, (self.train, self.test) = sample_generator, (cohorts[0], cohorts[-1])
        self.output_dir, self.max_samples, self.seed = output_dir, max_samples, seed
        self.batch_size, self.model_id = int(batch_size), model_id

    def generate(self, rows: Sequence[dict[str, Any]], seeds: Sequence[int]) -> torch.Tensor:
        requests = [SampleRequest(f"eval_{i}", int(s), r) for i, (r, s) in enumerate(zip(rows, seeds, strict=True))]
        chunks = [requests[i : i + self.batch_size] for i in range(0, len(requests), self.batch_size)]
        return torch.cat([self.sample_generator(chunk) for chunk in chunks])

    def run(self) -> dict[str, Any]:
        return evaluate_ecg_generator(
            self.generate, self.train, self.test, output_dir=self.output_dir, max_samples=self.max_samples,
            seed=self.seed, model_id=self.model_id,
        )
