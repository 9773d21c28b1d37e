"""Review gates: the queue of rows waiting at a gate, and a reviewer's decision (approve, edit, reject).

An edit is checked against the schema of the step the gate edits; the decision, who made it and when are stored
on the review and as the gate's step result, and the row continues from the gate (or stops, when rejected).
A gate's timeout takes its default decision for the reviewer ("timeout"), from a periodic sweep on the queue.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from lib.core.tables import PipelineReview, PipelineRun, utcnow
from lib.pipelines.definition import GateStep, PipelineError, PromptStep
from lib.pipelines.output import OutputInvalid, parse_structured
from lib.pipelines.runs import RunDeps, _enqueue_rows, _rowcount, load_run, results, settle_run, store_step
from lib.pipelines.steps import StepOutcome

DECISIONS = ("approve", "edit", "reject")
TIMEOUT_REVIEWER = "timeout"
MAX_REASON_CHARS = 2_000


class ReviewError(PipelineError):
    """A decision cannot be recorded as asked (already decided, invalid edit, no reason); the message says why."""


@dataclass
class ReviewItem:
    """A row at a gate: its input, the outputs so far, and what the reviewer may edit."""

    id: int
    run_id: int
    position: int
    gate: str
    pipeline_name: str
    pipeline_version: int
    status: str  # waiting, approved, edited, rejected, cancelled
    rule: str
    edits_step: str | None
    edit_schema: dict[str, Any] | None  # the edited step's output schema (None: its output is {"text": ...})
    input: dict[str, Any]
    outputs: dict[str, dict[str, Any] | None]
    created_at: datetime
    due_at: datetime | None
    decided_by: str | None
    decided_at: datetime | None
    reason: str | None
    edited_output: dict[str, Any] | None


def review_queue(
    engine: Engine,
    *,
    status: str | None = "waiting",
    pipeline_name: str | None = None,
    run_id: int | None = None,
    gate: str | None = None,
    limit: int = 100,
) -> list[ReviewItem]:
    """Reviews, oldest first, filtered by status (None: all), pipeline, run and gate."""
    query = select(PipelineReview).order_by(PipelineReview.created_at, PipelineReview.id).limit(limit)
    if status:
        query = query.where(PipelineReview.status == status)
    if pipeline_name:
        query = query.where(PipelineReview.pipeline_name == pipeline_name)
    if run_id is not None:
        query = query.where(PipelineReview.run_id == run_id)
    if gate:
        query = query.where(PipelineReview.step == gate)
    with Session(engine) as s:
        reviews = list(s.scalars(query))
    by_run: dict[int, list[PipelineReview]] = {}
    for r in reviews:
        by_run.setdefault(r.run_id, []).append(r)
    out: dict[int, ReviewItem] = {}
    for rid, group in by_run.items():
        run = load_run(engine, rid)
        rows = {r.position: r for r in results(engine, rid, [g.position for g in group])}
        for r in group:
            step = run.pipeline.step(r.step)
            assert isinstance(step, GateStep)
            edited = run.pipeline.step(step.edits_step) if step.edits_step else None
            row = rows.get(r.position)
            out[r.id] = ReviewItem(
                r.id,
                rid,
                r.position,
                r.step,
                r.pipeline_name,
                run.pipeline.version or 0,
                r.status,
                step.rule,
                step.edits_step,
                edited.output_schema if isinstance(edited, PromptStep) else None,
                row.input if row else {},
                row.outputs if row else {},
                r.created_at,
                r.due_at,
                r.decided_by,
                r.decided_at,
                r.reason,
                r.edited_output,
            )
    return [out[r.id] for r in reviews]


def get_review(engine: Engine, review_id: int) -> ReviewItem:
    """One review; ReviewError when it does not exist."""
    with Session(engine) as s:
        r = s.get(PipelineReview, review_id)
        if r is None:
            raise ReviewError(f"Review #{review_id} does not exist.")
        status, rid, gate = r.status, r.run_id, r.step
    found = [i for i in review_queue(engine, status=status, run_id=rid, gate=gate, limit=100_000) if i.id == review_id]
    return found[0]


def check_edit(item: ReviewItem, edited_output: dict[str, Any] | str) -> dict[str, Any]:
    """The edited output as an object, valid against the edited step's schema; ReviewError saying what is wrong."""
    if item.edits_step is None:
        raise ReviewError(f"Gate {item.gate!r} lets a reviewer approve or reject, not edit.")
    if isinstance(edited_output, str):
        text = edited_output if item.edit_schema is not None else json.dumps({"text": edited_output})
    else:
        text = json.dumps(edited_output)
    schema = item.edit_schema or {
        "type": "object",
        "properties": {"text": {"type": "string"}},
        "required": ["text"],
        "additionalProperties": False,
    }
    try:
        return parse_structured(text, schema)
    except OutputInvalid as exc:
        raise ReviewError(f"The edit is not valid for step {item.edits_step!r}: {exc.reason}") from exc


