"""Command line: `python -m lib.cli <command> ...`; each command is one small function registered below."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from lib.cli_documents import add_document_commands

COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def command(name: str, configure: Callable[[argparse.ArgumentParser], None]):
    """Register `run(args) -> exit code` as subcommand `name`; `configure` adds its options."""
    def register(run: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = (configure, run)
        return run
    return register


def _demo_usage_options(p: argparse.ArgumentParser) -> None:
    from lib.demo_usage import DEMO_DIR

    p.add_argument("--days", type=int, default=90, help="spread the calls over this many days up to now")
    p.add_argument("--calls", type=int, default=50_000, help="how many calls to write")
    p.add_argument("--data-dir", type=Path, default=DEMO_DIR,
                   help=f"demo data directory (default {DEMO_DIR}); never your real data dir")
    p.add_argument("--seed", type=int, default=7, help="random seed (same seed, same calls)")


@command("demo-usage", _demo_usage_options)
def demo_usage(args: argparse.Namespace) -> int:
    """Write synthetic calls into a separate, marked demo data dir so the Usage page can be seen full."""
    from lib.db import make_engine, migrate
    from lib.demo_usage import DemoDirError, prepare_demo_dir, write_demo_calls

    if args.days < 1 or args.calls < 1:
        print("--days and --calls must be at least 1.", file=sys.stderr)
        return 2
    try:
        path = prepare_demo_dir(args.data_dir)
    except DemoDirError as exc:
        print(exc, file=sys.stderr)
        return 2
    if (path / "workbench.db").exists():
        print(f"{path / 'workbench.db'} already exists; delete it (or pick another --data-dir) to start over.",
              file=sys.stderr)
        return 2
    engine = make_engine(f"sqlite:///{path / 'workbench.db'}")
    migrate(engine)
    t0 = time.perf_counter()
    n = write_demo_calls(engine, args.calls, args.days, seed=args.seed)
    engine.dispose()
    print(f"Wrote {n:,} demo calls over {args.days} days into {path} in {time.perf_counter() - t0:.1f} s.")
    print(f"See them: WORKBENCH_DATA_DIR={path} WORKBENCH_DEMO=1 make run  (the Usage page shows a demo banner)")
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv` and run the chosen command; returns its exit code."""
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
