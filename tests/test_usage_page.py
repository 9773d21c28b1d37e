"""The Usage page under AppTest: a fresh install, a filled call log and demo data."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest, app_test

from lib.core.db import make_engine, migrate
from lib.core.settings import load_settings
from lib.core.tables import LlmCall
from lib.usage.demo import DEMO_MARKER

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "usage.py")


def row(n: int, days_ago: float, user: str, model: str, cost: float | None, status: str = "ok") -> dict:
    return {
        "created_at": datetime.now(UTC) - timedelta(days=days_ago),
        "request_id": f"p{n}",
        "user": user,
        "feature": "chat",
        "provider": model.split("/")[0],
        "model": model,
        "status": status,
        "prompt_tokens": 1000,
        "completion_tokens": 100,
        "cached_tokens": 0,
        "cost_usd": cost,
        "latency_ms": 200.0 + n,
        "error_type": "Timeout" if status == "error" else None,
        "prompt": f"secret question {n}",
        "response": f"answer {n}",
    }


def seed(rows: list[dict]) -> None:
    engine = make_engine(load_settings().database_url)
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(insert(LlmCall.__table__), rows)
    engine.dispose()


@pytest.fixture
def filled():
    seed(
        [
            row(1, 1, "alice", "openai/gpt-4.1", 0.02),
            row(2, 2, "alice", "openai/gpt-4.1-mini", 0.01),
            row(3, 3, "bob", "acme/private-llm", None),
            row(4, 3, "bob", "openai/gpt-4.1-mini", 0.0, "error"),
            row(5, 40, "bob", "openai/gpt-4.1", 0.005),
        ]
    )


def run_page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception, at.exception
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_a_fresh_install_says_there_are_no_calls_and_where_they_come_from():
    at = run_page()
    assert "No calls are logged yet" in at.info[0].value
    assert "demo-usage" in at.info[0].value
    assert not at.metric and not at.warning


def test_with_calls_the_page_shows_headline_figures_against_the_previous_period(filled):
    at = run_page()
    got = metrics(at)
    assert got["Spend"] == "$0.0300"
    assert got["Requests"] == "4"
    assert got["Error rate"] == "25.0%"
    spend = next(m for m in at.metric if m.label == "Spend")
    assert spend.delta == "+500.0% vs previous period"  # 0.03 against 0.005
    assert not any("Demo data" in w.value for w in at.warning)


def test_unpriced_calls_are_called_out_and_listed_not_shown_as_zero(filled):
    at = run_page()
    assert any("1 calls have no price" in w.value for w in at.warning)
    unpriced = at.dataframe[-1].value
    assert list(unpriced["model"]) == ["acme/private-llm"]


def test_filtering_by_user_narrows_the_figures(filled):
    at = run_page()
    at.multiselect(key="f_users").select("alice").run()
    assert not at.exception
    assert metrics(at)["Requests"] == "2"
    assert not any("no price" in w.value for w in at.warning)


def test_the_most_expensive_call_opens_with_its_prompt(filled):
    at = run_page()  # sign-in off: the local user has every role, admin included
    assert at.selectbox(key="drill_call").value == at.dataframe[-2].value["id"].iloc[0]
    assert "secret question 1" in at.json[0].value


ROLES = {"mike@acme.com": ["manager"], "root@acme.com": ["admin"], "alice@acme.com": ["manager"]}


def signed_in_page(email: str, monkeypatch) -> AppTest:
    """The Usage page with sign-in on, opened by a verified `email` with the roles in ROLES."""
    monkeypatch.setenv("WORKBENCH_ROLES", json.dumps(ROLES))
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.secrets["auth"] = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32}
    at.user = {"is_logged_in": True, "email": email, "email_verified": True, "sub": email, "iss": "https://idp"}
    at.run()
    assert not at.exception, at.exception
    return at


class RecordingMediaStorage(MemoryMediaFileStorage):
    """AppTest's in-memory media storage, kept after the run so a test can read what a download serves."""

    last: RecordingMediaStorage | None = None

    def __init__(self, endpoint: str) -> None:
        super().__init__(endpoint)
        RecordingMediaStorage.last = self


