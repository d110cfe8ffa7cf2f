"""How the explorer shows and measures one modality's samples: ECG on clinical paper, images in a grey window, CT
volumes in three orthogonal planes with HU windows.

A view is chosen from the bundle's inference config (:func:`view_for`): a config with ``lead_names`` and ``fs`` is an
ECG bundle (:class:`ECGView`: the 12 median beats on ECG paper, QRS / QT / heart rate measured with the LUDB-validated
delineation the evaluation uses); a 3D CT bundle (``metadata.json``'s image modality ``CT``, volume samples) gets
:class:`CTView` (axial, coronal and sagittal planes through any slice, drawn by
:func:`monai_gen.visualize.ct_preview.plot_ct_plane` at a soft-tissue, lung or bone window); any other an image bundle
(:class:`ImageView`: the bundle's PNG preview at a chosen intensity window, a cine as a looping GIF, 3D volumes as their
three mid-planes). Image views estimate the conditions with the bundle's shipped feature extractor when it has one
(``feature_extractor_file``); a CT bundle's is a 2.5D slice extractor, read on the slices its ``feature_extractor``
config trains it on and averaged per volume. All draw with the library's own figures and writers.
"""

from __future__ import annotations

import io
import math
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib.image
import numpy as np
import torch
from monai.utils import look_up_option

from monai_gen.data.dicom_writer import CT_WINDOWS
from monai_gen.data.ecg_meta import STANDARD_LEADS
from monai_gen.metrics.image_features import ImageFeatureExtractor
from monai_gen.metrics.slice_features import SLICE_OFFSET, SLICE_PLANE, SLICE_PLANES, volume_slices
from monai_gen.visualize.ct_preview import CT_PLANES
from monai_gen.visualize.ecg import GAIN_MM_PER_MV, median_beats_caption, plot_median_beats, standard_leads

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from monai.bundle import ConfigParser

__all__ = ["CT_WINDOW_PRESETS", "ECGView", "ImageView", "CTView", "view_for"]

CT_WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    **{name.lower(): window for name, window in CT_WINDOWS.items()},  # those a synthetic CT series carries
    "bone": (400.0, 1800.0),
}
"""The CT view's windows: name -> ``(centre, width)`` in HU (soft tissue W400/L40, lung W1500/L-600, bone W1800/L400)."""


_SLICE_SETTINGS = ("planes", "n_slices", "slice_step", "pad_value")
"""The arguments of :func:`~monai_gen.metrics.slice_features.volume_slices` a CT bundle's ``feature_extractor`` is
trained with (its ``cached_slice_feature_extractor`` arguments), which :class:`CTView` reads its volumes with."""


def view_for(parser: ConfigParser, root: Path) -> ECGView | ImageView | CTView:
    """The view of a bundle, from its parsed inference config (an ECG config declares ``lead_names`` and ``fs``, a CT
    bundle's metadata the image modality ``CT`` and its ``sample_shape`` three spatial axes)."""
    if "lead_names" in parser and "fs" in parser:
        return ECGView(fs=float(parser.get_parsed_content("fs")), lead_names=list(parser.get_parsed_content("lead_names")))
    extractor = None
    if "feature_extractor_file" in parser and Path(parser.get_parsed_content("feature_extractor_file")).is_file():
        extractor = ImageFeatureExtractor.load(parser.get_parsed_content("feature_extractor_file"))
    modality = parser.get("_meta_#network_data_format#inputs#image#modality")
    if modality == "CT" and len(parser.get_parsed_content("sample_shape")) == 4:
        spacing = parser.get_parsed_content("spacing_mm") if "spacing_mm" in parser else None
        slices = {name: parser.get_parsed_content(f"feature_extractor#{name}") for name in _SLICE_SETTINGS
                  if f"feature_extractor#{name}" in parser}  # the slices the bundle trains its extractor on
        return CTView(spacing_mm=spacing, extractor=extractor, slices=slices)
    window = parser.get_parsed_content("display_window") if "display_window" in parser else None
    return ImageView(window=window, extractor=extractor)


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=figure.dpi)
    return buffer.getvalue()


def _finite(value: float) -> float | None:
    return None if value is None or not math.isfinite(float(value)) else round(float(value), 1)


