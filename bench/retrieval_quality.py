"""Retrieval quality on real third-party documents: hit@1/3/5 and MRR, default settings against a baseline.

Documents: the license texts Debian installs in /usr/share/common-licenses. Questions: data/eval/
license_qa.json (68 held-out questions, written apart from the tuning) and license_qa_dev.json (48, the
set the defaults were chosen on); each has a verbatim evidence span. A retrieved chunk is a hit when it
comes from the right document and covers at least half of the evidence span.
Baseline (Open WebUI-like): 1000-character chunks, 100 overlap, no title headers, vector search only, top 5.
Target: the default beats the baseline clearly on the held-out set (MRR ratio >= 1.1 and a higher hit@1).
Run: `.venv/bin/python bench/retrieval_quality.py [--questions data/eval/license_qa_dev.json]`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lib.core.settings import load_settings
from lib.documents.embeddings import make_local_embeddings
from lib.documents.indexing import get_collection
from lib.documents.retrieval import RetrievalSettings
from lib.services import build_services

EVAL = ROOT / "data" / "eval" / "license_qa.json"


def covers(chunk: str, doc_text: str, evidence: str) -> bool:
    """True when `chunk` (a substring of doc_text) covers at least half of the evidence span."""
    e_start = doc_text.find(evidence)
    e_end = e_start + len(evidence)
    start = 0
    while (c_start := doc_text.find(chunk, start)) >= 0:
        overlap = min(e_end, c_start + len(chunk)) - max(e_start, c_start)
        if overlap >= len(evidence) / 2:
            return True
        start = c_start + 1
    return False


def evaluate(services, questions, texts, retrieval: RetrievalSettings) -> dict[str, float]:
    """hit@1, hit@3, hit@5 and MRR@5 over the questions."""
    hits = {1: 0, 3: 0, 5: 0}
    rr = 0.0
    for q in questions:
        results = services.retriever.search("licenses", q["question"], replace(retrieval, k=5))
        rank = next(
            (
                i + 1
                for i, s in enumerate(results)
                if s.document == q["document"] and covers(s.text, texts[q["document"]], q["evidence"])
            ),
            None,
        )
        if rank:
            rr += 1 / rank
            for k in hits:
                hits[k] += rank <= k
    n = len(questions)
    return {"hit@1": hits[1] / n, "hit@3": hits[3] / n, "hit@5": hits[5] / n, "mrr": rr / n}


def index(model, chunk_size: int, overlap: int, docs: list[str], tmp: str, headers: bool = True):
    """A fresh index of the documents with this chunking."""
    env = {
        "WORKBENCH_DATA_DIR": tmp,
        "WORKBENCH_CHUNK_SIZE": str(chunk_size),
        "WORKBENCH_CHUNK_OVERLAP": str(overlap),
        "WORKBENCH_TITLE_HEADERS": "1" if headers else "0",
    }
    services = build_services(load_settings(env=env), embeddings=model)
    col = get_collection(services.engine, "licenses", create=True)
    for d in docs:
        services.indexer.index_file(col, d, (Path("/usr/share/common-licenses") / d).read_bytes())
    return services


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", type=Path, default=EVAL)
    data = json.loads(ap.parse_args().questions.read_text())
    questions = data["questions"]
    docs = sorted({q["document"] for q in questions})
    texts = {d: (Path(data["source_dir"]) / d).read_text(encoding="utf-8") for d in docs}
    model = make_local_embeddings()
    defaults = load_settings(env={})
    print(f"{len(questions)} questions over {len(docs)} documents; hit = right document and >= half the evidence")
    rows = {}
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        base = index(model, 1000, 100, docs, a, headers=False)
        rows["baseline: 1000/100, vector"] = evaluate(base, questions, texts, RetrievalSettings(mode="vector"))
        rows["1000/100, no headers, hybrid"] = evaluate(base, questions, texts, RetrievalSettings(mode="hybrid"))
        ours = index(model, defaults.chunk_size, defaults.chunk_overlap, docs, b, defaults.title_headers)
        label = f"{defaults.chunk_size}/{defaults.chunk_overlap}" + (", headers" if defaults.title_headers else "")
        for mode in ("vector", "bm25", "hybrid"):
            rows[f"{label}, {mode}"] = evaluate(
                ours, questions, texts, RetrievalSettings(mode=mode, vector_weight=defaults.hybrid_weight)
            )
    print(f"{'configuration':32s} {'hit@1':>6s} {'hit@3':>6s} {'hit@5':>6s} {'MRR':>6s}")
    for name, m in rows.items():
        print(f"{name:32s} {m['hit@1']:6.3f} {m['hit@3']:6.3f} {m['hit@5']:6.3f} {m['mrr']:6.3f}")
    default = rows[f"{label}, {defaults.search_mode}"]
    baseline = rows["baseline: 1000/100, vector"]
    ratio = default["mrr"] / baseline["mrr"] if baseline["mrr"] else float("inf")
    print(
        f"default ({label}, {defaults.search_mode}) MRR {default['mrr']:.3f} vs baseline {baseline['mrr']:.3f}: "
        f"x{ratio:.2f}; hit@1 {default['hit@1']:.3f} vs {baseline['hit@1']:.3f}"
    )
    print(
        json.dumps(
            {
                "metric": "mrr@5",
                "value": round(default["mrr"], 3),
                "baseline": round(baseline["mrr"], 3),
                "ratio": round(ratio, 3),
                "target": "default clearly above baseline (ratio >= 1.1)",
                "hit@1": round(default["hit@1"], 3),
                "baseline_hit@1": round(baseline["hit@1"], 3),
                "met": ratio >= 1.1 and default["hit@1"] > baseline["hit@1"],
            }
        )
    )


if __name__ == "__main__":
    main()
