"""The job queue (lib.jobs), embedded: items run with no extra process, exactly once per claim, a dead worker's items
run again, cancel and retry, provider limits across threads, and batch runs and indexing on the queue."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from fake_openai import FakeOpenAI, Reply
from langchain_core.embeddings import DeterministicFakeEmbedding
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from waiting import wait_for

from lib.compare.runs import Checks, Variant, cancel_run, get_run, queue_run, retry_run, run_progress, start_run
from lib.compare.test_sets import create_test_set, parse_csv
from lib.core.settings import load_settings
from lib.core.tables import Document, JobItem, LlmCall, RunResult, utcnow
from lib.documents import jobs as ingest
from lib.documents.indexing import get_collection
from lib.jobs import items
from lib.jobs.items import Cancelled
from lib.jobs.limits import ProviderLimiter
from lib.jobs.queue import QueueConsumer, WorkQueue, ensure_embedded, stop_embedded
from lib.prompts.language import Template
from lib.services import Services
from lib.ui.jobs_view import batch_status, job_panel

ROOT = Path(__file__).resolve().parent.parent
NAME = "support.reply"


@pytest.fixture(scope="module")
def server():
    with FakeOpenAI() as srv:
        yield srv


def make_services(server, monkeypatch, **env: str) -> Services:
    providers = {"acme": {"base_url": server.base_url, "api_key": "k", "models": ["m1"]}}
    monkeypatch.setenv("WORKBENCH_PROVIDERS", json.dumps(providers))
    monkeypatch.setenv("WORKBENCH_JOB_HEARTBEAT_S", "0.2")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return Services(load_settings(), local_embeddings=DeterministicFakeEmbedding(size=16))


@pytest.fixture
def services(server, monkeypatch):
    server.reset()
    server.default_reply = Reply("We open at eight.")
    return make_services(server, monkeypatch)


def a_run(services: Services, rows: int = 3, judge: str | None = None) -> int:
    store = services.templates
    if NAME not in store.names():
        store.create(Template(name=NAME, system="Answer.", user="Q: {{ question }}", model="acme/m1"), "ada")
        store.save_version(Template(name=NAME, system="Kindly.", user="Q: {{ question }}", model="acme/m1"), "ada")
    body = "question\n" + "".join(f"q{i}?\n" for i in range(rows))
    set_id = create_test_set(services.engine, f"set{rows}", ["question"], "ada", parse_csv(body.encode(), ["question"]))
    return start_run(services.engine, NAME, set_id, Variant(1), Variant(2), Checks(judge_model=judge), "ada")


def run_calls(engine, run_id: int) -> list[LlmCall]:
    with Session(engine) as s:
        return list(s.scalars(select(LlmCall).where(LlmCall.experiment_id == f"run:{run_id}")))


def settled(engine, run_id: int) -> bool:
    return get_run(engine, run_id)["status"] not in ("queued", "running")


def test_an_upload_is_indexed_by_the_app_process_own_workers_with_no_extra_process(services):
    services.start_workers()
    col = get_collection(services.engine, "Handbook", create=True)
    files = [(f"f{i}.txt", f"Rule {i}: forms go to desk {i}.".encode()) for i in range(5)]
    job_id = ingest.start_job(services.engine, services.queue, col, files, "ada")
    assert wait_for(lambda: ingest.recent_jobs(services.engine, 1)[0].status == "done", 30)
    job = ingest.recent_jobs(services.engine, 1)[0]
    assert job.id == job_id and {f["status"] for f in job.files} == {"indexed"}
    assert {f["worker"] for f in job.files} == {items.worker_id()}  # the page shows who ran each file
    panel = job_panel(job)
    assert not panel.cancel and not panel.retry and all(r["fraction"] == 1.0 for r in panel.rows)
    with Session(services.engine) as s:
        assert s.scalar(select(func.count()).select_from(Document)) == 5


def test_a_second_delivery_of_an_item_runs_nothing(services):
    run_id = a_run(services, rows=2)
    queue_run(services.engine, services.queue, run_id)
    with Session(services.engine) as s:
        ids = list(s.scalars(select(JobItem.id).where(JobItem.job_id == run_id)))
    services.queue.enqueue("compare", ids)  # every item delivered twice
    services.start_workers()
    assert wait_for(lambda: settled(services.engine, run_id), 30)
    assert wait_for(lambda: services.queue.pending() == 0, 10)
    assert len(run_calls(services.engine, run_id)) == 4 and run_progress(services.engine, run_id).done == 4
    assert get_run(services.engine, run_id)["status"] == "done"
    with Session(services.engine) as s:
        assert set(s.scalars(select(JobItem.attempts).where(JobItem.job_id == run_id))) == {1}


def test_the_items_of_a_worker_that_died_run_again_and_what_it_stored_is_not_asked_again(services):
    run_id = a_run(services, rows=2)
    queue_run(services.engine, services.queue, run_id)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    corpse = f"{items.worker_id().split(':')[0]}:{dead.stdout.strip()}"
    with Session(services.engine) as s:
        first = s.scalars(select(JobItem).where(JobItem.job_id == run_id).order_by(JobItem.id)).first()
    assert items.claim(services.engine, first.id, corpse) is not None  # taken by a process that then died
    services.start_workers()
    assert wait_for(lambda: settled(services.engine, run_id), 30)
    with Session(services.engine) as s:
        again = s.get(JobItem, first.id)
    assert (again.status, again.attempts, again.worker) == ("done", 2, items.worker_id())
    assert len(run_calls(services.engine, run_id)) == 4


def test_a_queued_run_can_be_cancelled_and_its_rows_retried(services):
    run_id = a_run(services, rows=3)
    queue_run(services.engine, services.queue, run_id)  # nobody works yet
    assert batch_status(services.engine, run_id).cancel
    cancel_run(services.engine, run_id)
    shown = batch_status(services.engine, run_id)
    assert get_run(services.engine, run_id)["status"] == "cancelled" and shown.retry and not shown.cancel
    services.start_workers()
    assert wait_for(lambda: services.queue.pending() == 0, 10)
    assert run_calls(services.engine, run_id) == []  # cancelled items never start
    assert retry_run(services.engine, services.queue, run_id) == 3
    assert wait_for(lambda: settled(services.engine, run_id), 30)
    assert get_run(services.engine, run_id)["status"] == "done" and run_progress(services.engine, run_id).done == 6


def test_a_failed_row_is_retried_and_only_it_is_called_again(services, server):
    from fake_openai import Status

    run_id = a_run(services, rows=2)
    server.enqueue(*[Status(400)] * 1)
    services.start_workers()
    queue_run(services.engine, services.queue, run_id)
    assert wait_for(lambda: settled(services.engine, run_id), 30)
    assert run_progress(services.engine, run_id).failed == 1 and batch_status(services.engine, run_id).retry
    before = len(run_calls(services.engine, run_id))
    assert retry_run(services.engine, services.queue, run_id) == 1
    assert wait_for(lambda: settled(services.engine, run_id), 30)
    progress = run_progress(services.engine, run_id)
    assert (progress.done, progress.failed) == (4, 0) and len(run_calls(services.engine, run_id)) == before + 1


def test_a_running_indexing_job_is_cancelled_at_its_next_step(services):
    col = get_collection(services.engine, "Big", create=True)
    gate, entered = threading.Event(), threading.Event()
    real = services.indexer.index_file

    def slow(collection, name, data, progress=None, force=False):  # holds the file until the test cancels it
        entered.set()
        gate.wait(10)
        return real(collection, name, data, progress, force)

    services.indexer.index_file = slow  # type: ignore[method-assign]
    services.start_workers()
    job_id = ingest.start_job(services.engine, services.queue, col, [("a.txt", b"Alpha beta gamma.")], "ada")
    assert entered.wait(10)
    assert job_panel(ingest.recent_jobs(services.engine, 1)[0]).cancel
    ingest.cancel_job(services.engine, job_id)
    gate.set()
    assert wait_for(lambda: ingest.recent_jobs(services.engine, 1)[0].status == "cancelled", 30)
    job = ingest.recent_jobs(services.engine, 1)[0]
    assert job.files[0]["status"] == "cancelled" and job_panel(job).retry
    services.indexer.index_file = real  # type: ignore[method-assign]
    assert ingest.queue_retry(services.engine, services.queue, job_id, "ada") == job_id
    assert wait_for(lambda: ingest.recent_jobs(services.engine, 1)[0].status == "done", 30)


def test_provider_limits_hold_calls_in_flight_and_per_minute_across_threads(any_engine):
    limiter = ProviderLimiter(any_engine, {"acme": {"concurrency": 2}, "slow": {"rpm": 3}})
    inside, peak, lock, release = [0], [0], threading.Lock(), threading.Event()

    def call() -> None:
        with limiter.slot("acme"):
            with lock:
                inside[0] += 1
                peak[0] = max(peak[0], inside[0])
            release.wait(10)
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=call) for _ in range(6)]
    for t in threads:
        t.start()
    assert wait_for(lambda: limiter.in_flight("acme") == 2, 10)
    assert not wait_for(lambda: inside[0] > 2, 0.3)  # the other four wait for a slot
    release.set()
    for t in threads:
        t.join(10)
    assert peak[0] == 2 and limiter.in_flight("acme") == 0
    with limiter.slot("unlimited"):  # chat's providers, or any without a limit: no wait at all
        pass
    for _ in range(3):
        with limiter.slot("slow"):
            pass
    asked = []
    with pytest.raises(Cancelled), limiter.slot("slow", cancelled=lambda: asked.append(1) or len(asked) > 2):
        pass  # the fourth request of the minute waits (until cancelled)


def test_a_consumer_in_a_non_main_thread_installs_no_signal_handlers(services):
    before = signal.getsignal(signal.SIGTERM)
    started: list[QueueConsumer | None] = []
    t = threading.Thread(target=lambda: started.append(ensure_embedded(services.queue, 2)))
    t.start()
    t.join(30)
    assert started and started[0] is not None and signal.getsignal(signal.SIGTERM) is before
    assert ensure_embedded(services.queue, 2) is started[0]  # once per process
    assert ensure_embedded(WorkQueue(services.settings, services.engine), 0) is None  # a process that only enqueues
    stop_embedded()


def test_an_app_process_killed_mid_run_resumes_the_run_when_the_app_starts_again(server, monkeypatch):
    server.reset()
    server.default_reply = Reply("Slowly answered.", delay=0.15)
    services = make_services(server, monkeypatch)
    run_id = a_run(services, rows=12)
    app = subprocess.Popen(  # an app process: its own embedded workers, started as lib.ui does
        [
            sys.executable,
            "-c",
            "from lib.core.settings import load_settings; from lib.services import Services; "
            "import threading; Services(load_settings()).start_workers(); threading.Event().wait()",
        ],
        cwd=ROOT,
        env={**os.environ, "WORKBENCH_APP_WORKERS": "2"},
    )
    try:
        queue_run(services.engine, services.queue, run_id)
        assert wait_for(lambda: run_progress(services.engine, run_id).done >= 4, 60)
    finally:
        app.send_signal(signal.SIGKILL)
        app.wait(30)
    assert run_progress(services.engine, run_id).done < 24, "the run finished before the app could be killed"
    services.start_workers()  # the app starts again
    assert wait_for(lambda: settled(services.engine, run_id), 60)
    with Session(services.engine) as s:
        rows = s.execute(select(RunResult.case_id, RunResult.variant)).all()
    assert get_run(services.engine, run_id)["status"] == "done" and len(rows) == len(set(rows)) == 24
    calls = run_calls(services.engine, run_id)
    assert len(calls) - 24 <= 2  # only calls in flight when the app died (2 workers) were made twice
    stored = {r for (r,) in Session(services.engine).execute(select(RunResult.request_id))}
    assert stored <= {c.request_id for c in calls}


def test_the_worker_command_exists_and_refuses_zero_threads():
    out = subprocess.run(
        [sys.executable, "-m", "lib.cli", "worker", "--threads", "0"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 2 and "--threads" in out.stderr


def test_settings_for_the_queue_are_checked():
    from lib.core.settings import ConfigError

    assert load_settings(env={"WORKBENCH_QUEUE_URL": "redis://q:6379/0"}).app_workers == 0
    assert load_settings(env={}).app_workers == 4 and load_settings(env={}).log_retention_days is None
    with pytest.raises(ConfigError, match="Redis URL"):
        load_settings(env={"WORKBENCH_QUEUE_URL": "amqp://q"})
    with pytest.raises(ConfigError, match="concurrency and/or rpm"):
        load_settings(env={"WORKBENCH_PROVIDER_LIMITS": '{"openai": {"burst": 3}}'})
    with pytest.raises(ConfigError, match="above 0"):
        load_settings(env={"WORKBENCH_LOG_RETENTION_DAYS": "0"})


def test_a_final_status_is_written_only_while_no_item_of_the_job_is_back_on_the_queue(fresh_engine):
    # settle_run and settle_job work a job's status out from its items, then write it; a retry that put an item back
    # on the queue in between must win (the status stays as the retry set it)
    [first, second] = items.add_items(fresh_engine, "compare", 7, [(1, "case 1", {}), (2, "case 2", {})])
    items.add_items(fresh_engine, "compare", 8, [(1, "other job", {})])  # queued, but another job's
    with Session(fresh_engine) as s, s.begin():
        s.execute(update(JobItem).where(JobItem.id.in_([first, second])).values(status="done"))

    def settle(job_id: int) -> int:
        with fresh_engine.begin() as conn:
            done = update(JobItem).where(JobItem.id == first, items.none_active("compare", job_id)).values(error="x")
            return conn.execute(done).rowcount

    assert settle(7) == 1
    with Session(fresh_engine) as s, s.begin():
        s.execute(update(JobItem).where(JobItem.id == second).values(status="queued"))
    assert settle(7) == 0
    assert settle(8) == 0


def test_items_left_by_stopped_workers_are_found(fresh_engine):
    [item] = items.add_items(fresh_engine, "compare", 1, [(1, "case 1", {})])
    assert items.claim(fresh_engine, item, "elsewhere:1") is not None
    assert items.claim(fresh_engine, item, "me:2") is None  # taken
    assert items.requeue_stale(fresh_engine, 60, queue_empty=True) == []  # another host, recent heartbeat
    with Session(fresh_engine) as s, s.begin():
        s.execute(update(JobItem).values(heartbeat_at=utcnow() - timedelta(hours=1)))
    assert items.requeue_stale(fresh_engine, 60, queue_empty=True) == [("compare", item)]
