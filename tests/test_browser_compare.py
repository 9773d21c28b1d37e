"""Compare in a real headless Chromium: two variants streamed side by side from a loopback provider, then a vote."""

import json
import secrets

import pytest
from browser import NO_WATCHER, browser_page, choose, idle, live, open_page, require_chromium, running_app, screenshot
from fake_openai import FakeOpenAI, Reply
from sqlalchemy import select
from sqlalchemy.orm import Session

from lib.core.db import make_engine, migrate
from lib.core.tables import CompareVote, LlmCall
from lib.gateway.pricing import set_price_override
from lib.prompts.language import Template
from lib.prompts.store import TemplateStore

pytestmark = pytest.mark.browser

NAME = "support.reply"
ANSWER = "We open at eight on weekdays and at nine on Saturdays, closing at six."


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    require_chromium()
    data = tmp_path_factory.mktemp("compare") / "data"
    engine = make_engine(f"sqlite:///{data / 'workbench.db'}")
    migrate(engine)
    store = TemplateStore(engine)
    store.create(Template(name=NAME, system="Answer.", user="Q: {{ question }}"), "ada", labels=("production",))
    store.save_version(Template(name=NAME, system="Answer kindly.", user="Q: {{ question }}"), "ada")
    set_price_override(engine, "acme/m1", 1000.0, 2000.0, user="ada")  # priced, so the cost is not $0
    set_price_override(engine, "acme/m2", 3000.0, 6000.0, user="ada")
    with FakeOpenAI() as server:
        server.default_reply = Reply(ANSWER, chunk_delay=0.15)  # word by word, so the stream can be seen
        providers = {
            "acme": {"base_url": server.base_url, "api_key": "test-" + secrets.token_hex(8), "models": ["m1", "m2"]}
        }
        env = {
            "WORKBENCH_DATA_DIR": str(data),
            "WORKBENCH_USER": "author",
            "WORKBENCH_PROVIDERS": json.dumps(providers),
        }
        with running_app(env, args=NO_WATCHER) as url:
            yield url, engine
    engine.dispose()


STREAMING = """() => [...document.querySelectorAll('[data-testid="stMarkdownContainer"]')].some(
    e => e.innerText.startsWith('We open') && !e.innerText.includes('$'))"""


def test_an_author_runs_two_variants_side_by_side_sees_them_stream_and_votes(app):
    url, engine = app
    with browser_page("compare") as page:
        open_page(page, url, "Compare")
        choose(page, "Template", NAME)
        live(page).get_by_label("question", exact=True).wait_for()
        idle(page)
        for side, version, model in (("A", "1", "acme/m1"), ("B", "2", "acme/m2")):
            choose(page, f"{side}: version", version)
            idle(page)
            choose(page, f"{side}: model", model)
            idle(page)
        question = live(page).get_by_label("question", exact=True)
        question.fill("When do you open?")
        question.press("Control+Enter")
        idle(page)

        live(page).get_by_role("button", name="Run both").click()
        page.wait_for_function(STREAMING)  # part of an answer is on screen before its numbers
        answers = live(page).locator('[data-testid="stMarkdownContainer"]').filter(has_text=ANSWER)
        answers.filter(has_text="tokens ·").nth(1).wait_for()
        idle(page)
        screenshot(page, "compare-side-by-side")

        with Session(engine) as s:
            calls = {c.variant: c for c in s.scalars(select(LlmCall).where(LlmCall.feature != "embeddings"))}
        assert sorted((v, c.model, c.template_version, c.status) for v, c in calls.items()) == [
            ("A", "acme/m1", 1, "ok"),
            ("B", "acme/m2", 2, "ok"),
        ]
        shown = answers.all_inner_texts()
        assert len(shown) == 2
        for call in calls.values():  # each column shows its call's tokens, cost and latency
            numbers = f"{call.prompt_tokens + call.completion_tokens} tokens · ${call.cost_usd:.5f} · "
            assert call.cost_usd > 0 and any(numbers in text and text.endswith(" ms") for text in shown), (
                numbers,
                shown,
            )

        live(page).get_by_text("B better", exact=True).click()
        idle(page)
        comment = live(page).get_by_label("Comment (optional)")
        comment.fill("warmer")
        comment.press("Enter")
        idle(page)
        live(page).get_by_role("button", name="Save vote").click()
        live(page).get_by_text("Vote saved: B better.").wait_for()
        idle(page)
        assert answers.count() == 2  # the answers voted on are still in view
        screenshot(page, "compare-voted")

    with Session(engine) as s:
        [vote] = s.scalars(select(CompareVote)).all()
    assert (vote.template_name, vote.verdict, vote.comment, vote.user, vote.inputs) == (
        NAME,
        "B",
        "warmer",
        "author",
        {"question": "When do you open?"},
    )
    assert (vote.variant_a, vote.variant_b) == ({"version": 1, "model": "acme/m1"}, {"version": 2, "model": "acme/m2"})
    assert vote.answer_a == vote.answer_b == ANSWER
