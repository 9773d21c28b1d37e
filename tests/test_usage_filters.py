"""Every figure of the Usage page, under each filter it offers and some combinations, read from the rollups and
equal to a from-scratch aggregation of the raw rows in Python, on SQLite and PostgreSQL."""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event, insert, text

from lib.core.rollups import bin_of, bin_range
from lib.core.tables import LlmCall
from lib.gateway.pricing import Price
from lib.usage import queries as usage

TZ = "Europe/Berlin"  # UTC+1 in January: local midnight is 23:00 UTC, a whole hour
USERS = ["ada", "bob", "cy", None]
FEATURES = ["chat", "compare.run", "embed", "prompts"]
MODELS = ["openai/gpt-4.1-mini", "openai/gpt-4.1", "acme/private-llm", "ollama/llama3.1"]
STATUSES = ["ok", "ok", "ok", "error", "cached", "aborted", "blocked"]
TEMPLATES = [("rag-answer", 1), ("rag-answer", 2), ("summary", 1), (None, None)]
PRICE = Price(1.0, 0.5, 2.0, "test")
DISLIKED = {"r3", "r10", "r11", "r40", "r77", "r200"}


def make_rows(n: int = 1500, seed: int = 5) -> list[dict]:
    rng, start = random.Random(seed), datetime(2026, 1, 4, tzinfo=UTC)
    rows = []
    for i in range(n):
        status = rng.choice(STATUSES)
        template, version = rng.choice(TEMPLATES)
        model = rng.choice(MODELS)
        prompt = rng.randrange(0, 3000)
        rows.append(
            {
                "created_at": start + timedelta(seconds=rng.randrange(0, 12 * 86400)),
                "request_id": f"r{i}",
                "user": rng.choice(USERS),
                "feature": rng.choice(FEATURES),
                "provider": model.split("/")[0],
                "model": model,
                "status": status,
                "prompt_tokens": prompt,
                "completion_tokens": rng.randrange(0, 800),
                "cached_tokens": rng.randrange(0, prompt + 200),  # sometimes more than the prompt: capped
                "cost_usd": None if rng.random() < 0.1 else rng.choice([0.0, rng.random() / 50]),
                "saved_usd": rng.random() / 100 if status == "cached" else None,
                "latency_ms": None if rng.random() < 0.05 else rng.choice([0.4, rng.lognormvariate(6, 1.2)]),
                "template_name": template,
                "template_version": version,
                "error_type": rng.choice(["rate_limited", "timed_out", None]) if status == "error" else None,
                "pipeline_name": rng.choice(["triage", None, None]),
                "pipeline_version": rng.choice([1, 2]),
                "step": rng.choice(["classify", "draft"]),
            }
        )
    return rows


ROWS = make_rows()


@pytest.fixture
def log(any_engine):
    from lib.chat import conversations as chat_store

    with any_engine.begin() as conn:
        conn.execute(insert(LlmCall.__table__), ROWS)  # rollups kept by the triggers, row by row
    chat = chat_store.create_session(any_engine, "ada")
    for request_id in [*sorted(DISLIKED), "r4", "r5"]:
        msg = chat_store.add_message(any_engine, chat.id, "assistant", "answer", request_id=request_id)
        chat_store.set_feedback(any_engine, msg.id, -1 if request_id in DISLIKED else 1, user="ada")
    return any_engine


def period(days: int = 8) -> usage.UsageFilter:
    start = datetime(2026, 1, 6, tzinfo=ZoneInfo(TZ))
    return usage.UsageFilter(start, start + timedelta(days=days), tz=TZ)


