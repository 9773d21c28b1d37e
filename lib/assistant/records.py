"""The record of assistant turns and of every tool call, for replaying a turn on screen and auditing it later."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Engine, Table, func, insert, select, update
from sqlalchemy.orm import Session

from lib.core.tables import AssistantToolCall, AssistantTurnRow, LlmCall, utcnow

PREVIEW_CHARS = 1_000  # of each tool result kept with its record (as WORKBENCH_LOG_CONTENT allows; redacting
# costs ~1.2 ms per 1,000 characters, paid at every tool call)
TURNS = cast(Table, AssistantTurnRow.__table__)
TOOL_CALLS = cast(Table, AssistantToolCall.__table__)
_RECORD_DEFAULTS: dict[str, Any] = {
    "call_id": None, "arguments": None, "result_chars": 0, "result_preview": None, "error": None, "latency_ms": None,
    "user": None,
}  # fmt: skip


def create_turn(
    engine: Engine | Connection, turn_id: str, user: str | None, roles: frozenset[str], model: str, question: str
) -> None:
    """Store a new turn as running (in the connection's transaction, when given one)."""
    row = {"id": turn_id, "created_at": utcnow(), "user": user, "roles": ",".join(sorted(roles)), "model": model}
    values = {**row, "question": question, "status": "running", "steps": 0}
    if isinstance(engine, Connection):
        engine.execute(insert(TURNS), values)
        return
    with engine.begin() as conn:  # Core statements: a third of an ORM session's cost, paid at every turn
        conn.execute(insert(TURNS), values)


def update_turn(engine: Engine, turn_id: str, tool_calls: Sequence[dict[str, Any]] = (), **values: Any) -> None:
    """Set the turn's status, guard, answer or step count (finished turns get their finish time), and store the
    tool-call records given (from `tool_call_record`) in the same transaction."""
    if values.get("status") in ("done", "stopped", "error", "interrupted"):
        values["finished_at"] = utcnow()
    with engine.begin() as conn:
        if tool_calls:
            conn.execute(insert(TOOL_CALLS), list(tool_calls))
        if values:
            conn.execute(update(TURNS).where(TURNS.c.id == turn_id).values(**values))


def tool_call_record(**values: Any) -> dict[str, Any]:
    """One tool call's record, stamped now; stored by `update_turn` (or `record_tool_call`). Every record has
    every column, so a leg's records go in as one executemany."""
    return {**_RECORD_DEFAULTS, "created_at": utcnow(), **values}


def record_tool_call(engine: Engine, **values: Any) -> None:
    """Store one tool call."""
    with engine.begin() as conn:
        conn.execute(insert(TOOL_CALLS), tool_call_record(**values))


@dataclass(frozen=True)
class StepUsage:
    """Tokens, cost and latency of a turn's model calls at one step (from the call log)."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0
    latency_ms: float = 0.0


def step_usage(engine: Engine, turn_id: str, step: int) -> StepUsage:
    """What the call log says the turn's model call(s) at `step` used."""
    with Session(engine) as s:
        row = s.execute(
            select(
                func.count(LlmCall.id),
                func.coalesce(func.sum(LlmCall.prompt_tokens), 0),
                func.coalesce(func.sum(LlmCall.completion_tokens), 0),
                func.sum(LlmCall.cost_usd),
                func.count(LlmCall.cost_usd),
                func.coalesce(func.sum(LlmCall.latency_ms), 0.0),
            ).where(LlmCall.run_id == turn_id, LlmCall.step == str(step))
        ).one()
    calls, prompt, completion, cost, priced, latency = row
    return StepUsage(
        int(calls), int(prompt), int(completion), float(cost or 0) if priced == calls else None, float(latency or 0)
    )


def turn_cost(engine: Engine, turn_id: str) -> float:
    """The turn's spend so far: every call-log row with its run id (its model calls and the tools' calls)."""
    with Session(engine) as s:
        return float(s.scalar(select(func.coalesce(func.sum(LlmCall.cost_usd), 0.0)).where(LlmCall.run_id == turn_id)))


def load_turn(engine: Engine, turn_id: str) -> dict[str, Any] | None:
    """A turn for replay: the turn, its model calls (call-log rows) and its tool calls, each in order."""
    with Session(engine) as s:
        turn = s.get(AssistantTurnRow, turn_id)
        if turn is None:
            return None
        calls = s.scalars(select(LlmCall).where(LlmCall.run_id == turn_id).order_by(LlmCall.id)).all()
        tools = s.scalars(
            select(AssistantToolCall).where(AssistantToolCall.turn_id == turn_id).order_by(AssistantToolCall.id)
        ).all()
        return {
            "turn": {c.name: getattr(turn, c.name) for c in AssistantTurnRow.__table__.columns},
            "model_calls": [
                {
                    "step": c.step,
                    "feature": c.feature,
                    "model": c.model,
                    "status": c.status,
                    "prompt_tokens": c.prompt_tokens,
                    "completion_tokens": c.completion_tokens,
                    "cost_usd": c.cost_usd,
                    "latency_ms": c.latency_ms,
                    "request_id": c.request_id,
                }
                for c in calls
            ],
            "tool_calls": [{c.name: getattr(t, c.name) for c in AssistantToolCall.__table__.columns} for t in tools],
        }


def recent_turns(engine: Engine, user: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """The newest turns (of one user, if given), for an audit list."""
    q = select(AssistantTurnRow).order_by(AssistantTurnRow.created_at.desc()).limit(limit)
    if user is not None:
        q = q.where(AssistantTurnRow.user == user)
    with Session(engine) as s:
        return [{c.name: getattr(t, c.name) for c in AssistantTurnRow.__table__.columns} for t in s.scalars(q)]
