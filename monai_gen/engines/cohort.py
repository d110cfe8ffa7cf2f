"""A training cohort of any modality: samples, their conditions and subject ids; built once, cached, split by subject.

A :class:`Cohort` holds ``items`` ``(N, C, *spatial)`` float32 in physical units (mV beats, 2D slices...) and one
row per item: the subject id (``subject_key``), the item's conditions in physical units / labels (None when
unknown) and any bookkeeping fields (source, slice index). Everything a bundle needs from it is generic:

- :func:`build_cohort` runs the bundle's preprocessing (a MONAI ``Compose`` of dictionary transforms written in its
  config) on record dictionaries, one or several items per record (a volume -> its slices), skipping records that
  fail with their reason;
- :func:`cached_cohort` keeps it on disk keyed by its inputs (:func:`input_fingerprint`), never reusing a stale one;
- :func:`split_by_subject` gives train / validation / test cohorts with disjoint subjects (stratified if asked);
- :func:`fit_conditions` fits the condition statistics on the training split, once per subject for subject-level
  phenotypes (age, sex) and over all items for item-level ones (slice position, cardiac phase);
- :func:`training_items` gives the MONAI dataset items a diffusion trainer reads.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from monai_gen.transforms.conditions import ConditionSet, is_missing, read_condition_table
from monai_gen.utils.atomic import atomic_output_path, atomic_write_json

__all__ = [
    "SUBJECT_KEY",
    "MISSING_VALUES",
    "Cohort",
    "CohortSplit",
    "records_from_table",
    "build_cohort",
    "input_fingerprint",
    "cached_cohort",
    "split_by_subject",
    "fit_conditions",
    "training_items",
    "innermost_cause",
]

logger = logging.getLogger(__name__)

SUBJECT_KEY = "subject_id"
_FORMAT = "monai_gen.cohort/1"


@dataclass
class Cohort:
    """Items ``(N, C, *spatial)`` float32 and one row per item (subject id, conditions, bookkeeping fields).

    Raises:
        ValueError: items and rows differ in number, or a row has no subject id.
    """

    items: torch.Tensor
    rows: list[dict[str, Any]]
    subject_key: str = SUBJECT_KEY

    def __post_init__(self) -> None:
        if self.items.shape[0] != len(self.rows):
            raise ValueError(f"a cohort needs one row per item, got {self.items.shape[0]} items and {len(self.rows)} rows.")
        missing = [i for i, row in enumerate(self.rows) if is_missing(row.get(self.subject_key))]
        if missing:
            raise ValueError(f"cohort rows {missing[:5]} have no {self.subject_key!r}; every item needs its subject.")

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, indices: Sequence[int]) -> Cohort:
        index = torch.as_tensor(list(indices), dtype=torch.long)
        return Cohort(self.items[index], [self.rows[i] for i in index.tolist()], self.subject_key)

    def subjects(self) -> list[str]:
        """The subject ids, sorted."""
        return sorted({str(row[self.subject_key]) for row in self.rows})

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``<path>.safetensors`` (items) then ``<path>.json`` (rows), each atomically, the rows last."""
        path = Path(path)
        with atomic_output_path(path.with_suffix(".safetensors")) as tmp:
            save_file({"items": self.items.contiguous()}, str(tmp))
        atomic_write_json(path.with_suffix(".json"), {"format": _FORMAT, "subject_key": self.subject_key, "rows": self.rows})
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Cohort:
        """Read a cohort written by :meth:`save`; errors name the file."""
        path = Path(path)
        items_file, rows_file = path.with_suffix(".safetensors"), path.with_suffix(".json")
        for f in (items_file, rows_file):
            if not f.is_file():
                raise FileNotFoundError(f"cohort file {f} does not exist.")
        record = json.loads(rows_file.read_text(encoding="utf-8"))
        if record.get("format") != _FORMAT:
            raise ValueError(f"cohort file {rows_file} is not a {_FORMAT} file; rebuild the cohort.")
        return cls(load_file(str(items_file))["items"], record["rows"], record["subject_key"])


class CohortSplit(NamedTuple):
    """Cohorts with disjoint subjects; ``validation`` is empty unless asked for."""

    train: Cohort
    validation: Cohort
    test: Cohort


