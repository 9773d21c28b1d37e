"""Assistant turns end to end through GatewayChatModel and the loopback server: the timeline's events, one
call-log row per model call and one record per tool call, confirmations (run, edit, deny), every guard, tool
errors, policies, and the offline answerer's notice."""

from __future__ import annotations

import pytest
from assistant_script import MODEL, loopback_services
from fake_openai import Reply, ToolCall, by_step
from sqlalchemy import select
from sqlalchemy.orm import Session

from lib.assistant.policies import set_policy
from lib.assistant.records import load_turn
from lib.assistant.turn import OFFLINE_NOTICE, Assistant, start_turn
from lib.core.settings import load_settings
from lib.core.tables import AssistantToolCall, LlmCall
from lib.services import Services
from lib.usage.demo import write_demo_calls

SPEND = (  # works in both dialects (PostgreSQL rounds only numeric)
    "SELECT feature, round(CAST(sum(cost_usd) AS numeric), 4) AS cost FROM usage_calls "
    "GROUP BY feature ORDER BY cost DESC LIMIT 1"
)


@pytest.fixture
def services(fake, any_engine):
    """Services on a SQLite file, then on PostgreSQL, whose model provider is the loopback server."""
    svc = loopback_services(any_engine.url.render_as_string(hide_password=False), fake)
    write_demo_calls(svc.engine, 300, 7)
    yield svc
    svc.engine.dispose()


@pytest.fixture
def assistant():
    return Assistant()


def calc(expression: str, call_id: str = "call_calc") -> ToolCall:
    return ToolCall("calculator", {"expression": expression}, id=call_id)


def ask(assistant, services, question="Which feature cost most, and what is 6 times 7?", roles=("manager",), **kw):
    turn = start_turn(assistant, services, "ada", list(roles), question, model=MODEL, **kw)
    return turn, list(turn)


def tool_rows(services, turn_id):
    with Session(services.engine) as s:
        q = select(AssistantToolCall).where(AssistantToolCall.turn_id == turn_id).order_by(AssistantToolCall.id)
        return list(s.scalars(q))


def call_rows(services, turn_id):
    with Session(services.engine) as s:
        return list(s.scalars(select(LlmCall).where(LlmCall.run_id == turn_id).order_by(LlmCall.id)))


def tool_messages(request) -> list[str]:
    return [str(m.get("content")) for m in request["json"]["messages"] if m.get("role") == "tool"]


def test_a_two_tool_turn_streams_its_timeline_and_logs_every_call(fake, services, assistant):
    fake.responder = by_step(
        Reply("", tool_calls=(ToolCall("query_usage", {"sql": SPEND}, id="call_sql"),)),
        Reply("", tool_calls=(calc("6*7"),)),
        Reply("Chat cost the most; 6 times 7 is 42."),
    )
    turn, events = ask(assistant, services)
    kinds = [e["type"] for e in events]
    assert kinds[:4] == ["step", "step_done", "tool_call", "tool_result"]
    assert kinds[-1] == "done" and turn.status == "done"
    assert kinds.count("text") == 9  # the answer streamed word by word
    assert (
        "".join(e["text"] for e in events if e["type"] == "text")
        == turn.answer
        == "Chat cost the most; 6 times 7 is 42."
    )
    assert turn.tables[0]["columns"] == ["feature", "cost"] and turn.tables[0]["rows"][0][0] == "chat"

    calls = call_rows(services, turn.id)  # one row per model call: feature, run id, step
    assert [(c.feature, c.step, c.status) for c in calls] == [("assistant", str(i), "ok") for i in (1, 2, 3)]
    assert all(c.cost_usd and c.cost_usd > 0 for c in calls)
    done = [e for e in events if e["type"] == "step_done"]
    assert [d["cost_usd"] for d in done] == pytest.approx([c.cost_usd for c in calls])
    assert [d["prompt_tokens"] for d in done] == [c.prompt_tokens for c in calls]

    tools = tool_rows(services, turn.id)
    assert [(t.step, t.tool, t.status, t.decision) for t in tools] == [
        (1, "query_usage", "ok", "auto"),
        (2, "calculator", "ok", "auto"),
    ]
    assert tools[0].arguments == {"sql": SPEND} and tools[1].result_chars == 2 and tools[1].latency_ms is not None
    replay = load_turn(services.engine, turn.id)
    assert replay["turn"]["status"] == "done" and replay["turn"]["steps"] == 3
    assert len(replay["model_calls"]) == 3 and len(replay["tool_calls"]) == 2
    assert tool_messages(fake.requests[-1]) == [tools[0].result_preview, "42"]


