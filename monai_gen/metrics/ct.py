"""CT measures: per-organ Hounsfield-unit distributions and mask adherence of synthetic CT, where label maps exist.

An organ's HU distribution is what a radiologist checks first (liver 40-70 HU with contrast ~100, lung about -850,
bone several hundred): a generator can look right in a preview and still place the wrong tissue inside an organ. Sample
``i`` was generated for the conditions of test item ``i`` (its label map, with a label-conditioned generator), so
synthetic and real test voxels are read inside the same masks.

- :class:`OrganHUHistograms` compares, per organ, the pooled HU of the voxels inside the masks: synthetic vs real
  test, beside real train vs real test (the reference a generator cannot be expected to beat: anatomy and contrast
  differ between subjects), by the Wasserstein-1 (earth mover's) distance in HU (0 = the same distribution; lower is
  better).
- :class:`MaskAdherence` asks whether each requested organ is made of that organ's tissue: the fraction of its
  synthetic voxels inside the organ's real HU range (5th to 95th percentile of its real training voxels), beside the
  same fraction of the real test voxels inside their own masks (the reference; about 0.9 for a subject like the
  training ones, less where contrast or anatomy differ); higher is better.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import torch

__all__ = ["LabelPatches", "hu_wasserstein", "OrganHUHistograms", "MaskAdherence"]


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


def _item_organ_voxels(item: torch.Tensor, row: Mapping[str, Any], labels: LabelPatches) -> list[np.ndarray] | None:
    """Per organ, the HU values of ``item`` ``(1, *spatial)`` inside that organ's mask; None when the row names no
    label map."""
    patch = labels.patch(row)
    if patch is None:
        return None
    masks = labels.organ_masks(patch[None])[0].bool()
    if masks.shape[1:] != item.shape[1:]:
        raise ValueError(f"a label patch of shape {tuple(masks.shape[1:])} does not match its image {tuple(item.shape)}.")
    return [item[0][masks[k]].numpy().astype(np.float64) for k in range(len(labels.names))]


def _organ_voxels(items: torch.Tensor, rows: Sequence[Mapping[str, Any]], labels: LabelPatches) -> list[list[np.ndarray]]:
    """Per organ, the HU values of every item inside that organ's mask (items whose row names no label map skipped)."""
    pooled: list[list[np.ndarray]] = [[] for _ in labels.names]
    for item, row in zip(items, rows, strict=True):
        for k, values in enumerate(_item_organ_voxels(item, row, labels) or []):
            pooled[k].append(values)
    return pooled


