"""A small learned per-lead P / QRS / T delineator trained on LUDB's expert marks (1D U-Net segmentation).

Each lead is band-passed (0.5-45 Hz), decimated to 250 Hz and scaled to unit SD; a 1D U-Net (Ronneberger et al.
2015; the LUDB segmentation set-up of Moskalenko et al. 2020, "Deep learning for ECG segmentation") labels every
sample as none / P / QRS / T. Runs of a label become waves (onset = first sample, offset = last, peak = the
middle), in the same :class:`~monai_gen.data.ludb.WaveMarks` form as the experts' marks, so the measured
intervals are computed exactly as the experts' are (:func:`~monai_gen.data.ludb.expert_intervals`).

Examples:
    >>> marks = delineate(signal, 500.0)  # (12, 5000) mV -> [WaveMarks per lead]  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.signal import butter, resample_poly, sosfiltfilt
from torch import nn

from monai_gen.data.ludb import WaveMarks

__all__ = [
    "WaveSegmenter",
    "WEIGHTS",
    "preprocess_lead",
    "wave_labels",
    "train_segmenter",
    "load_segmenter",
    "delineate",
]

WEIGHTS = Path(__file__).with_name("ludb_delineator.safetensors")
"""Weights shipped with the package (trained on LUDB; which records: ``docs/ecg_measurement.md``)."""

_FS = 250.0  # the network's sampling rate
_CLASSES = ("none", "p", "qrs", "t")
_MIN_RUN_MS = {"p": 20.0, "qrs": 20.0, "t": 40.0}  # shorter runs are segmentation noise


class _Block(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv1d(in_channels, out_channels, 9, padding=4),
            nn.BatchNorm1d(out_channels),
            nn.ReLU(),
            nn.Conv1d(out_channels, out_channels, 9, padding=4),
            nn.BatchNorm1d(out_channels),
            nn.ReLU(),
        )


class WaveSegmenter(nn.Module):
    """1D U-Net: ``(B, 1, T)`` unit-SD lead at 250 Hz -> ``(B, 4, T)`` logits (none, P, QRS, T); T divisible by 8."""

    def __init__(self, channels: Sequence[int] = (8, 16, 32, 64)) -> None:
        super().__init__()
        self.down = nn.ModuleList(_Block(a, b) for a, b in zip((1, *channels[:-1]), channels, strict=True))
        self.up = nn.ModuleList(
            _Block(channels[i + 1] + channels[i], channels[i]) for i in reversed(range(len(channels) - 1))
        )
        self.head = nn.Conv1d(channels[0], len(_CLASSES), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(F.max_pool1d(x, 2) if i else x)
            skips.append(x)
        skips.pop()
        for block in self.up:
            x = block(torch.cat([F.interpolate(x, scale_factor=2.0), skips.pop()], dim=1))
        return self.head(x)


def preprocess_lead(signal: np.ndarray, fs: float) -> np.ndarray:
    """``(leads, n)`` mV at ``fs`` -> ``(leads, m)`` float32 band-passed, at 250 Hz, unit SD per lead."""
    sos = butter(2, [0.5, 45.0], btype="band", fs=fs, output="sos")
    filtered = sosfiltfilt(sos, np.asarray(signal, dtype=np.float64), axis=-1)
    resampled = resample_poly(filtered, int(round(_FS)), int(round(fs)), axis=-1)
    return (resampled / (resampled.std(axis=-1, keepdims=True) + 1e-3)).astype(np.float32)


def wave_labels(marks: WaveMarks, n: int, fs: float) -> np.ndarray:
    """``(m,)`` int64 targets at 250 Hz: 0 none, 1 P, 2 QRS, 3 T; -1 outside the span the experts marked."""
    scale = _FS / fs
    labels = np.full(int(round(n * scale)), -1, dtype=np.int64)
    marked = np.concatenate([marks.p, marks.qrs, marks.t])
    if not np.isfinite(marked).any():
        return labels
    labels[int(np.nanmin(marked) * scale) : int(np.nanmax(marked) * scale) + 1] = 0
    for label, waves in ((1, marks.p), (2, marks.qrs), (3, marks.t)):
        for onset, _, offset in waves[np.isfinite(waves[:, 0]) & np.isfinite(waves[:, 2])]:
            labels[int(round(onset * scale)) : int(round(offset * scale)) + 1] = label
    return labels


def train_segmenter(
    signals: Sequence[np.ndarray],
    delineations: Sequence[Mapping[str, WaveMarks]],
    fs: float,
    *,
    steps: int = 600,
    batch: int = 32,
    crop: int = 512,
    seed: int = 0,
) -> WaveSegmenter:
    """Train a :class:`WaveSegmenter` on ``(leads, n)`` mV records and their per-lead expert marks (one per lead).

    Random ``crop``-sample windows (at 250 Hz) of random leads, amplitude scaled by U(0.7, 1.3) and sign flipped
    never (polarity is meaningful); AdamW 3e-3 with cosine decay; cross-entropy ignoring unmarked samples.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x = np.concatenate([preprocess_lead(s, fs) for s in signals])
    y = np.concatenate(
        [
            np.stack([wave_labels(m, s.shape[-1], fs) for m in d.values()])
            for s, d in zip(signals, delineations, strict=True)
        ]
    )
    model = WaveSegmenter()
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    for _ in range(steps):
        rows, starts = rng.integers(0, x.shape[0], batch), rng.integers(0, x.shape[1] - crop, batch)
        xb = np.stack([x[r, s : s + crop] for r, s in zip(rows, starts, strict=True)]) * rng.uniform(
            0.7, 1.3, (batch, 1)
        )
        yb = np.stack([y[r, s : s + crop] for r, s in zip(rows, starts, strict=True)])
        loss = F.cross_entropy(
            model(torch.from_numpy(xb.astype(np.float32))[:, None]), torch.from_numpy(yb), ignore_index=-1
        )
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
    return model.eval()


