"""The Usage page under AppTest: a fresh install, a filled call log and demo data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert
from streamlit.testing.v1 import AppTest

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
    at = run_page()
    assert at.selectbox(key="drill_call").value == at.dataframe[-2].value["id"].iloc[0]
    assert "secret question 1" in at.json[0].value


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