def _pooled(per_item: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(per_item) if per_item else np.zeros(0)


class OrganHUHistograms:
    """Per-organ HU distributions: synthetic vs real test, beside real train vs real test (see the module docstring);
    whether the HU lie in an organ's real range is :class:`MaskAdherence`'s question.

    Args:
        labels: the label maps of the rows, e.g. the bundle's :class:`~monai_gen.transforms.ct.OrganLabelMaps` (the
            same object the generator is conditioned with).
        hu_range: the HU window of the model (values are compared inside it).
        bin_width_hu: histogram bin width of the distances.
        min_voxels: an organ needs this many real test voxels to be scored (fewer: listed as not scored).
        name: the section's name.

    Returns (``__call__``):
        ``{"organs": {name: {"n_voxels", "mean_hu", "std_hu", "wasserstein_hu"}}, "not_scored",
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
        name: str = "organ_hu_histograms",
    ) -> None:
        self.labels, self.hu_range, self.bin_width_hu = labels, (float(hu_range[0]), float(hu_range[1])), float(bin_width_hu)
        self.min_voxels, self.name = int(min_voxels), name

    def __call__(self, data: Any) -> dict[str, Any]:
        synthetic = _organ_voxels(data.synthetic, data.requested, self.labels)
        test = _organ_voxels(data.test.items, data.test.rows, self.labels)
        train = _organ_voxels(data.train.items, data.train.rows, self.labels)
        organs, not_scored = {}, []
        for k, name in enumerate(self.labels.names):
            values = {"synthetic": _pooled(synthetic[k]), "test": _pooled(test[k]), "train": _pooled(train[k])}
            if len(values["test"]) < self.min_voxels or len(values["synthetic"]) == 0:
                not_scored.append(name)
                continue
            organs[name] = self._organ(values)
        summary = ", ".join(f"{n} {o['wasserstein_hu']['synthetic_vs_test']:.0f} HU" for n, o in organs.items())
        return {"organs": organs, "not_scored": not_scored, "hu_range": list(self.hu_range),
                "summary": f"organ HU Wasserstein-1, synthetic vs test: {summary or 'no organ scored'}"}

    def _organ(self, values: dict[str, np.ndarray]) -> dict[str, Any]:
        def distance(a: np.ndarray) -> float | None:
            return hu_wasserstein(a, values["test"], hu_range=self.hu_range, bin_width_hu=self.bin_width_hu) if len(a) else None

        return {
            "n_voxels": {k: int(len(v)) for k, v in values.items()},
            "mean_hu": {k: float(v.mean()) if len(v) else None for k, v in values.items()},
            "std_hu": {k: float(v.std()) if len(v) else None for k, v in values.items()},
            "wasserstein_hu": {"synthetic_vs_test": distance(values["synthetic"]), "train_vs_test": distance(values["train"])},
        }

    def markdown(self, section: Mapping[str, Any]) -> list[str]:
        lines = ["## Organ HU distributions (Wasserstein-1 in HU: lower = better)", "",
                 "| organ | mean HU synthetic / test / train | W1 synthetic vs test | W1 train vs test |",
                 "| --- | --- | --- | --- |"]

        def fmt(value: float | None, digits: int = 0) -> str:
            return "–" if value is None else f"{value:.{digits}f}"

        for name, o in section["organs"].items():
            m, w = o["mean_hu"], o["wasserstein_hu"]
            lines.append(f"| {name} | {fmt(m['synthetic'])} / {fmt(m['test'])} / {fmt(m['train'])} "
                         f"| {fmt(w['synthetic_vs_test'])} | {fmt(w['train_vs_test'])} |")
        if section["not_scored"]:
            lines += ["", f"Not scored (too few real test voxels or no label map): {', '.join(section['not_scored'])}."]
        return lines


class MaskAdherence:
    """Mask adherence: per requested organ, the fraction of its synthetic voxels whose HU lies in the organ's real HU
    range, beside the same fraction of the real test voxels inside their own masks (the reference).

    An organ's real range is the ``percentiles`` of its real training voxels (every training item with a label map,
    pooled), so about 0.9 of the voxels of a subject like the training ones fall inside it. Synthetic item ``i`` was
    generated for the label map of test item ``i``, so both fractions are read inside the same masks. Values in
    [0, 1]; higher = better; a generator reaching the real test fraction makes its organs of the organs' tissue as
    often as real CT does. ``overall`` pools the voxels of every scored organ; ``per_sample`` is each labelled item's
    fraction over its scored organs' voxels (mean and spread over items).

    Args:
        labels: the label maps of the rows, e.g. the bundle's :class:`~monai_gen.transforms.ct.OrganLabelMaps` (the
            same object the generator is conditioned with).
        percentiles: the real training voxels' percentiles bounding an organ's range (low, high).
        min_voxels: an organ needs this many real training and real test voxels to be scored (else: not scored).
        name: the section's name.

    Returns (``__call__``):
        ``{"method", "percentiles", "organs": {name: {"real_range_hu", "n_voxels": {"synthetic", "test", "train"},
        "adherence": {"synthetic", "test"}}}, "not_scored", "overall": {"synthetic", "test"}, "per_sample": {"n",
        "synthetic": {"mean", "std"}, "test": {"mean", "std"}}, "summary"}`` (overall and per-sample values None when
        no organ is scored).

    Raises:
        ValueError: percentiles that are not ``0 <= low < high <= 100``.
    """

    def __init__(self, labels: LabelPatches, *, percentiles: Sequence[float] = (5.0, 95.0), min_voxels: int = 50,
                 name: str = "mask_adherence") -> None:
        low, high = (float(p) for p in percentiles)
        if not 0.0 <= low < high <= 100.0:
            raise ValueError(f"percentiles must be (low, high) with 0 <= low < high <= 100, got {list(percentiles)}.")
        self.labels, self.percentiles, self.min_voxels, self.name = labels, (low, high), int(min_voxels), name

    def __call__(self, data: Any) -> dict[str, Any]:
        train = [_pooled(v) for v in _organ_voxels(data.train.items, data.train.rows, self.labels)]
        pairs = [(_item_organ_voxels(s, r, self.labels), _item_organ_voxels(t, q, self.labels))
                 for s, r, t, q in zip(data.synthetic, data.requested, data.test.items, data.test.rows, strict=True)]
        pairs = [(s, t) for s, t in pairs if s is not None and t is not None]
        organs, ranges, not_scored = {}, {}, []
        for k, name in enumerate(self.labels.names):
            synthetic, test = _pooled([s[k] for s, _ in pairs]), _pooled([t[k] for _, t in pairs])
            if min(len(train[k]), len(test)) < self.min_voxels or len(synthetic) == 0:
                not_scored.append(name)
                continue
            ranges[k] = tuple(float(v) for v in np.percentile(train[k], self.percentiles))
            organs[name] = {"real_range_hu": list(ranges[k]),
                            "n_voxels": {"synthetic": len(synthetic), "test": len(test), "train": len(train[k])},
                            "adherence": {"synthetic": _inside(synthetic, ranges[k]), "test": _inside(test, ranges[k])}}
        section = {"method": f"share of an organ's voxels in the {self.percentiles[0]:g}th-{self.percentiles[1]:g}th "
                             "percentile HU range of its real training voxels",
                   "percentiles": list(self.percentiles), "organs": organs, "not_scored": not_scored,
                   **self._pooled_scores(pairs, ranges)}
        overall = section["overall"]
        section["summary"] = ("mask adherence: no organ scored" if overall["synthetic"] is None else
                              f"mask adherence: synthetic {overall['synthetic']:.2f} (real test {overall['test']:.2f}) "
                              f"over {', '.join(organs)}")
        return section

    @staticmethod
    def _pooled_scores(pairs: list[tuple[list[np.ndarray], list[np.ndarray]]],
                       ranges: dict[int, tuple[float, float]]) -> dict[str, Any]:
        """Overall (every scored organ's voxels pooled) and per-item fractions, synthetic and real test."""
        counts: dict[str, list[tuple[int, int]]] = {"synthetic": [], "test": []}  # per item: (inside, voxels)
        for pair in pairs:
            for key, voxels in zip(counts, pair, strict=True):
                counts[key].append((sum(int(_in_range(voxels[k], r).sum()) for k, r in ranges.items()),
                                    sum(len(voxels[k]) for k in ranges)))
        overall, per_sample = {}, {"n": sum(1 for _, n in counts["test"] if n)}
        for key, items in counts.items():
            items = [(a, n) for a, n in items if n]  # items holding none of the scored organs say nothing
            shares = np.array([a / n for a, n in items])
            overall[key] = float(sum(a for a, _ in items) / sum(n for _, n in items)) if items else None
            per_sample[key] = {"mean": float(shares.mean()) if items else None,
                               "std": float(shares.std()) if items else None}
        return {"overall": overall, "per_sample": per_sample}

    def markdown(self, section: Mapping[str, Any]) -> list[str]:
        lines = ["## Mask adherence (higher = better; the real test voxels inside their own masks are the reference)",
                 "", f"Method: {section['method']}; synthetic sample i is read inside the label map it was generated for "
                 "(that of real test item i).", "",
                 "| organ | real range (HU) | synthetic | real test | voxels |", "| --- | --- | --- | --- | --- |"]
        for name, o in section["organs"].items():
            low, high = o["real_range_hu"]
            lines.append(f"| {name} | {low:.0f} to {high:.0f} | {o['adherence']['synthetic']:.3f} "
                         f"| {o['adherence']['test']:.3f} | {o['n_voxels']['test']} |")
        overall, per_sample = section["overall"], section["per_sample"]
        if overall["synthetic"] is not None:
            lines.append(f"| all scored organs | | {overall['synthetic']:.3f} | {overall['test']:.3f} | |")
            lines += ["", f"Per sample ({per_sample['n']} labelled): synthetic {per_sample['synthetic']['mean']:.3f} ± "
                      f"{per_sample['synthetic']['std']:.3f}, real test {per_sample['test']['mean']:.3f} ± "
                      f"{per_sample['test']['std']:.3f}."]
        if section["not_scored"]:
            lines += ["", f"Not scored (fewer than the minimum of real training or test voxels, or no label map): "
                      f"{', '.join(section['not_scored'])}."]
        return lines


def _in_range(values: np.ndarray, hu_range: tuple[float, float]) -> np.ndarray:
    return (values >= hu_range[0]) & (values <= hu_range[1])


def _inside(values: np.ndarray, hu_range: tuple[float, float]) -> float:
    """Fraction of ``values`` (at least one) in ``[low, high]``."""
    return float(_in_range(values, hu_range).mean())