@pytest.fixture
def downloads(monkeypatch):
    monkeypatch.setattr(app_test, "MemoryMediaFileStorage", RecordingMediaStorage)


def page_text(at: AppTest) -> str:
    """Everything the page shows: text elements, tables, JSON and the bytes of every CSV download."""
    shown = [str(e.value) for kind in ("markdown", "caption", "json", "text") for e in at.get(kind)]
    shown += [df.value.to_csv() for df in at.dataframe]
    storage = RecordingMediaStorage.last
    assert storage is not None
    csvs = [storage.get_file(b.proto.url.rsplit("/", 1)[-1]).content for b in at.get("download_button")]
    assert csvs
    return "\n".join(shown + [csv.decode() for csv in csvs])


@pytest.fixture
def team_calls():
    seed(
        [
            {**row(1, 1, "alice@acme.com", "openai/gpt-4.1", 0.02), "error_message": "alice's error text"},
            row(2, 2, "bob@acme.com", "openai/gpt-4.1", 0.05, status="error")
            | {"prompt": "bob's secret question", "response": "bob's secret answer", "error_message": "bob's error"},
        ]
    )


def test_a_manager_opens_the_drill_down_and_sees_metadata_but_no_text(team_calls, downloads, monkeypatch):
    admin = signed_in_page("root@acme.com", monkeypatch)  # an admin first: nothing they saw may reach the manager
    assert "bob's secret question" in page_text(admin)
    at = signed_in_page("mike@acme.com", monkeypatch)
    shown = page_text(at)
    assert "bob@acme.com" in shown and "openai/gpt-4.1" in shown  # who, what and how much stay visible
    for text in ("bob's secret question", "bob's secret answer", "bob's error", "secret question 1", "alice's error"):
        assert text not in shown
    assert any("shown only to admins and to the person who made the call" in c.value for c in at.caption)
    at.selectbox(key="drill_call").select(at.dataframe[-2].value["id"].iloc[1]).run()
    assert "secret question 1" not in page_text(at) and "alice's error" not in page_text(at)


def test_a_manager_reads_the_text_of_their_own_calls(team_calls, downloads, monkeypatch):
    at = signed_in_page("alice@acme.com", monkeypatch)
    assert "bob's secret question" not in page_text(at)  # bob's call is the most expensive and open
    at.selectbox(key="drill_call").select(at.dataframe[-2].value["id"].iloc[1]).run()
    shown = page_text(at)
    assert "secret question 1" in shown and "alice's error text" in shown
    assert not any("shown only to admins" in c.value for c in at.caption)


def test_what_if_reprices_the_period_with_another_model(filled):
    at = run_page()
    at.selectbox(key="whatif_model").select("openai/gpt-5").run()
    card = next(m for m in at.metric if m.label == "Spend with openai/gpt-5")
    assert card.value == "$0.0090"  # 4,000 input and 400 output tokens at $1.25/$10 per million
    assert card.delta == "-$0.0210"  # against $0.03 actually spent


def test_feedback_not_collected_yet_is_said_next_to_cost_per_useful_answer(filled):
    at = run_page()
    assert any("Feedback isn't collected yet" in c.value for c in at.caption)


def test_every_table_can_be_downloaded_as_csv(filled):
    at = run_page()
    assert len(at.get("download_button")) >= len(at.dataframe)


def test_demo_data_always_shows_a_banner(filled, data_dir):
    (data_dir / DEMO_MARKER).write_text("demo")
    at = run_page()
    assert "Demo data" in at.warning[0].value


def test_the_app_lists_usage_and_opens_it(filled):
    at = AppTest.from_file(str(Path(PAGE).parent.parent / "app.py"), default_timeout=60)
    at.secrets["placeholder"] = "x"  # keep the real secrets.toml out of the test
    at.run()
    at.switch_page("pages/usage.py").run()
    assert not at.exception
    assert at.title[0].value == "Usage"


def test_the_demo_setting_shows_the_banner_too(filled, monkeypatch):
    monkeypatch.setenv("WORKBENCH_DEMO", "1")
    at = run_page()
    assert "Demo data" in at.warning[0].value
