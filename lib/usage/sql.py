"""The SQL building blocks of the Usage queries: the filter, where its rows come from (the call log, an hourly
rollup, or a daily rollup with hourly corrections), local-time buckets per dialect, and exact percentiles."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import (
    BigInteger,
    DateTime,
    Engine,
    Float,
    Integer,
    String,
    and_,
    bindparam,
    case,
    cast,
    column,
    func,
    literal_column,
    select,
    text,
    true,
    union_all,
    values,
)
from sqlalchemy.sql import ColumnElement

from lib.core.rollups import DAILY, LATENCY_ROLLUPS, MEASURES, NULL_SENTINEL, ROLLUPS, bin_of, bin_range, rollup_tables
from lib.core.tables import LlmCall

CALLS = LlmCall.__table__  # the call log, as a Core table
CALL_COLS = CALLS.c  # its columns
PRESETS = ("Today", "Last 7 days", "Last 30 days", "This month")
_TZ_NAME = re.compile(r"^[A-Za-z0-9_+\-/]+$")
FILTER_DIMS = {
    "features": "feature",
    "users": "user",
    "models": "model",
    "providers": "provider",
    "templates": "template_name",
    "template_versions": "template_version",
    "statuses": "status",
}
ROLLUP_TABLES = rollup_tables()
USE_ROLLUPS = True  # tests turn this off to check that rollups and the call log give the same answers


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
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"{self.tz!r} is not a known time zone.") from exc

    def previous(self) -> UsageFilter:
        """The same filter over the period of the same length just before this one."""
        length = self.end - self.start
        return replace(self, start=self.start - length, end=self.start)

    def grain(self) -> str:
        """Hourly buckets for ranges up to two days, daily ones beyond."""
        return "hour" if self.end - self.start <= timedelta(days=2) else "day"


def usage_filter_range(f: UsageFilter) -> UsageFilter:
    """The same range and zone with no column filter."""
    return UsageFilter(f.start, f.end, tz=f.tz)


def viewer_zone(name: str | None) -> str:
    """The browser's time zone name when it is one this server knows, else "UTC": the browser can send anything."""
    if not name or len(name) > 64 or not _TZ_NAME.match(name):
        return "UTC"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):  # unknown, or a path such as ../x that ZoneInfo refuses
        return "UTC"
    return name


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


class RowSource:
    """Where a query reads: the call log itself, or an hourly rollup holding the dimensions it needs.

    Measures are written once per source, so every query reads the same on both.
    """

    def __init__(self, table, rollup: bool, filtered: bool = False) -> None:
        self.table, self.rollup = table, rollup
        self.time = (table.c.hour if "hour" in table.c else table.c.day) if rollup else CALL_COLS.created_at
        self.filtered = filtered  # rows already limited to the filter (a daily rollup with hourly corrections)

    def col(self, name: str) -> ColumnElement:
        """A dimension, NULL where the call had none."""
        column = self.table.c[name]
        if self.rollup and name in NULL_SENTINEL:
            return func.nullif(column, literal_column(NULL_SENTINEL[name]))
        return column

    def group(self, engine: Engine, name: str) -> ColumnElement:
        """A dimension for GROUP BY (see group_key for the raw call log on SQLite)."""
        return self.col(name) if self.rollup else group_key(engine, self.table.c[name])

    def requests(self) -> ColumnElement[int]:
        return cast(func.coalesce(func.sum(self.table.c.requests), 0), BigInteger) if self.rollup else func.count()

    def nonzero(self) -> ColumnElement[bool]:
        """HAVING of a grouped query: drops groups whose signed rows cancel out (daily rollup corrections)."""
        return self.requests() != 0 if self.filtered else true()

    def count_where(self, cond: ColumnElement[bool]) -> ColumnElement[int]:
        one = self.table.c.requests if self.rollup else 1
        return cast(func.coalesce(func.sum(case((cond, one), else_=0)), 0), BigInteger)

    def spend(self) -> ColumnElement[float]:
        return cast(func.coalesce(func.sum(self.table.c.spend if self.rollup else CALL_COLS.cost_usd), 0.0), Float)

    def saved(self) -> ColumnElement[float]:
        """What the cache hits among the rows would have cost (sum it under status = 'cached')."""
        return cast(func.coalesce(func.sum(self.table.c.saved if self.rollup else CALL_COLS.saved_usd), 0.0), Float)

    def total(self, measure: str) -> ColumnElement[int]:
        """Sum of a rollup measure: unpriced, input_tokens, output_tokens, cached_tokens, cached_capped."""
        if self.rollup:
            value = self.table.c[measure]
        else:
            value = {
                "unpriced": case((CALL_COLS.cost_usd.is_(None), 1), else_=0),
                "input_tokens": CALL_COLS.prompt_tokens,
                "output_tokens": CALL_COLS.completion_tokens,
                "cached_tokens": CALL_COLS.cached_tokens,
                "cached_capped": case(
                    (CALL_COLS.cached_tokens < CALL_COLS.prompt_tokens, CALL_COLS.cached_tokens),
                    else_=CALL_COLS.prompt_tokens,
                ),
            }[measure]
        return cast(func.coalesce(func.sum(value), 0), BigInteger)


