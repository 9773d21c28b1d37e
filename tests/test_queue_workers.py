"""Server mode: a real redis-server, two `lib.cli worker` processes, one PostgreSQL and a Chroma server.

20 uploads and a 200-row batch run are split over both workers; one worker is SIGKILLed part-way and the other does
its items: every file indexed once (its chunks exactly once in Chroma), every row answered and logged once (a call
in flight on the killed worker reaches the provider again: at most one per thread, and it is logged once).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from fake_openai import FakeOpenAI, Reply
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from waiting import wait_for

from lib.compare.runs import Checks, Variant, get_run, queue_run, start_run
from lib.compare.test_sets import create_test_set, parse_csv
from lib.core.settings import load_settings
from lib.core.tables import Document, JobItem, LlmCall, RunResult
from lib.documents import jobs as ingest
from lib.documents.indexing import get_collection
from lib.documents.vectorstore import get_all, open_store
from lib.jobs.queue import spare_threads
from lib.prompts.language import Template
from lib.services import Services

ROOT = Path(__file__).resolve().parent.parent
THREADS = 4
pytestmark = [pytest.mark.postgres, pytest.mark.chroma_server]


def test_two_workers_share_the_work_and_a_killed_one_loses_and_duplicates_nothing(
    redis_server, pg_url, chroma_server, local_embeddings, monkeypatch, tmp_path
):
    with FakeOpenAI() as server:
        server.default_reply = Reply("Answered by a worker.", delay=0.03)
        env = {
            "DATABASE_URL": pg_url,
            "CHROMA_HOST": chroma_server[0],
            "CHROMA_PORT": str(chroma_server[1]),
            "WORKBENCH_QUEUE_URL": redis_server,
            "WORKBENCH_JOB_HEARTBEAT_S": "1",
            "WORKBENCH_PROVIDERS": json.dumps(
                {"acme": {"base_url": server.base_url, "api_key": "k", "models": ["m1"]}}
            ),
        }
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        app = Services(load_settings(), local_embeddings=local_embeddings)  # an app process: enqueues only
        assert app.settings.app_workers == 0 and app.start_workers() is None
        store = app.templates
        store.create(Template(name="t", system="Answer.", user="Q: {{ q }}", model="acme/m1"), "ada")
        store.save_version(Template(name="t", system="Kindly.", user="Q: {{ q }}", model="acme/m1"), "ada")
        cases = parse_csv(("q\n" + "".join(f"question {i}?\n" for i in range(200))).encode(), ["q"])
        set_id = create_test_set(app.engine, "two hundred", ["q"], "ada", cases)
        run_id = start_run(app.engine, "t", set_id, Variant(1), Variant(2), Checks(), "ada")
        col = get_collection(app.engine, "Shared", create=True)
        files = [(f"note{i}.txt", f"Note {i}. Desk {i} handles form {i * 7}.".encode()) for i in range(20)]
        job_id = ingest.start_job(app.engine, app.queue, col, files, "ada")
        queue_run(app.engine, app.queue, run_id)

        logs = [open(tmp_path / f"worker{i}.log", "w") for i in range(2)]  # noqa: SIM115
        workers = [
            subprocess.Popen(
                [sys.executable, "-m", "lib.cli", "worker", "--threads", str(THREADS)],
                cwd=ROOT,
                env={**os.environ, **env},
                stdout=logs[i],
                stderr=subprocess.STDOUT,
            )
            for i in range(2)
        ]
        names = [f"{os.uname().nodename}:{w.pid}" for w in workers]
        try:

            def rows() -> int:
                with Session(app.engine) as s:
                    return s.scalar(select(func.count()).where(RunResult.run_id == run_id)) or 0

            def both_working() -> bool:
                with Session(app.engine) as s:
                    seen = set(s.scalars(select(JobItem.worker).where(JobItem.kind == "compare").distinct()))
                return set(names) <= seen and rows() >= 100

            assert wait_for(both_working, 60), (tmp_path / "worker0.log").read_text()[-2000:]
            workers[0].send_signal(signal.SIGKILL)
            workers[0].wait(30)
            killed_at = rows()
            assert killed_at < 400, "the run finished before a worker could be killed"

            def finished() -> bool:
                return (
                    get_run(app.engine, run_id)["status"] == "done"
                    and ingest.recent_jobs(app.engine, 1)[0].status == "done"
                )

            assert wait_for(finished, 90), (tmp_path / "worker1.log").read_text()[-3000:]
        finally:
            for w in workers:
                if w.poll() is None:
                    w.send_signal(signal.SIGTERM)
            for w in workers:
                w.wait(60)
            for log in logs:
                log.close()
        assert workers[1].returncode == 0  # SIGTERM: finished its items in hand and exited cleanly

        with Session(app.engine) as s:
            results = s.execute(select(RunResult.case_id, RunResult.variant, RunResult.request_id)).all()
            calls = list(s.scalars(select(LlmCall.request_id).where(LlmCall.experiment_id == f"run:{run_id}")))
            done_by = dict(s.execute(select(JobItem.worker, func.count()).group_by(JobItem.worker)).all())
            docs = list(s.scalars(select(Document).where(Document.collection_id == col.id)))
        assert len(results) == len({(c, v) for c, v, _ in results}) == 400  # every row once
        stored = {r for _, _, r in results}
        assert len(stored) == 400 and all(calls.count(r) == 1 for r in stored)  # one logged call per stored row
        sent = [r for r in server.requests if r["path"].endswith("/chat/completions")]
        # Only the calls the worker had not recorded when it died reached the provider twice: at most one per
        # thread (THREADS call slots and the spare threads), a call in flight or one whose answer, call-log row
        # and end were about to commit together. Their rows were answered again by the other worker; a call the
        # dead process had already logged stays in the log (it was made and paid for) but never as the call
        # behind a stored row.
        assert 400 <= len(sent) <= 400 + THREADS + spare_threads(THREADS)
        assert 400 <= len(calls) <= len(sent) and len(set(calls)) == len(calls)
        assert names[1] in done_by  # the survivor finished the work; the killed worker's items moved to it
        assert ingest.recent_jobs(app.engine, 1)[0].id == job_id
        assert len(docs) == 20 and {(d.status, d.version) for d in docs} == {("indexed", 1)}
        metas = get_all(open_store(app.client, col.chroma_name, local_embeddings), ["metadatas"])["metadatas"]
        per_doc: dict[int, int] = {}
        for m in metas:
            per_doc[m["document_id"]] = per_doc.get(m["document_id"], 0) + 1
        assert per_doc == {d.id: d.chunks for d in docs}  # each file's chunks exactly once
        print(f"killed at {killed_at}/400 rows; calls {len(calls)}; items by worker {done_by}")
