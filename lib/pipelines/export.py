"""A run's results as CSV or JSONL: one column per input field and per step output field (`step.field`).

Text cells a spreadsheet would run as a formula (= + - @, tab, CR) are prefixed with a single quote, by the rule every
CSV export shares (lib.core.cells).
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from sqlalchemy import Engine

from lib.core.cells import neutralise_cell
from lib.pipelines.runs import load_run, results

META_COLUMNS = ["row", "status", "step", "error"]


def _flat(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return json.dumps(value, ensure_ascii=False)


def export_rows(engine: Engine, run_id: int) -> tuple[list[str], list[dict[str, Any]]]:
    """(columns, rows) of a run's results: row number, status, failed/waiting step, error, inputs, outputs, decisions."""
    run = load_run(engine, run_id)
    rows = results(engine, run_id)
    inputs: dict[str, None] = {}
    for r in rows:
        inputs.update(dict.fromkeys(r.input))
    gate_cols = [f"{g.name}.{k}" for g in run.pipeline.gates() for k in ("decided_at", "reason")]
    columns = [*META_COLUMNS, *inputs, *run.pipeline.output_columns(), *gate_cols]
    out = []
    for r in rows:
        record: dict[str, Any] = {"row": r.position + 1, "status": r.status, "step": r.step, "error": r.error}
        record.update({c: r.values.get(c) for c in inputs})
        record.update({c: r.values.get(c) for c in run.pipeline.output_columns()})
        for gate, d in r.decisions.items():
            record[f"{gate}.decided_by"] = d["decided_by"]
            record[f"{gate}.decided_at"] = d["decided_at"].isoformat() if d["decided_at"] else None
            record[f"{gate}.reason"] = d["reason"]
        out.append(record)
    return columns, out


def export_csv(engine: Engine, run_id: int) -> str:
    """The results as CSV text (CRLF rows), formula-looking cells neutralised, lists and objects as JSON."""
    columns, rows = export_rows(engine, run_id)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([neutralise_cell(c) for c in columns])
    for r in rows:
        writer.writerow([neutralise_cell(_flat(r.get(c))) for c in columns])
    return buffer.getvalue()


def export_jsonl(engine: Engine, run_id: int) -> str:
    """The results as JSON Lines: one object a row, outputs keep their JSON types."""
    columns, rows = export_rows(engine, run_id)
    return "".join(json.dumps({c: r.get(c) for c in columns}, ensure_ascii=False, default=str) + "\n" for r in rows)
