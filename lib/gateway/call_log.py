"""The call log's writer: group commit of the one row every model call leaves in `llm_calls`."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, cast

from sqlalchemy import Connection, Engine, Table, insert, text

from lib.core import spans
from lib.core.tables import LlmCall

log = logging.getLogger(__name__)


def without_nul(value: Any) -> Any:
    """`value` with NUL characters dropped from its strings (in dicts and lists too), as text is stored.

    The workbench's one NUL policy for text bound for the database: PostgreSQL refuses NUL in text and JSON
    (SQLite would keep it), and a NUL in a model answer, a title or a log row carries no meaning.
    """
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {k: without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_nul(v) for v in value]
    return value


_LOG_COLUMNS = {attr.key: attr.columns[0].key for attr in LlmCall.__mapper__.column_attrs}  # meta -> metadata
_INSERT = insert(cast(Table, LlmCall.__table__))  # built once (keys are column names): ~80 us less per row written


# Every row inserted into llm_calls updates the usage rollups' rows through triggers (lib/core/rollups.py), one
# row at a time in the order of the rows; two PostgreSQL transactions inserting rows of two models for the same
# user lock those rollup rows in opposite orders and deadlock (measured: two worker processes, ~1 s lost a time).
# Transactions that insert call-log rows on PostgreSQL take this transaction-level advisory lock first, so they
# update the rollups one after the other; SQLite writes one transaction at a time anyway.
ROLLUP_LOCK = 0x776F726B62656E63  # any constant bigint shared by every process of the deployment
_LOCK_ROLLUPS = text("SELECT pg_advisory_xact_lock(:key)").bindparams(key=ROLLUP_LOCK)


def lock_rollups(conn: Connection) -> None:
    """On PostgreSQL, wait for ROLLUP_LOCK for the rest of the caller's transaction (before writing llm_calls)."""
    if conn.dialect.name == "postgresql":
        conn.execute(_LOCK_ROLLUPS)


def _insert(conn: Connection, rows: list[dict[str, Any]]) -> None:
    lock_rollups(conn)
    conn.execute(_INSERT, rows)


def insert_rows(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert call-log rows the gateway handed to the caller (CallContext.log_rows) in the caller's transaction."""
    if rows:
        _insert(conn, [{_LOG_COLUMNS[k]: v for k, v in row.items()} for row in rows])


class CallLogWriter:
    """Group commit for the call log: concurrent calls' rows go into the database in one transaction.

    A caller queues its row and either waits while another caller's transaction is in progress, or (when
    none is) becomes the writer and inserts every queued row in one executemany. Each `write` returns once
    its own row is committed, as a plain insert would; but N calls finishing together cost one transaction
    instead of N transactions queueing for SQLite's single write lock, whose busy handler sleeps 1, 2, 5,
    10… ms between tries (and on PostgreSQL, one round trip and commit instead of N).

    `write(row, wait=False)` (deferred) queues the row and returns at once; a background thread, started
    when needed and ended after IDLE_S without work, commits it with the rest. Rows are committed in the
    order they were queued, so `flush` can wait for exactly the rows queued before it was called.
    """

    IDLE_S = 5.0
    COALESCE_S = 0.01  # a deferred row waits this long for others to share its transaction

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._cond = threading.Condition()
        self._queue: list[list[Any]] = []  # [column values, handled?] per row not yet taken by a writer
        self._writing = False
        self._queued = self._handled = 0  # rows ever queued, rows ever committed or given up on
        self._background: threading.Thread | None = None

    def write(self, row: dict[str, Any], wait: bool = True) -> None:
        """Insert `row` (attribute names as keys); with `wait`, return once it is committed (or its failure
        logged), else at once (a background writer commits it)."""
        with spans.span("call_log.write", deferred=not wait):  # a deferred row's span covers only its queueing
            self._write(row, wait)

    def _write(self, row: dict[str, Any], wait: bool) -> None:
        entry = [{_LOG_COLUMNS[k]: v for k, v in row.items()}, False]
        with self._cond:
            self._queue.append(entry)
            self._queued += 1
            if not wait:
                if self._background is None:
                    self._background = threading.Thread(
                        target=self._write_in_background, daemon=True, name="call-log-writer"
                    )
                    self._background.start()
                self._cond.notify_all()
                return
            while self._writing and not entry[1]:
                self._cond.wait()
            if entry[1]:  # another caller's transaction carried it
                return
            batch = self._take()
        self._write_batch(batch)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every row queued before this call is committed (or given up on)."""
        with self._cond:
            target = self._queued
            return self._cond.wait_for(lambda: self._handled >= target, timeout)

    def _take(self) -> list[list[Any]]:
        """Become the writer and take the queue (the caller holds the lock)."""
        self._writing = True
        batch, self._queue = self._queue, []
        return batch

    def _write_batch(self, batch: list[list[Any]]) -> None:
        try:
            self._insert([values for values, _ in batch])
        finally:
            with self._cond:
                for handled in batch:
                    handled[1] = True
                self._handled += len(batch)
                self._writing = False
                self._cond.notify_all()

    def _write_in_background(self) -> None:
        while True:
            with self._cond:
                if not self._cond.wait_for(lambda: self._queue and not self._writing, self.IDLE_S):
                    if not self._queue:  # idle: end; the next deferred write starts another
                        self._background = None
                        return
                    continue
            if self.COALESCE_S:  # let rows of calls finishing about now join this transaction
                time.sleep(self.COALESCE_S)
            with self._cond:
                if not self._queue or self._writing:  # a waiting caller took them meanwhile
                    continue
                batch = self._take()
            self._write_batch(batch)

    def _insert(self, batch: list[dict[str, Any]]) -> None:
        try:
            self._insert_once(batch)
            return
        except Exception:  # one bad row must not cost the others theirs: retry one by one
            if len(batch) == 1:
                log.exception("could not write call-log row %s", batch[0].get("request_id"))
                return
        for values in batch:
            try:
                self._insert_once([values])
            except Exception:  # the user's answer must not be lost because the log is unavailable
                log.exception("could not write call-log row %s", values.get("request_id"))

    def _insert_once(self, batch: list[dict[str, Any]]) -> None:
        with self.engine.begin() as conn:
            _insert(conn, batch)
