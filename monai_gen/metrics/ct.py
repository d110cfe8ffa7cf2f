"""CT measures: per-organ Hounsfield-unit distributions of synthetic CT against real CT, where label maps exist.

An organ's HU distribution is what a radiologist checks first (liver 40-70 HU with contrast ~100, lung about -850,
bone several hundred): a generator can look right in a preview and still place the wrong tissue inside an organ. For
each organ of a label map, :class:`OrganHUHistograms` pools the voxels inside the organ's mask and compares

- synthetic vs real test: sample ``i`` was generated for the conditions of test item ``i`` (its label map, with a
  label-conditioned generator), so both are read inside the same mask;
- real train vs real test: the reference a generator cannot be expected to beat (anatomy and contrast differ between
  subjects);

by the Wasserstein-1 (earth mover's) distance in HU (0 = the same distribution; lower is better), and gives the
organ's mask adherence: the fraction of the organ's synthetic voxels that lie in the organ's real HU range (5th to 95th
percentile of its real training voxels; about 0.9 for real test voxels of the same organ; higher is better).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import torch

__all__ = ["LabelPatches", "hu_wasserstein", "OrganHUHistograms"]


class LabelPatches(Protocol):
    """What the measure needs of the label maps (:class:`~monai_gen.transforms.ct.OrganLabelMaps` has it)."""

    names: list[str]

    def patch(self, row: Mapping[str, Any]) -> torch.Tensor | None: ...

    def organ_masks(self, labels: torch.Tensor) -> torch.Tensor: ...


def hu_wasserstein(a: np.ndarray, b: np.ndarray, *, hu_range: Sequence[float], bin_width_hu: float = 5.0) -> float:
    """Wasserstein-1 distance (HU) between two sets of HU values: ``integral |F_a - F_b| dHU`` over ``hu_range``.

    Computed from cumulative histograms of ``bin_width_hu`` bins (values outside ``hu_range`` count at its ends), so
    it is exact up to the bin width. 0 = the same distribution.

    Raises:
        ValueError: an empty set, a bad range or bin width.
    """
    low, high = float(hu_range[0]), float(hu_range[1])
    if not (high > low and bin_width_hu > 0):
        raise ValueError(f"hu_range must be (low, high) with high > low and bin_width_hu > 0, got {hu_range}, {bin_width_hu}.")
    if len(a) == 0 or len(b) == 0:
        raise ValueError("hu_wasserstein needs at least one value in each set.")
    edges = np.arange(low, high + bin_width_hu, bin_width_hu)
    cdfs = [np.cumsum(np.histogram(np.clip(v, low, high), bins=edges)[0]) / len(v) for v in (a, b)]
    return float(np.abs(cdfs[0] - cdfs[1]).sum() * bin_width_hu)


def _organ_voxels(items: torch.Tensor, rows: Sequence[Mapping[str, Any]], labels: LabelPatches) -> list[list[np.ndarray]]:
    """Per organ, the HU values of every item inside that organ's mask (items whose row names no label map skipped)."""
    pooled: list[list[np.ndarray]] = [[] for _ in labels.names]
    for item, row in zip(items, rows, strict=True):
        patch = labels.patch(row)
        if patch is None:
            continue
        masks = labels.organ_masks(patch[None])[0].bool()
        if masks.shape[1:] != item.shape[1:]:
            raise ValueError(f"a label patch of shape {tuple(masks.shape[1:])} does not match its image {tuple(item.shape)}.")
        for k in range(len(labels.names)):
            pooled[k].append(item[0][masks[k]].numpy().astype(np.float64))
    return pooled


