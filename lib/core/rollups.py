"""Hourly rollups of the call log, kept current by database triggers, so every figure of the Usage dashboard,
under any filter it offers, is read from aggregates instead of the call log.

- llm_usage_hourly: sums per UTC hour and (feature, model, provider, status, template, template version,
  error type, pipeline name, pipeline version, step): every filter but the user, and every breakdown but by user.
- llm_usage_user_dims_hourly: the same sums per hour, user and the same dimensions, for a user filter or the
  breakdown by user of a filtered page (kept apart so the main rollup stays small);
  llm_usage_user_hourly: per hour and user only, for the breakdown by user of an unfiltered page.
- llm_latency_hourly, llm_latency_dims_hourly, llm_latency_user_dims_hourly: call counts per hour and latency
  bin, and no other dimension, the filter dimensions, or those and the user (histograms: a query reads the
  smallest that holds its filter), so p50/p95 of any filter are read from counts. A bin is two significant
  digits of the whole milliseconds (bin 347 = 4700-4799 ms, bin 150 = 5-5.99 ms, bin 0 = under 1 ms): a
  percentile is exact to its bin (1-10% wide) and shown as the bin's low edge, i.e. cut to two significant
  digits; see bin_range().

Each hourly rollup has a daily twin (DAILY: llm_usage_daily, ..., per UTC day, same dimensions and measures), kept
equal to the GROUP BY day of the hourly one by triggers on the hourly table (insert adds, update adds the
difference, delete subtracts; a daily row left with no calls is deleted), so whatever changes the hourly rows
(call inserts, retention's rebuild of its hours) changes the daily rows too. A range of local days reads its whole
UTC days from the daily table and only the hours at its edges (and the hours a local day borrows from its
neighbouring UTC day) from the hourly one (lib/usage/sql.py).

NULL dimensions are stored as '' (or -1 for integer ones) because both SQLite and PostgreSQL treat NULLs as
distinct in the unique key the upsert needs. The call log is append-only; deleting or editing call rows would
leave the rollups stale (a retention job must delete from both, or rebuild with `backfill_sql`). Bulk loads
drop the triggers, insert, and rebuild the rollups in one GROUP BY each (`bulk_load`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Connection, Table

FILTER_DIMS = ("feature", "model", "provider", "status", "template_name", "template_version")
PIPELINE_DIMS = ("pipeline_name", "pipeline_version", "step")
# A query reads the first rollup (smallest first) holding every dimension it filters or groups on.
ROLLUPS = {  # usage rollups: name -> dimensions (each has every measure of MEASURES)
    "llm_usage_hourly": (*FILTER_DIMS, "error_type", *PIPELINE_DIMS),
    "llm_usage_user_hourly": ("user",),  # the breakdown by user of an unfiltered page
    "llm_usage_user_dims_hourly": ("user", *FILTER_DIMS, "error_type", *PIPELINE_DIMS),
}
LATENCY_ROLLUP = "llm_latency_hourly"
LATENCY_ROLLUPS = {  # latency histograms: name -> dimensions (plus the latency bin, with a count n)
    LATENCY_ROLLUP: (),  # an unfiltered page
    "llm_latency_dims_hourly": FILTER_DIMS,
    "llm_latency_user_dims_hourly": ("user", *FILTER_DIMS),
}
DAILY = {name: name.replace("_hourly", "_daily") for name in (*ROLLUPS, *LATENCY_ROLLUPS)}  # hourly -> daily twin
USER_KEYED = ("llm_usage_user_dims_hourly", "llm_latency_user_dims_hourly")  # indexed by (user, hour) too
INT_DIMS = ("template_version", "pipeline_version")
NULL_SENTINEL = {
    "template_name": "''",
    "template_version": "-1",
    "error_type": "''",
    "user": "''",
    "pipeline_name": "''",
    "pipeline_version": "-1",
    "step": "''",
}
# measure -> (SQL of one new row, in terms of a row alias), summed on conflict
MEASURES = {
    "requests": "1",
    "unpriced": "CASE WHEN {r}.cost_usd IS NULL THEN 1 ELSE 0 END",
    "spend": "COALESCE({r}.cost_usd, 0)",
    "saved": "COALESCE({r}.saved_usd, 0)",  # what cache hits would have cost
    "input_tokens": "{r}.prompt_tokens",
    "output_tokens": "{r}.completion_tokens",
    "cached_tokens": "{r}.cached_tokens",
    # cached tokens are part of the prompt; capped so a bad row cannot price more cached than prompt
    "cached_capped": "CASE WHEN {r}.cached_tokens < {r}.prompt_tokens THEN {r}.cached_tokens ELSE {r}.prompt_tokens END",
    "latency_count": "CASE WHEN {r}.latency_ms IS NULL THEN 0 ELSE 1 END",
}
FLOAT_MEASURES = ("spend", "saved")


def latency_bin_sql(r: str, dialect: str = "sqlite") -> str:
    """SQL of the latency bin of row alias `r`: 100 x digit count + the first two digits of the whole ms."""
    whole = (
        f"CAST(CAST(floor({r}.latency_ms) AS BIGINT) AS TEXT)"
        if dialect == "postgresql"
        else f"CAST(CAST({r}.latency_ms AS INTEGER) AS TEXT)"
    )
    return (
        f"CASE WHEN {r}.latency_ms < 1 THEN 0 "
        f"ELSE length({whole}) * 100 + CAST(substr({whole} || '0', 1, 2) AS INTEGER) END"
    )


def bin_range(b: int) -> tuple[float, float]:
    """[low, high) latency in ms of bin `b`."""
    if b == 0:
        return float("-inf"), 1.0
    digits, lead = divmod(b, 100)
    if digits == 1:  # 1-9 ms: the second digit is always 0
        return float(lead // 10), float(lead // 10 + 1)
    unit = 10 ** (digits - 2)
    return float(lead * unit), float((lead + 1) * unit)


def bin_of(latency_ms: float) -> int:
    """The bin of one latency, as latency_bin_sql computes it (for tests and checks)."""
    if latency_ms < 1:
        return 0
    whole = str(int(latency_ms))
    return len(whole) * 100 + int((whole + "0")[:2])


def _hour(dialect: str, r: str) -> str:
    if dialect == "postgresql":
        return f"date_trunc('hour', {r}.created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
    # the same text format SQLAlchemy writes for DateTime on SQLite, so range comparisons work
    return f"strftime('%Y-%m-%d %H:00:00.000000', {r}.created_at)"


def _dim(col: str, r: str) -> str:
    quoted = f'{r}."{col}"'
    return f"COALESCE({quoted}, {NULL_SENTINEL[col]})" if col in NULL_SENTINEL else quoted


def _spec(dialect: str, name: str) -> tuple[list[str], list[str], dict[str, str], str | None]:
    """(key columns, their SQL templates in terms of {r}, measure -> SQL template, row condition) of a rollup."""
    if name in ROLLUPS:
        dims = ROLLUPS[name]
        return ["hour", *dims], [_hour(dialect, "{r}"), *(_dim(d, "{r}") for d in dims)], MEASURES, None
    dims = LATENCY_ROLLUPS[name]
    keys = ["hour", *dims, "bin"]
    exprs = [_hour(dialect, "{r}"), *(_dim(d, "{r}") for d in dims), latency_bin_sql("{r}", dialect)]
    return keys, exprs, {"n": "1"}, "{r}.latency_ms IS NOT NULL"


def _quoted(cols: list[str]) -> str:
    return ", ".join(f'"{c}"' for c in cols)


def table_sql(dialect: str, name: str) -> list[str]:
    """CREATE TABLE (and index) of one rollup."""
    keys, _, measures, _ = _spec(dialect, name)
    hour_type = "TIMESTAMP WITH TIME ZONE" if dialect == "postgresql" else "DATETIME"
    cols = [f"hour {hour_type} NOT NULL"] + [
        f'"{k}" {"INTEGER" if k in (*INT_DIMS, "bin") else "VARCHAR(255)"} NOT NULL' for k in keys[1:]
    ]
    cols += [f"{m} {'DOUBLE PRECISION' if m in FLOAT_MEASURES else 'BIGINT'} NOT NULL DEFAULT 0" for m in measures]
    out = [f"CREATE TABLE {name} ({', '.join(cols)}, CONSTRAINT uq_{name} UNIQUE ({_quoted(keys)}))"]
    if name in USER_KEYED:
        out.append(f'CREATE INDEX ix_{name}_user ON {name} ("user", hour)')
    return out


def backfill_sql(dialect: str, name: str, where: str | None = None) -> str:
    """INSERT ... SELECT that rebuilds rollup `name` from the call log, or from its calls (alias c) matching the
    SQL condition `where` (run on an empty rollup, or one whose rows of those calls were deleted)."""
    keys, exprs, measures, cond = _spec(dialect, name)
    sel = [e.format(r="c") for e in exprs] + [f"SUM({v.format(r='c')})" for v in measures.values()]
    groups = ", ".join(str(i + 1) for i in range(len(keys)))
    conds = [c for c in (where, cond and cond.format(r="c")) if c]
    where = f" WHERE {' AND '.join(conds)}" if conds else ""
    return (
        f"INSERT INTO {name} ({_quoted(keys)}, {', '.join(measures)}) SELECT {', '.join(sel)} "
        f"FROM llm_calls c{where} GROUP BY {groups}"
    )


def trigger_sql(dialect: str, name: str) -> list[str]:
    """The trigger (and its function on PostgreSQL) that adds each new call to rollup `name`."""
    keys, exprs, measures, cond = _spec(dialect, name)
    upsert = (
        f"INSERT INTO {name} ({_quoted(keys)}, {', '.join(measures)}) VALUES ("
        + ", ".join([e.format(r="NEW") for e in exprs] + [v.format(r="NEW") for v in measures.values()])
        + f") ON CONFLICT ({_quoted(keys)}) DO UPDATE SET "
        + ", ".join(f"{m} = {name}.{m} + excluded.{m}" for m in measures)
    )
    if dialect == "postgresql":
        when = f" WHEN ({cond.format(r='NEW')})" if cond else ""
        return [
            f"CREATE OR REPLACE FUNCTION {name}_add() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN {upsert}; RETURN NULL; END $$",
            f"CREATE TRIGGER trg_{name} AFTER INSERT ON llm_calls FOR EACH ROW{when} EXECUTE FUNCTION {name}_add()",
        ]
    when = f" WHEN {cond.format(r='NEW')}" if cond else ""
    return [f"CREATE TRIGGER trg_{name} AFTER INSERT ON llm_calls{when} BEGIN {upsert}; END"]


def drop_trigger_sql(dialect: str, name: str) -> str:
    return f"DROP TRIGGER IF EXISTS trg_{name}" + (" ON llm_calls" if dialect == "postgresql" else "")


def all_rollups() -> list[str]:
    """Every rollup table name, usage rollups first."""
    return [*ROLLUPS, *LATENCY_ROLLUPS]


def create_sql(dialect: str) -> list[str]:
    """DDL of the rollup tables, their triggers, and the backfill of existing calls."""
    stmts = []
    for name in all_rollups():
        stmts += [*table_sql(dialect, name), backfill_sql(dialect, name), *trigger_sql(dialect, name)]
    return stmts


def drop_sql(dialect: str) -> list[str]:
    """DDL that removes the rollups and their triggers (also those of earlier shapes)."""
    stmts = []
    for name in all_rollups():
        stmts.append(drop_trigger_sql(dialect, name))
        if dialect == "postgresql":
            stmts.append(f"DROP FUNCTION IF EXISTS {name}_add()")
        stmts.append(f"DROP TABLE IF EXISTS {name}")
    return stmts


# A rollup whose dimensions are a subset of another's is rebuilt in bulk from that one (a fraction of the rows).
DERIVED_FROM = {
    "llm_usage_user_hourly": "llm_usage_user_dims_hourly",
    "llm_latency_dims_hourly": "llm_latency_user_dims_hourly",
    LATENCY_ROLLUP: "llm_latency_dims_hourly",
}


def derive_sql(dialect: str, name: str) -> str:
    """INSERT ... SELECT that rebuilds rollup `name` from the rollup it is derived from (see DERIVED_FROM)."""
    keys, _, measures, _ = _spec(dialect, name)
    sums = ", ".join(f"SUM({m})" for m in measures)
    return (
        f"INSERT INTO {name} ({_quoted(keys)}, {', '.join(measures)}) SELECT {_quoted(keys)}, {sums} "
        f"FROM {DERIVED_FROM[name]} GROUP BY {_quoted(keys)}"
    )


def _day(dialect: str, r: str) -> str:
    """SQL of the UTC day (midnight) of the hour column of row alias `r`."""
    if dialect == "postgresql":
        return f"date_trunc('day', {r}.hour AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
    return f"strftime('%Y-%m-%d 00:00:00.000000', {r}.hour)"


def _daily_spec(name: str) -> tuple[list[str], list[str], str]:
    """(dimension columns after the time, measure columns, the count column) of hourly rollup `name`."""
    if name in ROLLUPS:
        return list(ROLLUPS[name]), list(MEASURES), "requests"
    return [*LATENCY_ROLLUPS[name], "bin"], ["n"], "n"


def daily_table_sql(dialect: str, name: str) -> list[str]:
    """CREATE TABLE (and index) of the daily twin of hourly rollup `name` (a `day` column instead of `hour`)."""
    daily = DAILY[name]
    out = [
        stmt.replace(f"TABLE {name} (hour ", f"TABLE {daily} (day ", 1)
        .replace(f"uq_{name} UNIQUE (", f"uq_{daily} UNIQUE (", 1)
        .replace('UNIQUE ("hour"', 'UNIQUE ("day"', 1)
        for stmt in table_sql(dialect, name)
        if stmt.startswith("CREATE TABLE")
    ]
    if name in USER_KEYED:
        out.append(f'CREATE INDEX ix_{daily}_user ON {daily} ("user", day)')
    return out


def daily_backfill_sql(dialect: str, name: str) -> str:
    """INSERT ... SELECT that rebuilds the (empty) daily twin of `name` from the hourly rollup."""
    dims, measures, _ = _daily_spec(name)
    sums = ", ".join(f"SUM({m})" for m in measures)
    groups = ", ".join(str(i + 1) for i in range(len(dims) + 1))
    return (
        f"INSERT INTO {DAILY[name]} (day, {_quoted(dims)}, {', '.join(measures)}) "
        f"SELECT {_day(dialect, 'h')}, {', '.join(f'h.{chr(34)}{d}{chr(34)}' for d in dims)}, {sums} "
        f"FROM {name} h GROUP BY {groups}"
    )


def _daily_upsert(dialect: str, name: str, r: str, values: str) -> str:
    """Upsert into the daily twin of `name` at the key of row alias `r`, adding `values` ('{m}' per measure)."""
    dims, measures, _ = _daily_spec(name)
    daily = DAILY[name]
    keys = ["day", *dims]
    return (
        f"INSERT INTO {daily} ({_quoted(keys)}, {', '.join(measures)}) VALUES ("
        + ", ".join([_day(dialect, r), *(f'{r}."{d}"' for d in dims), *(values.format(m=m) for m in measures)])
        + f") ON CONFLICT ({_quoted(keys)}) DO UPDATE SET "
        + ", ".join(f"{m} = {daily}.{m} + excluded.{m}" for m in measures)
    )


def _daily_prune(dialect: str, name: str) -> str:
    """Delete the daily row at OLD's key when it holds no call any more."""
    dims, _, count = _daily_spec(name)
    keys = " AND ".join([f"day = {_day(dialect, 'OLD')}", *(f'"{d}" = OLD."{d}"' for d in dims)])
    return f"DELETE FROM {DAILY[name]} WHERE {keys} AND {count} = 0"


