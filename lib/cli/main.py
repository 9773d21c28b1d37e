"""Command line: `python -m lib.cli <command> ...`; each command is one small function registered below."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from lib.cli.documents import add_document_commands
from lib.cli.pipeline import add_pipeline_commands

COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def command(name: str, configure: Callable[[argparse.ArgumentParser], None]):
    """Register `run(args) -> exit code` as subcommand `name`; `configure` adds its options."""

    def register(run: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = (configure, run)
        return run

    return register


def _demo_usage_options(p: argparse.ArgumentParser) -> None:
    from lib.usage.demo import DEMO_DIR

    p.add_argument("--days", type=int, default=90, help="spread the calls over this many days up to now")
    p.add_argument("--calls", type=int, default=50_000, help="how many calls to write")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=DEMO_DIR,
        help=f"demo data directory (default {DEMO_DIR}); never your real data dir",
    )
    p.add_argument("--seed", type=int, default=7, help="random seed (same seed, same calls)")


@command("demo-usage", _demo_usage_options)
def demo_usage(args: argparse.Namespace) -> int:
    """Write synthetic calls into a separate, marked demo data dir so the Usage page can be seen full."""
    from lib.services import open_engine
    from lib.usage.demo import DemoDirError, prepare_demo_dir, write_demo_calls

    if args.days < 1 or args.calls < 1:
        print("--days and --calls must be at least 1.", file=sys.stderr)
        return 2
    try:
        path = prepare_demo_dir(args.data_dir)
    except DemoDirError as exc:
        print(exc, file=sys.stderr)
        return 2
    if (path / "workbench.db").exists():
        print(
            f"{path / 'workbench.db'} already exists; delete it (or pick another --data-dir) to start over.",
            file=sys.stderr,
        )
        return 2
    engine = open_engine(f"sqlite:///{path / 'workbench.db'}")
    t0 = time.perf_counter()
    n = write_demo_calls(engine, args.calls, args.days, seed=args.seed)
    engine.dispose()
    print(f"Wrote {n:,} demo calls over {args.days} days into {path} in {time.perf_counter() - t0:.1f} s.")
    print(f"See them: WORKBENCH_DATA_DIR={path} WORKBENCH_DEMO=1 make run  (the Usage page shows a demo banner)")
    return 0


def _move_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--to-database-url",
        metavar="URL",
        help="copy the database here, e.g. postgresql://workbench@db-host/workbench (migrated first)",
    )
    p.add_argument("--to-chroma-host", metavar="HOST", help="copy every Chroma collection to this Chroma server")
    p.add_argument("--to-chroma-port", metavar="PORT", type=int, default=8000, help="its port (default 8000)")
    p.add_argument(
        "--replace-target",
        action="store_true",
        help="empty the target's tables and same-named collections first (default: refuse a non-empty target)",
    )
    p.add_argument("--page", type=int, default=1000, help="rows or chunks per read and write (default 1000)")


@command("move", _move_options)
def move_install(args: argparse.Namespace) -> int:
    """Copy this install (the current settings) to PostgreSQL and/or a Chroma server, then check the counts."""
    from lib.cli.move import MoveError, move
    from lib.core.settings import load_settings

    if not args.to_database_url and not args.to_chroma_host:
        print("Give --to-database-url and/or --to-chroma-host.", file=sys.stderr)
        return 2
    settings = load_settings()
    to_chroma = (args.to_chroma_host, args.to_chroma_port) if args.to_chroma_host else None
    print(
        f"Moving from {settings.database_url.split('@')[-1]} and "
        f"{f'{settings.chroma_host}:{settings.chroma_port}' if settings.chroma_host else settings.chroma_path}."
    )
    try:
        report = move(settings, args.to_database_url, to_chroma, replace=args.replace_target, page=args.page)
    except MoveError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    bad = report.mismatches()
    if bad:
        print("error: the copy is incomplete; counts differ:\n  " + "\n  ".join(bad), file=sys.stderr)
        return 1
    parts = []
    if report.tables:
        parts.append(f"{report.rows:,} rows in {len(report.tables)} tables")
    if report.collections:
        parts.append(f"{report.chunks:,} chunks in {len(report.collections)} collections")
    print(f"Moved {' and '.join(parts)} in {report.seconds:.1f} s; every count matches.")
    env = []
    if args.to_database_url:
        env.append("DATABASE_URL=<the target URL>")
    if to_chroma:
        env.append(f"CHROMA_HOST={to_chroma[0]} CHROMA_PORT={to_chroma[1]}")
    print("Point the app at it: " + " ".join(env))
    return 0


def _worker_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads",
        type=int,
        default=4,
        help="model calls (or indexing items) at once; as many more threads prepare and record items (default 4)",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve Prometheus metrics on this port (default WORKBENCH_METRICS_PORT; one port per process)",
    )


@command("worker", _worker_options)
def work_queue(args: argparse.Namespace) -> int:
    """Work the job queue (indexing, batch runs, housekeeping) until SIGTERM (finishes items in hand) or Ctrl-C."""
    from lib.core.heap import freeze_startup_heap
    from lib.core.settings import load_settings
    from lib.gateway.client import import_model_stack
    from lib.jobs.items import worker_id
    from lib.jobs.queue import QueueConsumer
    from lib.services import build_services
    from lib.telemetry.metrics import MetricsPortInUse

    if args.threads < 1:
        print("--threads must be at least 1.", file=sys.stderr)
        return 2
    services = build_services(load_settings())
    try:
        metrics = services.start_metrics(args.metrics_port)
    except MetricsPortInUse as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    services.recover_interrupted()
    queue = services.queue
    where = queue.location.rsplit("@", 1)[-1]  # never print a password from the Redis URL
    serving = f"; metrics on port {metrics.port}" if metrics else ""
    import_model_stack()
    freeze_startup_heap()  # after every start-up import: later full collections skip all of it
    print(f"Worker {worker_id()}: {args.threads} thread(s) on {where}{serving}.", file=sys.stderr, flush=True)
    QueueConsumer(queue, args.threads, embedded=False).run()
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The parser with every registered subcommand."""
    parser = argparse.ArgumentParser(prog="python -m lib.cli", description="AI Workbench commands")
    subs = parser.add_subparsers(dest="command", required=True)
    for name, (configure, run) in COMMANDS.items():
        sub = subs.add_parser(name, help=(run.__doc__ or "").strip().splitlines()[0])
        configure(sub)
        sub.set_defaults(run=run)
    add_document_commands(subs)
    add_pipeline_commands(subs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv` and run the chosen command; returns its exit code."""
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
