"""Read-only SQL over the usage views, for the assistant's `query_usage` tool.

Three layers, the database's first:
- SQLite: a separate connection opened with `mode=ro` (the file cannot be written through it) and an authorizer
  that allows only SELECT, reads of the allow-listed views (and of the columns those views expose), and a list of
  plain functions; everything else (PRAGMA, ATTACH, writes, the raw llm_calls table) is denied by SQLite itself.
  A progress handler interrupts a statement past the time cap.
- PostgreSQL: a `READ ONLY` transaction with `SET LOCAL statement_timeout`, always rolled back, as the role
  `workbench_usage_reader` (migration 0014: SELECT on the usage views only, so the raw call log, other tables and
  superuser functions are refused by the database); the statement is sent with the extended protocol, which refuses
  more than one statement.
- Both: the statement is parsed with sqlglot first: exactly one query, reading only the allow-listed views (or its
  own CTEs), calling only known functions. A row cap bounds what comes back.
"""

from __future__ import annotations

import datetime as dt
import decimal
import sqlite3
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from sqlalchemy import Engine
from sqlglot import exp

VIEWS = ("usage_calls", "usage_tool_calls")
ROW_CAP = 200
TIME_CAP_S = 3.0
MAX_SQL_CHARS = 5_000
# Functions a query may call (SQLite's authorizer and the parser's check for functions sqlglot does not know).
FUNCTIONS = frozenset(
    {
        "count", "sum", "avg", "min", "max", "total", "round", "abs", "coalesce", "ifnull", "nullif", "lower",
        "upper", "length", "substr", "substring", "trim", "replace", "instr", "date", "time", "datetime",
        "julianday", "strftime", "unixepoch", "date_trunc", "date_part", "extract", "to_char", "now",
        "current_date", "current_timestamp", "cast", "printf", "format", "percentile_cont", "percentile_disc",
        "stddev", "variance", "group_concat", "string_agg", "greatest", "least", "iif", "like", "glob", "age",
        "to_timestamp", "to_date", "floor", "ceil", "ceiling", "sqrt", "power", "ln", "log", "exp", "sign",
        "row_number", "rank", "dense_rank", "lag", "lead", "first_value", "last_value", "ntile", "timezone",
    }
)  # fmt: skip
_WRITES = (
    exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Drop, exp.Alter, exp.Command, exp.Into,
    exp.Lock, exp.Pragma, exp.Transaction, exp.Commit, exp.Rollback, exp.Set, exp.Use, exp.Copy,
)  # fmt: skip


class QueryRefused(ValueError):
    """A statement the usage tool will not run: not one read-only query over the usage views."""


