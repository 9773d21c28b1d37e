"""Pipeline run throughput: 500 rows x 3 schema steps through the job queue against the loopback server (50 ms a
call, the server in its own process), at concurrency 8 (8 embedded queue worker threads).

Baseline, in the same run: the same 1,500 calls through a bare `ChatOpenAI` thread pool of 8 (no gateway, no queue,
no database). Target: pipeline wall time <= 1.1x the bare pool's, with zero rows lost or duplicated (every row
completed, exactly one stored result and one logged call per row and step). Also printed: the ratio to the ideal
500 x 3 x 0.05 s / 8 and the overhead per row-step. The clock runs from start_run (rows stored, items enqueued) to
the run's completed state in the database. A second reference, also in the same run: the same calls through the
Gateway alone (call log, redaction, breaker; no queue, no pipeline), so the gateway's share of the gap to the bare
pool is told apart from the queue's and the pipeline's. A busy shared machine makes the figures noisy: repeat (`--repeat`) and
read the median.
With `--workers N` the same run also goes to N `python -m lib.cli worker` processes (concurrency / N threads each) on a
Redis queue (a throw-away redis-server; bench/compare.py's helpers), so the calls' CPU is spread over N GILs; the
workers are started and warmed up (one small run) before the clock.
Run: `.venv/bin/python bench/pipeline.py [--rows 500] [--concurrency 8] [--delay 0.05] [--repeat 1] [--workers 2]`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# bench/queue.py would shadow the standard library's queue module: this folder leaves the path.
sys.path[:] = [str(ROOT), str(ROOT / "tests"), *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench")]

from fake_openai import FakeOpenAIProcess, Reply
from langchain_openai import ChatOpenAI
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lib.core.settings import load_settings
from lib.core.tables import LlmCall, PipelineRow, PipelineRun, PipelineStepResult
from lib.gateway.client import CallContext
from lib.jobs.queue import stop_embedded
from lib.pipelines import runs
from lib.pipelines.definition import Pipeline, PromptStep
from lib.pipelines.trial import try_row
from lib.prompts.language import Template
from lib.services import Services

ANSWER = '{"label": "ok", "score": 0.9}'
SCHEMA = {
    "type": "object",
    "properties": {"label": {"type": "string"}, "score": {"type": "number"}},
    "required": ["label", "score"],
}
STEPS = [
    ("classify", "Classify this ticket: {{ ticket }}"),
    ("summarise", "Summarise {{ ticket }} (labelled {{ classify.label }})"),
    ("route", "Route {{ ticket }}: {{ summarise.label }} / {{ classify.score }}"),
]


def bare_pool(base_url: str, rows: int, concurrency: int) -> tuple[float, float]:
    """Wall and CPU time of rows x 3 calls through one bare ChatOpenAI, `concurrency` threads pulling from one list."""
    model = ChatOpenAI(model="m1", base_url=base_url, api_key="bench-key", max_retries=0, stream_usage=True, timeout=30)
    model.invoke([("user", "warm up")])
    calls = iter([[("user", f"{text.split('{{')[0]} ticket {i}")] for i in range(rows) for _, text in STEPS])
    take = threading.Lock()

    def work() -> None:
        while True:
            with take:
                call = next(calls, None)
            if call is None:
                return
            model.invoke(call)

    threads = [threading.Thread(target=work) for _ in range(concurrency)]
    t, cpu = time.perf_counter(), time.process_time()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return time.perf_counter() - t, time.process_time() - cpu


def gateway_pool(base_url: str, rows: int, concurrency: int) -> tuple[float, float]:
    """Wall and CPU time of the same calls through the Gateway (call log, no queue, no pipeline): its share of the gap."""
    with tempfile.TemporaryDirectory() as tmp:
        providers = {"acme": {"base_url": base_url, "api_key": "bench-key", "models": ["m1"]}}
        env = {"WORKBENCH_DATA_DIR": tmp, "WORKBENCH_PROVIDERS": json.dumps(providers), "WORKBENCH_APP_WORKERS": "0"}
        services = Services(load_settings(env=env))
        gateway = services.gateway
        gateway.invoke([("user", "warm up")], "acme/m1", CallContext(feature="bench.warmup"))
        calls = iter([(i, n, text.split("{{")[0]) for i in range(rows) for n, text in STEPS])
        take = threading.Lock()

        def work() -> None:
            while True:
                with take:
                    call = next(calls, None)
                if call is None:
                    return
                i, step, text = call
                gateway.invoke([("user", f"{text} ticket {i}")], "acme/m1", CallContext(feature="pipeline", step=step))

        threads = [threading.Thread(target=work) for _ in range(concurrency)]
        t, cpu = time.perf_counter(), time.process_time()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall, cpu = time.perf_counter() - t, time.process_time() - cpu
        services.engine.dispose()
        return wall, cpu


def pipeline_run(base_url: str, rows: int, concurrency: int) -> dict:
    """One timed run on a fresh data dir (SQLite in WAL mode, SqliteHuey queue): wall time and the checks."""
    with tempfile.TemporaryDirectory() as tmp:
        providers = {"acme": {"base_url": base_url, "api_key": "bench-key", "models": ["m1"]}}
        env = {
            "WORKBENCH_DATA_DIR": tmp,
            "WORKBENCH_PROVIDERS": json.dumps(providers),
            "WORKBENCH_APP_WORKERS": str(concurrency),
        }
        services = Services(load_settings(env=env))
        pipeline = setup(services)
        try_row(services.pipeline_deps, pipeline, {"ticket": "warm up"}, "bench")  # clients built before the clock
        services.start_workers()
        engine = services.engine
        data = [{"ticket": f"ticket {i}"} for i in range(rows)]
        t, cpu = time.perf_counter(), time.process_time()
        run_id = runs.start_run(services.pipeline_deps, pipeline, data, "bench")
        status = wait_settled(engine, run_id)
        wall, cpu = time.perf_counter() - t, time.process_time() - cpu
        stop_embedded(graceful=True)
        found = counts(engine, run_id)
        engine.dispose()
        return {"wall": wall, "cpu": cpu, "status": status, **found}


def setup(services: Services) -> Pipeline:
    """The bench's three templates and pipeline in a fresh database."""
    for name, text in STEPS:
        services.templates.create(Template(name=f"bench.{name}", user=text), "bench", labels=("production",))
    services.pipelines.save(
        Pipeline("Bench", tuple(PromptStep(n, f"bench.{n}", output_schema=SCHEMA) for n, _ in STEPS)), "bench"
    )
    return services.pipelines.get("Bench")


