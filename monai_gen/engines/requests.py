"""Generation requests: what a job generates, built from option values, a conditions table or a sweep.

A :class:`SampleRequest` is one sample to make (output name, seed, requested conditions, declared pass-through
columns). :func:`build_requests` is what an inference config calls: it checks every value against the model's
:class:`~monai_gen.transforms.conditions.ConditionSet` *before* anything is generated, so nothing but declared
conditions (and columns the user explicitly passes through) can reach a synthetic file, and a request never silently
loses a condition:

- an unknown option or column is an error that lists the valid ones (case is normalised: ``QT`` means ``qt``);
- a value that is given but empty or spelled as "unknown" (``nan``, ``NA``, ``""``...) is an error: a condition is
  left unconditioned by not giving it (an empty cell in a table);
- categories are recorded by their own label (``Male`` -> ``male``), numbers as floats;
- a value outside the range the weights were trained on is generated, with a warning that the model extrapolates.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from monai_gen.transforms.conditions import ConditionSet, is_missing, read_condition_table

__all__ = [
    "RESERVED_COLUMNS", "SampleRequest", "requests_from_rows", "sweep_requests", "cine_requests", "checked_values",
    "build_requests",
]

logger = logging.getLogger(__name__)

RESERVED_COLUMNS = ("name", "files", "seed")
"""Manifest columns of the job itself: no condition or pass-through column may take these names."""


@dataclass(frozen=True)
class SampleRequest:
    """One sample to generate.

    Args:
        name: output stem (file names derive from it), unique within a job, e.g. ``"ecg_0003"``.
        seed: the seed of this sample's noise (the same seed draws the same noise whatever the batch).
        conditions: requested phenotypes in physical units / labels, e.g. ``{"heart_rate": 75.0}``;
            a phenotype absent here is left unconditioned (its null token).
        pass_through: columns of the user's table declared to be copied into the sample's manifest row and
            sidecar unchanged (e.g. ``{"subject_id": "S017"}``); never used by the model.
    """

    name: str
    seed: int
    conditions: Mapping[str, Any] = field(default_factory=dict)
    pass_through: Mapping[str, Any] = field(default_factory=dict)


def requests_from_rows(
    rows: Sequence[Mapping[str, Any]],
    *,
    seed: int = 0,
    prefix: str = "sample",
    samples_per_row: int = 1,
    pass_through: Sequence[str] = (),
) -> list[SampleRequest]:
    """One request per row (times ``samples_per_row``), seeds ``seed, seed + 1, ...`` in order.

    A row may carry its own ``seed`` (then that seed is used, plus the repeat index); the ``pass_through`` keys go
    to :attr:`SampleRequest.pass_through`; other keys are conditions.
    """
    if samples_per_row < 1:
        raise ValueError(f"samples_per_row must be >= 1, got {samples_per_row}.")
    requests, width = [], len(str(max(len(rows) * samples_per_row - 1, 1)))
    for i, row in enumerate(rows):
        conditions = {k: v for k, v in row.items() if k != "seed" and k not in pass_through}
        kept = {k: row[k] for k in pass_through if k in row}
        row_seed = int(row["seed"]) if "seed" in row and str(row["seed"]).strip() else None
        for r in range(samples_per_row):
            index = i * samples_per_row + r
            sample_seed = (row_seed + r) if row_seed is not None else seed + index
            requests.append(SampleRequest(f"{prefix}_{index:0{width}d}", sample_seed, conditions, kept))
    return requests


def sweep_requests(
    name: str,
    values: Sequence[float],
    *,
    seeds: Sequence[int],
    fixed: Mapping[str, Any] | None = None,
    prefix: str = "sweep",
) -> list[SampleRequest]:
    """A counterfactual sweep (xMADD Fig. 5): every value of phenotype ``name`` with every seed.

    The same seeds are reused for every value, so a column of the sweep differs only in the phenotype.

    Args:
        name: the phenotype swept.
        values: its values in physical units, e.g. ``numpy.linspace(50, 110, 5)``.
        seeds: one seed per column.
        fixed: other phenotypes held constant across the sweep.
    """
    if not len(values) or not len(seeds):
        raise ValueError(f"a sweep needs at least one value and one seed, got values={list(values)}, seeds={list(seeds)}.")
    fixed = dict(fixed or {})
    return [
        SampleRequest(f"{prefix}_{name}_{k:03d}_seed{seed}", int(seed), {**fixed, name: float(value)})
        for k, value in enumerate(values)
        for seed in seeds
    ]


def build_requests(
    conditions: ConditionSet,
    *,
    values: Mapping[str, Any] | None = None,
    table: str | os.PathLike | None = None,
    pass_through: Sequence[str] = (),
    num_samples: int = 4,
    samples_per_row: int = 1,
    seed: int = 0,
    prefix: str = "sample",
    sweep: str | None = None,
    sweep_start: float | None = None,
    sweep_stop: float | None = None,
    sweep_num_values: int = 5,
    sweep_num_seeds: int = 3,
) -> list[SampleRequest]:
    """The samples an inference run generates, every value checked against the model's conditions.

    - ``sweep`` set: phenotype ``sweep`` from ``sweep_start`` to ``sweep_stop`` in ``sweep_num_values`` steps,
      ``sweep_num_seeds`` seeds (``seed, seed + 1, ...``) per value, the given ``values`` held fixed;
    - else ``table`` set: ``samples_per_row`` samples per row of the CSV (one row per subject); its columns must be
      conditions, ``seed`` or one of ``pass_through``; ``values`` fill conditions the table has no column for;
    - else ``num_samples`` samples of ``values``.
    A value of None (an option not given, an empty table cell) leaves its phenotype unconditioned.

    Raises:
        ValueError: unknown option or column (listing the valid ones), a value given as missing, a value out of its
            valid range or an unknown category; the message names the option, or the file, row and column.
    """
    fixed = checked_values(conditions, values or {})
    if sweep is not None:
        requests = _sweep(conditions, fixed, sweep, sweep_start, sweep_stop, sweep_num_values, sweep_num_seeds, seed)
    elif table is not None:
        rows = _checked_table(conditions, table, fixed, pass_through)
        requests = requests_from_rows(
            rows, seed=seed, prefix=prefix, samples_per_row=int(samples_per_row), pass_through=pass_through
        )
    else:
        requests = requests_from_rows([fixed] * int(num_samples), seed=seed, prefix=prefix)
    _warn_extrapolation(conditions, requests)
    return requests


def cine_requests(
    conditions: ConditionSet,
    *,
    phase: str,
    num_frames: int,
    values: Mapping[str, Any] | None = None,
    seed: int = 0,
    prefix: str = "cine",
) -> list[SampleRequest]:
    """The frames of one synthetic cine: one seed, the periodic condition ``phase`` at ``num_frames`` evenly spaced
    points of its cycle (``0, period / T, ...``; the end, which is the start, not repeated), ``values`` held fixed.

    With a deterministic sampler the frames differ only in their phase, so they form one coherent loop.

    Raises:
        ValueError: ``phase`` is not a periodic condition of the model, fewer than 2 frames, ``phase`` also among
            ``values``, or a value :func:`checked_values` rejects.
    """
    name = conditions.resolve_name(phase)
    periodic = [s.name for s in conditions.specs if s.is_periodic]
    if name not in periodic:
        raise ValueError(f"a cine sweeps a periodic condition of the model ({periodic or 'it has none'}), not {phase!r}.")
    if int(num_frames) < 2:
        raise ValueError(f"a cine needs at least 2 frames, got num_frames={num_frames}.")
    fixed = checked_values(conditions, values or {})
    if name in fixed:
        raise ValueError(f"{name!r} is what a cine sweeps; it cannot also be held fixed at {fixed[name]}.")
    period = conditions[name].period
    requests = [
        SampleRequest(f"{prefix}_frame_{t:03d}", int(seed), {**fixed, name: period * t / int(num_frames)})
        for t in range(int(num_frames))
    ]
    _warn_extrapolation(conditions, requests)
    return requests


def checked_values(conditions: ConditionSet, values: Mapping[str, Any]) -> dict[str, Any]:
    """Option values (None = not given) -> the given ones under their condition names, with canonical values.

    Raises:
        ValueError: an unknown name (listing the conditions), a value spelled as missing (``"nan"``, ``""``), a value
            out of its valid range or an unknown category.
    """
    checked = {}
    for given, value in values.items():
        name = conditions.resolve_name(given)
        if name is None:
            raise ValueError(f"{given!r} is not a condition of this model; its conditions are {conditions.names}.")
        if value is None:
            continue
        if is_missing(value):
            raise ValueError(
                f"condition {name!r} = {value!r} is not a value: give a value, or leave {name!r} out to generate "
                "unconditioned on it."
            )
        checked[name] = conditions[name].canonical_value(value)
    return checked


def _checked_table(
    conditions: ConditionSet, table: str | os.PathLike, fixed: Mapping[str, Any], pass_through: Sequence[str]
) -> list[dict[str, Any]]:
    """Rows of a conditions CSV with canonical names and values; unknown columns and missing spellings fail."""
    _check_pass_through(conditions, pass_through)
    raw_rows = read_condition_table(table)
    columns = _table_columns(conditions, list(raw_rows[0]), pass_through, table)
    both = sorted(set(fixed) & set(columns.values()))
    if both:
        raise ValueError(f"{both} given both as options and as columns of {table}: give each condition once.")
    rows = []
    for number, raw in enumerate(raw_rows, start=1):
        row: dict[str, Any] = dict(fixed)
        for column, name in columns.items():
            cell, where = raw[column], f"{table}, row {number}, column {column!r}"
            if name in pass_through or name == "seed":
                row[name] = _seed(cell, where) if name == "seed" else cell
            elif str(cell).strip():
                if is_missing(cell):
                    raise ValueError(f"{where}: {cell!r} is not a value; leave the cell empty to leave {name!r} unconditioned.")
                row[name] = conditions[name].canonical_value(cell, where=where)
        rows.append(row)
    return rows


def _table_columns(
    conditions: ConditionSet, header: list[str], pass_through: Sequence[str], table: str | os.PathLike
) -> dict[str, str]:
    """Column -> condition name (case-normalised), ``seed`` or a declared pass-through column; else an error."""
    columns, unknown = {}, []
    for column in header:
        if column in pass_through or column == "seed":
            columns[column] = column
        elif (name := conditions.resolve_name(column)) is not None:
            columns[column] = name
        else:
            unknown.append(column)
    if unknown:
        raise ValueError(
            f"{table} has column(s) {unknown} that are not conditions of this model. Valid columns: "
            f"{conditions.names} and 'seed'; to copy an identifier such as a subject id into the outputs, declare it "
            "with pass_through (monai-gen --pass-through COLUMN). Nothing else may reach a synthetic file."
        )
    return columns


def _check_pass_through(conditions: ConditionSet, pass_through: Sequence[str]) -> None:
    clash = sorted({str(c) for c in pass_through} & {*RESERVED_COLUMNS, *conditions.names})
    if clash:
        raise ValueError(f"pass-through column(s) {clash} clash with the manifest's own columns or a condition.")


def _seed(cell: Any, where: str) -> int | str:
    text = str(cell).strip()
    if not text:
        return ""
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{where}: a seed must be a whole number, got {cell!r}.") from None


def _sweep(
    conditions: ConditionSet, fixed: dict[str, Any], name: str, start: float | None, stop: float | None,
    num_values: int, num_seeds: int, seed: int,
) -> list[SampleRequest]:
    continuous = [s.name for s in conditions.specs if not s.is_categorical]
    resolved = conditions.resolve_name(name)
    if resolved not in continuous:
        kind = "a categorical condition" if resolved else "not a condition of this model"
        raise ValueError(
            f"sweep {name!r} is {kind}; a sweep varies a continuous condition: {continuous}. For categories, generate "
            "each category with the same seeds."
        )
    if start is None or stop is None:
        raise ValueError("a sweep needs sweep_start and sweep_stop.")
    if resolved in fixed:
        raise ValueError(f"{resolved!r} is swept; it cannot also be held fixed.")
    for end in (start, stop):
        conditions[resolved].canonical_value(end, where=f"sweep {resolved!r}")
    grid = np.linspace(float(start), float(stop), int(num_values)).round(3).tolist()
    return sweep_requests(resolved, grid, seeds=range(seed, seed + int(num_seeds)), fixed=fixed)


def _warn_extrapolation(conditions: ConditionSet, requests: Sequence[SampleRequest]) -> None:
    """One warning per condition whose requested values leave the range the weights were trained on."""
    for spec in conditions.specs:
        if spec.is_categorical:
            unseen = sorted({str(r.conditions[spec.name]) for r in requests if spec.name in r.conditions
                             and spec.extrapolates(r.conditions[spec.name])})
            if unseen:
                logger.warning(
                    "%s = %s was never in the data the weights were trained on (trained: %s): its token is untrained, "
                    "so the samples are not steered by it.", spec.name, ", ".join(unseen),
                    ", ".join(spec.observed_categories) or "none",
                )
            continue
        outside = sorted({float(r.conditions[spec.name]) for r in requests if spec.name in r.conditions
                          and spec.extrapolates(r.conditions[spec.name])})
        if outside:
            low, high = spec.observed_range
            unit = f" {spec.unit}" if spec.unit else ""  # unitless conditions (a slice position) get no gap
            logger.warning(
                "%s = %s%s is outside the range the weights were trained on (%g-%g%s): the model extrapolates there.",
                spec.name, ", ".join(f"{v:g}" for v in outside[:5]), unit, low, high, unit,
            )
