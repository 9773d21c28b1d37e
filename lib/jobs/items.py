"""Job items: one row per unit of queued work, claimed by one worker at a time, with progress and a heartbeat.

The queue may deliver an item twice (a stale item is re-queued, a retry is enqueued again); the conditional claim
lets exactly one worker run it. A worker that dies leaves its items `running` with a stale heartbeat (or, on this
machine, a dead pid): `requeue_stale` puts them back, so every item runs at least once and is recorded once.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    CursorResult,
    Engine,
    Table,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session

from lib.core.tables import JobBlob, JobItem, utcnow

FINAL = ("done", "failed", "cancelled")
ACTIVE = ("queued", "running")
REPORT_EVERY_S = 0.5  # progress is written (and a cancel noticed) at most this often per item
ERROR_CHARS = 500  # an item's error text is cut to this
SLOT_CHECK_S = 1.0  # an item waiting for a call slot looks for a cancel this often


class Cancelled(Exception):
    """The item was cancelled (or taken over by another worker) while it ran; it stops without a result."""


class ItemError(ValueError):
    """A job cannot be cancelled or retried as asked; the message says why."""


def worker_id() -> str:
    """This process as a worker: host:pid (the pid lets a process on the same host tell it is dead)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def process_alive(worker: str | None) -> bool | None:
    """Whether the process named host:pid is alive: True/False on this host, None (unknown) on another."""
    if not worker or ":" not in worker:
        return False
    host, pid = worker.rsplit(":", 1)
    if host != socket.gethostname():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return int(pid) == os.getpid() or Path(f"/proc/{pid}").exists()


def _session(engine: Engine) -> Session:
    return Session(engine, expire_on_commit=False)


def _changed(s: Session, stmt: Any) -> int:
    """Rows an UPDATE or DELETE changed."""
    return cast(CursorResult, s.execute(stmt)).rowcount


def add_items(
    engine: Engine,
    kind: str,
    job_id: int,
    entries: Iterable[tuple[int, str, dict[str, Any]]],
    blobs: Iterable[bytes | None] | None = None,
) -> list[int]:
    """Record queued items (position, name, progress) of a job, with the bytes each needs; returns their ids."""
    entries, data = list(entries), list(blobs or [])
    if not entries:
        return []
    rows = [
        {"kind": kind, "job_id": job_id, "position": p, "name": n, "status": "queued", "progress": dict(d)}
        for p, n, d in entries
    ]
    with _session(engine) as s, s.begin():  # one multi-row INSERT … RETURNING: ~4x less CPU than ORM objects
        ids = list(s.scalars(_ADD, rows))
        blob_rows = [{"item_id": i, "data": b} for i, b in zip(ids, data) if b is not None]
        if blob_rows:
            s.execute(insert(JobBlob), blob_rows)
        return ids


# Every queued item is claimed and finished once: these run as Core statements built once, with parameters (an ORM
# bulk UPDATE, and building the statement, cost ~0.6 ms of CPU per item, the claim and the finish each).
_ITEMS = cast(Table, JobItem.__table__)
_ATTRS = [(attr.key, attr.columns[0]) for attr in JobItem.__mapper__.column_attrs]
_ADD = insert(_ITEMS).returning(_ITEMS.c.id, sort_by_parameter_order=True)  # ids in the order of the rows
_CLAIM = (
    update(_ITEMS)
    .where(_ITEMS.c.id == bindparam("b_id"), _ITEMS.c.status == "queued", _ITEMS.c.cancel_requested.is_(False))
    .values(
        status="running",
        worker=bindparam("b_worker"),
        attempts=_ITEMS.c.attempts + 1,
        heartbeat_at=bindparam("b_now"),
        error=None,
    )
    .returning(*(column for _, column in _ATTRS))
)
_FINISH = (
    update(_ITEMS)
    .where(_ITEMS.c.id == bindparam("b_id"), _ITEMS.c.worker == bindparam("b_worker"), _ITEMS.c.status == "running")
    .values(status=bindparam("b_status"), error=bindparam("b_error"), finished_at=bindparam("b_now"))
)
_BLOBS = cast(Table, JobBlob.__table__)
_DROP_BLOB = delete(_BLOBS).where(_BLOBS.c.item_id == bindparam("b_id"))