RAW = RowSource(CALLS, rollup=False)


def on_whole_hours(f: UsageFilter) -> bool:
    """True when the range and its local buckets fall on whole UTC hours, as the rollups do."""
    return _sqlite_offset_minutes(f) % 60 == 0 and all(
        _utc(t).minute == 0 and _utc(t).second == 0 and _utc(t).microsecond == 0 for t in (f.start, f.end)
    )


def source_for(
    f: UsageFilter, dims: Iterable[str] = (), engine: Engine | None = None, buckets: str | None = None
) -> RowSource:
    """The smallest source that answers: a rollup when it holds every filtered and grouped dimension and
    the range falls on whole UTC hours (zones with half-hour offsets read the call log). Given the engine, a
    range holding whole UTC days reads them from the daily rollup (see daily_source): totals, or local-day
    `buckets` ("day"; "hour" buckets read the hourly rollup)."""
    needed = {FILTER_DIMS[k] for k in FILTER_DIMS if getattr(f, k)} | set(dims)
    if USE_ROLLUPS and on_whole_hours(f):
        for name, rollup_dims in ROLLUPS.items():
            if needed <= set(rollup_dims):
                if engine is not None and buckets != "hour":
                    daily = daily_source(engine, f, name, needed, list(MEASURES), buckets)
                    if daily is not None:
                        return daily
                return RowSource(ROLLUP_TABLES[name], rollup=True)
    return RAW


def hour_label(dialect: str, f: UsageFilter, grain: str | None) -> Callable[[datetime], str]:
    """The local bucket label of a UTC hour, as bucket() computes it on `dialect` ("" for no buckets)."""
    if grain is None:
        return lambda hour: ""
    fmt = "%Y-%m-%d %H:00" if grain == "hour" else "%Y-%m-%d"
    if dialect == "postgresql":
        zone = ZoneInfo(f.tz)
        return lambda hour: hour.astimezone(zone).strftime(fmt)
    shift = timedelta(minutes=_sqlite_offset_minutes(f))
    return lambda hour: (hour + shift).strftime(fmt)


def split_days(
    f: UsageFilter, label: Callable[[datetime], str]
) -> tuple[list[tuple[datetime, str, int]], list[tuple[datetime, str, int]]] | None:
    """The range as (UTC day, label, +1) rows of a daily rollup and (UTC hour, label, +1 or -1) rows of an hourly
    one, whose signed sums per label equal the hourly rollup's sums per label(hour) over the range; None when the
    range holds no whole UTC day. A whole day counts under the label of its noon; each of its hours labelled
    otherwise (a local day starts an hour or more off UTC midnight) moves: -1 under the day's label, +1 under its
    own. Hours of the range outside whole days count under their own label."""
    start, end, day, hour = _utc(f.start), _utc(f.end), timedelta(days=1), timedelta(hours=1)
    first = start.replace(hour=0, minute=0, second=0, microsecond=0)
    first = first if first == start else first + day
    last = end.replace(hour=0, minute=0, second=0, microsecond=0)
    if first >= last:
        return None
    days, hours = [], []
    d = first
    while d < last:
        own = label(d + 12 * hour)
        days.append((d, own, 1))
        for h in (d + i * hour for i in range(24)):
            if (lab := label(h)) != own:
                hours += [(h, lab, 1), (h, own, -1)]
        d += day
    edges = [start + i * hour for i in range(int((first - start) / hour))]
    edges += [last + i * hour for i in range(int((end - last) / hour))]
    hours += [(h, label(h), 1) for h in edges]
    return days, hours


