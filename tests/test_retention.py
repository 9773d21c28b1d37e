"""Call-log retention: old calls are deleted in batches and every usage figure equals a from-scratch aggregation."""

from __future__ import annotations

import random
from datetime import timedelta

from sqlalchemy import insert, select, text

from lib.core.rollups import all_rollups, backfill_sql
from lib.core.tables import LlmCall, utcnow
from lib.jobs.housekeeping import delete_old_calls


def seed(engine, n: int = 600) -> None:
    rng, now = random.Random(3), utcnow()
    rows = [
        {
            "created_at": now - timedelta(minutes=rng.randrange(0, 20 * 24 * 60)),
            "request_id": f"r{i}",
            "user": rng.choice(["ada", "bob", None]),
            "feature": rng.choice(["chat", "compare.run"]),
            "provider": "acme",
            "model": rng.choice(["acme/m1", "acme/m2"]),
            "template_name": rng.choice(["rag.answer", None]),
            "template_version": rng.choice([1, 2, None]),
            "prompt_tokens": rng.randrange(1, 500),
            "completion_tokens": rng.randrange(1, 300),
            "cached_tokens": rng.randrange(0, 50),
            "cost_usd": rng.choice([None, rng.random() / 100]),
            "latency_ms": rng.choice([None, rng.uniform(0.5, 9000)]),
            "status": rng.choice(["ok", "ok", "error", "cached"]),
            "error_type": None,
        }
        for i in range(n)
    ]
    with engine.begin() as conn:
        conn.execute(insert(LlmCall), rows)


def rollup_rows(engine, name: str) -> list[tuple]:
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT * FROM {name}")).all()
    return sorted(tuple(round(v, 9) if isinstance(v, float) else str(v) for v in r) for r in rows)


def from_scratch(engine, name: str) -> list[tuple]:
    """The rollup as it would be built now from the call log alone (in a scratch copy of the table)."""
    dialect = engine.dialect.name
    with engine.begin() as conn:
        conn.execute(text(f"CREATE TEMPORARY TABLE scratch_{name} AS SELECT * FROM {name} WHERE 1 = 0"))
        sql = backfill_sql(dialect, name).replace(f"INSERT INTO {name} ", f"INSERT INTO scratch_{name} ", 1)
        conn.execute(text(sql))
        rows = conn.execute(text(f"SELECT * FROM scratch_{name}")).all()
        conn.execute(text(f"DROP TABLE scratch_{name}"))
    return sorted(tuple(round(v, 9) if isinstance(v, float) else str(v) for v in r) for r in rows)


def test_retention_deletes_old_calls_in_batches_and_the_rollups_stay_exact(any_engine):
    seed(any_engine)
    with any_engine.connect() as conn:
        total = conn.execute(select(LlmCall.id)).all()
        cutoff = utcnow() - timedelta(days=7)
        old = conn.execute(select(LlmCall.id).where(LlmCall.created_at < cutoff)).all()
    assert 0 < len(old) < len(total)
    deleted = delete_old_calls(any_engine, days=7, batch=37)  # many batches, each cutting through hours
    with any_engine.connect() as conn:
        left = conn.execute(select(LlmCall.created_at)).scalars().all()
    assert deleted == len(old) and len(left) == len(total) - len(old)
    for name in all_rollups():
        assert rollup_rows(any_engine, name) == from_scratch(any_engine, name), name
    assert delete_old_calls(any_engine, days=7) == 0


def test_every_dashboard_figure_after_retention_equals_the_figures_of_the_calls_left(any_engine):
    from lib.usage import queries
    from lib.usage.sql import UsageFilter

    seed(any_engine, 300)
    delete_old_calls(any_engine, days=5, batch=50)
    hour = utcnow().replace(minute=0, second=0, microsecond=0)
    f = UsageFilter(start=hour - timedelta(days=30), end=hour + timedelta(hours=2))  # whole hours: read from rollups
    shown = queries.headline(any_engine, f)
    with any_engine.connect() as conn:
        calls = conn.execute(select(LlmCall)).all()
    assert shown["requests"] == len(calls)
    assert abs(shown["spend"] - sum(c.cost_usd or 0 for c in calls)) < 1e-9
    assert shown["input_tokens"] == sum(c.prompt_tokens for c in calls)
    assert shown["errors"] == sum(c.status == "error" for c in calls)
