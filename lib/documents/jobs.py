"""Indexing jobs: recorded in the database, run in a background thread, progress visible to any page run."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from lib.core.tables import Collection, Document, IngestJob, utcnow
from lib.documents.indexing import FileOutcome, Indexer, purge_orphan_chunks, read_original

log = logging.getLogger(__name__)
OWNER = f"{socket.gethostname()}:{os.getpid()}"
PROGRESS_EVERY_S = 0.5
STALE_AFTER_S = 900  # a job of another machine without progress for this long is taken as interrupted
INTERRUPTED = (
    "Interrupted: the process indexing this file stopped (crash or restart); the previous version is "
    "still searchable. Retry the job or upload the file again."
)


class JobError(ValueError):
    """A job cannot be retried (unknown, still running, or nothing to retry)."""


def _session(engine: Engine) -> Session:
    return Session(engine, expire_on_commit=False)


def create_job(engine: Engine, collection: Collection, names: list[str], user: str | None) -> IngestJob:
    """Record a queued job for these files."""
    files = [
        {"name": n, "status": "queued", "pages": None, "chunks_total": None, "chunks_embedded": 0, "error": None}
        for n in names
    ]
    with _session(engine) as s, s.begin():
        job = IngestJob(collection_id=collection.id, user=user, status="queued", files=files, owner=OWNER)
        s.add(job)
    return job


def _update_file(engine: Engine, job_id: int, index: int, changes: dict[str, Any]) -> None:
    with _session(engine) as s, s.begin():
        job = s.get_one(IngestJob, job_id)
        files = [dict(f) for f in job.files]
        files[index].update(changes, updated_at=utcnow().isoformat())  # also the job's heartbeat
        job.files = files  # reassign: JSON columns do not track in-place edits
        if job.status == "queued":
            job.status = "running"


Payload = tuple[str, "bytes | Callable[[], bytes]"]  # a file's name and its bytes (or how to read them)


def run_job(
    engine: Engine,
    indexer: Indexer,
    job_id: int,
    payloads: list[Payload],
    force: bool = False,
    on_progress: Callable[[int, dict[str, Any]], None] | None = None,
    on_file: Callable[[int, FileOutcome], None] | None = None,
) -> list[FileOutcome]:
    """Index every file of the job; one file's failure is recorded on that file and the rest go on.

    A payload's data may be a callable that reads the bytes (files are then read one at a time);
    `on_progress(i, event)` sees every progress event of file i, `on_file(i, outcome)` each file's outcome.
    """
    with _session(engine) as s:
        job = s.get_one(IngestJob, job_id)
        collection = s.get_one(Collection, job.collection_id)
    failures = 0
    outcomes: list[FileOutcome] = []
    for i, (name, data) in enumerate(payloads):
        last = [0.0]

        def progress(event: dict[str, Any], i: int = i, last: list[float] = last) -> None:
            if on_progress:
                on_progress(i, event)
            now = time.monotonic()
            final = event.get("status") in ("indexed", "unchanged", "failed", "parsed")
            if final or now - last[0] >= PROGRESS_EVERY_S:
                last[0] = now
                _update_file(engine, job_id, i, event)

        _update_file(engine, job_id, i, {"status": "parsing"})
        try:
            outcome = indexer.index_file(collection, name, data() if callable(data) else data, progress, force=force)
        except Exception as exc:  # keep going with the other files; record why this one failed
            log.exception("indexing %s failed", name)
            outcome = FileOutcome(name, "failed", error=f"{type(exc).__name__}: {exc}")
            _update_file(engine, job_id, i, {"status": "failed", "error": outcome.error})
        else:
            _update_file(
                engine,
                job_id,
                i,
                {
                    "status": outcome.status,
                    "error": outcome.error,
                    "chunks_total": outcome.chunks,
                    "chunks_embedded": outcome.chunks,
                    "pages": outcome.pages,
                },
            )
        failures += outcome.status == "failed"
        outcomes.append(outcome)
        if on_file:
            on_file(i, outcome)
    with _session(engine) as s, s.begin():
        job = s.get_one(IngestJob, job_id)
        job.status = "failed" if failures == len(payloads) else "done"
        job.finished_at = utcnow()
    return outcomes


def start_job(
    engine: Engine,
    indexer: Indexer,
    collection: Collection,
    payloads: list[Payload],
    user: str | None,
    force: bool = False,
) -> int:
    """Create the job and run it in a daemon thread; returns its id at once."""
    job = create_job(engine, collection, [n for n, _ in payloads], user)
    thread = threading.Thread(
        target=run_job, args=(engine, indexer, job.id, payloads, force), name=f"ingest-job-{job.id}", daemon=True
    )
    thread.start()
    return job.id


def recent_jobs(engine: Engine, limit: int = 10) -> list[IngestJob]:
    """The newest jobs, newest first."""
    with _session(engine) as s:
        return list(s.scalars(select(IngestJob).order_by(IngestJob.id.desc()).limit(limit)))


def _last_progress(job: IngestJob) -> datetime:
    stamps = [datetime.fromisoformat(f["updated_at"]) for f in job.files if f.get("updated_at")]
    created = job.created_at if job.created_at.tzinfo else job.created_at.replace(tzinfo=UTC)
    return max([created, *stamps])


def _alive(owner: str | None, job: IngestJob | None = None) -> bool:
    if not owner or ":" not in owner:
        return False
    host, pid = owner.rsplit(":", 1)
    if host != socket.gethostname():
        # Another machine's job: its process cannot be checked from here, so it counts as alive until it
        # has shown no progress for STALE_AFTER_S (that machine crashed or was switched off).
        return job is None or (utcnow() - _last_progress(job)).total_seconds() < STALE_AFTER_S
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError):
        return False
    return int(pid) == os.getpid() or Path(f"/proc/{pid}").exists()


def recover_interrupted_jobs(engine: Engine) -> int:
    """Mark jobs whose process died as failed (their documents keep the last good version); returns how many.

    A process on this machine is checked by its pid; a job of another machine counts as interrupted once it
    has shown no progress for STALE_AFTER_S.
    """
    count = 0
    with _session(engine) as s, s.begin():
        for job in s.scalars(select(IngestJob).where(IngestJob.status.in_(("queued", "running")))):
            if job.owner == OWNER or _alive(job.owner, job):
                continue
            files = [dict(f) for f in job.files]
            for f in files:
                if f["status"] not in ("indexed", "unchanged", "failed"):
                    f.update(status="failed", error=INTERRUPTED)
            job.files, job.status, job.finished_at = files, "failed", utcnow()
            count += 1
            names = [f["name"] for f in files]
            for doc in s.scalars(
                select(Document).where(
                    Document.collection_id == job.collection_id,
                    Document.name.in_(names),
                    Document.status.in_(("queued", "indexing")),
                )
            ):
                doc.status = "failed"
                doc.error = "Interrupted while indexing; the previous version (if any) is still searchable."
    return count


def job_rows(job: IngestJob) -> list[dict[str, Any]]:
    """Per-file progress of a job: a 0..1 fraction for a progress bar and its label (name, status, detail)."""
    out = []
    for f in job.files:
        total, done = f.get("chunks_total"), f.get("chunks_embedded") or 0
        finished = f["status"] in ("indexed", "unchanged", "failed")
        fraction = 1.0 if finished else (done / total if total else 0.0)
        detail = f.get("error") or (f"{done}/{total} chunks" if total else "")
        out.append({**f, "fraction": fraction, "label": f"{f['name']} — {f['status']} {detail}".rstrip()})
    return out


def jobs_in_progress(jobs: list[IngestJob]) -> bool:
    """Whether any of `jobs` is still queued or running (the Documents page polls for progress only then)."""
    return any(j.status in ("queued", "running") for j in jobs)


def can_retry(job: IngestJob) -> bool:
    """Whether `job` has finished with failed files that a retry would index again."""
    return job.status in ("failed", "done") and any(f["status"] == "failed" for f in job.files)


def recover_after_restart(engine: Engine, client: Any, embeddings: Any) -> tuple[int, int]:
    """Start-up recovery: jobs of dead processes marked failed, then chunks of no current version purged.

    Returns (jobs recovered, chunks purged). Safe with other live processes on the same database and Chroma.
    """
    jobs = recover_interrupted_jobs(engine)
    return jobs, purge_orphan_chunks(engine, client, embeddings)


def retry_payloads(engine: Engine, job_id: int) -> tuple[Collection, list[Payload]]:
    """The collection and the failed files of a finished job, read back from their kept originals."""
    with _session(engine) as s:
        job = s.get(IngestJob, job_id)
        if job is None:
            raise JobError(f"There is no indexing job {job_id}.")
        if job.status in ("queued", "running"):
            raise JobError(f"Job {job_id} is still {job.status}; retry it once it has finished or failed.")
        collection = s.get_one(Collection, job.collection_id)
    failed = [f for f in job.files if f["status"] == "failed"]
    if not failed:
        raise JobError(f"Job {job_id} has no failed files to retry.")
    kept = [f for f in failed if f.get("original") and Path(f["original"]).exists()]
    if not kept:
        names = ", ".join(f["name"] for f in failed)
        raise JobError(
            f"Job {job_id}: the failed files ({names}) were not kept (they could not be read); upload them again."
        )
    return collection, [(f["name"], Path(f["original"]).read_bytes) for f in kept]


def retry_job(engine: Engine, indexer: Indexer, job_id: int, user: str | None, background: bool = True) -> int:
    """A new job for the failed files of job `job_id` (from their kept originals); returns its id."""
    collection, payloads = retry_payloads(engine, job_id)
    if background:
        return start_job(engine, indexer, collection, payloads, user)
    job = create_job(engine, collection, [n for n, _ in payloads], user)
    run_job(engine, indexer, job.id, payloads)
    return job.id


def reindex_document(
    engine: Engine, indexer: Indexer, document_id: int, user: str | None, background: bool = True
) -> int:
    """A job that indexes a document's kept original again, even if unchanged; returns its id.

    JobError if the document is gone, FileNotFoundError if its original was not kept.
    """
    with _session(engine) as s:
        doc = s.get(Document, document_id)
        collection = s.get(Collection, doc.collection_id) if doc is not None else None
    if collection is None:
        raise JobError(f"There is no document {document_id}; it may have just been deleted.")
    payloads: list[Payload] = [read_original(engine, document_id)]
    if background:
        return start_job(engine, indexer, collection, payloads, user, force=True)
    job = create_job(engine, collection, [n for n, _ in payloads], user)
    run_job(engine, indexer, job.id, payloads, force=True)
    return job.id
