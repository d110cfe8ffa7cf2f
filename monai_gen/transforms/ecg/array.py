"""ECG array transforms over channel-first ``(leads, samples)`` signals in mV (see :mod:`monai_gen.data.ecg_meta`).

Each transform takes numpy, torch or MetaTensor and returns the same kind. A MetaTensor carries its sampling
rate in the affine (``affine[0, 0] = 1 / fs``) and its lead names in ``meta["lead_names"]``; plain arrays get
them from the ``fs=`` / ``lead_names=`` arguments. Transforms that change the rate or the leads update the
affine and the meta, so the chain ``StandardiseLeads -> ResampleECG -> MedianBeat -> MeasureECG`` keeps one
source of truth.

Examples:
    >>> from monai.transforms import Compose, LoadImage
    >>> from monai_gen.data.ecg_readers import WFDBReader
    >>> chain = Compose([LoadImage(reader=WFDBReader()), StandardiseLeads(), ResampleECG(500), MedianBeat()])
    >>> beat = chain("E07500.hea")  # (12, 576) MetaTensor, meta["n_beats"], meta["rr_ms"], meta["r_peak_index"]
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from fractions import Fraction
from typing import Any

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.data import ImageReader, MetaTensor
from monai.data.meta_obj import get_track_meta
from monai.transforms import CenterSpatialCrop, LoadImage, SpatialCrop, SpatialPad
from monai.transforms.inverse import InvertibleTransform
from monai.transforms.transform import Transform
from monai.utils import TraceKeys, TransformBackends, convert_to_dst_type, convert_to_tensor, look_up_option
from scipy.signal import butter, resample_poly, sosfiltfilt

from monai_gen.data.ecg_meta import LEAD_NAMES, STANDARD_LEADS, UNITS, ecg_affine, ecg_sampling_rate
from monai_gen.data.ecg_readers import CPSCMatReader, DICOMECGReader, HL7aECGReader, WFDBReader, canonical_lead_name
from monai_gen.transforms.ecg.functional import MEDIAN_BEAT_FS, MEDIAN_BEAT_R_INDEX, median_beat
from monai_gen.transforms.ecg.measurements import measure_ecg, measure_median_beat

__all__ = [
    "LoadECG",
    "LIMB_LEAD_COEFFICIENTS",
    "AMPLITUDE_METHODS",
    "StandardiseLeads",
    "DeriveLimbLeads",
    "CropContextMargin",
    "ResampleECG",
    "RemoveBaselineWander",
    "BandPassECG",
    "FixedLengthECG",
    "MedianBeat",
    "NormaliseAmplitude",
    "MeasureECG",
    "N_BEATS",
    "R_PEAK_INDEX",
    "RR_MS",
    "MEASUREMENTS",
    "DERIVED_LEADS",
]

LIMB_LEAD_COEFFICIENTS: dict[str, tuple[float, float]] = {
    "III": (-1.0, 1.0),  # Einthoven: III = II - I
    "aVR": (-0.5, -0.5),  # Goldberger: aVR = -(I + II) / 2
    "aVL": (1.0, -0.5),  # aVL = I - II / 2
    "aVF": (-0.5, 1.0),  # aVF = II - I / 2
}
"""Each derived limb lead as ``(a, b)`` with ``lead = a * I + b * II`` (Einthoven's and Goldberger's laws)."""

AMPLITUDE_METHODS = ("max_abs", "std", "fixed")
"""Options of :class:`NormaliseAmplitude`."""

# meta keys written by MedianBeat and MeasureECG
R_PEAK_INDEX = "r_peak_index"  # int, sample of R in a median beat
N_BEATS = "n_beats"  # int, beats the median was taken over
RR_MS = "rr_ms"  # float, median RR interval of the rhythm in ms (NaN with a single beat)
MEASUREMENTS = "measurements"  # dict of ECGMeasurements.as_dict(): ms and bpm
DERIVED_LEADS = "derived_leads"  # list[str], limb leads computed by StandardiseLeads


def _where(img: Any) -> str:
    meta = getattr(img, "meta", None) or {}
    return str(meta.get("filename_or_obj") or meta.get("record_id") or "signal")


def _option(name: str, value: str, options: Sequence[str]) -> str:
    """``look_up_option`` whose message also names the argument."""
    try:
        return look_up_option(value, options)
    except ValueError as err:
        raise ValueError(f"{name} must be one of {list(options)}, got {value!r}.") from err


def _signal(img: NdarrayOrTensor, where: str) -> np.ndarray:
    """The ``(leads, samples)`` float64 numpy copy of ``img``; rejects other shapes and NaN / infinite samples."""
    array = np.asarray(convert_to_tensor(img, track_meta=False).detach().cpu().numpy(), dtype=np.float64)
    if array.ndim != 2 or array.shape[1] < 2:
        raise ValueError(f"{where}: an ECG must be (leads, samples); got shape {tuple(array.shape)}.")
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).any(axis=1).sum())
        raise ValueError(f"{where}: {bad} lead(s) contain NaN or infinite samples; repair or drop them first.")
    return array


def _sampling_rate(img: Any, fs: float | None, where: str) -> float:
    """Rate from a MetaTensor's 1D affine, else the ``fs`` argument; both given and different is an error."""
    meta_fs = None
    if isinstance(img, MetaTensor):
        try:
            meta_fs = ecg_sampling_rate(img)
        except ValueError:  # a MetaTensor without an ECG affine, e.g. made from a plain tensor: use fs
            meta_fs = None
    if meta_fs is not None and fs is not None and not np.isclose(meta_fs, fs):
        raise ValueError(f"{where}: fs={fs} Hz disagrees with the rate in the affine ({meta_fs} Hz).")
    rate = meta_fs if meta_fs is not None else fs
    if rate is None:
        raise ValueError(f"{where}: no sampling rate; pass fs= (Hz) for a {type(img).__name__} without an ECG affine.")
    if not (np.isfinite(rate) and rate > 0):
        raise ValueError(f"{where}: fs must be a positive number of Hz, got {rate}.")
    return float(rate)


