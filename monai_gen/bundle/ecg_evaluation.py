"""What the ECG bundle's evaluation adds to the generic measures of :mod:`monai_gen.metrics.evaluation`.

``evaluate.json`` lists the generic measures (fidelity by measurement with :func:`measure_beats`, fidelity by probe,
distribution distances, memorisation) and these ECG ones, each beside the same number on the real test beats:

- :class:`QRSAlignment` — the fraction of beats whose QRS sits at the R index, as every training beat's does;
- :class:`LimbLeadConsistency` — the median Einthoven / Goldberger residual of the limb leads;
- :class:`EdgeArtefacts` — the fraction of beats that step more at their window's border than at their QRS;
- the waveform measures of issue 12 item 6: :class:`HighFrequencyPower` (power above 40 Hz, first-difference SD),
  :class:`TWaveAmplitude` (per precordial lead), :class:`PWavePresence` (in sinus-rhythm requests) and
  :class:`EdgeDeviation` (first / last 10 samples);
- :class:`ECGExamples` — the figure of a few real test beats beside the synthetic beats of their conditions.

:func:`measure_beats` also serves :class:`~monai_gen.metrics.evaluation.SweepFidelity` (QRS, QT and heart-rate
sweeps).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import ks_2samp

from monai_gen.data.ecg_meta import STANDARD_LEADS
from monai_gen.metrics.ecg import (
    edge_deviation,
    edge_step_ratio,
    first_difference_sd,
    high_frequency_power_fraction,
    limb_lead_residual,
    next_beat_rr_ms,
    p_wave_fraction,
    qrs_alignment,
    t_wave_amplitude,
)
from monai_gen.metrics.evaluation import EvaluationData
from monai_gen.transforms.conditions import is_missing
from monai_gen.transforms.ecg.functional import MEDIAN_BEAT_FS, MEDIAN_BEAT_R_INDEX
from monai_gen.transforms.ecg.measurements import measure_median_beat
from monai_gen.utils.atomic import atomic_output_path

__all__ = [
    "measure_beats",
    "QRSAlignment",
    "LimbLeadConsistency",
    "EdgeArtefacts",
    "HighFrequencyPower",
    "TWaveAmplitude",
    "PWavePresence",
    "EdgeDeviation",
    "ECGExamples",
]


def measure_beats(beats: torch.Tensor | np.ndarray) -> dict[str, np.ndarray]:
    """QRS and QT (ms) and heart rate (bpm) of each R-aligned beat ``(N, 12, 576)`` at 500 Hz; NaN where not
    measurable.

    The RR is read from the beat itself (:func:`~monai_gen.metrics.ecg.next_beat_rr_ms`), never from a request; the
    heart rate is ``60000 / RR``, so it is NaN when the next R falls outside the window (below about 80 bpm for
    R at sample 200 of 576).
    """
    qrs, qt, heart_rate = [], [], []
    for beat in np.asarray(beats, dtype=np.float64):
        rr = next_beat_rr_ms(beat, MEDIAN_BEAT_FS, r_index=MEDIAN_BEAT_R_INDEX)
        measured = measure_median_beat(beat, MEDIAN_BEAT_FS, r_index=MEDIAN_BEAT_R_INDEX, rr_ms=rr)
        qrs.append(measured.qrs_ms)
        qt.append(measured.qt_ms)
        heart_rate.append(measured.heart_rate_bpm)
    return {"qrs": np.asarray(qrs, dtype=float), "qt": np.asarray(qt, dtype=float),
            "heart_rate": np.asarray(heart_rate, dtype=float)}


def _per_beat(data: EvaluationData, values: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``values`` of the synthetic and of the real test beats."""
    return values(data.synthetic.numpy()), values(data.test.items.numpy())


