"""Batch-run throughput: a 200-row test set, variants A and B, against the loopback server at 50 ms a call.

Target: wall time within 1.2x of the ideal (400 calls x 50 ms / concurrency), with no lost or duplicated
rows in llm_calls (exactly one per case and variant). Baseline: that ideal.
Run: `.venv/bin/python bench/compare.py [--rows 200] [--concurrency 16] [--delay 0.05]`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from fake_openai import FakeOpenAI, Reply  # noqa: E402
from sqlalchemy import select  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from lib.config import load_settings  # noqa: E402
from lib.db import make_engine, migrate  # noqa: E402
from lib.experiments import Checks, Variant, execute_run, start_run  # noqa: E402
from lib.gateway import Gateway  # noqa: E402
from lib.models import LlmCall, RunResult  # noqa: E402
from lib.template_store import TemplateStore  # noqa: E402
from lib.templates import Template  # noqa: E402
from lib.test_sets import Case, create_test_set  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--delay", type=float, default=0.05)
    args = ap.parse_args()
    with FakeOpenAI() as server, tempfile.TemporaryDirectory() as tmp:
        server.default_reply = Reply("A short answer from the loopback model.", delay=args.delay)
        providers = {"acme": {"base_url": server.base_url, "api_key": "bench-key", "models": ["m1", "m2"]}}
        settings = load_settings(env={"WORKBENCH_DATA_DIR": tmp, "WORKBENCH_PROVIDERS": json.dumps(providers)})
        engine = make_engine(settings.database_url)  # a real SQLite file in WAL mode, as in production
        migrate(engine)
        store = TemplateStore(engine)
        store.create(Template(name="bench.reply", system="Be brief.", user="Answer: {{ question }}"), "bench")
        store.save_version(Template(name="bench.reply", system="Be very brief.", user="Answer: {{ question }}"),
                           "bench")
        cases = [Case(None, {"question": f"question {i}"}, "answer") for i in range(args.rows)]
        set_id = create_test_set(engine, "bench", ["question"], "bench", cases)
        gw = Gateway(settings, engine)
        run_id = start_run(engine, "bench.reply", set_id, Variant(1, "acme/m1"), Variant(2, "acme/m2"), Checks(),
                           "bench")
        t = time.perf_counter()
        progress = execute_run(gw, store, run_id, concurrency=args.concurrency)
        wall = time.perf_counter() - t
        with Session(engine) as s:
            calls = list(s.scalars(select(LlmCall).where(LlmCall.experiment_id == f"run:{run_id}")))
            results = list(s.scalars(select(RunResult).where(RunResult.run_id == run_id)))
    keys = Counter((c.meta["case_id"], c.variant) for c in calls)
    expected = 2 * args.rows
    lost, duplicated = expected - len(keys), sum(n - 1 for n in keys.values() if n > 1)
    failed = sum(c.status != "ok" for c in calls)
    ideal = expected * args.delay / args.concurrency
    ratio = wall / ideal
    print(f"rows {args.rows}, calls {len(calls)} (expected {expected}), results {len(results)}, "
          f"lost {lost}, duplicated {duplicated}, failed {failed}, progress {progress.done}/{progress.total}")
    print(f"wall {wall:.2f} s, ideal {ideal:.2f} s ({expected} x {args.delay * 1000:.0f} ms / {args.concurrency})")
    met = ratio <= 1.2 and lost == 0 and duplicated == 0 and failed == 0 and len(results) == expected
    print(json.dumps({"metric": "compare_batch_wall_s", "value": round(wall, 3), "baseline": round(ideal, 3),
                      "ratio": round(ratio, 3), "target": "<= 1.2x ideal, 0 lost, 0 duplicated", "met": met}))


if __name__ == "__main__":
    main()