def _like(result: np.ndarray, img: NdarrayOrTensor, *, fs: float | None = None, **meta: Any) -> NdarrayOrTensor:
    """``result`` as the kind, dtype and device of ``img``; a MetaTensor gets ``img``'s meta plus ``meta``.

    ``fs`` sets the rate in a new affine (never edits ``img``'s affine in place).
    """
    floating = img.dtype.is_floating_point if isinstance(img, torch.Tensor) else np.issubdtype(img.dtype, np.floating)
    out = convert_to_dst_type(np.ascontiguousarray(result), dst=img, dtype=None if floating else np.float32)[0]
    if isinstance(out, MetaTensor) and get_track_meta():
        out.meta = dict(img.meta)
        affine = img.affine.clone()
        if fs is not None and affine.shape == (2, 2):
            affine[0, 0] = 1.0 / fs
        elif fs is not None:  # a MetaTensor without an ECG affine (e.g. made from a plain tensor) gets one
            affine = torch.as_tensor(ecg_affine(fs), dtype=torch.float64)
        out.affine = affine
        out.meta.update(meta)
    return out


class LoadECG(Transform):
    """Load an ECG file with the reader that claims it: MONAI ``LoadImage`` with the ECG readers registered.

    WFDB (``.hea``, or its ``.dat`` / ``.mat`` signal file), DICOM ECG waveform, CPSC 2018 ``.mat`` and HL7 aECG
    ``.xml`` files are told apart by each reader's ``verify_suffix`` (the DICOM reader checks the SOP class, the
    CPSC reader the struct, the aECG reader the root element), so the reader's own error (naming the file and the problem) reaches the caller instead of
    ``LoadImage``'s generic "cannot find a suitable reader".

    Args:
        readers: ECG readers to choose from, in order of preference; default WFDB, CPSC MATLAB, DICOM ECG, aECG.

    Returns the ECG contract of :mod:`monai_gen.data.ecg_meta`: a ``(leads, samples)`` float32 MetaTensor in mV.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: no reader recognises the file (e.g. a CT DICOM), or the chosen reader rejects it.
    """

    def __init__(self, readers: Sequence[ImageReader] | None = None) -> None:
        self.readers = list(readers) if readers else [WFDBReader(), CPSCMatReader(), DICOMECGReader(), HL7aECGReader()]
        self.loader = LoadImage(reader=self.readers, image_only=True, dtype=np.float32)

    def select_reader(self, filename: str | os.PathLike) -> ImageReader:
        """The first reader whose ``verify_suffix`` claims ``filename``."""
        if not os.path.isfile(filename):
            raise FileNotFoundError(f"ECG file {filename} does not exist.")
        for reader in self.readers:
            if reader.verify_suffix(filename):
                return reader
        names = [type(r).__name__ for r in self.readers]
        raise ValueError(f"{filename}: not an ECG file that {names} can read (WFDB .hea / .dat / .mat with its "
                         "header, CPSC 2018 .mat struct ECG, DICOM ECG waveform, HL7 aECG .xml).")

    def __call__(self, filename: str | os.PathLike) -> MetaTensor:
        return self.loader(filename, reader=self.select_reader(filename))


