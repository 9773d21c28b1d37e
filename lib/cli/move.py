"""Move an install to shared storage: the database to PostgreSQL, Chroma's collections to a Chroma server.

`python -m lib.cli move --to-database-url URL [--to-chroma-host H --to-chroma-port P]` copies what the
current settings point at (by default the SQLite file and the embedded Chroma in the data dir):

1. the target database is migrated to the newest schema (Alembic), then every table is copied in
   foreign-key order, in pages; the hourly usage rollups are not copied but rebuilt by the target's own
   triggers as the call log arrives; PostgreSQL sequences are reset past the copied ids;
2. every Chroma collection is copied with its ids, embeddings, documents and metadata, in pages, with its
   HNSW settings (cosine); no embedding function is attached, so nothing is re-embedded or downloaded;
3. the rows of every table and the chunks of every collection are counted on both sides; any difference
   is reported and the command exits non-zero.

A target that already holds rows, or a collection of the same name, is refused unless `replace` is set
(then the target's tables and those collections are emptied first). Stop the app while moving.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Engine, Integer, Table, delete, func, select, text

from lib.core.db import make_engine, migrate
from lib.core.rollups import ROLLUPS, all_rollups
from lib.core.tables import Base

# Kept by triggers on llm_calls in the target.
DERIVED = tuple(all_rollups())
PAGE = 1000
Log = Callable[[str], None]


class MoveError(RuntimeError):
    """The move cannot start (target not empty, nothing to move) or its counts differ."""


@dataclass
class MoveReport:
    """What was copied: per table and per collection, (rows in the source, rows in the target)."""

    tables: dict[str, tuple[int, int]] = field(default_factory=dict)
    collections: dict[str, tuple[int, int]] = field(default_factory=dict)
    derived: dict[str, tuple[int, int]] = field(default_factory=dict)  # rollup requests vs calls, on target
    seconds: float = 0.0

    def mismatches(self) -> list[str]:
        """One line per table or collection whose counts differ."""
        out = [f"table {n}: {s} rows in the source, {t} in the target" for n, (s, t) in self.tables.items() if s != t]
        out += [
            f"collection {n}: {s} chunks in the source, {t} in the target"
            for n, (s, t) in self.collections.items()
            if s != t
        ]
        out += [
            f"rollup {n}: sums {t} requests but the target's call log has {s} calls"
            for n, (s, t) in self.derived.items()
            if s != t
        ]
        return out

    @property
    def rows(self) -> int:
        return sum(t for _, t in self.tables.values())

    @property
    def chunks(self) -> int:
        return sum(t for _, t in self.collections.values())


def copied_tables() -> list[Table]:
    """The tables to copy, parents before children (every model table; rollups are derived)."""
    return [t for t in Base.metadata.sorted_tables if t.name not in DERIVED]


def _count(engine: Engine, table: Table) -> int:
    with engine.connect() as c:
        return c.execute(select(func.count()).select_from(table)).scalar_one()


def _utc(row: dict[str, Any], aware: list[str]) -> dict[str, Any]:
    for name in aware:  # SQLite hands back naive datetimes; they are UTC (lib.core.tables.utcnow)
        v = row.get(name)
        if isinstance(v, datetime) and v.tzinfo is None:
            row[name] = v.replace(tzinfo=UTC)
    return row


def copy_tables(source: Engine, target: Engine, log: Log, page: int = PAGE) -> None:
    """Copy every table's rows in dependency order, in pages, one transaction per table."""
    for table in copied_tables():
        aware = [c.name for c in table.columns if isinstance(c.type, DateTime) and c.type.timezone]
        order = list(table.primary_key.columns) or list(table.columns)
        n = 0
        with source.connect() as src, target.begin() as dst:
            result = src.execution_options(stream_results=True, yield_per=page).execute(select(table).order_by(*order))
            for part in result.partitions(page):
                dst.execute(table.insert(), [_utc(dict(r._mapping), aware) for r in part])
                n += len(part)
        log(f"  {table.name}: {n:,} rows")


def reset_sequences(target: Engine) -> None:
    """PostgreSQL: each serial id's sequence continues after the highest copied id."""
    if target.dialect.name != "postgresql":
        return
    with target.begin() as c:
        for table in copied_tables():
            pk = list(table.primary_key.columns)
            if len(pk) == 1 and isinstance(pk[0].type, Integer):
                col = pk[0].name
                seq = c.scalar(text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table.name, "c": col})
                if seq:
                    c.execute(
                        text(
                            f'SELECT setval(:s, COALESCE((SELECT MAX("{col}") FROM "{table.name}"), 1), '
                            f'(SELECT MAX("{col}") FROM "{table.name}") IS NOT NULL)'
                        ),
                        {"s": seq},
                    )


def empty_tables(target: Engine) -> None:
    """Delete every row of the copied and derived tables (children first)."""
    with target.begin() as c:
        for table in reversed(copied_tables()):
            c.execute(delete(table))
        for name in DERIVED:
            if target.dialect.has_table(c, name):
                c.execute(text(f'DELETE FROM "{name}"'))


def table_counts(source: Engine, target: Engine) -> dict[str, tuple[int, int]]:
    """(source rows, target rows) per copied table."""
    return {t.name: (_count(source, t), _count(target, t)) for t in copied_tables()}


