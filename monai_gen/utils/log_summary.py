"""Repeated log warnings collapsed into one line with a count."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["collapse_repeated_warnings"]


@contextmanager
def collapse_repeated_warnings(logger: logging.Logger) -> Iterator[None]:
    """Hold back ``logger``'s warnings inside the block; at its end log each message template once, with a count.

    Warnings logged with the same format string (e.g. ``"skipping ECG record %s: %s"`` for 18 records) become one
    line: the first message followed by ``(and 17 more like it)``. Other levels pass through unchanged.

    Examples:
        >>> with collapse_repeated_warnings(logging.getLogger("monai_gen.bundle.ecg_cohort")):
        ...     cohort = build_beat_cohort(records)
    """
    held: dict[str, list[logging.LogRecord]] = {}

    def hold(record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING:
            return True
        held.setdefault(str(record.msg), []).append(record)
        return False

    logger.addFilter(hold)
    try:
        yield
    finally:
        logger.removeFilter(hold)
        for records in held.values():
            more = f" (and {len(records) - 1} more like it)" if len(records) > 1 else ""
            logger.warning("%s%s", records[0].getMessage(), more)
