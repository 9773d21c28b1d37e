"""View models for queued work on the Documents and Compare pages: what a job's panel says and which buttons it has."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from lib.compare.runs import Checks, Variant, get_run, queue_run, run_progress, run_workers, start_run
from lib.documents.jobs import JobView, can_cancel, can_retry, job_rows
from lib.jobs.queue import WorkQueue


@dataclass(frozen=True)
class JobPanel:
    """One indexing job as the Documents page draws it."""

    caption: str
    rows: list[dict[str, Any]]  # per file: fraction and label
    cancel: bool  # offer "Cancel"
    retry: bool  # offer "Retry failed files"


def job_panel(job: JobView) -> JobPanel:
    """The caption, per-file progress and buttons of an indexing job."""
    caption = f"Job {job.id} · {job.status} · {job.created_at:%Y-%m-%d %H:%M} · {job.user or ''}".rstrip(" ·")
    return JobPanel(caption, job_rows(job), can_cancel(job), can_retry(job))


def start_batch(
    engine: Engine,
    queue: WorkQueue,
    name: str,
    test_set_id: int,
    variants: Mapping[str, Variant],
    checks: Checks,
    user: str | None,
) -> int:
    """Record a batch run and put its cases on the queue; its id (CompareError when it cannot start)."""
    run_id = start_run(engine, name, test_set_id, variants["A"], variants["B"], checks, user)
    queue_run(engine, queue, run_id)
    return run_id


@dataclass(frozen=True)
class BatchStatus:
    """A batch run's progress line and buttons on the Compare page."""

    fraction: float
    text: str
    active: bool  # queued or running: the page keeps polling
    cancel: bool
    retry: bool
    caption: str


def batch_status(engine: Engine, run_id: int) -> BatchStatus:
    """Progress of a run from the database (any process may be running it), with who runs it and what can be done."""
    run, progress = get_run(engine, run_id), run_progress(engine, run_id)
    status = run["status"]
    active = status in ("queued", "running")
    workers = run_workers(engine, run_id) if active else []
    text = f"Run #{run_id} ({status}): {progress.done}/{progress.total} rows, {progress.failed} failed"
    if workers:
        text += " · on " + ", ".join(workers)
    caption = "" if active else f"Run #{run_id} is {status}; open it on the Results tab."
    retry = not active and (progress.failed > 0 or progress.done < progress.total)
    return BatchStatus(progress.done / max(progress.total, 1), text, active, active, retry, caption)
