"""The Review page without Streamlit: the queue's filters and lines, an item's input and outputs, a decision."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from lib.core.tables import PipelineReview, utcnow
from lib.pipelines.review import ReviewItem, decide, review_queue
from lib.pipelines.runs import RunDeps

ALL = "(all)"
AGES: dict[str, float | None] = {
    "any time": None,
    "over 1 hour": 3600.0,
    "over 1 day": 86_400.0,
    "over 1 week": 7 * 86_400.0,
}
ACTIONS = {"approve": "Approve", "edit": "Edit the output, then approve", "reject": "Reject"}
MAX_QUEUE = 500


@dataclass(frozen=True)
class Filters:
    """What the queue can be narrowed to (from the rows waiting now)."""

    pipelines: list[str]
    runs: list[int]
    gates: list[str]


def filter_options(engine: Engine) -> Filters:
    """The pipelines, runs and gates that have rows waiting."""
    waiting = review_queue(engine, limit=MAX_QUEUE)
    return Filters(
        sorted({i.pipeline_name for i in waiting}),
        sorted({i.run_id for i in waiting}, reverse=True),
        sorted({i.gate for i in waiting}),
    )


def _aware(moment: datetime) -> datetime:
    """SQLite gives back naive UTC datetimes, PostgreSQL aware ones: compare them as aware."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def waiting_items(
    engine: Engine,
    pipeline: str,
    run: int | str,
    gate: str,
    age: str,
    now: datetime | None = None,
) -> list[ReviewItem]:
    """The rows waiting, oldest first, narrowed by the filters (ALL: no filter; age: waiting at least that long)."""
    items = review_queue(
        engine,
        pipeline_name=None if pipeline == ALL else pipeline,
        run_id=None if run == ALL else int(run),
        gate=None if gate == ALL else gate,
        limit=MAX_QUEUE,
    )
    least = AGES.get(age)
    if least is None:
        return items
    cutoff = (now or utcnow()) - timedelta(seconds=least)
    return [i for i in items if _aware(i.created_at) <= cutoff]


def waited(item: ReviewItem, now: datetime | None = None) -> str:
    """How long a row has waited, e.g. `3 min`, `2 h`, `4 d`."""
    seconds = max(((now or utcnow()) - _aware(item.created_at)).total_seconds(), 0)
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 86_400:
        return f"{int(seconds // 3600)} h"
    return f"{int(seconds // 86_400)} d"


def item_title(item: ReviewItem, now: datetime | None = None) -> str:
    """`Run #3 · row 5 · gate check · waiting 12 min` (pipeline names go through the page's escaping)."""
    return f"Run #{item.run_id} · row {item.position + 1} · gate {item.gate} · waiting {waited(item, now)}"


def queue_frame(items: Sequence[ReviewItem], now: datetime | None = None) -> pd.DataFrame:
    """The queue as a table: pipeline, run, row, gate, how long it waited."""
    records = [
        {
            "pipeline": i.pipeline_name,
            "version": f"v{i.pipeline_version}",
            "run": i.run_id,
            "row": i.position + 1,
            "gate": i.gate,
            "waiting": waited(i, now),
            "due": "" if i.due_at is None else f"{i.due_at:%Y-%m-%d %H:%M}",
        }
        for i in items
    ]
    return pd.DataFrame(records, columns=["pipeline", "version", "run", "row", "gate", "waiting", "due"]).astype(str)


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def fields_frame(values: Mapping[str, Any]) -> pd.DataFrame:
    """A row's fields as a two-column table of text."""
    return pd.DataFrame([{"field": k, "value": _text(v)} for k, v in values.items()], columns=["field", "value"])


def outputs_frame(item: ReviewItem) -> pd.DataFrame:
    """The outputs so far, one line per `step.field`."""
    records = []
    for step, output in item.outputs.items():
        if output is None:
            records.append({"field": step, "value": "(skipped)"})
            continue
        records += [{"field": f"{step}.{k}", "value": _text(v)} for k, v in output.items()]
    return pd.DataFrame(records, columns=["field", "value"])


def actions(item: ReviewItem) -> list[str]:
    """The decisions this gate allows (edit only when it names a step to edit)."""
    return [a for a in ACTIONS if a != "edit" or item.edits_step]


def edit_start(item: ReviewItem) -> str:
    """The edited step's output as the editor starts: JSON for a step with a schema, else its text."""
    current = item.outputs.get(item.edits_step or "") or {}
    if item.edit_schema is None:
        return str(current.get("text") or "")
    return json.dumps(current, indent=2, ensure_ascii=False)


def edit_help(item: ReviewItem) -> str:
    """What the edit must look like."""
    if item.edit_schema is None:
        return f"The text of step {item.edits_step}."
    return f"A JSON object matching step {item.edits_step}'s schema; it is checked before it is saved."


def record_decision(
    deps: RunDeps, item: ReviewItem, action: str, reviewer: str, edit_text: str | None, reason: str
) -> str:
    """Record the decision (ReviewError when it cannot be: already decided, invalid edit, no reason); what to say."""
    decided = decide(
        deps,
        item.id,
        action,
        reviewer,
        edited_output=edit_text if action == "edit" else None,
        reason=reason,
    )
    then = "stops there" if decided.status == "rejected" else "continues from the gate"
    return f"Row {item.position + 1} of run #{item.run_id}: {decided.status} by {reviewer}; the row {then}."


def decided_frame(engine: Engine, limit: int = 50) -> pd.DataFrame:
    """The latest decisions: who decided what and when, with the reason and the edit."""
    query = (
        select(PipelineReview)
        .where(PipelineReview.decided_at.is_not(None))
        .order_by(PipelineReview.decided_at.desc(), PipelineReview.id.desc())
        .limit(limit)
    )
    with Session(engine) as s:
        records = [
            {
                "pipeline": r.pipeline_name,
                "run": r.run_id,
                "row": r.position + 1,
                "gate": r.step,
                "decision": r.status,
                "by": r.decided_by or "",
                "at": f"{r.decided_at:%Y-%m-%d %H:%M:%S}",
                "reason": r.reason or "",
                "edit": "" if r.edited_output is None else _text(r.edited_output),
            }
            for r in s.scalars(query)
        ]
    columns = ["pipeline", "run", "row", "gate", "decision", "by", "at", "reason", "edit"]
    return pd.DataFrame(records, columns=columns).astype(str)
