"""Phenotype conditions: what each condition means, and its encoding as ``(values, mask)`` tensors.

A :class:`ConditionSpec` describes one phenotype (name, continuous, periodic or categorical, unit, valid range,
normalisation statistics, period or categories). A :class:`ConditionSet` is the ordered list of specs a model was
trained with: it turns a table row into the model's condition tensors and back, checks ranges, and is saved
as JSON beside the weights so a bundle ships exactly the encoding it was trained with.

Encoding (the project-wide condition contract, see ``docs/architecture.md``):

- ``values``: float32 ``(P,)`` (or ``(N, P)`` for a table). Continuous phenotypes are z-scores
  ``(x - mean) / std``; periodic ones (cardiac phase, time of day) the fraction of their period,
  ``(x mod period) / period`` in ``[0, 1)``, which the network reads as an angle, so the end of the cycle meets its
  start; categorical phenotypes are category indices stored as floats.
- ``mask``: float32, same shape, 1 where the phenotype is present and 0 where it is missing (its value is 0).

With ``one_hot=True`` every categorical phenotype expands to one column per category (mask repeated).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from monai_gen.utils.atomic import atomic_write_json

if TYPE_CHECKING:
    import torch

# torch is imported inside the methods that build tensors, so reading a bundle's conditions (``monai-gen bundles``,
# ``--help``) does not pay for importing it.

__all__ = ["ConditionKind", "ConditionSpec", "ConditionSet", "is_missing"]

_FORMAT = "monai_gen.conditions/1"
_MISSING_STRINGS = frozenset({"", "nan", "na", "n/a", "none", "null", "unknown", "?"})


class ConditionKind(str, Enum):
    """How a phenotype is encoded."""

    CONTINUOUS = "continuous"
    PERIODIC = "periodic"
    CATEGORICAL = "categorical"


def is_missing(value: Any) -> bool:
    """True for ``None``, NaN and the usual spellings of an unknown value in clinical tables."""
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip().lower() in _MISSING_STRINGS
    if isinstance(value, (float, np.floating)):
        return math.isnan(value)
    if hasattr(value, "numel") and value.numel() == 1:  # a one-element torch tensor (torch is not imported here)
        return math.isnan(float(value))
    return False


@dataclasses.dataclass(frozen=True)
class ConditionSpec:
    """One phenotype a model is conditioned on.

    Args:
        name: the field name in tables and on the command line, e.g. ``"qt_interval_ms"``.
        kind: ``"continuous"``, ``"periodic"`` (a value on a cycle of length ``period``: 0 and ``period`` are the
            same point) or ``"categorical"``.
        unit: physical unit of a continuous value (``"ms"``, ``"bpm"``, ``"years"``, ``"kg/m^2"``); ``""``
            for categorical or unit-less values.
        valid_range: ``(low, high)`` a continuous value must lie in (inclusive); values outside are rejected.
            The physiological range, not the training range.
        mean, std: normalisation statistics of a continuous phenotype (from the training data).
        observed_range: ``(min, max)`` seen in the training data; values outside it are extrapolation.
        period: the cycle length of a periodic phenotype, in ``unit`` (1 for a phase given as a fraction).
        categories: ordered category labels of a categorical phenotype (index = position).
        observed_categories: the categories seen in the training data (None: not fitted); a request for another one
            reaches a token the model never trained.
        aliases: extra spellings of categories, e.g. ``{"m": "male", "f": "female"}`` (case-insensitive).
        description: a short human-readable description for ``--help`` and bundle metadata.

    Raises:
        ValueError: an inconsistent specification (the message names the condition).
    """

    name: str
    kind: str = ConditionKind.CONTINUOUS.value
    unit: str = ""
    valid_range: tuple[float, float] | None = None
    mean: float = 0.0
    std: float = 1.0
    observed_range: tuple[float, float] | None = None
    period: float | None = None
    categories: tuple[str, ...] = ()
    observed_categories: tuple[str, ...] | None = None
    aliases: Mapping[str, str] = dataclasses.field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        kinds = [k.value for k in ConditionKind]
        if str(self.kind).lower() not in kinds:
            raise ValueError(f"condition {self.name!r}: kind must be one of {kinds}, got {self.kind!r}.")
        object.__setattr__(self, "kind", str(self.kind).lower())
        object.__setattr__(self, "categories", tuple(str(c) for c in self.categories))
        if self.observed_categories is not None:
            object.__setattr__(self, "observed_categories", tuple(str(c) for c in self.observed_categories))
        object.__setattr__(self, "aliases", {str(k).lower(): str(v) for k, v in dict(self.aliases).items()})
        for field in ("valid_range", "observed_range"):
            value = getattr(self, field)
            if value is not None:
                low, high = (float(v) for v in value)
                if not low <= high:
                    raise ValueError(f"condition {self.name!r}: {field} must be (low, high) with low <= high, got {value}.")
                object.__setattr__(self, field, (low, high))
        self._check_kind_fields()

    def _check_kind_fields(self) -> None:
        if self.kind == ConditionKind.CATEGORICAL.value:
            if len(self.categories) < 2 or len(set(self.categories)) != len(self.categories):
                raise ValueError(
                    f"condition {self.name!r} is categorical and needs at least two distinct categories, "
                    f"got {list(self.categories)}."
                )
            unknown = sorted(set(self.aliases.values()) - set(self.categories))
            if unknown:
                raise ValueError(f"condition {self.name!r}: aliases point to unknown categories {unknown}.")
        elif not (math.isfinite(self.std) and self.std > 0 and math.isfinite(self.mean)):
            raise ValueError(f"condition {self.name!r}: std must be finite and > 0 and mean finite, got {self.mean}, {self.std}.")
        if self.is_periodic != (self.period is not None):
            raise ValueError(
                f"condition {self.name!r}: a period is given for, and only for, a periodic condition "
                f"(kind {self.kind!r}, period {self.period!r})."
            )
        if self.is_periodic:
            if not (math.isfinite(float(self.period)) and float(self.period) > 0):
                raise ValueError(f"condition {self.name!r}: period must be finite and > 0, got {self.period!r}.")
            object.__setattr__(self, "period", float(self.period))

    @property
    def is_categorical(self) -> bool:
        return self.kind == ConditionKind.CATEGORICAL.value

    @property
    def is_periodic(self) -> bool:
        return self.kind == ConditionKind.PERIODIC.value

    @property
    def num_categories(self) -> int:
        """Number of categories (0 for a continuous phenotype): the network's per-phenotype encoder size."""
        return len(self.categories) if self.is_categorical else 0

    def encode_value(self, value: Any, *, where: str = "") -> float:
        """Encode one present value: z-score (continuous), fraction of the period in ``[0, 1)`` (periodic) or
        category index (categorical).

        Raises:
            ValueError: not a number, out of ``valid_range``, or an unknown category; the message names the
                condition, the value and ``where`` it came from (e.g. ``"table.csv, row 3"``).
        """
        if self.is_categorical:
            return float(self._category_index(value, where))
        number = self._as_number(value, where)
        self._check_range(number, where)
        if self.is_periodic:
            return (number % self.period) / self.period
        return (number - self.mean) / self.std

    def canonical_value(self, value: Any, *, where: str = "") -> float | str:
        """A present value as it is recorded: a range-checked float, or the category's own label (``"Male"`` and
        ``"m"`` become ``"male"``).

        Raises:
            ValueError: as :meth:`encode_value`.
        """
        if self.is_categorical:
            return self.categories[self._category_index(value, where)]
        number = self._as_number(value, where)
        self._check_range(number, where)
        return number

    def extrapolates(self, value: float) -> bool:
        """True when a continuous ``value`` lies outside the range seen in training (``observed_range``), or a
        category was not among the training data's (``observed_categories``); a periodic value never does (training
        covers the cycle, not an interval of it)."""
        if self.is_categorical:
            return self.observed_categories is not None and self.canonical_value(value) not in self.observed_categories
        return (
            self.kind == ConditionKind.CONTINUOUS.value
            and self.observed_range is not None
            and not self.observed_range[0] <= float(value) <= self.observed_range[1]
        )

    def decode_value(self, encoded: float) -> float | str:
        """Inverse of :meth:`encode_value`: physical value in ``unit``, or the category label."""
        if self.is_categorical:
            index = int(round(encoded))
            if not 0 <= index < len(self.categories):
                raise ValueError(f"condition {self.name!r}: encoded category index {encoded} is out of range.")
            return self.categories[index]
        if self.is_periodic:
            return encoded * self.period
        return encoded * self.std + self.mean

    def _as_number(self, value: Any, where: str) -> float:
        try:
            number = float(value.item() if hasattr(value, "item") else value)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{_where(where)}condition {self.name!r} must be a number, got {value!r}.") from err
        if not math.isfinite(number):
            raise ValueError(f"{_where(where)}condition {self.name!r} must be finite, got {value!r}.")
        return number

    def _check_range(self, number: float, where: str) -> None:
        if self.valid_range is not None and not self.valid_range[0] <= number <= self.valid_range[1]:
            raise ValueError(
                f"{_where(where)}condition {self.name!r} = {number:g}{' ' + self.unit if self.unit else ''} is outside "
                f"its valid range [{self.valid_range[0]:g}, {self.valid_range[1]:g}]."
            )

    def _category_index(self, value: Any, where: str) -> int:
        """Strings match a category or alias (case-insensitive); integral numbers are category indices."""
        if hasattr(value, "item"):
            value = value.item()
        numeric = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
        if numeric and float(value).is_integer() and 0 <= int(value) < len(self.categories):
            return int(value)
        if not numeric:
            label = str(value).strip().lower()
            canonical = {c.lower(): c for c in self.categories}.get(label) or self.aliases.get(label)
            if canonical is not None:
                return self.categories.index(canonical)
        # text is matched by label only: a "1" in a table could mean either category, so it is never an index
        raise ValueError(
            f"{_where(where)}condition {self.name!r} = {value!r} is not one of its categories {list(self.categories)}"
            + (f" (aliases: {sorted(self.aliases)})" if self.aliases else "")
            + (f" or an index 0..{len(self.categories) - 1}" if numeric else "")
            + "."
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (only the fields that matter for the kind)."""
        record: dict[str, Any] = {"name": self.name, "kind": self.kind, "unit": self.unit, "description": self.description}
        if self.is_categorical:
            record.update(categories=list(self.categories), aliases=dict(self.aliases))
            if self.observed_categories is not None:
                record["observed_categories"] = list(self.observed_categories)
        elif self.is_periodic:
            record.update(period=self.period, valid_range=_listed(self.valid_range))
            record["observed_range"] = _listed(self.observed_range)
        else:
            record.update(mean=self.mean, std=self.std, valid_range=_listed(self.valid_range))
            record["observed_range"] = _listed(self.observed_range)
        return record


class ConditionSet:
    """The ordered phenotypes a model is conditioned on, with their encoding.

    Args:
        specs: one :class:`ConditionSpec` (or a dict of its fields) per phenotype, in token order.

    Examples:
        >>> conditions = ConditionSet([
        ...     ConditionSpec("heart_rate_bpm", unit="bpm", valid_range=(30, 220), mean=70, std=15),
        ...     ConditionSpec("sex", kind="categorical", categories=("female", "male")),
        ... ])
        >>> values, mask = conditions.encode({"heart_rate_bpm": 85, "sex": None})
        >>> values.tolist(), mask.tolist()
        ([1.0, 0.0], [1.0, 0.0])
        >>> conditions.decode(values, mask)
        {'heart_rate_bpm': 85.0, 'sex': None}
    """

    def __init__(self, specs: Sequence[ConditionSpec | Mapping[str, Any]]) -> None:
        parsed = [s if isinstance(s, ConditionSpec) else ConditionSpec(**dict(s)) for s in specs]
        names = [s.name for s in parsed]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if not parsed or duplicates:
            raise ValueError(f"a ConditionSet needs at least one condition and unique names; duplicates: {duplicates}.")
        self.specs: tuple[ConditionSpec, ...] = tuple(parsed)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    @property
    def num_categories(self) -> list[int]:
        """Per phenotype: 0 for continuous / periodic, k for categorical with k classes (the network encoder's argument)."""
        return [s.num_categories for s in self.specs]

    @property
    def periodic(self) -> list[bool]:
        """Per phenotype: whether it is periodic (the network encoder's ``periodic`` argument)."""
        return [s.is_periodic for s in self.specs]

    def __len__(self) -> int:
        return len(self.specs)

    def __getitem__(self, name: str) -> ConditionSpec:
        if name not in self.names:
            raise KeyError(f"{name!r} is not a condition of this model; its conditions are {self.names}.")
        return self.specs[self.names.index(name)]

    def resolve_name(self, name: str) -> str | None:
        """The condition a column or option ``name`` means, matched case-insensitively; None when it is none."""
        by_lower = {n.lower(): n for n in self.names}
        return by_lower.get(str(name).strip().lower())

    def encode(self, row: Mapping[str, Any], *, one_hot: bool = False, where: str = "") -> tuple[torch.Tensor, torch.Tensor]:
        """Encode one row of phenotypes into ``(values, mask)``, float32 ``(P,)``.

        A phenotype absent from ``row`` or holding a missing value (None, NaN, "", "unknown"...) is masked.
        Keys of ``row`` that are not conditions are ignored.

        Raises:
            ValueError: a present value is invalid (see :meth:`ConditionSpec.encode_value`).
        """
        import torch

        values, mask = [], []
        for spec in self.specs:
            raw = row.get(spec.name)
            present = not is_missing(raw)
            encoded = spec.encode_value(raw, where=where) if present else 0.0
            if one_hot and spec.is_categorical:
                values.extend(float(present and i == encoded) for i in range(spec.num_categories))
                mask.extend([float(present)] * spec.num_categories)
            else:
                values.append(encoded)
                mask.append(float(present))
        return torch.tensor(values, dtype=torch.float32), torch.tensor(mask, dtype=torch.float32)

    def encode_rows(
        self, rows: Iterable[Mapping[str, Any]], *, one_hot: bool = False, source: str = "rows"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode many rows into ``(values, mask)`` of shape ``(N, P)``; errors name ``source`` and the row."""
        import torch

        encoded = [self.encode(r, one_hot=one_hot, where=f"{source}, row {i + 1}") for i, r in enumerate(rows)]
        if not encoded:
            raise ValueError(f"{source} holds no rows to encode.")
        return torch.stack([v for v, _ in encoded]), torch.stack([m for _, m in encoded])

    def decode(self, values: torch.Tensor | np.ndarray, mask: torch.Tensor | np.ndarray | None = None) -> dict[str, Any]:
        """Inverse of :meth:`encode` (index form) for one sample: physical values / labels, None where masked."""
        import torch

        values = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
        mask = torch.ones_like(values) if mask is None else torch.as_tensor(mask).reshape(-1)
        if values.numel() != len(self):
            raise ValueError(f"expected {len(self)} encoded values ({self.names}), got {values.numel()}.")
        return {
            s.name: s.decode_value(float(v)) if float(m) > 0.5 else None for s, v, m in zip(self.specs, values, mask, strict=True)
        }

    def fit(self, rows: Iterable[Mapping[str, Any]], *, source: str = "rows") -> ConditionSet:
        """A copy whose continuous specs carry mean, std and observed range of ``rows`` (missing values skipped).

        Values are range-checked first, so a training table with an impossible value fails loudly.

        Raises:
            ValueError: a continuous phenotype has fewer than two present values, or an invalid value.
        """
        rows = list(rows)
        return ConditionSet([_fit_spec(spec, rows, source) for spec in self.specs])

    def to_dict(self) -> dict[str, Any]:
        return {"format": _FORMAT, "conditions": [s.to_dict() for s in self.specs]}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the set as 4-space JSON (atomically; a bundle file, so in model-zoo's JSON format) and return the path."""
        return atomic_write_json(path, self.to_dict(), indent=4)

    @classmethod
    def from_dict(cls, record: Mapping[str, Any], *, source: str = "condition set") -> ConditionSet:
        """Build from :meth:`to_dict` output (or a bundle config's plain list of spec dicts)."""
        if isinstance(record, Mapping):
            if record.get("format", _FORMAT) != _FORMAT:
                raise ValueError(f"{source}: unsupported format {record.get('format')!r}, expected {_FORMAT!r}.")
            record = record.get("conditions", [])
        try:
            return cls([ConditionSpec(**dict(spec)) for spec in record])
        except TypeError as err:
            raise ValueError(f"{source}: invalid condition specification: {err}.") from err

    @classmethod
    def load(cls, path: str | os.PathLike) -> ConditionSet:
        """Read a set saved with :meth:`save`.

        Raises:
            FileNotFoundError: no file at ``path``.
            ValueError: the file is not valid JSON or not a condition set (the message names the file).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"condition statistics file {path} does not exist.")
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"condition statistics file {path} is not valid JSON: {err}.") from err
        return cls.from_dict(record, source=str(path))

    def __repr__(self) -> str:
        return f"ConditionSet({self.names})"


def _fit_spec(spec: ConditionSpec, rows: list[Mapping[str, Any]], source: str) -> ConditionSpec:
    """Validate every present value of ``spec`` in ``rows``; for a continuous spec also fit its statistics."""
    present = [(i, row[spec.name]) for i, row in enumerate(rows) if not is_missing(row.get(spec.name))]
    if spec.is_categorical:
        seen = {spec.canonical_value(value, where=f"{source}, row {i + 1}") for i, value in present}
        return dataclasses.replace(spec, observed_categories=tuple(c for c in spec.categories if c in seen))
    numbers = []
    for i, value in present:
        number = spec._as_number(value, f"{source}, row {i + 1}")
        spec._check_range(number, f"{source}, row {i + 1}")
        numbers.append(number)
    if len(numbers) < 2:
        raise ValueError(f"{source}: condition {spec.name!r} needs at least two present values to fit, got {len(numbers)}.")
    values = np.asarray(numbers)
    if spec.is_periodic:  # encoded by its period, not by statistics
        return dataclasses.replace(spec, observed_range=(values.min(), values.max()))
    return dataclasses.replace(
        spec, mean=float(values.mean()), std=float(values.std()) or 1.0, observed_range=(values.min(), values.max())
    )


def _where(where: str) -> str:
    return f"{where}: " if where else ""


def _listed(pair: tuple[float, float] | None) -> list[float] | None:
    return None if pair is None else [pair[0], pair[1]]
