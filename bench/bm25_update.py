"""The first hybrid query after a small upload to a large collection: incremental BM25 update vs rebuild.

Target: with 20k chunks stored, the first hybrid query after one small document is indexed is at least
10x faster when the retriever updates its BM25 index (reads and tokenizes only the new chunks) than when
it rebuilds the index from scratch (reads and tokenizes every chunk) — the baseline, timed in the same run
by a retriever that has no index yet. The query vector is given, so embedding is not timed; the upload is
not timed either. Corpus and vectors as in bench/retrieval.py.
Run: `.venv/bin/python bench/bm25_update.py [--size 20000] [--trials 5]`.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


from bench.retrieval import QUERIES, store_synthetic_collection
from lib.core.settings import load_settings
from lib.documents.embeddings import make_local_embeddings
from lib.documents.retrieval import RetrievalSettings, Retriever
from lib.documents.vectorstore import get_all
from lib.services import build_services

TARGET = 10.0


def timed(fn) -> tuple[float, object]:
    """(seconds, result) of one call."""
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=20_000)
    ap.add_argument("--trials", type=int, default=5)
    args = ap.parse_args()
    rng, nprng = random.Random(7), np.random.default_rng(7)
    model = make_local_embeddings()
    qvec = model.embed_query(QUERIES[0])
    with tempfile.TemporaryDirectory() as tmp:
        services = build_services(load_settings(env={"WORKBENCH_DATA_DIR": tmp}), embeddings=model)
        col = store_synthetic_collection(services, args.size, rng, nprng)
        store = services.retriever.store(col.chroma_name)
        listing, ids = timed(lambda: get_all(store, []))
        print(
            f"{args.size:,} chunks stored; listing every id (get(include=[])) takes {listing * 1000:.0f} ms "
            f"({len(ids['ids']):,} ids) — not needed: the database says which document versions are new"
        )
        hybrid = RetrievalSettings(k=5, mode="hybrid")
        first, _ = timed(lambda: services.retriever.search("bench", QUERIES[0], hybrid, query_vector=qvec))
        print(f"first hybrid query (builds the BM25 index): {first:.2f} s")
        incremental, scratch = [], []
        for trial in range(args.trials):
            for path in ("incremental", "scratch"):
                word = f"zq{trial}{path[0]}x"
                services.indexer.index_file(
                    col, f"note-{word}.txt", f"Memo {word}: the {word} review meets on Fridays in room 4.".encode()
                )
                retriever = services.retriever
                if path == "scratch":
                    retriever = Retriever(services.engine, services.client, model)
                    retriever.store(col.chroma_name)  # opening the store is not part of the rebuild
                seconds, _ = timed(
                    lambda r=retriever, w=word: r.search("bench", f"{w} review", hybrid, query_vector=qvec)
                )
                (incremental if path == "incremental" else scratch).append(seconds)
                top = retriever.search("bench", f"{word} review", RetrievalSettings(k=1, mode="bm25"))[0]
                assert top.document == f"note-{word}.txt", (path, top.document)
                print(
                    f"trial {trial + 1}: first hybrid query after a small upload, {path:11s}: {seconds * 1000:7.1f} ms"
                )
    inc, base = statistics.median(incremental), statistics.median(scratch)
    ratio = base / inc
    print(
        f"\nmedian over {args.trials} uploads at {args.size:,} chunks: incremental {inc * 1000:.1f} ms, "
        f"from-scratch rebuild {base * 1000:.1f} ms: {ratio:.1f}x faster (target >= {TARGET:g}x)"
    )
    print(
        json.dumps(
            {
                "metric": f"first_hybrid_query_after_upload_ms_at_{args.size}",
                "value": round(inc * 1000, 1),
                "baseline": round(base * 1000, 1),
                "ratio": round(ratio, 1),
                "target": f">= {TARGET:g}x",
                "met": ratio >= TARGET,
            }
        )
    )


if __name__ == "__main__":
    main()
