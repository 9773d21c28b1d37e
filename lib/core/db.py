"""Database engine and migrations: SQLite (WAL) by default, any SQLAlchemy URL via DATABASE_URL."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import StaticPool

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_POOL = 40  # connections a SQLite file engine keeps open (more than a worker's threads)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite files get WAL and a busy timeout, parent folders are created."""
    if url.startswith("sqlite"):
        memory = url in ("sqlite://", "sqlite:///:memory:")
        if not memory:
            Path(url.split(":///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
        # A file keeps up to SQLITE_POOL connections open: a worker process's threads (and the call log's and the
        # group commit's writers) would otherwise overflow the default 5 + 10, opening a connection and running
        # the pragmas on every checkout beyond them. Connections open only when first needed.
        pool = {"poolclass": StaticPool} if memory else {"pool_size": SQLITE_POOL, "max_overflow": SQLITE_POOL}
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **pool)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def alembic_config(engine: Engine) -> Config:
    """Alembic configuration bound to `engine` (no alembic.ini needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration (idempotent; runs at app start)."""
    command.upgrade(alembic_config(engine), "head")
