"""The rollup DDL of migration 0003, frozen (migration 0013 replaces these rollups with lib/core/rollups.py's).

Hourly rollups of the call log, kept current by database triggers, so the dashboard reads ~30k rows
instead of ~400k for a month at 1M calls.

Each rollup sums the measures per UTC hour and per its dimensions. NULL dimensions are stored as
'' (or -1 for the template version) because both SQLite and PostgreSQL treat NULLs as distinct in
the unique key the upsert needs. The call log is append-only; deleting or editing call rows would
leave the rollups stale (a retention job must delete from both, or rebuild with `backfill`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Table

ROLLUPS = {
    "llm_usage_hourly": ("feature", "model", "provider", "status", "template_name", "template_version", "error_type"),
    "llm_usage_user_hourly": ("user",),
}
NULL_SENTINEL = {"template_name": "''", "template_version": "-1", "error_type": "''", "user": "''"}
# measure -> (SQL of one new row, in terms of a row alias), summed on conflict
MEASURES = {
    "requests": "1",
    "unpriced": "CASE WHEN {r}.cost_usd IS NULL THEN 1 ELSE 0 END",
    "spend": "COALESCE({r}.cost_usd, 0)",
    "input_tokens": "{r}.prompt_tokens",
    "output_tokens": "{r}.completion_tokens",
    "cached_tokens": "{r}.cached_tokens",
    # cached tokens are part of the prompt; capped so a bad row cannot price more cached than prompt
    "cached_capped": "CASE WHEN {r}.cached_tokens < {r}.prompt_tokens THEN {r}.cached_tokens ELSE {r}.prompt_tokens END",
    "latency_count": "CASE WHEN {r}.latency_ms IS NULL THEN 0 ELSE 1 END",
}


# SQLite only (PostgreSQL has percentile_disc): rows per UTC hour and latency bin, so an exact
# percentile only has to sort the rows of one bin. A bin is the digit count and leading digit of the
# whole milliseconds (bin 47 = 7000-7999 ms; bin 0 = under 1 ms): no log() needed, and bin_range()
# turns it back into a latency range that an index can use.
LATENCY_ROLLUP = "llm_latency_hourly"


def latency_bin_sql(r: str) -> str:
    """SQL of the latency bin of row alias `r` (SQLite)."""
    whole = f"CAST(CAST({r}.latency_ms AS INTEGER) AS TEXT)"
    return f"CASE WHEN {r}.latency_ms < 1 THEN 0 ELSE length({whole}) * 10 + CAST(substr({whole}, 1, 1) AS INTEGER) END"


def bin_range(b: int) -> tuple[float, float]:
    """[low, high) latency in ms of bin `b`."""
    if b == 0:
        return float("-inf"), 1.0
    unit = 10 ** (b // 10 - 1)
    return float(b % 10 * unit), float((b % 10 + 1) * unit)


def _latency_sql() -> list[str]:
    hour = _hour("sqlite", "{r}")
    return [
        f"CREATE TABLE {LATENCY_ROLLUP} (hour DATETIME NOT NULL, bin INTEGER NOT NULL, n BIGINT NOT NULL, "
        f"CONSTRAINT uq_{LATENCY_ROLLUP} UNIQUE (hour, bin))",
        f"INSERT INTO {LATENCY_ROLLUP} (hour, bin, n) SELECT {hour.format(r='c')}, {latency_bin_sql('c')}, COUNT(*) "
        "FROM llm_calls c WHERE c.latency_ms IS NOT NULL GROUP BY 1, 2",
        f"CREATE TRIGGER trg_{LATENCY_ROLLUP} AFTER INSERT ON llm_calls WHEN NEW.latency_ms IS NOT NULL BEGIN "
        f"INSERT INTO {LATENCY_ROLLUP} (hour, bin, n) VALUES ({hour.format(r='NEW')}, {latency_bin_sql('NEW')}, 1) "
        f"ON CONFLICT (hour, bin) DO UPDATE SET n = {LATENCY_ROLLUP}.n + 1; END",
    ]


def _hour(dialect: str, r: str) -> str:
    if dialect == "postgresql":
        return f"date_trunc('hour', {r}.created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
    # the same text format SQLAlchemy writes for DateTime on SQLite, so range comparisons work
    return f"strftime('%Y-%m-%d %H:00:00.000000', {r}.created_at)"


def _dim(col: str, r: str) -> str:
    quoted = f'{r}."{col}"'
    return f"COALESCE({quoted}, {NULL_SENTINEL[col]})" if col in NULL_SENTINEL else quoted


def create_sql(dialect: str) -> list[str]:
    """DDL of the rollup tables, their triggers, and the backfill of existing calls."""
    stmts = []
    for name, dims in ROLLUPS.items():
        dim_cols = ", ".join(f'"{d}" {"INTEGER" if d == "template_version" else "VARCHAR(255)"} NOT NULL' for d in dims)
        measures = ", ".join(
            f"{m} {'DOUBLE PRECISION' if m == 'spend' else 'BIGINT'} NOT NULL DEFAULT 0" for m in MEASURES
        )
        key = ", ".join(["hour", *(f'"{d}"' for d in dims)])
        hour_type = "TIMESTAMP WITH TIME ZONE" if dialect == "postgresql" else "DATETIME"
        stmts.append(
            f"CREATE TABLE {name} (hour {hour_type} NOT NULL, {dim_cols}, {measures}, "
            f"CONSTRAINT uq_{name} UNIQUE ({key}))"
        )
        stmts.append(backfill_sql(dialect, name))
        upsert = (
            f"INSERT INTO {name} ({key}, {', '.join(MEASURES)}) VALUES ({_hour(dialect, 'NEW')}, "
            + ", ".join(_dim(d, "NEW") for d in dims)
            + ", "
            + ", ".join(v.format(r="NEW") for v in MEASURES.values())
            + f") ON CONFLICT ({key}) DO UPDATE SET "
            + ", ".join(f"{m} = {name}.{m} + excluded.{m}" for m in MEASURES)
        )
        if dialect == "postgresql":
            stmts.append(
                f"CREATE FUNCTION {name}_add() RETURNS trigger LANGUAGE plpgsql AS $$ "
                f"BEGIN {upsert}; RETURN NULL; END $$"
            )
            stmts.append(
                f"CREATE TRIGGER trg_{name} AFTER INSERT ON llm_calls FOR EACH ROW EXECUTE FUNCTION {name}_add()"
            )
        else:
            stmts.append(f"CREATE TRIGGER trg_{name} AFTER INSERT ON llm_calls BEGIN {upsert}; END")
    return stmts + (_latency_sql() if dialect == "sqlite" else [])


def backfill_sql(dialect: str, name: str) -> str:
    """INSERT ... SELECT that rebuilds rollup `name` from the call log (run on an empty rollup)."""
    dims = ROLLUPS[name]
    key = ", ".join(["hour", *(f'"{d}"' for d in dims)])
    sel = [_hour(dialect, "c"), *(_dim(d, "c") for d in dims)]
    sums = [f"SUM({v.format(r='c')})" for v in MEASURES.values()]
    groups = ", ".join(str(i + 1) for i in range(len(sel)))
    return (
        f"INSERT INTO {name} ({key}, {', '.join(MEASURES)}) SELECT {', '.join(sel + sums)} "
        f"FROM llm_calls c GROUP BY {groups}"
    )


def drop_sql(dialect: str) -> list[str]:
    """DDL that removes the rollups and their triggers."""
    stmts = []
    for name in [*ROLLUPS, *([LATENCY_ROLLUP] if dialect == "sqlite" else [])]:
        stmts.append(f"DROP TRIGGER IF EXISTS trg_{name}" + (" ON llm_calls" if dialect == "postgresql" else ""))
        if dialect == "postgresql":
            stmts.append(f"DROP FUNCTION IF EXISTS {name}_add()")
        stmts.append(f"DROP TABLE IF EXISTS {name}")
    return stmts


def rollup_tables() -> dict[str, Table]:
    """SQLAlchemy Core tables of the rollups (for queries; the DDL above creates them)."""
    from sqlalchemy import BigInteger, Column, DateTime, Float, Integer, MetaData, String, Table

    meta = MetaData()
    latency = Table(
        LATENCY_ROLLUP,
        meta,
        Column("hour", DateTime(timezone=True), nullable=False),
        Column("bin", Integer, nullable=False),
        Column("n", BigInteger, nullable=False),
    )
    return {LATENCY_ROLLUP: latency} | {
        name: Table(
            name,
            meta,
            Column("hour", DateTime(timezone=True), nullable=False),
            *(Column(d, Integer if d == "template_version" else String(255), nullable=False) for d in dims),
            *(Column(m, Float if m == "spend" else BigInteger, nullable=False) for m in MEASURES),
        )
        for name, dims in ROLLUPS.items()
    }
