"""The assistant in a real headless Chromium: a tool call that asks first, confirmed by the user, then the answer
under its step timeline (the model is the loopback server, scripted by step)."""

import json
import secrets

import pytest
from browser import (
    NO_WATCHER,
    assistant_messages,
    browser_page,
    idle,
    live,
    open_page,
    require_chromium,
    running_app,
    screenshot,
)
from fake_openai import FakeOpenAI, Reply, ToolCall, by_step
from sqlalchemy import select
from sqlalchemy.orm import Session

from lib.assistant.policies import set_policy
from lib.core.db import make_engine, migrate
from lib.core.identity import ROLES
from lib.core.tables import AssistantToolCall, LlmCall

pytestmark = pytest.mark.browser

MODEL = "openai/gpt-4o-mini"
ANSWER = "Six times seven is 42, as the calculator says."


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    require_chromium()
    data = tmp_path_factory.mktemp("assistant") / "data"
    engine = make_engine(f"sqlite:///{data / 'workbench.db'}")
    migrate(engine)
    for role in ROLES:  # the local user has every role: the calculator asks first for all of them
        set_policy(engine, "calculator", role, "confirm", "admin")
    with FakeOpenAI() as server:
        server.responder = by_step(
            Reply("", tool_calls=(ToolCall("calculator", {"expression": "6*7"}, id="call_calc"),)),
            Reply(ANSWER, chunk_delay=0.05),
        )
        key = "test-" + secrets.token_hex(8)
        providers = {
            "openai": {"kind": "openai", "base_url": server.base_url, "api_key": key, "models": ["gpt-4o-mini"]}
        }
        env = {
            "WORKBENCH_DATA_DIR": str(data),
            "WORKBENCH_USER": "ada",
            "WORKBENCH_PROVIDERS": json.dumps(providers),
            "WORKBENCH_PRELOAD_EMBEDDINGS": "0",
        }
        with running_app(env, args=NO_WATCHER) as url:
            yield url, engine, server
    engine.dispose()


def test_a_user_confirms_a_tool_call_and_sees_the_answer_under_its_timeline(app):
    url, engine, server = app
    with browser_page("assistant") as page:
        open_page(page, url, "Chat")
        live(page).get_by_text("Assistant (tools)", exact=True).click()
        ask = page.get_by_placeholder("Ask the assistant")
        ask.wait_for()
        idle(page)
        ask.fill("What is 6 times 7?")
        ask.press("Enter")

        confirm = live(page).get_by_text("The assistant wants to run calculator")
        confirm.wait_for()
        idle(page)
        assert live(page).locator("code").filter(has_text='"expression": "6*7"').count() >= 1
        assert page.get_by_placeholder("Answer the pending tool call first").is_disabled()
        with Session(engine) as s:
            assert s.scalars(select(AssistantToolCall)).all() == []  # nothing ran before the user said so
        screenshot(page, "assistant-confirm")

        live(page).get_by_role("button", name="Run", exact=True).click()
        answer = assistant_messages(page).last.get_by_text(ANSWER)
        answer.wait_for()
        idle(page)
        timeline = assistant_messages(page).last.locator('[data-testid="stExpander"]').first
        assert "2 model calls · 1 tool call" in timeline.inner_text()
        timeline.locator("summary").click()  # open the finished timeline
        live(page).get_by_text("ok (approved) · 2 characters").wait_for()
        live(page).get_by_text("Step 2 · model:").wait_for()
        assert live(page).get_by_text("Step 1 · model:").count() == 1
        assert live(page).locator("code").filter(has_text="42").count() >= 1  # the result's preview
        screenshot(page, "assistant-answered")

    with Session(engine) as s:
        [row] = s.scalars(select(AssistantToolCall)).all()
        steps = s.scalars(select(LlmCall.step).where(LlmCall.feature == "assistant").order_by(LlmCall.id)).all()
    assert (row.tool, row.arguments, row.status, row.decision, row.user) == (
        "calculator",
        {"expression": "6*7"},
        "ok",
        "approved",
        "ada",
    )
    assert steps == ["1", "2"]
    sent = [m for m in server.requests[-1]["json"]["messages"] if m.get("role") == "tool"]
    assert [m["content"] for m in sent] == ["42"]