class StandardiseLeads(Transform):
    """Reorder an ECG to the 12 standard leads, deriving III, aVR, aVL, aVF from I and II when absent.

    Extra leads (e.g. PTB's Frank leads vx, vy, vz) are dropped. Names are matched after
    :func:`~monai_gen.data.ecg_readers.canonical_lead_name` (``"avr"``, ``"Lead II"`` work).
    A MetaTensor's ``meta["lead_names"]`` becomes ``STANDARD_LEADS`` and ``meta["derived_leads"]`` lists the
    leads computed here.

    Args:
        lead_names: names of the input channels; required for numpy / torch input, otherwise read from meta
            (an argument given for a MetaTensor overrides the meta).

    Input ``(leads, samples)``, output ``(12, samples)``.

    Raises:
        ValueError: a standard lead is missing and cannot be derived (names the leads and the file), names not
            matching the channel count, a wrong shape, NaN.

    See: Einthoven's and Goldberger's laws (:data:`LIMB_LEAD_COEFFICIENTS`).
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, lead_names: Sequence[str] | None = None) -> None:
        self.lead_names = None if lead_names is None else [str(n) for n in lead_names]

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        where = _where(img)
        names = self.lead_names or (getattr(img, "meta", None) or {}).get(LEAD_NAMES)
        if names is None:
            raise ValueError(f"{where}: no lead names; pass lead_names= for a {type(img).__name__} without meta.")
        signal = _signal(img, where)
        if len(names) != signal.shape[0]:
            raise ValueError(f"{where}: {signal.shape[0]} leads but {len(names)} lead names {list(names)}.")
        rows = {canonical_lead_name(n): row for n, row in zip(names, signal, strict=True)}
        if len(rows) != len(names):
            raise ValueError(f"{where}: duplicate lead names {list(names)}; each lead must appear once.")
        derived = [n for n in LIMB_LEAD_COEFFICIENTS if n not in rows]
        missing = [n for n in STANDARD_LEADS if n not in rows and not (n in derived and {"I", "II"} <= rows.keys())]
        if missing:
            hint = " (III, aVR, aVL, aVF can be derived only when I and II are present)" if derived else ""
            raise ValueError(f"{where}: missing leads {missing}{hint}; the record has leads {list(names)}.")
        for name in derived:
            a, b = LIMB_LEAD_COEFFICIENTS[name]
            rows[name] = a * rows["I"] + b * rows["II"]
        stacked = np.stack([rows[n] for n in STANDARD_LEADS])
        return _like(stacked, img, **{LEAD_NAMES: list(STANDARD_LEADS), DERIVED_LEADS: derived})


class DeriveLimbLeads(Transform):
    """Recompute III, aVR, aVL and aVF from I and II in standard-order 12-lead ECGs ``(..., 12, samples)``.

    A recorded ECG obeys Einthoven's and Goldberger's laws exactly (an electrocardiograph measures 8 independent
    leads and computes these 4); a generator that outputs 12 leads independently does not. Applied to its
    output, this makes the limb leads consistent by construction. Works on single ECGs and batches (numpy,
    torch, MetaTensor; metadata kept).

    See: :data:`LIMB_LEAD_COEFFICIENTS`, :func:`monai_gen.metrics.ecg.limb_lead_residual`.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        if img.ndim < 2 or img.shape[-2] != len(STANDARD_LEADS):
            raise ValueError(f"DeriveLimbLeads needs (..., 12, samples) in standard lead order, got shape {tuple(img.shape)}.")
        out = img.clone() if isinstance(img, torch.Tensor) else np.array(img, copy=True)
        lead_i, lead_ii = img[..., 0, :], img[..., 1, :]
        for name, (a, b) in LIMB_LEAD_COEFFICIENTS.items():
            out[..., STANDARD_LEADS.index(name), :] = a * lead_i + b * lead_ii
        return out