MISSING_VALUES = ("unknown", "skip", "error")
"""What :func:`records_from_table` does with an empty / "NA" / "unknown" cell of a condition column: keep the subject
with the condition unknown (None: the network's null token), leave the subject out, or raise."""


def records_from_table(
    table: str | os.PathLike,
    folder: str | os.PathLike,
    *,
    id_column: str,
    file_pattern: str = "{id}*",
    columns: Mapping[str, str] | None = None,
    conditions: ConditionSet | Sequence[Mapping[str, Any]] | None = None,
    missing: str = "unknown",
    file_key: str = "image",
    subject_key: str = SUBJECT_KEY,
) -> list[dict[str, Any]]:
    """Record dictionaries ``{file_key: path, subject_key: id, <condition>: value}`` from a subject table and a folder.

    Every value of a column that maps to one of ``conditions`` is checked as the table is read, so a malformed cell
    fails here, naming the file, the row, the subject and the column, instead of when the statistics are fitted.
    Values are kept in canonical form (numbers as floats, categories by their label: ``female`` -> ``F``).

    Args:
        table: CSV with one row per subject (e.g. IXI's ``participants.csv``: ``MRID,Age,Sex``).
        folder: where the subjects' files are; a subject's file is the single match of ``file_pattern``.
        id_column: the table column holding the subject id.
        file_pattern: glob pattern with ``{id}`` for the subject id, e.g. ``"{id}_T1.nii.gz"``.
        columns: table column -> condition name (e.g. ``{"Age": "age", "Sex": "sex"}``); others are not kept.
        conditions: the model's conditions (a ``ConditionSet`` or the bundle's list of specs) the values are checked
            against; None keeps them as read.
        missing: one of :data:`MISSING_VALUES`, for a missing value of a condition column; each subject concerned
            is logged.
        file_key, subject_key: dictionary keys of the file and the subject id.

    Raises:
        ValueError: no subject has a file, a subject matches several files, the id column is missing, a row has no
            id or repeats one, a condition value is malformed or out of range (or missing, with ``missing="error"``).
        FileNotFoundError: ``table`` or ``folder`` does not exist.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"data folder {folder} does not exist.")
    if missing not in MISSING_VALUES:
        raise ValueError(f"records_from_table: missing must be one of {list(MISSING_VALUES)}, got {missing!r}.")
    specs = conditions if conditions is None or isinstance(conditions, ConditionSet) else ConditionSet(conditions)
    rows = read_condition_table(table, required=[id_column, *(columns or {})])
    records, without_file, unknown, first_row = [], [], [], {}
    for number, row in enumerate(rows, start=1):
        subject = _subject_id(row, id_column, number, first_row, table)
        fields, gaps = _table_fields(row, columns or {}, specs, f"{table}, row {number} ({id_column} {subject!r})")
        matches = sorted(folder.glob(file_pattern.format(id=subject)))
        if len(matches) > 1:
            raise ValueError(f"subject {subject!r} of {table} matches several files in {folder}: {[m.name for m in matches]}.")
        if not matches:
            without_file.append(subject)
            continue
        if gaps:
            if missing == "error":
                raise ValueError(f"{table}, row {number} ({id_column} {subject!r}): no value in column(s) {gaps}.")
            unknown.append(f"{subject} ({', '.join(gaps)})")
            if missing == "skip":
                continue
        records.append({file_key: str(matches[0]), subject_key: subject, **fields})
    if unknown:
        done = "left out" if missing == "skip" else "kept with the condition unknown (its null token)"
        logger.warning(
            "%d subject(s) of %s have missing values, %s: %s", len(unknown), table, done, "; ".join(unknown[:5])
        )
    if without_file:
        logger.warning("%d subject(s) of %s have no file in %s (e.g. %s)", len(without_file), table, folder, without_file[:3])
    if not records:
        raise ValueError(f"no subject of {table} has a file matching {file_pattern!r} in {folder}.")
    return records


def _subject_id(row: Mapping[str, Any], id_column: str, number: int, first_row: dict[str, int], table: Any) -> str:
    """The row's subject id; an error when it is empty or an earlier row had it (``first_row``: id -> row)."""
    subject = str(row[id_column]).strip()
    if not subject:
        raise ValueError(f"{table}, row {number}: no subject id in column {id_column!r}.")
    if subject in first_row:
        raise ValueError(
            f"{table}, rows {first_row[subject]} and {number}: subject {id_column} {subject!r} appears twice."
        )
    first_row[subject] = number
    return subject


