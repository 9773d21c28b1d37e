"""Queries behind the Usage dashboard: every aggregate is computed in SQL; pandas only holds the results."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy import Engine, and_, case, func, inspect, literal_column, select
from sqlalchemy.sql import ColumnElement, Select

from lib.models import LlmCall
from lib.pricing import Price

T = LlmCall.__table__
C = T.c
PRESETS = ("Today", "Last 7 days", "Last 30 days", "This month")
BREAKDOWNS = {"user": (C.user,), "feature": (C.feature,), "model": (C.model,),
              "template version": (C.template_name, C.template_version)}
ANSWER_STATUSES = ("ok", "cached")  # statuses that gave the user an answer
_TZ_NAME = re.compile(r"^[A-Za-z0-9_+\-/]+$")


@dataclass(frozen=True)
class UsageFilter:
    """What the dashboard looks at: a half-open time range [start, end) plus optional column filters.

    Hashable, so Streamlit can cache query results per filter.
    """

    start: datetime  # timezone-aware, inclusive
    end: datetime  # timezone-aware, exclusive
    tz: str = "UTC"  # the viewer's time zone: buckets and the month are local days
    features: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    providers: tuple[str, ...] = ()
    templates: tuple[str, ...] = ()
    template_versions: tuple[int, ...] = ()
    statuses: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("The date range needs timezone-aware datetimes.")
        if self.end <= self.start:
            raise ValueError("The end of the date range must come after its start.")
        if not _TZ_NAME.match(self.tz):
            raise ValueError(f"{self.tz!r} is not a time zone name.")
        ZoneInfo(self.tz)  # raises on an unknown zone

    def previous(self) -> UsageFilter:
        """The same filter over the period of the same length just before this one."""
        length = self.end - self.start
        return replace(self, start=self.start - length, end=self.start)

    def grain(self) -> str:
        """Hourly buckets for ranges up to two days, daily ones beyond."""
        return "hour" if self.end - self.start <= timedelta(days=2) else "day"


def preset_range(preset: str, now: datetime, tz: str) -> tuple[datetime, datetime]:
    """[start, end) of a named preset in the viewer's zone; 'Last N days' ends at the end of today."""
    local = now.astimezone(ZoneInfo(tz))
    today = local.replace(hour=0, minute=0, second=0, microsecond=0)
    tomorrow = _local_midnight(today.date() + timedelta(days=1), tz)
    if preset == "Today":
        return today, tomorrow
    if preset == "Last 7 days":
        return _local_midnight(today.date() - timedelta(days=6), tz), tomorrow
    if preset == "Last 30 days":
        return _local_midnight(today.date() - timedelta(days=29), tz), tomorrow
    if preset == "This month":
        return _local_midnight(today.date().replace(day=1), tz), tomorrow
    raise ValueError(f"Unknown preset {preset!r}; choose one of {PRESETS}.")


def date_range(first: date, last: date, tz: str) -> tuple[datetime, datetime]:
    """[start, end) covering the local days first..last inclusive."""
    return _local_midnight(first, tz), _local_midnight(last + timedelta(days=1), tz)


def _local_midnight(day: date, tz: str) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(tz))


def _utc(dt: datetime) -> datetime:
    # SQLite stores the UTC wall time and drops tzinfo, so every bound value must be UTC.
    return dt.astimezone(UTC)


def where(f: UsageFilter) -> ColumnElement[bool]:
    """The WHERE clause of a filter (time range first, so the created_at indexes apply)."""
    conds = [C.created_at >= _utc(f.start), C.created_at < _utc(f.end)]
    for col, values in ((C.feature, f.features), (C.user, f.users), (C.model, f.models),
                        (C.provider, f.providers), (C.template_name, f.templates),
                        (C.template_version, f.template_versions), (C.status, f.statuses)):
        if values:
            conds.append(col.in_(values))
    return and_(*conds)


