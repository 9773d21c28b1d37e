"""The workbench's command line: `python -m lib.cli COMMAND ...`."""

from __future__ import annotations

import argparse
import logging
import sys

from lib.cli_documents import add_document_commands


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="python -m lib.cli", description="AI Workbench command line")
    sub = parser.add_subparsers(dest="command", required=True)
    add_document_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit code."""
    logging.basicConfig(level=logging.WARNING)
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