def wait_settled(engine, run_id: int) -> str:
    """Poll the run's state until it leaves queued/running; returns it."""
    stop = threading.Event()
    while True:
        with Session(engine) as s:
            status = s.scalar(select(PipelineRun.status).where(PipelineRun.id == run_id))
        if status not in ("queued", "running"):
            return status
        stop.wait(0.02)


def counts(engine, run_id: int) -> dict:
    """Rows completed, stored results (and distinct row-steps), logged calls of a run."""
    with Session(engine) as s:
        return {
            "completed": s.scalar(
                select(func.count()).where(PipelineRow.run_id == run_id, PipelineRow.status == "completed")
            ),
            "results": s.scalar(select(func.count()).where(PipelineStepResult.run_id == run_id)),
            "distinct": s.scalar(
                select(func.count()).select_from(
                    select(PipelineStepResult.position, PipelineStepResult.step)
                    .where(PipelineStepResult.run_id == run_id)
                    .distinct()
                    .subquery()
                )
            ),
            "calls": s.scalar(select(func.count()).where(LlmCall.run_id == str(run_id), LlmCall.feature == "pipeline")),
        }


def worker_runs(base_url: str, rows: int, concurrency: int, workers: int, repeat: int) -> list[dict]:
    """`repeat` timed runs on `workers` lib.cli worker processes sharing `concurrency` threads, on Redis."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_compare", ROOT / "bench" / "compare.py")
    assert spec is not None and spec.loader is not None
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    out = []
    with helpers.redis_queue() as queue_url, tempfile.TemporaryDirectory() as tmp:
        if queue_url is None:
            raise SystemExit("--workers needs redis-server")
        providers = {"acme": {"base_url": base_url, "api_key": "bench-key", "models": ["m1"]}}
        env = {
            "WORKBENCH_DATA_DIR": tmp,
            "WORKBENCH_PROVIDERS": json.dumps(providers),
            "WORKBENCH_APP_WORKERS": "0",
            "WORKBENCH_QUEUE_URL": queue_url,
        }
        services = Services(load_settings(env=env))  # enqueues only, as an app process with no workers
        pipeline = setup(services)
        engine = services.engine
        with helpers.worker_processes(env, workers, concurrency // workers):
            warm = runs.start_run(services.pipeline_deps, pipeline, [{"ticket": "w"}] * concurrency * 2, "bench")
            wait_settled(engine, warm)
            for _ in range(repeat):
                t = time.perf_counter()
                run_id = runs.start_run(
                    services.pipeline_deps, pipeline, [{"ticket": f"ticket {i}"} for i in range(rows)], "bench"
                )
                status = wait_settled(engine, run_id)
                out.append({"wall": time.perf_counter() - t, "status": status, **counts(engine, run_id)})
        engine.dispose()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--delay", type=float, default=0.05, help="seconds per call at the loopback server")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--workers", type=int, default=0, help="also run on N lib.cli worker processes (Redis queue)")
    args = ap.parse_args()
    if args.workers and args.concurrency % args.workers:
        raise SystemExit(f"--concurrency {args.concurrency} must be a multiple of --workers {args.workers}")
    for var in [v for v in os.environ if v.startswith("WORKBENCH_") or v in ("DATABASE_URL", "OPENAI_API_KEY")]:
        os.environ.pop(var)
    n_calls = args.rows * len(STEPS)
    ideal = n_calls * args.delay / args.concurrency
    print(
        f"{args.rows} rows x {len(STEPS)} steps = {n_calls} calls at {args.delay * 1000:.0f} ms, "
        f"concurrency {args.concurrency}; ideal {ideal:.2f} s",
        flush=True,
    )
    ratios, walls, bares, ok = [], [], [], True
    with FakeOpenAIProcess(Reply(ANSWER, delay=args.delay)) as server:
        for i in range(args.repeat):
            bare, bare_cpu = bare_pool(server.base_url, args.rows, args.concurrency)
            gw, gw_cpu = gateway_pool(server.base_url, args.rows, args.concurrency)
            r = pipeline_run(server.base_url, args.rows, args.concurrency)
            exact = (
                r["status"] == "completed"
                and r["completed"] == args.rows
                and r["results"] == r["distinct"] == n_calls
                and r["calls"] == n_calls
            )
            ok &= exact
            ratio = r["wall"] / bare
            ratios.append(ratio)
            walls.append(r["wall"])
            bares.append(bare)
            overhead_ms = (r["wall"] - bare) * args.concurrency / n_calls * 1000
            print(
                f"repeat {i + 1}: pipeline {r['wall']:.2f} s (cpu {r['cpu']:.2f} s), bare pool {bare:.2f} s (cpu {bare_cpu:.2f} s), "
                f"gateway-only pool {gw:.2f} s (cpu {gw_cpu:.2f} s, {gw / bare:.3f}x bare; pipeline {r['wall'] / gw:.3f}x "
                "it), "
                f"ratio {ratio:.3f} vs bare, {r['wall'] / ideal:.3f} vs ideal; overhead {overhead_ms:.1f} ms per "
                f"row-step (thread time); rows completed {r['completed']}/{args.rows}, results {r['results']} "
                f"(distinct {r['distinct']}), calls logged {r['calls']} -> {'exact' if exact else 'LOST/DUPLICATED'}",
                flush=True,
            )
        queued = (
            worker_runs(server.base_url, args.rows, args.concurrency, args.workers, args.repeat) if args.workers else []
        )
    ratio = statistics.median(ratios)
    wall, bare = statistics.median(walls), statistics.median(bares)
    metric = "pipeline_wall_vs_bare_pool"
    for r in queued:
        exact = r["status"] == "completed" and r["completed"] == args.rows and r["results"] == r["distinct"] == n_calls
        exact &= r["calls"] == n_calls
        print(
            f"{args.workers} worker process(es) x {args.concurrency // args.workers} threads on Redis: "
            f"{r['wall']:.2f} s, ratio {r['wall'] / bare:.3f} vs the median bare pool, {r['wall'] / ideal:.3f} vs "
            f"ideal; rows completed {r['completed']}/{args.rows}, results {r['results']} (distinct {r['distinct']}), "
            f"calls logged {r['calls']} -> {'exact' if exact else 'LOST/DUPLICATED'}",
            flush=True,
        )
        ok &= exact
    if queued:  # the figure reported is the worker processes' (the in-process run is printed above)
        metric = f"pipeline_wall_vs_bare_pool_{args.workers}_workers"
        wall = statistics.median(r["wall"] for r in queued)
        ratio = wall / bare
    print(
        f"median: pipeline {wall:.2f} s, bare {bare:.2f} s, ratio {ratio:.3f} (target <= 1.1), "
        f"vs ideal {wall / ideal:.3f}; overhead per row-step {(wall - bare) * args.concurrency / n_calls * 1000:.1f} ms; "
        f"rows exact: {ok}. Shared, busy machine: figures are noisy."
    )
    print(
        json.dumps(
            {
                "metric": metric,
                "value": round(wall, 3),
                "baseline": round(bare, 3),
                "ratio": round(ratio, 3),
                "target": 1.1,
                "met": bool(ratio <= 1.1 and ok),
            }
        )
    )


if __name__ == "__main__":
    main()
