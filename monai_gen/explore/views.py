"""How the explorer shows and measures one modality's samples: ECG on clinical paper, images in a grey window.

A view is chosen from the bundle's inference config (:func:`view_for`): a config with ``lead_names`` and ``fs`` is an
ECG bundle (:class:`ECGView`: the 12 median beats on ECG paper, QRS / QT / heart rate measured with the LUDB-validated
delineation the evaluation uses), any other an image bundle (:class:`ImageView`: the bundle's PNG preview at a chosen
intensity window, 3D volumes as their three mid-planes; the conditions estimated by the bundle's shipped feature
extractor when it has one). Both draw with the library's own figures and writers.
"""

from __future__ import annotations

import io
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from monai.bundle import ConfigParser

__all__ = ["ECGView", "ImageView", "view_for"]


def view_for(parser: ConfigParser, root: Path) -> ECGView | ImageView:
    """The view of a bundle, from its parsed inference config (an ECG config declares ``lead_names`` and ``fs``)."""
    if "lead_names" in parser and "fs" in parser:
        return ECGView(fs=float(parser.get_parsed_content("fs")), lead_names=list(parser.get_parsed_content("lead_names")))
    window = parser.get_parsed_content("display_window") if "display_window" in parser else None
    extractor = None
    if "feature_extractor_file" in parser and Path(parser.get_parsed_content("feature_extractor_file")).is_file():
        from monai_gen.metrics.image_features import ImageFeatureExtractor

        extractor = ImageFeatureExtractor.load(parser.get_parsed_content("feature_extractor_file"))
    return ImageView(window=window, extractor=extractor)


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=figure.dpi)
    return buffer.getvalue()


def _finite(value: float) -> float | None:
    return None if value is None or not math.isfinite(float(value)) else round(float(value), 1)


class ECGView:
    """12-lead median beats on ECG paper (25 mm/s, 10 mm/mV) and their measured QRS, QT and heart rate.

    Args:
        fs: sampling rate of the samples in Hz.
        lead_names: one name per lead, in sample order.
    """

    kind = "ecg"
    measures = {"heart_rate": "bpm", "qrs": "ms", "qt": "ms"}

    def __init__(self, *, fs: float, lead_names: Sequence[str]) -> None:
        self.fs, self.lead_names = float(fs), list(lead_names)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "measures": self.measures, "label": "measured",
            "note": "measured on the generated beat with the LUDB-validated delineation; the heart rate is read from "
            "the next R peak inside the beat's window, so it is not measurable below about 80 bpm",
        }

    def measure(self, samples: torch.Tensor) -> list[dict[str, float | None]]:
        """QRS and QT (ms) and heart rate (bpm) of each beat ``(N, 12, T)`` (None where not measurable)."""
        from monai_gen.bundle.ecg_evaluation import measure_beats

        measured = measure_beats(samples)
        return [{name: _finite(measured[name][i]) for name in self.measures} for i in range(samples.shape[0])]

    def figure(self, sample: torch.Tensor, *, caption: str, window: Sequence[float] | None = None) -> bytes:
        """The sample ``(12, T)`` in mV as a PNG of its 12 beats on ECG paper (``window`` is an image control)."""
        from monai_gen.visualize.ecg import plot_median_beats

        figure = plot_median_beats(sample, self.fs, lead_names=self.lead_names, record_id="synthetic", caption=caption)
        return _png(figure)

    def reference_figure(self, item: torch.Tensor, *, caption: str) -> bytes:
        """A real training beat, drawn as the sample is."""
        from monai_gen.visualize.ecg import plot_median_beats

        return _png(plot_median_beats(item, self.fs, lead_names=self.lead_names, record_id="real", caption=caption))


class ImageView:
    """An image sample in grey at an intensity window, as the bundle's PNG writer draws it (anterior up); conditions
    estimated by the bundle's feature extractor (its head was trained on real training images to predict them).

    Args:
        window: default ``(low, high)`` intensities shown black and white (the bundle's ``display_window``); None:
            the sample's 0.5 / 99.5 percentiles.
        extractor: the bundle's :class:`~monai_gen.metrics.image_features.ImageFeatureExtractor`, or None.
    """

    kind = "image"

    def __init__(self, *, window: Sequence[float] | None = None, extractor: Any | None = None) -> None:
        self.window = None if window is None else (float(window[0]), float(window[1]))
        self.extractor = extractor

    @property
    def measures(self) -> dict[str, str]:
        if self.extractor is None:
            return {}
        return {**{name: "" for name in self.extractor.targets.continuous},
                **{name: "" for name in self.extractor.targets.categorical}}

    def describe(self) -> dict[str, Any]:
        note = ("estimated by the bundle's feature extractor (trained on real training images)" if self.extractor
                else "this bundle ships no feature extractor: nothing is measured")
        return {"kind": self.kind, "measures": self.measures, "window": list(self.window) if self.window else None,
                "label": "estimated", "note": note}

    def measure(self, samples: torch.Tensor) -> list[dict[str, Any]]:
        """The extractor's estimate of every condition it predicts, per sample (empty without an extractor)."""
        if self.extractor is None or tuple(samples.shape[1:]) != self.extractor.image_shape:
            return [{} for _ in range(samples.shape[0])]
        with torch.no_grad():
            outputs = self.extractor.network(samples.float()).double().numpy()
        return [_decode_targets(row, self.extractor.targets) for row in outputs]

    def figure(self, sample: torch.Tensor, *, caption: str = "", window: Sequence[float] | None = None) -> bytes:
        """The sample ``(C, *spatial)`` as the bundle's grey PNG preview at ``window`` (default: the view's)."""
        from monai_gen.data.sample_writers import PNGSampleWriter

        shown = window if window is not None else self.window
        with tempfile.TemporaryDirectory(prefix="monai-gen-explore-") as folder:
            stem = Path(folder) / "sample"
            (path,) = PNGSampleWriter(window=shown)(sample, stem, {})
            return Path(path).read_bytes()

    def reference_figure(self, item: torch.Tensor, *, caption: str) -> bytes:
        return self.figure(item)


def _decode_targets(row: np.ndarray, targets: Any) -> dict[str, Any]:
    """Head outputs -> physical values (continuous: z-score * std + mean) and the most likely category."""
    decoded: dict[str, Any] = {}
    for j, (name, (mean, std)) in enumerate(targets.continuous.items()):
        decoded[name] = round(float(row[j] * std + mean), 3)
    start = len(targets.continuous)
    for name, categories in targets.categorical.items():
        decoded[name] = categories[int(np.argmax(row[start : start + len(categories)]))]
        start += len(categories)
    return decoded