class CropContextMargin(Transform):
    """Drop ``margin`` samples at both ends of beats ``(..., leads, samples)``: ``samples - 2 * margin`` remain.

    A convolutional denoiser sees no signal beyond its window, so its estimate is rough at the first and last
    samples (generated beats stepped there, issue 10). The ECG bundle therefore trains and generates a window
    ``margin`` samples wider on each side than the beat it returns, and this crops the margin off (the R index
    moves from ``r_index + margin`` back to ``r_index``). Works on single beats and batches (numpy, torch).

    Raises:
        ValueError: (at call) fewer than ``2 * margin + 1`` samples.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, margin: int) -> None:
        if int(margin) < 0:
            raise ValueError(f"CropContextMargin: margin must be >= 0 samples, got {margin}.")
        self.margin = int(margin)

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        if img.ndim < 2 or img.shape[-1] <= 2 * self.margin:
            raise ValueError(f"CropContextMargin({self.margin}) needs (..., leads, more than {2 * self.margin} samples), "
                             f"got shape {tuple(img.shape)}.")
        return img[..., self.margin : img.shape[-1] - self.margin]


class ResampleECG(Transform):
    """Resample an ECG to ``target_fs`` Hz by polyphase filtering (scipy ``resample_poly``).

    The rate ratio is reduced to a fraction with denominator at most 1000 (exact for the usual 200, 250, 257,
    360, 500, 1000 Hz). A MetaTensor's affine is set to the new rate, so ``ecg_sampling_rate`` reports it.

    Args:
        target_fs: output rate in Hz.
        fs: input rate in Hz, required for numpy / torch input (a MetaTensor's affine holds it).

    Input ``(leads, T)`` at ``fs``, output ``(leads, ceil(T * target_fs / fs))``. A median beat's
    ``meta["r_peak_index"]`` is rescaled to the new rate.

    See: scipy.signal.resample_poly (Kaiser-windowed FIR anti-aliasing filter, zero phase).
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, target_fs: float, *, fs: float | None = None) -> None:
        if not (np.isfinite(target_fs) and target_fs > 0):
            raise ValueError(f"target_fs must be a positive number of Hz, got {target_fs}.")
        self.target_fs, self.fs = float(target_fs), fs

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        where = _where(img)
        fs = _sampling_rate(img, self.fs, where)
        signal = _signal(img, where)
        ratio = Fraction(self.target_fs / fs).limit_denominator(1000)
        # padtype="line": extend the signal linearly, so a baseline offset makes no edge transient
        resampled = signal if ratio == 1 else resample_poly(
            signal, ratio.numerator, ratio.denominator, axis=-1, padtype="line")
        meta = getattr(img, "meta", None) or {}
        r_peak = {R_PEAK_INDEX: int(round(meta[R_PEAK_INDEX] * ratio))} if R_PEAK_INDEX in meta else {}
        return _like(resampled, img, fs=fs * ratio.numerator / ratio.denominator, **r_peak)


def _zero_phase_filter(signal: np.ndarray, fs: float, *, low_hz: float | None, high_hz: float | None,
                       order: int, where: str) -> np.ndarray:
    """Butterworth filter run forwards and backwards (zero phase, effective order ``2 * order``)."""
    nyquist = fs / 2.0
    for name, value in (("low_hz", low_hz), ("high_hz", high_hz)):
        if value is not None and not 0 < value < nyquist:
            raise ValueError(f"{where}: {name} must lie in (0, {nyquist:g}) Hz (Nyquist at fs={fs:g}), got {value}.")
    if low_hz is not None and high_hz is not None and low_hz >= high_hz:
        raise ValueError(f"{where}: low_hz ({low_hz}) must be below high_hz ({high_hz}).")
    if low_hz is not None and high_hz is not None:
        sos = butter(order, [low_hz, high_hz], btype="bandpass", fs=fs, output="sos")
    else:
        sos = butter(order, low_hz or high_hz, btype="highpass" if low_hz else "lowpass", fs=fs, output="sos")
    try:
        return sosfiltfilt(sos, signal, axis=-1)
    except ValueError as err:
        raise ValueError(f"{where}: {signal.shape[-1]} samples are too few to filter at fs={fs:g} Hz.") from err