def daily_source(
    engine: Engine, f: UsageFilter, hourly: str, dims: Iterable[str], measures: list[str], buckets: str | None
) -> RowSource | None:
    """Rows of hourly rollup `hourly` over the range and filter of `f`, read from its daily twin for the range's
    whole UTC days and from the hourly rollup for the rest (see split_days), with a `bucket` column (the local
    day, or "" for totals) and every measure signed; None when the range holds no whole UTC day.

    The days and hours come in as a VALUES list joined on the rollups' leading time column."""
    split = split_days(f, hour_label(engine.dialect.name, f, buckets))
    if split is None:
        return None
    parts = []
    for i, (name, rows) in enumerate(((DAILY[hourly], split[0]), (hourly, split[1]))):
        if not rows:
            continue
        table = ROLLUP_TABLES[name]
        t = table.c.day if i == 0 else table.c.hour
        v = (
            values(column("t", DateTime(timezone=True)), column("b", String), column("s", Integer), name=f"span{i}")
            .data(rows)
            .cte(f"span{i}")
        )  # a CTE: SQLite has no column list on a VALUES alias
        cols = [
            v.c.b.label("bucket"),
            t.label("hour"),
            *(table.c[d] for d in sorted(set(dims))),
            *((table.c[m] if i == 0 else table.c[m] * v.c.s).label(m) for m in measures),
        ]
        raw = RowSource(table, rollup=True)
        # The times again as an IN list: PostgreSQL then reads them through the rollup's unique index (time first)
        # instead of hashing the VALUES and scanning the whole rollup.
        times = sorted({row[0] for row in rows})
        parts.append(select(*cols).select_from(table.join(v, t == v.c.t)).where(t.in_(times), _dim_conds(f, raw)))
    rows_sq = (union_all(*parts) if len(parts) > 1 else parts[0]).subquery("spans")
    return RowSource(rows_sq, rollup=True, filtered=True)


def _dim_conds(f: UsageFilter, src: RowSource) -> ColumnElement[bool]:
    conds = []
    for key, dim in FILTER_DIMS.items():
        if getattr(f, key):
            col = src.table.c[dim]
            if not src.rollup:
                # `col || ''` (or `+ 0`) changes nothing but hides the column's own index: without
                # statistics SQLite prefers `feature = 'chat'` on ix_llm_calls_feature (every chat
                # call ever logged, row by row) over the created_at range on the covering index.
                col = col + 0 if dim == "template_version" else col.concat("")
            conds.append(col.in_(getattr(f, key)))
    return and_(true(), *conds)


def where(f: UsageFilter, src: RowSource = RAW) -> ColumnElement[bool]:
    """The WHERE clause of a filter on a source (time range first, so the time indexes apply)."""
    if src.filtered:
        return true()
    return and_(src.time >= _utc(f.start), src.time < _utc(f.end), _dim_conds(f, src))


def group_key(engine: Engine, col) -> ColumnElement:
    """`col` for GROUP BY on the call log. On SQLite as `+col`: the unary plus keeps the planner from
    walking the column's own index (no sort, but every row ever logged: 1.3 s instead of 0.2 s at 1M
    rows) instead of the created_at range."""
    return literal_column(f'+"{col.name}"') if engine.dialect.name == "sqlite" else col


def bucket(engine: Engine, f: UsageFilter, src: RowSource = RAW, grain: str | None = None) -> ColumnElement[str]:
    """The local hour or day of a row as text ('2026-11-01' or '2026-11-01 14:00'), per dialect.

    PostgreSQL converts each row with the real zone rules, so buckets are exact across DST changes.
    SQLite has no zone database: it shifts by one fixed UTC offset, the zone's offset at the end of
    the range. Across a DST change the days on the other side of it are then cut one hour off local
    midnight (their first or last local hour lands in the neighbouring day); totals are unaffected.
    """
    if "bucket" in src.table.c:  # labelled by daily_source
        return src.table.c.bucket
    # Literals, not bound parameters: PostgreSQL only matches a GROUP BY expression to the selected
    # one when both are the same text, and two bound copies of the zone would be $1 and $2.
    hourly = (grain or f.grain()) == "hour"
    if engine.dialect.name == "postgresql":
        local = func.timezone(literal_column(f"'{f.tz}'"), src.time)
        fmt = "YYYY-MM-DD HH24:00" if hourly else "YYYY-MM-DD"
        trunc = func.date_trunc(literal_column("'hour'" if hourly else "'day'"), local)
        return func.to_char(trunc, literal_column(f"'{fmt}'"))
    shift: ColumnElement[str] = literal_column(f"'{_sqlite_offset_minutes(f):+d} minutes'")
    if hourly:
        return func.strftime(literal_column("'%Y-%m-%d %H:00'"), src.time, shift)
    return func.date(src.time, shift)  # date() is twice as fast as strftime() per row


