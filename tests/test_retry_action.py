"""Retry on an answer that failed mid-stream: Chat runs the turn again in place, Compare runs that side again."""

from __future__ import annotations

import json

import pytest
from fake_openai import Drop, FakeOpenAI, Reply
from sqlalchemy import select
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from lib.chat.retry import failed_answer, retry_turn
from lib.chat.turn import ChatSetup, start_turn
from lib.core.db import make_engine, migrate
from lib.core.settings import load_settings
from lib.core.tables import ChatMessage, LlmCall
from lib.gateway.client import Gateway
from lib.prompts.language import Template
from lib.prompts.store import TemplateStore

ANSWER = "We are open at eight on weekdays and at ten on Saturdays."
NAME = "support.reply"


def messages(engine, session_id: str) -> list[tuple[str, str]]:
    with Session(engine) as s:
        rows = s.scalars(select(ChatMessage).where(ChatMessage.session_id == session_id).order_by(ChatMessage.id))
        return [(m.role, m.content) for m in rows]


def calls(engine) -> list[LlmCall]:
    with Session(engine) as s:
        return list(s.scalars(select(LlmCall).order_by(LlmCall.id)))


# ---- the use case, without Streamlit -----------------------------------------------------------------------------


def test_a_failed_turn_retried_stores_one_question_and_the_new_answer(fresh_engine, fake):
    providers = {"acme": {"base_url": fake.base_url, "api_key": "k", "models": ["m1"], "timeout_s": 5}}
    gateway = Gateway(load_settings(env={"WORKBENCH_PROVIDERS": json.dumps(providers)}), fresh_engine)
    setup = ChatSetup(fresh_engine, gateway, budget=3000)
    fake.default_reply = Reply(ANSWER)
    fake.enqueue(Drop(after_chunks=3))
    turn = start_turn(setup, "When do you open?", "acme/m1", user="ada")
    shown = "".join(turn)
    failed = failed_answer(turn)
    assert failed is not None and failed.text == shown and ANSWER.startswith(shown) and shown != ANSWER
    assert "connection" in failed.error and failed.request_id == calls(fresh_engine)[0].request_id

    again = retry_turn(setup, failed)
    assert "".join(again) == ANSWER and failed_answer(again) is None
    assert messages(fresh_engine, turn.session_id) == [("user", "When do you open?"), ("assistant", ANSWER)]
    first, second = calls(fresh_engine)
    assert (first.status, second.status, second.session_id) == ("error", "ok", turn.session_id)
    assert second.meta == {"retry_of": first.request_id}
    assert fake.requests[0]["json"]["messages"] == fake.requests[1]["json"]["messages"]  # the same turn, again


def test_an_answered_or_stopped_turn_offers_no_retry(fresh_engine, fake):
    providers = {"acme": {"base_url": fake.base_url, "api_key": "k", "models": ["m1"], "timeout_s": 5}}
    gateway = Gateway(load_settings(env={"WORKBENCH_PROVIDERS": json.dumps(providers)}), fresh_engine)
    setup = ChatSetup(fresh_engine, gateway, budget=3000)
    answered = start_turn(setup, "Hello?", "acme/m1", user="ada")
    "".join(answered)
    fake.enqueue(Reply("one two three four five six", chunk_delay=0.01))
    stopped = start_turn(setup, "Count to six", "acme/m1", user="ada", session_id=answered.session_id)
    with stopped:
        next(iter(stopped))
    assert failed_answer(answered) is None and failed_answer(stopped) is None


# ---- the pages ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server():
    with FakeOpenAI() as srv:
        yield srv


@pytest.fixture
def engine(server, monkeypatch):
    server.reset()
    server.default_reply = Reply(ANSWER)
    providers = {"acme": {"base_url": server.base_url, "api_key": "k", "models": ["m1"]}}
    monkeypatch.setenv("WORKBENCH_PROVIDERS", json.dumps(providers))
    monkeypatch.setenv("WORKBENCH_USER", "ada")
    engine = make_engine(load_settings().database_url)
    migrate(engine)
    yield engine
    engine.dispose()


def retry_buttons(at: AppTest) -> list:
    return [b for b in at.button if b.label.startswith("Retry")]


def test_chat_retry_replaces_the_failed_answer_in_place_and_stores_the_question_once(engine, server):
    at = AppTest.from_file("../pages/chat.py", default_timeout=60)
    at.secrets["dummy"] = "not used"
    at.run()
    at.selectbox(key="chat_model").select("acme/m1").run()
    server.enqueue(Drop(after_chunks=3))
    at.chat_input[0].set_value("When do you open?").run()
    assert not at.exception
    assert "connection" in at.error[0].value
    assert [b.label for b in retry_buttons(at)] == ["Retry"]
    at.run()  # the failed answer stays in view, with its Retry, across reruns
    [partial] = [m for m in at.chat_message if m.name == "assistant"]
    assert ANSWER.startswith(partial.markdown[0].value) and "connection" in at.error[0].value

    retry_buttons(at)[0].click().run()
    assert not at.exception and not at.error
    assert [m.name for m in at.chat_message] == ["user", "assistant"]  # replaced, not added below
    assert at.chat_message[1].markdown[0].value == ANSWER
    [session_id] = {c.session_id for c in calls(engine)}
    assert messages(engine, session_id) == [("user", "When do you open?"), ("assistant", ANSWER)]
    at.run()
    assert retry_buttons(at) == [] and [m.name for m in at.chat_message] == ["user", "assistant"]
    assert [(c.status, (c.meta or {}).get("retry_of")) for c in calls(engine)] == [
        ("error", None),
        ("ok", calls(engine)[0].request_id),
    ]


def test_compare_retry_runs_the_failed_side_again_and_keeps_the_other(engine, server):
    store = TemplateStore(engine)
    store.create(Template(name=NAME, system="Answer.", user="Q: {{ question }}"), "ada", labels=("production",))
    store.save_version(Template(name=NAME, system="Answer kindly.", user="Q: {{ question }}"), "ada")
    at = AppTest.from_file("../pages/compare.py", default_timeout=60)
    at.secrets["dummy"] = "not used"
    at.run()
    at.selectbox(key="cmp_name").select(NAME).run()
    at.selectbox(key="cmp_vA").select(1)
    at.selectbox(key="cmp_vB").select(2).run()
    at.text_area(key="cmp_in:question").input("When do you open?")
    server.enqueue(Drop(after_chunks=3))  # whichever side asks first gets the dropped stream
    next(b for b in at.button if b.label == "Run both").click().run()
    assert not at.exception
    [failed] = [side for side in "AB" if at.session_state["cmp_last"]["failed"][side]]
    [other] = set("AB") - {failed}
    kept = at.session_state["cmp_last"]["shown"][other]
    assert [b.label for b in retry_buttons(at)] == [f"Retry {failed}"]

    retry_buttons(at)[0].click().run()
    assert not at.exception and not at.error
    last = at.session_state["cmp_last"]
    assert last[failed] == ANSWER and not last["failed"][failed] and last["shown"][other] == kept
    assert retry_buttons(at) == []
    shown = [m.value for m in at.markdown if ANSWER in m.value]
    assert len(shown) == 2 and not any("connection" in m for m in shown)
    rows = calls(engine)
    assert [(r.variant, r.status) for r in rows if r.variant == failed] == [(failed, "error"), (failed, "ok")]
    assert len(rows) == 3
