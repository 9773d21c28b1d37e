"""What the UI needs to show a query_usage result: its rows as records, and whether it is a time series."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_DATE = re.compile(r"^\d{4}-\d{2}(-\d{2})?([ T]\d{2}(:\d{2}){0,2}(\.\d{1,9})?([+-]\d{2}:?\d{2}|Z)?)?$|^\d{4}-W?\d{2}$")


@dataclass(frozen=True)
class TimeSeries:
    """A result to chart: the time column and the numeric columns over it."""

    x: str
    y: list[str]


def records(table: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of a query_usage result as {column: value} dicts."""
    return [dict(zip(table["columns"], row, strict=False)) for row in table["rows"]]


def time_series(table: dict[str, Any]) -> TimeSeries | None:
    """The time column and numeric columns when every row has a date-like first time column (2026-10-19,
    2026-10-19 13:00, 2026-10, 2026-W43) and at least two rows; None when the result is not a time series."""
    columns, rows = table.get("columns") or [], table.get("rows") or []
    if len(rows) < 2:
        return None
    for i, name in enumerate(columns):
        values = [r[i] for r in rows]
        if all(isinstance(v, str) and len(v) <= 40 and _DATE.match(v) for v in values):
            numeric = [
                c
                for j, c in enumerate(columns)
                if j != i
                and all(isinstance(r[j], (int, float)) and not isinstance(r[j], bool) for r in rows if r[j] is not None)
                and any(r[j] is not None for r in rows)
            ]
            return TimeSeries(name, numeric) if numeric else None
    return None