def claim(engine: Engine, item_id: int, worker: str) -> JobItem | None:
    """Take a queued item for `worker` (running, attempts + 1); None if it is not queued (done, taken, cancelled).

    One UPDATE ... RETURNING: the claim is a single statement, so it costs one write per item.
    """
    with engine.begin() as conn:
        return claim_in(conn, item_id, worker)


def claim_in(conn: Connection | Session, item_id: int, worker: str) -> JobItem | None:
    """`claim` in the caller's transaction (e.g. shared with other threads' writes: lib.jobs.commits)."""
    row = conn.execute(_CLAIM, {"b_id": item_id, "b_worker": worker, "b_now": utcnow()}).one_or_none()
    if row is None:
        return None
    return JobItem(**{key: row[i] for i, (key, _) in enumerate(_ATTRS)})  # the row as claimed, in no session


def read_blob(engine: Engine, item_id: int) -> bytes | None:
    """The bytes stored with an item, or None."""
    with _session(engine) as s:
        return s.scalar(select(JobBlob.data).where(JobBlob.item_id == item_id))


@dataclass
class ItemContext:
    """What a task handler gets: its item, and a way to report progress that also notices a cancel."""

    engine: Engine
    item: JobItem
    worker: str
    _last: float = 0.0
    progress: dict[str, Any] = field(default_factory=dict)
    # writes the handler leaves to the item's end: committed in one transaction with it (WorkQueue.run_item), so
    # an item is never done without them and they cost no transaction of their own
    at_end: list[Callable[[Connection], Any]] = field(default_factory=list)
    # call-log rows of the item's model calls (CallContext.log_rows), committed with the item's end
    call_rows: list[dict[str, Any]] = field(default_factory=list)
    # the worker's call slots (WorkQueue.register(..., overlap=True)): `calling()` holds one around a model call
    slots: threading.Semaphore | None = None
    _holding: bool = False

    def __post_init__(self) -> None:
        self.progress = dict(self.item.progress)

    @contextmanager
    def calling(self) -> Iterator[None]:
        """Hold one of the worker's call slots for the body (a model call); wait for one while checking for a cancel.

        A worker with N threads makes at most N calls at once; its spare threads claim, read and record other
        items meanwhile, so that work is not between one call and the next (WorkQueue.register, overlap=True).
        """
        if self.slots is None or self._holding:  # no limit here, or the whole item holds a slot already
            yield
            return
        while not self.slots.acquire(timeout=SLOT_CHECK_S):
            self.check()
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
            self.slots.release()

    def report(self, changes: dict[str, Any], force: bool = False) -> None:
        """Merge `changes` into the item's progress (written at most every REPORT_EVERY_S unless `force`).

        Raises Cancelled when the item was cancelled or is no longer this worker's.
        """
        self.progress.update(changes)
        now = time.monotonic()
        if not force and now - self._last < REPORT_EVERY_S:
            return
        self._last = now
        with _session(self.engine) as s, s.begin():
            mine = _changed(
                s,
                update(JobItem)
                .where(JobItem.id == self.item.id, JobItem.worker == self.worker, JobItem.status == "running")
                .values(progress=dict(self.progress), heartbeat_at=utcnow()),
            )
            cancelled = s.scalar(select(JobItem.cancel_requested).where(JobItem.id == self.item.id))
        if mine != 1 or cancelled:
            raise Cancelled(f"item {self.item.id} was cancelled or taken over")

    def check(self) -> None:
        """Raise Cancelled if the item was cancelled (a cheap, throttled look at the database)."""
        self.report({})

    def cancelled(self) -> bool:
        """False while the item may go on; raises Cancelled otherwise (for waits that poll a predicate)."""
        self.check()
        return False