class OrganHUHistograms:
    """Per-organ HU distributions: synthetic vs real test, beside real train vs real test (see the module docstring).

    Args:
        labels: the label maps of the rows, e.g. the bundle's :class:`~monai_gen.transforms.ct.OrganLabelMaps` (the
            same object the generator is conditioned with).
        hu_range: the HU window of the model (values are compared inside it).
        bin_width_hu: histogram bin width of the distances.
        min_voxels: an organ needs this many real test voxels to be scored (fewer: listed as not scored).
        adherence_percentiles: the real training voxels' percentiles that bound an organ's HU range.
        name: the section's name.

    Returns (``__call__``):
        ``{"organs": {name: {"n_voxels", "mean_hu", "std_hu", "wasserstein_hu", "adherence"}}, "not_scored",
        "hu_range", "summary"}``; each value a dictionary over ``synthetic`` / ``test`` / ``train`` (distances:
        ``synthetic_vs_test`` / ``train_vs_test``).
    """

    def __init__(
        self,
        labels: LabelPatches,
        *,
        hu_range: Sequence[float] = (-1000.0, 1000.0),
        bin_width_hu: float = 5.0,
        min_voxels: int = 50,
        adherence_percentiles: Sequence[float] = (5.0, 95.0),
        name: str = "organ_hu_histograms",
    ) -> None:
        self.labels, self.hu_range, self.bin_width_hu = labels, (float(hu_range[0]), float(hu_range[1])), float(bin_width_hu)
        self.min_voxels, self.percentiles, self.name = int(min_voxels), tuple(adherence_percentiles), name

    def __call__(self, data: Any) -> dict[str, Any]:
        synthetic = _organ_voxels(data.synthetic, data.requested, self.labels)
        test = _organ_voxels(data.test.items, data.test.rows, self.labels)
        train = _organ_voxels(data.train.items, data.train.rows, self.labels)
        organs, not_scored = {}, []
        for k, name in enumerate(self.labels.names):
            sets = {"synthetic": synthetic[k], "test": test[k], "train": train[k]}
            values = {key: np.concatenate(v) if v else np.zeros(0) for key, v in sets.items()}
            if len(values["test"]) < self.min_voxels or len(values["synthetic"]) == 0:
                not_scored.append(name)
                continue
            organs[name] = self._organ(values)
        summary = ", ".join(f"{n} {o['wasserstein_hu']['synthetic_vs_test']:.0f} HU" for n, o in organs.items())
        return {"organs": organs, "not_scored": not_scored, "hu_range": list(self.hu_range),
                "summary": f"organ HU Wasserstein-1, synthetic vs test: {summary or 'no organ scored'}"}

    def _organ(self, values: dict[str, np.ndarray]) -> dict[str, Any]:
        reference = values["train"] if len(values["train"]) else values["test"]
        low, high = np.percentile(reference, self.percentiles)

        def distance(a: np.ndarray) -> float | None:
            return hu_wasserstein(a, values["test"], hu_range=self.hu_range, bin_width_hu=self.bin_width_hu) if len(a) else None

        return {
            "n_voxels": {k: int(len(v)) for k, v in values.items()},
            "mean_hu": {k: float(v.mean()) if len(v) else None for k, v in values.items()},
            "std_hu": {k: float(v.std()) if len(v) else None for k, v in values.items()},
            "wasserstein_hu": {"synthetic_vs_test": distance(values["synthetic"]), "train_vs_test": distance(values["train"])},
            "real_range_hu": [float(low), float(high)],
            "adherence": {k: float(((v >= low) & (v <= high)).mean()) for k, v in values.items() if k != "train" and len(v)},
        }

    def markdown(self, section: Mapping[str, Any]) -> list[str]:
        lines = ["## Organ HU distributions (Wasserstein-1 in HU: lower = better; adherence: higher = better)", "",
                 "| organ | mean HU synthetic / test / train | W1 synthetic vs test | W1 train vs test | real range (HU) "
                 "| adherence synthetic / test |", "| --- | --- | --- | --- | --- | --- |"]

        def fmt(value: float | None, digits: int = 0) -> str:
            return "–" if value is None else f"{value:.{digits}f}"

        for name, o in section["organs"].items():
            m, w, a = o["mean_hu"], o["wasserstein_hu"], o["adherence"]
            lines.append(
                f"| {name} | {fmt(m['synthetic'])} / {fmt(m['test'])} / {fmt(m['train'])} | {fmt(w['synthetic_vs_test'])} "
                f"| {fmt(w['train_vs_test'])} | {fmt(o['real_range_hu'][0])} to {fmt(o['real_range_hu'][1])} "
                f"| {fmt(a.get('synthetic'), 2)} / {fmt(a.get('test'), 2)} |")
        if section["not_scored"]:
            lines += ["", f"Not scored (too few real test voxels or no label map): {', '.join(section['not_scored'])}."]
        return lines