def decide(
    deps: RunDeps,
    review_id: int,
    decision: str,
    reviewer: str,
    *,
    edited_output: dict[str, Any] | str | None = None,
    reason: str | None = None,
) -> ReviewItem:
    """Record a decision on a waiting row: approve or edit (the row continues from the gate) or reject (it stops).

    ReviewError when the row was already decided, the edit does not match the step's schema, or a person rejects
    without a reason. Returns the decided review.
    """
    if decision not in DECISIONS:
        raise ReviewError(f"A decision is one of {', '.join(DECISIONS)}, not {decision!r}.")
    if not reviewer:
        raise ReviewError("A decision needs the reviewer's name.")
    reason = (reason or "").strip() or None
    if reason and len(reason) > MAX_REASON_CHARS:
        raise ReviewError(f"The reason is {len(reason):,} characters; the limit is {MAX_REASON_CHARS:,}.")
    if decision == "reject" and not reason and reviewer != TIMEOUT_REVIEWER:
        raise ReviewError("Say why you reject this row (the author sees the reason).")
    item = get_review(deps.engine, review_id)
    if item.status != "waiting":
        raise ReviewError(f"This row was already decided ({item.status}) by {item.decided_by or 'someone'}.")
    edited = None
    if decision == "edit":
        if edited_output is None:
            raise ReviewError("An edit needs the edited output.")
        edited = check_edit(item, edited_output)
    status = {"approve": "approved", "edit": "edited", "reject": "rejected"}[decision]
    now = utcnow()
    engine = deps.engine
    with Session(engine) as s, s.begin():
        taken = _rowcount(
            s.execute(
                update(PipelineReview)
                .where(PipelineReview.id == review_id, PipelineReview.status == "waiting")
                .values(status=status, decided_by=reviewer, decided_at=now, reason=reason, edited_output=edited)
            )
        )
        if taken != 1:
            raise ReviewError("Someone else decided this row a moment ago; reload the queue.")
    output: dict[str, Any] = {"decision": status, "decided_by": reviewer, "decided_at": now.isoformat()}
    if edited is not None:
        output["edited_output"] = edited
    run = load_run(engine, item.run_id)
    last = run.pipeline.steps[-1].name == item.gate
    row_status = "rejected" if status == "rejected" else ("completed" if last else "pending")
    store_step(
        engine,
        item.run_id,
        item.position,
        StepOutcome(item.gate, status, output),
        row_status,
        item.gate if status == "rejected" else None,
        f"Rejected at {item.gate} by {reviewer}: {reason}" if status == "rejected" else None,
        decided_by=reviewer,
        reason=reason,
    )
    if row_status == "pending":
        with Session(engine) as s, s.begin():
            s.execute(
                update(PipelineRun)
                .where(PipelineRun.id == item.run_id, PipelineRun.status == "waiting_review")
                .values(status="running", finished_at=None)
            )
        if deps.queue is None:
            raise ReviewError("The row cannot continue: no job queue is set up here.")
        _enqueue_rows(engine, deps.queue, item.run_id, [item.position], ("done", "failed", "cancelled"))
    else:
        settle_run(engine, item.run_id)
    return get_review(engine, review_id)


def expire_reviews(deps: RunDeps) -> int:
    """Take each overdue review's gate default (approve or reject) for the reviewer "timeout"; returns how many."""
    engine = deps.engine
    with Session(engine) as s:
        due = list(
            s.execute(
                select(PipelineReview.id, PipelineReview.run_id, PipelineReview.step).where(
                    PipelineReview.status == "waiting",
                    PipelineReview.due_at.is_not(None),
                    PipelineReview.due_at <= utcnow(),
                )
            ).tuples()
        )
    done = 0
    for review_id, run_id, gate_name in due:
        gate = load_run(engine, run_id).pipeline.step(gate_name)
        assert isinstance(gate, GateStep)
        try:
            decide(
                deps,
                review_id,
                gate.timeout_decision,
                TIMEOUT_REVIEWER,
                reason=f"No decision within {gate.timeout_s:g} s; the gate's default is {gate.timeout_decision}.",
            )
            done += 1
        except ReviewError:  # decided by a person meanwhile
            continue
    return done


def waiting_count(engine: Engine) -> int:
    """Rows waiting for a reviewer, over every run (for the navigation badge)."""
    with Session(engine) as s:
        return int(s.scalar(select(func.count()).where(PipelineReview.status == "waiting")) or 0)