_KEPT_PAGES = 4  # drawn ECG pages kept per view, one per layout (beat length, caption lines, caption font size)


class ECGView:
    """12-lead median beats on ECG paper (25 mm/s, 10 mm/mV) and their measured QRS, QT and heart rate.

    Args:
        fs: sampling rate of the samples in Hz.
        lead_names: one name per lead, in sample order.
    """

    kind = "ecg"
    measures = {"heart_rate": "bpm", "qrs": "ms", "qt": "ms"}
    planes: tuple[str, ...] = ()

    def __init__(self, *, fs: float, lead_names: Sequence[str]) -> None:
        self.fs, self.lead_names = float(fs), list(lead_names)
        self._pages: dict[tuple[int, int, float], _BeatPage] = {}
        self._lock = threading.Lock()  # a page is one Agg canvas: one drawing at a time

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
        return self._draw(sample, record_id="synthetic", caption=caption)

    def reference_figure(self, item: torch.Tensor, *, caption: str) -> bytes:
        """A real training beat, drawn as the sample is."""
        return self._draw(item, record_id="real", caption=caption)

    def _draw(self, beats: torch.Tensor, *, record_id: str, caption: str) -> bytes:
        """:func:`~monai_gen.visualize.ecg.plot_median_beats` of ``beats`` as a PNG, on a kept page of the same layout
        (beat length, caption lines and font size) when there is one: building the 12 panels took 0.20 s of a fresh
        page's 0.29 s on a busy core and drawing the paper most of the rest, so only the traces and caption are redrawn."""
        with self._lock:
            text, fontsize = median_beats_caption(beats, self.fs, record_id=record_id, caption=caption)
            key = (int(beats.shape[-1]), text.count("\n") + 1, fontsize)
            page = self._pages.get(key)
            if page is None:
                page = _BeatPage(plot_median_beats(beats, self.fs, lead_names=self.lead_names, record_id=record_id,
                                                   caption=caption))
                if len(self._pages) >= _KEPT_PAGES:
                    self._pages.pop(next(iter(self._pages)))
                self._pages[key] = page
            return page.redraw(beats, self.lead_names, text)


class _BeatPage:
    """A drawn median-beat page kept for redrawing: its paper, grid, labels and calibration pulses rendered once
    (the background), then per beat only the 12 traces and the caption drawn over a copy of it (Agg blitting).

    The redrawn PNG equals a fresh :func:`~monai_gen.visualize.ecg.plot_median_beats` figure except where a trace is
    drawn in another order than there: over its own lead label or lead-change mark (there under them), or over a
    neighbouring panel's grid where it leaves its row (there under that grid).
    """

    def __init__(self, figure: Figure) -> None:
        self.figure, self.caption = figure, figure.texts[-1]
        self.traces = {axes.get_label(): axes.lines[0] for axes in figure.axes}  # each panel's first line is its beat
        hidden = (*self.traces.values(), self.caption)
        for artist in hidden:
            artist.set_visible(False)
        figure.canvas.draw()
        self.background = figure.canvas.copy_from_bbox(figure.bbox)
        for artist in hidden:
            artist.set_visible(True)

    def redraw(self, beats: torch.Tensor, lead_names: Sequence[str], caption: str) -> bytes:
        """The page with ``beats`` ``(12, T)`` in mV and the wrapped ``caption``, as a PNG."""
        signal = standard_leads(beats, lead_names)
        canvas = self.figure.canvas
        canvas.restore_region(self.background)
        for name, line in self.traces.items():
            line.set_ydata(signal[STANDARD_LEADS.index(name)] * GAIN_MM_PER_MV)
            line.axes.draw_artist(line)
        self.caption.set_text(caption)
        self.figure.draw_artist(self.caption)
        buffer = io.BytesIO()
        # what savefig's PNG writer does after drawing the canvas (same encoder, size, dpi and metadata), at zlib level
        # 1 instead of 6: about 8 ms less per page on a busy core for a third more bytes (69 kB instead of 53 kB)
        matplotlib.image.imsave(buffer, canvas.buffer_rgba(), format="png", origin="upper", dpi=self.figure.dpi,
                                pil_kwargs={"compress_level": 1})
        return buffer.getvalue()