def daily_trigger_sql(dialect: str, name: str) -> list[str]:
    """Triggers on hourly rollup `name` that keep its daily twin equal to its GROUP BY day."""
    dims, _, count = _daily_spec(name)
    # The same hourly key (an upsert's update: the common case, kept to one statement); a changed key moves the row.
    same = " AND ".join(["OLD.hour = NEW.hour", *(f'OLD."{d}" = NEW."{d}"' for d in dims)])
    fewer = f"NEW.{count} < OLD.{count}"  # only then can a daily row drop to no calls
    add_new = _daily_upsert(dialect, name, "NEW", "NEW.{m}")
    diff = _daily_upsert(dialect, name, "NEW", "NEW.{m} - OLD.{m}")
    sub_old = _daily_upsert(dialect, name, "OLD", "-OLD.{m}")
    prune = _daily_prune(dialect, name)
    daily = DAILY[name]
    if dialect == "postgresql":
        body = (
            f"BEGIN IF TG_OP = 'INSERT' THEN {add_new}; ELSIF TG_OP = 'DELETE' THEN {sub_old}; {prune}; "
            f"ELSIF {same} THEN {diff}; IF {fewer} THEN {prune}; END IF; "
            f"ELSE {sub_old}; {prune}; {add_new}; END IF; RETURN NULL; END"
        )
        return [
            f"CREATE OR REPLACE FUNCTION {daily}_sync() RETURNS trigger LANGUAGE plpgsql AS $$ {body} $$",
            f"CREATE TRIGGER trg_{daily} AFTER INSERT OR UPDATE OR DELETE ON {name} "
            f"FOR EACH ROW EXECUTE FUNCTION {daily}_sync()",
        ]
    return [
        f"CREATE TRIGGER trg_{daily}_ins AFTER INSERT ON {name} BEGIN {add_new}; END",
        f"CREATE TRIGGER trg_{daily}_upd AFTER UPDATE ON {name} WHEN {same} BEGIN {diff}; END",
        f"CREATE TRIGGER trg_{daily}_fewer AFTER UPDATE ON {name} WHEN {same} AND {fewer} BEGIN {prune}; END",
        f"CREATE TRIGGER trg_{daily}_move AFTER UPDATE ON {name} WHEN NOT ({same}) "
        f"BEGIN {sub_old}; {prune}; {add_new}; END",
        f"CREATE TRIGGER trg_{daily}_del AFTER DELETE ON {name} BEGIN {sub_old}; {prune}; END",
    ]


