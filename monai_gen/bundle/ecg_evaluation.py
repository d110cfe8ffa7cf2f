"""What the ECG bundle's evaluation adds to the generic measures of :mod:`monai_gen.metrics.evaluation`.

``evaluate.json`` lists the generic measures (fidelity by measurement with :func:`measure_beats`, fidelity by probe,
distribution distances, memorisation) and these ECG ones, each beside the same number on the real test beats:

- :class:`QRSAlignment` — the fraction of beats whose QRS sits at the R index, as every training beat's does;
- :class:`LimbLeadConsistency` — the median Einthoven / Goldberger residual of the limb leads;
- :class:`EdgeArtefacts` — the fraction of beats that step more at their window's border than at their QRS;
- :class:`ECGExamples` — the figure of a few real test beats beside the synthetic beats of their conditions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from monai_gen.metrics.ecg import edge_step_ratio, limb_lead_residual, next_beat_rr_ms, qrs_alignment
from monai_gen.metrics.evaluation import EvaluationData
from monai_gen.transforms.ecg.functional import MEDIAN_BEAT_FS, MEDIAN_BEAT_R_INDEX
from monai_gen.transforms.ecg.measurements import measure_median_beat
from monai_gen.utils.atomic import atomic_output_path

__all__ = ["measure_beats", "QRSAlignment", "LimbLeadConsistency", "EdgeArtefacts", "ECGExamples"]


def measure_beats(beats: torch.Tensor | np.ndarray) -> dict[str, np.ndarray]:
    """QRS and QT (ms) of each R-aligned beat ``(N, 12, 576)`` at 500 Hz; NaN where not measurable.

    The RR is read from the beat itself (:func:`~monai_gen.metrics.ecg.next_beat_rr_ms`), never from a request.
    """
    qrs, qt = [], []
    for beat in np.asarray(beats, dtype=np.float64):
        rr = next_beat_rr_ms(beat, MEDIAN_BEAT_FS, r_index=MEDIAN_BEAT_R_INDEX)
        measured = measure_median_beat(beat, MEDIAN_BEAT_FS, r_index=MEDIAN_BEAT_R_INDEX, rr_ms=rr)
        qrs.append(measured.qrs_ms)
        qt.append(measured.qt_ms)
    return {"qrs": np.asarray(qrs, dtype=float), "qt": np.asarray(qt, dtype=float)}


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
