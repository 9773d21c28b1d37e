"""Queries behind the Usage dashboard: every aggregate is computed in SQL; pandas only holds the results.

Most read a rollup of the call log (lib/core/rollups.py) when it holds the dimensions asked for: its daily twin
for the whole UTC days of the range and the hourly one for the rest (lib.usage.sql.daily_source), and the call log
itself otherwise; the answers are the same (tests check both).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC
from typing import Any

import pandas as pd
from sqlalchemy import DateTime, Engine, bindparam, func, select, text
from sqlalchemy.sql import Select

from lib.core.tables import Feedback
from lib.gateway.pricing import Price
from lib.usage.access import CONTENT_COLUMNS, OPERATIONAL_META_KEYS, Viewer
from lib.usage.sql import (
    CALL_COLS,
    CALLS,
    FILTER_DIMS,
    UsageFilter,
    bucket,
    group_key,
    histogram_percentiles,
    reported_latency,
    source_for,
    sqlite_buckets,
    sqlite_percentiles,
    usage_filter_range,
    where,
)

# the dashboard's period choices, re-exported (`X as X` marks a re-export)
from lib.usage.sql import PRESETS as PRESETS
from lib.usage.sql import date_range as date_range
from lib.usage.sql import preset_range as preset_range

BREAKDOWNS = {
    "user": ("user",),
    "feature": ("feature",),
    "model": ("model",),
    "template version": ("template_name", "template_version"),
    "pipeline step": ("pipeline_name", "pipeline_version", "step"),  # cost per pipeline, version and step
}
ANSWER_STATUSES = ("ok", "cached")  # statuses that gave the user an answer
HEADLINE_METRICS = (
    ("spend", "Spend"),
    ("requests", "Requests"),
    ("input_tokens", "Input tokens"),
    ("output_tokens", "Output tokens"),
    ("avg_cost", "Avg cost / request"),
    ("error_rate", "Error rate"),
    ("p50_ms", "p50 latency"),
    ("p95_ms", "p95 latency"),
    ("cache_hit_rate", "Cache hit rate"),
)


def _frame(engine: Engine, stmt: Select) -> pd.DataFrame:
    with engine.connect() as conn:
        result = conn.execute(stmt)
        return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


def _num(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _to_local(series: pd.Series, tz: str) -> pd.Series:
    # SQLite hands back naive UTC datetimes, PostgreSQL aware ones: both become the viewer's zone.
    return pd.to_datetime(series, utc=True).dt.tz_convert(tz)


def cache_savings(engine: Engine, f: UsageFilter) -> dict[str, float | int]:
    """Calls the response cache answered in the period, and what they would have cost."""
    src = source_for(f, {"status"}, engine)
    stmt = select(src.requests().label("hits"), src.saved().label("saved")).where(
        where(f, src), src.table.c.status == "cached"
    )
    with engine.connect() as conn:
        row = conn.execute(stmt).mappings().one()
    return {"hits": int(row["hits"]), "saved_usd": float(row["saved"])}


def headline(engine: Engine, f: UsageFilter) -> dict[str, float | int | None]:
    """Totals of one period: spend, requests, tokens, average cost, error and cache-hit rates, latency."""
    src = source_for(f, {"status"}, engine)
    stmt = select(
        src.requests().label("requests"),
        src.spend().label("spend"),
        src.total("unpriced").label("unpriced"),
        src.total("input_tokens").label("input_tokens"),
        src.total("output_tokens").label("output_tokens"),
        src.total("cached_tokens").label("cached_tokens"),
        src.count_where(src.table.c.status == "error").label("errors"),
        src.count_where(src.table.c.status == "cached").label("cache_hits"),
    ).where(where(f, src))
    with engine.connect() as conn:
        row = dict(conn.execute(stmt).mappings().one())
    counts = {k: int(v) for k, v in row.items() if k != "spend"}
    spend, requests = float(row["spend"]), counts["requests"]
    priced = requests - counts["unpriced"]
    out: dict[str, float | int | None] = {**counts, "spend": spend}
    # Average over priced calls only: an unpriced call is unknown, not free.
    out["avg_cost"] = spend / priced if priced else None
    out["error_rate"] = counts["errors"] / requests if requests else None
    out["cache_hit_rate"] = counts["cache_hits"] / requests if requests else None
    out.update(latency_percentiles(engine, f))
    return out


def compare_headlines(current: dict, previous: dict) -> list[dict[str, Any]]:
    """Each headline metric with its previous value and relative change (None when not comparable)."""
    rows = []
    for key, label in HEADLINE_METRICS:
        now, before = current.get(key), previous.get(key)
        change = (now - before) / before if now is not None and before else None
        rows.append({"metric": key, "label": label, "value": now, "previous": before, "change": change})
    return rows


def latency_percentiles(engine: Engine, f: UsageFilter) -> dict[str, float | None]:
    """p50 and p95 latency in ms (nearest rank, as PostgreSQL's percentile_disc) cut to two significant digits,
    as the latency histograms hold them (see reported_latency); None when no calls."""
    fast = histogram_percentiles(engine, f, by_bucket=False)
    if fast is not None:
        p50, p95 = fast.get("all", (None, None))
        return {"p50_ms": p50, "p95_ms": p95}
    if engine.dialect.name == "postgresql":
        df = _pg_percentiles(engine, f, by_bucket=False)
        p50, p95 = (None, None) if df.empty else (_num(df["p50_ms"].iloc[0]), _num(df["p95_ms"].iloc[0]))
    else:
        with engine.connect() as conn:
            p50, p95 = sqlite_percentiles(conn, f, path="auto")
    return {"p50_ms": reported_latency(p50), "p95_ms": reported_latency(p95)}


def latency_over_time(engine: Engine, f: UsageFilter) -> pd.DataFrame:
    """p50 and p95 latency per local bucket (to the latency bin, as latency_percentiles)."""
    fast = histogram_percentiles(engine, f, by_bucket=True)
    if fast is not None:
        return pd.DataFrame([(k, *v) for k, v in sorted(fast.items())], columns=["bucket", "p50_ms", "p95_ms"])
    if engine.dialect.name == "postgresql":
        df = _pg_percentiles(engine, f, by_bucket=True)
        for col in ("p50_ms", "p95_ms"):
            df[col] = [reported_latency(_num(v)) for v in df[col]]
        return df
    rows = []
    with engine.connect() as conn:
        for label, part in sqlite_buckets(f):
            p50, p95 = sqlite_percentiles(conn, part)
            if p50 is not None:
                rows.append({"bucket": label, "p50_ms": reported_latency(p50), "p95_ms": reported_latency(p95)})
    return pd.DataFrame(rows, columns=["bucket", "p50_ms", "p95_ms"])


def _pg_percentiles(engine: Engine, f: UsageFilter, by_bucket: bool) -> pd.DataFrame:
    b = bucket(engine, f).label("bucket")
    cols = [
        func.percentile_disc(p).within_group(CALL_COLS.latency_ms).label(n)
        for p, n in ((0.5, "p50_ms"), (0.95, "p95_ms"))
    ]
    stmt = select(*([b] if by_bucket else []), *cols).where(where(f), CALL_COLS.latency_ms.is_not(None))
    return _frame(engine, stmt.group_by(b).order_by(b) if by_bucket else stmt)


def spend_over_time(engine: Engine, f: UsageFilter, by: str = "model") -> pd.DataFrame:
    """Spend, requests and unpriced calls per local bucket and model (or feature)."""
    if by not in ("model", "feature"):
        raise ValueError("Spend can be stacked by model or by feature.")
    src = source_for(f, {by}, engine, f.grain())
    b = bucket(engine, f, src).label("bucket")
    stmt = (
        select(
            b,
            src.col(by).label(by),
            src.spend().label("spend"),
            src.requests().label("requests"),
            src.total("unpriced").label("unpriced"),
        )
        .where(where(f, src))
        .group_by(b, src.group(engine, by))
        .having(src.nonzero())
        .order_by(b, src.col(by))
    )
    return _frame(engine, stmt)


def tokens_over_time(engine: Engine, f: UsageFilter) -> pd.DataFrame:
    """Input, cached input and output tokens per local bucket."""
    src = source_for(f, (), engine, f.grain())
    b = bucket(engine, f, src).label("bucket")
    stmt = (
        select(
            b,
            src.total("input_tokens").label("input_tokens"),
            src.total("cached_tokens").label("cached_tokens"),
            src.total("output_tokens").label("output_tokens"),
        )
        .where(where(f, src))
        .group_by(b)
        .having(src.nonzero())
        .order_by(b)
    )
    return _frame(engine, stmt)


def errors_over_time(engine: Engine, f: UsageFilter) -> pd.DataFrame:
    """Failed calls (status error) per local bucket and error type."""
    src = source_for(f, {"status", "error_type"}, engine, f.grain())
    b = bucket(engine, f, src).label("bucket")
    etype = func.coalesce(src.col("error_type"), "unknown")
    stmt = (
        select(b, etype.label("error_type"), src.requests().label("errors"))
        .where(where(f, src), src.table.c.status == "error")
        .group_by(b, etype)
        .having(src.nonzero())
        .order_by(b, etype)
    )
    return _frame(engine, stmt)


def breakdown_statement(engine: Engine, f: UsageFilter, by: str) -> Select:
    """The SQL behind breakdown() (exposed so its query plan can be checked)."""
    keys = BREAKDOWNS[by]
    src = source_for(f, set(keys), engine)
    return (
        select(
            *(src.col(k).label(k) for k in keys),
            src.spend().label("spend"),
            src.requests().label("requests"),
            src.total("unpriced").label("unpriced"),
            src.total("input_tokens").label("input_tokens"),
            src.total("output_tokens").label("output_tokens"),
        )
        .where(where(f, src))
        .group_by(*(src.group(engine, k) for k in keys))
        .having(src.nonzero())
        .order_by(src.spend().desc(), src.requests().desc(), *(src.col(k) for k in keys))
    )


def breakdown(engine: Engine, f: UsageFilter, by: str) -> pd.DataFrame:
    """Spend, requests, unpriced calls, tokens and shares per user, feature, model or template version."""
    df = _frame(engine, breakdown_statement(engine, f, by))
    total_spend, total_requests = df["spend"].sum(), df["requests"].sum()
    df["spend_share"] = df["spend"] / total_spend if total_spend else 0.0
    df["request_share"] = df["requests"] / total_requests if total_requests else 0.0
    return df


TOP_COLUMNS = (
    "id",
    "created_at",
    "user",
    "feature",
    "model",
    "template_name",
    "template_version",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost_usd",
    "latency_ms",
    "status",
)
WALK_BUDGETS = (500, 20_000)  # calls of the range a top-calls walk reads in cost order, then reads the range instead


def _filter_sql(f: UsageFilter) -> tuple[str, dict[str, Any]]:
    """The filter's column conditions as SQL text over llm_calls, and their parameters."""
    conds, params = [], {}
    for key, dim in FILTER_DIMS.items():
        if getattr(f, key):
            conds.append(f'"{dim}" IN :{key}')
            params[key] = list(getattr(f, key))
    return " AND ".join(conds) or "1 = 1", params


def _bound(sql: str, params: dict[str, Any]):
    stmt = text(sql).bindparams(bindparam("lo", type_=DateTime()), bindparam("hi", type_=DateTime()))
    return stmt.bindparams(*(bindparam(k, expanding=True) for k in params))


def _cost_threshold(engine: Engine, f: UsageFilter, limit: int) -> float | None:
    """The cost of the `limit`-th most expensive call matching `f`, found among the 500 (then 20,000) most
    expensive calls of the range (read in ix_llm_calls_cost order, from the top); None when fewer match among
    them, or when the rollups say the matching calls cost nothing (they would be at the very bottom)."""
    src = source_for(f, (), engine)
    with engine.connect() as conn:
        if not conn.execute(select(src.spend()).where(where(f, src))).scalar():
            return None
        cond, params = _filter_sql(f)
        hint = " INDEXED BY ix_llm_calls_cost" if engine.dialect.name == "sqlite" else ""
        dims = ", ".join(f'"{FILTER_DIMS[k]}"' for k in params) or "id"
        walk = (
            f"SELECT cost_usd FROM (SELECT cost_usd, {dims} FROM llm_calls{hint} WHERE cost_usd IS NOT NULL "
            "AND created_at >= :lo AND created_at < :hi ORDER BY cost_usd DESC LIMIT :budget) AS walked "
            f"WHERE {cond} ORDER BY cost_usd DESC LIMIT 1 OFFSET :k"
        )
        bounds = {"lo": f.start.astimezone(UTC), "hi": f.end.astimezone(UTC), "k": limit - 1}
        for budget in WALK_BUDGETS:
            found = conn.execute(_bound(walk, params), {**params, **bounds, "budget": budget}).scalar()
            if found is not None:
                return found
    return None


INDEXED_DIMS = ("users", "models", "statuses", "features")  # (column, cost_usd, created_at) indexes, by selectivity


def _top_by_value(engine: Engine, f: UsageFilter, limit: int) -> pd.DataFrame | None:
    """The most expensive calls matching `f` read per value of its first filtered indexed column (user, model,
    status, feature): each value's calls in cost order on that column's (column, cost_usd, created_at) index, the
    range checked in the index, `limit` kept per value, then merged. None when no indexed column is filtered."""
    key = next((k for k in INDEXED_DIMS if getattr(f, k)), None)
    if key is None:
        return None
    dim = FILTER_DIMS[key]
    no_value: dict[str, Any] = {key: ()}
    rest = replace(f, **no_value)
    cond, params = _filter_sql(rest)
    hint = f" INDEXED BY ix_llm_calls_{dim}" if engine.dialect.name == "sqlite" else ""
    sql = (
        f"SELECT {', '.join(f'{chr(34)}{c}{chr(34)}' for c in TOP_COLUMNS)} FROM llm_calls{hint} "
        f'WHERE "{dim}" = :v AND cost_usd IS NOT NULL AND created_at >= :lo AND created_at < :hi AND {cond} '
        "ORDER BY cost_usd DESC, id LIMIT :n"
    )
    bounds = {"lo": f.start.astimezone(UTC), "hi": f.end.astimezone(UTC), "n": limit}
    frames = []
    with engine.connect() as conn:
        stmt = _bound(sql, params).columns(created_at=DateTime())
        for value in getattr(f, key):
            result = conn.execute(stmt, {**params, **bounds, "v": value})
            frames.append(pd.DataFrame(result.fetchall(), columns=list(result.keys())))
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return df.sort_values(["cost_usd", "id"], ascending=[False, True], kind="stable").head(limit).reset_index(drop=True)


def top_calls(engine: Engine, f: UsageFilter, limit: int = 20) -> pd.DataFrame:
    """The most expensive priced calls of the period, most expensive first (ties by id).

    Usually the limit-th matching cost is found among the range's most expensive calls (a short walk down the
    cost index), and only calls at least that expensive are read. Otherwise (the filter matches few calls, or
    only cheap ones) each value of a filtered user, model, status or feature is read in cost order from its
    (column, cost_usd, created_at) index (see _top_by_value); with none of those filtered, the range is read and
    sorted, ordered by `cost_usd + 0` so PostgreSQL does not walk the whole cost index instead.
    """
    stmt = select(*(CALL_COLS[c] for c in TOP_COLUMNS)).where(where(f), CALL_COLS.cost_usd.is_not(None))
    threshold = _cost_threshold(engine, f, limit)
    by_value = _top_by_value(engine, f, limit) if threshold is None else None
    if by_value is not None:
        df = by_value
    elif threshold is None:
        df = _frame(engine, stmt.order_by((CALL_COLS.cost_usd + 0).desc(), CALL_COLS.id).limit(limit))
    elif engine.dialect.name == "sqlite":  # SQLAlchemy drops FROM hints on SQLite: name the index in SQL text
        cond, params = _filter_sql(f)
        sql = (
            f"SELECT {', '.join(f'{chr(34)}{c}{chr(34)}' for c in TOP_COLUMNS)} FROM llm_calls INDEXED BY "
            f"ix_llm_calls_cost WHERE cost_usd >= :t AND created_at >= :lo AND created_at < :hi AND {cond} "
            "ORDER BY cost_usd DESC, id LIMIT :n"
        )
        bounds = {"lo": f.start.astimezone(UTC), "hi": f.end.astimezone(UTC), "t": threshold, "n": limit}
        with engine.connect() as conn:
            result = conn.execute(_bound(sql, params).columns(created_at=DateTime()), {**params, **bounds})
            df = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
    else:
        df = _frame(
            engine,
            stmt.where(CALL_COLS.cost_usd >= threshold).order_by(CALL_COLS.cost_usd.desc(), CALL_COLS.id).limit(limit),
        )
    df["created_at"] = _to_local(df["created_at"], f.tz)
    return df


def unpriced_calls(engine: Engine, f: UsageFilter) -> pd.DataFrame:
    """Calls with no known price, per model: counted and listed, never shown as $0."""
    stmt = (
        select(
            CALL_COLS.model,
            func.count().label("calls"),
            func.sum(CALL_COLS.prompt_tokens).label("input_tokens"),
            func.sum(CALL_COLS.completion_tokens).label("output_tokens"),
            func.min(CALL_COLS.created_at).label("first_seen"),
            func.max(CALL_COLS.created_at).label("last_seen"),
        )
        .where(where(f), CALL_COLS.cost_usd.is_(None))
        .group_by(group_key(engine, CALL_COLS.model))
        .order_by(func.count().desc(), CALL_COLS.model)
    )
    df = _frame(engine, stmt)
    for col in ("first_seen", "last_seen"):
        df[col] = _to_local(df[col], f.tz)
    return df


def get_call(engine: Engine, call_id: int, viewer: Viewer, tz: str = "UTC") -> dict[str, Any] | None:
    """One call as `viewer` may see it: every stored field for an admin or the caller, metadata for anyone else.

    The text columns (prompt, response, error message, the metadata JSON whole) are read in a second query, only
    for a viewer who may read them, and for a non-admin only where the call is theirs: a manager's query never
    selects another user's text. None if the call does not exist.
    """
    hidden = {*CONTENT_COLUMNS, "metadata"}
    plain = [c for c in CALLS.c if c.name not in hidden]
    meta = [CALLS.c["metadata"][k].label(k) for k in OPERATIONAL_META_KEYS]
    with engine.connect() as conn:
        row = conn.execute(select(*plain, *meta).where(CALL_COLS.id == call_id)).mappings().first()
        if row is None:
            return None
        out = {c.name: row[c.name] for c in plain}
        out["metadata"] = {k: row[k] for k in OPERATIONAL_META_KEYS if row[k] is not None} or None
        if viewer.may_read(out["user"]):
            stmt = select(*(CALLS.c[name] for name in (*CONTENT_COLUMNS, "metadata"))).where(CALL_COLS.id == call_id)
            if not viewer.admin:
                stmt = stmt.where(CALL_COLS.user == viewer.name)
            text_row = conn.execute(stmt).mappings().first()
            if text_row is not None:
                out.update(text_row)
    out["created_at"] = _to_local(pd.Series([out["created_at"]]), tz).iloc[0].isoformat()
    return out


def cost_per_useful_answer(engine: Engine, f: UsageFilter) -> dict[str, Any]:
    """Spend of the period divided by the answers (ok or cached) that got no 👎.

    A 👎 (rating -1 in `feedback`, tied to the call by request_id) disqualifies an answer. While nobody
    has left feedback yet, `feedback_collected` is False and every answer counts.
    """
    feedback = Feedback.__table__
    src = source_for(f, {"status"}, engine)
    answered = src.table.c.status.in_(ANSWER_STATUSES)
    stmt = select(
        src.spend().label("spend"),
        src.count_where(answered).label("answers"),
        src.total("unpriced").label("unpriced"),
    ).where(where(f, src))
    # The disliked answers among them, found from the (few) 👎 rows through the call log's request_id key.
    disliked = select(func.count()).where(
        CALL_COLS.request_id.in_(select(feedback.c.request_id).where(feedback.c.rating < 0)),
        CALL_COLS.status.in_(ANSWER_STATUSES),
        where(f),
    )
    with engine.connect() as conn:
        collected = conn.execute(select(feedback.c.id).limit(1)).first() is not None
        row = dict(conn.execute(stmt).mappings().one())
        row["useful"] = int(row["answers"]) - (int(conn.execute(disliked).scalar() or 0) if collected else 0)
    spend, n = float(row["spend"]), int(row["useful"])
    return {
        "spend": spend,
        "useful_answers": n,
        "answers": int(row["answers"]),
        "unpriced": int(row["unpriced"]),
        "cost_per_useful_answer": spend / n if n else None,
        "feedback_collected": collected,
    }


def daily_spend(engine: Engine, f: UsageFilter) -> pd.DataFrame:
    """Spend per local day (used by the month-end forecast)."""
    src = source_for(f, (), engine, "day")
    b = bucket(engine, f, src, grain="day").label("day")
    stmt = select(b, src.spend().label("spend")).where(where(f, src)).group_by(b).having(src.nonzero()).order_by(b)
    return _frame(engine, stmt)


def what_if(engine: Engine, f: UsageFilter, price: Price) -> pd.DataFrame:
    """Per model: actual spend and the spend had the same tokens been priced at `price`."""
    src = source_for(f, {"model"}, engine)
    cached_rate = price.input if price.cached_input is None else price.cached_input
    cached = src.total("cached_capped")
    repriced = (
        (src.total("input_tokens") - cached) * price.input
        + cached * cached_rate
        + src.total("output_tokens") * price.output
    ) / 1_000_000.0
    stmt = (
        select(
            src.col("model").label("model"),
            src.requests().label("requests"),
            src.spend().label("actual_spend"),
            src.total("unpriced").label("unpriced"),
            repriced.label("what_if_spend"),
        )
        .where(where(f, src))
        .group_by(src.group(engine, "model"))
        .having(src.nonzero())
        .order_by(src.spend().desc())
    )
    df = _frame(engine, stmt)
    df["what_if_spend"] = df["what_if_spend"].astype(float)
    df["difference"] = df["what_if_spend"] - df["actual_spend"]
    return df


def filter_options(engine: Engine, f: UsageFilter) -> dict[str, list]:
    """The distinct values of each filterable column within the filter's time range."""
    bare = usage_filter_range(f)
    out: dict[str, list] = {}
    for dims in (("feature", "model", "provider", "template_name", "template_version", "status"), ("user",)):
        src = source_for(bare, set(dims), engine)
        cols = [src.col(d).label(d) for d in dims]
        stmt = select(*cols).where(where(bare, src)).group_by(*(src.group(engine, d) for d in dims))
        df = _frame(engine, stmt.having(src.nonzero()))
        out.update({d: sorted(int(v) if d == "template_version" else v for v in df[d].dropna().unique()) for d in dims})
    return out


def has_calls(engine: Engine) -> bool:
    """True once the call log holds at least one row."""
    with engine.connect() as conn:
        return conn.execute(select(CALL_COLS.id).limit(1)).first() is not None
