"""A worker's call slots and spare threads, and the writes that ride with an item's end.

A consumer with N threads makes at most N model calls at once; its spare threads claim and read the next items
meanwhile (kinds registered with overlap), while other kinds hold a slot for their whole item. A side item's
call-log row commits in the transaction of its answer and end (no transaction of its own), and is still written
when that transaction fails. PostgreSQL's heartbeat skips rows another transaction holds, and a deadlocked work
is run again.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from test_compare_queue_commits import _count_commits
from test_compare_queue_sides import HeldModel, Seen, a_queue, a_run, run_items
from waiting import wait_for

from lib.compare.runs import KIND, queue_run
from lib.core.db import make_engine, migrate
from lib.core.tables import JobItem, LlmCall, RunResult
from lib.jobs import items
from lib.jobs.commits import GroupCommit
from lib.jobs.queue import QueueConsumer, WorkQueue, spare_threads

ROOT = Path(__file__).resolve().parent.parent


class Counting(HeldModel):
    """A HeldModel that also counts the calls inside it at once (`seen.most`)."""

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        with self.seen:
            self.seen.now = getattr(self.seen, "now", 0) + 1
            self.seen.most = max(getattr(self.seen, "most", 0), self.seen.now)
        try:
            return super()._generate(messages, stop, run_manager, **kwargs)
        finally:
            with self.seen:
                self.seen.now -= 1


@pytest.fixture
def file_engine(tmp_path):
    """A migrated SQLite file (worker threads each take a connection of their own, as in a worker process)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'slots.db'}")
    migrate(engine)
    yield engine
    engine.dispose()


def _running(engine, run_id: int) -> int:
    return sum(i.status == "running" for i in run_items(engine, run_id))


def test_a_worker_makes_at_most_its_threads_calls_at_once_while_a_spare_thread_claims_the_next_item(
    file_engine, tmp_path
):
    release, seen = threading.Event(), Seen()
    models = {m: Counting(release=release, seen=seen) for m in ("m1", "m2")}
    queue, _ = a_queue(file_engine, tmp_path, models, overlap=True)
    assert spare_threads(2) == 2
    consumer = QueueConsumer(queue, threads=2, embedded=True, periodic=False)
    consumer.start()
    try:
        run_id = a_run(file_engine, rows=3)
        queue_run(file_engine, queue, run_id)  # six items, four threads, two call slots
        assert wait_for(lambda: len(seen.waiting) == 2 and _running(file_engine, run_id) == 4, 20)
        # the spare threads have claimed the next items and wait for a slot: no third call reaches the model
        assert not wait_for(lambda: len(seen.waiting) > 2, 0.5)
        release.set()
        assert wait_for(lambda: all(i.status == "done" for i in run_items(file_engine, run_id)), 30)
    finally:
        release.set()
        consumer.stop(graceful=True)
    assert len(seen.waiting) == 6 and seen.most == 2
    with Session(file_engine) as s:
        assert len(list(s.scalars(select(RunResult.id).where(RunResult.run_id == run_id)))) == 6


def test_an_item_of_a_kind_without_overlap_holds_a_slot_for_its_whole_run(file_engine, tmp_path):
    from lib.core.settings import load_settings

    queue = WorkQueue(load_settings(env={"WORKBENCH_DATA_DIR": str(tmp_path)}), file_engine)
    inside, most, release, lock = [0], [0], threading.Event(), threading.Lock()

    def handler(ctx: items.ItemContext) -> None:
        with ctx.calling():  # the whole item holds the slot: this does not wait for a second one
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            assert release.wait(10)
            with lock:
                inside[0] -= 1

    queue.register("t", handler)
    consumer = QueueConsumer(queue, threads=1, embedded=True, periodic=False)  # one slot, one spare thread
    consumer.start()
    try:
        ids = items.add_items(file_engine, "t", 1, [(1, "one", {}), (2, "two", {})])
        queue.enqueue("t", ids)
        assert wait_for(lambda: inside[0] == 1, 20)
        assert not wait_for(lambda: inside[0] > 1, 0.5)  # the second item waits for the one slot, claimed:
        assert [i.status for i in items.job_items(file_engine, "t", [1])[1]] == ["running", "running"]  # no sweep
        release.set()
        assert wait_for(lambda: {i.status for i in items.job_items(file_engine, "t", [1])[1]} == {"done"}, 20)
    finally:
        release.set()
        consumer.stop(graceful=True)
    assert most[0] == 1


