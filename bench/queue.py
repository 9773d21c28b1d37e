"""Job queue overhead: 2,000 small tasks (a loopback LLM call of 20 ms each) through the queue with 8 worker threads
vs the same calls from a bare thread pool of 8, in the same run; and enqueue-to-start latency with idle workers.

Target: queue wall time <= 1.15x the bare pool's, and enqueue-to-start p95 <= 50 ms when workers are idle.
The queue path is the whole of it: job item rows written, ids enqueued (SqliteHuey in the data dir, as embedded),
each item claimed and finished in the database, the call made through the gateway (call-log row included).
Baseline: the same gateway calls from a `ThreadPoolExecutor(8)`. The loopback server runs in its own process.
Run: `.venv/bin/python bench/queue.py [--tasks 2000] [--threads 8] [--idle 200] [--queue-url redis://…]`.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named queue.py as the issue asks: keep bench/ off the path so `import queue` finds the stdlib's.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import json
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from fake_openai import FakeOpenAIProcess, Reply

from lib.core.settings import load_settings
from lib.gateway.client import CallContext
from lib.jobs import items
from lib.jobs.queue import QueueConsumer
from lib.services import Services

MESSAGES = [("user", "Say something short.")]


def p(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of values."""
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--idle", type=int, default=200, help="single enqueues to idle workers, for the latency figure")
    ap.add_argument("--queue-url", default=None, help="a Redis URL to measure server mode instead of SQLite")
    args = ap.parse_args()
    with FakeOpenAIProcess(Reply("Short.", delay=0.02)) as server, tempfile.TemporaryDirectory() as tmp:
        providers = {"acme": {"base_url": server.base_url, "api_key": "k", "models": ["m1"]}}
        env = {"WORKBENCH_DATA_DIR": tmp, "WORKBENCH_PROVIDERS": json.dumps(providers), "WORKBENCH_APP_WORKERS": "0"}
        if args.queue_url:
            env["WORKBENCH_QUEUE_URL"] = args.queue_url
        services = Services(load_settings(env=env))
        gw, engine = services.gateway, services.engine
        ctx = CallContext(feature="bench", user="bench", deferred_log=False)

        def call(_: int = 0) -> None:
            gw.invoke(MESSAGES, "acme/m1", ctx)

        for _ in range(20):  # warm up connections and the call log
            call()

        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.threads) as pool:
            list(pool.map(call, range(args.tasks)))
        bare_s = time.perf_counter() - t0

        queue = services.queue
        queue.huey.flush()
        started: dict[int, float] = {}
        enqueued: dict[int, float] = {}
        done, all_done, lock = [0], threading.Event(), threading.Lock()
        target = [args.tasks]

        def handler(ctx_: items.ItemContext) -> None:
            started[ctx_.item.id] = time.perf_counter()
            call()
            with lock:
                done[0] += 1
                if done[0] >= target[0]:
                    all_done.set()

        queue.register("bench", handler)
        consumer = QueueConsumer(queue, args.threads, embedded=True, periodic=False)
        consumer.start()
        try:
            t0 = time.perf_counter()
            ids = items.add_items(engine, "bench", 1, [(i, f"task {i}", {}) for i in range(args.tasks)])
            queue.enqueue("bench", ids)
            all_done.wait(600)
            queue_s = time.perf_counter() - t0
            assert done[0] == args.tasks, f"{done[0]} of {args.tasks} tasks ran"

            # Idle workers: one item at a time, the next enqueued only once the previous one has finished.
            done[0], target[0] = 0, 1
            latencies = []
            for i in range(args.idle):
                all_done.clear()
                done[0] = 0
                [item_id] = items.add_items(engine, "bench", 2, [(i, "idle", {})])
                enqueued[item_id] = time.perf_counter()
                queue.enqueue("bench", [item_id])
                all_done.wait(30)
                latencies.append((started[item_id] - enqueued[item_id]) * 1000)
        finally:
            consumer.stop(graceful=True)
    ratio = queue_s / bare_s
    p95 = p(latencies, 0.95)
    mode = "RedisHuey" if args.queue_url else "SqliteHuey"
    print(f"{args.tasks} tasks of a 20 ms loopback call, {args.threads} threads, queue {mode}")
    print(f"bare thread pool {bare_s:6.2f} s | through the queue {queue_s:6.2f} s | ratio {ratio:.3f} (target <= 1.15)")
    print(
        f"enqueue-to-start with idle workers ({args.idle} items): p50 {statistics.median(latencies):.2f} ms, "
        f"p95 {p95:.2f} ms, max {max(latencies):.2f} ms (target p95 <= 50)"
    )
    print(
        json.dumps(
            {
                "metric": "queue_wall_time_ratio",
                "value": round(ratio, 3),
                "baseline": round(bare_s, 3),
                "queue_s": round(queue_s, 3),
                "enqueue_to_start_p95_ms": round(p95, 2),
                "target": "<= 1.15x the bare pool; enqueue-to-start p95 <= 50 ms when idle",
                "met": ratio <= 1.15 and p95 <= 50,
            }
        )
    )


if __name__ == "__main__":
    main()
