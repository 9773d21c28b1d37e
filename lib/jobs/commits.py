"""Group commit for the small transactions of queued work: concurrent threads' writes share one transaction.

A worker process runs many items at once (one per thread), and each item writes a few rows: its claim, its answers,
its end. On SQLite every such transaction queues for the one write lock (whose busy handler sleeps 1, 2, 5, 10… ms
between tries), on PostgreSQL each is a round trip and a commit. `GroupCommit.run(work)` queues `work` (a function of
a Session) and either waits while another thread's transaction is in progress, or (when none is) becomes the writer
and runs every queued work in one transaction. Each caller gets its own work's result, or its own exception: when a
shared transaction fails, its works are run again one transaction each, so one bad work costs the others nothing.
The same pattern as the call log's writer (lib.gateway.call_log), for arbitrary writes.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session

T = TypeVar("T")
Work = Callable[[Session], Any]


class _Entry:
    __slots__ = ("before", "done", "error", "result", "work")

    def __init__(self, work: Work, before: Callable[[], Any] | None) -> None:
        self.work, self.before = work, before
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None


class GroupCommit:
    """Runs concurrent callers' works in shared transactions; `run` returns once the caller's work is committed."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._cond = threading.Condition()
        self._queue: list[_Entry] = []
        self._writing = False

    def run(self, work: Callable[[Session], T], before: Callable[[], Any] | None = None) -> T:
        """Run `work(session)` in a transaction (maybe shared with other threads' works) and return its result once
        committed; its exception is raised here. `before` (e.g. flushing the call log) runs before the transaction,
        after this work was queued (once per distinct function per transaction)."""
        entry = _Entry(work, before)
        with self._cond:
            self._queue.append(entry)
            while self._writing and not entry.done:
                self._cond.wait()
            if not entry.done:
                self._writing = True
                batch, self._queue = self._queue, []
            else:
                batch = []
        if batch:
            try:
                self._commit(batch)
            finally:
                with self._cond:
                    for e in batch:
                        e.done = True
                    self._writing = False
                    self._cond.notify_all()
        if entry.error is not None:
            raise entry.error
        return entry.result

    def _commit(self, batch: list[_Entry]) -> None:
        seen: list[Callable[[], Any]] = []
        for e in batch:
            if e.before is not None and e.before not in seen:  # bound methods of one object compare equal
                seen.append(e.before)
                try:
                    e.before()
                except Exception as exc:  # that caller's work cannot go on; the others' can
                    e.error = exc
        todo = [e for e in batch if e.error is None]
        if not todo:
            return
        if len(todo) > 1:
            try:
                with Session(self.engine, expire_on_commit=False) as s, s.begin():
                    results = [e.work(s) for e in todo]
            except Exception:  # one work failed: run each alone, so only its caller sees the error
                pass
            else:
                for e, r in zip(todo, results):
                    e.result = r
                return
        for e in todo:
            try:
                with Session(self.engine, expire_on_commit=False) as s, s.begin():
                    e.result = e.work(s)
            except Exception as exc:
                e.error = exc


_groups: weakref.WeakKeyDictionary[Engine, GroupCommit] = weakref.WeakKeyDictionary()
_groups_lock = threading.Lock()


def group_commit(engine: Engine) -> GroupCommit:
    """This process's GroupCommit on `engine` (one per engine, so every thread's writes can share a transaction)."""
    with _groups_lock:
        group = _groups.get(engine)
        if group is None:
            group = _groups[engine] = GroupCommit(engine)
        return group