def test_confirm_pauses_the_turn_and_run_executes_the_call(fake, services, assistant):
    set_policy(services.engine, "calculator", "manager", "confirm", "admin")
    fake.responder = by_step(Reply("", tool_calls=(calc("6*7"),)), Reply("It is 42."))
    turn, events = ask(assistant, services, "What is 6 times 7?")
    assert events[-1]["type"] == "confirm" and events[-1]["tool"] == "calculator"
    assert events[-1]["args"] == {"expression": "6*7"} and turn.status == "paused"
    assert tool_rows(services, turn.id) == []  # nothing ran
    assert load_turn(services.engine, turn.id)["turn"]["status"] == "paused"
    turn.resume("run")
    after = list(turn)
    result = next(e for e in after if e["type"] == "tool_result")
    assert result["status"] == "ok" and result["preview"] == "42" and result["decision"] == "approved"
    assert turn.status == "done" and turn.answer == "It is 42."
    assert [(t.status, t.decision) for t in tool_rows(services, turn.id)] == [("ok", "approved")]


def test_several_calls_in_one_answer_run_and_each_confirmation_is_answered_on_its_own(fake, services, assistant):
    set_policy(services.engine, "calculator", "manager", "confirm", "admin")
    three = (calc("6*7", "c1"), calc("2*2", "c2"), ToolCall("today", {}, id="c3"))
    fake.responder = by_step(Reply("", tool_calls=three), Reply("42 and 4."))
    turn, events = ask(assistant, services, "What are 6 times 7 and 2 times 2?")
    assert sorted(e["call_id"] for e in events if e["type"] == "confirm") == ["c1", "c2"]
    assert [(t.call_id, t.status) for t in tool_rows(services, turn.id)] == [("c3", "ok")]  # today ran meanwhile
    turn.resume("run", call_id="c2")
    list(turn)
    assert turn.status == "paused" and [p.call_id for p in turn.pending] == ["c1"]
    turn.resume("deny")
    list(turn)
    assert turn.status == "done" and turn.answer == "42 and 4."
    rows = {t.call_id: (t.status, t.decision) for t in tool_rows(services, turn.id)}
    assert rows == {"c1": ("denied", "denied"), "c2": ("ok", "approved"), "c3": ("ok", "auto")}
    assert len(call_rows(services, turn.id)) == 2


def test_an_edited_call_runs_with_the_edited_arguments(fake, services, assistant):
    set_policy(services.engine, "calculator", "manager", "confirm", "admin")
    fake.responder = by_step(Reply("", tool_calls=(calc("6*7"),)), Reply("It is 49."))
    turn, _ = ask(assistant, services, "What is 6 times 7?")
    turn.resume("edit", {"expression": "7*7"})
    list(turn)
    [row] = tool_rows(services, turn.id)
    assert (row.arguments, row.decision, row.status) == ({"expression": "7*7"}, "edited", "ok")
    [sent] = tool_messages(fake.requests[-1])
    assert sent.endswith("49") and "7*7" in sent  # the model is told what ran instead


