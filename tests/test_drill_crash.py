"""Drill: the process indexing a large new version of a document is SIGKILLed part-way.

After a restart (the app's own start-up path, lib.ui.resources.get_indexer) the previous version is still
searchable, the job shows as failed with a reason, Chroma holds no chunk of a version that is not current,
and retrying the job indexes the new version. Run embedded (Chroma dies with the process) and against a
Chroma server (the server keeps the half-written chunks).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from lib.core.db import make_engine
from lib.core.settings import load_settings
from lib.core.tables import Document, IngestJob
from lib.documents.indexing import get_collection
from lib.documents.jobs import INTERRUPTED, job_rows, recent_jobs, retry_job
from lib.documents.retrieval import RetrievalSettings
from lib.documents.vectorstore import get_all, make_chroma_client, open_store

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = 260  # one ~700-character chunk each: several embedding batches, seconds of work to interrupt


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "lib.cli", *args]


def big_version() -> str:
    """Version 2: the opening time changed, plus hundreds of distinct sections."""
    parts = ["Opening hours. The office opens at 7:30 every weekday and closes at 18:00."]
    for i in range(SECTIONS):
        parts.append(
            f"Section {i}. "
            + " ".join(f"Rule {i}.{j}: form {i * 13 + j} goes to desk {j} in room {i}." for j in range(14))
        )
    return "\n\n".join(parts)


def chunks_by_version(client, embeddings, chroma_name: str) -> dict[tuple[int, int], int]:
    metas = get_all(open_store(client, chroma_name, embeddings), ["metadatas"])["metadatas"]
    out: dict[tuple[int, int], int] = {}
    for m in metas:
        key = (m["document_id"], m["version"])
        out[key] = out.get(key, 0) + 1
    return out


def assert_no_orphans(engine, client, embeddings, collection) -> None:
    """Every chunk in Chroma belongs to a document's current version, and each has all its chunks."""
    with Session(engine) as s:
        docs = {d.id: d for d in s.scalars(select(Document).where(Document.collection_id == collection.id))}
    counts = chunks_by_version(client, embeddings, collection.chroma_name)
    assert dict(counts.items()) == {(d.id, d.version): d.chunks for d in docs.values() if d.version}


def wait_for_progress(engine, proc: subprocess.Popen, previous_job: int) -> tuple[int, dict]:
    """Poll the database until the new job shows some, not all, chunks embedded."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the indexing process ended before it could be killed: " + proc.stdout.read()
        with Session(engine) as s:
            job = s.scalar(select(IngestJob).where(IngestJob.id > previous_job).order_by(IngestJob.id.desc()))
        if job is not None:
            f = job.files[0]
            if f.get("chunks_embedded") and f.get("chunks_total") and f["chunks_embedded"] < f["chunks_total"]:
                return job.id, f
        time.sleep(0.05)  # polling another process's progress, not pacing the test
    raise AssertionError("no indexing progress showed up in the database")


def test_a_crash_while_indexing_keeps_the_old_version_leaves_no_orphans_and_the_job_can_be_retried(
    tmp_path, data_dir, any_chroma, local_embeddings
):
    import streamlit as st  # noqa: F401  (lib.ui.resources needs it)

    from lib.ui import resources as ui_resources

    started = time.perf_counter()
    (tmp_path / "v1").mkdir()
    (tmp_path / "v2").mkdir()
    (tmp_path / "v1" / "policy.txt").write_text(
        "Opening hours. The office opens at 9:00 every weekday.\n\nParking. Staff park on level minus two."
    )
    (tmp_path / "v2" / "policy.txt").write_text(big_version())
    first = subprocess.run(
        cli("ingest", str(tmp_path / "v1" / "policy.txt"), "--collection", "Drill", "--quiet"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert first.returncode == 0 and "policy.txt: indexed" in first.stdout, first.stderr

    settings = load_settings()
    engine = make_engine(settings.database_url)
    with Session(engine) as s:
        first_job = s.scalar(select(IngestJob.id).order_by(IngestJob.id.desc()))
    proc = subprocess.Popen(
        cli("ingest", str(tmp_path / "v2" / "policy.txt"), "--collection", "Drill"),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        job_id, progress = wait_for_progress(engine, proc, first_job)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)  # reaped: a zombie would still look alive to the recovery
    print(f"killed at {progress['chunks_embedded']}/{progress['chunks_total']} chunks")

    collection = get_collection(engine, "Drill")
    with Session(engine) as s:
        doc = s.scalar(select(Document).where(Document.collection_id == collection.id))
        assert (doc.status, doc.version) == ("indexing", 1)
        assert s.get(IngestJob, job_id).status == "running"
    # What the crash left: chunks of version 2 next to version 1's (the app has not started yet).
    probe = make_chroma_client(settings)
    left = chunks_by_version(probe, local_embeddings, collection.chroma_name)
    assert left.get((doc.id, 1)) == doc.chunks and left.get((doc.id, 2), 0) >= progress["chunks_embedded"]

    # Restart: the app's start-up path recovers interrupted jobs and purges orphan chunks.
    app_settings = ui_resources.get_settings()
    try:
        indexer = ui_resources.get_indexer(app_settings)
        retriever = ui_resources.get_retriever(app_settings)
        with Session(engine) as s:
            job, doc = s.get(IngestJob, job_id), s.get(Document, doc.id)
        assert job.status == "failed" and job.files[0]["status"] == "failed"
        assert job.files[0]["error"] == INTERRUPTED and job.files[0]["original"]
        shown = {j.id: job_rows(j) for j in recent_jobs(engine)}[job_id]  # what the Documents page lists
        assert shown[0]["status"] == "failed" and shown[0]["fraction"] == 1.0 and "Retry" in shown[0]["error"]
        assert (doc.status, doc.version) == ("failed", 1) and "previous version" in doc.error
        assert_no_orphans(engine, indexer.client, indexer.embeddings, collection)
        hit = retriever.search("Drill", "When does the office open?", RetrievalSettings(k=1))[0]
        assert "9:00" in hit.text and hit.document == "policy.txt"

        # Retry: embedded, as the app would (in its own process); with a server, from the command line.
        if any_chroma == "embedded":
            retried = retry_job(engine, indexer, job_id, "tester")
        else:
            out = subprocess.run(
                cli("retry", str(job_id), "--quiet"), cwd=ROOT, capture_output=True, text=True, timeout=300
            )
            assert out.returncode == 0 and "policy.txt: indexed" in out.stdout, out.stdout + out.stderr
            retried = recent_jobs(engine, 1)[0].id
        with Session(engine) as s:
            new_job, doc = s.get(IngestJob, retried), s.get(Document, doc.id)
        assert new_job.status == "done" and new_job.files[0]["status"] == "indexed"
        assert (doc.status, doc.version, doc.error) == ("indexed", 2, None) and doc.chunks >= SECTIONS
        assert_no_orphans(engine, indexer.client, indexer.embeddings, collection)
        hit = retriever.search("Drill", "When does the office open?", RetrievalSettings(k=1))[0]
        assert "7:30" in hit.text
    finally:
        for cached in (ui_resources._services, ui_resources._chroma, ui_resources._engine):
            cached.clear()
        engine.dispose()
    print(f"drill ({any_chroma}) took {time.perf_counter() - started:.1f} s")
    assert os.environ.get("WORKBENCH_DATA_DIR") == str(data_dir)
