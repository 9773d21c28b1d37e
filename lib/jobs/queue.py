"""The task queue: a Huey instance from the settings, one task that runs a job item by kind, and its consumers.

Embedded (the default): SqliteHuey in the data dir, consumed by worker threads inside the app process; an enqueue
in the same process wakes an idle worker at once. Server mode (WORKBENCH_QUEUE_URL=redis://…): RedisHuey, consumed
by `python -m lib.cli worker` processes on any machine (workers block on the list, so they start work at once).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

from huey import RedisHuey, SqliteHuey
from huey.api import Huey
from huey.consumer import Consumer, Worker
from huey.storage import RedisStorage, SqliteStorage
from sqlalchemy import Connection, Engine

from lib.core.settings import Settings
from lib.gateway.call_log import insert_rows
from lib.jobs import items
from lib.jobs.commits import group_commit
from lib.jobs.items import Cancelled, ItemContext

log = logging.getLogger(__name__)
QUEUE_NAME = "workbench"
TASK_NAME = "workbench.run_item"
Handler = Callable[[ItemContext], "tuple[str, str | None] | None"]  # returns (status, error) or None for done
_wakes: dict[str, threading.Semaphore] = {}
_wakes_lock = threading.Lock()


def queue_location(settings: Settings) -> str:
    """Where the queue lives: the Redis URL, or the SQLite file in the data dir."""
    return settings.queue_url or str(settings.data_dir / "queue.db")


class _NoRevoke:
    """Cancelling lives in the job items (lib.jobs.items.cancel), never in Huey's revoke keys: skip their per-task
    reads and deletes, which are writes to the queue on every task (measured: bench/queue.py)."""

    def is_revoked(self, task: Any, timestamp: Any = None, peek: bool = True) -> bool:
        return False

    def delete(self, key: str) -> Any:
        if key.startswith("r:"):
            return None
        return super().delete(key)  # type: ignore[misc]


class _SqliteHuey(_NoRevoke, SqliteHuey):
    pass


class _RedisHuey(_NoRevoke, RedisHuey):
    pass


def make_huey(settings: Settings) -> Huey:
    """RedisHuey on WORKBENCH_QUEUE_URL, else SqliteHuey in the data dir; task results are not kept."""
    if settings.queue_url:
        return _RedisHuey(QUEUE_NAME, url=settings.queue_url, results=False, blocking=True, read_timeout=1)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # No fsync per message: the database's job items are the record, and a message lost in a power cut is enqueued
    # again by the sweep (requeue_stale), so the queue file need not survive one on its own.
    return _SqliteHuey(QUEUE_NAME, filename=queue_location(settings), results=False, timeout=30, fsync=False)


def _wake(location: str) -> threading.Semaphore:
    with _wakes_lock:
        return _wakes.setdefault(location, threading.Semaphore(0))


class WorkQueue:
    """Enqueues job items by id and runs them with the handler registered for their kind."""

    def __init__(self, settings: Settings, engine: Engine, huey: Huey | None = None) -> None:
        self.settings, self.engine = settings, engine
        self.huey = huey or make_huey(settings)
        self.location = queue_location(settings)
        self.wake = _wake(self.location)  # shared by every WorkQueue on this location in the process
        self.handlers: dict[str, Handler] = {}
        self.on_job_end: dict[str, Callable[[int], None]] = {}
        self.overlap: set[str] = set()  # kinds whose handlers hold a call slot only around their model calls
        self.slots: threading.Semaphore | None = None  # a consumer's call slots (QueueConsumer), None: no limit here
        self._task = self.huey.task(name=TASK_NAME)(self._run_delivered)

    @property
    def stale_s(self) -> float:
        """An item whose worker has not shown a sign of life for this long is queued again."""
        return 3 * self.settings.job_heartbeat_s

    def register(
        self, kind: str, handler: Handler, on_job_end: Callable[[int], None] | None = None, overlap: bool = False
    ) -> None:
        """Run items of `kind` with `handler`; `on_job_end(job_id)` runs after each of them ends.

        An item holds one of the consumer's call slots while its handler runs; with `overlap` only while the handler
        is inside `ctx.calling()` (around each model call), so a worker's spare threads claim, read and record
        other items while the calls are in flight, and that work is not on the path from one call to the next.
        """
        self.handlers[kind] = handler
        if on_job_end is not None:
            self.on_job_end[kind] = on_job_end
        if overlap:
            self.overlap.add(kind)
        else:
            self.overlap.discard(kind)

    def periodic(self, name: str, schedule: Callable[[Any], bool], work: Callable[[], Any]) -> None:
        """Run `work` on `schedule` (a huey.crontab); every consumer schedules it, so `work` must be idempotent."""

        def run() -> None:
            try:
                work()
            except Exception:  # housekeeping failing once is logged; the next run tries again
                log.exception("periodic task %s failed", name)

        self.huey.periodic_task(schedule, name=f"workbench.{name}")(run)

    def enqueue(self, kind: str, item_ids: list[int]) -> None:
        """Put items on the queue (their rows must exist and be queued); wakes an idle worker here."""
        tasks = [self._task.s(kind, item_id) for item_id in item_ids]
        storage = self.huey.storage
        if isinstance(storage, SqliteStorage) and len(tasks) > 1:  # one transaction, not one commit per message
            rows = [(storage.name, storage.to_blob(self.huey.serialize_task(t)), 0) for t in tasks]
            with storage.db(commit=True) as cursor:
                cursor.executemany("insert into task (queue, data, priority) values (?, ?, ?)", rows)
        elif isinstance(storage, RedisStorage) and len(tasks) > 1:  # one LPUSH, not one round trip per message
            storage.conn.lpush(storage.queue_key, *(self.huey.serialize_task(t) for t in tasks))
        else:
            for task in tasks:
                self.huey.enqueue(task)
        for _ in tasks:
            self.wake.release()

    def pending(self) -> int:
        """Messages waiting in the queue."""
        return int(self.huey.pending_count())

    def _run_delivered(self, kind: str, item_id: int) -> None:
        """The task a worker runs for a queued message: the item's end is committed while the thread goes on."""
        self.run_item(kind, item_id, wait=False)

    def run_item(self, kind: str, item_id: int, wait: bool = True) -> None:
        """The task: claim the item, run its handler, record how it ended (runs in a worker).

        `wait`: return once the end is recorded; else submit it to this process's group commit (the thread's next
        claim carries it, so the thread never has two items' calls unrecorded) and go on at once.
        """
        handler = self.handlers.get(kind)
        if handler is None:
            log.error("no handler for %s items in this process; item %s stays queued", kind, item_id)
            return
        worker, group = items.worker_id(), group_commit(self.engine)
        # the claim and the end share transactions with the other worker threads' writes (group commit)
        item = group.run(lambda s: items.claim_in(s, item_id, worker))
        if item is None:
            return  # done, cancelled, or another worker has it: a duplicate delivery
        status, error = "done", None
        # An item without overlap holds a slot from its claim to its end. It is claimed first, and waits for the
        # slot as a running item with a heartbeat: a message held unclaimed by a waiting thread would look lost to
        # the sweep (requeue_stale) and be delivered twice.
        ctx = ItemContext(self.engine, item, worker, slots=self.slots)
        try:
            with nullcontext() if kind in self.overlap else ctx.calling():
                outcome = handler(ctx)
            if outcome is not None:
                status, error = outcome
        except Cancelled:
            status = "cancelled"
        except Exception as exc:  # the item fails with its reason; the worker goes on with the next
            log.exception("%s item %s failed", kind, item_id)
            status, error = "failed", items.describe_error(exc)

        def record_end(s: Connection) -> None:  # its calls' log rows, last writes and end: one transaction
            insert_rows(s, ctx.call_rows)
            for write in ctx.at_end:
                write(s)
            items.finish_in(s, item_id, worker, status, error)

        def ended(failure: BaseException | None) -> None:
            if failure is not None:  # its last writes failed: the item fails with the reason (a retry runs it again)
                log.error("%s item %s could not be recorded: %r", kind, item_id, failure)
                self._log_calls_alone(ctx.call_rows)
                items.finish(self.engine, item_id, worker, "failed", items.describe_error(failure))
            if end := self.on_job_end.get(kind):
                end(item.job_id)

        if not wait:
            group.submit(record_end, then=ended)
            return
        try:
            group.run(record_end)
        except Exception as exc:
            ended(exc)
        else:
            ended(None)

    def _log_calls_alone(self, rows: list[dict[str, Any]]) -> None:
        """Commit an item's call-log rows on their own when its end could not be recorded: every call is logged."""
        try:
            with self.engine.begin() as conn:
                insert_rows(conn, rows)
        except Exception:  # as the call log's writer does: logged, and the item's failure is still recorded
            log.exception("could not write the call-log rows of a failed item")

    def sweep(self) -> int:
        """Enqueue again the items of dead workers and lost messages; returns how many."""
        again = items.requeue_stale(self.engine, self.stale_s, queue_empty=self.pending() == 0)
        for kind, item_id in again:
            self.enqueue(kind, [item_id])
        if again:
            log.warning("re-queued %d item(s) of stopped workers", len(again))
        return len(again)