def bucket(engine: Engine, f: UsageFilter, grain: str | None = None) -> ColumnElement[str]:
    """The local hour or day of created_at as text ('2026-11-01' or '2026-11-01 14:00'), per dialect.

    PostgreSQL converts each row with the real zone rules, so buckets are exact across DST changes.
    SQLite has no zone database: it shifts by one fixed UTC offset, the zone's offset at the end of
    the range. Across a DST change the days on the other side of it are then cut one hour off local
    midnight (their first or last local hour lands in the neighbouring day); totals are unaffected.
    """
    # Literals, not bound parameters: PostgreSQL only matches a GROUP BY expression to the selected
    # one when both are the same text, and two bound copies of the zone would be $1 and $2.
    hourly = (grain or f.grain()) == "hour"
    if engine.dialect.name == "postgresql":
        local = func.timezone(literal_column(f"'{f.tz}'"), C.created_at)
        fmt = "YYYY-MM-DD HH24:00" if hourly else "YYYY-MM-DD"
        trunc = func.date_trunc(literal_column("'hour'" if hourly else "'day'"), local)
        return func.to_char(trunc, literal_column(f"'{fmt}'"))
    shift = literal_column(f"'{_sqlite_offset_minutes(f):+d} minutes'")
    if hourly:
        return func.strftime(literal_column("'%Y-%m-%d %H:00'"), C.created_at, shift)
    return func.date(C.created_at, shift)  # date() is twice as fast as strftime() per row


def group_key(engine: Engine, col) -> ColumnElement:
    """`col` for GROUP BY. On SQLite as `+col`: the unary plus keeps the planner from walking the
    column's own index (no sort, but every row ever logged: 1.3 s instead of 0.2 s at 1M rows)
    instead of the created_at range."""
    return literal_column(f'+"{col.name}"') if engine.dialect.name == "sqlite" else col


def _spend() -> ColumnElement[float]:
    return func.coalesce(func.sum(C.cost_usd), 0.0)


def _count_if(cond: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((cond, 1), else_=0)), 0)


def _frame(engine: Engine, stmt: Select, columns: list[str] | None = None) -> pd.DataFrame:
    with engine.connect() as conn:
        result = conn.execute(stmt)
        return pd.DataFrame(result.fetchall(), columns=columns or list(result.keys()))


def latency_percentiles(engine: Engine, f: UsageFilter) -> dict[str, float | None]:
    """p50 and p95 latency in ms (nearest rank, as PostgreSQL's percentile_disc); None when no calls."""
    if engine.dialect.name == "postgresql":
        df = _pg_percentiles(engine, f, by_bucket=False)
        p50, p95 = (None, None) if df.empty else (_num(df["p50_ms"].iloc[0]), _num(df["p95_ms"].iloc[0]))
    else:
        with engine.connect() as conn:
            p50, p95 = _sqlite_percentiles(conn, where(f))
    return {"p50_ms": p50, "p95_ms": p95}


def latency_over_time(engine: Engine, f: UsageFilter) -> pd.DataFrame:
    """p50 and p95 latency per local bucket."""
    if engine.dialect.name == "postgresql":
        return _pg_percentiles(engine, f, by_bucket=True)
    rows = []
    with engine.connect() as conn:
        for label, lo, hi in _sqlite_buckets(f):
            # One range per bucket, clipped to the filter: two ranges on created_at would let the
            # planner pick the wide one.
            part = replace(f, start=max(lo, _utc(f.start)), end=min(hi, _utc(f.end)), tz=f.tz)
            p50, p95 = _sqlite_percentiles(conn, where(part))
            if p50 is not None:
                rows.append({"bucket": label, "p50_ms": p50, "p95_ms": p95})
    return pd.DataFrame(rows, columns=["bucket", "p50_ms", "p95_ms"])


def _pg_percentiles(engine: Engine, f: UsageFilter, by_bucket: bool) -> pd.DataFrame:
    b = bucket(engine, f).label("bucket")
    cols = [func.percentile_disc(p).within_group(C.latency_ms).label(n) for p, n in ((0.5, "p50_ms"), (0.95, "p95_ms"))]
    stmt = select(*([b] if by_bucket else []), *cols).where(where(f), C.latency_ms.is_not(None))
    return _frame(engine, stmt.group_by(b).order_by(b) if by_bucket else stmt)


