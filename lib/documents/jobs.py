"""Indexing jobs: recorded in the database, one queued item per file (lib.jobs), progress visible to any page run.

Uploads from the pages go on the queue (`start_job`): the bytes are stored with each item, so any worker can index
them, and a file whose worker dies is indexed again (the indexer is idempotent: same ids, same version). The
command line indexes in its own process (`create_job` + `run_job`), as before.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, exists, select, update
from sqlalchemy.orm import Session

from lib.core.tables import Collection, Document, IngestJob, JobItem, utcnow
from lib.documents.indexing import FileOutcome, Indexer, purge_orphan_chunks, read_original
from lib.jobs import items
from lib.jobs.items import ItemContext
from lib.jobs.queue import WorkQueue

log = logging.getLogger(__name__)
KIND = "index"  # job items of indexing jobs: one per file
FILE_FINAL = ("indexed", "unchanged", "failed", "cancelled")
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
    queue: WorkQueue,
    collection: Collection,
    payloads: list[Payload],
    user: str | None,
    force: bool = False,
) -> int:
    """Record the job, store each file's bytes with its queue item and enqueue them; returns the job's id at once."""
    job = create_job(engine, collection, [n for n, _ in payloads], user)
    ids = items.add_items(
        engine,
        KIND,
        job.id,
        [(i, name, {"status": "queued", "force": force}) for i, (name, _) in enumerate(payloads)],
        [data() if callable(data) else data for _, data in payloads],
    )
    with _session(engine) as s, s.begin():
        s.execute(update(IngestJob).where(IngestJob.id == job.id).values(owner=None))
    queue.enqueue(KIND, ids)
    return job.id


def index_item(engine: Engine, indexer: Indexer, ctx: ItemContext) -> tuple[str, str | None] | None:
    """The queue's task for one file: index the bytes stored with the item, reporting progress on it."""
    item = ctx.item
    with _session(engine) as s:
        job = s.get(IngestJob, item.job_id)
        collection = s.get(Collection, job.collection_id) if job is not None else None
    if collection is None:
        return "failed", "The collection of this upload was deleted."
    data = items.read_blob(engine, item.id)
    if data is None:
        return "failed", "The uploaded bytes are no longer stored; upload the file again."
    ctx.report({"status": "parsing", "error": None}, force=True)

    def progress(event: dict[str, Any]) -> None:
        ctx.report(event, force=event.get("status") in ("parsed", "failed"))

    outcome = indexer.index_file(collection, item.name, data, progress, force=bool(item.progress.get("force")))
    ctx.report(
        {
            "status": outcome.status,
            "error": outcome.error,
            "chunks_total": outcome.chunks,
            "chunks_embedded": outcome.chunks,
            "pages": outcome.pages,
        },
        force=True,
    )  # raises Cancelled if a cancel came while the file was indexed (a cancelled file ends failed, not half-done)
    return ("failed", outcome.error) if outcome.status == "failed" else None


def settle_job(engine: Engine, job_id: int) -> None:
    """Record the job's final status once none of its files is queued or running (after each file ends)."""
    status = items.settled_status(engine, KIND, job_id)
    if status is not None:
        with _session(engine) as s, s.begin():
            s.execute(
                update(IngestJob)
                .where(IngestJob.id == job_id, items.none_active(KIND, job_id))
                .values(status=status, finished_at=utcnow())
            )


def cancel_job(engine: Engine, job_id: int) -> None:
    """Cancel a queued or running job: files not started never start, a file being indexed stops at its next step."""
    if not items.has_items(engine, KIND, job_id):
        raise JobError(f"Job {job_id} did not run on the queue; it cannot be cancelled from here.")
    items.cancel(engine, KIND, job_id)
    settle_job(engine, job_id)


@dataclass
class JobView:
    """An indexing job as the pages and the command line show it: its files' state, from the queue when it ran there."""

    id: int
    collection_id: int
    user: str | None
    status: str
    created_at: datetime
    finished_at: datetime | None
    files: list[dict[str, Any]]
    queued: bool  # runs on the queue (can be cancelled); older and command-line jobs do not


def _file_from_item(item: JobItem) -> dict[str, Any]:
    p = item.progress
    status: str = item.status
    if item.status == "running":
        status = str(p.get("status") or "running")
    elif item.status == "done":
        status = "unchanged" if p.get("status") == "unchanged" else "indexed"
    return {
        "name": item.name,
        "status": status,
        "pages": p.get("pages"),
        "chunks_total": p.get("chunks_total"),
        "chunks_embedded": p.get("chunks_embedded") or 0,
        "error": item.error or (p.get("error") if status == "failed" else None),
        "original": p.get("original"),
        "worker": item.worker,
        "attempts": item.attempts,
        "item_id": item.id,
    }


