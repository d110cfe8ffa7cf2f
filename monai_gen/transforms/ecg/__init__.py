"""monai_gen.transforms.ecg"""

from __future__ import annotations

from monai_gen.transforms.ecg.array import (
    AMPLITUDE_METHODS,
    LIMB_LEAD_COEFFICIENTS,
    MEASUREMENTS,
    N_BEATS,
    R_PEAK_INDEX,
    RR_MS,
    BandPassECG,
    FixedLengthECG,
    MeasureECG,
    MedianBeat,
    NormaliseAmplitude,
    RemoveBaselineWander,
    ResampleECG,
    StandardiseLeads,
)
from monai_gen.transforms.ecg.dictionary import (
    BandPassECGd,
    FixedLengthECGd,
    MeasureECGd,
    MedianBeatd,
    NormaliseAmplituded,
    RemoveBaselineWanderd,
    ResampleECGd,
    StandardiseLeadsd,
)
from monai_gen.transforms.ecg.functional import (
    MEDIAN_BEAT_FS,
    MEDIAN_BEAT_R_INDEX,
    MEDIAN_BEAT_SAMPLES,
    beat_windows,
    detect_r_peaks,
    median_beat,
)
from monai_gen.transforms.ecg.measurements import ECGMeasurements, measure_ecg, measure_median_beat

__all__ = [
    "AMPLITUDE_METHODS",
    "LIMB_LEAD_COEFFICIENTS",
    "MEASUREMENTS",
    "N_BEATS",
    "R_PEAK_INDEX",
    "RR_MS",
    "MEDIAN_BEAT_FS",
    "MEDIAN_BEAT_R_INDEX",
    "MEDIAN_BEAT_SAMPLES",
    "BandPassECG",
    "BandPassECGd",
    "ECGMeasurements",
    "FixedLengthECG",
    "FixedLengthECGd",
    "MeasureECG",
    "MeasureECGd",
    "MedianBeat",
    "MedianBeatd",
    "NormaliseAmplitude",
    "NormaliseAmplituded",
    "RemoveBaselineWander",
    "RemoveBaselineWanderd",
    "ResampleECG",
    "ResampleECGd",
    "StandardiseLeads",
    "StandardiseLeadsd",
    "beat_windows",
    "detect_r_peaks",
    "measure_ecg",
    "measure_median_beat",
    "median_beat",
]