def _table_fields(
    row: Mapping[str, Any], columns: Mapping[str, str], conditions: ConditionSet | None, where: str
) -> tuple[dict[str, Any], list[str]]:
    """``{name: value}`` of the kept columns (None when missing; conditions canonical) and the missing columns."""
    fields, gaps = {}, []
    for column, name in columns.items():
        value = row[column]
        if is_missing(value):
            fields[name] = None
            gaps.append(column)
        elif conditions is not None and name in conditions.names:
            fields[name] = conditions[name].canonical_value(value, where=f"{where}, column {column!r}")
        else:
            fields[name] = value
    return fields, gaps


def build_cohort(
    records: Sequence[Mapping[str, Any]],
    transform: Callable[[dict[str, Any]], Any],
    *,
    fields: Sequence[str],
    item_key: str = "image",
    subject_key: str = SUBJECT_KEY,
) -> Cohort:
    """Run ``transform`` (the bundle's preprocessing ``Compose``) on each record; every output dictionary is an item.

    Args:
        records: one dictionary per record (file path, subject id, table fields), e.g. from :func:`records_from_table`.
        transform: record dictionary -> one dictionary or a list of them (a volume cut into slices), each holding
            ``item_key`` ``(C, *spatial)``.
        fields: the row fields of each item (conditions and bookkeeping), read from the output dictionary (e.g.
            ``slice_position`` written by ``VolumeToSlicesd``) or else from the record (``age`` of the table).
        item_key: key of the item in the output dictionaries.
        subject_key: key of the subject id in the records.

    Raises:
        ValueError: no record gives an item; the message lists the first problems, each naming its record.
    """
    items, rows, problems = [], [], []
    for record in records:
        try:
            outputs = transform(dict(record))
        except Exception as err:  # a record MONAI cannot read or transform is skipped, with its reason
            problems.append(f"{record.get(item_key, record.get(subject_key))}: {innermost_cause(err)}")
            continue
        for output in outputs if isinstance(outputs, list) else [outputs]:
            items.append(torch.as_tensor(np.asarray(output[item_key]), dtype=torch.float32))
            rows.append({subject_key: str(record[subject_key]), **{f: _scalar(output.get(f, record.get(f))) for f in fields}})
    if problems:
        logger.warning("skipped %d of %d records: %s", len(problems), len(records), "; ".join(problems[:3]))
    if not items:
        raise ValueError(f"no usable item in {len(records)} records; problems: {problems[:5]}")
    return Cohort(torch.stack(items), rows, subject_key)


def input_fingerprint(
    files: Iterable[str | os.PathLike],
    *,
    settings: Mapping[str, Any] | None = None,
    code: Sequence[str] = (),
    companions: bool = False,
) -> str:
    """SHA-256 (hex) of what shapes a cohort: each file's path, size and modification time, the ``settings`` (JSON)
    and the source files of the ``code`` modules (a package: every file of its folder, data files such as weights
    included).

    Args:
        files: the records' files.
        settings: the preprocessing settings that change the items (JSON-compatible).
        code: importable module names whose source shapes the items (readers, transforms, the bundle's module).
        companions: also cover every file sharing a record file's stem in its folder, which a reader opens beside
            the one it is given (a WFDB header's ``.dat`` / ``.mat`` signal, an Analyze ``.hdr``'s ``.img``).
    """
    digest = hashlib.sha256(json.dumps(settings or {}, sort_keys=True, default=str).encode())
    for module in code:
        source = Path(importlib.import_module(module).__file__)
        for path in sorted(source.parent.iterdir()) if source.name == "__init__.py" else [source]:
            if path.is_file():
                digest.update(path.name.encode() + path.read_bytes())
    for path in _with_companions(files) if companions else sorted(Path(f).resolve() for f in files):
        stat = path.stat()
        digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _with_companions(files: Iterable[str | os.PathLike]) -> list[Path]:
    """The files and every file sharing one's stem in its folder, resolved and sorted (each folder listed once)."""
    listings: dict[Path, list[Path]] = {}
    found: set[Path] = set()
    for file in (Path(f).resolve() for f in files):
        if file.parent not in listings:
            listings[file.parent] = [p for p in file.parent.iterdir() if p.is_file()]
        found.add(file)
        found.update(p for p in listings[file.parent] if p.stem == file.stem)
    return sorted(found)


