"""Group commit for the small transactions of queued work: concurrent threads' writes share one transaction.

A worker process runs many items at once (one per thread), and each item writes a few rows: its claim, its answers,
its end. On SQLite every such transaction queues for the one write lock (whose busy handler sleeps 1, 2, 5, 10… ms
between tries), on PostgreSQL each is a round trip and a commit. `GroupCommit.run(work)` queues `work` (a function of
a Connection) and either waits while another thread's transaction is in progress, or (when none is) becomes the writer
and runs every queued work in one transaction. The writer then wakes its own callers and hands the queue to one
waiting caller, the next writer, instead of waking every waiting thread to race for it (with a worker's threads
waiting for their claims, that herd cost each commit a round of GIL handoffs: bench/group_commit.py). Each caller gets
its own work's result, or its own exception: when a shared transaction fails, its works are run again one transaction
each, so one bad work costs the others nothing. The same pattern as the call log's writer (lib.gateway.call_log),
for arbitrary writes.

`submit(work, then)` queues a work without waiting: the next caller's transaction carries it (or a background
committer, after COALESCE_S), and `then(error)` runs once it is committed. A worker thread submits its item's end and
goes on: its next claim's transaction carries that end, so no thread starts a call before its last item's end is
committed, and the end costs the thread no wait of its own.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError

from lib.gateway.call_log import lock_rollups

log = logging.getLogger(__name__)
T = TypeVar("T")
DEADLOCK_TRIES = 3  # a work alone in its transaction is run again this often when the database breaks a deadlock
Work = Callable[[Connection], Any]  # a Core connection: a Session costs ~0.1 ms more per item


class _Entry:
    __slots__ = ("before", "done", "error", "result", "signal", "then", "work")

    def __init__(
        self, work: Work, before: Callable[[], Any] | None, then: Callable[[BaseException | None], Any] | None = None
    ) -> None:
        self.work, self.before, self.then = work, before, then
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None
        # a caller's entry: released once when it is done, or when its caller is to write the queue (`run`)
        self.signal: threading.Lock | None = None
        if then is None:
            self.signal = threading.Lock()
            self.signal.acquire()


class GroupCommit:
    """Runs concurrent callers' works in shared transactions; `run` returns once the caller's work is committed."""

    COALESCE_S = 0.002  # a submitted work waits this long for a caller's transaction to carry it (the thread that
    # submitted it claims its next item within ~0.5 ms when there is one; at the end of a run nothing comes)
    IDLE_S = 5.0  # the background committer ends after this long without submitted work

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        # Waiting callers are woken one by one (each entry's signal), not all at once on every commit: with a
        # worker's threads waiting for their claims, waking them all cost each commit a herd of GIL handoffs.
        self._background_wake = threading.Condition(self._lock)  # the background committer waits on it
        self._settled_cond = threading.Condition(self._lock)  # `flush` waits on it
        self._queue: list[_Entry] = []
        self._writing = False
        self._submitted = self._settled = 0  # works ever submitted; those committed (or failed) and followed up
        self._followups: list[_Entry] = []  # submitted works committed or failed, whose `then` has not run yet
        self._background: threading.Thread | None = None

    def run(self, work: Callable[[Connection], T], before: Callable[[], Any] | None = None) -> T:
        """Run `work(connection)` in a transaction (maybe shared with other threads' works) and return its result once
        committed; its exception is raised here. `before` (e.g. flushing the call log) runs before the transaction,
        after this work was queued (once per distinct function per transaction)."""
        entry = _Entry(work, before)
        assert entry.signal is not None
        with self._lock:
            self._queue.append(entry)
            writer = not self._writing
            if writer:
                self._writing = True
        if not writer:
            entry.signal.acquire()  # done, or the last writer handed the queue (this entry among it) to this caller
        if not entry.done:
            with self._lock:
                batch, self._queue = self._queue, []
            self._write(batch)
        if entry.error is not None:
            raise entry.error
        return entry.result

    def submit(self, work: Work, then: Callable[[BaseException | None], Any] | None = None) -> None:
        """Queue `work` for the next transaction and return at once; `then(error)` (error None once committed) runs
        afterwards in the background committer's thread."""
        with self._lock:
            self._queue.append(_Entry(work, None, then or _nothing))
            self._submitted += 1
            self._ensure_background()
            self._background_wake.notify()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every work submitted so far is committed (or failed) and its `then` has run."""
        with self._lock:
            target = self._submitted
            return self._settled_cond.wait_for(lambda: self._settled >= target, timeout)

    def _write(self, batch: list[_Entry]) -> None:
        """Commit `batch` (the caller took it and is the writer), wake its callers, hand submitted works to their
        follow-up, and hand the queue to the next waiting caller (or to the background committer)."""
        try:
            self._commit(batch)
        finally:
            with self._lock:
                for e in batch:
                    e.done = True
                submitted = [e for e in batch if e.signal is None]
                if submitted:
                    self._followups += submitted
                    self._ensure_background()
                heir = next((e.signal for e in self._queue if e.signal is not None), None)
                if heir is None:  # only submitted works wait, if any: the background committer takes them
                    self._writing = False
                self._background_wake.notify()
            for e in batch:
                if e.signal is not None:
                    e.signal.release()
            if heir is not None:  # still writing: that caller takes the queue (its own work among it)
                heir.release()

    def _ensure_background(self) -> None:  # the caller holds the lock
        if self._background is None:
            self._background = threading.Thread(target=self._background_loop, daemon=True, name="group-commit")
            self._background.start()

    def _background_loop(self) -> None:
        """Commit submitted works no caller's transaction carried, and run their follow-ups."""
        wake = self._background_wake
        while True:
            batch: list[_Entry] = []
            with self._lock:
                if not wake.wait_for(lambda: self._followups or (self._queue and not self._writing), self.IDLE_S):
                    if not self._queue and not self._followups:  # idle: end; the next submit starts another
                        self._background = None
                        return
                    continue
                if not self._followups:  # a worker's next claim usually comes within COALESCE_S and carries them
                    wake.wait_for(lambda: self._followups or not self._queue, self.COALESCE_S)
                followups, self._followups = self._followups, []
                if not followups and self._queue and not self._writing:
                    self._writing = True
                    batch, self._queue = self._queue, []
            for e in followups:
                self._follow_up(e)
            if batch:
                self._write(batch)

    def _follow_up(self, entry: _Entry) -> None:
        try:
            assert entry.then is not None
            entry.then(entry.error)
        except Exception:  # a follow-up failing must not stop the committer: the others still run
            log.exception("a follow-up of a group commit failed")
        finally:
            with self._lock:
                self._settled += 1
                self._settled_cond.notify_all()

    def _commit(self, batch: list[_Entry]) -> None:
        # Each transaction takes the call log's rollup lock (PostgreSQL) before any row lock: its works may insert
        # call-log rows, which take it anyway, and a transaction that held item rows while waiting for it could
        # close a cycle with one that holds it and claims one of those items (a duplicate delivery).
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
                with self.engine.begin() as s:
                    lock_rollups(s)
                    results = [e.work(s) for e in todo]
            except Exception:  # one work failed: run each alone, so only its caller sees the error
                pass
            else:
                for e, r in zip(todo, results):
                    e.result = r
                return
        for e in todo:
            for attempt in range(1, DEADLOCK_TRIES + 1):
                try:
                    with self.engine.begin() as s:
                        lock_rollups(s)
                        e.result = e.work(s)
                except Exception as exc:
                    if attempt < DEADLOCK_TRIES and _deadlocked(exc):  # the database chose it to undo: run it again
                        continue
                    e.error = exc
                break


def _nothing(_error: BaseException | None) -> None:
    """The follow-up of a work submitted without one."""


def _deadlocked(exc: BaseException) -> bool:
    """Whether PostgreSQL rolled the transaction back to break a deadlock or a serialization conflict (retry it)."""
    return isinstance(exc, OperationalError) and getattr(exc.orig, "sqlstate", None) in ("40P01", "40001")


_groups: weakref.WeakKeyDictionary[Engine, GroupCommit] = weakref.WeakKeyDictionary()
_groups_lock = threading.Lock()


def group_commit(engine: Engine) -> GroupCommit:
    """This process's GroupCommit on `engine` (one per engine, so every thread's writes can share a transaction)."""
    with _groups_lock:
        group = _groups.get(engine)
        if group is None:
            group = _groups[engine] = GroupCommit(engine)
        return group