FILTERS = {
    "none": {},
    "feature": {"features": ("chat",)},
    "model": {"models": ("openai/gpt-4.1-mini",)},
    "user": {"users": ("bob",)},
    "provider": {"providers": ("openai",)},
    "template": {"templates": ("rag-answer",)},
    "template version": {"templates": ("rag-answer",), "template_versions": (2,)},
    "status": {"statuses": ("error",)},
    "feature and user": {"features": ("chat", "embed"), "users": ("ada", "cy")},
    "user, model and status": {"users": ("ada",), "models": ("openai/gpt-4.1",), "statuses": ("ok", "cached")},
    "user and template version": {"users": ("bob",), "template_versions": (1,)},
    "everything": {
        "features": ("chat",),
        "users": ("ada",),
        "models": ("openai/gpt-4.1-mini", "acme/private-llm"),
        "providers": ("openai", "acme"),
        "templates": ("rag-answer",),
        "template_versions": (1, 2),
        "statuses": ("ok",),
    },
}
FIELDS = {
    "features": "feature",
    "users": "user",
    "models": "model",
    "providers": "provider",
    "templates": "template_name",
    "template_versions": "template_version",
    "statuses": "status",
}


# ---- the from-scratch aggregation ------------------------------------------------------------------


def selected(f: usage.UsageFilter) -> list[dict]:
    return [
        r
        for r in ROWS
        if f.start <= r["created_at"] < f.end
        and all(r[col] in getattr(f, key) for key, col in FIELDS.items() if getattr(f, key))
    ]


def bucket_of(r: dict, f: usage.UsageFilter, grain: str | None = None) -> str:
    local = r["created_at"].astimezone(ZoneInfo(f.tz))
    return local.strftime("%Y-%m-%d %H:00" if (grain or f.grain()) == "hour" else "%Y-%m-%d")


def shown_percentiles(latencies: list[float]) -> tuple[float, float] | tuple[None, None]:
    """Nearest rank p50/p95, cut to two significant digits as the page shows them."""
    if not latencies:
        return None, None
    in_order = sorted(latencies)
    picks = [in_order[math.ceil(len(in_order) * p / 100) - 1] for p in (50, 95)]
    return tuple(max(bin_range(bin_of(v))[0], 0.0) for v in picks)  # type: ignore[return-value]


def spend(rows: list[dict]) -> float:
    return sum(r["cost_usd"] or 0.0 for r in rows)


def unpriced(rows: list[dict]) -> int:
    return sum(r["cost_usd"] is None for r in rows)


def ordered(items) -> list[tuple]:
    """Rows of a table in one order whatever the database's: by their keys (None shown as -1, beside text)."""
    return sorted(items, key=lambda t: repr(t[:2]))


def grouped(rows: list[dict], key) -> dict:
    out = defaultdict(list)
    for r in rows:
        out[key(r)].append(r)
    return out