class ImageView:
    """An image sample in grey at an intensity window, as the bundle's PNG writer draws it (anterior up); conditions
    estimated by the bundle's feature extractor (its head was trained on real training images to predict them).

    Args:
        window: default ``(low, high)`` intensities shown black and white (the bundle's ``display_window``); None:
            the sample's 0.5 / 99.5 percentiles.
        extractor: the bundle's :class:`~monai_gen.metrics.image_features.ImageFeatureExtractor`, or None.
    """

    kind = "image"
    planes: tuple[str, ...] = ()

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

    def measure_cine(self, frames: torch.Tensor) -> dict[str, Any]:
        """A cine's estimates ``(T, C, H, W)``: the extractor's per frame summarised (continuous: mean over the
        frames; categorical: the most frequent), and ``contraction``, the bright blood-pool area ratio
        ``(A_ED - A_min) / A_ED`` of :mod:`monai_gen.metrics.cardiac` with end-diastole at frame 0 (phase 0)."""
        from monai_gen.metrics.cardiac import bright_area_curve, contraction_ratio

        per_frame = self.measure(frames)
        summary: dict[str, Any] = {}
        for name in per_frame[0]:
            values = [m[name] for m in per_frame]
            if all(isinstance(v, (int, float)) for v in values):
                summary[name] = round(float(np.mean(values)), 3)
            else:
                summary[name] = max(set(values), key=values.count)
        curve = bright_area_curve(self._displayed(frames))
        summary["contraction"] = _finite3(contraction_ratio(curve, 0, int(np.argmin(curve))))
        return summary

    def cine_figure(self, frames: torch.Tensor, *, frame_time_ms: float, window: Sequence[float] | None = None) -> bytes:
        """A cine ``(T, C, H, W)`` as the looping GIF ``monai-gen generate --cine`` writes (anterior up), at ``window``
        (default: the view's)."""
        from monai_gen.visualize.cine import save_cine_gif

        shown = window if window is not None else self.window
        with tempfile.TemporaryDirectory(prefix="monai-gen-explore-") as folder:
            path = save_cine_gif(self._displayed(frames), Path(folder) / "cine.gif", frame_time_ms=frame_time_ms,
                                 window=None if shown is None else (float(shown[0]), float(shown[1])))
            return path.read_bytes()

    @staticmethod
    def _displayed(frames: torch.Tensor) -> np.ndarray:
        """``(T, rows, columns)`` of a cine's first channel as the PNG writer shows a slice (``(x, y)`` turned so
        anterior, +y, is up), as :func:`monai_gen.bundle.image_generation.cine_preview` turns it."""
        array = np.asarray(torch.as_tensor(frames)[:, 0].detach().cpu(), dtype=np.float32)
        if array.ndim != 3:
            raise ValueError(f"a cine is (T, C, H, W) frames, got shape {tuple(frames.shape)}.")
        return np.rot90(array, axes=(1, 2))