def test_a_denied_call_goes_back_to_the_model_as_its_result(fake, services, assistant):
    set_policy(services.engine, "calculator", "manager", "confirm", "admin")
    fake.responder = by_step(Reply("", tool_calls=(calc("6*7"),)), Reply("I was not allowed to calculate."))
    turn, _ = ask(assistant, services, "What is 6 times 7?")
    turn.resume("deny", reason="not now")
    events = list(turn)
    [row] = tool_rows(services, turn.id)
    assert (row.status, row.decision) == ("denied", "denied")
    assert next(e for e in events if e["type"] == "tool_result")["status"] == "denied"
    [sent] = tool_messages(fake.requests[-1])
    assert "rejected" in sent and "not now" in sent
    assert turn.status == "done" and turn.answer == "I was not allowed to calculate."
    with pytest.raises(ValueError, match="not waiting"):
        turn.resume("run")


def test_the_step_cap_stops_a_turn_and_says_so(fake, services, assistant):
    fake.responder = by_step(*[Reply("", tool_calls=(calc(f"{i}+{i}", f"c{i}"),)) for i in range(10)])
    turn, events = ask(assistant, services, "Count up.", max_steps=2)
    [guard] = [e for e in events if e["type"] == "guard"]
    assert guard["guard"] == "step_cap" and "2 model calls" in guard["message"]
    assert turn.status == "stopped" and turn.answer.startswith("Stopped by the step cap")
    assert len(call_rows(services, turn.id)) == 2 and len(tool_rows(services, turn.id)) == 2
    assert load_turn(services.engine, turn.id)["turn"]["guard"] == "step_cap"


def test_the_cost_cap_stops_a_turn_and_says_so(fake, services, assistant):
    fake.responder = by_step(*[Reply("", tool_calls=(calc(f"{i}+{i}", f"c{i}"),)) for i in range(10)])
    turn, events = ask(assistant, services, "Count up.", max_cost_usd=1e-9)
    [guard] = [e for e in events if e["type"] == "guard"]
    assert guard["guard"] == "cost_cap" and "one turn may cost at most" in guard["message"]
    assert turn.status == "stopped" and "cost cap" in turn.answer
    assert len(call_rows(services, turn.id)) == 1  # the first call's cost reached the cap


def test_loop_detection_ends_the_turn_with_an_answer(fake, services, assistant):
    same = Reply("", tool_calls=(calc("6*7"),))
    fake.responder = by_step(same, same, same, Reply("It is 42, as computed twice."))
    turn, events = ask(assistant, services, "What is 6 times 7?")
    [guard] = [e for e in events if e["type"] == "guard"]
    assert guard["guard"] == "loop" and "calculator was called 3 times" in guard["message"]
    assert [t.status for t in tool_rows(services, turn.id)] == ["ok", "ok"]  # the third call did not run
    assert not fake.requests[-1]["json"].get("tools")  # the last call offered no tools: answer now
    assert turn.answer == "It is 42, as computed twice." and turn.status == "stopped"


def test_after_loop_detection_a_model_that_still_calls_tools_gets_the_guards_message_as_answer(
    fake, services, assistant
):
    fake.responder = by_step(Reply("", tool_calls=(calc("6*7"),)))  # the same call, for ever
    turn, _ = ask(assistant, services, "What is 6 times 7?")
    assert turn.status == "stopped" and turn.answer.startswith("Stopped by loop detection")
    assert [t.status for t in tool_rows(services, turn.id)] == ["ok", "ok"]


def test_a_tool_error_goes_back_to_the_model_and_into_the_timeline(fake, services, assistant):
    fake.responder = by_step(Reply("", tool_calls=(calc("1/0"),)), Reply("That is undefined."))
    turn, events = ask(assistant, services, "What is 1 divided by 0?")
    result = next(e for e in events if e["type"] == "tool_result")
    assert result["status"] == "error" and result["error"] == "Division by zero."
    assert tool_messages(fake.requests[-1]) == ["Error: Division by zero."]
    assert turn.status == "done" and turn.answer == "That is undefined."


def test_an_unknown_tool_is_an_error_result_not_a_crash(fake, services, assistant):
    fake.responder = by_step(Reply("", tool_calls=(ToolCall("shell", {"cmd": "rm -rf /"}, id="x"),)), Reply("Sorry."))
    turn, events = ask(assistant, services, "Clean up the disk.")
    [row] = tool_rows(services, turn.id)
    assert row.status == "error" and "shell" in (row.error or "")
    assert next(e for e in events if e["type"] == "tool_result")["error"] == "There is no tool called 'shell'."
    assert turn.status == "done" and turn.answer == "Sorry."