@dataclass
class QueryResult:
    """Columns and rows (at most the row cap; `truncated` says there were more)."""

    sql: str
    columns: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    truncated: bool = False
    elapsed_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (what the model gets, and the UI's table)."""
        return {
            "sql": self.sql,
            "columns": self.columns,
            "rows": self.rows,
            "row_count": len(self.rows),
            "truncated": self.truncated,
        }


def dialect_of(engine: Engine) -> str:
    """'sqlite' or 'postgres' (sqlglot's names)."""
    return "postgres" if engine.dialect.name == "postgresql" else "sqlite"


def check_sql(sql: str, dialect: str) -> str:
    """The one query in `sql`, or QueryRefused saying what is wrong with it."""
    text = sql.strip().rstrip(";").strip()
    if not text:
        raise QueryRefused("The query is empty.")
    if len(text) > MAX_SQL_CHARS:
        raise QueryRefused(f"The query has {len(text):,} characters; the limit is {MAX_SQL_CHARS:,}.")
    try:
        statements = [s for s in sqlglot.parse(text, read=dialect) if s is not None]
    except sqlglot.errors.SqlglotError as exc:
        raise QueryRefused(f"The query does not parse: {str(exc).splitlines()[0]}") from None
    if len(statements) != 1:
        raise QueryRefused("Send exactly one SELECT statement.")
    tree = statements[0]
    if not isinstance(tree, exp.Query):
        raise QueryRefused(f"Only SELECT queries are allowed, not {tree.key.upper()}.")
    for node in tree.walk():
        if isinstance(node, _WRITES):
            raise QueryRefused(f"Only reading is allowed; the query contains {node.key.upper()}.")
    ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    for table in tree.find_all(exp.Table):
        name = table.name.lower()
        if not name and isinstance(table.this, exp.Func):
            raise QueryRefused("Table functions are not allowed; read from the usage views.")
        if table.db or table.catalog or (name not in VIEWS and name not in ctes):
            raise QueryRefused(f"Only the views {', '.join(VIEWS)} can be read, not {table.sql(dialect=dialect)}.")
    for func in tree.find_all(exp.Anonymous):
        if func.name.lower() not in FUNCTIONS:
            raise QueryRefused(f"The function {func.name} is not allowed.")
    return text


def run_query(engine: Engine, sql: str, row_cap: int = ROW_CAP, time_cap_s: float = TIME_CAP_S) -> QueryResult:
    """Check `sql`, then run it read-only with the row and time caps; QueryRefused with the reason otherwise."""
    text = check_sql(sql, dialect_of(engine))
    if engine.dialect.name == "postgresql":
        return run_postgres(engine, text, row_cap, time_cap_s)
    return run_sqlite(engine, text, row_cap, time_cap_s)


def _plain(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (bytes, memoryview)):
        return f"<{len(value)} bytes>"
    return value


def _fetch(cursor: Any, sql: str, row_cap: int, start: float) -> QueryResult:
    rows = cursor.fetchmany(row_cap + 1)
    columns = [d[0] for d in cursor.description or ()]
    return QueryResult(
        sql=sql,
        columns=columns,
        rows=[[_plain(v) for v in row] for row in rows[:row_cap]],
        truncated=len(rows) > row_cap,
        elapsed_ms=(time.perf_counter() - start) * 1000,
    )


VIEW_TABLES = frozenset({"llm_calls", "assistant_tool_calls"})  # what the views read


def _authorizer_for(schema: frozenset[str]) -> Any:
    """SQLite's authorizer for one connection; `schema` names its real tables and views (anything else is a CTE)."""

    def authorize(action: int, arg1: str | None, arg2: str | None, _db: str | None, source: str | None) -> int:
        if action in (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_RECURSIVE):
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_READ:
            table = (arg1 or "").lower()
            if table in VIEWS or source in VIEWS or table not in schema:  # a view, what it reads, or a CTE
                return sqlite3.SQLITE_OK
            # count(*) through a view reads the table behind it without any column
            return sqlite3.SQLITE_OK if table in VIEW_TABLES and not arg2 else sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_FUNCTION:
            return sqlite3.SQLITE_OK if (arg2 or "").lower() in FUNCTIONS else sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_DENY

    return authorize


def open_sqlite_readonly(engine: Engine) -> sqlite3.Connection:
    """A new connection to the engine's SQLite file that cannot write, with the usage authorizer installed."""
    path = engine.url.database
    if not path or path == ":memory:":
        raise QueryRefused("Usage queries need the database in a file; this one is in memory.")
    uri = f"file:{urllib.parse.quote(str(path))}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=5, check_same_thread=False)
    schema = frozenset(name.lower() for (name,) in conn.execute("SELECT name FROM sqlite_master"))
    conn.set_authorizer(_authorizer_for(schema | {"sqlite_master", "sqlite_schema", "sqlite_temp_master"}))
    return conn


def run_sqlite(engine: Engine, sql: str, row_cap: int = ROW_CAP, time_cap_s: float = TIME_CAP_S) -> QueryResult:
    """Run one statement on a read-only, authorizer-guarded connection (the parser's check is not repeated here)."""
    start = time.perf_counter()
    deadline = time.monotonic() + time_cap_s
    conn = open_sqlite_readonly(engine)
    conn.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, 10_000)
    try:
        cursor = conn.execute(sql)
        return _fetch(cursor, sql, row_cap, start)
    except sqlite3.DatabaseError as exc:
        if time.monotonic() > deadline:
            raise QueryRefused(f"The query ran longer than {time_cap_s:g} s and was stopped.") from None
        raise QueryRefused(f"The database refused the query: {exc}") from None
    except sqlite3.Warning as exc:  # "You can only execute one statement at a time."
        raise QueryRefused(f"The database refused the query: {exc}") from None
    finally:
        conn.close()


READER_ROLE = "workbench_usage_reader"  # migration 0014: SELECT on the usage views, nothing else


def reader_role_present(cur: Any) -> bool:
    """True when the reader role exists and the current user may switch to it (migration 0014 made it so)."""
    cur.execute("SELECT pg_has_role(current_user, oid, 'MEMBER') FROM pg_roles WHERE rolname = %s", (READER_ROLE,))
    row = cur.fetchone()
    return bool(row and row[0])


def run_postgres(engine: Engine, sql: str, row_cap: int = ROW_CAP, time_cap_s: float = TIME_CAP_S) -> QueryResult:
    """Run one statement in a READ ONLY transaction with a statement timeout, then roll back."""
    import psycopg

    start = time.perf_counter()
    with engine.connect() as conn:
        raw: Any = conn.connection.driver_connection
        try:
            with raw.cursor() as cur:
                cur.execute("SET TRANSACTION READ ONLY")
                cur.execute(f"SET LOCAL statement_timeout = {int(time_cap_s * 1000)}")
                cur.execute("SET LOCAL lock_timeout = 1000")
                if reader_role_present(cur):  # the database itself allows only the usage views from here on
                    cur.execute(f"SET LOCAL ROLE {READER_ROLE}")
                # binary=True sends it with the extended protocol: one statement only, whatever the text holds
                cur.execute(sql, binary=True)
                return _fetch(cur, sql, row_cap, start)
        except psycopg.errors.QueryCanceled:
            raise QueryRefused(f"The query ran longer than {time_cap_s:g} s and was stopped.") from None
        except psycopg.Error as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise QueryRefused(f"The database refused the query: {message}") from None
        finally:
            conn.rollback()