def _median(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if finite.size else float("nan")


class _BeatFraction:
    """A fraction of beats with a property, synthetic beside real test beats; subclasses say which beats have it."""

    name = ""
    summary_label = ""  # e.g. "QRS at R": the terminal summary's words
    title, sentence = "", ""  # evaluation.md: section title and the sentence before the numbers

    def __init__(self, fs: float = MEDIAN_BEAT_FS, r_index: int = MEDIAN_BEAT_R_INDEX) -> None:
        self.fs, self.r_index = float(fs), int(r_index)

    def _flags(self, beats: np.ndarray) -> np.ndarray:
        """``(N,)`` booleans: which beats ``(N, 12, samples)`` have the property."""
        raise NotImplementedError

    def __call__(self, data: EvaluationData) -> dict[str, Any]:
        synthetic, real = (float(np.mean(self._flags(b.numpy()))) for b in (data.synthetic, data.test.items))
        return {"synthetic": synthetic, "real_test": real,
                "summary": f"{self.summary_label} {synthetic:.2f} (real {real:.2f})"}

    def markdown(self, section: dict[str, Any]) -> list[str]:
        return [f"## {self.title}", "", f"{self.sentence}: synthetic {section['synthetic']:.2f}, real "
                f"{section['real_test']:.2f} of beats."]


class QRSAlignment(_BeatFraction):
    """Fraction of beats whose 12-lead slope energy at R is at least half the beat's maximum (QRS at R)."""

    name, summary_label, title = "qrs_alignment", "QRS at R", "QRS alignment"
    sentence = "QRS at the R position (12-lead slope energy there >= half the beat's maximum)"

    def _flags(self, beats: np.ndarray) -> np.ndarray:
        return qrs_alignment(beats, self.fs, r_index=self.r_index) >= 0.5


class LimbLeadConsistency:
    """Median relative RMS residual of Einthoven's and Goldberger's laws over the limb leads."""

    name = "limb_lead_residual"

    def __call__(self, data: EvaluationData) -> dict[str, Any]:
        synthetic = float(np.median(limb_lead_residual(data.synthetic.numpy())))
        real = float(np.median(limb_lead_residual(data.test.items.numpy())))
        return {"synthetic_median": synthetic, "real_test_median": real,
                "summary": f"limb-lead residual {synthetic:.3f} (real {real:.3f})"}

    def markdown(self, section: dict[str, Any]) -> list[str]:
        return ["## Limb-lead consistency", "", f"Limb-lead residual (Einthoven / Goldberger, median relative RMS): synthetic "
                f"{section['synthetic_median']:.3f}, real {section['real_test_median']:.3f}."]


class EdgeArtefacts(_BeatFraction):
    """Fraction of beats with a lead stepping more at its first / last sample than at its QRS (issue 10's measure:
    :func:`~monai_gen.metrics.ecg.edge_step_ratio` per lead, one edge sample)."""

    name, summary_label, title = "edge_artefacts", "edge steps", "Window-edge artefacts"
    sentence = "Beats with a lead stepping more at its window border than at its QRS"

    def _flags(self, beats: np.ndarray) -> np.ndarray:
        ratio = edge_step_ratio(beats, self.fs, r_index=self.r_index, edge_samples=1, per_lead=True)
        return (ratio > 1).any(axis=1)


class HighFrequencyPower:
    """Smoothness: the fraction of power above ``cutoff_hz`` (Welch, per beat averaged over leads:
    :func:`~monai_gen.metrics.ecg.high_frequency_power_fraction`) and the first-difference SD (mV,
    :func:`~monai_gen.metrics.ecg.first_difference_sd`), medians of synthetic and real test beats; the target is a
    synthetic power fraction at most ``max_ratio`` x real.

    Args:
        fs: sampling rate in Hz.
        cutoff_hz: the frequency above which power counts, in Hz.
        max_ratio: the target ratio synthetic / real of the median fraction (issue 12: 1.5).
    """

    name = "high_frequency_power"

    def __init__(self, fs: float = MEDIAN_BEAT_FS, *, cutoff_hz: float = 40.0, max_ratio: float = 1.5) -> None:
        self.fs, self.cutoff_hz, self.max_ratio = float(fs), float(cutoff_hz), float(max_ratio)

    def _fraction(self, beats: np.ndarray) -> np.ndarray:
        return high_frequency_power_fraction(beats, self.fs, cutoff_hz=self.cutoff_hz)

    def __call__(self, data: EvaluationData) -> dict[str, Any]:
        synthetic, real = (_median(v) for v in _per_beat(data, self._fraction))
        syn_sd, real_sd = (_median(v) for v in _per_beat(data, first_difference_sd))
        ratio = synthetic / real if real > 0 else float("nan")
        return {"cutoff_hz": self.cutoff_hz, "synthetic_median": synthetic, "real_test_median": real, "ratio": ratio,
                "max_ratio": self.max_ratio, "within_target": bool(ratio <= self.max_ratio),
                "first_difference_sd_mv": {"synthetic_median": syn_sd, "real_test_median": real_sd},
                "summary": f"power > {self.cutoff_hz:g} Hz {synthetic:.3f} (real {real:.3f}, ratio {ratio:.2f}, target "
                           f"<= {self.max_ratio:g}); first-difference SD {syn_sd:.3f} mV (real {real_sd:.3f})"}

    def markdown(self, section: dict[str, Any]) -> list[str]:
        sd = section["first_difference_sd_mv"]
        return ["## High-frequency content", "",
                "| measure | synthetic (median) | real test (median) | ratio |", "| --- | --- | --- | --- |",
                f"| power above {section['cutoff_hz']:g} Hz (fraction, Welch, mean over leads) | "
                f"{section['synthetic_median']:.4f} | {section['real_test_median']:.4f} | {section['ratio']:.2f} "
                f"(target <= {section['max_ratio']:g}: {'met' if section['within_target'] else 'missed'}) |",
                f"| first-difference SD (mV per sample, mean over leads) | {sd['synthetic_median']:.4f} | "
                f"{sd['real_test_median']:.4f} | {sd['synthetic_median'] / sd['real_test_median']:.2f} |"]


def _overlap(synthetic: np.ndarray, real: np.ndarray) -> float:
    """1 - the two-sample Kolmogorov-Smirnov statistic of the finite values: 1 for equal distributions, 0 for
    disjoint ones; NaN when either side has none."""
    synthetic, real = synthetic[np.isfinite(synthetic)], real[np.isfinite(real)]
    return float(1.0 - ks_2samp(synthetic, real).statistic) if synthetic.size and real.size else float("nan")


class TWaveAmplitude:
    """T-wave amplitude per precordial lead (:func:`~monai_gen.metrics.ecg.t_wave_amplitude`: the LUDB-trained
    delineator's T wave after the QRS at R, signed, mV from the PQ junction): per lead the median of synthetic and
    real test beats, the fraction of beats where a T wave was found, and the distribution overlap
    ``1 - KS statistic`` (1: the same distribution, 0: disjoint).

    Args:
        fs: sampling rate in Hz.
        r_index: the sample where R sits.
        leads: names of the leads measured, from the standard 12-lead order.
    """

    name = "t_wave_amplitude"

    def __init__(self, fs: float = MEDIAN_BEAT_FS, r_index: int = MEDIAN_BEAT_R_INDEX, *,
                 leads: Sequence[str] = ("V1", "V2", "V3", "V4", "V5", "V6")) -> None:
        unknown = [lead for lead in leads if lead not in STANDARD_LEADS]
        if unknown:
            raise ValueError(f"TWaveAmplitude leads must be among {list(STANDARD_LEADS)}, got {unknown}.")
        self.fs, self.r_index, self.leads = float(fs), int(r_index), list(leads)

    def __call__(self, data: EvaluationData) -> dict[str, Any]:
        channels = tuple(STANDARD_LEADS.index(lead) for lead in self.leads)
        synthetic, real = _per_beat(data, lambda b: t_wave_amplitude(b, self.fs, r_index=self.r_index, leads=channels))
        leads = {
            lead: {"synthetic_median": _median(synthetic[:, k]), "real_test_median": _median(real[:, k]),
                   "synthetic_found": float(np.isfinite(synthetic[:, k]).mean()),
                   "real_test_found": float(np.isfinite(real[:, k]).mean()),
                   "overlap": _overlap(synthetic[:, k], real[:, k])}
            for k, lead in enumerate(self.leads)
        }
        medians = ", ".join(f"{n} {e['synthetic_median']:.2f} ({e['real_test_median']:.2f})" for n, e in leads.items())
        return {"unit": "mV", "overlap_method": "1 - two-sample Kolmogorov-Smirnov statistic", "leads": leads,
                "summary": f"T amplitude mV, synthetic (real): {medians}; overlap min "
                           f"{min(e['overlap'] for e in leads.values()):.2f}"}

    def markdown(self, section: dict[str, Any]) -> list[str]:
        lines = ["## T-wave amplitude (signed, mV from the PQ junction; delineated T wave)", "",
                 f"Overlap: {section['overlap_method']} (1: the same distribution).", "",
                 "| lead | synthetic median | real median | overlap | T found (synthetic / real) |",
                 "| --- | --- | --- | --- | --- |"]
        return lines + [f"| {n} | {e['synthetic_median']:.3f} | {e['real_test_median']:.3f} | {e['overlap']:.2f} | "
                        f"{e['synthetic_found']:.2f} / {e['real_test_found']:.2f} |"
                        for n, e in section["leads"].items()]


class PWavePresence:
    """Fraction of beats with a P wave, among sinus-rhythm requests, synthetic beside real test beats.

    A beat has a P wave when the LUDB-trained delineator marks one before its QRS in at least ``min_lead_fraction``
    of its leads (:func:`~monai_gen.metrics.ecg.p_wave_fraction`). A synthetic beat counts when its request is in
    sinus rhythm, a real test beat when its recorded rhythm is: the row's ``condition`` is known and none of
    ``af_categories``; when no row carries ``condition`` at all (a model without it), every beat counts.

    Args:
        fs: sampling rate in Hz.
        r_index: the sample where R sits.
        condition: the rhythm condition of the rows.
        af_categories: its categories that are not sinus rhythm (atrial fibrillation).
        min_lead_fraction: fraction of leads that must show a P wave.
    """

    name = "p_wave_presence"

    def __init__(self, fs: float = MEDIAN_BEAT_FS, r_index: int = MEDIAN_BEAT_R_INDEX, *,
                 condition: str = "atrial_fibrillation", af_categories: Sequence[str] = ("yes",),
                 min_lead_fraction: float = 0.5) -> None:
        self.fs, self.r_index, self.condition = float(fs), int(r_index), condition
        self.af_categories, self.min_lead_fraction = [str(c) for c in af_categories], float(min_lead_fraction)

    def _sinus(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        known = np.array([not is_missing(r.get(self.condition)) for r in rows], dtype=bool)
        if not known.any():
            return np.ones(len(rows), dtype=bool)
        return known & np.array([str(r.get(self.condition)) not in self.af_categories for r in rows], dtype=bool)

    def _presence(self, beats: torch.Tensor, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        sinus = self._sinus(rows)
        if not sinus.any():
            return {"fraction": float("nan"), "n": 0}
        fraction = p_wave_fraction(beats[torch.from_numpy(sinus)].numpy(), self.fs, r_index=self.r_index)
        return {"fraction": float(np.mean(fraction >= self.min_lead_fraction)), "n": int(sinus.sum())}

    def __call__(self, data: EvaluationData) -> dict[str, Any]:
        synthetic = self._presence(data.synthetic, data.requested)
        real = self._presence(data.test.items, data.test.rows)
        return {"condition": self.condition, "af_categories": self.af_categories,
                "min_lead_fraction": self.min_lead_fraction, "synthetic": synthetic, "real_test": real,
                "summary": f"P wave in {synthetic['fraction']:.2f} of sinus-rhythm beats (real {real['fraction']:.2f})"}

    def markdown(self, section: dict[str, Any]) -> list[str]:
        syn, real = section["synthetic"], section["real_test"]
        return ["## P-wave presence (sinus-rhythm requests)", "",
                f"Beats with a delineated P wave before the QRS in >= {section['min_lead_fraction']:g} of the leads, "
                f"among beats whose {section['condition']} is known and not {section['af_categories']} (all beats when "
                f"no row has it): synthetic {syn['fraction']:.2f} of {syn['n']}, real {real['fraction']:.2f} of "
                f"{real['n']}."]


class EdgeDeviation:
    """How far the first / last ``edge_samples`` samples stray from the window's interior
    (:func:`~monai_gen.metrics.ecg.edge_deviation`, mV, the largest over leads): median and 95th percentile of
    synthetic and real test beats, and whether the synthetic median lies within the real 5th..95th percentile.

    Args:
        edge_samples: samples at each end (10 = 20 ms at 500 Hz).
    """

    name = "edge_deviation"

    def __init__(self, edge_samples: int = 10) -> None:
        self.edge_samples = int(edge_samples)

    def __call__(self, data: EvaluationData) -> dict[str, Any]:
        synthetic, real = _per_beat(data, lambda b: edge_deviation(b, edge_samples=self.edge_samples))
        section: dict[str, Any] = {"edge_samples": self.edge_samples, "unit": "mV"}
        for k, edge in enumerate(("start", "end")):
            low, high = np.percentile(real[:, k], [5, 95])
            median = float(np.median(synthetic[:, k]))
            section[edge] = {"synthetic_median": median, "synthetic_p95": float(np.percentile(synthetic[:, k], 95)),
                             "real_test_median": float(np.median(real[:, k])),
                             "real_test_p95": float(high), "real_test_range": [float(low), float(high)],
                             "within_real_range": bool(low <= median <= high)}
        section["summary"] = "edge deviation mV " + ", ".join(
            f"{e} {section[e]['synthetic_median']:.3f} (real {section[e]['real_test_median']:.3f}, "
            f"{'within' if section[e]['within_real_range'] else 'outside'} its 5-95 %)" for e in ("start", "end"))
        return section

    def markdown(self, section: dict[str, Any]) -> list[str]:
        lines = [f"## Edge deviation (first / last {section['edge_samples']} samples, mV)", "",
                 "| edge | synthetic median | synthetic 95th pct | real median | real 5th..95th pct | within |",
                 "| --- | --- | --- | --- | --- | --- |"]
        for edge in ("start", "end"):
            e = section[edge]
            low, high = e["real_test_range"]
            lines.append(f"| {edge} | {e['synthetic_median']:.3f} | {e['synthetic_p95']:.3f} | "
                         f"{e['real_test_median']:.3f} | {low:.3f}..{high:.3f} | "
                         f"{'yes' if e['within_real_range'] else 'no'} |")
        return lines


class ECGExamples:
    """Figure ``examples.png``: one lead of a few real test beats and the synthetic beats of their conditions."""

    def __init__(self, *, fs: float = MEDIAN_BEAT_FS, lead: int = 1, lead_name: str = "II", count: int = 4,
                 file_name: str = "examples.png") -> None:
        self.fs, self.lead, self.lead_name, self.count, self.file_name = float(fs), int(lead), lead_name, int(count), file_name

    def __call__(self, data: EvaluationData, output_dir: Path) -> Path:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        figure = Figure(figsize=(3 * self.count, 4), dpi=100)
        FigureCanvasAgg(figure)
        time_s = np.arange(data.synthetic.shape[-1]) / self.fs
        for i, k in enumerate(np.linspace(0, len(data.test) - 1, min(self.count, len(data.test))).round().astype(int)):
            ax = figure.add_subplot(1, self.count, i + 1)
            ax.plot(time_s, data.test.items[k, self.lead].numpy(), color="0.5", label="real")
            ax.plot(time_s, data.synthetic[k, self.lead].numpy(), color="tab:red", label="synthetic")
            row = data.test.rows[k]
            ax.set_title(f"HR {row.get('heart_rate')} QT {row.get('qt')}", fontsize=8)
            ax.set_xlabel("s")
        figure.axes[0].set_ylabel(f"lead {self.lead_name} (mV)")
        figure.axes[0].legend(fontsize=7)
        path = Path(output_dir) / self.file_name
        with atomic_output_path(path) as tmp:
            figure.savefig(tmp, format="png")
        return path