class CTView(ImageView):
    """A CT volume in HU as a radiology viewer shows it: axial, coronal and sagittal planes (through the centre, or
    any slice), each drawn by :func:`~monai_gen.visualize.ct_preview.plot_ct_plane` at one window of
    :data:`CT_WINDOW_PRESETS` or any ``(low, high)`` HU range; the volume's conditions estimated by the bundle's 2.5D
    slice feature extractor (:mod:`monai_gen.metrics.slice_features`): its head read on the volume's slices and
    averaged (see :meth:`measure`).

    Args:
        spacing_mm: voxel size (mm) per axis, for the planes' physical aspect; None: 1 mm.
        extractor: the bundle's slice :class:`~monai_gen.metrics.image_features.ImageFeatureExtractor` (2D, on slices
            ``(C, *slice_size)``), or None.
        slices: the :func:`~monai_gen.metrics.slice_features.volume_slices` arguments it was trained with
            (``planes``, ``n_slices``, ``slice_step``, ``pad_value``; those absent take that function's defaults);
            the slice size is the extractor's.
        panel_inches: width of each plane's picture at 100 dpi.
    """

    kind = "ct"
    planes = CT_PLANES
    default_window = "soft tissue"

    def __init__(self, *, spacing_mm: Sequence[float] | None = None, extractor: Any | None = None,
                 slices: Mapping[str, Any] | None = None, panel_inches: float = 4.0) -> None:
        centre, width = CT_WINDOW_PRESETS[self.default_window]
        super().__init__(window=(centre - width / 2, centre + width / 2), extractor=extractor)
        self.spacing_mm = None if spacing_mm is None else [float(s) for s in spacing_mm]
        self.slices = {"planes": list(SLICE_PLANES), **(slices or {})}
        for plane in self.slices["planes"]:
            look_up_option(plane, SLICE_PLANES)  # here, not as an estimate silently missing
        self.panel_inches = float(panel_inches)

    @property
    def measures(self) -> dict[str, str]:
        """The volume's conditions the extractor estimates (its slice targets, plane and offset, left out)."""
        return {name: unit for name, unit in super().measures.items() if name not in (SLICE_PLANE, SLICE_OFFSET)}

    def describe(self) -> dict[str, Any]:
        described = {**super().describe(), "planes": list(self.planes), "unit": "HU",
                     "presets": {name: list(window) for name, window in CT_WINDOW_PRESETS.items()},
                     "preset": self.default_window}
        if self.extractor is not None:
            n = self.slices.get("n_slices", "the")
            described["note"] = (f"estimated by the bundle's slice feature extractor (trained on slices of real "
                                 f"training patches): the mean of its estimates over {n} central slices of each of "
                                 f"the {', '.join(self.slices['planes'])} planes; its accuracy is in the bundle's "
                                 "README")
        return described

    def measure(self, samples: torch.Tensor) -> list[dict[str, Any]]:
        """The extractor's estimate of each volume ``(N, C, x, y, z)`` (RAS, HU): its head read on the slices it was
        trained on (the central ones of each plane, padded or cropped to its slice size about the volume's centre,
        so a volume larger than its training patches is read at its centre) and averaged over them (continuous
        conditions: the mean; categorical: the largest mean logit). Empty without an extractor, or for a volume with
        fewer voxels along an axis than the slices span."""
        if self.extractor is None:
            return [{} for _ in range(samples.shape[0])]
        settings = {k: v for k, v in self.slices.items() if k != "planes"}
        try:
            slices = [volume_slices(samples, plane, slice_size=self.extractor.image_shape[1:], **settings)
                      for plane in self.slices["planes"]]
        except ValueError:  # more slices than the volume has (planes were checked, the rest trained this extractor)
            return [{} for _ in range(samples.shape[0])]
        shape = (samples.shape[0], -1, self.extractor.targets.num_outputs)  # volume_slices cuts volume by volume
        with torch.no_grad():
            outputs = torch.cat([self.extractor.network(s.float()).double().reshape(shape) for s in slices], 1)
        means = outputs.mean(1).numpy()  # (N, outputs): over every plane's slices of each volume
        return [{k: v for k, v in _decode_targets(row, self.extractor.targets).items() if k in self.measures}
                for row in means]

    def plane_sizes(self, sample: torch.Tensor) -> dict[str, int]:
        """Slices along each plane's fixed axis of a sample ``(C, x, y, z)`` (RAS): axial z, coronal y, sagittal x."""
        x, y, z = (int(n) for n in sample.shape[-3:])
        return {"axial": z, "coronal": y, "sagittal": x}

    def figure(self, sample: torch.Tensor, *, caption: str = "", window: Sequence[float] | None = None,
               plane: str = "axial", index: int | None = None) -> bytes:
        """One ``plane`` of the volume ``(1, x, y, z)`` in HU at ``window`` ``(low, high)`` HU (default soft tissue),
        through slice ``index`` (default the middle one).

        Raises:
            ValueError: an unknown plane, an index outside the volume, or ``low >= high``.
        """
        from monai_gen.visualize.ct_preview import plot_ct_plane

        low, high = (float(v) for v in (window if window is not None else self.window))
        centre, width = (low + high) / 2, high - low
        name = next((n for n, w in CT_WINDOW_PRESETS.items() if w == (centre, width)), "window")
        figure = plot_ct_plane(sample, plane, spacing_mm=self.spacing_mm, windows={name: (centre, width)}, index=index,
                               title=caption, panel_inches=self.panel_inches)
        return _png(figure)

    def reference_figure(self, item: torch.Tensor, *, caption: str) -> bytes:
        return self.figure(item, caption=caption)


def _finite3(value: float) -> float | None:
    return None if value is None or not math.isfinite(float(value)) else round(float(value), 3)


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