def drop_daily_trigger_sql(dialect: str, name: str) -> list[str]:
    daily = DAILY[name]
    if dialect == "postgresql":
        return [f"DROP TRIGGER IF EXISTS trg_{daily} ON {name}"]
    return [f"DROP TRIGGER IF EXISTS trg_{daily}_{op}" for op in ("ins", "upd", "fewer", "move", "del")]


def create_daily_sql(dialect: str) -> list[str]:
    """DDL of the daily twins, their backfill from the hourly rollups, and their triggers."""
    stmts = []
    for name in all_rollups():
        stmts += [*daily_table_sql(dialect, name), daily_backfill_sql(dialect, name), *daily_trigger_sql(dialect, name)]
    return stmts


def drop_daily_sql(dialect: str) -> list[str]:
    """DDL that removes the daily twins and their triggers."""
    stmts = []
    for name in all_rollups():
        stmts += drop_daily_trigger_sql(dialect, name)
        if dialect == "postgresql":
            stmts.append(f"DROP FUNCTION IF EXISTS {DAILY[name]}_sync()")
        stmts.append(f"DROP TABLE IF EXISTS {DAILY[name]}")
    return stmts


def _has_daily(conn: Connection) -> bool:
    from sqlalchemy import inspect

    return bool(inspect(conn).has_table(DAILY[LATENCY_ROLLUP]))


