"""The physiological check a cardiac bundle's ``evaluate.json`` adds to the image suite: do synthetic cines contract?

:class:`CineContraction` generates, for each diagnostic group of the test patients, ``n_seeds`` synthetic cines (one
seed per cine, the cardiac phase at ``n_frames`` evenly spaced points of the cycle, the group and a slice position
requested, everything else unset) and measures each with :func:`~monai_gen.metrics.cardiac.bright_area_curve`:
the ejection-fraction-like ratio ``(A_ED - A_ES) / A_ED`` with ED at phase 0 and ES at the frame nearest the
group's mean end-systolic phase in the training rows. Beside it, the same ratio of every real test cine (each
patient's slices with their own ED and ES frames): a synthetic DCM cine should contract like a real DCM cine,
less than a normal one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from monai_gen.metrics.cardiac import bright_area_curve, contraction_ratio
from monai_gen.metrics.evaluation import EvaluationData, checked_samples

__all__ = ["CineContraction"]


class CineContraction:
    """Contraction ratio of synthetic cines per diagnostic group, the real test and training cines of the group
    beside them (every group the training rows hold is generated; one without a test cine shows "none" there).

    The cohort rows must hold ``group_key``, ``phase_key`` (fraction of the cycle), ``slice_key``, ``es_key``
    (True on each slice's end-systolic frame) and the subject id; items are frames ``(N, 1, H, W)``.

    Args:
        n_seeds: synthetic cines per group.
        n_frames: frames per synthetic cine.
        slice_position: the slice position requested (0.5: mid-ventricle).
        group_key, phase_key, slice_key, es_key: row fields.
        name: the section's name.

    Raises:
        ValueError: ``n_seeds`` below 1 or ``n_frames`` below 4.
    """

    def __init__(self, *, n_seeds: int = 4, n_frames: int = 20, slice_position: float = 0.5, group_key: str = "group",
                 phase_key: str = "phase", slice_key: str = "slice_position", es_key: str = "is_es",
                 name: str = "cine_contraction") -> None:
        if n_seeds < 1 or n_frames < 4:
            raise ValueError(f"CineContraction needs n_seeds >= 1 and n_frames >= 4, got {n_seeds}, {n_frames}.")
        self.n_seeds, self.n_frames, self.slice_position = int(n_seeds), int(n_frames), float(slice_position)
        self.group_key, self.phase_key, self.slice_key, self.es_key = group_key, phase_key, slice_key, es_key
        self.name = name

    def __call__(self, data: EvaluationData) -> dict[str, Any]:
        if data.generate is None:
            raise ValueError("CineContraction generates its own cines: EvaluationData.generate must be given.")
        real = self._real_ratios(data.test.items.numpy(), data.test.rows, data.test.subject_key)
        real_train = self._real_ratios(data.train.items.numpy(), data.train.rows, data.train.subject_key)
        es_phase = self._mean_es_phase(data.train.rows)
        groups = {}
        for group in sorted(set(real) | set(real_train)):
            if group not in es_phase:
                continue
            ratios = self._synthetic_ratios(data, group, es_phase[group])
            groups[group] = {
                "es_phase": es_phase[group],
                "synthetic": _summary(ratios),
                "real": _summary(real.get(group, [])),
                "real_train": _summary(real_train.get(group, [])),
            }
        summary = ", ".join(
            f"{g} {v['synthetic']['median']:.2f} (real test {v['real']['median']:.2f}, train {v['real_train']['median']:.2f})"
            for g, v in groups.items()
        )
        return {"n_seeds": self.n_seeds, "n_frames": self.n_frames, "slice_position": self.slice_position,
                "groups": groups, "summary": f"cine contraction (A_ED - A_ES) / A_ED: {summary}"}

    def _real_ratios(self, items: np.ndarray, rows: Sequence[Mapping[str, Any]], subject_key: str) -> dict[str, list[float]]:
        """Per group, the ratio of every real cine (one per subject and slice) at its own ED (phase 0) and ES."""
        cines: dict[tuple, list[int]] = defaultdict(list)
        for index, row in enumerate(rows):
            cines[(row[subject_key], row[self.slice_key])].append(index)
        ratios: dict[str, list[float]] = defaultdict(list)
        for indices in cines.values():
            indices = sorted(indices, key=lambda i: float(rows[i][self.phase_key]))
            flags = [bool(rows[i].get(self.es_key)) for i in indices]
            if len(indices) < 2 or not any(flags):
                continue
            curve = bright_area_curve(items[indices, 0])
            ratios[str(rows[indices[0]][self.group_key])].append(contraction_ratio(curve, 0, flags.index(True)))
        return dict(ratios)

    def _mean_es_phase(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
        """Per group, the circular mean end-systolic phase of the training rows."""
        phases: dict[str, list[float]] = defaultdict(list)
        for row in rows:
            if row.get(self.es_key):
                phases[str(row[self.group_key])].append(float(row[self.phase_key]))
        return {g: float(np.mod(np.angle(np.exp(2j * np.pi * np.asarray(p)).mean()) / (2 * np.pi), 1.0))
                for g, p in phases.items()}

    def _synthetic_ratios(self, data: EvaluationData, group: str, es_phase: float) -> list[float]:
        phases = [t / self.n_frames for t in range(self.n_frames)]
        seeds = [data.seed + j for j in range(self.n_seeds)]
        rows = [{self.group_key: group, self.slice_key: self.slice_position, self.phase_key: p} for _ in seeds
                for p in phases]
        cine_seeds = [s for s in seeds for _ in phases]
        samples = checked_samples(data.generate(rows, cine_seeds), (len(rows), *data.test.items.shape[1:])).numpy()
        es_frame = int(np.argmin([min(abs(p - es_phase), 1 - abs(p - es_phase)) for p in phases]))
        frames = samples[:, 0].reshape(self.n_seeds, self.n_frames, *samples.shape[2:])
        return [contraction_ratio(bright_area_curve(cine), 0, es_frame) for cine in frames]

    def markdown(self, section: dict[str, Any]) -> list[str]:
        lines = [f"## Cine contraction ((A_ED - A_ES) / A_ED of the bright blood pool; {section['n_seeds']} synthetic "
                 f"cines of {section['n_frames']} frames per group at slice position {section['slice_position']:g})",
                 "", "| group | ES phase (training mean) | synthetic median [IQR] | real test cines median [IQR] | "
                 "real training cines median [IQR] |", "| --- | --- | --- | --- | --- |"]
        for group, v in section["groups"].items():
            cells = [_cell(v[key]) for key in ("synthetic", "real", "real_train")]
            lines.append(f"| {group} | {v['es_phase']:.2f} | " + " | ".join(cells) + " |")
        return lines


def _cell(summary: Mapping[str, Any]) -> str:
    if not summary["n"]:
        return "none"
    return f"{summary['median']:.2f} [{summary['iqr'][0]:.2f}, {summary['iqr'][1]:.2f}] (n {summary['n']})"


def _summary(values: Sequence[float]) -> dict[str, Any]:
    finite = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    if not finite.size:
        return {"median": float("nan"), "iqr": [float("nan"), float("nan")], "n": 0}
    q25, median, q75 = np.percentile(finite, [25, 50, 75])
    return {"median": float(median), "iqr": [float(q25), float(q75)], "n": int(finite.size)}