def rollup_counts(target: Engine) -> dict[str, tuple[int, int]]:
    """Per rollup on the target: (calls in the call log, requests the rollup sums); equal when complete."""
    out = {}
    with target.connect() as c:
        calls = c.scalar(text("SELECT COUNT(*) FROM llm_calls"))
        for name in ROLLUPS:
            if target.dialect.has_table(c, name):
                out[name] = (calls, int(c.scalar(text(f'SELECT COALESCE(SUM(requests), 0) FROM "{name}"'))))
    return out


# ---- Chroma ---------------------------------------------------------------------------------------


def chroma_server_client(host: str, port: int) -> Any:
    """An HTTP client of a Chroma server."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    return chromadb.HttpClient(
        host=host, port=port, settings=ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    )


def _collections(client: Any) -> dict[str, Any]:
    return {c.name: client.get_collection(c.name, embedding_function=None) for c in client.list_collections()}


def _hnsw(collection: Any) -> dict[str, Any]:
    conf = (collection.configuration or {}).get("hnsw") or {}
    keep = ("space", "ef_construction", "ef_search", "max_neighbors")
    return {k: conf[k] for k in keep if conf.get(k) is not None} or {"space": "cosine"}


def copy_collections(source: Any, target: Any, names: list[str], log: Log, page: int = PAGE) -> None:
    """Copy each collection: ids, embeddings, documents and metadata, page by page, HNSW settings kept."""
    for name in names:
        src = source.get_collection(name, embedding_function=None)
        dst = target.get_or_create_collection(
            name, embedding_function=None, metadata=src.metadata or None, configuration={"hnsw": _hnsw(src)}
        )
        offset = n = 0
        while True:
            part = src.get(include=["embeddings", "documents", "metadatas"], limit=page, offset=offset)
            if not part["ids"]:
                break
            dst.add(
                ids=part["ids"], embeddings=part["embeddings"], documents=part["documents"], metadatas=part["metadatas"]
            )
            n += len(part["ids"])
            offset += page
        log(f"  {name}: {n:,} chunks")


def collection_counts(source: Any, target: Any, names: list[str]) -> dict[str, tuple[int, int]]:
    """(source chunks, target chunks) per collection; a collection missing on the target counts 0."""
    there = _collections(target)
    return {
        n: (source.get_collection(n, embedding_function=None).count(), there[n].count() if n in there else 0)
        for n in names
    }


# ---- the move -------------------------------------------------------------------------------------


def move(
    settings: Any,
    to_database_url: str | None = None,
    to_chroma: tuple[str, int] | None = None,
    replace: bool = False,
    log: Log = print,
    page: int = PAGE,
) -> MoveReport:
    """Copy the current install's database and/or Chroma to the targets and count both sides.

    Raises MoveError before copying when a target is not empty (unless `replace`). The returned report's
    `mismatches()` lists any count that differs after the copy.
    """
    from lib.documents.vectorstore import make_chroma_client

    if not to_database_url and not to_chroma:
        raise MoveError("Nothing to move to: give a target database URL and/or a Chroma server.")
    started = time.perf_counter()
    report = MoveReport()
    source_db: Engine | None = None
    target_db: Engine | None = None
    source_chroma = target_chroma = None
    names: list[str] = []
    try:
        if to_database_url:
            if to_database_url == settings.database_url:
                raise MoveError("The target database is the current database.")
            source_db, target_db = make_engine(settings.database_url), make_engine(to_database_url)
            migrate(source_db)  # the source at the newest schema too, so both sides have the same tables
            migrate(target_db)
            busy = {t: n for t, (_, n) in table_counts(source_db, target_db).items() if n}
            if busy and not replace:
                raise MoveError(
                    "The target database is not empty ("
                    + ", ".join(f"{t}: {n} rows" for t, n in sorted(busy.items()))
                    + "). Use an empty database, or "
                    "--replace-target to delete its rows first."
                )
        if to_chroma:
            if settings.chroma_host and (settings.chroma_host, settings.chroma_port) == tuple(to_chroma):
                raise MoveError("The target Chroma server is the current one.")
            source_chroma, target_chroma = make_chroma_client(settings), chroma_server_client(*to_chroma)
            names = sorted(_collections(source_chroma))
            there = _collections(target_chroma)
            clash = {n: there[n].count() for n in names if n in there}
            if any(clash.values()) and not replace:
                raise MoveError(
                    "The Chroma server already holds chunks in "
                    + ", ".join(f"{n} ({c})" for n, c in sorted(clash.items()) if c)
                    + ". Use an empty server, or "
                    "--replace-target to delete those collections first."
                )
            for n in clash:
                target_chroma.delete_collection(n)
        if source_db is not None and target_db is not None:
            if replace:
                empty_tables(target_db)
            log(f"Copying the database to {target_db.url.render_as_string(hide_password=True)}:")
            copy_tables(source_db, target_db, log, page)
            reset_sequences(target_db)
        if target_chroma is not None and to_chroma:
            log(f"Copying {len(names)} Chroma collection(s) to {to_chroma[0]}:{to_chroma[1]}:")
            copy_collections(source_chroma, target_chroma, names, log, page)
        if source_db is not None and target_db is not None:
            report.tables = table_counts(source_db, target_db)
            report.derived = rollup_counts(target_db)
        if target_chroma is not None:
            report.collections = collection_counts(source_chroma, target_chroma, names)
    finally:
        for engine in (source_db, target_db):
            if engine is not None:
                engine.dispose()
    report.seconds = time.perf_counter() - started
    return report