@contextmanager
def bulk_load(conn: Connection) -> Iterator[None]:
    """Insert many calls inside this block: the triggers are dropped for it, and afterwards every rollup is
    rebuilt in one GROUP BY each, over the call log or a larger rollup (instead of one upsert per row and rollup),
    and committed. The block may commit as it goes (a chunk at a time); if it fails, what it committed is
    rolled up all the same (and the triggers are back)."""
    from sqlalchemy import text

    dialect, daily = conn.dialect.name, _has_daily(conn)
    for name in all_rollups():
        conn.execute(text(drop_trigger_sql(dialect, name)))
        for stmt in drop_daily_trigger_sql(dialect, name) if daily else []:
            conn.execute(text(stmt))
    conn.commit()
    try:
        yield
    except BaseException:
        conn.rollback()
        raise
    finally:
        pending = all_rollups()
        while pending:  # a rollup after the one it is derived from
            name = next(n for n in pending if DERIVED_FROM.get(n) not in pending)
            pending.remove(name)
            conn.execute(text(f"DELETE FROM {name}"))
            conn.execute(text(derive_sql(dialect, name) if name in DERIVED_FROM else backfill_sql(dialect, name)))
            for stmt in trigger_sql(dialect, name):
                conn.execute(text(stmt))
            if daily:
                conn.execute(text(f"DELETE FROM {DAILY[name]}"))
                conn.execute(text(daily_backfill_sql(dialect, name)))
                for stmt in daily_trigger_sql(dialect, name):
                    conn.execute(text(stmt))
        conn.commit()


