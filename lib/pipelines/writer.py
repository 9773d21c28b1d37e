"""Group commit for step results: the results of rows finishing a step together go into one transaction.

Each caller returns once its own result is committed (so a completed step is on disk before the row goes on), but N
workers finishing together cost one transaction instead of N queueing for SQLite's single write lock, whose busy
handler sleeps between tries (the call log does the same: lib.gateway.call_log.CallLogWriter).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine

Work = Callable[[Connection], None]


class GroupWriter:
    """Runs callers' writes in shared transactions; `write` returns when the caller's own write is committed."""

    def __init__(self, engine: Engine) -> None:
        self.engine = weakref.proxy(engine)  # the registry is keyed by the engine: no cycle keeping it alive
        self._cond = threading.Condition()
        self._queue: list[list[Any]] = []  # [work, done?, error] per write not yet taken
        self._writing = False

    def write(self, work: Work) -> None:
        """Run `work(conn)` in a transaction (maybe shared with other callers'); raises its error, if any."""
        entry: list[Any] = [work, False, None]
        with self._cond:
            self._queue.append(entry)
            while self._writing and not entry[1]:
                self._cond.wait()
            if not entry[1]:
                self._writing = True
                batch, self._queue = self._queue, []
            else:
                batch = []
        if batch:
            self._run(batch)
        if entry[2] is not None:
            raise entry[2]

    def _run(self, batch: list[list[Any]]) -> None:
        try:
            try:
                with self.engine.begin() as conn:
                    for work, _, _ in batch:
                        work(conn)
            except Exception:  # one bad write must not fail the others: each alone, its error to its caller
                for entry in batch:
                    try:
                        with self.engine.begin() as conn:
                            entry[0](conn)
                    except Exception as exc:
                        entry[2] = exc
        finally:
            with self._cond:
                for entry in batch:
                    entry[1] = True
                self._writing = False
                self._cond.notify_all()


_writers: weakref.WeakKeyDictionary[Engine, GroupWriter] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def writer_for(engine: Engine) -> GroupWriter:
    """The one GroupWriter of `engine` in this process."""
    with _lock:
        found = _writers.get(engine)
        if found is None:
            found = _writers[engine] = GroupWriter(engine)
        return found
