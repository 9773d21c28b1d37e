"""The daily twins of the usage rollups (migration 0015): equal to the GROUP BY day of the hourly rollups after
inserts, updates and deletes, built by a bulk load and by the migration; and a page over local days that start off
UTC midnight (across a DST change) reads them and still shows every figure of the call log, on SQLite and
PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import test_usage_filters as tuf
from sqlalchemy import event, insert, text

from lib.core.rollups import DAILY, all_rollups, daily_backfill_sql
from lib.core.tables import LlmCall
from lib.usage import queries as usage


def daily_vs_hourly(engine, name: str) -> tuple[list, list]:
    """(the daily twin's rows, the GROUP BY day of hourly rollup `name`), comparable."""
    daily = DAILY[name]

    def rows(conn, table):
        got = conn.execute(text(f"SELECT * FROM {table}")).all()
        return sorted(tuple(round(v, 9) if isinstance(v, float) else str(v) for v in r) for r in got)

    with engine.begin() as conn:
        conn.execute(text(f"CREATE TEMPORARY TABLE scratch_{daily} AS SELECT * FROM {daily} WHERE 1 = 0"))
        sql = daily_backfill_sql(engine.dialect.name, name).replace(
            f"INSERT INTO {daily} ", f"INSERT INTO scratch_{daily} "
        )
        conn.execute(text(sql))
        out = rows(conn, daily), rows(conn, f"scratch_{daily}")
        conn.execute(text(f"DROP TABLE scratch_{daily}"))
    return out


def assert_daily_exact(engine, nonempty: bool = True) -> None:
    for name in all_rollups():
        mine, scratch = daily_vs_hourly(engine, name)
        assert mine == scratch, name
        assert bool(mine) == nonempty, name
        count = "requests" if "usage" in name else "n"
        with engine.connect() as conn:
            assert not conn.execute(text(f"SELECT 1 FROM {DAILY[name]} WHERE {count} = 0")).first(), name


def test_daily_rollups_follow_inserts_updates_and_deletes_of_the_hourly_ones(any_engine):
    from lib.jobs.housekeeping import delete_old_calls

    with any_engine.begin() as conn:
        conn.execute(insert(LlmCall.__table__), tuf.ROWS)  # row by row through the call log's triggers
    assert_daily_exact(any_engine)
    for name in all_rollups():  # and the hourly rollups still equal the call log
        mine, scratch = tuf.rollup_vs_scratch(any_engine, name)
        assert mine == scratch, name

    with any_engine.begin() as conn:
        conn.execute(text("UPDATE llm_usage_hourly SET requests = requests + 3, spend = spend + 0.5"))
        conn.execute(text("UPDATE llm_latency_hourly SET n = n - 1 WHERE n > 1"))  # fewer calls: the prune path
        conn.execute(text("UPDATE llm_usage_user_dims_hourly SET feature = 'moved' WHERE feature = 'embed'"))
        conn.execute(text("UPDATE llm_latency_dims_hourly SET bin = bin + 1 WHERE status = 'aborted'"))
        conn.execute(text("DELETE FROM llm_latency_user_dims_hourly WHERE status = 'error'"))
        conn.execute(text("DELETE FROM llm_usage_user_hourly WHERE \"user\" = 'bob'"))
    assert_daily_exact(any_engine)
    with any_engine.connect() as conn:
        assert (
            conn.execute(text("SELECT count(*) FROM llm_usage_user_dims_daily WHERE feature = 'embed'")).scalar() == 0
        )
        assert conn.execute(text("SELECT count(*) FROM llm_usage_user_daily WHERE \"user\" = 'bob'")).scalar() == 0

    # Retention deletes calls and rebuilds the hourly rows of their hours (one hour cut in the middle).
    now = datetime(2026, 1, 4, 12, 30, tzinfo=UTC) + timedelta(days=30)
    assert delete_old_calls(any_engine, days=25, batch=200, now=lambda: now) > 0
    assert_daily_exact(any_engine)
    with any_engine.begin() as conn:
        conn.execute(text("DELETE FROM llm_calls"))
        for name in all_rollups():
            conn.execute(text(f"DELETE FROM {name}"))
    assert_daily_exact(any_engine, nonempty=False)


def test_a_bulk_demo_load_builds_the_daily_rollups_and_their_triggers(any_engine):
    from lib.usage.demo import write_demo_calls

    write_demo_calls(any_engine, 2000, 6, end=datetime(2026, 1, 16, tzinfo=UTC), seed=3)
    assert_daily_exact(any_engine)
    with any_engine.begin() as conn:
        conn.execute(insert(LlmCall.__table__), tuf.ROWS[:200])
    assert_daily_exact(any_engine)


def test_migration_0015_down_and_up_rebuilds_the_daily_rollups_from_the_hourly_ones(any_engine):
    from alembic import command

    from lib.core.db import alembic_config, migrate

    command.downgrade(alembic_config(any_engine), "0014")
    with any_engine.connect() as conn:
        assert not any(any_engine.dialect.has_table(conn, d) for d in DAILY.values())
    with any_engine.begin() as conn:
        conn.execute(insert(LlmCall.__table__), tuf.ROWS[:600])  # the hourly triggers only
    migrate(any_engine)
    assert_daily_exact(any_engine)
    with any_engine.begin() as conn:
        conn.execute(insert(LlmCall.__table__), tuf.ROWS[600:900])  # the daily triggers count on
    assert_daily_exact(any_engine)


# ---- local days off UTC midnight, across a DST change ---------------------------------------------------------

SHIFT = datetime(2026, 3, 22, tzinfo=UTC) - datetime(2026, 1, 4, tzinfo=UTC)  # the 12 days of ROWS around 29 March
DST_ROWS = [{**r, "created_at": r["created_at"] + SHIFT} for r in tuf.ROWS]
RANGES = {  # (zone, first local day, days): Berlin moves to UTC+2 on 29 March, New York left UTC-5 on 8 March
    "across the change": ("Europe/Berlin", datetime(2026, 3, 26), 6),
    "starting on the change": ("Europe/Berlin", datetime(2026, 3, 29), 4),
    "ending on the change": ("Europe/Berlin", datetime(2026, 3, 23), 7),
    "west of UTC": ("America/New_York", datetime(2026, 3, 23), 8),
}


@pytest.fixture
def dst_log(any_engine, monkeypatch):
    monkeypatch.setattr(tuf, "ROWS", DST_ROWS)  # the from-scratch aggregation reads these
    with any_engine.begin() as conn:
        conn.execute(insert(LlmCall.__table__), DST_ROWS)
    return any_engine


@pytest.mark.parametrize("filter_name", ["none", "feature", "user", "user, model and status"])
@pytest.mark.parametrize("range_name", list(RANGES))
def test_local_days_off_utc_midnight_read_the_daily_rollups_and_equal_the_call_log(
    dst_log, monkeypatch, range_name, filter_name
):
    tz, first, days = RANGES[range_name]
    start = datetime(first.year, first.month, first.day, tzinfo=ZoneInfo(tz))
    end = (start + timedelta(days=days)).replace(tzinfo=ZoneInfo(tz))  # a local midnight, whatever the offset
    f = replace(usage.UsageFilter(start, end, tz=tz), **tuf.FILTERS[filter_name])
    assert f.grain() == "day"
    statements: list[str] = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(dst_log, "before_cursor_execute", record)
    try:
        got = tuf.answered(dst_log, f)
    finally:
        event.remove(dst_log, "before_cursor_execute", record)
    assert any("_daily" in s for s in statements)
    assert all("feedback.rating < " in s for s in statements if "llm_calls" in s)  # only the 👎 lookup
    assert got["headline"]["requests"] > 0
    monkeypatch.setattr("lib.usage.sql.USE_ROLLUPS", False)
    from_log = tuf.answered(dst_log, f)
    for key in got:
        assert tuf.close(got[key], from_log[key]), (key, got[key], from_log[key])
    if dst_log.dialect.name == "postgresql":  # the zone's real rules: the from-scratch aggregation in Python
        want = tuf.expected(f)
        for key in got.keys() - {"useful"}:  # no feedback here: the from-scratch figure assumes the log fixture's
            assert tuf.close(got[key], want[key]), (key, got[key], want[key])
    else:  # SQLite buckets by the zone's offset at the range's end (see lib.usage.sql.bucket); totals are exact
        assert tuf.close(got["headline"], tuf.expected(f)["headline"])
