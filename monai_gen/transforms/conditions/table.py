"""Reading phenotype tables (CSV or in-memory) into rows for :class:`~.spec.ConditionSet`."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["read_condition_table"]


def read_condition_table(
    table: str | os.PathLike | Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
    *,
    required: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Rows of a phenotype table: one dict per subject, values as read (strings for a CSV).

    Args:
        table: a CSV file (header row, comma separated, UTF-8), a dict of equal-length columns, or a list of
            row dicts.
        required: column names that must exist (e.g. the conditions of a model); values may still be missing.

    Raises:
        FileNotFoundError: the CSV file does not exist.
        ValueError: empty table, duplicate or missing columns, ragged rows or columns; the message names the
            file and the row.
    """
    if isinstance(table, (str, os.PathLike)):
        rows, source = _read_csv(Path(table)), str(table)
    elif isinstance(table, Mapping):
        rows, source = _columns_to_rows(table), "condition table"
    else:
        rows, source = [dict(row) for row in table], "condition rows"
    if not rows:
        raise ValueError(f"{source} holds no rows.")
    missing = [name for name in required if name not in rows[0]]
    if missing:
        raise ValueError(f"{source} lacks the column(s) {missing}; it has {sorted(rows[0])}.")
    return rows


def _read_csv(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise FileNotFoundError(f"condition table {path} does not exist.")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            return _parse_csv(csv.reader(handle), path)
    except UnicodeDecodeError as err:
        raise ValueError(
            f"condition table {path} is not UTF-8 text (byte {err.start}: {err.reason}); save it as UTF-8 CSV."
        ) from None
    except csv.Error as err:
        raise ValueError(f"condition table {path} is not a readable CSV file: {err}.") from None


def _parse_csv(reader: Iterator[list[str]], path: Path) -> list[dict[str, Any]]:
    header = next(reader, None)
    if not header:
        raise ValueError(f"condition table {path} is empty (no header row).")
    header = [name.strip() for name in header]
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise ValueError(f"condition table {path} has duplicate columns {duplicates}.")
    rows = []
    for line_number, cells in enumerate(reader, start=2):
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(header):
            raise ValueError(f"condition table {path}, line {line_number}: {len(cells)} cells for {len(header)} columns.")
        rows.append({name: cell.strip() for name, cell in zip(header, cells, strict=True)})
    return rows


def _columns_to_rows(columns: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"condition table columns differ in length: {lengths}.")
    count = next(iter(lengths.values()), 0)
    return [{name: values[i] for name, values in columns.items()} for i in range(count)]