def _sqlite_offset_minutes(f: UsageFilter) -> int:
    zone = ZoneInfo(f.tz)
    offset = zone.utcoffset((f.end - timedelta(seconds=1)).astimezone(zone).replace(tzinfo=None))
    return int(offset.total_seconds() // 60) if offset else 0


def sqlite_buckets(f: UsageFilter) -> list[tuple[str, UsageFilter]]:
    """(label, filter clipped to the bucket) for each bucket of the range, with bucket()'s fixed offset."""
    shift = timedelta(minutes=_sqlite_offset_minutes(f))
    step = timedelta(hours=1) if f.grain() == "hour" else timedelta(days=1)
    local = (_utc(f.start) + shift).replace(tzinfo=None, minute=0, second=0, microsecond=0)
    if step == timedelta(days=1):
        local = local.replace(hour=0)
    out, end = [], (_utc(f.end) + shift).replace(tzinfo=None)
    while local < end:
        label = local.strftime("%Y-%m-%d %H:00" if step < timedelta(days=1) else "%Y-%m-%d")
        lo, hi = (local - shift).replace(tzinfo=UTC), (local + step - shift).replace(tzinfo=UTC)
        out.append((label, replace(f, start=max(lo, _utc(f.start)), end=min(hi, _utc(f.end)))))
        local += step
    return out


# Nearest-rank latency on SQLite for a bare time range, read through one of two narrow indexes:
# "walk" goes through ix_llm_calls_latency in latency order and skips rows outside the range (no
# sort: best for a long range, where most rows are in it); "sort" reads the range from
# ix_llm_calls_created_latency and sorts it (best for one day of 90: half the time of the wide index).
_BARE = {
    "walk": "SELECT latency_ms FROM llm_calls INDEXED BY ix_llm_calls_latency WHERE latency_ms IS NOT NULL "
    "AND created_at >= :lo AND created_at < :hi ORDER BY latency_ms {order} LIMIT 1 OFFSET :k",
    "sort": "SELECT latency_ms FROM llm_calls INDEXED BY ix_llm_calls_created_latency WHERE created_at >= :lo "
    "AND created_at < :hi AND latency_ms IS NOT NULL ORDER BY latency_ms {order} LIMIT 1 OFFSET :k",
}


def is_bare(f: UsageFilter) -> bool:
    """True when the filter is a time range and nothing else."""
    return not any(getattr(f, k) for k in FILTER_DIMS)


def sqlite_percentiles(
    conn, f: UsageFilter, n: int | None = None, path: str = "sort"
) -> tuple[float | None, float | None]:
    """p50 and p95 (nearest rank, as percentile_disc) of latency in `f`, on SQLite, which has none.

    ROW_NUMBER() over ~400k rows took ~1 s; this counts (or takes `n` from a rollup) and then asks for
    the row at rank ceil(n*p) with ORDER BY ... LIMIT 1 OFFSET, from whichever end is nearer (p95 from
    the top keeps 5% of the rows in the sorter). `path` ("walk", "sort" or "auto") picks the narrow
    index for a bare range (see _BARE); a filtered range reads the wide covering index.
    """
    cond = and_(where(f), CALL_COLS.latency_ms.is_not(None))
    if n is None:
        n = conn.execute(select_count(cond)).scalar() or 0
    if not n:
        return None, None
    if path == "auto":  # walking pays when the range holds a good share of all rows ever logged
        total = conn.execute(select(func.max(CALL_COLS.id))).scalar() or 0
        path = "walk" if n * 10 >= total else "sort"
    out = []
    for pct in (50, 95):
        rank = -(-n * pct // 100)  # ceil(n * p), 1-based
        ascending = rank - 1 <= n - rank
        offset = rank - 1 if ascending else n - rank
        if is_bare(f):
            sql = _BARE[path].format(order="ASC" if ascending else "DESC")
            walk = text(sql).bindparams(bindparam("lo", type_=DateTime()), bindparam("hi", type_=DateTime()))
            value = conn.execute(walk, {"lo": _utc(f.start), "hi": _utc(f.end), "k": offset}).scalar()
        else:
            stmt = (
                select(CALL_COLS.latency_ms)
                .where(cond)
                .order_by(CALL_COLS.latency_ms if ascending else CALL_COLS.latency_ms.desc())
                .limit(1)
                .offset(offset)
            )
            value = conn.execute(stmt).scalar()
        out.append(None if value is None else float(value))
    return out[0], out[1]


def select_count(cond: ColumnElement[bool]):
    """SELECT count(*) FROM llm_calls WHERE cond."""
    return select(func.count()).select_from(CALLS).where(cond)


def latency_source(f: UsageFilter) -> str | None:
    """The latency histogram that holds every dimension `f` filters on, when the range falls on whole hours."""
    needed = {FILTER_DIMS[k] for k in FILTER_DIMS if getattr(f, k)}
    if USE_ROLLUPS and on_whole_hours(f):
        for name, dims in LATENCY_ROLLUPS.items():
            if needed <= set(dims):
                return name
    return None


def reported_latency(value: float | None) -> float | None:
    """What the dashboard shows for an exact latency percentile: the low edge of its histogram bin, i.e. the
    whole milliseconds cut to two significant digits (4789.5 ms shows as 4700, 5.7 as 5, under 1 ms as 0).

    The histograms count calls per latency bin, so a percentile read from them is exact to its bin; the
    call-log path shows the same edge, so both paths show the same figure.
    """
    return None if value is None else bin_edge(bin_of(value))


def bin_edge(b: int) -> float:
    """The figure shown for a percentile in bin `b` (its low edge; 0 for the bin under 1 ms)."""
    return max(bin_range(b)[0], 0.0)


def histogram_percentiles(engine: Engine, f: UsageFilter, by_bucket: bool) -> dict[str, tuple[float, float]] | None:
    """p50/p95 (nearest rank, cut to its bin: see reported_latency) per local bucket, or for the whole range
    under key 'all', from the latency histograms; None when no histogram applies (then the caller reads the call
    log)."""
    name = latency_source(f)
    if name is None:
        return None
    grain = f.grain() if by_bucket else None
    needed = {FILTER_DIMS[k] for k in FILTER_DIMS if getattr(f, k)} | {"bin"}
    daily = daily_source(engine, f, name, needed, ["n"], grain) if grain != "hour" else None
    src = daily or RowSource(ROLLUP_TABLES[name], rollup=True)
    b = src.table.c.bin
    keys: list[ColumnElement] = []
    stmt = select(b, cast(func.sum(src.table.c.n), BigInteger)).where(where(f, src))
    if by_bucket and daily is None and engine.dialect.name == "postgresql":
        # The histogram has many rows per hour: label each of the range's hours once (zone rules in Python, as
        # PostgreSQL applies them) and join, instead of converting every row's hour to local time.
        labels = hour_buckets(f)
        hb = values(column("h", DateTime(timezone=True)), column("b", String), name="hb").data(labels)
        keys = [hb.c.b.label("bucket")]
        stmt = stmt.join_from(src.table, hb, hb.c.h == src.table.c.hour)
    elif by_bucket:
        keys = [bucket(engine, f, src).label("bucket")]
    stmt = stmt.add_columns(*keys).group_by(*keys, b).order_by(*keys, b)
    bins: dict[str, list[tuple[int, int]]] = {}
    with engine.connect() as conn:
        for row in conn.execute(stmt):
            key = str(row[2]) if by_bucket else "all"
            bins.setdefault(key, []).append((int(row[0]), int(row[1])))
    out = {}
    for key, signed in bins.items():
        counts = [(b, n) for b, n in signed if n]  # a daily rollup's corrections can leave bins, or buckets, at 0
        if not counts:
            continue
        total = sum(n for _, n in counts)
        p50, p95 = (bin_edge(_bin_holding(counts, -(-total * pct // 100))) for pct in (50, 95))
        out[key] = (p50, p95)
    return out


def hour_buckets(f: UsageFilter) -> list[tuple[datetime, str]]:
    """(UTC hour, its local bucket label) for each hour of the range, with the zone's real rules."""
    zone, step = ZoneInfo(f.tz), timedelta(hours=1)
    fmt = "%Y-%m-%d %H:00" if f.grain() == "hour" else "%Y-%m-%d"
    out, hour = [], _utc(f.start).replace(minute=0, second=0, microsecond=0)
    while hour < _utc(f.end):
        out.append((hour, hour.astimezone(zone).strftime(fmt)))
        hour += step
    return out


def _bin_holding(counts: list[tuple[int, int]], rank: int) -> int:
    """The bin holding the 1-based `rank` in sorted order, from (bin, count) pairs in bin order."""
    before = 0
    for b, n in counts:
        before += n
        if before >= rank:
            return b
    return counts[-1][0]  # not reached: rank <= the sum of the counts
