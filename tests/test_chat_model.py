"""GatewayChatModel: the gateway as a LangChain chat model with tools, against the loopback server."""

from __future__ import annotations

import json
from functools import reduce

import pytest
from fake_openai import Reply, Status, ToolCall, by_step
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from sqlalchemy import select
from sqlalchemy.orm import Session

from lib.core.settings import load_settings
from lib.core.tables import LlmCall
from lib.gateway.chat_model import GatewayChatModel, ToolsUnavailable
from lib.gateway.client import CallContext, Gateway
from lib.gateway.errors import BudgetExceeded

MODEL = "openai/gpt-4o-mini"  # priced in the shipped table, so rows carry a cost
QUESTION = [SystemMessage("Use the tools."), HumanMessage("What is 6 times 7, and where is the MIT license?")]
CALC = ToolCall("calculator", {"expression": "6*7"}, id="call_calc")
FIND = ToolCall("search_documents", {"collection": "licenses", "query": "MIT license", "k": 3}, id="call_find")


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression."""
    a, b = expression.split("*")
    return str(int(a) * int(b))


@tool
def search_documents(collection: str, query: str, k: int = 3) -> str:
    """Search a document collection."""
    return json.dumps([{"document": "MIT.txt", "page": 1, "text": f"{query} in {collection}"}][:k])


TOOLS = [calculator, search_documents]


def make_gateway(engine, server, **env) -> Gateway:
    key = "-".join(["sk", "test", "0123456789abcdef"])  # key-shaped, built at run time
    providers = {
        "openai": {"kind": "openai", "base_url": server.base_url, "api_key": key, "models": ["gpt-4o-mini"]},
        "acme": {"base_url": server.base_url, "api_key": key, "models": ["mystery"]},
    }
    settings = load_settings(
        env={"WORKBENCH_PROVIDERS": json.dumps(providers), "WORKBENCH_BACKOFF_BASE_S": "0.01", **env}
    )
    return Gateway(settings, engine, sleep=lambda s: None)


def make_model(gw: Gateway, run_id: str = "turn-1", model: str = MODEL, **kw) -> GatewayChatModel:
    ctx = CallContext(feature="assistant", user="ada", run_id=run_id)
    return GatewayChatModel(gateway=gw, model=model, context=ctx, **kw)


def rows(engine) -> list[LlmCall]:
    with Session(engine) as s:
        return list(s.scalars(select(LlmCall).order_by(LlmCall.id)))


def streamed(runnable, messages) -> tuple[list[AIMessageChunk], AIMessageChunk]:
    chunks = list(runnable.stream(messages))
    return chunks, reduce(lambda a, b: a + b, chunks)


# ---- the loopback server scripts tool calls as OpenAI sends them ----------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_the_loopback_server_sends_tool_calls_that_chatopenai_parses(fake, stream):
    bad = ToolCall("calculator", '{"expression": "6*', id="call_bad")
    fake.enqueue(Reply("", tool_calls=(CALC, FIND, bad)))
    chat = ChatOpenAI(base_url=fake.base_url, api_key="test", model="fake-small", stream_usage=True, max_retries=0)
    bound = chat.bind_tools(TOOLS)
    if stream:
        chunks, msg = streamed(bound, QUESTION)
        assert sum(bool(c.tool_call_chunks) for c in chunks) > 3  # name first, then the arguments in pieces
        assert [(c["name"], c["args"], c["id"]) for c in msg.tool_call_chunks] == [
            ("calculator", json.dumps(CALC.arguments), "call_calc"),
            ("search_documents", json.dumps(FIND.arguments), "call_find"),
            ("calculator", '{"expression": "6*', "call_bad"),
        ]
        # LangChain's stream aggregation closes what was left open: a cut-off call looks valid (see test below)
        assert msg.tool_calls[2]["args"] == {"expression": "6*"}
    else:
        msg = bound.invoke(QUESTION)
        assert [(c["name"], c["args"], c["id"]) for c in msg.tool_calls] == [
            ("calculator", {"expression": "6*7"}, "call_calc"),
            ("search_documents", {"collection": "licenses", "query": "MIT license", "k": 3}, "call_find"),
        ]
        assert [(c["name"], c["args"], c["id"]) for c in msg.invalid_tool_calls] == [
            ("calculator", '{"expression": "6*', "call_bad")
        ]
    assert msg.response_metadata["finish_reason"] == "tool_calls"
    sent = fake.requests[0]["json"]["tools"]
    assert [t["function"]["name"] for t in sent] == ["calculator", "search_documents"]


def test_by_step_answers_each_model_call_of_a_turn_by_its_place_in_the_turn(fake):
    fake.responder = by_step(Reply("", tool_calls=(CALC,)), Reply("Done."))
    chat = ChatOpenAI(base_url=fake.base_url, api_key="test", model="fake-small", max_retries=0)
    first = chat.invoke(QUESTION)
    assert first.tool_calls[0]["name"] == "calculator"
    second = chat.invoke([*QUESTION, first, ToolMessage("42", tool_call_id="call_calc")])
    assert (second.content, second.tool_calls) == ("Done.", [])
    assert chat.invoke([HumanMessage("A new turn.")]).tool_calls[0]["id"] == "call_calc"


def test_a_server_process_follows_a_script_file_by_step(tmp_path):
    from fake_openai import FakeOpenAIProcess

    script = tmp_path / "script.json"
    script.write_text(json.dumps([{"tool_calls": [{"name": "today", "id": "call_t"}]}, "It is Sunday."]))
    with FakeOpenAIProcess(script=str(script)) as server:
        chat = ChatOpenAI(base_url=server.base_url, api_key="test", model="fake-small", max_retries=0)
        first = chat.invoke(QUESTION)
        assert [(c["name"], c["args"], c["id"]) for c in first.tool_calls] == [("today", {}, "call_t")]
        second = chat.invoke([*QUESTION, first, ToolMessage("Sunday", tool_call_id="call_t")])
        assert second.content == "It is Sunday."


# ---- GatewayChatModel ---------------------------------------------------------------------------


def test_several_tool_calls_come_back_with_usage_and_one_logged_row(fresh_engine, fake):
    fake.enqueue(Reply("Let me look.", tool_calls=(CALC, FIND), prompt_tokens=120, completion_tokens=30))
    gw = make_gateway(fresh_engine, fake)
    msg = make_model(gw).bind_tools(TOOLS).invoke(QUESTION)
    assert isinstance(msg, AIMessage) and msg.content == "Let me look."
    assert [(c["name"], c["args"], c["id"]) for c in msg.tool_calls] == [
        ("calculator", {"expression": "6*7"}, "call_calc"),
        ("search_documents", {"collection": "licenses", "query": "MIT license", "k": 3}, "call_find"),
    ]
    assert msg.usage_metadata is not None
    assert (msg.usage_metadata["input_tokens"], msg.usage_metadata["output_tokens"]) == (120, 30)
    assert msg.response_metadata["cost_usd"] > 0 and msg.response_metadata["step"] == "1"
    body = fake.requests[0]["json"]
    assert [t["function"]["name"] for t in body["tools"]] == ["calculator", "search_documents"]
    assert body["model"] == "gpt-4o-mini"
    [row] = rows(fresh_engine)
    assert (row.feature, row.user, row.run_id, row.step, row.status) == ("assistant", "ada", "turn-1", "1", "ok")
    assert (row.prompt_tokens, row.completion_tokens, row.request_id) == (120, 30, msg.response_metadata["request_id"])
    assert row.cost_usd == pytest.approx(msg.response_metadata["cost_usd"]) and row.cost_usd > 0
    assert "[tool call call_calc] calculator" in row.response and "search_documents" in row.response


def test_streamed_tool_calls_arrive_as_tool_call_chunks_with_usage_at_the_end(fresh_engine, fake):
    fake.enqueue(Reply("Checking.", tool_calls=(CALC, FIND), prompt_tokens=50, completion_tokens=20))
    gw = make_gateway(fresh_engine, fake)
    chunks, msg = streamed(make_model(gw).bind_tools(TOOLS), QUESTION)
    with_args = [c for c in chunks if c.tool_call_chunks]
    assert len(with_args) > 2  # the arguments arrive in pieces, not in one piece at the end
    assert "".join(c.content for c in chunks) == "Checking."
    assert [(c["name"], c["args"]) for c in msg.tool_calls] == [
        ("calculator", {"expression": "6*7"}),
        ("search_documents", {"collection": "licenses", "query": "MIT license", "k": 3}),
    ]
    assert chunks[-1].usage_metadata is not None and chunks[-1].usage_metadata["total_tokens"] == 70
    assert sum(bool(c.usage_metadata) for c in chunks) == 1  # counted once
    assert fake.requests[0]["json"]["stream"] is True
    [row] = rows(fresh_engine)
    assert (row.status, row.step, row.prompt_tokens, row.completion_tokens) == ("ok", "1", 50, 20)
    assert "calculator" in row.response


@pytest.mark.parametrize("streaming", [False, True])
def test_bad_json_arguments_become_invalid_tool_calls_streamed_or_not(fresh_engine, fake, streaming):
    fake.enqueue(Reply("", tool_calls=(CALC, ToolCall("calculator", '{"expression": "6*', id="call_bad"))))
    model = make_model(make_gateway(fresh_engine, fake), streaming=streaming)
    msg = model.bind_tools(TOOLS).invoke(QUESTION)
    assert fake.requests[0]["json"].get("stream", False) is streaming
    assert [c["id"] for c in msg.tool_calls] == ["call_calc"]  # the cut-off call is not "repaired" into a valid one
    [bad] = msg.invalid_tool_calls
    assert (bad["name"], bad["args"], bad["id"]) == ("calculator", '{"expression": "6*', "call_bad")
    [row] = rows(fresh_engine)
    assert row.status == "ok" and "not valid JSON" in row.response


def test_each_model_call_is_the_next_step_of_the_turn_and_a_factory_sets_its_own(fresh_engine, fake):
    gw = make_gateway(fresh_engine, fake)
    model = make_model(gw, run_id="turn-7")
    model.invoke(QUESTION)
    model.invoke(QUESTION)
    contexts = iter([CallContext(feature="assistant", run_id="turn-8", step="plan")])
    GatewayChatModel(gateway=gw, model=MODEL, context=lambda: next(contexts)).invoke(QUESTION)
    assert [(r.run_id, r.step) for r in rows(fresh_engine)] == [("turn-7", "1"), ("turn-7", "2"), ("turn-8", "plan")]


def test_tool_choice_and_parallel_calls_reach_the_provider_as_openai_spells_them(fresh_engine, fake):
    model = make_model(make_gateway(fresh_engine, fake))
    model.bind_tools(TOOLS, tool_choice="calculator", parallel_tool_calls=False).invoke(QUESTION)
    model.bind_tools(TOOLS, tool_choice="any").invoke(QUESTION)
    first, second = (r["json"] for r in fake.requests)
    assert first["tool_choice"] == {"type": "function", "function": {"name": "calculator"}}
    assert first["parallel_tool_calls"] is False
    assert second["tool_choice"] == "required"
    with pytest.raises(ValueError, match="not a tool name"):
        model.bind_tools(TOOLS, tool_choice="no_such_tool")


@pytest.mark.parametrize("stream", [False, True])
def test_a_server_error_is_retried_and_the_call_logged_once(fresh_engine, fake, stream):
    fake.enqueue(Status(500), Reply("", tool_calls=(CALC,)))
    bound = make_model(make_gateway(fresh_engine, fake)).bind_tools(TOOLS)
    msg = streamed(bound, QUESTION)[1] if stream else bound.invoke(QUESTION)
    assert msg.tool_calls[0]["id"] == "call_calc" and len(fake.requests) == 2
    [row] = rows(fresh_engine)
    assert (row.status, row.attempts, row.step) == ("ok", 2, "1")


def test_the_assistant_falls_back_to_its_fallback_model_with_the_same_tools(fresh_engine, fake):
    fake.enqueue(Status(500), Reply("", tool_calls=(CALC,)))
    gw = make_gateway(
        fresh_engine, fake, WORKBENCH_MAX_RETRIES="0", WORKBENCH_FALLBACKS=json.dumps({"assistant": "acme/mystery"})
    )
    msg = make_model(gw).bind_tools(TOOLS).invoke(QUESTION)
    assert msg.tool_calls[0]["name"] == "calculator" and msg.response_metadata["model_name"] == "acme/mystery"
    assert [r["json"]["model"] for r in fake.requests] == ["gpt-4o-mini", "mystery"]
    assert all(r["json"]["tools"] for r in fake.requests)
    [row] = rows(fresh_engine)
    assert (row.model, row.meta["fallback_from"], row.step) == ("acme/mystery", MODEL, "1")


def test_a_spent_budget_refuses_the_call_with_a_clear_error_and_a_blocked_row(fresh_engine, fake):
    from lib.gateway.cost_control import set_budget

    set_budget(fresh_engine, "feature", "assistant", limit_usd=0.0)
    with pytest.raises(BudgetExceeded, match="budget") as err:
        make_model(make_gateway(fresh_engine, fake)).bind_tools(TOOLS).invoke(QUESTION)
    assert fake.requests == []
    [row] = rows(fresh_engine)
    assert (row.status, row.feature, row.run_id, row.request_id) == (
        "blocked",
        "assistant",
        "turn-1",
        err.value.request_id,
    )


def test_the_offline_answerer_cannot_call_tools_and_says_so(fresh_engine):
    gw = Gateway(load_settings(env={}), fresh_engine)
    model = GatewayChatModel(gateway=gw, context=CallContext(feature="assistant"))
    assert model.model == "offline/extractive" and not model.can_call_tools
    with pytest.raises(ToolsUnavailable, match=r"offline answerer .* cannot call tools"):
        model.bind_tools(TOOLS).invoke(QUESTION)
    with pytest.raises(ToolsUnavailable):
        list(model.bind_tools(TOOLS).stream(QUESTION))


def test_an_offline_fallback_is_not_tried_for_tools_so_the_real_failure_is_reported(fresh_engine, fake):
    from lib.gateway.errors import ProviderUnavailable

    fake.enqueue(Status(503))
    env = {"WORKBENCH_MAX_RETRIES": "0", "WORKBENCH_FALLBACKS": json.dumps({"assistant": "offline/extractive"})}
    gw = make_gateway(fresh_engine, fake, **env)
    with pytest.raises(ProviderUnavailable):
        make_model(gw).bind_tools(TOOLS).invoke(QUESTION)
    [row] = rows(fresh_engine)
    assert (row.status, row.error_type, row.model) == ("error", "provider_unavailable", MODEL)


def test_tool_calling_requests_are_never_served_from_the_cache(fresh_engine, fake):
    gw = make_gateway(fresh_engine, fake, WORKBENCH_CACHE_FEATURES="assistant")
    model = make_model(gw)
    model.invoke(QUESTION)
    model.invoke(QUESTION)  # no tools: the second is a cache hit, as for chat
    bound = model.bind_tools(TOOLS)
    fake.enqueue(Reply("", tool_calls=(CALC,)), Reply("", tool_calls=(CALC,)))
    assert bound.invoke(QUESTION).tool_calls and bound.invoke(QUESTION).tool_calls
    assert [r.status for r in rows(fresh_engine)] == ["ok", "cached", "ok", "ok"]
    assert len(fake.requests) == 3


@pytest.mark.parametrize("stream", [False, True])
def test_personal_data_in_tool_arguments_and_results_is_masked_going_out_and_restored_coming_back(
    fresh_engine, fake, stream
):
    email = "ada@example.com"
    history = [
        HumanMessage(f"Which documents mention {email}?"),
        AIMessage("", tool_calls=[{"name": "search_documents", "args": {"query": email}, "id": "call_1"}]),
        ToolMessage(f"Found {email} in contract.pdf", tool_call_id="call_1"),
    ]
    # the model repeats the placeholder it was shown; the tool must get the real address
    fake.enqueue(Reply("", tool_calls=(ToolCall("search_documents", {"query": "[EMAIL_1]", "k": 2}, id="call_2"),)))
    bound = make_model(make_gateway(fresh_engine, fake)).bind_tools(TOOLS)
    msg = streamed(bound, history)[1] if stream else bound.invoke(history)
    sent = json.dumps(fake.requests[0]["json"])
    assert email not in sent and sent.count("[EMAIL_1]") == 3
    sent_messages = fake.requests[0]["json"]["messages"]
    assert sent_messages[1]["tool_calls"][0]["id"] == "call_1" and sent_messages[2]["tool_call_id"] == "call_1"
    assert [(c["args"], c["id"]) for c in msg.tool_calls] == [({"query": email, "k": 2}, "call_2")]
    [row] = rows(fresh_engine)
    assert row.meta["redacted_items"] == 1 and email not in row.prompt and email not in row.response


# ---- LangChain's own agent on top -------------------------------------------------------------


def test_create_agent_runs_a_two_tool_turn_through_the_gateway(fresh_engine, fake):
    fake.responder = by_step(
        Reply("", tool_calls=(CALC,), prompt_tokens=40, completion_tokens=10),
        Reply("", tool_calls=(FIND,), prompt_tokens=60, completion_tokens=12),
        Reply("6 times 7 is 42; the MIT license is MIT.txt, page 1.", prompt_tokens=90, completion_tokens=15),
    )
    agent = create_agent(model=make_model(make_gateway(fresh_engine, fake), run_id="turn-42"), tools=TOOLS)
    out = agent.invoke({"messages": [HumanMessage("What is 6 times 7, and where is the MIT license?")]})
    messages = out["messages"]
    assert [type(m).__name__ for m in messages] == [
        "HumanMessage",
        "AIMessage",
        "ToolMessage",
        "AIMessage",
        "ToolMessage",
        "AIMessage",
    ]
    assert (messages[2].content, messages[2].tool_call_id) == ("42", "call_calc")
    assert "MIT.txt" in messages[4].content and messages[4].tool_call_id == "call_find"
    assert messages[-1].content.startswith("6 times 7 is 42")
    # the provider saw each tool result paired with its call
    third = fake.requests[2]["json"]["messages"]
    assert [m["role"] for m in third] == ["user", "assistant", "tool", "assistant", "tool"]
    assert [m.get("tool_call_id") for m in third if m["role"] == "tool"] == ["call_calc", "call_find"]
    logged = rows(fresh_engine)
    assert [(r.feature, r.run_id, r.step, r.status) for r in logged] == [
        ("assistant", "turn-42", "1", "ok"),
        ("assistant", "turn-42", "2", "ok"),
        ("assistant", "turn-42", "3", "ok"),
    ]
    assert [(r.prompt_tokens, r.completion_tokens) for r in logged] == [(40, 10), (60, 12), (90, 15)]
    assert all(r.cost_usd > 0 for r in logged)


def test_create_agent_streams_the_answer_and_tool_call_chunks_through_the_gateway(fresh_engine, fake):
    fake.responder = by_step(Reply("", tool_calls=(CALC,)), Reply("The answer is 42."))
    agent = create_agent(model=make_model(make_gateway(fresh_engine, fake)), tools=TOOLS)
    pieces = list(agent.stream({"messages": [HumanMessage("6 times 7?")]}, stream_mode="messages"))
    ai_chunks = [m for m, meta in pieces if isinstance(m, AIMessageChunk)]
    assert any(c.tool_call_chunks for c in ai_chunks)
    assert "".join(str(c.content) for c in ai_chunks) == "The answer is 42."
    assert len([c for c in ai_chunks if c.content]) == 4  # word by word, as the server streamed it
    assert any(isinstance(m, ToolMessage) and m.content == "42" for m, _ in pieces)
    assert all(r["json"]["stream"] for r in fake.requests)
    assert [(r.step, r.status) for r in rows(fresh_engine)] == [("1", "ok"), ("2", "ok")]


def test_an_unknown_tool_name_goes_back_to_the_model_as_an_error_result(fresh_engine, fake):
    fake.responder = by_step(
        Reply("", tool_calls=(ToolCall("run_shell", {"command": "rm -rf /"}, id="call_x"),)),
        Reply("I cannot do that."),
    )
    agent = create_agent(model=make_model(make_gateway(fresh_engine, fake)), tools=TOOLS)
    messages = agent.invoke({"messages": [HumanMessage("Clean the disk.")]})["messages"]
    result = messages[2]
    assert isinstance(result, ToolMessage) and result.status == "error" and result.tool_call_id == "call_x"
    assert "run_shell is not a valid tool" in result.content
    assert messages[-1].content == "I cannot do that."
    second = fake.requests[1]["json"]["messages"]
    assert second[-1]["role"] == "tool" and "not a valid tool" in second[-1]["content"]
    assert [r.step for r in rows(fresh_engine)] == ["1", "2"]


def test_a_streaming_agent_never_runs_a_call_whose_arguments_were_cut_off(fresh_engine, fake):
    ran: list[str] = []

    @tool("calculator")
    def counting_calculator(expression: str) -> str:
        """Evaluate an arithmetic expression."""
        ran.append(expression)
        return "42"

    cut = ToolCall("calculator", '{"expression": "6*', id="call_cut")
    fake.responder = by_step(Reply("", tool_calls=(CALC, cut)), Reply("6 times 7 is 42."))
    agent = create_agent(model=make_model(make_gateway(fresh_engine, fake)), tools=[counting_calculator])
    pieces = list(agent.stream({"messages": [HumanMessage("6 times 7?")]}, stream_mode=["messages", "values"]))
    assert ran == ["6*7"]  # LangChain's lenient stream parser alone would also have run "6*"
    final = next(chunk for mode, chunk in reversed(pieces) if mode == "values")["messages"]
    assert [c["id"] for c in final[1].invalid_tool_calls] == ["call_cut"]
    # the model hears that the cut-off call failed (create_agent answers invalid calls with an error result)
    told = [m for m in fake.requests[1]["json"]["messages"] if m.get("tool_call_id") == "call_cut"]
    assert len(told) == 1 and "malformed or truncated" in told[0]["content"]
    assert final[-1].content == "6 times 7 is 42."