@lru_cache(maxsize=4)
def load_segmenter(path: Path = WEIGHTS) -> WaveSegmenter:
    """The shipped (or another saved) segmenter, in eval mode."""
    from safetensors.torch import load_file

    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no delineator weights (reinstall monai_gen, or train with train_segmenter).")
    model = WaveSegmenter()
    model.load_state_dict(load_file(str(path)))
    return model.eval()


def _runs(labels: np.ndarray, label: int, min_len: int) -> np.ndarray:
    """``(k, 2)`` first / last index of each run of ``label`` at least ``min_len`` long."""
    edges = np.diff(np.concatenate([[0], (labels == label).astype(np.int8), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    keep = stops - starts + 1 >= min_len
    return np.stack([starts[keep], stops[keep]], axis=1)


def _marks_from_labels(labels: np.ndarray, fs: float) -> WaveMarks:
    scale = fs / _FS
    waves = {}
    for label, name in enumerate(_CLASSES[1:], start=1):
        runs = _runs(labels, label, int(round(_MIN_RUN_MS[name] * _FS / 1000.0))).astype(float) * scale
        waves[name] = np.stack([runs[:, 0], runs.mean(axis=1), runs[:, 1]], axis=1) if runs.size else np.empty((0, 3))
    return WaveMarks(**waves)


@torch.no_grad()
def delineate(signal: np.ndarray, fs: float, *, model: WaveSegmenter | None = None) -> list[WaveMarks]:
    """Per-lead wave marks (samples at ``fs``) of a ``(leads, n)`` ECG in mV; ``model`` defaults to the shipped one."""
    model = load_segmenter() if model is None else model
    x = preprocess_lead(np.atleast_2d(signal), fs)
    pad = (-x.shape[1]) % 8
    logits = model(torch.from_numpy(np.pad(x, ((0, 0), (0, pad)), mode="edge"))[:, None])
    labels = logits.argmax(dim=1).numpy()[:, : x.shape[1]]
    return [_marks_from_labels(lead, fs) for lead in labels]