class BandPassECG(Transform):
    """Zero-phase Butterworth band-pass filter (default 0.5-40 Hz, the usual diagnostic-display band).

    Args:
        low_hz: lower cut-off (-3 dB per pass) in Hz; ``None`` for a low-pass filter.
        high_hz: upper cut-off in Hz, below Nyquist; ``None`` for a high-pass filter.
        order: Butterworth order of each pass (the signal is filtered forwards and backwards).
        fs: rate in Hz, required for numpy / torch input.

    Input and output ``(leads, samples)`` in mV; rate and meta unchanged.

    See: scipy.signal.butter / sosfiltfilt; AHA recommendations (Kligfield et al. 2007) on ECG bandwidth.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, low_hz: float | None = 0.5, high_hz: float | None = 40.0, *, order: int = 2,
                 fs: float | None = None) -> None:
        if low_hz is None and high_hz is None:
            raise ValueError("give low_hz, high_hz or both; got neither.")
        if int(order) < 1:
            raise ValueError(f"order must be a positive integer, got {order}.")
        self.low_hz, self.high_hz, self.order, self.fs = low_hz, high_hz, int(order), fs

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        where = _where(img)
        fs = _sampling_rate(img, self.fs, where)
        filtered = _zero_phase_filter(
            _signal(img, where), fs, low_hz=self.low_hz, high_hz=self.high_hz, order=self.order, where=where
        )
        return _like(filtered, img)


class RemoveBaselineWander(BandPassECG):
    """Remove baseline wander with a zero-phase Butterworth high-pass filter (default cut-off 0.5 Hz).

    0.5 Hz lies under the lowest heart rates of interest (30 bpm) yet above respiration-driven wander
    (0.15-0.3 Hz); the zero-phase filter leaves the ST segment's shape undistorted.

    Args:
        cutoff_hz: high-pass cut-off (-3 dB per pass) in Hz.
        order: Butterworth order of each pass.
        fs: rate in Hz, required for numpy / torch input.

    See: Kligfield et al. 2007 (AHA), low-frequency cut-off for a zero-phase filter.
    """

    def __init__(self, cutoff_hz: float = 0.5, *, order: int = 2, fs: float | None = None) -> None:
        super().__init__(cutoff_hz, None, order=order, fs=fs)


@contextmanager
def _one_dim_affine_ok() -> Iterator[None]:
    """Silence MONAI's "Only 2d and 3d affine are supported" warning: with one spatial dim its crop / pad keep
    ``affine[0, 0] = 1 / fs`` (tested); they leave the time origin ``affine[0, 1]`` unshifted."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Only 2d and 3d affine are supported", category=UserWarning)
        yield


