"""Every page runs under AppTest without an exception; the Chat page answers and logs the call."""

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from lib.core.db import make_engine
from lib.core.settings import load_settings
from lib.core.tables import LlmCall

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "pages").glob("*.py"))


def app_test() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    at.secrets["WORKBENCH_TEST"] = "1"  # dummy secrets: never read the developer's real secrets.toml
    return at


def logged_calls() -> list[LlmCall]:
    engine = make_engine(load_settings().database_url)
    with Session(engine) as s:
        return list(s.scalars(select(LlmCall).order_by(LlmCall.id)))


@pytest.mark.parametrize("page", PAGES)
def test_every_page_runs_without_an_exception(page):
    at = app_test().run()
    assert not at.exception
    at.switch_page(page).run()
    assert not at.exception, at.exception


def test_the_sidebar_names_the_user_and_the_active_model_and_says_sign_in_is_off(monkeypatch):
    monkeypatch.setenv("WORKBENCH_USER", "ada")
    at = app_test().run()
    sidebar = " ".join(t.value for t in [*at.sidebar.markdown, *at.sidebar.caption, *at.sidebar.text])
    assert "ada" in sidebar
    assert "offline/extractive" in sidebar
    assert "Sign-in is off" in sidebar


def test_chat_answers_offline_labels_it_and_logs_one_row(monkeypatch):
    monkeypatch.setenv("WORKBENCH_USER", "ada")
    at = app_test().run()
    assert any("Offline extract" in i.value for i in at.info)
    at.chat_input[0].set_value("The canteen opens at eight. Parking is free.").run()
    at.chat_input[0].set_value("When does the canteen open?").run()
    assert not at.exception
    answers = [m for m in at.chat_message if m.name == "assistant"]
    assert len(answers) == 2
    assert "The canteen opens at eight." in answers[-1].markdown[0].value
    assert any("Offline extract" in c.value and "$0" in c.value for c in answers[-1].caption)
    rows = logged_calls()
    assert [(r.feature, r.user, r.model, r.status) for r in rows] == [("chat", "ada", "offline/extractive", "ok")] * 2
    assert rows[0].session_id == rows[1].session_id


def test_new_conversation_clears_the_chat_and_starts_a_new_session():
    at = app_test().run()
    at.chat_input[0].set_value("Hello").run()
    assert len(at.chat_message) == 2
    next(b for b in at.button if b.label == "New conversation").click().run()
    assert len(at.chat_message) == 0
    at.chat_input[0].set_value("Hello again").run()
    first, second = logged_calls()
    assert first.session_id != second.session_id


def seed_spend(user: str, tokens: int):
    import uuid

    from lib.core.db import migrate

    engine = make_engine(load_settings().database_url)
    migrate(engine)
    with Session(engine) as s, s.begin():
        s.add(
            LlmCall(
                request_id=uuid.uuid4().hex,
                user=user,
                feature="chat",
                provider="offline",
                model="offline/extractive",
                prompt_tokens=tokens,
                completion_tokens=0,
                cost_usd=0.0,
                status="ok",
            )
        )
    return engine


def test_chat_warns_past_the_soft_limit_and_refuses_at_the_hard_limit(monkeypatch):
    from lib.gateway.cost_control import set_budget

    monkeypatch.setenv("WORKBENCH_USER", "ada")
    engine = seed_spend("ada", 900)
    set_budget(engine, "user", "ada", limit_tokens=1000, soft_ratio=0.8)
    at = app_test().run()
    at.chat_input[0].set_value("Hello there").run()
    assert any("90% of the monthly budget for user 'ada' is used" in w.value for w in at.warning)
    seed_spend("ada", 200)  # spent elsewhere: now over the hard limit
    from lib.ui.resources import get_gateway, get_settings

    get_gateway(get_settings()).budgets.invalidate()  # as after its 15-second refresh
    at = app_test().run()
    at.chat_input[0].set_value("Hello again").run()
    errors = " ".join(e.value for e in at.error)
    assert "monthly budget for user 'ada'" in errors and "is used up" in errors and "Request id" in errors
    rows = logged_calls()
    assert rows[-1].status == "blocked"
