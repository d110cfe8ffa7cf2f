"""Image measures of a generator: realism on trained features, diversity, autoencoder reconstruction, feature views.

Each class is a measure of :func:`monai_gen.metrics.evaluation.evaluate_generator`: called with the evaluation data
(``synthetic`` ``(N, C, *spatial)`` generated for the conditions of the real ``test`` items, and the real ``train``
cohort, all in physical units) it returns its JSON section with a one-line ``"summary"``, and ``markdown(section)``
gives the report lines. Every synthetic figure stands next to its real reference:

- :class:`ImageRealism` — Fréchet distance, KID and k-NN precision / recall / density / coverage on the features of
  a network trained here on real images (:mod:`monai_gen.metrics.image_features`): synthetic vs real test, beside
  real train vs real test;
- :class:`MSSSIMDiversity` — mean MS-SSIM (MONAI's ``MultiScaleSSIMMetric``) over pairs of synthetic images vs the
  same pairs of real test images (synthetic pair ``(i, j)`` was generated for the conditions of real pair
  ``(i, j)``), optionally only pairs that share some conditions (e.g. the slice position), so that collapse at a
  fixed condition shows; lower = more diverse (the conditional brain-MRI LDM paper reports it this way);
- :class:`AutoencoderReconstruction` — MS-SSIM and PSNR (MONAI) of a latent autoencoder's reconstruction of the
  real test images (Medfusion reports MS-SSIM >= 0.98 for its autoencoders);
- :class:`SliceFrechetDistance` — 2.5D realism of 3D volumes: the Fréchet distance of 2D features of axial, coronal
  and sagittal slices (:mod:`monai_gen.metrics.slice_features`), plane by plane and averaged, beside real train vs test;
- :class:`FeatureSpace` — runs another measure (:class:`~monai_gen.metrics.evaluation.ProbeFidelity`,
  :class:`~monai_gen.metrics.evaluation.Memorisation`) on features (e.g. the trained extractor's) instead of pixels.

Small images (a 64 x 64 slice) cannot take MS-SSIM's five scales at an 11-pixel kernel, so :func:`ms_ssim_weights`
keeps the first scales of MONAI's weights that the image size allows, renormalised to sum to 1.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.metrics import MultiScaleSSIMMetric, PSNRMetric
from monai.utils import look_up_option

from monai_gen.metrics.distribution import frechet_distance
from monai_gen.metrics.realism import kernel_distance, manifold_precision_recall
from monai_gen.metrics.slice_features import SLICE_PLANES, volume_slices

__all__ = [
    "MS_SSIM_WEIGHTS",
    "ms_ssim_weights",
    "random_pairs",
    "pairwise_ms_ssim",
    "reconstruction_scores",
    "MSSSIMDiversity",
    "AutoencoderReconstruction",
    "ImageRealism",
    "SliceFrechetDistance",
    "FeatureSpace",
]

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
"""MONAI's (and Wang et al. 2003's) five-scale MS-SSIM weights, finest scale first."""

FeaturesFn = Callable[[torch.Tensor], torch.Tensor]


def ms_ssim_weights(spatial_shape: Sequence[int], kernel_size: int) -> tuple[float, ...]:
    """The first scales of :data:`MS_SSIM_WEIGHTS` that MONAI's size check allows for ``spatial_shape``, summing to 1.

    MONAI needs ``size // max(1, scales - 1) ** 2 > kernel_size - 1`` along every axis.

    Raises:
        ValueError: the image is too small even for one scale at this kernel size.
    """
    fitting = [n for n in range(1, len(MS_SSIM_WEIGHTS) + 1)
               if all(int(s) // max(1, n - 1) ** 2 > kernel_size - 1 for s in spatial_shape)]
    if not fitting:
        raise ValueError(f"images of size {tuple(spatial_shape)} are too small for SSIM with kernel_size {kernel_size}.")
    weights = MS_SSIM_WEIGHTS[: max(fitting)]
    return tuple(w / sum(weights) for w in weights)


def _ms_ssim_metric(images: torch.Tensor, kernel_size: int, data_range: float) -> MultiScaleSSIMMetric:
    return MultiScaleSSIMMetric(spatial_dims=images.ndim - 2, data_range=data_range, kernel_size=kernel_size,
                                weights=ms_ssim_weights(images.shape[2:], kernel_size), reduction="none")


def _mean_std(values: torch.Tensor) -> dict[str, float]:
    values = values.reshape(-1).double()
    return {"mean": float(values.mean()), "std": float(values.std()) if len(values) > 1 else 0.0}


def random_pairs(
    n: int, *, max_pairs: int = 64, seed: int = 0, groups: Sequence[Any] | None = None
) -> list[tuple[int, int]]:
    """Up to ``max_pairs`` distinct unordered pairs ``(a, b)``, ``a < b``, of ``n`` items, drawn at random (seeded).

    Args:
        n: number of items.
        max_pairs: draws; repeated pairs are dropped, so fewer pairs may come back.
        seed: the draw's seed.
        groups: a label per item; when given, only items with the same label are paired.

    Returns:
        The pairs, sorted; empty when no two items share a label (or ``n < 2``).

    Raises:
        ValueError: ``groups`` holds another number of labels than ``n``.
    """
    labels = [0] * n if groups is None else [repr(g) for g in groups]
    if len(labels) != n:
        raise ValueError(f"random_pairs: {len(labels)} group labels for {n} items.")
    members: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        members.setdefault(label, []).append(i)
    eligible = [i for i in range(n) if len(members[labels[i]]) > 1]
    if not eligible:
        return []
    rng = np.random.default_rng(seed)
    pairs = set()
    for a in rng.choice(eligible, size=int(max_pairs)):
        group = members[labels[a]]
        b = group[(group.index(a) + int(rng.integers(1, len(group)))) % len(group)]  # never the same item
        pairs.add((min(int(a), b), max(int(a), b)))
    return sorted(pairs)


def pairwise_ms_ssim(
    images: torch.Tensor, pairs: Sequence[tuple[int, int]], *, kernel_size: int = 7, data_range: float = 1.0
) -> dict[str, Any]:
    """Mean MS-SSIM of the image ``pairs`` (from :func:`random_pairs`) of ``images`` ``(N, C, *spatial)`` (2D or 3D).

    Returns:
        ``{"mean", "std", "pairs", "scales"}``; mean and std are NaN without pairs.

    Raises:
        ValueError: images that are not ``(N, C, *spatial)`` with 2 or 3 spatial axes.
    """
    images = torch.as_tensor(images, dtype=torch.float32)
    if images.ndim not in (4, 5):
        raise ValueError(f"pairwise MS-SSIM needs images (N, C, *spatial) in 2D or 3D, got shape "
                         f"{tuple(images.shape)}.")
    metric = _ms_ssim_metric(images, kernel_size, data_range)
    scales = len(ms_ssim_weights(images.shape[2:], kernel_size))
    if not pairs:
        return {"mean": float("nan"), "std": float("nan"), "pairs": 0, "scales": scales}
    index_a, index_b = (torch.as_tensor(list(side)) for side in zip(*pairs, strict=True))
    return {**_mean_std(metric(images[index_a], images[index_b])), "pairs": len(pairs), "scales": scales}


class MSSSIMDiversity:
    """Diversity measure: mean MS-SSIM of synthetic pairs beside that of the same pairs of real test images.

    Args:
        max_pairs: random pairs drawn (seeded by the evaluation's ``seed``); the same pairs serve both sets.
        kernel_size: SSIM Gaussian window (pixels); smaller windows allow more scales on small images.
        data_range: intensity range of the images in physical units (1.0 for images scaled to [0, 1]).
        same_conditions: pair only items whose requested values of these conditions are equal (e.g.
            ``["slice_position"]``), so that a generator that collapses at a fixed condition is seen; empty = any
            two items.
        name: the measure's section name in the report.
    """

    def __init__(self, max_pairs: int = 64, kernel_size: int = 7, data_range: float = 1.0, *,
                 same_conditions: Sequence[str] = (), name: str = "diversity") -> None:
        if int(max_pairs) < 1:
            raise ValueError(f"max_pairs must be >= 1, got {max_pairs!r}.")
        self.max_pairs, self.kernel_size, self.data_range = int(max_pairs), int(kernel_size), float(data_range)
        self.same_conditions, self.name = list(same_conditions), name

    def __call__(self, data: Any) -> dict[str, Any]:
        """``{"method", "same_conditions", "synthetic_pairs", "real_test_pairs", "difference", "summary"}``."""
        groups = None
        if self.same_conditions:
            groups = [tuple(row.get(c) for c in self.same_conditions) for row in data.requested]
        pairs = random_pairs(len(data.synthetic), max_pairs=self.max_pairs, seed=int(data.seed), groups=groups)
        options = {"kernel_size": self.kernel_size, "data_range": self.data_range}
        synthetic = pairwise_ms_ssim(data.synthetic, pairs, **options)
        real = pairwise_ms_ssim(data.test.items, pairs, **options)
        difference = synthetic["mean"] - real["mean"]
        return {
            "method": f"MS-SSIM (MONAI, {synthetic['scales']} scales, kernel {self.kernel_size}) over random pairs",
            "same_conditions": self.same_conditions,
            "synthetic_pairs": synthetic,
            "real_test_pairs": real,
            "difference": difference,
            "summary": f"diversity: MS-SSIM of synthetic pairs {synthetic['mean']:.3f} (real {real['mean']:.3f}, "
                       f"{synthetic['pairs']} pairs)",
        }

    def markdown(self, section: Mapping[str, Any]) -> list[str]:
        """Report lines of a section returned by :meth:`__call__`."""
        synthetic, real = section["synthetic_pairs"], section["real_test_pairs"]
        same = section.get("same_conditions") or []
        scope = f"pairs with equal {', '.join(same)}" if same else "any two items"
        return [
            f"## Diversity ({section['method']}; lower = more diverse)",
            "",
            f"Pairs: {scope}; synthetic pair (i, j) was generated for the conditions of real pair (i, j).",
            "",
            "| pairs | mean MS-SSIM | std | n |",
            "| --- | --- | --- | --- |",
            f"| synthetic | {synthetic['mean']:.3f} | {synthetic['std']:.3f} | {synthetic['pairs']} |",
            f"| real test | {real['mean']:.3f} | {real['std']:.3f} | {real['pairs']} |",
            "",
            f"Synthetic minus real: {section['difference']:+.3f}.",
        ]


def reconstruction_scores(
    images: torch.Tensor, reconstructions: torch.Tensor, *, data_range: float = 1.0, kernel_size: int = 7
) -> dict[str, Any]:
    """MS-SSIM (1 = identical), PSNR in dB (inf = identical; higher = better) and the mean absolute error (physical
    units, 0 = identical) of ``reconstructions`` of ``images``.

    Args:
        images, reconstructions: ``(N, C, *spatial)`` (2D or 3D) in the same physical units.
        data_range: intensity range of the images (PSNR's peak value).
        kernel_size: SSIM Gaussian window (pixels).

    Returns:
        ``{"n", "ms_ssim": {"mean", "std"}, "psnr_db": {"mean", "std"}, "mae": {"mean", "std"}, "scales"}`` (``mae``
        per image, over its voxels).

    Raises:
        ValueError: the two differ in shape, or images that are not ``(N, C, *spatial)`` with 2 or 3 spatial axes.
    """
    images, reconstructions = (torch.as_tensor(x, dtype=torch.float32) for x in (images, reconstructions))
    if images.shape != reconstructions.shape or images.ndim not in (4, 5):
        raise ValueError(f"reconstructions must match the images (N, C, *spatial) in 2D or 3D, got "
                         f"{tuple(reconstructions.shape)} for {tuple(images.shape)}.")
    ms_ssim = _ms_ssim_metric(images, kernel_size, data_range)(reconstructions, images)
    psnr = PSNRMetric(max_val=data_range, reduction="none")(reconstructions, images)
    mae = (reconstructions - images).abs().flatten(1).mean(dim=1)
    return {"n": int(images.shape[0]), "ms_ssim": _mean_std(ms_ssim), "psnr_db": _mean_std(psnr), "mae": _mean_std(mae),
            "scales": len(ms_ssim_weights(images.shape[2:], kernel_size))}


class AutoencoderReconstruction:
    """Stage-1 quality: MS-SSIM and PSNR of the autoencoder's reconstruction of the real test images.

    The reconstruction is ``normalisation.inverse(decode(encode(normalisation(x))))``: physical units in and out,
    e.g. ``encode`` / ``decode`` of a :class:`~monai_gen.diffusion.latent.LatentSpace` (a MONAI ``AutoencoderKL``
    with its latent scaling) and the bundle's ``LinearNormalisation``. The synthetic samples are not used.

    Args:
        encode: images in model space ``(B, C, *spatial)`` -> latents.
        decode: latents -> images in model space.
        normalisation: physical units -> model space, with ``inverse``; None = the autoencoder sees physical units.
        device: where encode / decode run (the autoencoder's device); None = the CPU.
        batch_size: images per call.
        data_range: intensity range of the images in physical units (PSNR's peak; 1.0 for [0, 1]).
        kernel_size: SSIM Gaussian window (pixels).
        unit: the physical unit of the mean absolute error, for the report (e.g. ``"HU"``).
        name: the section's name.
    """

    def __init__(self, encode: Callable[[torch.Tensor], torch.Tensor], decode: Callable[[torch.Tensor], torch.Tensor],
                 *, normalisation: Any = None, device: torch.device | str | None = None, batch_size: int = 16,
                 data_range: float = 1.0, kernel_size: int = 7, unit: str = "",
                 name: str = "autoencoder_reconstruction") -> None:
        self.unit = unit
        self.encode, self.decode, self.normalisation = encode, decode, normalisation
        self.device, self.batch_size = torch.device(device or "cpu"), int(batch_size)
        self.data_range, self.kernel_size, self.name = float(data_range), int(kernel_size), name

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, C, *spatial)`` physical units -> their reconstructions, on the CPU."""
        out = []
        for batch in torch.as_tensor(images, dtype=torch.float32).split(self.batch_size):
            x = batch if self.normalisation is None else self.normalisation(batch)
            y = self.decode(self.encode(x.to(self.device))).float().cpu()
            out.append(y if self.normalisation is None else self.normalisation.inverse(y))
        return torch.cat(out)

    def __call__(self, data: Any) -> dict[str, Any]:
        scores = reconstruction_scores(data.test.items, self.reconstruct(data.test.items), data_range=self.data_range,
                                       kernel_size=self.kernel_size)
        return {**scores, "method": f"MS-SSIM (MONAI, {scores['scales']} scales, kernel {self.kernel_size}), "
                                    f"PSNR (peak {self.data_range:g})",
                "unit": self.unit,
                "summary": f"autoencoder reconstruction of {scores['n']} real test images: MS-SSIM "
                           f"{scores['ms_ssim']['mean']:.3f}, PSNR {scores['psnr_db']['mean']:.1f} dB, MAE "
                           f"{scores['mae']['mean']:.3g} {self.unit}".rstrip()}

    def markdown(self, section: Mapping[str, Any]) -> list[str]:
        ms, psnr, unit = section["ms_ssim"], section["psnr_db"], section.get("unit") or "physical units"
        mae = section.get("mae", {"mean": float("nan"), "std": float("nan")})
        return ["## Autoencoder reconstruction of the real test images (MS-SSIM, PSNR: higher = better; MAE: lower)",
                "", f"Method: {section['method']}.", "", f"| n | MS-SSIM | PSNR (dB) | MAE ({unit}) |",
                "| --- | --- | --- | --- |",
                f"| {section['n']} | {ms['mean']:.4f} ± {ms['std']:.4f} | {psnr['mean']:.2f} ± {psnr['std']:.2f} "
                f"| {mae['mean']:.4g} ± {mae['std']:.3g} |"]


def _feature_space(features: FeaturesFn, description: str | None) -> str:
    return description or str(features)


class ImageRealism:
    """Realism on trained features: Fréchet distance, KID, precision / recall / density / coverage.

    Synthetic features are compared with the real test features, beside the reference pair real train vs real test.
    The training images are subsampled (seeded) to as many as there are synthetic images, so both pairs have equal
    set sizes (the Fréchet distance and the k-NN estimates depend on them). An extractor trained on those training
    images may place them a little apart from unseen images, which makes the reference slightly pessimistic.

    Args:
        features: ``(N, C, *spatial)`` -> ``(N, F)``, e.g. an
            :class:`~monai_gen.metrics.image_features.ImageFeatureExtractor` trained on the real training images.
        k: the k-NN neighbour of the manifold estimates.
        kid_subsets: random subsets of the KID estimate.
        kid_subset_size: items per KID subset; None = half the smaller set.
        description: the feature space, for the report; defaults to ``str(features)``.
        name: the section's name.

    See:
        Heusel et al. 2017 (FID); Bińkowski et al. 2018 (KID); Kynkäänniemi et al. 2019 (precision / recall);
        Naeem et al. 2020 (density / coverage).
    """

    def __init__(self, features: FeaturesFn, *, k: int = 3, kid_subsets: int = 20, kid_subset_size: int | None = None,
                 description: str | None = None, name: str = "realism") -> None:
        self.features, self.k, self.description, self.name = features, int(k), description, name
        self.kid_subsets, self.kid_subset_size = int(kid_subsets), kid_subset_size

    def _statistics(self, real: torch.Tensor, other: torch.Tensor, generator: torch.Generator) -> dict[str, Any]:
        size = self.kid_subset_size or max(2, min(len(real), len(other)) // 2)
        return {"frechet_distance": frechet_distance(real, other),
                "kid": kernel_distance(real, other, subsets=self.kid_subsets, subset_size=size, generator=generator),
                **manifold_precision_recall(real, other, k=self.k)}

    def __call__(self, data: Any) -> dict[str, Any]:
        generator = torch.Generator().manual_seed(int(data.seed))
        n = min(len(data.train.items), len(data.synthetic))
        train = data.train.items[torch.randperm(len(data.train.items), generator=generator)[:n]]
        test = self.features(data.test.items)
        section = {
            "feature_space": _feature_space(self.features, self.description),
            "n": {"synthetic": len(data.synthetic), "real_test": len(data.test.items), "real_train": n},
            "synthetic_vs_test": self._statistics(test, self.features(data.synthetic), generator),
            "train_vs_test": self._statistics(test, self.features(train), generator),
        }
        syn, ref = section["synthetic_vs_test"], section["train_vs_test"]
        section["summary"] = (f"realism (trained features): Fréchet {syn['frechet_distance']:.2f} (real "
                              f"{ref['frechet_distance']:.2f}), KID {syn['kid']['mean']:.3f} (real "
                              f"{ref['kid']['mean']:.3f}), precision {syn['precision']:.2f} (real "
                              f"{ref['precision']:.2f}), recall {syn['recall']:.2f} (real {ref['recall']:.2f})")
        return section

    def markdown(self, section: Mapping[str, Any]) -> list[str]:
        syn, ref = section["synthetic_vs_test"], section["train_vs_test"]
        rows = [("Fréchet distance (lower = closer)", "frechet_distance"),
                ("precision (higher = better)", "precision"), ("recall (higher = better)", "recall"),
                ("density (about 1 for real)", "density"), ("coverage (higher = better)", "coverage")]
        n = section["n"]
        return [
            "## Realism on trained features", "", f"Feature space: {section['feature_space']}.", "",
            f"Sets: {n['synthetic']} synthetic, {n['real_test']} real test, {n['real_train']} real train (subsampled); "
            f"k = {syn['k']} for the manifolds.", "",
            "| statistic | synthetic vs real test | real train vs real test |", "| --- | --- | --- |",
            *(f"| {label} | {syn[key]:.3f} | {ref[key]:.3f} |" for label, key in rows[:1]),
            f"| KID (lower = closer) | {syn['kid']['mean']:.4f} ± {syn['kid']['std']:.4f} | "
            f"{ref['kid']['mean']:.4f} ± {ref['kid']['std']:.4f} |",
            *(f"| {label} | {syn[key]:.3f} | {ref[key]:.3f} |" for label, key in rows[1:]),
        ]


class SliceFrechetDistance:
    """2.5D realism of 3D volumes: the Fréchet distance of 2D slice features, plane by plane (axial, coronal,
    sagittal) and their mean, synthetic vs real test beside real train vs real test.

    Each volume gives its ``n_slices`` central slices per plane (:func:`~monai_gen.metrics.slice_features.volume_slices`);
    a plane's distance compares the features of all slices of that plane. As in :class:`ImageRealism`, the training
    volumes are subsampled (seeded) to as many as there are synthetic ones, so both pairs compare sets of equal sizes;
    an extractor trained on those training slices may place them a little apart from unseen ones, which makes the
    reference slightly pessimistic. 0 = the same Gaussian statistics; lower = closer; the reference is the distance
    between two real sets of different subjects, the scale a generator is read against. Features trained to predict
    position and plane read anatomy and HU levels more than fine texture: on real CT patches (the tests), a 300 HU
    shift or a Gaussian blur of 2 voxels moves the distance more than 10 times as far as a one-voxel shift, whereas
    Gaussian noise of 100 HU added to the voxels moves it only about as far as that shift.

    Args:
        features: 2D slices ``(M, C, *slice_size)`` -> ``(M, F)``, e.g.
            :func:`~monai_gen.metrics.slice_features.cached_slice_feature_extractor` trained on the real training
            volumes' slices.
        planes: the planes scored (names of :data:`~monai_gen.metrics.slice_features.SLICE_PLANES`).
        n_slices, slice_step: the central slices read per volume and plane.
        slice_size, pad_value: the slices' common size and the padding value: those the extractor was trained with.
        description: the feature space, for the report; defaults to ``str(features)``.
        name: the section's name.

    Raises:
        ValueError: no plane, or an unknown one.

    See:
        Heusel et al. 2017 (FID); Guo et al., MAISI, WACV 2025 (2.5D FID of CT over XY / YZ / ZX slices).
    """

    def __init__(self, features: FeaturesFn, *, planes: Sequence[str] = tuple(SLICE_PLANES), n_slices: int | None = 8,
                 slice_step: int = 1, slice_size: Sequence[int] | None = None, pad_value: float = -1000.0,
                 description: str | None = None, name: str = "slice_frechet") -> None:
        if not planes:
            raise ValueError("SliceFrechetDistance needs at least one plane.")
        for plane in planes:
            look_up_option(plane, SLICE_PLANES)  # an unknown plane fails here, with a spelling hint
        self.planes = [str(p) for p in planes]
        self.features, self.description, self.name = features, description, name
        size = None if slice_size is None else [int(s) for s in slice_size]
        self.slicing = {"n_slices": n_slices, "slice_step": int(slice_step), "slice_size": size,
                        "pad_value": float(pad_value)}

    def __call__(self, data: Any) -> dict[str, Any]:
        generator = torch.Generator().manual_seed(int(data.seed))
        n = min(len(data.train.items), len(data.synthetic))
        train = data.train.items[torch.randperm(len(data.train.items), generator=generator)[:n]]
        distances = {}
        for plane in self.planes:
            test, synthetic, real_train = (self.features(volume_slices(v, plane, **self.slicing))
                                           for v in (data.test.items, data.synthetic, train))
            distances[plane] = {"synthetic_vs_test": frechet_distance(test, synthetic),
                                "train_vs_test": frechet_distance(test, real_train), "n_slices": len(test)}
        distances["mean"] = {k: float(np.mean([distances[p][k] for p in self.planes]))
                             for k in ("synthetic_vs_test", "train_vs_test")}
        mean = distances["mean"]
        per_plane = ", ".join(f"{p} {distances[p]['synthetic_vs_test']:.2f} (real {distances[p]['train_vs_test']:.2f})"
                              for p in self.planes)
        return {
            "feature_space": f"{_feature_space(self.features, self.description)}, on 2D slices",
            "planes": list(self.planes), **self.slicing,
            "n": {"synthetic": len(data.synthetic), "real_test": len(data.test.items), "real_train": n},
            "frechet_distance": distances,
            "summary": f"2.5D Fréchet (slice features): mean {mean['synthetic_vs_test']:.2f} (real "
                       f"{mean['train_vs_test']:.2f}); {per_plane}",
        }

    def markdown(self, section: Mapping[str, Any]) -> list[str]:
        n, distances = section["n"], section["frechet_distance"]
        slices = section["n_slices"] if section["n_slices"] is not None else "all"
        return [
            "## 2.5D realism: Fréchet distance of slice features (lower = closer)", "",
            f"Feature space: {section['feature_space']}.", "",
            f"Volumes: {n['synthetic']} synthetic, {n['real_test']} real test, {n['real_train']} real train "
            f"(subsampled); {slices} central slices per volume and plane, {section['slice_step']} voxel(s) apart.", "",
            "| plane | synthetic vs real test | real train vs real test |", "| --- | --- | --- |",
            *(f"| {p} | {distances[p]['synthetic_vs_test']:.3f} | {distances[p]['train_vs_test']:.3f} |"
              for p in section["planes"]),
            f"| mean | {distances['mean']['synthetic_vs_test']:.3f} | {distances['mean']['train_vs_test']:.3f} |",
        ]


class FeatureSpace:
    """Another measure run on features instead of the raw items: ``measure`` sees the synthetic, train and test items
    replaced by ``features(items)`` ``(N, F)`` (rows, requests and seed unchanged).

    E.g. :class:`~monai_gen.metrics.evaluation.ProbeFidelity` on the trained extractor's features (its probes then
    read the conditions from features learnt on real training images rather than from PCA of pixels), or
    :class:`~monai_gen.metrics.evaluation.Memorisation` with nearest neighbours in feature space.

    Args:
        measure: any measure of :func:`~monai_gen.metrics.evaluation.evaluate_generator`.
        features: ``(N, C, *spatial)`` -> ``(N, F)``.
        description: the feature space, for the report; defaults to ``str(features)``.
        name: the section's name; defaults to the measure's.
    """

    def __init__(self, measure: Any, features: FeaturesFn, *, description: str | None = None,
                 name: str | None = None) -> None:
        self.measure, self.features, self.description = measure, features, description
        self.name = name or measure.name

    def __call__(self, data: Any) -> dict[str, Any]:
        seen = dataclasses.replace(
            data, synthetic=self.features(data.synthetic),
            train=dataclasses.replace(data.train, items=self.features(data.train.items)),
            test=dataclasses.replace(data.test, items=self.features(data.test.items)),
        )
        section = {**self.measure(seen), "feature_space": _feature_space(self.features, self.description)}
        if "summary" in section:
            section["summary"] += " [on features]"
        return section

    def markdown(self, section: Mapping[str, Any]) -> list[str]:
        title, *rest = self.measure.markdown(dict(section))
        return [f"{title} — on features", "", f"Feature space: {section['feature_space']}.", *rest]
