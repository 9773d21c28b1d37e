"""Command-line document work: `ingest PATH... --collection NAME` and `search "QUERY" --collection NAME`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lib.config import load_settings
from lib.ingest import CollectionError, get_collection
from lib.parsing import SUPPORTED


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
    services = build_services(load_settings())
    collection = get_collection(services.engine, args.collection, create=True,
                                embedding_model=services.settings.embedding_model)
    failed = 0
    for i, path in enumerate(files, 1):
        def progress(event: dict, path: Path = path) -> None:
            if event.get("status") == "embedding" and not args.quiet:
                print(f"\r  {path.name}: {event['chunks_embedded']}/{event['chunks_total']} chunks", end="",
                      file=sys.stderr, flush=True)

        outcome = services.indexer.index_file(collection, path.name, path.read_bytes(), progress)
        if not args.quiet:
            print("\r\033[K", end="", file=sys.stderr)
        detail = outcome.error if outcome.status == "failed" else f"{outcome.chunks} chunks, version {outcome.version}"
        print(f"[{i}/{len(files)}] {path.name}: {outcome.status} ({detail})")
        failed += outcome.status == "failed"
    print(f"{len(files) - failed} of {len(files)} files indexed or unchanged in collection {args.collection!r}.")
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
    rows = [{"document": h.document, "page": h.page, "chunk": h.chunk_index, "score": h.score, "text": h.text}
            for h in hits]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        for h in hits:
            print(f"[{h.number}] {h.label()} (chunk {h.chunk_index}, score {h.score:.3f})\n    "
                  + h.text[:300].replace("\n", " "))
    return 0


def add_document_commands(sub: argparse._SubParsersAction) -> None:
    """Register `ingest` and `search` on a subcommand parser."""
    ingest = sub.add_parser("ingest", help="index files or folders into a collection")
    ingest.add_argument("paths", nargs="+", help="files or folders (searched recursively)")
    ingest.add_argument("--collection", required=True, help="collection name (created if missing)")
    ingest.add_argument("--quiet", action="store_true", help="no progress on stderr")
    ingest.set_defaults(run=cmd_ingest)
    search = sub.add_parser("search", help="search a collection as Chat does")
    search.add_argument("query")
    search.add_argument("--collection", required=True)
    search.add_argument("-k", type=int, default=5, help="how many chunks (default 5)")
    search.add_argument("--mode", choices=("hybrid", "vector", "bm25"), default=None)
    search.add_argument("--json", action="store_true", help="print a JSON list")
    search.set_defaults(run=cmd_search)
