"""Ingestion throughput (parse, split, embed, store) against the bare embedding model on the same chunks.

Target: at least 0.9 of the bare model's chunks per second. Also reports the time to re-upload an
unchanged document (target: well under a second). Documents: the license texts in
/usr/share/common-licenses (real third-party text on every Debian machine).
Run: `.venv/bin/python bench/ingest.py [--rounds 2]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lib.core.settings import load_settings
from lib.documents.embeddings import make_local_embeddings
from lib.documents.indexing import get_collection, split_pages
from lib.documents.parsing import parse_file
from lib.services import build_services, chunking_from

DOCS = ["Apache-2.0", "GPL-3", "GPL-2", "LGPL-2.1", "MPL-2.0", "GFDL-1.3"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    files = [(n, (Path("/usr/share/common-licenses") / n).read_bytes()) for n in DOCS]
    model = make_local_embeddings()
    model.embed_documents(["warm-up"])
    settings0 = load_settings(env={"WORKBENCH_DATA_DIR": tempfile.mkdtemp()})
    chunks = [c.text for n, d in files for c in split_pages(parse_file(n, d, 10**9), chunking_from(settings0))]
    print(
        f"{len(files)} documents, {sum(len(d) for _, d in files) / 1e3:.0f} kB, {len(chunks)} chunks "
        f"(chunk size {settings0.chunk_size}, overlap {settings0.chunk_overlap})"
    )
    bare_rates, ingest_rates, reupload = [], [], []
    for r in range(args.rounds):  # alternate so machine noise hits both sides alike
        t = time.perf_counter()
        model.embed_documents(chunks)
        bare_rates.append(len(chunks) / (time.perf_counter() - t))
        with tempfile.TemporaryDirectory() as tmp:
            services = build_services(load_settings(env={"WORKBENCH_DATA_DIR": tmp}), embeddings=model)
            col = get_collection(services.engine, "bench", create=True)
            t = time.perf_counter()
            n = sum(services.indexer.index_file(col, name, data).chunks for name, data in files)
            ingest_rates.append(n / (time.perf_counter() - t))
            t = time.perf_counter()
            outcomes = [services.indexer.index_file(col, name, data) for name, data in files]
            reupload.append((time.perf_counter() - t) / len(files))
            assert all(o.status == "unchanged" for o in outcomes)
        print(
            f"round {r + 1}: bare model {bare_rates[-1]:.1f} chunks/s, ingestion {ingest_rates[-1]:.1f} chunks/s, "
            f"unchanged re-upload {reupload[-1] * 1000:.1f} ms per document"
        )
    bare, ingest = statistics.median(bare_rates), statistics.median(ingest_rates)
    ratio = ingest / bare
    print(
        f"median: ingestion {ingest:.1f} chunks/s vs bare model {bare:.1f} chunks/s = {ratio:.2f} (target >= 0.9); "
        f"unchanged re-upload {statistics.median(reupload) * 1000:.1f} ms per document (target < 1000 ms)"
    )
    print(
        json.dumps(
            {
                "metric": "ingest_chunks_per_s",
                "value": round(ingest, 2),
                "baseline": round(bare, 2),
                "ratio": round(ratio, 3),
                "target": ">= 0.9 of the bare model",
                "reupload_ms": round(statistics.median(reupload) * 1000, 1),
                "met": ratio >= 0.9 and statistics.median(reupload) < 1.0,
            }
        )
    )


if __name__ == "__main__":
    main()