def cached_cohort(cache_dir: str | os.PathLike, key: str, build: Callable[[], Cohort]) -> Cohort:
    """``build()``'s cohort, cached as ``<cache_dir>/cohort_<key[:16]>``; caches of other keys in the folder are removed."""
    cache_dir = Path(cache_dir)
    cache = cache_dir / f"cohort_{key[:16]}"
    if cache.with_suffix(".json").is_file() and cache.with_suffix(".safetensors").is_file():
        return Cohort.load(cache)
    cohort = build()
    cohort.save(cache)
    for other in [*cache_dir.glob("cohort_*.safetensors"), *cache_dir.glob("cohort_*.json")]:
        if other.stem != cache.name:
            other.unlink(missing_ok=True)
    return cohort


def split_by_subject(
    cohort: Cohort,
    *,
    test_fraction: float = 0.2,
    validation_fraction: float = 0.0,
    seed: int = 0,
    stratify_by: str | None = None,
    single_subject_strata: str = "test",
    test_subjects: Sequence[str] | None = None,
) -> CohortSplit:
    """Train / validation / test cohorts with disjoint subjects: a fixed-seed shuffle of the subject ids, taken per
    stratum of ``stratify_by`` (e.g. ``"source"``) when given, so every stratum is represented in each split.

    Every stratum gives at least one subject to the test split; one with a single subject gives it to
    ``single_subject_strata`` (``"test"``, or ``"train"`` to keep a condition that only one subject holds learnable,
    e.g. an ACDC group with one usable patient). With two subjects per stratum and ``test_fraction=0.5`` this is
    "train on one subject of each group, test on the other".

    ``test_subjects`` names the held-out subjects instead (e.g. the one subject of a small cohort whose volumes suit
    evaluation); ``test_fraction``, ``stratify_by`` and ``single_subject_strata`` then play no part, and a validation
    split, if asked, is drawn from the rest.

    Raises:
        ValueError: fractions outside [0, 1) or summing to 1 or more, fewer subjects than splits, a ``test_subjects``
            entry that is not a subject of the cohort, or ``test_subjects`` that leave no training subject.
    """
    if not (0 < test_fraction < 1 and 0 <= validation_fraction < 1 and test_fraction + validation_fraction < 1):
        raise ValueError(f"need 0 < test_fraction, 0 <= validation_fraction and a sum < 1, got {test_fraction}, {validation_fraction}.")
    if single_subject_strata not in ("test", "train"):
        raise ValueError(f"single_subject_strata must be 'test' or 'train', got {single_subject_strata!r}.")
    subjects = cohort.subjects()
    needed = 2 + (validation_fraction > 0)
    if len(subjects) < needed:
        raise ValueError(
            f"a split by subject ({cohort.subject_key!r}) into {needed} parts needs at least {needed} subjects, got "
            f"{len(subjects)}."
        )
    strata: dict[Any, list[str]] = {}
    first_row = {str(row[cohort.subject_key]): row for row in reversed(cohort.rows)}
    for subject in subjects:
        strata.setdefault(first_row[subject].get(stratify_by) if stratify_by else None, []).append(subject)
    rng, test, validation = np.random.default_rng(seed), set(), set()
    if test_subjects is not None:
        test = {str(s) for s in test_subjects}
        unknown = sorted(test - set(subjects))
        if unknown or not test or len(test) >= len(subjects):
            raise ValueError(
                f"test_subjects {sorted(test)} must name some but not all of the cohort's subjects {subjects}"
                + (f"; not in the cohort: {unknown}" if unknown else "") + "."
            )
        rest = [s for s in subjects if s not in test]
        n_val = int(round(validation_fraction * len(subjects))) if validation_fraction else 0
        validation = {rest[i] for i in rng.permutation(len(rest))[:n_val]}
        if len(validation) >= len(rest):
            raise ValueError(f"a validation split of {n_val} subjects leaves no training subject of {rest}.")
        strata = {}
    for members in strata.values():
        shuffled = [members[i] for i in rng.permutation(len(members))]
        if len(shuffled) == 1 and single_subject_strata == "train":
            continue
        n_test = max(1, int(round(test_fraction * len(shuffled))))
        n_val = int(round(validation_fraction * len(shuffled))) if validation_fraction else 0
        test.update(shuffled[:n_test])
        validation.update(shuffled[n_test : n_test + n_val])
    part = [("test" if s in test else "validation" if s in validation else "train") for s in
            (str(row[cohort.subject_key]) for row in cohort.rows)]
    pick = {name: [i for i, p in enumerate(part) if p == name] for name in ("train", "validation", "test")}
    return CohortSplit(*(cohort.subset(pick[name]) for name in ("train", "validation", "test")))