class FixedLengthECG(InvertibleTransform):
    """Crop or pad an ECG to ``n_samples`` with MONAI's ``SpatialPad`` / ``CenterSpatialCrop`` / ``SpatialCrop``.

    Args:
        n_samples: output length in samples.
        align: ``"center"`` (crop the middle, pad both ends) or ``"start"`` (keep the start, pad at the end).
        pad_mode: padding mode of ``SpatialPad`` (``"constant"`` = zeros, ``"edge"``, ``"reflect"``...).

    Input ``(leads, T)``, output ``(leads, n_samples)``; the rate in the affine is kept. On a MetaTensor the
    crop / pad is recorded, so ``.inverse()`` (or ``Invertd``) restores the length ``T`` (cropped samples
    come back as zeros).
    """

    backend = SpatialPad.backend

    def __init__(self, n_samples: int, *, align: str = "center", pad_mode: str = "constant") -> None:
        if int(n_samples) < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples}.")
        self.align = _option("align", align, ("center", "start"))
        self.n_samples = int(n_samples)
        method = "symmetric" if self.align == "center" else "end"
        self.pad = SpatialPad(spatial_size=[self.n_samples], method=method, mode=pad_mode)
        self.crop = CenterSpatialCrop([self.n_samples]) if self.align == "center" else SpatialCrop(
            roi_start=[0], roi_end=[self.n_samples]
        )

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        if len(img.shape) != 2:
            raise ValueError(f"{_where(img)}: an ECG must be (leads, samples); got shape {tuple(img.shape)}.")
        with _one_dim_affine_ok():
            out = self.crop(img) if img.shape[-1] > self.n_samples else self.pad(img)
        if not isinstance(img, MetaTensor):  # MONAI pad / crop return a MetaTensor; plain inputs get their kind back
            return convert_to_dst_type(out, dst=img)[0]
        _shift_r_peak(out, _samples_added_before(out.applied_operations[-1]))
        return out

    def inverse(self, data: MetaTensor) -> MetaTensor:
        """Undo the crop or pad last recorded on the MetaTensor ``data`` by this transform."""
        if not isinstance(data, MetaTensor) or not data.applied_operations:
            raise TypeError(f"FixedLengthECG.inverse needs the MetaTensor it returned, got {type(data).__name__} "
                            "without a recorded crop / pad.")
        last = data.applied_operations[-1]
        with _one_dim_affine_ok():
            cropped = last[TraceKeys.CLASS_NAME] == type(self.crop).__name__
            out = self.crop.inverse(data) if cropped else self.pad.inverse(data)
        _shift_r_peak(out, -_samples_added_before(last))
        return out


def _samples_added_before(operation: Mapping[str, Any]) -> int:
    """Samples a recorded MONAI pad (positive) or crop (negative) added before the start of the signal."""
    info = operation[TraceKeys.EXTRA_INFO]
    return int(info["padded"][-1][0]) if "padded" in info else -int(info["cropped"][0])


def _shift_r_peak(ecg: MetaTensor, shift: int) -> None:
    """Keep a median beat's ``meta["r_peak_index"]`` on R after samples were added (or removed) before it."""
    if R_PEAK_INDEX in ecg.meta:
        ecg.meta = {**ecg.meta, R_PEAK_INDEX: int(ecg.meta[R_PEAK_INDEX]) + shift}