def test_arguments_that_are_not_json_go_back_to_the_model_as_an_error(fake, services, assistant):
    bad = ToolCall("calculator", '{"expression": "6*', id="bad")
    fake.responder = by_step(Reply("", tool_calls=(bad,)), Reply("", tool_calls=(calc("6*7"),)), Reply("42."))
    turn, events = ask(assistant, services, "What is 6 times 7?")
    errors = [e for e in events if e["type"] == "tool_result" and e["status"] == "error"]
    assert len(errors) == 1 and "not valid JSON" in errors[0]["error"] and errors[0]["step"] == 1
    assert [(t.step, t.status) for t in tool_rows(services, turn.id)] == [(1, "error"), (2, "ok")]
    assert turn.status == "done" and turn.answer == "42."


def test_query_usage_is_not_offered_to_staff_and_refused_when_called(fake, services, assistant):
    fake.responder = by_step(Reply("", tool_calls=(ToolCall("query_usage", {"sql": SPEND}, id="q"),)), Reply("No."))
    turn, _ = ask(assistant, services, "Which feature cost most?", roles=("staff",))
    offered = [t["function"]["name"] for t in fake.requests[0]["json"]["tools"]]
    assert "query_usage" not in offered and "run_template" not in offered and "calculator" in offered
    [row] = tool_rows(services, turn.id)
    assert (row.status, row.decision) == ("refused", "off")
    assert "off for this user's roles" in tool_messages(fake.requests[-1])[0]
    assert turn.tables == []


def test_with_no_model_configured_the_assistant_says_the_offline_answerer_cannot_call_tools(tmp_path, assistant):
    settings = load_settings(env={"WORKBENCH_DATA_DIR": str(tmp_path), "WORKBENCH_PRELOAD_EMBEDDINGS": "0"})
    services = Services(settings)
    turn = start_turn(assistant, services, "ada", ["staff"], "What is 6 times 7?")
    assert turn.status == "offline" and list(turn) == []
    assert turn.events == [{"type": "error", "message": OFFLINE_NOTICE}]
    assert "offline answerer cannot call tools" in OFFLINE_NOTICE


def test_run_template_asks_an_author_first_then_runs_the_production_version_logged_with_the_turn(
    fake, services, assistant
):
    from lib.prompts.language import Template

    services.templates.create(Template("summary", user="Summarise: {{ text }}"), "bo", labels=("production",))
    agent = by_step(
        Reply("", tool_calls=(ToolCall("run_template", {"name": "summary", "variables": {"text": "x"}}, id="t"),)),
        Reply("Here it is: a short summary."),
    )
    fake.responder = lambda body: agent(body) if body.get("tools") else Reply("a short summary")
    turn, events = ask(assistant, services, "Summarise x with our template.", roles=("author",))
    assert events[-1]["type"] == "confirm" and events[-1]["args"] == {"name": "summary", "variables": {"text": "x"}}
    turn.resume("run")
    list(turn)
    assert turn.answer == "Here it is: a short summary."
    [row] = tool_rows(services, turn.id)
    assert (row.tool, row.status, row.decision, row.result_preview) == (
        "run_template",
        "ok",
        "approved",
        "a short summary",
    )
    logged = {(c.feature, c.template_name, c.step) for c in call_rows(services, turn.id)}
    assert logged == {("assistant", None, "1"), ("prompts", "summary", "1:run_template"), ("assistant", None, "2")}


def test_run_template_is_not_for_staff_or_managers(fake, services, assistant):
    call = ToolCall("run_template", {"name": "summary", "variables": {}}, id="t")
    fake.responder = by_step(Reply("", tool_calls=(call,)), Reply("Cannot."))
    turn, _ = ask(assistant, services, "Run the summary template.", roles=("staff", "manager"))
    [row] = tool_rows(services, turn.id)
    assert (row.status, row.decision) == ("refused", "off")
