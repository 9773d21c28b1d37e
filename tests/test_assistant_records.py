"""When an assistant turn's tool-call records reach the database: they are kept during a leg and written with the
turn's status, so they are there by the leg's last event (done, or a confirmation), and a leg its reader abandons
still writes what ran."""

from __future__ import annotations

import pytest
from assistant_script import MODEL, loopback_services
from fake_openai import Reply, ToolCall, by_step
from sqlalchemy import select
from sqlalchemy.orm import Session

from lib.assistant.policies import set_policy
from lib.assistant.turn import Assistant, start_turn
from lib.core.tables import AssistantToolCall, AssistantTurnRow


@pytest.fixture
def services(fake, tmp_path):
    """Services on a SQLite file (migrated when opened) whose model provider is the loopback server."""
    svc = loopback_services(f"sqlite:///{tmp_path / 'records.db'}", fake)
    yield svc
    svc.engine.dispose()


def calc(expression: str, call_id: str) -> ToolCall:
    return ToolCall("calculator", {"expression": expression}, id=call_id)


def stored(services, turn_id) -> tuple[list[tuple[str, str, str]], str]:
    with Session(services.engine) as s:
        q = select(AssistantToolCall).where(AssistantToolCall.turn_id == turn_id).order_by(AssistantToolCall.id)
        rows = [(r.call_id or "", r.status, r.decision) for r in s.scalars(q)]
        return rows, s.get(AssistantTurnRow, turn_id).status  # type: ignore[union-attr]


def test_records_are_stored_before_the_done_event(fake, services):
    fake.responder = by_step(
        Reply("", tool_calls=(calc("6*7", "c1"), calc("2+2", "c2"))),
        Reply("", tool_calls=(ToolCall("today", {}, id="c3"),)),
        Reply("42 and 4."),
    )
    turn = start_turn(Assistant(), services, "ada", ["staff"], "6*7 and 2+2?", model=MODEL)
    for event in turn:
        if event["type"] == "done":
            rows, status = stored(services, turn.id)
            assert sorted(rows) == [("c1", "ok", "auto"), ("c2", "ok", "auto"), ("c3", "ok", "auto")]
            assert status == "done"
    assert turn.status == "done"


def test_a_paused_leg_stores_what_ran_before_asking(fake, services):
    set_policy(services.engine, "today", "staff", "confirm", "admin")
    fake.responder = by_step(
        Reply("", tool_calls=(calc("6*7", "c1"), ToolCall("today", {}, id="c2"))),
        Reply("42, and today is the day."),
    )
    turn = start_turn(Assistant(), services, "ada", ["staff"], "6*7 and the date?", model=MODEL)
    for event in turn:
        if event["type"] == "confirm":
            assert stored(services, turn.id) == ([("c1", "ok", "auto")], "paused")
    assert turn.status == "paused"
    turn.resume("deny", reason="not now")
    list(turn)
    rows, status = stored(services, turn.id)
    assert rows == [("c1", "ok", "auto"), ("c2", "denied", "denied")] and status == "done"


def test_an_abandoned_leg_still_stores_its_tool_calls(fake, services):
    fake.responder = by_step(
        Reply("", tool_calls=(calc("6*7", "c1"),)),
        Reply("", tool_calls=(calc("2+2", "c2"),)),
        Reply("42 and 4."),
    )
    turn = start_turn(Assistant(), services, "ada", ["staff"], "6*7 and 2+2?", model=MODEL)
    events = iter(turn)
    for event in events:
        if event["type"] == "tool_result":
            break
    assert stored(services, turn.id)[0] == []  # kept for the leg's end
    events.close()  # the reader goes away (a page rerun) mid-turn
    assert stored(services, turn.id) == ([("c1", "ok", "auto")], "interrupted")  # not "running" for ever
    assert turn.status == "interrupted"