def finish(engine: Engine, item_id: int, worker: str, status: str, error: str | None = None) -> bool:
    """Record an item's end (done, failed or cancelled) if `worker` still holds it; its bytes go once it is done."""
    with engine.begin() as conn:
        return finish_in(conn, item_id, worker, status, error)


def finish_in(conn: Connection | Session, item_id: int, worker: str, status: str, error: str | None = None) -> bool:
    """`finish` in the caller's transaction (with the item's last writes: ItemContext.at_end)."""
    params = {"b_id": item_id, "b_worker": worker, "b_status": status, "b_error": error, "b_now": utcnow()}
    ended = cast(CursorResult, conn.execute(_FINISH, params)).rowcount
    if ended and status == "done":
        conn.execute(_DROP_BLOB, {"b_id": item_id})
    return ended == 1


def beat(engine: Engine, worker: str) -> int:
    """Mark every item `worker` is running as alive now; returns how many.

    On PostgreSQL it skips the rows another transaction holds (the worker's own group commit, claiming or ending
    them this very moment): waiting for them, with its rows locked in another order, deadlocked that commit.
    """
    mine = (
        select(JobItem.id)
        .where(JobItem.worker == worker, JobItem.status == "running")
        .with_for_update(skip_locked=True)  # SQLite locks the whole file and renders no FOR UPDATE
    )
    with _session(engine) as s, s.begin():
        return _changed(s, update(JobItem).where(JobItem.id.in_(mine.scalar_subquery())).values(heartbeat_at=utcnow()))