def test_a_side_items_call_log_row_commits_with_its_answer_and_end(any_engine, tmp_path):
    release, seen = threading.Event(), Seen()
    release.set()
    queue, _ = a_queue(any_engine, tmp_path, {m: HeldModel(release=release, seen=seen) for m in ("m1", "m2")})
    run_id = a_run(any_engine, rows=1)
    queue_run(any_engine, queue, run_id)
    first = run_items(any_engine, run_id)[0]
    commits = _count_commits(any_engine)
    queue.run_item(KIND, first.id)
    assert commits[0] == 2  # the claim, then the call-log row, the answer and the end together
    with Session(any_engine) as s:
        (answer,) = s.scalars(select(RunResult.request_id).where(RunResult.run_id == run_id))
        logged = list(s.scalars(select(LlmCall.request_id).where(LlmCall.experiment_id == f"run:{run_id}")))
        assert s.get(JobItem, first.id).status == "done"
    assert logged == [answer]


def test_when_an_items_end_cannot_commit_its_calls_are_still_logged(any_engine, tmp_path):
    release, seen = threading.Event(), Seen()
    release.set()
    queue, _ = a_queue(any_engine, tmp_path, {m: HeldModel(release=release, seen=seen) for m in ("m1", "m2")})
    handler = queue.handlers[KIND]

    def refused_end(ctx: items.ItemContext):
        outcome = handler(ctx)
        ctx.at_end.append(lambda s: s.execute(update(JobItem).values(kind=None)))  # violates NOT NULL
        return outcome

    queue.register(KIND, refused_end, queue.on_job_end[KIND])
    run_id = a_run(any_engine, rows=1)
    queue_run(any_engine, queue, run_id)
    first = run_items(any_engine, run_id)[0]
    queue.run_item(KIND, first.id)
    with Session(any_engine) as s:
        item = s.get(JobItem, first.id)
        logged = list(s.scalars(select(LlmCall.request_id).where(LlmCall.experiment_id == f"run:{run_id}")))
        stored = list(s.scalars(select(RunResult.id).where(RunResult.run_id == run_id)))
    assert item.status == "failed" and stored == []  # no answer without its end
    assert len(logged) == 1  # the call was made and paid for: it is in the log all the same
    assert item.error.startswith("IntegrityError: ") and "\n" not in item.error
    assert "[SQL" not in item.error and "parameters" not in item.error  # no statement, no prompt or answer


def test_an_items_error_text_is_one_line_without_the_statement_or_its_parameters(fresh_engine):
    with pytest.raises(IntegrityError) as caught, Session(fresh_engine) as s, s.begin():
        s.execute(text("INSERT INTO job_items (kind) VALUES (:secret)"), {"secret": None})
    shown = items.describe_error(caught.value)
    assert shown.startswith("IntegrityError: ") and "INSERT" not in shown and "secret" not in shown
    assert items.describe_error(ValueError("x" * 2000 + "\nmore")) == "ValueError: " + ("x" * 2000)[: 500 - 12]


@pytest.mark.postgres
def test_the_heartbeat_skips_rows_another_transaction_holds_on_postgresql(pg_url):
    engine = make_engine(pg_url)
    migrate(engine)
    ids = items.add_items(engine, "t", 1, [(1, "one", {}), (2, "two", {})])
    with Session(engine) as s, s.begin():
        s.execute(update(JobItem).values(status="running", worker="w:1"))
    with engine.connect() as holder:
        holder.execute(select(JobItem.id).where(JobItem.id == ids[0]).with_for_update())  # a claim in progress
        done: list[int] = []
        beating = threading.Thread(target=lambda: done.append(items.beat(engine, "w:1")))
        beating.start()
        beating.join(10)
        assert done == [1]  # the free row, at once: it did not wait for the held one
        holder.rollback()
    assert items.beat(engine, "w:1") == 2
    engine.dispose()


@pytest.mark.postgres
def test_a_work_postgresql_undoes_to_break_a_deadlock_runs_again(pg_url):
    engine = make_engine(pg_url)
    migrate(engine)
    first, second = items.add_items(engine, "t", 1, [(1, "one", {}), (2, "two", {})])
    locked, crossed = threading.Event(), threading.Event()
    tries = [0]

    def work(s: Session) -> str:  # locks `first` then `second`: the other transaction goes the other way round
        tries[0] += 1
        s.execute(update(JobItem).where(JobItem.id == first).values(name="by the work"))
        if tries[0] == 1:
            locked.set()
            assert crossed.wait(10)
        s.execute(update(JobItem).where(JobItem.id == second).values(name="by the work"))
        return "committed"

    def other() -> None:
        with engine.connect() as conn:
            conn.execute(update(JobItem).where(JobItem.id == second).values(name="by the other"))
            assert locked.wait(10)
            crossed.set()
            conn.execute(text("SELECT pg_sleep(0.3)"))  # the work waits first, so PostgreSQL undoes the work
            conn.execute(update(JobItem).where(JobItem.id == first).values(name="by the other"))
            conn.commit()

    t = threading.Thread(target=other)
    t.start()
    assert GroupCommit(engine).run(work) == "committed"
    t.join(10)
    assert tries[0] == 2
    with Session(engine) as s:
        assert {s.get(JobItem, i).name for i in (first, second)} == {"by the work"}
    engine.dispose()