def expected(f: usage.UsageFilter) -> dict:
    rows = selected(f)
    n, total = len(rows), spend(rows)
    priced = n - unpriced(rows)
    p50, p95 = shown_percentiles([r["latency_ms"] for r in rows if r["latency_ms"] is not None])
    answered = [r for r in rows if r["status"] in ("ok", "cached")]
    useful = sum(r["request_id"] not in DISLIKED for r in answered)
    out: dict = {
        "headline": {
            "requests": n,
            "spend": total,
            "unpriced": unpriced(rows),
            "input_tokens": sum(r["prompt_tokens"] for r in rows),
            "output_tokens": sum(r["completion_tokens"] for r in rows),
            "cached_tokens": sum(r["cached_tokens"] for r in rows),
            "errors": sum(r["status"] == "error" for r in rows),
            "cache_hits": sum(r["status"] == "cached" for r in rows),
            "avg_cost": total / priced if priced else None,
            "error_rate": sum(r["status"] == "error" for r in rows) / n if n else None,
            "cache_hit_rate": sum(r["status"] == "cached" for r in rows) / n if n else None,
            "p50_ms": p50,
            "p95_ms": p95,
        },
        "cache": {
            "hits": sum(r["status"] == "cached" for r in rows),
            "saved_usd": sum(r["saved_usd"] or 0.0 for r in rows if r["status"] == "cached"),
        },
        "tokens": ordered(
            (
                b,
                sum(r["prompt_tokens"] for r in g),
                sum(r["cached_tokens"] for r in g),
                sum(r["completion_tokens"] for r in g),
            )
            for b, g in grouped(rows, lambda r: bucket_of(r, f)).items()
        ),
        "latency": ordered(
            (b, *shown_percentiles(lat))
            for b, g in grouped(rows, lambda r: bucket_of(r, f)).items()
            if (lat := [r["latency_ms"] for r in g if r["latency_ms"] is not None])
        ),
        "errors": ordered(
            (*k, len(g))
            for k, g in grouped(
                [r for r in rows if r["status"] == "error"], lambda r: (bucket_of(r, f), r["error_type"] or "unknown")
            ).items()
        ),
        "daily": ordered((b, spend(g)) for b, g in grouped(rows, lambda r: bucket_of(r, f, "day")).items()),
        "useful": {
            "spend": total,
            "useful_answers": useful,
            "answers": len(answered),
            "unpriced": unpriced(rows),
            "cost_per_useful_answer": total / useful if useful else None,
            "feedback_collected": True,
        },
        "top": [
            r["request_id"]
            for r in sorted((r for r in rows if r["cost_usd"] is not None), key=lambda r: -r["cost_usd"])
        ][:20],
        "unpriced calls": ordered(
            (m, len(g), sum(r["prompt_tokens"] for r in g), sum(r["completion_tokens"] for r in g))
            for m, g in grouped([r for r in rows if r["cost_usd"] is None], lambda r: r["model"]).items()
        ),
    }
    for by in ("model", "feature"):
        out[f"spend by {by}"] = ordered(
            (*k, spend(g), len(g), unpriced(g))
            for k, g in grouped(rows, lambda r, by=by: (bucket_of(r, f), r[by])).items()
        )
    for by, keys in usage.BREAKDOWNS.items():
        groups = grouped(rows, lambda r, keys=keys: tuple(r[k] for k in keys))
        out[f"by {by}"] = ordered(
            (
                tuple(-1 if v is None else v for v in k),
                spend(g),
                len(g),
                unpriced(g),
                sum(r["prompt_tokens"] for r in g),
                sum(r["completion_tokens"] for r in g),
                spend(g) / total if total else 0.0,
                len(g) / n,
            )
            for k, g in groups.items()
        )
    what_if = []
    for model, g in grouped(rows, lambda r: r["model"]).items():
        cached = sum(min(r["cached_tokens"], r["prompt_tokens"]) for r in g)
        repriced = (
            (sum(r["prompt_tokens"] for r in g) - cached) * PRICE.input
            + cached * PRICE.cached_input
            + sum(r["completion_tokens"] for r in g) * PRICE.output
        ) / 1e6
        what_if.append((model, len(g), spend(g), unpriced(g), repriced, repriced - spend(g)))
    out["what if"] = ordered(what_if)
    return out


# ---- what the page's queries answer ----------------------------------------------------------------


def records(df, cols=None) -> list[tuple]:
    df = df if cols is None else df[cols]
    return ordered(
        tuple(-1 if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in r)
        for r in df.itertuples(index=False)
    )


def answered(engine, f: usage.UsageFilter) -> dict:
    out = {
        "headline": usage.headline(engine, f),
        "cache": usage.cache_savings(engine, f),
        "tokens": records(usage.tokens_over_time(engine, f)),
        "latency": [(b, p50, p95) for b, p50, p95 in records(usage.latency_over_time(engine, f))],
        "errors": records(usage.errors_over_time(engine, f)),
        "daily": records(usage.daily_spend(engine, f)),
        "useful": usage.cost_per_useful_answer(engine, f),
        "what if": records(usage.what_if(engine, f, PRICE)),
    }
    for by in ("model", "feature"):
        out[f"spend by {by}"] = records(usage.spend_over_time(engine, f, by))
    for by, keys in usage.BREAKDOWNS.items():
        df = usage.breakdown(engine, f, by)
        cols = ["spend", "requests", "unpriced", "input_tokens", "output_tokens", "spend_share", "request_share"]
        out[f"by {by}"] = ordered(
            (
                tuple(
                    -1 if v is None or v != v else (int(v) if k in ("template_version", "pipeline_version") else v)
                    for k, v in zip(keys, r[: len(keys)], strict=True)
                ),
                *r[len(keys) :],
            )
            for r in df[[*keys, *cols]].itertuples(index=False)
        )
    return out