class MedianBeat(Transform):
    """The median beat of an ECG rhythm: R peaks (neurokit2), R-aligned windows, sample-wise median.

    A MetaTensor keeps its rate and gains ``meta["n_beats"]`` (beats in the median), ``meta["r_peak_index"]``
    (sample of R in the window) and ``meta["rr_ms"]`` (median RR of the rhythm in ms).

    Args:
        n_samples, r_index: window length and R position in samples; default 576 and 200 at 500 Hz, scaled to
            the rate (same duration).
        min_beats: fewest complete beats accepted.
        fs: rate in Hz, required for numpy / torch input.

    Input ``(leads, T)``, output ``(leads, n_samples)``, e.g. ``(12, 576)`` at 500 Hz.

    Raises:
        ValueError: NaN, under 2 s, or fewer than ``min_beats`` beats (names the file).

    See: xMADD §4.2 (ECG medians, 12 x 576 at 500 Hz); :func:`~monai_gen.transforms.ecg.functional.median_beat`.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, *, n_samples: int | None = None, r_index: int | None = None, min_beats: int = 3,
                 fs: float | None = None) -> None:
        self.n_samples, self.r_index, self.min_beats, self.fs = n_samples, r_index, min_beats, fs

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        where = _where(img)
        fs = _sampling_rate(img, self.fs, where)
        r_index = int(round(MEDIAN_BEAT_R_INDEX * fs / MEDIAN_BEAT_FS)) if self.r_index is None else self.r_index
        beat, used, rr_ms = median_beat(_signal(img, where), fs, n_samples=self.n_samples, r_index=r_index,
                                        min_beats=self.min_beats, where=where)
        return _like(beat, img, **{N_BEATS: int(used.size), R_PEAK_INDEX: r_index, RR_MS: rr_ms})


class NormaliseAmplitude(InvertibleTransform):
    """Scale an ECG's amplitude, ``y = (x - offset) / scale``, invertibly (MONAI ``InvertibleTransform``).

    One offset and one scale per record (not per lead), so ratios between leads and the limb-lead laws hold.

    Args:
        method: ``"max_abs"`` (scale = max |x| over leads and time, offset 0), ``"std"`` (offset = mean,
            scale = standard deviation, both over the whole record) or ``"fixed"`` (scale = ``scale``, offset 0).
        scale: the divisor in mV for ``"fixed"``.

    ``.inverse()`` (or MONAI ``Invertd``) on the output MetaTensor returns mV; a MetaTensor's
    ``meta["units"]`` reads ``"normalised"`` in between. Plain numpy / torch inputs are scaled but carry no
    history to invert.
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, method: str = "max_abs", *, scale: float | None = None) -> None:
        self.method = _option("method", method, AMPLITUDE_METHODS)
        if (self.method == "fixed") != (scale is not None):
            raise ValueError(f"scale is used with method='fixed' only (and required there); got method={method!r}, "
                             f"scale={scale}.")
        if scale is not None and not (np.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a positive number of mV, got {scale}.")
        self.scale = scale

    def _offset_scale(self, signal: np.ndarray, where: str) -> tuple[float, float]:
        if self.method == "fixed":
            return 0.0, float(self.scale)
        offset, scale = (0.0, float(np.abs(signal).max())) if self.method == "max_abs" else (
            float(signal.mean()), float(signal.std()))
        if scale == 0:
            raise ValueError(f"{where}: the ECG is flat (constant), its amplitude cannot be normalised.")
        return offset, scale

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        where = _where(img)
        signal = _signal(img, where)
        offset, scale = self._offset_scale(signal, where)
        units = (getattr(img, "meta", None) or {}).get(UNITS, "mV")
        out = _like((signal - offset) / scale, img, **{UNITS: "normalised"})
        self.push_transform(out, extra_info={"offset": offset, "scale": scale, "units": units})
        return out

    def inverse(self, data: NdarrayOrTensor) -> NdarrayOrTensor:
        """Undo the last normalisation recorded on the MetaTensor ``data``: ``x = y * scale + offset``."""
        info = self.pop_transform(data)["extra_info"]
        signal = convert_to_tensor(data, track_meta=False).double().cpu().numpy()
        return _like(signal * info["scale"] + info["offset"], data, **{UNITS: info["units"]})


class MeasureECG(Transform):
    """Heart rate, RR, PR, QRS, QT and QTc of an ECG, stored in ``meta["measurements"]`` (a dict).

    A median beat (meta ``r_peak_index`` from :class:`MedianBeat`, or the ``r_index`` argument) is measured
    with ``measure_median_beat`` (heart rate and QTc from meta ``rr_ms`` when present); a rhythm with
    ``measure_ecg``. Values in ms / bpm, NaN where not measurable.

    Args:
        r_index: sample of R when measuring a median beat given as numpy / torch.
        qtc_formula: ``"bazett"`` or ``"fridericia"``.
        fs: rate in Hz, required for numpy / torch input.

    ``__call__`` needs a MetaTensor to hold the result; :meth:`measure` returns the dict for any input.

    See: ECG_MEASUREMENT.md; :mod:`monai_gen.transforms.ecg.measurements`.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, *, r_index: int | None = None, qtc_formula: str = "bazett", fs: float | None = None) -> None:
        self.r_index, self.qtc_formula, self.fs = r_index, qtc_formula, fs

    def measure(self, img: NdarrayOrTensor) -> dict[str, float | str]:
        """The measurements of ``img`` as ``ECGMeasurements.as_dict()``."""
        where = _where(img)
        fs = _sampling_rate(img, self.fs, where)
        meta: Mapping[str, Any] = getattr(img, "meta", None) or {}
        r_index = meta.get(R_PEAK_INDEX, self.r_index)
        if r_index is None:
            return measure_ecg(_signal(img, where), fs, qtc_formula=self.qtc_formula, where=where).as_dict()
        return measure_median_beat(
            _signal(img, where), fs, r_index=int(r_index), rr_ms=meta.get(RR_MS), qtc_formula=self.qtc_formula
        ).as_dict()

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        if not isinstance(img, MetaTensor):
            raise TypeError(f"MeasureECG stores its result in a MetaTensor's meta, got {type(img).__name__}; "
                            "use MeasureECG().measure(x) or MeasureECGd for plain arrays.")
        out = img.clone()
        out.meta = {**img.meta, MEASUREMENTS: self.measure(img)}
        return out
