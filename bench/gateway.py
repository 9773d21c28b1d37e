"""Gateway overhead: the same calls through the gateway and through a bare ChatOpenAI, interleaved.

Target: at most 5 ms added per call at the median (logging included) and at most 2 ms added to time to
first token. Baseline: a bare `ChatOpenAI` against the same loopback server in the same run.
Run: `.venv/bin/python bench/gateway.py [--calls 200]`.
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
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from fake_openai import FakeOpenAI, Reply
from langchain_openai import ChatOpenAI

from lib.core.settings import load_settings
from lib.gateway.client import CallContext
from lib.services import Services

MESSAGES = [("system", "You are terse."), ("user", "Say something about benchmarks, please.")]
ANSWER = "Benchmarks compare like with like, in the same run, on the same machine, many times over."


def p(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of values."""
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=200)
    args = ap.parse_args()
    with FakeOpenAI() as server, tempfile.TemporaryDirectory() as tmp:
        server.default_reply = Reply(ANSWER)
        providers = {
            "openai": {"kind": "openai", "base_url": server.base_url, "api_key": "bench-key", "models": ["gpt-4o-mini"]}
        }
        settings = load_settings(env={"WORKBENCH_DATA_DIR": tmp, "WORKBENCH_PROVIDERS": json.dumps(providers)})
        services = Services(settings)  # a real SQLite file in WAL mode, as in production
        engine, gw = services.engine, services.gateway
        bare = ChatOpenAI(
            model="gpt-4o-mini",
            base_url=server.base_url,
            api_key="bench-key",
            max_retries=0,
            stream_usage=True,
            timeout=30,
        )
        ctx = CallContext(feature="bench", user="bench")

        def via_gateway_invoke() -> float:
            t = time.perf_counter()
            gw.invoke(MESSAGES, "openai/gpt-4o-mini", ctx)
            return (time.perf_counter() - t) * 1000

        def bare_invoke() -> float:
            t = time.perf_counter()
            bare.invoke(MESSAGES)
            return (time.perf_counter() - t) * 1000

        def via_gateway_ttft() -> float:
            t = time.perf_counter()
            it = iter(gw.stream(MESSAGES, "openai/gpt-4o-mini", ctx))
            next(it)
            ttft = (time.perf_counter() - t) * 1000
            for _ in it:
                pass
            return ttft

        def bare_ttft() -> float:
            t = time.perf_counter()
            ttft = None
            for chunk in bare.stream(MESSAGES):
                if ttft is None and chunk.content:
                    ttft = (time.perf_counter() - t) * 1000
            return ttft or 0.0

        for f in (via_gateway_invoke, bare_invoke, via_gateway_ttft, bare_ttft):  # warm-up
            f()
        inv_gw, inv_bare, tt_gw, tt_bare = [], [], [], []
        for i in range(args.calls):  # interleaved, alternating who goes first, so drift hits both alike
            pairs = [(via_gateway_invoke, inv_gw), (bare_invoke, inv_bare)]
            streams = [(via_gateway_ttft, tt_gw), (bare_ttft, tt_bare)]
            for fn, out in (pairs if i % 2 == 0 else pairs[::-1]) + (streams if i % 2 == 0 else streams[::-1]):
                out.append(fn())
        rows = engine.connect().exec_driver_sql("SELECT count(*) FROM llm_calls WHERE feature='bench'").scalar()

    call_overhead = statistics.median(g - b for g, b in zip(inv_gw, inv_bare))
    ttft_overhead = statistics.median(g - b for g, b in zip(tt_gw, tt_bare))
    print(f"calls per side: {args.calls} invokes + {args.calls} streams; call-log rows written: {rows}")
    print(
        f"invoke  gateway p50 {statistics.median(inv_gw):7.2f} ms  p95 {p(inv_gw, 0.95):7.2f} ms | "
        f"bare ChatOpenAI p50 {statistics.median(inv_bare):7.2f} ms  p95 {p(inv_bare, 0.95):7.2f} ms"
    )
    print(
        f"ttft    gateway p50 {statistics.median(tt_gw):7.2f} ms  p95 {p(tt_gw, 0.95):7.2f} ms | "
        f"bare ChatOpenAI p50 {statistics.median(tt_bare):7.2f} ms  p95 {p(tt_bare, 0.95):7.2f} ms"
    )
    print(
        f"median paired overhead: invoke {call_overhead:.2f} ms (target <= 5), "
        f"time to first token {ttft_overhead:.2f} ms (target <= 2)"
    )
    met = call_overhead <= 5 and ttft_overhead <= 2 and rows == 2 * args.calls + 2
    print(
        json.dumps(
            {
                "metric": "gateway_overhead_ms_p50",
                "value": round(call_overhead, 3),
                "baseline": round(statistics.median(inv_bare), 3),
                "ratio": round(statistics.median(inv_gw) / statistics.median(inv_bare), 3),
                "target": "<= 5 ms per call and <= 2 ms added to TTFT (median)",
                "ttft_overhead_ms_p50": round(ttft_overhead, 3),
                "met": met,
            }
        )
    )


if __name__ == "__main__":
    main()
