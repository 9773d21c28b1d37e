"""The assistant where users meet it, under AppTest with the loopback server as the model: Chat's "Assistant
(tools)" mode (offline notice, a two-tool turn with its timeline, confirm → edit → run, deny, a guard's message),
Usage's "Ask about usage" (managers only) and the tool-policy editor on the Settings page."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_openai import Reply, ToolCall, by_step
from sqlalchemy import select
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from lib.assistant.policies import policy_table, set_policy
from lib.core.db import make_engine, migrate
from lib.core.identity import ROLES
from lib.core.settings import load_settings
from lib.core.tables import AssistantToolCall, LlmCall
from lib.ui.assistant_view import ASSISTANT_MODE, EditError, parse_edited_args, table_frame, time_series
from lib.usage.demo import write_demo_calls

ROOT = Path(__file__).resolve().parent.parent
MODEL = "openai/gpt-4o-mini"  # priced in the shipped table, so the timeline shows a cost
SPEND = "SELECT feature, round(sum(cost_usd), 4) AS cost FROM usage_calls GROUP BY feature ORDER BY cost DESC LIMIT 1"
DAILY = "SELECT date(created_at) AS day, round(sum(cost_usd), 4) AS cost FROM usage_calls GROUP BY day ORDER BY day"


@pytest.fixture
def engine():
    engine = make_engine(load_settings().database_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def provider(fake, monkeypatch):
    key = "-".join(["sk", "test", "0123456789abcdef"])  # key-shaped, built at run time
    providers = {"openai": {"kind": "openai", "base_url": fake.base_url, "api_key": key, "models": ["gpt-4o-mini"]}}
    monkeypatch.setenv("WORKBENCH_PROVIDERS", json.dumps(providers))
    monkeypatch.setenv("WORKBENCH_BACKOFF_BASE_S", "0.01")
    monkeypatch.setenv("WORKBENCH_USER", "ada")
    return fake


def app(page: str = "pages/chat.py") -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.secrets["WORKBENCH_TEST"] = "1"
    at.run()
    return at.switch_page(page).run()


def assistant_mode(at: AppTest) -> AppTest:
    at.radio(key="chat_mode").set_value(ASSISTANT_MODE).run()
    assert not at.exception, at.exception
    return at


def ask(at: AppTest, question: str) -> AppTest:
    at.chat_input(key="asst_chat_input").set_value(question).run()
    assert not at.exception, at.exception
    return at


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def texts(node) -> str:
    kinds = ("markdown", "caption", "code", "warning", "error", "info")
    return "\n".join(str(e.value) for kind in kinds for e in node.get(kind))


def confirm_calculator(engine) -> None:
    """The local user has every role and gets the most permissive mode: confirm for all of them."""
    for role in ROLES:
        set_policy(engine, "calculator", role, "confirm", "admin")


def tool_rows(engine) -> list[AssistantToolCall]:
    with Session(engine) as s:
        return list(s.scalars(select(AssistantToolCall).order_by(AssistantToolCall.id)))


def test_with_no_model_the_mode_says_the_offline_answerer_cannot_call_tools():
    at = assistant_mode(app())
    assert any("offline answerer cannot call tools" in i.value for i in at.info)
    assert at.chat_input(key="asst_chat_input").proto.disabled


def test_a_two_tool_turn_streams_its_answer_under_a_timeline_of_both_calls(provider, engine):
    write_demo_calls(engine, 300, 7)
    provider.responder = by_step(
        Reply("", tool_calls=(ToolCall("query_usage", {"sql": SPEND}, id="call_sql"),)),
        Reply("", tool_calls=(ToolCall("calculator", {"expression": "6*7"}, id="call_calc"),)),
        Reply("Chat cost the most; 6 times 7 is 42."),
    )
    at = assistant_mode(app())
    at.selectbox(key="chat_model").set_value(MODEL).run()
    ask(at, "Which feature cost most, and what is 6 times 7?")
    [status] = at.status
    assert status.state == "complete" and status.label.startswith("3 model calls · 2 tool calls")
    timeline = texts(status)
    assert "**query\\_usage**" in timeline and "**calculator**" in timeline and '"expression": "6*7"' in timeline
    assert "Step 1 · model:" in timeline and "ok · 2 characters" in timeline and "42" in timeline
    with Session(engine) as s:
        calls = list(s.scalars(select(LlmCall).where(LlmCall.feature == "assistant").order_by(LlmCall.id)))
    assert [c.step for c in calls] == ["1", "2", "3"]
    assert f"${calls[0].cost_usd:.6f}" in timeline  # each step's cost, as logged
    answer = at.chat_message[-1]
    assert "Chat cost the most; 6 times 7 is 42." in [m.value for m in answer.markdown]
    assert any("Query 1: 1 rows" in e.label for e in answer.expander)  # the query it ran, as a table
    assert [(t.tool, t.status) for t in tool_rows(engine)] == [("query_usage", "ok"), ("calculator", "ok")]

    provider.responder = by_step(Reply("Still 42."))
    ask(at, "And again?")  # the first turn stays on screen, redrawn from session state
    assert len(at.status) == 2 and at.status[0].label.startswith("3 model calls")
    sent = provider.requests[-1]["json"]["messages"]
    assert any(m.get("content") == "Chat cost the most; 6 times 7 is 42." for m in sent)  # the tab's history


def test_a_confirmed_call_is_edited_with_bad_json_kept_pending_then_run_with_good_json(provider, engine):
    confirm_calculator(engine)
    provider.responder = by_step(
        Reply("", tool_calls=(ToolCall("calculator", {"expression": "6*7"}, id="c1"),)), Reply("It is 49.")
    )
    at = assistant_mode(app())
    at.selectbox(key="chat_model").set_value(MODEL).run()
    ask(at, "What is 6 times 7?")
    assert at.status[0].state == "running" and "waiting for you" in at.status[0].label
    assert any('"expression": "6*7"' in c.value for c in at.code) and tool_rows(engine) == []
    assert at.chat_input(key="asst_chat_input").proto.disabled  # one pending call at a time

    button(at, "Edit").click().run()
    at.text_area(key="asst_chat_args_c1").input('{"expression": "7*7"').run()
    button(at, "Run edited").click().run()
    assert not at.exception
    assert any("not valid JSON" in e.value for e in at.error) and tool_rows(engine) == []  # still pending
    at.text_area(key="asst_chat_args_c1").input('{"expression": 7}').run()
    button(at, "Run edited").click().run()
    said = [e.value for e in at.error]
    assert any("calculator does not accept these arguments" in e and "valid string" in e for e in said), said

    at.text_area(key="asst_chat_args_c1").input('{"expression": "7*7"}').run()
    button(at, "Run edited").click().run()
    assert not at.exception
    [row] = tool_rows(engine)
    assert (row.arguments, row.decision, row.status) == ({"expression": "7*7"}, "edited", "ok")
    assert at.status[0].state == "complete" and "ok (edited)" in texts(at.status[0])
    assert "It is 49." in [m.value for m in at.chat_message[-1].markdown]
    assert not at.chat_input(key="asst_chat_input").proto.disabled


def test_a_denied_call_goes_back_to_the_model_with_the_reason(provider, engine):
    confirm_calculator(engine)
    provider.responder = by_step(
        Reply("", tool_calls=(ToolCall("calculator", {"expression": "6*7"}, id="c1"),)),
        Reply("I was not allowed to calculate."),
    )
    at = assistant_mode(app())
    at.selectbox(key="chat_model").set_value(MODEL).run()
    ask(at, "What is 6 times 7?")
    at.text_input(key="asst_chat_reason_c1").input("not now").run()
    button(at, "Deny").click().run()
    assert not at.exception
    [row] = tool_rows(engine)
    assert (row.status, row.decision) == ("denied", "denied")
    assert "Denied by you; the model was told." in texts(at.status[0])
    told = [m["content"] for m in provider.requests[-1]["json"]["messages"] if m.get("role") == "tool"]
    assert len(told) == 1 and "not now" in told[0]
    assert "I was not allowed to calculate." in [m.value for m in at.chat_message[-1].markdown]


def test_a_guard_that_stops_a_turn_says_which_and_why(provider, monkeypatch):
    monkeypatch.setenv("WORKBENCH_ASSISTANT_MAX_STEPS", "2")
    provider.responder = by_step(
        *[Reply("", tool_calls=(ToolCall("calculator", {"expression": f"{i}+{i}"}, id=f"c{i}"),)) for i in range(9)]
    )
    at = assistant_mode(app())
    at.selectbox(key="chat_model").set_value(MODEL).run()
    ask(at, "Count up.")
    warnings = [w.value for w in at.chat_message[-1].warning]
    assert any(w.startswith("**Stopped by the step cap.**") and "2 model calls" in w for w in warnings)
    assert "stopped by a guard" in at.status[0].label


def signed_in(page: str, email: str, roles: dict, monkeypatch) -> AppTest:
    monkeypatch.setenv("WORKBENCH_ROLES", json.dumps(roles))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.secrets["WORKBENCH_TEST"] = "1"
    at.secrets["auth"] = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32}
    at.user = {"is_logged_in": True, "email": email, "email_verified": True, "sub": email, "iss": "https://idp"}
    at.run()
    return at.switch_page(page).run()


ROLE_MAP = {"mike@acme.com": ["manager"], "sam@acme.com": ["staff"]}


def test_a_manager_asks_about_usage_and_sees_the_query_its_table_and_a_chart(provider, engine, monkeypatch):
    write_demo_calls(engine, 300, 7)
    provider.responder = by_step(
        Reply("", tool_calls=(ToolCall("query_usage", {"sql": DAILY}, id="q1"),)), Reply("Spend by day is below.")
    )
    at = signed_in("pages/usage.py", "mike@acme.com", ROLE_MAP, monkeypatch)
    assert not at.exception, at.exception
    assert any(h.value == "Ask about usage" for h in at.subheader)
    next(t for t in at.text_input if t.label == "Your question").input("How did spend change by day?")
    next(b for b in at.button if b.label == "Ask").click().run()
    assert not at.exception, at.exception
    answer = at.chat_message[-1]
    assert any(DAILY in c.value for c in answer.code)
    [table] = [d.value for d in answer.dataframe]
    assert list(table.columns) == ["day", "cost"] and len(table) >= 2
    assert len(answer.get("vega_lite_chart")) == 1  # a time series gets a chart
    assert "Spend by day is below." in [m.value for m in answer.markdown]
    with Session(engine) as s:
        assert s.scalar(select(LlmCall.user).where(LlmCall.feature == "assistant")) == "mike@acme.com"


def test_staff_do_not_see_ask_about_usage(provider, engine, monkeypatch):
    write_demo_calls(engine, 30, 7)
    monkeypatch.setenv("WORKBENCH_ROLES", json.dumps(ROLE_MAP))
    at = AppTest.from_file(str(ROOT / "pages" / "usage.py"), default_timeout=120)  # opened by its address
    at.secrets["auth"] = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32}
    at.user = {"is_logged_in": True, "email": "sam@acme.com", "email_verified": True, "sub": "s", "iss": "https://i"}
    at.run()
    assert not at.exception and any("not allowed" in e.value.lower() for e in at.error), [e.value for e in at.error]
    assert not any(h.value == "Ask about usage" for h in at.subheader)
    assert not any(t.label == "Your question" for t in at.text_input)


def test_an_admin_sets_a_tool_policy_per_role_and_a_forbidden_one_is_refused(engine):
    at = app("pages/admin.py")
    assert not at.exception, at.exception
    at.selectbox(key="policy_tool").set_value("calculator").run()
    at.selectbox(key="policy_role").set_value("staff").run()
    at.radio(key="policy_mode").set_value("confirm").run()
    button(at, "Save policy").click().run()
    assert not at.exception
    assert policy_table(engine)["calculator"]["staff"] == "confirm"
    shown = at.dataframe[-1].value
    assert shown.set_index("tool").loc["calculator", "staff"] == "confirm"

    at.selectbox(key="policy_tool").set_value("query_usage").run()
    at.selectbox(key="policy_role").set_value("staff").run()
    at.radio(key="policy_mode").set_value("auto").run()
    button(at, "Save policy").click().run()
    assert any("only for the roles admin, manager" in e.value for e in at.error)
    assert policy_table(engine)["query_usage"]["staff"] == "off"


def test_edited_arguments_are_checked_against_the_tools_schema():
    assert parse_edited_args("calculator", '{"expression": "1+1"}') == {"expression": "1+1"}
    for bad, says in (("[1]", "JSON object"), ("{", "not valid JSON"), ('{"k": 99}', "collection")):
        with pytest.raises(EditError, match=says):
            parse_edited_args("search_documents", bad)


def test_a_result_with_a_day_column_is_a_time_series_and_a_ranking_is_not():
    daily = table_frame({"columns": ["day", "cost"], "rows": [["2026-11-02", 1.5], ["2026-11-01", 2.0]]})
    series = time_series(daily)
    assert series is not None and list(series["cost"]) == [2.0, 1.5]  # sorted by time
    ranking = table_frame({"columns": ["feature", "cost"], "rows": [["chat", 3.0], ["compare", 1.0]]})
    assert time_series(ranking) is None


def test_passages_found_by_search_documents_are_cited_as_in_chat(provider, monkeypatch):
    from langchain_core.embeddings import DeterministicFakeEmbedding

    from lib.documents.indexing import create_collection
    from lib.services import Services

    monkeypatch.setenv("WORKBENCH_SEARCH_MODE", "bm25")  # keyword retrieval: no embedding model in this test
    services = Services(load_settings(), local_embeddings=DeterministicFakeEmbedding(size=32))
    handbook = create_collection(services.engine, "Handbook")
    text = b"Welcome to Acme.\n\nEvery employee gets 28 days of paid holiday per year.\n\nReceipts go to finance."
    assert services.indexer.index_file(handbook, "handbook.txt", text).status == "indexed"
    services.engine.dispose()
    search = {"collection": "Handbook", "query": "paid holiday per year", "k": 3}
    provider.responder = by_step(
        Reply("", tool_calls=(ToolCall("search_documents", search, id="s1"),)),
        Reply("Every employee gets 28 days of paid holiday [1]."),
    )
    at = assistant_mode(app())
    at.selectbox(key="chat_model").set_value(MODEL).run()
    ask(at, "How much paid holiday do we get?")
    answer = at.chat_message[-1]
    [cited] = [e for e in answer.expander if e.label.startswith("\\[1\\]")]
    assert "handbook\\.txt" in cited.label
    assert any("28 days of paid holiday" in m.value for m in cited.markdown)


EVIL = "https://evil.example"


def test_hostile_model_text_tool_names_and_arguments_reach_no_other_host(provider):
    provider.responder = by_step(
        Reply(
            f"Look ![x]({EVIL}/a.png)",
            tool_calls=(ToolCall(f"![t]({EVIL}/t.png)", {"q": f"<img src={EVIL}/i.png>"}, id="h1"),),
        ),
        Reply(f"Done ![y]({EVIL}/b.png) [click]({EVIL}) <{EVIL}/auto>"),
    )
    at = assistant_mode(app())
    at.selectbox(key="chat_model").set_value(MODEL).run()
    ask(at, "Anything.")
    answer = at.chat_message[-1]
    assert "failed" in texts(answer.status[0])  # the unknown tool is an error in the timeline
    shown_markdown = [str(e.value) for kind in ("markdown", "caption", "error", "warning") for e in answer.get(kind)]
    assert any("Done" in m for m in shown_markdown)
    assert not any(f"]({EVIL}" in m or f"<{EVIL}" in m or "<img" in m for m in shown_markdown), shown_markdown
    assert any(f"<img src={EVIL}/i.png>" in c.value for c in answer.code)  # arguments shown as code, verbatim


def test_a_turn_cut_off_by_a_rerun_says_so_and_frees_the_input(provider):
    from lib.assistant.turn import AssistantTurn

    at = app()
    at.session_state["chat_mode"] = ASSISTANT_MODE
    at.session_state["asst_chat_turn"] = AssistantTurn(None, None, "What is 6 times 7?", "cut", events=[])
    at.run()  # its iteration already began in a run that ended early: nothing is left to stream
    assert not at.exception
    assert any("page reran while this turn ran" in e.value for e in at.chat_message[-1].error)
    assert at.session_state["asst_chat_turn"] is None and at.status[0].state == "error"
    assert not at.chat_input(key="asst_chat_input").proto.disabled


def test_a_template_run_by_the_assistant_shows_its_own_model_calls_tokens_and_cost(provider, engine):
    from lib.prompts.language import Template
    from lib.prompts.store import TemplateStore

    TemplateStore(engine).create(
        Template(name="support.reply", system="Answer kindly.", user="Q: {{ question }}"), "ada", labels=("production",)
    )
    for role in ("author", "admin"):  # run_template asks first by default
        set_policy(engine, "run_template", role, "auto", "admin")
    call = ToolCall("run_template", {"name": "support.reply", "variables": {"question": "Opening hours?"}}, id="t1")
    agent = by_step(Reply("", tool_calls=(call,)), Reply("The template says we open at eight."))
    provider.responder = lambda body: agent(body) if body.get("tools") else Reply("We open at eight.")
    at = assistant_mode(app())
    at.selectbox(key="chat_model").set_value(MODEL).run()
    ask(at, "Run the support reply for opening hours.")
    timeline = texts(at.status[0])
    with Session(engine) as s:
        [own] = s.scalars(select(LlmCall).where(LlmCall.step == "1:run_template")).all()
    assert own.feature == "prompts" and own.cost_usd
    assert f"The template's model call: {own.prompt_tokens:,} + {own.completion_tokens:,} tokens" in timeline
    assert f"${own.cost_usd:.6f}" in timeline and "We open at eight." in timeline
