"""The nearest real training sample of a synthetic one: the memorisation check made visible.

The reference set is the training split of the bundle's own evaluation cohort: ``common.json`` under ``evaluate.json``
parsed with the chosen data folder and a cache folder, its ``cohorts`` (image bundles) or ``dataset`` (the ECG bundle)
id giving a :class:`~monai_gen.engines.cohort.CohortSplit`. The cohort is built (or read from its cache) once, on a
thread of its own, so the page keeps generating while it loads. Distances are L2 in the samples' physical units, as in
:func:`monai_gen.metrics.memorisation.nearest_distances`.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from monai_gen.bundle.registry import workflow_config_names

__all__ = ["Neighbour", "ReferenceSet"]

_SPLIT_IDS = ("cohorts", "dataset")  # the config id of the evaluation's CohortSplit, image bundles first


@dataclass(frozen=True)
class Neighbour:
    """The training item nearest to a sample.

    Attributes:
        item: ``(C, *spatial)`` the real training item.
        row: its cohort row (subject id, conditions, source...).
        distance: L2 distance to the sample, in the samples' units.
        index: its index in the training split.
        count: size of the training split searched.
    """

    item: torch.Tensor
    row: dict[str, Any]
    distance: float
    index: int
    count: int


class ReferenceSet:
    """A bundle's training cohort, built on first use, for nearest-neighbour look-ups.

    Args:
        bundle_root: the bundle folder.
        cache_dir: where the cohort cache is kept (never inside the bundle).
        dataset_dir: the real data folder; None: the evaluation config's default.
    """

    def __init__(self, bundle_root: str | os.PathLike, *, cache_dir: str | os.PathLike,
                 dataset_dir: str | os.PathLike | None = None) -> None:
        from monai_gen.bundle.runs import check_outside_bundle

        self.root, self.cache_dir = Path(bundle_root), Path(cache_dir)
        check_outside_bundle(self.root, cache_dir=self.cache_dir)
        self.dataset_dir = None if dataset_dir is None else Path(dataset_dir)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._train: Any = None
        self._error: str | None = None

    def status(self) -> dict[str, Any]:
        """``{"state": "idle" | "building" | "ready" | "failed", "message": ..., "count": ...}``."""
        with self._lock:
            if self._train is not None:
                return {"state": "ready", "count": len(self._train), "message": f"{len(self._train)} training items"}
            if self._error is not None:
                return {"state": "failed", "message": self._error}
            if self._thread is not None:
                return {"state": "building", "message": f"building the training cohort from {self.describe_source()}"}
            return {"state": "idle", "message": "not loaded"}

    def describe_source(self) -> str:
        return str(self.dataset_dir) if self.dataset_dir else "the evaluation config's dataset_dir"

    def start(self) -> None:
        """Start building the cohort on a thread (nothing when already started)."""
        with self._lock:
            if self._thread is None and self._train is None:
                self._error = None
                self._thread = threading.Thread(target=self._build, name="monai-gen-explore-reference", daemon=True)
                self._thread.start()

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Wait for the build (started if needed) and return :meth:`status`."""
        self.start()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self.status()

    def nearest(self, sample: torch.Tensor) -> Neighbour:
        """The training item nearest to ``sample`` ``(C, *spatial)``.

        Raises:
            RuntimeError: the cohort is not built yet (see :meth:`status`) or failed to build.
            ValueError: the sample's size differs from the items'.
        """
        with self._lock:
            train, error = self._train, self._error
        if train is None:
            raise RuntimeError(error or "the training cohort is still being built; try again in a moment.")
        items = train.items.reshape(len(train), -1).double()
        flat = sample.reshape(1, -1).double()
        if flat.shape[1] != items.shape[1]:
            raise ValueError(f"the sample {tuple(sample.shape)} and the training items {tuple(train.items.shape[1:])} "
                             "differ in size; they cannot be compared.")
        distances = torch.cdist(flat, items)[0]
        index = int(distances.argmin())
        return Neighbour(train.items[index], dict(train.rows[index]), float(distances[index]), index, len(train))

    def _build(self) -> None:
        try:
            train = self._load_train_split()
        except Exception as error:  # shown in the page as the reason the panel is empty
            with self._lock:
                self._error, self._thread = f"the training cohort could not be built: {error}", None
            return
        with self._lock:
            self._train, self._thread = train, None

    def _load_train_split(self) -> Any:
        from monai.bundle import ConfigParser

        parser = ConfigParser()
        parser.read_meta(self.root / "configs" / "metadata.json")
        parser.read_config([str(self.root / "configs" / f"{n}.json") for n in workflow_config_names(self.root, "evaluate")])
        parser["bundle_root"] = str(self.root)
        parser["cache_dir"] = str(self.cache_dir)
        if self.dataset_dir is not None:
            parser["dataset_dir"] = str(self.dataset_dir)
        split_id = next((i for i in _SPLIT_IDS if i in parser), None)
        if split_id is None:
            raise ValueError(f"{self.root.name}'s evaluation config has none of the ids {list(_SPLIT_IDS)}.")
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        return parser.get_parsed_content(split_id).train
