"""Gateway overhead: the same calls through the gateway and through a bare ChatOpenAI, interleaved.

Target: at most 5 ms added per call at the median (logging included) and at most 2 ms added to time to
first token. Baseline: a bare `ChatOpenAI` against the same loopback server in the same run.
Run: `.venv/bin/python bench/gateway.py [--calls 200] [--tracing] [--cpu]`; `--cpu` also prints the calling thread's
CPU per invoke on both sides (under one GIL, what a call costs other threads).

`--tracing` adds a third side, the gateway with tracing on (every span exported over OTLP/HTTP to a receiver on
127.0.0.1, tests/otlp_receiver.py, in this process), interleaved with the other two. Target: at most 1 ms added per
call at the median over tracing off. It also times the span API's no-op path (no provider installed: what every
call pays when no OTLP endpoint is set). Its JSON line comes just before the last line, which stays the gateway's.
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
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]  # bench/queue.py is not queue
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from fake_openai import FakeOpenAI, Reply
from langchain_openai import ChatOpenAI
from opentelemetry import trace
from otlp_receiver import OtlpReceiver

from lib.core import spans
from lib.core.settings import load_settings
from lib.gateway.client import CallContext
from lib.services import Services
from lib.telemetry.tracing import make_provider

MESSAGES = [("system", "You are terse."), ("user", "Say something about benchmarks, please.")]
ANSWER = "Benchmarks compare like with like, in the same run, on the same machine, many times over."


def p(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of values."""
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def noop_span_cost_us(rounds: int = 20_000) -> float:
    """Microseconds per call of the span API work one gateway call does, with no tracer provider installed."""
    t = time.perf_counter()
    for _ in range(rounds):
        call = spans.start_span("chat m", None, {spans.FEATURE: "bench", spans.GEN_AI_REQUEST_MODEL: "m"})
        attempt = spans.start_span("gateway.attempt", call, {spans.ATTEMPT: 1}, kind=spans.SpanKind.CLIENT)
        spans.traceparent(attempt)
        attempt.end()
        with spans.activate(call):
            spans.current_trace_id()
            with spans.span("call_log.write", deferred=False):
                pass
        call.end()
    return (time.perf_counter() - t) / rounds * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--tracing", action="store_true", help="add the tracing-on side (OTLP to a local receiver)")
    ap.add_argument("--cpu", action="store_true", help="also print the calling thread's CPU per invoke, both sides")
    args = ap.parse_args()
    noop_us = noop_span_cost_us() if args.tracing else None  # before any provider is installed
    with FakeOpenAI() as server, tempfile.TemporaryDirectory() as tmp, OtlpReceiver() as receiver:
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
        provider = None
        if args.tracing:  # installed, but off (as without an OTLP endpoint) except around the traced calls
            config = load_settings(env={"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.base_url}).tracing
            assert config is not None
            provider = make_provider(config)
            trace.set_tracer_provider(provider)

        def traced_invoke() -> float:
            spans.enable_spans(True)
            try:
                return via_gateway_invoke()
            finally:
                spans.enable_spans(False)

        cpu: dict[bool, list[float]] = {True: [], False: []}  # the calling thread's CPU ms per call, tracing on/off

        def via_gateway_invoke() -> float:
            c, t = time.thread_time(), time.perf_counter()
            gw.invoke(MESSAGES, "openai/gpt-4o-mini", ctx)
            elapsed = (time.perf_counter() - t) * 1000
            cpu[spans.enabled()].append((time.thread_time() - c) * 1000)
            return elapsed

        bare_cpu: list[float] = []  # the calling thread's CPU ms per bare invoke

        def bare_invoke() -> float:
            c, t = time.thread_time(), time.perf_counter()
            bare.invoke(MESSAGES)
            elapsed = (time.perf_counter() - t) * 1000
            bare_cpu.append((time.thread_time() - c) * 1000)
            return elapsed

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
        inv_gw, inv_bare, tt_gw, tt_bare, inv_traced = [], [], [], [], []
        if args.tracing:
            traced_invoke()
        for i in range(args.calls):  # interleaved, alternating who goes first, so drift hits both alike
            pairs = [(via_gateway_invoke, inv_gw), (bare_invoke, inv_bare)]
            if args.tracing:
                pairs.append((traced_invoke, inv_traced))
            streams = [(via_gateway_ttft, tt_gw), (bare_ttft, tt_bare)]
            for fn, out in (pairs if i % 2 == 0 else pairs[::-1]) + (streams if i % 2 == 0 else streams[::-1]):
                out.append(fn())
        rows = engine.connect().exec_driver_sql("SELECT count(*) FROM llm_calls WHERE feature='bench'").scalar()
        traced_rows = (
            engine.connect().exec_driver_sql("SELECT count(*) FROM llm_calls WHERE trace_id IS NOT NULL").scalar()
        )
        if provider is not None:
            provider.shutdown()  # exports what is batched, while the receiver still listens
            exported = len({s.trace_id for s in receiver.spans if s.name == "chat gpt-4o-mini"})

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
    if args.cpu:  # less noisy than wall time on a busy machine; the gateway's call-log write is on this thread
        gw_cpu, bare_p50 = statistics.median(cpu[False][1:]), statistics.median(bare_cpu[1:])  # [0]: the warm-up
        print(
            f"calling thread's CPU per invoke (tracing off): gateway p50 {gw_cpu:.3f} ms, bare ChatOpenAI p50 "
            f"{bare_p50:.3f} ms: {gw_cpu - bare_p50:.3f} ms added"
        )
    extra = (args.calls + 1) if args.tracing else 0
    met = call_overhead <= 5 and ttft_overhead <= 2 and rows == 2 * args.calls + 2 + extra
    if args.tracing:
        traced_overhead = statistics.median(t - g for t, g in zip(inv_traced, inv_gw))
        cpu_added = statistics.median(cpu[True]) - statistics.median(cpu[False])
        print(
            f"tracing: invoke traced p50 {statistics.median(inv_traced):7.2f} ms  p95 {p(inv_traced, 0.95):7.2f} ms | "
            f"untraced p50 {statistics.median(inv_gw):7.2f} ms; exported traces {exported} of {args.calls + 1} "
            f"traced calls, call-log rows with a trace id {traced_rows}"
        )
        print(
            f"median paired overhead of tracing on: {traced_overhead:.3f} ms per call (target <= 1); "
            f"span API with no provider installed: {noop_us:.1f} us per call"
        )
        print(
            f"calling thread's CPU per call: traced p50 {statistics.median(cpu[True]):.3f} ms, untraced p50 "
            f"{statistics.median(cpu[False]):.3f} ms: {cpu_added:.3f} ms added (less noisy than wall time)"
        )
        print(
            json.dumps(
                {
                    "metric": "tracing_overhead_ms_p50",
                    "value": round(traced_overhead, 3),
                    "baseline": round(statistics.median(inv_gw), 3),
                    "ratio": round(statistics.median(inv_traced) / statistics.median(inv_gw), 3),
                    "target": "<= 1 ms per call (median, paired) with spans exported to a local OTLP receiver",
                    "noop_span_api_us_per_call": round(noop_us or 0.0, 2),
                    "cpu_added_ms_per_call": round(cpu_added, 3),
                    "met": traced_overhead <= 1 and exported == args.calls + 1 and traced_rows == args.calls + 1,
                }
            )
        )
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