def describe_error(exc: BaseException) -> str:
    """An item's error text for `exc`: its type and first line, without a database error's SQL and parameters
    (they can hold prompts and answers, and run to pages)."""
    orig = getattr(exc, "orig", None) if isinstance(exc, StatementError) else None
    first = (str(orig if isinstance(orig, BaseException) else exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}"[:ERROR_CHARS]


def requeue_stale(engine: Engine, stale_s: float, queue_empty: bool) -> list[tuple[str, int]]:
    """Items to enqueue again: running ones whose worker died (dead pid here, or silent for `stale_s`), and,
    when the queue is empty, queued ones whose message was lost (dequeued by a worker that died before its claim).
    Returns (kind, id) pairs, already marked queued."""
    now = utcnow()
    cutoff = now - timedelta(seconds=stale_s)
    out: list[tuple[str, int]] = []
    with _session(engine) as s:
        running = s.execute(
            select(JobItem.id, JobItem.kind, JobItem.worker, JobItem.heartbeat_at).where(JobItem.status == "running")
        ).all()
        lost = (
            s.execute(
                select(JobItem.id, JobItem.kind).where(JobItem.status == "queued", JobItem.enqueued_at < cutoff)
            ).all()
            if queue_empty
            else []
        )
    for item_id, kind, worker, heartbeat in running:
        alive = process_alive(worker)
        if heartbeat is not None and heartbeat.tzinfo is None:
            heartbeat = heartbeat.replace(tzinfo=now.tzinfo)
        if alive is False or (alive is None and (heartbeat is None or heartbeat < cutoff)):
            with _session(engine) as s, s.begin():
                moved = _changed(
                    s,
                    update(JobItem)
                    .where(JobItem.id == item_id, JobItem.status == "running", JobItem.worker == worker)
                    .values(status="queued", enqueued_at=now),
                )
            if moved:
                out.append((kind, item_id))
    for item_id, kind in lost:
        with _session(engine) as s, s.begin():
            if _changed(
                s,
                update(JobItem)
                .where(JobItem.id == item_id, JobItem.status == "queued", JobItem.enqueued_at < cutoff)
                .values(enqueued_at=now),
            ):
                out.append((kind, item_id))
    return out


def job_items(engine: Engine, kind: str, job_ids: Iterable[int]) -> dict[int, list[JobItem]]:
    """The items of each job, in position order (jobs without items are absent)."""
    ids = list(job_ids)
    out: dict[int, list[JobItem]] = {}
    if not ids:
        return out
    with _session(engine) as s:
        for item in s.scalars(
            select(JobItem).where(JobItem.kind == kind, JobItem.job_id.in_(ids)).order_by(JobItem.position)
        ):
            out.setdefault(item.job_id, []).append(item)
    return out


def overall_status(statuses: Iterable[str]) -> str:
    """A job's status from its items': queued, running, then done, failed (all failed) or cancelled."""
    seen = list(statuses)
    if not seen or all(s == "queued" for s in seen):
        return "queued"
    if any(s in ACTIVE for s in seen):
        return "running"
    if "cancelled" in seen:
        return "cancelled"
    return "failed" if all(s == "failed" for s in seen) else "done"


def none_active(kind: str, job_id: Any) -> ColumnElement[bool]:
    """A WHERE clause true while none of the job's items is queued or running, when the statement runs: a job's
    final status, worked out from items read a moment earlier, is written only if no retry or decision has put an
    item back on the queue since."""
    return ~exists().where(JobItem.kind == kind, JobItem.job_id == job_id, JobItem.status.in_(ACTIVE))


def settled_status(engine: Engine, kind: str, job_id: int) -> str | None:
    """The job's final status once no item is queued or running, else None."""
    with _session(engine) as s:
        statuses = list(s.scalars(select(JobItem.status).where(JobItem.kind == kind, JobItem.job_id == job_id)))
    status = overall_status(statuses)
    return status if statuses and status not in ACTIVE else None


def cancel(engine: Engine, kind: str, job_id: int) -> int:
    """Cancel a job: its queued items at once, its running ones at their next progress report; returns how many."""
    now = utcnow()
    with _session(engine) as s, s.begin():
        queued = _changed(
            s,
            update(JobItem)
            .where(JobItem.kind == kind, JobItem.job_id == job_id, JobItem.status == "queued")
            .values(status="cancelled", cancel_requested=True, finished_at=now),
        )
        running = _changed(
            s,
            update(JobItem)
            .where(JobItem.kind == kind, JobItem.job_id == job_id, JobItem.status == "running")
            .values(cancel_requested=True),
        )
    return queued + running


def requeue(engine: Engine, kind: str, job_id: int, statuses: Iterable[str] = ("failed", "cancelled")) -> list[int]:
    """Put a job's items in `statuses` back in the queue (a retry); returns their ids for enqueueing."""
    now = utcnow()
    with _session(engine) as s, s.begin():
        ids = list(
            s.scalars(
                select(JobItem.id).where(
                    JobItem.kind == kind, JobItem.job_id == job_id, JobItem.status.in_(list(statuses))
                )
            )
        )
        if ids:
            s.execute(
                update(JobItem)
                .where(JobItem.id.in_(ids))
                .values(status="queued", cancel_requested=False, error=None, enqueued_at=now, finished_at=None)
            )
    return ids


def has_items(engine: Engine, kind: str, job_id: int) -> bool:
    """Whether the job runs on the queue (older and command-line jobs have no items)."""
    with _session(engine) as s:
        return bool(s.scalar(select(func.count()).where(JobItem.kind == kind, JobItem.job_id == job_id)))


def delete_old_blobs(engine: Engine, days: float = 7) -> int:
    """Drop the bytes of items that ended more than `days` ago (failed ones keep theirs a while, for a retry)."""
    cutoff = utcnow() - timedelta(days=days)
    with _session(engine) as s, s.begin():
        old = select(JobItem.id).where(
            or_(JobItem.status == "done", and_(JobItem.status.in_(FINAL), JobItem.finished_at < cutoff))
        )
        return _changed(s, delete(JobBlob).where(JobBlob.item_id.in_(old)))
