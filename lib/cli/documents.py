"""Command-line document work: `ingest PATH... --collection NAME`, `jobs`, `retry JOB`, `search "QUERY" --collection NAME`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from lib.core.settings import load_settings
from lib.documents.indexing import CollectionError, get_collection
from lib.documents.parsing import SUPPORTED


def files_under(paths: list[str]) -> list[Path]:
    """Supported files among `paths`, folders searched recursively, in a stable order."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in SUPPORTED)
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"{raw}: no such file or folder")
    return out


def cmd_ingest(args: argparse.Namespace) -> int:
    """Index files and folders into a collection, printing one line per file."""
    from lib.services import build_services

    try:
        files = files_under(args.paths)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not files:
        print("error: no supported files found (" + ", ".join(sorted(SUPPORTED)) + ")", file=sys.stderr)
        return 2
    from lib.documents.jobs import create_job

    services = build_services(load_settings())
    collection = get_collection(
        services.engine, args.collection, create=True, embedding_model=services.settings.embedding_model
    )
    # A recorded job, like an upload's: its progress shows on the Documents page, and if this process dies
    # the app's start-up recovery marks it failed and it can be retried (`retry JOB`).
    job = create_job(services.engine, collection, [p.name for p in files], _user())
    print(f"Job {job.id}: {len(files)} file(s) into collection {args.collection!r}.", file=sys.stderr)
    failed = _run_printing(services, job.id, [(p.name, p.read_bytes) for p in files], args.quiet)
    print(f"{len(files) - failed} of {len(files)} files indexed or unchanged in collection {args.collection!r}.")
    return 1 if failed else 0


def _user() -> str:
    import getpass
    import os

    return os.environ.get("WORKBENCH_USER") or getpass.getuser()


def _run_printing(services, job_id: int, payloads: list, quiet: bool) -> int:
    """Run a job, printing one line per file (progress on stderr); returns how many files failed."""
    from lib.documents.jobs import run_job

    def progress(i: int, event: dict) -> None:
        if event.get("status") == "embedding" and not quiet:
            print(
                f"\r  {payloads[i][0]}: {event['chunks_embedded']}/{event['chunks_total']} chunks",
                end="",
                file=sys.stderr,
                flush=True,
            )

    def done(i: int, outcome) -> None:
        if not quiet:
            print("\r\033[K", end="", file=sys.stderr)
        detail = outcome.error if outcome.status == "failed" else f"{outcome.chunks} chunks, version {outcome.version}"
        print(f"[{i + 1}/{len(payloads)}] {outcome.name}: {outcome.status} ({detail})", flush=True)

    outcomes = run_job(services.engine, services.indexer, job_id, payloads, on_progress=progress, on_file=done)
    return sum(o.status == "failed" for o in outcomes)


def cmd_jobs(args: argparse.Namespace) -> int:
    """List recent indexing jobs with each file's status and, for failures, the reason."""
    from lib.documents.jobs import recent_jobs, recover_after_restart
    from lib.services import build_services

    services = build_services(load_settings())
    if args.recover:
        jobs, chunks = recover_after_restart(services.engine, services.client, services.embeddings)
        print(f"Recovered {jobs} interrupted job(s); purged {chunks} orphan chunk(s).", file=sys.stderr)
    rows: list[dict[str, Any]] = [
        {
            "id": j.id,
            "status": j.status,
            "user": j.user,
            "created_at": j.created_at.isoformat(),
            "files": [
                {k: f.get(k) for k in ("name", "status", "chunks_embedded", "chunks_total", "error", "worker")}
                for f in j.files
            ],
        }
        for j in recent_jobs(services.engine, args.limit)
    ]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    for r in rows:
        print(f"job {r['id']}: {r['status']} ({r['user']}, {r['created_at'][:19]})")
        for f in r["files"]:
            print(f"    {f['name']}: {f['status']}" + (f" — {f['error']}" if f["error"] else ""))
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    """Retry the failed files of an indexing job (e.g. one interrupted by a crash) from their kept originals."""
    from lib.documents.jobs import JobError, create_job, recover_after_restart, retry_payloads
    from lib.services import build_services

    services = build_services(load_settings())
    recover_after_restart(services.engine, services.client, services.embeddings)  # a dead job is failed first
    try:
        collection, payloads = retry_payloads(services.engine, args.job)
    except JobError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    job = create_job(services.engine, collection, [n for n, _ in payloads], _user())
    print(f"Job {job.id} retries {len(payloads)} file(s) of job {args.job}.", file=sys.stderr)
    failed = _run_printing(services, job.id, payloads, args.quiet)
    return 1 if failed else 0


def cmd_search(args: argparse.Namespace) -> int:
    """Search a collection with the same retrieval as Chat."""
    from lib.services import build_services

    services = build_services(load_settings())
    try:
        hits = services.retriever.search(args.collection, args.query, services.retrieval(args.k, args.mode))
    except CollectionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = [
        {"document": h.document, "page": h.page, "chunk": h.chunk_index, "score": h.score, "text": h.text} for h in hits
    ]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        for h in hits:
            print(
                f"[{h.number}] {h.label()} (chunk {h.chunk_index}, score {h.score:.3f})\n    "
                + h.text[:300].replace("\n", " ")
            )
    return 0


def add_document_commands(sub: argparse._SubParsersAction) -> None:
    """Register `ingest`, `jobs`, `retry` and `search` on a subcommand parser."""
    ingest = sub.add_parser("ingest", help="index files or folders into a collection")
    ingest.add_argument("paths", nargs="+", help="files or folders (searched recursively)")
    ingest.add_argument("--collection", required=True, help="collection name (created if missing)")
    ingest.add_argument("--quiet", action="store_true", help="no progress on stderr")
    ingest.set_defaults(run=cmd_ingest)
    jobs = sub.add_parser("jobs", help="list recent indexing jobs and why files failed")
    jobs.add_argument("--limit", type=int, default=10)
    jobs.add_argument(
        "--recover", action="store_true", help="first mark jobs of dead processes failed and purge their orphan chunks"
    )
    jobs.add_argument("--json", action="store_true", help="print a JSON list")
    jobs.set_defaults(run=cmd_jobs)
    retry = sub.add_parser("retry", help="retry the failed files of an indexing job")
    retry.add_argument("job", type=int, help="the job's id (see `jobs`)")
    retry.add_argument("--quiet", action="store_true", help="no progress on stderr")
    retry.set_defaults(run=cmd_retry)
    search = sub.add_parser("search", help="search a collection as Chat does")
    search.add_argument("query")
    search.add_argument("--collection", required=True)
    search.add_argument("-k", type=int, default=5, help="how many chunks (default 5)")
    search.add_argument("--mode", choices=("hybrid", "vector", "bm25"), default=None)
    search.add_argument("--json", action="store_true", help="print a JSON list")
    search.set_defaults(run=cmd_search)