def fit_conditions(
    specs: ConditionSet | Sequence[Any], cohort: Cohort, *, save_to: str | os.PathLike | None = None
) -> ConditionSet:
    """The condition set with statistics fitted on ``cohort`` (its training split); saved as JSON when asked.

    A condition whose value is the same for all items of every subject (age, sex, a record's heart rate) is fitted
    on one row per subject, so subjects with many items do not weigh more; one that varies within a subject (slice
    position, cardiac phase) is fitted on every item.
    """
    conditions = specs if isinstance(specs, ConditionSet) else ConditionSet.from_dict(list(specs))
    by_subject: dict[str, list[dict[str, Any]]] = {}
    for row in cohort.rows:
        by_subject.setdefault(str(row[cohort.subject_key]), []).append(row)
    per_subject = [rows[0] for rows in by_subject.values()]
    constant = {
        name for name in conditions.names
        if all(len({json.dumps(r.get(name)) for r in rows}) == 1 for rows in by_subject.values())
    }
    varying = [name for name in conditions.names if name not in constant]
    fitted_subject = ConditionSet([conditions[name] for name in conditions.names if name in constant]).fit(
        per_subject, source="training cohort (one row per subject)") if constant else None
    fitted_items = ConditionSet([conditions[name] for name in varying]).fit(
        cohort.rows, source="training cohort") if varying else None
    fitted = ConditionSet([
        fitted_subject[name] if name in constant else fitted_items[name] for name in conditions.names
    ])
    if save_to is not None:
        fitted.save(save_to)
    return fitted


def training_items(
    cohort: Cohort, conditions: ConditionSet, *, normalise: Callable[[torch.Tensor], torch.Tensor] | None = None,
    image_key: str = "image",
) -> list[dict[str, torch.Tensor]]:
    """MONAI dataset items ``{image_key: normalise(item), "conditions": (P,), "condition_mask": (P,)}``.

    ``normalise`` maps physical units to model space (e.g. :class:`monai_gen.transforms.LinearNormalisation`; the
    generator applies its ``inverse``).
    """
    values, mask = conditions.encode_rows(cohort.rows, source="training cohort")
    items = cohort.items if normalise is None else normalise(cohort.items)
    return [{image_key: items[i], "conditions": values[i], "condition_mask": mask[i]} for i in range(len(cohort))]


def _scalar(value: Any) -> Any:
    """A row value as JSON keeps it: tensors / arrays of one element as numbers, numpy scalars as Python ones."""
    if hasattr(value, "numel") and value.numel() == 1 or isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    if isinstance(value, np.generic):
        value = value.item()
    return value


def innermost_cause(err: BaseException) -> str:
    """``"<type>: <message>"`` of the innermost error of MONAI's wrapped transform errors (``err`` itself when it
    wraps nothing)."""
    while err.__cause__ is not None:
        err = err.__cause__
    return f"{type(err).__name__}: {err}"