def test_a_process_leaves_its_start_up_heap_out_of_later_collections_once():
    code = (
        "import gc, lib.services; from lib.core.heap import freeze_startup_heap as f; n = f(); "
        "later = [[i] for i in range(50_000)]; print(n, f(), gc.get_freeze_count())"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    first, again, now = map(int, out.stdout.split())
    assert first > 50_000  # the app's modules and the objects they made, never walked again by a full collection
    assert again == now == first  # a later call freezes nothing more: what is alive later can still be collected


@pytest.mark.postgres
def test_two_transactions_logging_calls_of_two_models_in_opposite_orders_do_not_deadlock(pg_url):
    from lib.core.db import make_engine, migrate
    from lib.core.tables import utcnow
    from lib.gateway.call_log import insert_rows

    engine = make_engine(pg_url)
    migrate(engine)

    def row(model: str) -> dict:
        return {
            "created_at": utcnow(),
            "request_id": f"r-{model}-{threading.get_ident()}",
            "user": "ada",
            "feature": "compare.run",
            "provider": "acme",
            "model": model,
            "status": "ok",
            "prompt_tokens": 10,
            "completion_tokens": 5,
            "cached_tokens": 0,
            "latency_ms": 200.0,
            "attempts": 1,
        }

    halfway, failures = threading.Barrier(2, timeout=1), []

    def log(first: str, second: str) -> None:  # each updates the same user's rollup row and its models' rows
        try:
            with engine.begin() as conn:
                insert_rows(conn, [row(first)])
                with contextlib.suppress(threading.BrokenBarrierError):  # the other waits for this one: go on alone
                    halfway.wait()
                insert_rows(conn, [row(second)])
        except Exception as exc:
            failures.append(exc)

    threads = [threading.Thread(target=log, args=order) for order in (("acme/m1", "acme/m2"), ("acme/m2", "acme/m1"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert failures == []  # without the advisory lock PostgreSQL kills one of them: "deadlock detected"
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT sum(requests) FROM llm_usage_user_hourly WHERE \"user\" = 'ada'")) == 4
    engine.dispose()


def test_the_gateway_holds_a_calls_slot_only_around_each_request_not_its_retry_wait(fresh_engine, tmp_path):
    import json as jsonlib
    from contextlib import contextmanager

    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.outputs import ChatGeneration, ChatResult

    from lib.core.settings import load_settings
    from lib.gateway.client import CallContext, Gateway
    from lib.gateway.errors import ProviderUnavailable

    events: list[str] = []

    class Flaky(BaseChatModel):  # the first request fails with an error the gateway retries
        @property
        def _llm_type(self) -> str:
            return "flaky"

        def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
            events.append("request")
            if events.count("request") == 1:
                raise ProviderUnavailable("try again")
            return ChatResult(generations=[ChatGeneration(message=AIMessage(content="fine"))])

    @contextmanager
    def hold():
        events.append("take")
        try:
            yield
        finally:
            events.append("give back")

    providers = {"acme": {"base_url": "http://127.0.0.1:9/v1", "models": ["m1"]}}
    settings = load_settings(env={"WORKBENCH_DATA_DIR": str(tmp_path), "WORKBENCH_PROVIDERS": jsonlib.dumps(providers)})
    model = Flaky()
    gw = Gateway(settings, fresh_engine, model_factory=lambda *_: model, sleep=lambda s: events.append("back-off"))
    rows: list[dict] = []
    result = gw.invoke([("user", "q")], "acme/m1", CallContext(feature="compare.run", hold=hold, log_rows=rows))
    assert result.text == "fine" and result.attempts == 2
    assert events == ["take", "request", "give back", "back-off", "take", "request", "give back"]
    assert [r["request_id"] for r in rows] == [result.request_id]  # handed over, not written
    with Session(fresh_engine) as s:
        assert list(s.scalars(select(LlmCall.id))) == []
