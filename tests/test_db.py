"""The schema comes from migrations, on SQLite and on a real PostgreSQL server."""

from sqlalchemy import inspect, text

from lib.core.db import make_engine, migrate

CALL_LOG_COLUMNS = {
    "id",
    "created_at",
    "request_id",
    "session_id",
    "user",
    "feature",
    "provider",
    "model",
    "template_name",
    "template_version",
    "experiment_id",
    "variant",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost_usd",
    "latency_ms",
    "ttft_ms",
    "status",
    "error_type",
    "error_message",
    "attempts",
    "prompt",
    "response",
    "metadata",
    "saved_usd",
    "run_id",
    "step",
    "pipeline_name",
    "pipeline_version",
    "trace_id",
}


def test_migrations_create_the_call_log_with_its_exact_columns_and_indexes(any_engine):
    insp = inspect(any_engine)
    assert {c["name"] for c in insp.get_columns("llm_calls")} == CALL_LOG_COLUMNS
    indexed = {tuple(i["column_names"]) for i in insp.get_indexes("llm_calls")}
    for col in ("created_at", "run_id"):
        assert (col,) in indexed
    for col in ("feature", "user", "model", "status"):  # with cost and time since migration 0015
        assert (col, "cost_usd", "created_at") in indexed


def test_migrating_twice_changes_nothing(any_engine):
    migrate(any_engine)
    with any_engine.connect() as c:
        versions = c.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    assert len(versions) == 1


def test_sqlite_files_use_wal_and_a_busy_timeout(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'x' / 'w.db'}")
    with engine.connect() as c:
        assert c.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert c.execute(text("PRAGMA busy_timeout")).scalar() == 30000
    assert (tmp_path / "x").is_dir()