def _sqlite_percentiles(conn, cond: ColumnElement[bool]) -> tuple[float | None, float | None]:
    # SQLite has no percentile function. Window functions (ROW_NUMBER over the range) took ~1 s for 400k
    # rows; counting, then ORDER BY ... LIMIT 1 OFFSET rank-1 is a top-N sort, and for p95 sorting
    # from the top keeps only 5% of the rows in the sorter.
    cond = and_(cond, C.latency_ms.is_not(None))
    n = conn.execute(select(func.count()).select_from(T).where(cond)).scalar() or 0
    if not n:
        return None, None
    out = []
    for pct in (50, 95):
        rank = -(-n * pct // 100)  # ceil(n * p): nearest rank, 1-based
        ascending = rank - 1 <= n - rank
        stmt = (select(C.latency_ms).where(cond)
                .order_by(C.latency_ms if ascending else C.latency_ms.desc())
                .limit(1).offset(rank - 1 if ascending else n - rank))
        out.append(float(conn.execute(stmt).scalar()))
    return out[0], out[1]


def _sqlite_offset_minutes(f: UsageFilter) -> int:
    zone = ZoneInfo(f.tz)
    offset = zone.utcoffset((f.end - timedelta(seconds=1)).astimezone(zone).replace(tzinfo=None))
    return int(offset.total_seconds() // 60) if offset else 0


def _sqlite_buckets(f: UsageFilter) -> list[tuple[str, datetime, datetime]]:
    """(label, utc start, utc end) of each bucket of the range, with the same fixed offset as bucket()."""
    shift = timedelta(minutes=_sqlite_offset_minutes(f))
    step = timedelta(hours=1) if f.grain() == "hour" else timedelta(days=1)
    local = (_utc(f.start) + shift).replace(tzinfo=None)
    local = local.replace(minute=0, second=0, microsecond=0)
    if step == timedelta(days=1):
        local = local.replace(hour=0)
    out, end = [], (_utc(f.end) + shift).replace(tzinfo=None)
    while local < end:
        label = local.strftime("%Y-%m-%d %H:00" if step < timedelta(days=1) else "%Y-%m-%d")
        out.append((label, (local - shift).replace(tzinfo=UTC), (local + step - shift).replace(tzinfo=UTC)))
        local += step
    return out


def _num(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def headline(engine: Engine, f: UsageFilter) -> dict[str, float | int | None]:
    """Totals of one period: spend, requests, tokens, average cost, error and cache-hit rates, latency."""
    stmt = select(
        func.count().label("requests"), _spend().label("spend"),
        _count_if(C.cost_usd.is_(None)).label("unpriced"),
        func.coalesce(func.sum(C.prompt_tokens), 0).label("input_tokens"),
        func.coalesce(func.sum(C.completion_tokens), 0).label("output_tokens"),
        func.coalesce(func.sum(C.cached_tokens), 0).label("cached_tokens"),
        _count_if(C.status == "error").label("errors"),
        _count_if(C.status == "cached").label("cache_hits"),
    ).where(where(f))
    with engine.connect() as conn:
        row = dict(conn.execute(stmt).mappings().one())
    requests, priced = int(row["requests"]), int(row["requests"]) - int(row["unpriced"])
    out: dict[str, float | int | None] = {k: int(v) for k, v in row.items() if k != "spend"}
    out["spend"] = float(row["spend"])
    # Average over priced calls only: an unpriced call is unknown, not free.
    out["avg_cost"] = out["spend"] / priced if priced else None
    out["error_rate"] = row["errors"] / requests if requests else None
    out["cache_hit_rate"] = row["cache_hits"] / requests if requests else None
    out.update(latency_percentiles(engine, f))
    return out


HEADLINE_METRICS = (("spend", "Spend"), ("requests", "Requests"), ("input_tokens", "Input tokens"),
                    ("output_tokens", "Output tokens"), ("avg_cost", "Avg cost / request"),
                    ("error_rate", "Error rate"), ("p50_ms", "p50 latency"), ("p95_ms", "p95 latency"),
                    ("cache_hit_rate", "Cache hit rate"))


def compare_headlines(current: dict, previous: dict) -> list[dict[str, Any]]:
    """Each headline metric with its previous value and relative change (None when not comparable)."""
    rows = []
    for key, label in HEADLINE_METRICS:
        now, before = current.get(key), previous.get(key)
        change = (now - before) / before if now is not None and before else None
        rows.append({"metric": key, "label": label, "value": now, "previous": before, "change": change})
    return rows


def spend_over_time(engine: Engine, f: UsageFilter, by: str = "model") -> pd.DataFrame:
    """Spend, requests and unpriced calls per local bucket and model (or feature)."""
    key = {"model": C.model, "feature": C.feature}[by]
    b = bucket(engine, f).label("bucket")
    stmt = (select(b, key.label(by), _spend().label("spend"), func.count().label("requests"),
                   _count_if(C.cost_usd.is_(None)).label("unpriced"))
            .where(where(f)).group_by(b, group_key(engine, key)).order_by(b, key))
    return _frame(engine, stmt)


def tokens_over_time(engine: Engine, f: UsageFilter) -> pd.DataFrame:
    """Input, cached input and output tokens per local bucket."""
    b = bucket(engine, f).label("bucket")
    stmt = (select(b, func.sum(C.prompt_tokens).label("input_tokens"),
                   func.sum(C.cached_tokens).label("cached_tokens"),
                   func.sum(C.completion_tokens).label("output_tokens"))
            .where(where(f)).group_by(b).order_by(b))
    return _frame(engine, stmt)


def errors_over_time(engine: Engine, f: UsageFilter) -> pd.DataFrame:
    """Failed calls (status error) per local bucket and error type."""
    b = bucket(engine, f).label("bucket")
    etype = func.coalesce(C.error_type, "unknown").label("error_type")
    stmt = (select(b, etype, func.count().label("errors"))
            .where(where(f), C.status == "error").group_by(b, etype).order_by(b, etype))
    return _frame(engine, stmt)


def breakdown_statement(engine: Engine, f: UsageFilter, by: str) -> Select:
    """The SQL behind breakdown() (exposed so its query plan can be checked)."""
    keys = BREAKDOWNS[by]
    return (select(*(k.label(k.name) for k in keys), _spend().label("spend"), func.count().label("requests"),
                   _count_if(C.cost_usd.is_(None)).label("unpriced"),
                   func.sum(C.prompt_tokens).label("input_tokens"),
                   func.sum(C.completion_tokens).label("output_tokens"))
            .where(where(f)).group_by(*(group_key(engine, k) for k in keys))
            .order_by(_spend().desc(), func.count().desc()))


def breakdown(engine: Engine, f: UsageFilter, by: str) -> pd.DataFrame:
    """Spend, requests, unpriced calls, tokens and shares per user, feature, model or template version."""
    df = _frame(engine, breakdown_statement(engine, f, by))
    total_spend, total_requests = df["spend"].sum(), df["requests"].sum()
    df["spend_share"] = df["spend"] / total_spend if total_spend else 0.0
    df["request_share"] = df["requests"] / total_requests if total_requests else 0.0
    return df


def top_calls(engine: Engine, f: UsageFilter, limit: int = 20) -> pd.DataFrame:
    """The most expensive priced calls of the period, most expensive first."""
    stmt = (select(C.id, C.created_at, C.user, C.feature, C.model, C.template_name, C.template_version,
                   C.prompt_tokens, C.completion_tokens, C.cached_tokens, C.cost_usd, C.latency_ms, C.status)
            .where(where(f), C.cost_usd.is_not(None)).order_by(C.cost_usd.desc(), C.id).limit(limit))
    return _localize(_frame(engine, stmt), f.tz)


def unpriced_calls(engine: Engine, f: UsageFilter) -> pd.DataFrame:
    """Calls with no known price, per model: counted and listed, never shown as $0."""
    stmt = (select(C.model, func.count().label("calls"), func.sum(C.prompt_tokens).label("input_tokens"),
                   func.sum(C.completion_tokens).label("output_tokens"),
                   func.min(C.created_at).label("first_seen"), func.max(C.created_at).label("last_seen"))
            .where(where(f), C.cost_usd.is_(None)).group_by(group_key(engine, C.model)).order_by(func.count().desc(), C.model))
    df = _frame(engine, stmt)
    for col in ("first_seen", "last_seen"):
        df[col] = _to_local(df[col], f.tz)
    return df


def get_call(engine: Engine, call_id: int, tz: str = "UTC") -> dict[str, Any] | None:
    """Every stored field of one call (prompt and response where they were logged); None if absent."""
    with engine.connect() as conn:
        row = conn.execute(select(T).where(C.id == call_id)).mappings().first()
    if row is None:
        return None
    out = dict(row)
    out["created_at"] = _to_local(pd.Series([out["created_at"]]), tz).iloc[0].isoformat()
    return out


def _to_local(series: pd.Series, tz: str) -> pd.Series:
    # SQLite hands back naive UTC datetimes, PostgreSQL aware ones: both become the viewer's zone.
    return pd.to_datetime(series, utc=True).dt.tz_convert(tz)


def _localize(df: pd.DataFrame, tz: str) -> pd.DataFrame:
    if "created_at" in df:
        df["created_at"] = _to_local(df["created_at"], tz)
    return df


def cost_per_useful_answer(engine: Engine, f: UsageFilter) -> dict[str, Any]:
    """Spend of the period divided by the answers (ok or cached) that got no 👎.

    With a `feedback` table (request_id, rating), a rating below zero or 'down'/'👎' disqualifies
    an answer. Without one every answer counts and `feedback_collected` is False.
    """
    answered = and_(where(f), C.status.in_(ANSWER_STATUSES))
    feedback = _feedback_table(engine)
    if feedback is None:
        useful = _count_if(answered)
    else:
        down = _thumbs_down(feedback)
        disliked = select(feedback.c.request_id).where(down, feedback.c.request_id == C.request_id).exists()
        useful = _count_if(and_(C.status.in_(ANSWER_STATUSES), ~disliked))
    stmt = select(_spend().label("spend"), useful.label("useful"), _count_if(answered).label("answers"),
                  _count_if(C.cost_usd.is_(None)).label("unpriced")).where(where(f))
    with engine.connect() as conn:
        row = conn.execute(stmt).mappings().one()
    spend, n = float(row["spend"]), int(row["useful"])
    return {"spend": spend, "useful_answers": n, "answers": int(row["answers"]), "unpriced": int(row["unpriced"]),
            "cost_per_useful_answer": spend / n if n else None, "feedback_collected": feedback is not None}


def _feedback_table(engine: Engine):
    from sqlalchemy import MetaData, Table

    if not inspect(engine).has_table("feedback"):
        return None
    table = Table("feedback", MetaData(), autoload_with=engine)
    return table if {"request_id", "rating"} <= set(table.c.keys()) else None


def _thumbs_down(feedback) -> ColumnElement[bool]:
    rating = feedback.c.rating
    if rating.type.python_type in (int, float):
        return rating < 0
    return rating.in_(("down", "👎", "-1", "thumbs_down"))


def daily_spend(engine: Engine, f: UsageFilter) -> pd.DataFrame:
    """Spend per local day (used by the month-end forecast)."""
    b = bucket(engine, f, grain="day").label("day")
    stmt = select(b, _spend().label("spend")).where(where(f)).group_by(b).order_by(b)
    return _frame(engine, stmt)


def what_if(engine: Engine, f: UsageFilter, price: Price) -> pd.DataFrame:
    """Per model: actual spend and the spend had the same tokens been priced at `price`."""
    cached = case((C.cached_tokens < C.prompt_tokens, C.cached_tokens), else_=C.prompt_tokens)
    cached_rate = price.input if price.cached_input is None else price.cached_input
    repriced = ((C.prompt_tokens - cached) * price.input + cached * cached_rate
                + C.completion_tokens * price.output) / 1_000_000.0
    stmt = (select(C.model, func.count().label("requests"), _spend().label("actual_spend"),
                   _count_if(C.cost_usd.is_(None)).label("unpriced"),
                   func.coalesce(func.sum(repriced), 0.0).label("what_if_spend"))
            .where(where(f)).group_by(group_key(engine, C.model)).order_by(_spend().desc()))
    df = _frame(engine, stmt)
    df["difference"] = df["what_if_spend"] - df["actual_spend"]
    return df


def filter_options(engine: Engine, f: UsageFilter) -> dict[str, list]:
    """The distinct values of each filterable column within the filter's time range."""
    cols = (C.feature, C.user, C.model, C.provider, C.template_name, C.template_version, C.status)
    stmt = (select(*cols).where(C.created_at >= _utc(f.start), C.created_at < _utc(f.end))
            .group_by(*(group_key(engine, c) for c in cols)))
    df = _frame(engine, stmt)
    return {c.name: sorted(v for v in df[c.name].dropna().unique()) for c in cols}


def has_calls(engine: Engine) -> bool:
    """True once the call log holds at least one row."""
    with engine.connect() as conn:
        return conn.execute(select(C.id).limit(1)).first() is not None
