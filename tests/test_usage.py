"""Usage queries against a small known call log, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest
from sqlalchemy import insert, text

from lib.core.tables import LlmCall
from lib.gateway.pricing import Price
from lib.usage import queries as usage
from lib.usage.access import Viewer
from lib.usage.forecast import forecast_month_end

BERLIN = "Europe/Berlin"  # UTC+1 in January: local days start at 23:00 UTC the day before


def call(
    n: int,
    at: str,
    user: str,
    feature: str,
    model: str,
    status: str = "ok",
    prompt: int = 0,
    completion: int = 0,
    cached: int = 0,
    cost: float | None = 0.0,
    latency: float | None = 100.0,
    template: str | None = "rag-answer",
    version: int | None = 2,
    error_type: str | None = None,
) -> dict:
    return {
        "created_at": datetime.fromisoformat(at).replace(tzinfo=UTC),
        "request_id": f"r{n}",
        "user": user,
        "feature": feature,
        "provider": model.split("/")[0],
        "model": model,
        "status": status,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cached_tokens": cached,
        "cost_usd": cost,
        "latency_ms": latency,
        "template_name": template,
        "template_version": version,
        "error_type": error_type,
        "prompt": f"question {n}",
        "response": f"answer {n}",
    }


MINI, BIG, ACME = "openai/gpt-4.1-mini", "openai/gpt-4.1", "acme/private-llm"
LOG = [
    # current period: Berlin 10-12 January 2026
    call(
        1,
        "2026-01-09 23:30",
        "alice",
        "chat",
        MINI,
        prompt=1000,
        completion=200,
        cached=400,
        cost=0.001,
        latency=100,
        version=1,
    ),  # 00:30 on the 10th in Berlin, still the 9th in UTC
    call(2, "2026-01-10 12:00", "alice", "chat", BIG, prompt=2000, completion=500, cost=0.008, latency=300),
    call(
        3,
        "2026-01-10 22:30",
        "bob",
        "summarize",
        MINI,
        status="error",
        cost=0.0,
        latency=50,
        template=None,
        version=None,
        error_type="RateLimitError",
    ),
    call(4, "2026-01-11 09:00", "bob", "chat", ACME, prompt=500, completion=100, cost=None, latency=400),
    call(
        5, "2026-01-11 23:15", "carol", "chat", BIG, status="cached", prompt=2000, completion=500, cost=0.0, latency=5
    ),  # the 12th in Berlin
    call(6, "2026-01-12 10:00", "carol", "chat", BIG, prompt=1000, completion=1000, cost=0.010, latency=200),
    # the 13th in Berlin, but the 12th in UTC: outside the Berlin range
    call(7, "2026-01-12 23:30", "alice", "chat", BIG, prompt=9000, completion=9000, cost=0.5, latency=1000),
    # previous period: Berlin 7-9 January
    call(8, "2026-01-08 12:00", "alice", "chat", MINI, prompt=1000, completion=100, cost=0.002, latency=100),
    call(9, "2026-01-08 13:00", "bob", "chat", MINI, status="error", cost=0.0, latency=900, error_type="Timeout"),
]


@pytest.fixture
def log_engine(any_engine):
    with any_engine.begin() as conn:
        conn.execute(insert(LlmCall.__table__), LOG)
    return any_engine


def berlin(first: str = "2026-01-10", last: str = "2026-01-12", **filters) -> usage.UsageFilter:
    start, end = usage.date_range(date.fromisoformat(first), date.fromisoformat(last), BERLIN)
    return usage.UsageFilter(start, end, tz=BERLIN, **filters)


def test_headline_totals_match_the_hand_counted_log(log_engine):
    h = usage.headline(log_engine, berlin())
    assert h["requests"] == 6
    assert h["spend"] == pytest.approx(0.019)
    assert h["unpriced"] == 1
    assert (h["input_tokens"], h["output_tokens"], h["cached_tokens"]) == (6500, 2300, 400)
    assert h["avg_cost"] == pytest.approx(0.019 / 5)  # over the five priced calls, not six
    assert h["error_rate"] == pytest.approx(1 / 6)
    assert h["cache_hit_rate"] == pytest.approx(1 / 6)
    assert (h["p50_ms"], h["p95_ms"]) == (100.0, 400.0)  # sorted 5 50 100 200 300 400: ranks 3 and 6


def test_previous_period_has_the_same_length_and_changes_are_relative(log_engine):
    f = berlin()
    prev = f.previous()
    assert prev.end == f.start and prev.end - prev.start == f.end - f.start
    before = usage.headline(log_engine, prev)
    assert (before["requests"], before["spend"], before["p50_ms"], before["p95_ms"]) == (2, 0.002, 100.0, 900.0)
    rows = {r["metric"]: r for r in usage.compare_headlines(usage.headline(log_engine, f), before)}
    assert rows["spend"]["change"] == pytest.approx((0.019 - 0.002) / 0.002)
    assert rows["requests"]["change"] == pytest.approx(2.0)


def test_a_utc_viewer_sees_other_days_than_a_berlin_viewer(log_engine):
    start, end = usage.date_range(date(2026, 1, 10), date(2026, 1, 12), "UTC")
    h = usage.headline(log_engine, usage.UsageFilter(start, end, tz="UTC"))
    assert h["requests"] == 6  # loses call 1 (the 9th in UTC), gains call 7 (the 12th in UTC)
    assert h["spend"] == pytest.approx(0.008 + 0.010 + 0.5)


def test_spend_over_time_is_bucketed_by_local_day_and_keeps_unpriced_calls_apart(log_engine):
    df = usage.spend_over_time(log_engine, berlin(), by="model")
    got = {(r.bucket, r.model): (round(r.spend, 6), r.requests, r.unpriced) for r in df.itertuples()}
    assert got == {
        ("2026-01-10", MINI): (0.001, 2, 0),
        ("2026-01-10", BIG): (0.008, 1, 0),
        ("2026-01-11", ACME): (0.0, 1, 1),
        ("2026-01-12", BIG): (0.010, 2, 0),
    }
    by_feature = usage.spend_over_time(log_engine, berlin(), by="feature")
    assert set(by_feature["feature"]) == {"chat", "summarize"}


def test_short_ranges_are_bucketed_by_local_hour(log_engine):
    df = usage.spend_over_time(log_engine, berlin("2026-01-12", "2026-01-12"), by="model")
    assert list(df["bucket"]) == ["2026-01-12 00:00", "2026-01-12 11:00"]


def test_tokens_over_time_sum_input_cached_and_output_per_day(log_engine):
    df = usage.tokens_over_time(log_engine, berlin())
    assert [
        tuple(r) for r in df[["bucket", "input_tokens", "cached_tokens", "output_tokens"]].itertuples(index=False)
    ] == [("2026-01-10", 3000, 400, 700), ("2026-01-11", 500, 0, 100), ("2026-01-12", 3000, 0, 1500)]


def test_latency_percentiles_per_day_use_the_nearest_rank(log_engine):
    df = usage.latency_over_time(log_engine, berlin())
    assert [tuple(r) for r in df.itertuples(index=False)] == [
        ("2026-01-10", 100.0, 300.0),
        ("2026-01-11", 400.0, 400.0),
        ("2026-01-12", 5.0, 200.0),
    ]


def test_errors_over_time_count_failed_calls_by_type(log_engine):
    df = usage.errors_over_time(log_engine, berlin())
    assert [tuple(r) for r in df.itertuples(index=False)] == [("2026-01-10", "RateLimitError", 1)]


def test_breakdown_by_user_orders_by_spend_with_shares(log_engine):
    df = usage.breakdown(log_engine, berlin(), "user")
    assert list(df["user"]) == ["carol", "alice", "bob"]
    assert list(df["requests"]) == [2, 2, 2]
    assert df["spend_share"].iloc[0] == pytest.approx(0.010 / 0.019)
    assert df.set_index("user").loc["bob", "unpriced"] == 1
    assert df["request_share"].sum() == pytest.approx(1.0)


def test_breakdown_by_template_version_separates_versions(log_engine):
    df = usage.breakdown(log_engine, berlin(), "template version")
    got = {
        (
            None if pd.isna(r.template_name) else r.template_name,
            None if pd.isna(r.template_version) else r.template_version,
        ): (round(r.spend, 6), r.requests)
        for r in df.itertuples()
    }
    assert got == {("rag-answer", 2): (0.018, 4), ("rag-answer", 1): (0.001, 1), (None, None): (0.0, 1)}


def test_filters_narrow_every_figure(log_engine):
    h = usage.headline(log_engine, berlin(users=("alice",)))
    assert (h["requests"], h["spend"]) == (2, pytest.approx(0.009))
    h = usage.headline(log_engine, berlin(models=(BIG,), statuses=("ok",)))
    assert (h["requests"], h["spend"]) == (2, pytest.approx(0.018))
    h = usage.headline(log_engine, berlin(templates=("rag-answer",), template_versions=(1,)))
    assert h["requests"] == 1


def test_top_calls_list_priced_calls_most_expensive_first_in_local_time(log_engine):
    df = usage.top_calls(log_engine, berlin(), limit=3)
    assert list(df["cost_usd"]) == [0.010, 0.008, 0.001]
    assert str(df["created_at"].iloc[0]) == "2026-01-12 11:00:00+01:00"


def test_unpriced_calls_are_counted_and_listed_by_model(log_engine):
    df = usage.unpriced_calls(log_engine, berlin())
    assert [tuple(r) for r in df[["model", "calls", "input_tokens"]].itertuples(index=False)] == [(ACME, 1, 500)]


def test_drill_down_shows_an_admin_every_field_with_prompt_and_response(log_engine):
    top = usage.top_calls(log_engine, berlin(), limit=1)
    got = usage.get_call(log_engine, int(top["id"].iloc[0]), Viewer("root", admin=True), tz=BERLIN)
    assert (got["request_id"], got["prompt"], got["response"], got["cost_usd"]) == (
        "r6",
        "question 6",
        "answer 6",
        0.01,
    )
    assert usage.get_call(log_engine, 10**9, Viewer("root", admin=True)) is None


def test_cost_per_useful_answer_counts_all_answers_without_feedback(log_engine):
    got = usage.cost_per_useful_answer(log_engine, berlin())
    assert (got["useful_answers"], got["feedback_collected"]) == (5, False)
    assert got["cost_per_useful_answer"] == pytest.approx(0.019 / 5)


def test_cost_per_useful_answer_leaves_out_thumbs_down_answers(log_engine):
    from lib.chat import conversations as chat_store

    chat = chat_store.create_session(log_engine, "ada")
    for request_id, rating in (("r2", -1), ("r6", 1)):
        msg = chat_store.add_message(log_engine, chat.id, "assistant", "answer", request_id=request_id)
        chat_store.set_feedback(log_engine, msg.id, rating, user="ada")
    got = usage.cost_per_useful_answer(log_engine, berlin())
    assert (got["useful_answers"], got["feedback_collected"]) == (4, True)
    assert got["cost_per_useful_answer"] == pytest.approx(0.019 / 4)


def test_what_if_reprices_the_same_tokens_with_cached_input_at_its_own_rate(log_engine):
    df = usage.what_if(log_engine, berlin(), Price(input=1.0, cached_input=0.5, output=2.0, source="test"))
    got = {r.model: (round(r.actual_spend, 6), round(r.what_if_spend, 6)) for r in df.itertuples()}
    # call 1: 600 uncached + 400 cached at half rate + 200 out at 2 -> 1200 per million
    assert got == {MINI: (0.001, 0.0012), BIG: (0.018, 0.009), ACME: (0.0, 0.0007)}
    assert df["difference"].sum() == pytest.approx(0.0109 - 0.019)


def test_daily_spend_feeds_the_forecast_in_local_days(log_engine):
    df = usage.daily_spend(log_engine, berlin())
    assert [(r.day, round(r.spend, 6)) for r in df.itertuples()] == [
        ("2026-01-10", 0.009),
        ("2026-01-11", 0.0),
        ("2026-01-12", 0.01),
    ]


def test_filter_options_list_the_distinct_values_of_the_range(log_engine):
    opts = usage.filter_options(log_engine, berlin())
    assert opts["user"] == ["alice", "bob", "carol"]
    assert opts["status"] == ["cached", "error", "ok"]
    assert opts["template_version"] == [1, 2]


def test_an_empty_range_gives_zeros_and_no_averages(log_engine):
    f = berlin("2026-03-01", "2026-03-05")
    h = usage.headline(log_engine, f)
    assert (h["requests"], h["spend"], h["avg_cost"], h["error_rate"], h["p50_ms"]) == (0, 0.0, None, None, None)
    assert usage.spend_over_time(log_engine, f).empty and usage.latency_over_time(log_engine, f).empty
    assert usage.breakdown(log_engine, f, "model").empty and usage.top_calls(log_engine, f).empty
    assert usage.cost_per_useful_answer(log_engine, f)["cost_per_useful_answer"] is None


def test_has_calls_tells_a_fresh_install_from_a_used_one(any_engine):
    assert not usage.has_calls(any_engine)
    with any_engine.begin() as conn:
        conn.execute(insert(LlmCall.__table__), LOG[:1])
    assert usage.has_calls(any_engine)


def test_presets_are_local_days_ending_today():
    now = datetime(2026, 3, 15, 10, tzinfo=UTC)
    start, end = usage.preset_range("This month", now, BERLIN)
    assert (start.isoformat(), end.isoformat()) == ("2026-03-01T00:00:00+01:00", "2026-03-16T00:00:00+01:00")
    start, end = usage.preset_range("Last 7 days", now, BERLIN)
    assert start.date() == date(2026, 3, 9)
    start, end = usage.preset_range("Today", now, "America/New_York")
    assert end - start == timedelta(days=1) and start.hour == 0


def test_a_filter_refuses_naive_times_and_unknown_zones():
    with pytest.raises(ValueError):
        usage.UsageFilter(datetime(2026, 1, 1), datetime(2026, 1, 2), tz="UTC")
    with pytest.raises(ValueError, match="not a known time zone"):
        usage.UsageFilter(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC), tz="Mars/Olympus")


def sqlite_plan(engine, stmt) -> str:
    sql = str(stmt.compile(engine, compile_kwargs={"literal_binds": True}))
    with engine.connect() as conn:
        return " ".join(str(r[-1]) for r in conn.execute(text("EXPLAIN QUERY PLAN " + sql)))


def test_top_users_filtered_read_the_user_rollup_and_on_the_log_the_time_range(fresh_engine, monkeypatch):
    f = usage.UsageFilter(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC), features=("chat",))
    # a month of whole UTC days: the daily twin, read by day
    plan = sqlite_plan(fresh_engine, usage.breakdown_statement(fresh_engine, f, "user"))
    assert "llm_usage_user_dims_daily" in plan and "llm_calls" not in plan
    monkeypatch.setattr("lib.usage.sql.USE_ROLLUPS", False)  # what a half-hour zone reads: the call log
    plan = sqlite_plan(fresh_engine, usage.breakdown_statement(fresh_engine, f, "user"))
    assert "ix_llm_calls_usage" in plan and "ix_llm_calls_user" not in plan


def test_unfiltered_top_users_read_the_user_rollups(fresh_engine):
    f = usage.UsageFilter(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC))
    assert "llm_usage_user_daily" in sqlite_plan(fresh_engine, usage.breakdown_statement(fresh_engine, f, "user"))
    f = usage.UsageFilter(datetime(2026, 1, 1, 5, tzinfo=UTC), datetime(2026, 1, 2, 3, tzinfo=UTC))  # no whole day
    assert "llm_usage_user_hourly" in sqlite_plan(fresh_engine, usage.breakdown_statement(fresh_engine, f, "user"))


def rounded(value):
    """Floats rounded (sums in another order differ in the last bits), containers compared deeply."""
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return round(float(value), 9) if isinstance(value, float) else value


QUERIES = {
    "headline": lambda e, f: usage.headline(e, f),
    "spend by model": lambda e, f: usage.spend_over_time(e, f, "model").to_dict("records"),
    "spend by feature": lambda e, f: usage.spend_over_time(e, f, "feature").to_dict("records"),
    "tokens": lambda e, f: usage.tokens_over_time(e, f).to_dict("records"),
    "latency": lambda e, f: usage.latency_over_time(e, f).to_dict("records"),
    "errors": lambda e, f: usage.errors_over_time(e, f).to_dict("records"),
    **{f"by {b}": (lambda e, f, b=b: usage.breakdown(e, f, b).fillna(-1).to_dict("records")) for b in usage.BREAKDOWNS},
    "useful": lambda e, f: usage.cost_per_useful_answer(e, f),
    "daily": lambda e, f: usage.daily_spend(e, f).to_dict("records"),
    "what if": lambda e, f: usage.what_if(e, f, Price(1.0, 0.5, 2.0, "test")).to_dict("records"),
    "options": lambda e, f: usage.filter_options(e, f),
}


@pytest.mark.parametrize("tz", ["Europe/Berlin", "Asia/Kolkata"])
def test_hourly_rollups_give_the_same_answers_as_the_call_log(log_engine, monkeypatch, tz):
    start, end = usage.date_range(date(2026, 1, 7), date(2026, 1, 13), tz)
    f = usage.UsageFilter(start, end, tz=tz)
    from_rollups = {name: q(log_engine, f) for name, q in QUERIES.items()}
    monkeypatch.setattr("lib.usage.sql.USE_ROLLUPS", False)
    from_log = {name: q(log_engine, f) for name, q in QUERIES.items()}
    for name in QUERIES:
        assert rounded(from_rollups[name]) == rounded(from_log[name]), name
    assert from_log["headline"]["requests"] == 9  # the whole log is in range


@pytest.mark.parametrize("rollups", [True, False])
def test_latency_percentiles_are_exact_to_two_significant_digits_at_bin_edges(any_engine, monkeypatch, rollups):
    latencies = [0.5, 999.9, 1000.0, 1000.1, 1999.99, 2000.0, 7000.0, 9999.99, 10000.0, 123456.0]
    with any_engine.begin() as conn:
        conn.execute(
            insert(LlmCall.__table__),
            [call(i, f"2026-01-10 12:{i:02d}", "ann", "chat", MINI, latency=v) for i, v in enumerate(latencies)],
        )
    monkeypatch.setattr("lib.usage.sql.USE_ROLLUPS", rollups)
    f = berlin()
    h = usage.headline(any_engine, f)
    assert (h["p50_ms"], h["p95_ms"]) == (1900.0, 120000.0)  # ranks 5 and 10 of 10: 1999.99 and 123456.0, cut
    three = usage.UsageFilter(f.start, f.start + timedelta(hours=36), tz=BERLIN)  # hourly buckets
    df = usage.latency_over_time(any_engine, three)
    assert [tuple(r) for r in df.itertuples(index=False)] == [("2026-01-10 13:00", 1900.0, 120000.0)]


def test_rollups_are_backfilled_from_calls_logged_before_the_migration(tmp_path):
    from alembic import command

    from lib.core.db import alembic_config, make_engine, migrate

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    command.upgrade(alembic_config(engine), "0001")
    with engine.begin() as conn:
        conn.execute(insert(LlmCall.__table__), LOG)
    migrate(engine)
    with engine.begin() as conn:  # and the trigger keeps counting new calls
        conn.execute(insert(LlmCall.__table__), [call(10, "2026-01-11 10:00", "dan", "chat", MINI, cost=0.004)])
    h = usage.headline(engine, berlin())
    assert usage.source_for(berlin(), {"status"}).rollup
    assert (h["requests"], h["spend"]) == (7, pytest.approx(0.023))


def test_forecast_adds_the_last_seven_complete_days_rate_for_the_days_left():
    daily = {date(2026, 1, d): 10.0 for d in range(1, 11)} | {date(2026, 1, 11): 3.0}
    fc = forecast_month_end(daily, today=date(2026, 1, 11))
    assert fc.spent == pytest.approx(103.0)
    assert fc.daily_rate == pytest.approx(10.0) and fc.days_left == 20
    assert fc.projected == pytest.approx(303.0)
    assert "last 7 complete days" in fc.method


def test_forecast_on_the_first_of_the_month_uses_today_alone():
    fc = forecast_month_end({date(2026, 2, 1): 4.0, date(2026, 1, 31): 100.0}, today=date(2026, 2, 1))
    assert fc.spent == 4.0 and fc.projected == pytest.approx(4.0 * 28)


def test_cache_savings_count_cached_calls_and_the_money_they_saved(any_engine):
    base = {
        "feature": "chat",
        "provider": "openai",
        "model": MINI,
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "cached_tokens": 0,
        "attempts": 1,
        "created_at": datetime(2026, 1, 11, 12, tzinfo=UTC),
    }
    with any_engine.begin() as conn:
        conn.execute(
            insert(LlmCall.__table__),
            [
                {**base, "request_id": "c1", "status": "cached", "cost_usd": 0.0, "saved_usd": 0.002},
                {**base, "request_id": "c2", "status": "cached", "cost_usd": 0.0, "saved_usd": 0.003},
                {**base, "request_id": "c3", "status": "ok", "cost_usd": 0.002, "saved_usd": None},
            ],
        )
    assert usage.cache_savings(any_engine, berlin()) == {"hits": 2, "saved_usd": pytest.approx(0.005)}
    assert usage.cache_savings(any_engine, berlin("2026-02-01", "2026-02-02"))["hits"] == 0


@pytest.mark.parametrize("sent", [None, "", "Mars/Olympus_Mons", "../../etc/passwd", "UTC'; DROP TABLE x", "A" * 500])
def test_a_browser_time_zone_the_server_does_not_know_falls_back_to_utc(sent):
    from lib.usage.sql import viewer_zone

    tz = viewer_zone(sent)
    assert tz == "UTC"
    start, end = usage.preset_range("Today", datetime(2026, 3, 1, 12, tzinfo=UTC), tz)
    assert usage.UsageFilter(start, end, tz).tz == "UTC"


def test_a_known_browser_time_zone_is_kept():
    from lib.usage.sql import viewer_zone

    assert viewer_zone("Europe/Berlin") == "Europe/Berlin"
