"""Command-line pipelines for cron and scripts: `pipeline list`, `pipeline run NAME --input F --out F`,
`pipeline install-examples`.

`run` goes through the same job queue as the app (this process starts its own embedded workers unless the queue
is a Redis server worked by `lib.cli worker` processes). Exit 0 when every row completed or waits in review,
1 naming the failed rows (or a run paused by its budget), 2 on bad arguments, an unknown pipeline or a missing column.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path

DEFAULT_THREADS = 4
POLL_S = 0.5


def add_pipeline_commands(sub: argparse._SubParsersAction) -> None:
    """Register `pipeline` with its own subcommands on a subcommand parser."""
    pipeline = sub.add_parser("pipeline", help="list pipelines, run one over a CSV/JSONL file, install the examples")
    actions = pipeline.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="every pipeline with its newest version and labels")
    listing.add_argument("--json", action="store_true", help="print a JSON list")
    listing.set_defaults(run=cmd_list)
    run = actions.add_parser("run", help="run a pipeline over the rows of a CSV or JSONL file")
    run.add_argument("name", help="the pipeline's name (quote it when it has spaces)")
    run.add_argument("--version", type=int, default=None, help="a version number (default: the production label)")
    run.add_argument("--label", default=None, help="run the version this label points at (default production)")
    run.add_argument("--input", required=True, type=Path, help="rows.csv (header row first) or rows.jsonl")
    run.add_argument("--out", required=True, type=Path, help="results.jsonl (or .csv): one record per row")
    run.add_argument("--budget", type=float, default=None, help="hard budget in USD: the run pauses before crossing it")
    run.add_argument("--threads", type=int, default=None, help="rows at a time in this process (default 4)")
    run.add_argument("--quiet", action="store_true", help="no progress on stderr")
    run.set_defaults(run=cmd_run)
    examples = actions.add_parser("install-examples", help='add "Support triage" and "Review intelligence"')
    examples.set_defaults(run=cmd_install_examples)


def _user() -> str:
    import getpass
    import os

    return os.environ.get("WORKBENCH_USER") or getpass.getuser()


def cmd_list(args: argparse.Namespace) -> int:
    """Print every pipeline: name, newest version, labels."""
    from lib.core.settings import load_settings
    from lib.services import build_services

    infos = build_services(load_settings()).pipelines.list()
    if args.json:
        print(json.dumps([{"name": i.name, "latest": i.latest, "labels": i.labels} for i in infos], indent=2))
        return 0
    if not infos:
        print("No pipelines yet (python -m lib.cli pipeline install-examples adds two).")
    for i in infos:
        labels = ", ".join(f"{k}=v{v}" for k, v in sorted(i.labels.items()))
        print(f"{i.name}\tv{i.latest}\t{labels}")
    return 0


def cmd_install_examples(args: argparse.Namespace) -> int:
    """Install the shipped example pipelines and their templates (existing ones are left as they are)."""
    from lib.core.settings import load_settings
    from lib.pipelines.examples import install_examples, load_examples
    from lib.services import build_services

    services = build_services(load_settings())
    made = install_examples(services.pipelines, services.templates, _user())
    for example in load_examples():
        state = "installed" if example.pipeline.name in made else "already there"
        print(f"{example.pipeline.name}: {state}; sample rows: {example.sample}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run a pipeline over a file through the job queue; write the results; exit 0/1/2 (see the module)."""
    from lib.core.settings import load_settings
    from lib.jobs.queue import ensure_embedded, stop_embedded
    from lib.pipelines.definition import PipelineError
    from lib.pipelines.export import export_csv, export_jsonl
    from lib.pipelines.inputs import read_rows
    from lib.pipelines.runs import cancel_run, run_status, start_run
    from lib.services import build_services

    if args.threads is not None and args.threads < 1:
        print("error: --threads must be at least 1.", file=sys.stderr)
        return 2
    if args.version is not None and args.label is not None:
        print("error: give --version or --label, not both.", file=sys.stderr)
        return 2
    if not args.input.is_file():
        print(f"error: {args.input}: no such file.", file=sys.stderr)
        return 2
    if args.out.suffix.lower() not in (".jsonl", ".csv"):
        print("error: --out must end in .jsonl or .csv.", file=sys.stderr)
        return 2
    services = build_services(load_settings())
    try:
        rows = read_rows(args.input.read_bytes(), args.input.name)
        pipeline = services.pipelines.get(args.name, args.version, args.label)
        run_id = start_run(
            services.pipeline_deps, pipeline, rows, _user(), budget_usd=args.budget, source=args.input.name
        )
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    threads = args.threads or services.settings.app_workers or (0 if services.settings.queue_url else DEFAULT_THREADS)
    ensure_embedded(services.queue, threads)
    if not args.quiet:
        where = f"{threads} thread(s) here" if threads else "the queue's workers"
        print(f"Run #{run_id}: {pipeline.name} v{pipeline.version}, {len(rows)} row(s), on {where}.", file=sys.stderr)
    stop = threading.Event()
    try:
        while True:
            status = run_status(services.engine, run_id)
            if not args.quiet:
                counts = status.rows
                print(
                    f"\r  {status.done}/{status.total} rows · {counts['completed']} completed · {counts['failed']} failed · "
                    f"{counts['review']} in review · ${status.cost_usd:.4f}",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )
            if status.state not in ("queued", "running"):
                break
            stop.wait(POLL_S)
    except KeyboardInterrupt:
        cancel_run(services.engine, run_id)
        print(f"\nRun #{run_id} cancelled.", file=sys.stderr)
        return 130
    finally:
        if not args.quiet:
            print(file=sys.stderr)
        stop_embedded(graceful=True)
    text = (
        export_csv(services.engine, run_id)
        if args.out.suffix.lower() == ".csv"
        else export_jsonl(services.engine, run_id)
    )
    args.out.write_text(text, encoding="utf-8", newline="")
    print(f"Run #{run_id} {status.label}; results in {args.out}.", file=sys.stderr)
    if status.state == "paused_budget":
        print(f"error: {status.note}", file=sys.stderr)
        return 1
    if status.rows["failed"]:
        from lib.pipelines.runs import results

        failed = [r for r in results(services.engine, run_id) if r.status == "failed"]
        for r in failed:
            print(f"error: row {r.position + 1} failed at step {r.step}: {r.error}", file=sys.stderr)
        print(f"{len(failed)} row(s) failed: {', '.join(str(r.position + 1) for r in failed)}", file=sys.stderr)
        return 1
    if status.state == "cancelled":
        return 1
    return 0