class _WakeableWorker(Worker):
    wake: threading.Semaphore
    delay: float
    default_delay: float
    max_delay: float
    backoff: float

    def sleep(self) -> None:  # an enqueue in this process wakes one idle worker at once, instead of its next poll
        self.delay = min(self.delay, self.max_delay)
        if self.wake.acquire(timeout=self.delay):
            self.delay = self.default_delay
        else:
            self.delay *= self.backoff


def spare_threads(threads: int) -> int:
    """Threads a consumer runs beyond its `threads` call slots: as many again, so that when a round of calls ends
    together every slot finds an item already claimed and read (measured with bench/compare.py: a quarter more
    left most slots waiting 20-60 ms for a claim after the first round). Items of kinds without overlap hold a slot
    for their whole run, so no more than `threads` of them are worked on at once (a claimed one may wait)."""
    return threads


class QueueConsumer(Consumer):
    """Huey's consumer (worker threads and the periodic scheduler) for a WorkQueue, with a heartbeat thread.

    `threads`: call slots, i.e. model calls (or items without overlap) at once (WorkQueue.register); the consumer
    runs as many spare threads beyond them (`spare_threads`). `embedded`: started from a thread that is not the
    main one (Streamlit), so no signal handlers are installed.
    """

    worker_class = _WakeableWorker

    def __init__(self, queue: WorkQueue, threads: int, embedded: bool = True, periodic: bool = True) -> None:
        self.queue, self.embedded = queue, embedded
        queue.slots = threading.BoundedSemaphore(threads)  # `threads` items' model calls at once
        polled = not queue.huey.storage.blocking
        super().__init__(
            queue.huey,
            workers=threads + spare_threads(threads),
            periodic=periodic,
            initial_delay=0.05,
            backoff=1.5,
            max_delay=1.0 if polled else 10.0,  # another process's enqueue is seen within a second
            worker_type="thread",
            graceful_signal="TERM",  # SIGTERM (a deploy, `kill`): finish the items in hand, then exit
        )
        self._beat_stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, name="workbench-heartbeat", daemon=True)

    def _create_worker(self) -> _WakeableWorker:
        worker = super()._create_worker()
        worker.wake = self.queue.wake
        return worker

    def _set_signal_handlers(self) -> None:
        if not self.embedded:
            super()._set_signal_handlers()

    def _heartbeat(self) -> None:
        worker = items.worker_id()
        while not self._beat_stop.is_set():
            try:
                items.beat(self.queue.engine, worker)
                self.queue.sweep()
            except Exception:  # a database hiccup: the next beat tries again
                log.exception("job heartbeat failed")
            self._beat_stop.wait(self.queue.settings.job_heartbeat_s)

    def start(self) -> None:
        """Start the workers, the scheduler and the heartbeat (which first re-queues dead workers' items)."""
        super().start()
        self._beat.start()

    def stop(self, graceful: bool = False) -> None:
        """Stop taking work; `graceful` waits for the items in hand to finish."""
        self._beat_stop.set()
        self.stop_flag.set()
        for _ in self.worker_threads:
            self.queue.wake.release()
        super().stop(graceful=graceful)
        group_commit(self.queue.engine).flush(timeout=30 if graceful else 5)  # the items' ends workers submitted
        if graceful:
            self._beat.join(timeout=5)


_embedded: dict[str, QueueConsumer] = {}
_embedded_lock = threading.Lock()


def ensure_embedded(queue: WorkQueue, threads: int) -> QueueConsumer | None:
    """Start this process's consumer for the queue's location, once; a later call hands it the newer handlers.

    None when `threads` is 0 (this process only enqueues; `lib.cli worker` processes do the work).
    """
    if threads <= 0:
        return None
    with _embedded_lock:
        running = _embedded.get(queue.location)
        if running is not None:
            running.queue.handlers.update(queue.handlers)  # settings changed: the newest services run the items
            running.queue.on_job_end.update(queue.on_job_end)
            running.queue.engine = queue.engine
            return running
        consumer = QueueConsumer(queue, threads, embedded=True)
        consumer.start()
        _embedded[queue.location] = consumer
        return consumer


def stop_embedded(graceful: bool = True) -> None:
    """Stop this process's embedded consumers (tests; an app process simply exits)."""
    with _embedded_lock:
        consumers = list(_embedded.values())
        _embedded.clear()
    for consumer in consumers:
        consumer.stop(graceful=graceful)