def rollup_tables() -> dict[str, Table]:
    """SQLAlchemy Core tables of the rollups (for queries; the DDL above creates them)."""
    from sqlalchemy import BigInteger, Column, DateTime, Float, Integer, MetaData, String, Table

    meta = MetaData()

    def dim(d: str) -> Column:
        return Column(d, Integer if d in INT_DIMS else String(255), nullable=False)

    out = {
        name: Table(
            name,
            meta,
            Column("hour", DateTime(timezone=True), nullable=False),
            *(dim(d) for d in dims),
            *(Column(m, Float if m in FLOAT_MEASURES else BigInteger, nullable=False) for m in MEASURES),
        )
        for name, dims in ROLLUPS.items()
    }
    for name, dims in LATENCY_ROLLUPS.items():
        out[name] = Table(
            name,
            meta,
            Column("hour", DateTime(timezone=True), nullable=False),
            *(dim(d) for d in dims),
            Column("bin", Integer, nullable=False),
            Column("n", BigInteger, nullable=False),
        )
    for name, daily in DAILY.items():
        hourly = out[name]
        out[daily] = Table(
            daily,
            meta,
            Column("day", DateTime(timezone=True), nullable=False),
            *(Column(c.name, c.type, nullable=False) for c in hourly.c if c.name != "hour"),
        )
    return out
