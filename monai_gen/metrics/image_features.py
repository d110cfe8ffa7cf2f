"""An image feature extractor trained here, on real images, for realism metrics (Fréchet, KID, precision / recall).

FID and its relatives read Inception features learnt on ImageNet; neither those nor RadImageNet's weights can be
downloaded here, and natural-image features say little about MRI. So the extractor is trained on the real training
images of the cohort being evaluated (never on its test subjects):

- **Architecture**: MONAI ``ResNet`` (basic blocks, one per stage, stage widths ``widths``, BatchNorm, ReLU,
  ``spatial_dims`` 2 or 3) ending in global average pooling; the pooled ``(widths[-1],)`` vector is the feature.
  A linear head on it predicts the conditions.
- **Objective**: supervised prediction of the cohort's conditions, e.g. axial slice position and age (continuous,
  standardised on the training rows, mean squared error) and sex (categorical, cross-entropy); unknown values are
  skipped. Features that tell slice positions, ages and sexes apart are the anatomy a radiologist checks, so
  images off that anatomy (noise, blur, artefacts) move away from the real features.
- **Training**: MONAI ``SupervisedTrainer`` with Adam, seeded (initialisation and shuffling inside a forked RNG, so
  the caller's global RNG is untouched); afterwards BatchNorm's running statistics are re-estimated on all training
  images so eval-mode features do not depend on the number of iterations.
- **Storage**: one safetensors file (weights, plus the architecture, the targets' statistics, the image shape, the
  training summary and a fingerprint of the training data as metadata); loading reads it with safetensors only.

:func:`train_feature_extractor` trains it from items ``(N, C, *spatial)`` and their rows,
:meth:`ImageFeatureExtractor.save` / :meth:`ImageFeatureExtractor.load` store it, and :func:`cached_feature_extractor`
(what a bundle's ``evaluate.json`` calls) loads a saved one trained on the same data and settings, or trains and
saves it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import DataLoader
from monai.engines import SupervisedTrainer
from monai.networks.nets import ResNet
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn
from torch.nn import functional as F

from monai_gen.transforms.conditions import is_missing
from monai_gen.utils.atomic import atomic_output_path

__all__ = ["ConditionTargets", "feature_network", "ImageFeatureExtractor", "train_feature_extractor",
           "cached_feature_extractor"]

logger = logging.getLogger(__name__)

_FORMAT = "monai_gen.image_feature_extractor/1"


@dataclass
class ConditionTargets:
    """The conditions an extractor learns to predict, as training targets.

    Attributes:
        continuous: ``{name: [mean, std]}`` of each continuous condition over the training rows (std 1 if constant).
        categorical: ``{name: categories}``; a row's value is the index of its category.
    """

    continuous: dict[str, list[float]]
    categorical: dict[str, list[str]]

    @classmethod
    def fit(cls, rows: Sequence[Mapping[str, Any]], continuous: Sequence[str] = (),
            categorical: Mapping[str, Sequence[str]] | None = None) -> ConditionTargets:
        """Statistics of ``continuous`` over ``rows``; ``categorical`` kept as given.

        Raises:
            ValueError: no condition, a continuous one with fewer than two known values, or a category list with
                fewer than two categories.
        """
        categorical = {str(k): [str(c) for c in v] for k, v in (categorical or {}).items()}
        if not continuous and not categorical:
            raise ValueError("ConditionTargets needs at least one continuous or categorical condition.")
        short = {k: v for k, v in categorical.items() if len(v) < 2}
        if short:
            raise ValueError(f"categorical conditions need at least two categories, got {short}.")
        stats = {}
        for name in continuous:
            known = np.array([float(r[name]) for r in rows if not is_missing(r.get(name))])
            if known.size < 2:
                raise ValueError(f"continuous condition {name!r} has {known.size} known values in the rows; needs 2.")
            stats[str(name)] = [float(known.mean()), float(known.std()) or 1.0]
        return cls(stats, categorical)

    @property
    def num_outputs(self) -> int:
        """Outputs of the prediction head: one per continuous condition, one logit per category."""
        return len(self.continuous) + sum(len(c) for c in self.categorical.values())

    def encode(self, rows: Sequence[Mapping[str, Any]]) -> torch.Tensor:
        """``(N, T)`` float32: standardised continuous values, then category indices; NaN where unknown."""
        columns = [[np.nan if is_missing(r.get(n)) else (float(r[n]) - m) / s for r in rows]
                   for n, (m, s) in self.continuous.items()]
        for name, categories in self.categorical.items():
            index = {c: float(i) for i, c in enumerate(categories)}
            columns.append([np.nan if is_missing(r.get(name)) else index.get(str(r[name]), np.nan) for r in rows])
        return torch.tensor(np.array(columns, dtype=np.float32).T.reshape(len(rows), -1))

    def loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean squared error on the known continuous targets plus a cross-entropy per categorical condition.

        Args:
            prediction: ``(B, num_outputs)`` head outputs.
            target: ``(B, T)`` from :meth:`encode`.
        """
        n = len(self.continuous)
        values, known = target[:, :n], torch.isfinite(target[:, :n])
        total = ((prediction[:, :n] - values.nan_to_num()) ** 2 * known).sum() / known.sum().clamp(min=1)
        start = n
        for j, categories in enumerate(self.categorical.values()):
            labels = target[:, n + j]
            known = torch.isfinite(labels)
            logits = prediction[:, start : start + len(categories)]
            ce = F.cross_entropy(logits, labels.nan_to_num().long(), reduction="none")
            total = total + (ce * known).sum() / known.sum().clamp(min=1)
            start += len(categories)
        return total