def recent_jobs(engine: Engine, limit: int = 10) -> list[JobView]:
    """The newest jobs, newest first, each with its files' current state."""
    with _session(engine) as s:
        rows = list(s.scalars(select(IngestJob).order_by(IngestJob.id.desc()).limit(limit)))
    queued = items.job_items(engine, KIND, [j.id for j in rows])
    out = []
    for j in rows:
        its = queued.get(j.id)
        files = [_file_from_item(i) for i in its] if its else [dict(f) for f in j.files]
        status = items.overall_status(i.status for i in its) if its else j.status
        out.append(JobView(j.id, j.collection_id, j.user, status, j.created_at, j.finished_at, files, bool(its)))
    return out


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
    on_queue = exists().where(JobItem.kind == KIND, JobItem.job_id == IngestJob.id)  # the queue resumes those
    with _session(engine) as s, s.begin():
        for job in s.scalars(select(IngestJob).where(IngestJob.status.in_(("queued", "running")), ~on_queue)):
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


def job_rows(job: JobView | IngestJob) -> list[dict[str, Any]]:
    """Per-file progress of a job: a 0..1 fraction for a progress bar and its label (name, status, detail, worker)."""
    out = []
    for f in job.files:
        total, done = f.get("chunks_total"), f.get("chunks_embedded") or 0
        finished = f["status"] in FILE_FINAL
        fraction = 1.0 if finished else (done / total if total else 0.0)
        detail = f.get("error") or (f"{done}/{total} chunks" if total and f["status"] != "unchanged" else "")
        where = f" · on {f['worker']}" if f.get("worker") and not finished and f["status"] != "queued" else ""
        label = f"{f['name']} — {f['status']} {detail}".rstrip() + where
        out.append({**f, "fraction": fraction, "label": label})
    return out


def jobs_in_progress(jobs: list[JobView] | list[IngestJob]) -> bool:
    """Whether any of `jobs` is still queued or running (the Documents page polls for progress only then)."""
    return any(j.status in ("queued", "running") for j in jobs)


def can_retry(job: JobView | IngestJob) -> bool:
    """Whether `job` has finished with failed (or cancelled) files that a retry would index again."""
    return job.status in ("failed", "done", "cancelled") and any(
        f["status"] in ("failed", "cancelled") for f in job.files
    )


def can_cancel(job: JobView) -> bool:
    """Whether `job` runs on the queue and still has files queued or running."""
    return job.queued and job.status in ("queued", "running")


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
    failed = [f for f in job.files if f["status"] in ("failed", "cancelled")]
    if not failed:
        raise JobError(f"Job {job_id} has no failed files to retry.")
    kept = [f for f in failed if f.get("original") and Path(f["original"]).exists()]
    if not kept:
        names = ", ".join(f["name"] for f in failed)
        raise JobError(
            f"Job {job_id}: the failed files ({names}) were not kept (they could not be read); upload them again."
        )
    return collection, [(f["name"], Path(f["original"]).read_bytes) for f in kept]


def retry_job(engine: Engine, indexer: Indexer, job_id: int, user: str | None) -> int:
    """A new job, run here and now, for the failed files of job `job_id` (from their kept originals); its id."""
    collection, payloads = retry_payloads(engine, job_id)
    job = create_job(engine, collection, [n for n, _ in payloads], user)
    run_job(engine, indexer, job.id, payloads)
    return job.id


def queue_retry(engine: Engine, queue: WorkQueue, job_id: int, user: str | None) -> int:
    """Retry a job's failed and cancelled files on the queue; returns the job that runs them.

    A job that ran on the queue retries its own items (their bytes are kept until they succeed); an older or
    command-line job gets a new queued job from the kept originals.
    """
    if items.has_items(engine, KIND, job_id):
        ids = items.requeue(engine, KIND, job_id)
        if not ids:
            raise JobError(f"Job {job_id} has no failed files to retry.")
        with _session(engine) as s, s.begin():
            s.execute(update(IngestJob).where(IngestJob.id == job_id).values(status="queued", finished_at=None))
        queue.enqueue(KIND, ids)
        return job_id
    collection, payloads = retry_payloads(engine, job_id)
    return start_job(engine, queue, collection, payloads, user)


def _reindex_payload(engine: Engine, document_id: int) -> tuple[Collection, Payload]:
    with _session(engine) as s:
        doc = s.get(Document, document_id)
        collection = s.get(Collection, doc.collection_id) if doc is not None else None
    if collection is None:
        raise JobError(f"There is no document {document_id}; it may have just been deleted.")
    return collection, read_original(engine, document_id)


def reindex_document(engine: Engine, indexer: Indexer, document_id: int, user: str | None) -> int:
    """A job, run here and now, that indexes a document's kept original again, even if unchanged; returns its id.

    JobError if the document is gone, FileNotFoundError if its original was not kept.
    """
    collection, payload = _reindex_payload(engine, document_id)
    job = create_job(engine, collection, [payload[0]], user)
    run_job(engine, indexer, job.id, [payload], force=True)
    return job.id


def queue_reindex(engine: Engine, queue: WorkQueue, document_id: int, user: str | None) -> int:
    """Queue a job that indexes a document's kept original again, even if unchanged; returns its id."""
    collection, payload = _reindex_payload(engine, document_id)
    return start_job(engine, queue, collection, [payload], user, force=True)
