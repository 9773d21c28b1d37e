"""The assistant's tools on their own: query_usage is read-only by the database (SQLite and PostgreSQL), the
calculator refuses anything but arithmetic, and the policies keep query_usage and run_template to their roles."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from lib.assistant.calculator import CalculatorError, calculate
from lib.assistant.policies import DEFAULTS, PolicyError, modes_for, policy_table, reset_policies, set_policy
from lib.assistant.usage_sql import QueryRefused, check_sql, run_postgres, run_query, run_sqlite
from lib.core.tables import LlmCall
from lib.usage.demo import write_demo_calls

WRITES = [
    "DELETE FROM usage_calls",
    "DELETE FROM llm_calls",
    "UPDATE llm_calls SET cost_usd = 0",
    "INSERT INTO llm_calls (request_id, feature, provider, model, status) VALUES ('x', 'f', 'p', 'm', 'ok')",
    "SELECT 1; DELETE FROM llm_calls",
    "SELECT 1; COMMIT; DELETE FROM llm_calls",
    "WITH gone AS (DELETE FROM llm_calls RETURNING id) SELECT count(*) FROM gone",
    "DROP VIEW usage_calls",
    "CREATE TABLE t (x int)",
]
SQLITE_ONLY = [
    "ATTACH DATABASE '/tmp/elsewhere.db' AS other",
    "PRAGMA journal_mode = DELETE",
    "PRAGMA user_version = 7",
]
POSTGRES_ONLY = [
    "SELECT set_config('statement_timeout', '0', true)",
    "SELECT pg_read_file('/etc/passwd')",
    "SELECT * INTO copy_of_calls FROM usage_calls",
    "SELECT * FROM usage_calls FOR UPDATE",
    "SELECT query_to_xml('select prompt from llm_calls', true, false, '')",
]
READS_OF_RAW_TEXT = ["SELECT prompt, response FROM llm_calls", "SELECT prompt FROM usage_calls"]


@pytest.fixture
def usage_engine(any_engine):
    write_demo_calls(any_engine, 400, 14, seed=3)
    return any_engine


def _rows(engine) -> int:
    with Session(engine) as s:
        return int(s.scalar(select(func.count(LlmCall.id))))


def test_query_usage_reads_the_usage_view(usage_engine):
    result = run_query(usage_engine, "SELECT feature, count(*) AS n FROM usage_calls GROUP BY feature ORDER BY n DESC")
    assert result.columns == ["feature", "n"]
    assert sum(n for _, n in result.rows) == 400
    assert result.rows[0][0] == "chat"  # the demo's largest feature


def test_query_usage_caps_rows(usage_engine):
    result = run_query(usage_engine, "SELECT id FROM usage_calls", row_cap=25)
    assert len(result.rows) == 25 and result.truncated


@pytest.mark.parametrize("sql", WRITES + READS_OF_RAW_TEXT)
def test_query_usage_refuses_writes_and_the_raw_call_log(usage_engine, sql):
    with pytest.raises(QueryRefused):
        run_query(usage_engine, sql)
    assert _rows(usage_engine) == 400


@pytest.mark.parametrize("sql", WRITES + SQLITE_ONLY + READS_OF_RAW_TEXT)
def test_sqlite_itself_refuses_what_the_parser_would(tmp_path, sql):
    """Below the parser's check: the read-only connection and its authorizer refuse on their own."""
    from lib.core.db import make_engine, migrate

    engine = make_engine(f"sqlite:///{tmp_path / 'u.db'}")
    migrate(engine)
    write_demo_calls(engine, 50, 3)
    with pytest.raises(QueryRefused, match=r"refused|prohibited|authorized|one statement"):
        run_sqlite(engine, sql)
    assert _rows(engine) == 50
    assert run_sqlite(engine, "SELECT count(*) FROM usage_calls").rows == [[50]]


def test_sqlite_stops_a_query_past_the_time_cap(tmp_path):
    from lib.core.db import make_engine, migrate

    engine = make_engine(f"sqlite:///{tmp_path / 'u.db'}")
    migrate(engine)
    forever = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    with pytest.raises(QueryRefused, match=r"longer than 0\.2 s"):
        run_sqlite(engine, forever, time_cap_s=0.2)