def close(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


@pytest.mark.parametrize("name", list(FILTERS))
def test_every_figure_of_a_filtered_page_equals_a_from_scratch_aggregation(log, name):
    f = replace(period(), **FILTERS[name])
    want, got = expected(f), answered(log, f)
    assert want["headline"]["requests"] > 0, "the filter selects calls"
    for key in got:
        assert close(got[key], want[key]), (name, key, got[key], want[key])
    top = usage.top_calls(log, f)
    assert list(top["id"].map(lambda i: f"r{i - 1}")) == want["top"]
    unpriced_df = usage.unpriced_calls(log, f)
    assert records(unpriced_df, ["model", "calls", "input_tokens", "output_tokens"]) == want["unpriced calls"]


@pytest.mark.parametrize("name", list(FILTERS))
def test_top_calls_read_per_value_when_the_cost_walk_finds_too_few(log, monkeypatch, name):
    """With no threshold from the walk down the all-calls cost index (a cheap model, free errors), the top calls
    come per value of a filtered user, model, status or feature (their (column, cost) indexes), or from the range."""
    monkeypatch.setattr(usage, "WALK_BUDGETS", (1,))
    f = replace(period(), **FILTERS[name])
    top = usage.top_calls(log, f)
    assert list(top["id"].map(lambda i: f"r{i - 1}")) == expected(f)["top"]
    assert list(usage.top_calls(log, f, limit=3)["id"]) == list(top["id"][:3])


@pytest.mark.parametrize("name", ["feature", "user", "everything"])
def test_hourly_buckets_of_a_filtered_day_equal_a_from_scratch_aggregation(log, name):
    f = replace(period(days=2), **FILTERS[name])
    assert f.grain() == "hour"
    want, got = expected(f), answered(log, f)
    for key in ("headline", "tokens", "latency", "errors", "spend by model", "spend by feature"):
        assert close(got[key], want[key]), (name, key)


AGGREGATES = {
    "headline": usage.headline,
    "cache_savings": usage.cache_savings,
    "tokens": usage.tokens_over_time,
    "latency": usage.latency_over_time,
    "errors": usage.errors_over_time,
    "daily": usage.daily_spend,
    "spend by model": lambda e, f: usage.spend_over_time(e, f, "model"),
    "spend by feature": lambda e, f: usage.spend_over_time(e, f, "feature"),
    "what if": lambda e, f: usage.what_if(e, f, PRICE),
    **{f"by {b}": (lambda e, f, b=b: usage.breakdown(e, f, b)) for b in usage.BREAKDOWNS},
}


@pytest.mark.parametrize("name", list(FILTERS))
def test_no_aggregate_of_a_filtered_page_reads_the_call_log(log, name):
    f = replace(period(), **FILTERS[name])
    statements: list[str] = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(log, "before_cursor_execute", record)
    try:
        for query in AGGREGATES.values():
            query(log, f)
        reads_log = [s for s in statements if "llm_calls" in s]
        statements.clear()
        usage.cost_per_useful_answer(log, f)  # reads the call log only for the few 👎 request ids
        useful_reads = [s for s in statements if "llm_calls" in s]
    finally:
        event.remove(log, "before_cursor_execute", record)
    assert reads_log == []
    assert len(useful_reads) == 1 and "feedback.rating < " in useful_reads[0]


def test_the_histogram_bins_of_the_database_are_those_of_python(any_engine):
    values = [0.4, 1.0, 5.7, 9.99, 10.0, 99.5, 100.0, 999.9, 1000.0, 1000.1, 1999.99, 9999.99, 10000.0, 123456.0]
    rows = [{**ROWS[0], "request_id": f"b{i}", "latency_ms": v} for i, v in enumerate(values)]
    with any_engine.begin() as conn:
        conn.execute(insert(LlmCall.__table__), rows)
        got = sorted(conn.execute(text("SELECT bin, n FROM llm_latency_hourly")).all())
    assert got == sorted(Counter(bin_of(v) for v in values).items())
    assert [max(bin_range(bin_of(v))[0], 0.0) for v in (0.4, 5.7, 999.9, 1999.99, 123456.0)] == [
        0.0,
        5.0,
        990.0,
        1900.0,
        120000.0,
    ]


def index_names(engine) -> set[str]:
    from sqlalchemy import inspect

    return {ix["name"] for ix in inspect(engine).get_indexes("llm_calls")}


def rollup_vs_scratch(engine, name: str) -> tuple[list, list]:
    """(the rollup's rows, the rows a from-scratch GROUP BY over the call log gives), comparable."""
    from lib.core.rollups import backfill_sql

    def rows(conn, table):
        got = conn.execute(text(f"SELECT * FROM {table}")).all()
        return sorted(tuple(round(v, 9) if isinstance(v, float) else str(v) for v in r) for r in got)

    with engine.begin() as conn:
        conn.execute(text(f"CREATE TEMPORARY TABLE scratch_{name} AS SELECT * FROM {name} WHERE 1 = 0"))
        sql = backfill_sql(engine.dialect.name, name).replace(f"INSERT INTO {name} ", f"INSERT INTO scratch_{name} ")
        conn.execute(text(sql))
        out = rows(conn, name), rows(conn, f"scratch_{name}")
        conn.execute(text(f"DROP TABLE scratch_{name}"))
    return out


def test_a_bulk_demo_load_builds_every_rollup_from_scratch_and_puts_triggers_and_indexes_back(any_engine):
    from lib.core.rollups import all_rollups
    from lib.usage.demo import write_demo_calls

    indexes = index_names(any_engine)
    assert "ix_llm_calls_usage" in indexes
    write_demo_calls(any_engine, 3000, 10, end=datetime(2026, 1, 16, tzinfo=UTC), seed=2)
    assert index_names(any_engine) == indexes
    for name in all_rollups():
        mine, scratch = rollup_vs_scratch(any_engine, name)
        assert mine == scratch and mine, name
    with any_engine.begin() as conn:
        conn.execute(insert(LlmCall.__table__), ROWS[:300])  # through the triggers, which are back
    for name in all_rollups():
        mine, scratch = rollup_vs_scratch(any_engine, name)
        assert mine == scratch, name


def test_migration_0013_replaces_the_old_rollups_with_ones_equal_to_the_call_log(any_engine):
    """Down to the revision before 0013 (the rollups of 0003), calls counted by the old triggers, then up again."""
    from alembic import command
    from alembic.script import ScriptDirectory

    from lib.core.db import alembic_config, migrate
    from lib.core.rollups import all_rollups

    cfg = alembic_config(any_engine)
    before = ScriptDirectory.from_config(cfg).get_revision("0013").down_revision
    command.downgrade(cfg, str(before))
    with any_engine.connect() as conn:
        assert not any_engine.dialect.has_table(conn, "llm_latency_dims_hourly")
    with any_engine.begin() as conn:
        conn.execute(insert(LlmCall.__table__), ROWS[:500])
    migrate(any_engine)
    with any_engine.begin() as conn:
        conn.execute(insert(LlmCall.__table__), ROWS[500:700])  # the new triggers count on
    for name in all_rollups():
        mine, scratch = rollup_vs_scratch(any_engine, name)
        assert mine == scratch and mine, name