def feature_network(spatial_dims: int, in_channels: int, widths: Sequence[int], num_outputs: int) -> nn.Sequential:
    """``Sequential(encoder, head)``: MONAI ``ResNet`` (basic blocks ``[1, 1, 1, 1]``, pooled, no classifier) whose
    ``(B, widths[-1])`` output is the feature, then a linear head to ``num_outputs``.

    Raises:
        ValueError: ``spatial_dims`` not 2 or 3, or ``widths`` not four positive widths.
    """
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}.")
    if len(widths) != 4 or min(widths) < 1:
        raise ValueError(f"widths must be four positive stage widths (ResNet's four stages), got {list(widths)}.")
    encoder = ResNet("basic", [1, 1, 1, 1], list(widths), spatial_dims=spatial_dims, n_input_channels=in_channels,
                     feed_forward=False)
    return nn.Sequential(encoder, nn.Linear(int(widths[-1]), int(num_outputs)))


class ImageFeatureExtractor:
    """A trained :func:`feature_network`: ``extractor(images)`` -> features ``(N, widths[-1])`` float64 on the CPU.

    Args:
        network: the trained ``Sequential(encoder, head)``.
        targets: what its head was trained to predict.
        image_shape: ``(C, *spatial)`` of the training images; other shapes are refused.
        widths: the ResNet stage widths (to rebuild the network on :meth:`load`).
        training: a summary of the training (data, epochs, final loss), kept in the file.
        fingerprint: digest of the training data and settings (:func:`cached_feature_extractor`).

    Examples:
        >>> extractor = train_feature_extractor(items, rows, continuous=["slice_position"])  # doctest: +SKIP
        >>> extractor.save("feature_extractor.safetensors"); features = extractor(images)  # doctest: +SKIP
    """

    def __init__(self, network: nn.Sequential, targets: ConditionTargets, image_shape: Sequence[int], *,
                 widths: Sequence[int], training: Mapping[str, Any] | None = None, fingerprint: str = "") -> None:
        self.network, self.targets = network.eval(), targets
        self.image_shape, self.widths = tuple(int(s) for s in image_shape), tuple(int(w) for w in widths)
        self.training, self.fingerprint = dict(training or {}), fingerprint

    @property
    def description(self) -> str:
        """One line for reports: architecture, training data and objective."""
        names = [*self.targets.continuous, *self.targets.categorical]
        return (f"MONAI ResNet ({'-'.join(map(str, self.widths))}) pooled features ({self.widths[-1]}) trained here on "
                f"{self.training.get('n_items', '?')} real training images {self.image_shape} to predict "
                f"{', '.join(names)}")

    def __str__(self) -> str:
        return self.description

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, *, batch_size: int = 64) -> torch.Tensor:
        """Features ``(N, widths[-1])`` float64 of ``images`` ``(N, *image_shape)`` in the training images' units.

        Raises:
            ValueError: images of another shape than the training images, or non-finite values.
        """
        images = torch.as_tensor(images, dtype=torch.float32)
        if tuple(images.shape[1:]) != self.image_shape or not torch.isfinite(images).all():
            raise ValueError(f"the feature extractor takes finite images (N, *{self.image_shape}) like its training "
                             f"images, got shape {tuple(images.shape)}.")
        device = next(self.network.parameters()).device
        return torch.cat([self.network[0](b.to(device)).double().cpu() for b in images.split(batch_size)])

    def save(self, path: str | os.PathLike) -> Path:
        """Write weights and metadata to ``path`` (safetensors, atomically); returns the path."""
        path = Path(path)
        config = {"targets": asdict(self.targets), "image_shape": self.image_shape, "widths": self.widths,
                  "training": self.training, "fingerprint": self.fingerprint}
        state = {k: v.detach().cpu().contiguous() for k, v in self.network.state_dict().items()}
        with atomic_output_path(path) as tmp:
            save_file(state, str(tmp), metadata={"format": _FORMAT, "config": json.dumps(config)})
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: torch.device | str | None = None) -> ImageFeatureExtractor:
        """Read an extractor written by :meth:`save` (safetensors only, no pickle).

        Raises:
            FileNotFoundError: no file at ``path``.
            ValueError: not a readable extractor file, or weights that do not fit its stated architecture.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"feature extractor file {path} does not exist; train it with "
                                    "train_feature_extractor(...).save(path).")
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                metadata = f.metadata() or {}
                state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no iterator)
        except (SafetensorError, OSError) as err:
            raise ValueError(f"feature extractor file {path} is not a readable safetensors file: {err}") from err
        if metadata.get("format") != _FORMAT:
            raise ValueError(f"{path} is not a {_FORMAT} file (format {metadata.get('format')!r}).")
        config = json.loads(metadata["config"])
        targets = ConditionTargets(**config["targets"])
        shape = config["image_shape"]
        network = feature_network(len(shape) - 1, shape[0], config["widths"], targets.num_outputs)
        try:
            network.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ValueError(f"weights in {path} do not fit their stated architecture: {str(err)[:300]}") from err
        return cls(network.to(device or "cpu"), targets, shape, widths=config["widths"], training=config["training"],
                   fingerprint=config["fingerprint"])


@torch.no_grad()
def _recalibrate_batch_norm(network: nn.Module, items: torch.Tensor, batch_size: int, device: torch.device) -> None:
    """Running BatchNorm statistics as the cumulative average over ``items`` (near-equal batches of >= 2)."""
    norms = [m for m in network.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # None = cumulative moving average in torch
    network.train()
    for batch in torch.tensor_split(items, max(1, math.ceil(len(items) / batch_size))):
        network(batch.to(device))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    network.eval()


def train_feature_extractor(
    items: torch.Tensor,
    rows: Sequence[Mapping[str, Any]],
    *,
    continuous: Sequence[str] = (),
    categorical: Mapping[str, Sequence[str]] | None = None,
    widths: Sequence[int] = (8, 16, 32, 64),
    max_epochs: int = 20,
    batch_size: int = 16,
    learning_rate: float = 1e-3,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> ImageFeatureExtractor:
    """Train an :class:`ImageFeatureExtractor` on real training images to predict their conditions.

    Args:
        items: real training images ``(N, C, *spatial)`` (2D or 3D), in the units the evaluated samples come in.
        rows: one row per item holding the conditions (unknown values are skipped by the loss).
        continuous: continuous conditions to regress (standardised), e.g. ``["age", "slice_position"]``.
        categorical: ``{name: categories}`` to classify, e.g. ``{"sex": ["F", "M"]}``.
        widths: the four ResNet stage widths; the last is the feature size.
        max_epochs: passes over the items.
        batch_size: items per step.
        learning_rate: Adam's step size.
        seed: seeds initialisation and shuffling (the caller's global RNG is left as it was).
        device: where to train; the extractor stays there.

    Raises:
        ValueError: items and rows differ in number, fewer than two items, ``max_epochs`` < 1, or bad targets /
            widths (see :meth:`ConditionTargets.fit`, :func:`feature_network`).
    """
    items = torch.as_tensor(items, dtype=torch.float32)
    if items.shape[0] != len(rows) or items.shape[0] < 2 or int(max_epochs) < 1:
        raise ValueError(f"train_feature_extractor needs one row per item, at least two items and max_epochs >= 1, "
                         f"got {items.shape[0]} items, {len(rows)} rows, max_epochs={max_epochs}.")
    targets = ConditionTargets.fit(rows, continuous, categorical)
    labels, device = targets.encode(rows), torch.device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        network = feature_network(items.ndim - 2, items.shape[1], widths, targets.num_outputs).to(device)
        loader = DataLoader([{"image": x, "label": y} for x, y in zip(items, labels, strict=True)],
                            batch_size=min(int(batch_size), len(items)), shuffle=True,
                            drop_last=len(items) > batch_size,  # no batch of one: BatchNorm needs two
                            generator=torch.Generator().manual_seed(int(seed)))
        trainer = SupervisedTrainer(device=device, max_epochs=int(max_epochs), train_data_loader=loader,
                                    network=network, optimizer=torch.optim.Adam(network.parameters(), learning_rate),
                                    loss_function=targets.loss, decollate=False)
        trainer.run()
        _recalibrate_batch_norm(network, items, int(batch_size), device)
    training = {"n_items": len(items), "max_epochs": int(max_epochs), "iterations": trainer.state.iteration,
                "final_loss": float(trainer.state.output["loss"].detach()), "batch_size": int(batch_size),
                "learning_rate": float(learning_rate), "seed": int(seed)}
    return ImageFeatureExtractor(network, targets, items.shape[1:], widths=widths, training=training)


def _fingerprint(items: torch.Tensor, rows: Sequence[Mapping[str, Any]], settings: Mapping[str, Any]) -> str:
    """Digest of what an extractor learns from: the items' float32 bytes, the rows' target values (the ``continuous``
    and ``categorical`` names of ``settings``; other fields, such as file paths, vary with where the data lives) and
    the settings."""
    targets = [*settings["continuous"], *settings["categorical"]]
    digest = hashlib.sha256(torch.as_tensor(items, dtype=torch.float32).contiguous().numpy().tobytes())
    target_rows = [{name: row.get(name) for name in targets} for row in rows]
    digest.update(json.dumps([target_rows, dict(settings)], sort_keys=True, default=str).encode())
    return digest.hexdigest()


def cached_feature_extractor(
    path: str | os.PathLike,
    cohort: Any,
    *,
    reuse: Sequence[str | os.PathLike] = (),
    continuous: Sequence[str] = (),
    categorical: Mapping[str, Sequence[str]] | None = None,
    widths: Sequence[int] = (8, 16, 32, 64),
    max_epochs: int = 20,
    batch_size: int = 16,
    learning_rate: float = 1e-3,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> ImageFeatureExtractor:
    """The extractor saved at ``path``, or at one of ``reuse``, that was trained on this cohort with these settings;
    else a new one trained by :func:`train_feature_extractor` and saved at ``path``.

    A saved extractor is reused only when its fingerprint (a digest of the training items' bytes, their target values
    and the settings) matches; a matching one from ``reuse`` is copied to ``path``, so that folder holds the extractor
    that was used. A file that does not match is not used, and a warning names it.

    Args:
        path: the safetensors file (e.g. in the evaluation's output folder).
        cohort: the real *training* cohort (its ``items`` and ``rows``; never the test subjects).
        reuse: other saved extractors to use when they match, tried after ``path``, e.g. the one a bundle ships
            (``models/feature_extractor.safetensors``); they are only read.
        continuous, categorical, widths, max_epochs, batch_size, learning_rate, seed, device: see
            :func:`train_feature_extractor`.
    """
    settings = {"continuous": list(continuous), "categorical": dict(categorical or {}), "widths": list(widths),
                "max_epochs": max_epochs, "batch_size": batch_size, "learning_rate": learning_rate, "seed": seed}
    fingerprint = _fingerprint(cohort.items, cohort.rows, settings)
    unmatched = []
    for candidate in dict.fromkeys(Path(p) for p in (path, *reuse)):
        if candidate.is_file():
            saved = ImageFeatureExtractor.load(candidate, device=device)
            if saved.fingerprint == fingerprint:
                if candidate != Path(path):
                    with atomic_output_path(path) as copy:
                        shutil.copyfile(candidate, copy)
                return saved
            unmatched.append(str(candidate))
    if unmatched:
        logger.warning("feature extractor %s was trained on other images or settings than these %d; training a new "
                       "one into %s", " and ".join(unmatched), len(cohort.items), path)
    extractor = train_feature_extractor(cohort.items, cohort.rows, device=device, **settings)
    extractor.fingerprint = fingerprint
    extractor.save(path)
    return extractor