@pytest.mark.postgres
@pytest.mark.parametrize("sql", WRITES + POSTGRES_ONLY)
def test_postgres_itself_refuses_what_the_parser_would(pg_url, sql):
    """Below the parser's check: the READ ONLY transaction, the reader role (migration 0014) and the one-statement
    protocol refuse every write and every read outside the usage views on their own."""
    from lib.core.db import make_engine, migrate

    engine = make_engine(pg_url)
    migrate(engine)
    write_demo_calls(engine, 50, 3)
    try:
        run_postgres(engine, sql)
    except QueryRefused:
        pass
    else:  # what may run changes nothing: a setting local to the rolled-back transaction
        assert sql.startswith("SELECT set_config")
    with pytest.raises(QueryRefused):
        check_sql(sql, "postgres")  # and the parser refuses every one of them before the database sees it
    assert _rows(engine) == 50
    with engine.connect() as conn:  # the view is still there, the transaction's settings did not leak
        assert conn.execute(text("SELECT count(*) FROM usage_calls")).scalar() == 50
        assert conn.execute(text("SHOW statement_timeout")).scalar() == "0"
    engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize(
    "sql",
    [
        "SELECT prompt FROM llm_calls",
        "SELECT * FROM usage_calls, llm_calls",
        "SELECT * FROM assistant_turns",
        "SELECT * FROM pg_catalog.pg_authid",
        "SELECT pg_read_file('/etc/hostname')",
    ],
)
def test_postgres_reads_only_the_usage_views_as_the_reader_role(pg_url, sql):
    """The database, not only the parser, refuses the raw call log, other tables and superuser functions."""
    from lib.core.db import make_engine, migrate

    engine = make_engine(pg_url)
    migrate(engine)
    write_demo_calls(engine, 20, 2)
    with pytest.raises(QueryRefused, match=r"database refused.*(permission denied|must be superuser)"):
        run_postgres(engine, sql)
    assert run_postgres(engine, "SELECT count(*) FROM usage_calls").rows == [[20]]
    engine.dispose()


@pytest.mark.postgres
def test_postgres_stops_a_query_past_the_time_cap(pg_url):
    from lib.core.db import make_engine, migrate

    engine = make_engine(pg_url)
    migrate(engine)
    with pytest.raises(QueryRefused, match=r"longer than 0\.2 s"):
        run_postgres(engine, "SELECT count(*) FROM generate_series(1, 1000000000)", time_cap_s=0.2)
    engine.dispose()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM usage_calls, llm_calls",
        "SELECT (SELECT prompt FROM llm_calls LIMIT 1) FROM usage_calls",
        "SELECT * FROM main.usage_calls",
        "SELECT * FROM sqlite_master",
        "SELECT * FROM information_schema.tables",
        "SELECT load_extension('/tmp/x.so')",
        "SELECT * FROM generate_series(1, 10)",
        "",
        "SELECT 1 FROM usage_calls WHERE" + " x = 1 AND" * 1000 + " 1 = 1",
    ],
)
def test_parser_refuses_other_tables_functions_and_empty_or_huge_queries(sql):
    for dialect in ("sqlite", "postgres"):
        with pytest.raises(QueryRefused):
            check_sql(sql, dialect)


@pytest.mark.parametrize(
    "expression,value",
    [("2 + 3 * 4", 14), ("(1250 - 1000) / 1000 * 100", 25.0), ("2^10", 1024), ("round(10 / 3, 2)", 3.33)],
)
def test_calculator_does_arithmetic(expression, value):
    assert calculate(expression) == value


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os').system('true')",
        "().__class__.__bases__[0].__subclasses__()",
        "open('/etc/passwd').read()",
        "eval('1')",
        "9 ** 9 ** 9",
        "10 ** 1000",
        "x + 1",
        "[1] * 10**9",
        "lambda: 1",
        "'a' * 10",
        "1 if True else 2",
        "1 / 0",
        "(" * 300 + "1" + ")" * 300,
        "1 +" * 400 + "1",
        "",
        "abs(x=1)",
    ],
)
def test_calculator_refuses_anything_but_arithmetic(expression):
    with pytest.raises(CalculatorError):
        calculate(expression)


def test_default_policies_keep_query_usage_to_managers_and_confirm_run_template(fresh_engine):
    assert modes_for(fresh_engine, ["staff"])["query_usage"] == "off"
    assert modes_for(fresh_engine, ["manager"])["query_usage"] == "auto"
    assert modes_for(fresh_engine, ["author"])["run_template"] == "confirm"
    assert modes_for(fresh_engine, ["staff"])["run_template"] == "off"
    assert modes_for(fresh_engine, ["staff", "manager"])["query_usage"] == "auto"  # the most permissive role
    assert modes_for(fresh_engine, [])["search_documents"] == "off"


def test_stored_policies_override_the_defaults_but_never_open_query_usage_to_staff(fresh_engine):
    set_policy(fresh_engine, "search_documents", "staff", "confirm", "admin@example.com")
    set_policy(fresh_engine, "calculator", "manager", "off", "admin@example.com")
    assert modes_for(fresh_engine, ["staff"])["search_documents"] == "confirm"
    assert policy_table(fresh_engine)["calculator"]["manager"] == "off"
    with pytest.raises(PolicyError, match="only for the roles admin, manager"):
        set_policy(fresh_engine, "query_usage", "staff", "auto", "admin@example.com")
    with pytest.raises(PolicyError):
        set_policy(fresh_engine, "shell", "admin", "auto", None)
    with pytest.raises(PolicyError):
        set_policy(fresh_engine, "calculator", "admin", "sometimes", None)
    with fresh_engine.begin() as conn:  # a row written around the API still cannot open it
        conn.execute(
            text("INSERT INTO assistant_policies VALUES ('query_usage', 'staff', 'auto', CURRENT_TIMESTAMP, NULL)")
        )
    assert modes_for(fresh_engine, ["staff"])["query_usage"] == "off"
    reset_policies(fresh_engine)
    assert policy_table(fresh_engine)["search_documents"] == dict(DEFAULTS["search_documents"])
