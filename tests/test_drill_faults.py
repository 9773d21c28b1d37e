"""Drill: a provider that rate-limits, fails, stalls, garbles and hangs up, through the real gateway.

Part 1 sends a seeded mixture of faults (429 with Retry-After, 500, responses slower than the timeout,
malformed chunks, streams dropped before and after the first words, slow-but-in-time answers) through
invoke and stream: every call ends as an answer or a typed GatewayError with an actionable message, and
the call log holds exactly one row per call whose status, error type and attempts match what the caller
got. Part 2 drives the circuit breaker with a real clock: it opens after the threshold, refuses fast while
open, half-opens after the cool-down, re-opens on a failed trial, and closes on a success.

Reproduce the figures: .venv/bin/python -m pytest tests/test_drill_faults.py -s
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter

from fake_openai import Drop, Hang, Malformed, Reply, Status, Truncated
from sqlalchemy import select
from sqlalchemy.orm import Session

from lib.core.settings import load_settings
from lib.core.tables import LlmCall
from lib.gateway.client import CallContext, Gateway
from lib.gateway.errors import (
    AuthenticationFailed,
    CircuitOpen,
    GatewayError,
    ProviderUnavailable,
    RateLimited,
    TimedOut,
)

MODEL = "openai/gpt-4o-mini"
TIMEOUT_S = 0.3
RETRY_AFTER_S = 0.15
ANSWER = "The answer is four, as usual."

# error type -> words its message must contain (what happened) ; every message must also say what to do
EXPLAINS = {
    "rate_limited": ["rate-limiting", "HTTP 429", f"wait {RETRY_AFTER_S:g} s"],
    "timed_out": [f"within {TIMEOUT_S:g} s", "timeout_s"],
    "provider_unavailable": [],  # checked per fault below
    "circuit_open": ["paused", "Pick another model"],
}


def make_gateway(engine, server, sleeps: list[float], **env: str) -> Gateway:
    providers = {
        "openai": {
            "kind": "openai",
            "base_url": server.base_url,
            "api_key": "test-key",
            "models": ["gpt-4o-mini"],
            "timeout_s": TIMEOUT_S,
        }
    }
    settings = load_settings(
        env={
            "WORKBENCH_PROVIDERS": json.dumps(providers),
            "WORKBENCH_CACHE_FEATURES": "",
            "WORKBENCH_MAX_RETRIES": "1",
            "WORKBENCH_BACKOFF_BASE_S": "0.01",
            "WORKBENCH_BACKOFF_MAX_S": "0.2",
            **env,
        }
    )

    def sleep(seconds: float) -> None:  # the gateway's own backoff, kept tiny by the settings above
        sleeps.append(seconds)
        time.sleep(seconds)

    return Gateway(settings, engine, sleep=sleep)


# A fault: (name, behaviour, is it retried when streaming, when not streaming, message words)
FAULTS = {
    "429": (Status(429, retry_after=RETRY_AFTER_S), True, True, RateLimited, EXPLAINS["rate_limited"]),
    "500": (Status(500), True, True, ProviderUnavailable, ["server error (HTTP 500)"]),
    "503-retry-after": (
        Status(503, retry_after=RETRY_AFTER_S),
        True,
        True,
        ProviderUnavailable,
        ["server error (HTTP 503)", f"wait {RETRY_AFTER_S:g} s", f"retried after {RETRY_AFTER_S:g} s"],
    ),
    "timeout": (Hang(TIMEOUT_S + 0.5), True, True, TimedOut, EXPLAINS["timed_out"]),
    "drop-before-text": (Drop(after_chunks=0), True, True, ProviderUnavailable, ["connection"]),
    # after the first words reached the user a stream is never retried behind their back
    "drop-mid-stream": (Drop(after_chunks=2), False, True, ProviderUnavailable, ["connection"]),
    "malformed": (Malformed(after_chunks=1), False, True, ProviderUnavailable, ["malformed response"]),
}


def plan_calls(n: int, seed: int = 8) -> list[dict]:
    """n calls: each a mode, a fault (or a slow-but-in-time answer) and whether the retry recovers."""
    rng = random.Random(seed)
    calls = []
    for i in range(n):
        streaming = rng.random() < 0.5
        kind = rng.choice([*FAULTS, "slow-ok", "ok", "cut-before-done"])
        recovers = rng.random() < 0.5
        calls.append({"i": i, "streaming": streaming, "kind": kind, "recovers": recovers})
    return calls


def run_call(gw: Gateway, streaming: bool, ctx: CallContext) -> tuple[str | None, GatewayError | None, str]:
    """(request id, error, text the caller saw); anything but a GatewayError escapes and fails the drill."""
    question = [("user", f"Call {ctx.metadata['n']}: what is two plus two?")]
    if not streaming:
        try:
            result = gw.invoke(question, MODEL, ctx)
            return result.request_id, None, result.text
        except GatewayError as err:
            return err.request_id, err, ""
    stream = gw.stream(question, MODEL, ctx)
    seen = []
    try:
        for piece in stream:
            seen.append(piece)
    except GatewayError as err:
        return err.request_id, err, "".join(seen)
    return stream.result.request_id, None, "".join(seen)


def rows_by_request(engine) -> dict[str, LlmCall]:
    with Session(engine) as s:
        rows = list(s.scalars(select(LlmCall)))
    out = {r.request_id: r for r in rows}
    assert len(out) == len(rows), "a request id was logged twice"
    return out


def test_a_mixture_of_faults_ends_in_answers_or_typed_errors_with_one_matching_row_each(fresh_engine, fake):
    sleeps: list[float] = []
    gw = make_gateway(fresh_engine, fake, sleeps, WORKBENCH_BREAKER_THRESHOLD="1000")  # part 2 drills the breaker
    fake.default_reply = Reply(ANSWER)  # what Drop, Malformed and Hang send before (or instead of) failing
    calls = plan_calls(90)
    outcomes: Counter[str] = Counter()
    injected: Counter[str] = Counter()
    began = time.perf_counter()
    for call in calls:
        kind, streaming = call["kind"], call["streaming"]
        before, sleeps_before = len(fake.requests), len(sleeps)
        if kind == "ok":
            plan, expect = [Reply(ANSWER)], None
        elif kind == "slow-ok":
            plan, expect = [Reply(ANSWER, delay=TIMEOUT_S / 3, chunk_delay=0.01)], None
        elif kind == "cut-before-done":  # the whole answer and its finish reason, then the connection drops
            plan, expect = ([Truncated()] if streaming else [Truncated(), Reply(ANSWER)]), None
        else:
            behaviour, retried_streaming, retried_invoke, error, _words = FAULTS[kind]
            retried = retried_streaming if streaming else retried_invoke
            if not retried:
                plan, expect = [behaviour], error
            elif call["recovers"]:
                plan, expect = [behaviour, Reply(ANSWER)], None
            else:
                plan, expect = [behaviour, behaviour], error  # MAX_RETRIES=1: two attempts, both fail
            injected[kind] += sum(1 for b in plan if b is behaviour)
        fake.enqueue(*plan)
        ctx = CallContext(feature="drill", user="faulty", metadata={"n": call["i"]})
        request_id, err, text = run_call(gw, streaming, ctx)
        where = f"call {call['i']} ({kind}, {'stream' if streaming else 'invoke'})"
        assert fake.pending == 0 and len(fake.requests) - before == len(plan), f"{where}: attempts differ from plan"
        assert request_id, f"{where}: no request id reached the caller"
        if expect is None:
            assert err is None, f"{where}: {err!r}"
            assert text == ANSWER, where
            outcomes["ok"] += 1
        else:
            assert type(err) is expect, f"{where}: got {type(err).__name__}: {err}"
            message = str(err)
            for w in FAULTS[kind][4]:
                assert w in message, f"{where}: {message!r} lacks {w!r}"
            assert "try again" in message.lower() or "pick another model" in message.lower(), message
            assert "Traceback" not in message and "test-key" not in message
            outcomes[err.error_type] += 1
        if kind in ("429", "503-retry-after") and len(plan) == 2:
            assert sleeps[sleeps_before:] == [RETRY_AFTER_S], f"{where}: Retry-After not honoured"
        if kind == "drop-mid-stream" and streaming:
            assert text and ANSWER.startswith(text), f"{where}: the words seen before the drop are kept"
        rows = rows_by_request(fresh_engine)
        row = rows[request_id]
        assert row.status == ("ok" if err is None else "error"), where
        assert row.error_type == (None if err is None else err.error_type), where
        assert row.attempts == len(plan), where
        assert (row.response or "") == text, where
    elapsed = time.perf_counter() - began
    rows = rows_by_request(fresh_engine)
    assert len(rows) == len(calls)  # exactly one row per call, however it ended
    assert Counter(r.status for r in rows.values()) == {"ok": outcomes["ok"], "error": len(calls) - outcomes["ok"]}
    assert set(outcomes) >= {"ok", "rate_limited", "timed_out", "provider_unavailable"}
    assert injected["503-retry-after"] and any(c["kind"] == "cut-before-done" and c["streaming"] for c in calls)
    print(
        f"\nDRILL faults: {len(calls)} calls, {sum(injected.values())} faults injected "
        f"({', '.join(f'{k} {v}' for k, v in sorted(injected.items()))}); outcomes: "
        f"{', '.join(f'{k} {v}' for k, v in sorted(outcomes.items()))}; {len(rows)} rows, one per call, "
        f"statuses matching; {elapsed:.1f} s"
    )


def test_faults_under_concurrency_still_end_typed_with_one_row_per_call_and_per_attempt(any_engine, fake):
    """8 users at once against a queue of 400 seeded faults and answers: nothing untyped escapes, every call
    has one row matching what its caller got, and the attempts logged are exactly the requests served."""
    import threading

    sleeps: list[float] = []
    gw = make_gateway(any_engine, fake, sleeps, WORKBENCH_BREAKER_THRESHOLD="100000")
    rng = random.Random(88)
    faults = [FAULTS[k][0] for k in FAULTS]
    fake.default_reply = Reply(ANSWER)
    fake.enqueue(*[rng.choice(faults) if rng.random() < 0.4 else Reply(ANSWER) for _ in range(400)])
    users, calls_each = 8, 30
    got: dict[str, tuple[str, str | None, str]] = {}
    escaped: list[str] = []
    lock = threading.Lock()

    def user(u: int) -> None:
        for i in range(calls_each):
            ctx = CallContext(feature="drill", user=f"user-{u}", metadata={"n": f"{u}-{i}"})
            try:
                request_id, err, text = run_call(gw, (u + i) % 2 == 0, ctx)
            except Exception as exc:  # run_call lets anything but a GatewayError through
                escaped.append(f"user-{u} call {i}: {type(exc).__name__}: {exc}")
                continue
            with lock:
                got[request_id] = (f"user-{u}", None if err is None else err.error_type, text)

    began = time.perf_counter()
    threads = [threading.Thread(target=user, args=(u,)) for u in range(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    elapsed = time.perf_counter() - began
    assert not any(t.is_alive() for t in threads) and escaped == [], escaped[:3]
    rows = rows_by_request(any_engine)
    assert len(got) == len(rows) == users * calls_each
    for request_id, (who, error_type, text) in got.items():
        row = rows[request_id]
        assert (row.user, row.error_type, row.status) == (who, error_type, "ok" if error_type is None else "error")
        assert (row.response or "") == text
    assert sum(r.attempts for r in rows.values()) == len(fake.requests)  # every attempt logged, none invented
    outcomes = Counter(e or "ok" for _, e, _ in got.values())
    assert outcomes["ok"] > 0 and len(outcomes) > 2
    print(
        f"\nDRILL faults, concurrent [{any_engine.dialect.name}]: {users} users × {calls_each} calls against "
        f"400 queued behaviours (40% faults): {dict(sorted(outcomes.items()))}, {len(fake.requests)} attempts "
        f"= attempts logged, {len(rows)} rows, nothing untyped escaped; {elapsed:.1f} s"
    )


def test_the_breaker_opens_refuses_fast_half_opens_after_the_cooldown_and_closes_on_success(fresh_engine, fake):
    cooldown = 1.5  # long enough that a loaded CI machine still refuses every call below within it
    sleeps: list[float] = []
    gw = make_gateway(
        fresh_engine,
        fake,
        sleeps,
        WORKBENCH_MAX_RETRIES="0",
        WORKBENCH_BREAKER_THRESHOLD="3",
        WORKBENCH_BREAKER_COOLDOWN_S=str(cooldown),
    )
    log: list[tuple[str, str]] = []  # (phase, outcome)

    def call(phase: str, streaming: bool = False) -> GatewayError | None:
        ctx = CallContext(feature="drill", user="breaker", metadata={"n": phase})
        _, err, _ = run_call(gw, streaming, ctx)
        log.append((phase, "ok" if err is None else err.error_type))
        return err

    # closed: failures below the threshold leave it closed; a success in between resets the count
    fake.enqueue(Status(503), Status(503), Reply(ANSWER))
    assert isinstance(call("closed"), ProviderUnavailable) and isinstance(call("closed", True), ProviderUnavailable)
    assert gw.breaker.state("openai") == "closed"
    assert call("closed") is None
    # three consecutive failures open it
    fake.enqueue(Status(500), Hang(TIMEOUT_S + 0.5), Status(503))
    assert isinstance(call("opening"), ProviderUnavailable)
    assert isinstance(call("opening", True), TimedOut)
    assert gw.breaker.state("openai") == "closed"
    assert isinstance(call("opening"), ProviderUnavailable)
    opened = time.monotonic()
    assert gw.breaker.state("openai") == "open"
    # open: refused at once, nothing sent
    sent = len(fake.requests)
    fake.enqueue(Reply(ANSWER))  # would succeed, were it sent
    for streaming in (False, True, False, True):
        t0 = time.perf_counter()
        err = call("open", streaming)
        assert isinstance(err, CircuitOpen) and time.perf_counter() - t0 < 0.5  # no wait; nothing sent (below)
        assert "paused" in str(err) and "Pick another model" in str(err)
    assert len(fake.requests) == sent and fake.pending == 1
    fake.reset()
    # half-open after the cool-down: one trial; a failed trial re-opens at once
    time.sleep(max(0.0, opened + cooldown - time.monotonic()))  # waiting for the cool-down is the point
    assert gw.breaker.state("openai") == "half-open"
    fake.enqueue(Status(500))
    assert isinstance(call("half-open trial fails"), ProviderUnavailable)
    reopened = time.monotonic()
    assert gw.breaker.state("openai") == "open"
    assert isinstance(call("re-opened"), CircuitOpen)
    time.sleep(max(0.0, reopened + cooldown - time.monotonic()))
    assert gw.breaker.state("openai") == "half-open"
    fake.enqueue(Status(401))  # a refused key says nothing about the provider: the trial is released, not failed
    assert isinstance(call("half-open trial refused"), AuthenticationFailed)
    assert gw.breaker.state("openai") == "half-open"
    fake.enqueue(Reply(ANSWER))
    assert call("half-open trial succeeds", True) is None
    assert gw.breaker.state("openai") == "closed"
    assert call("closed again") is None
    assert len(fake.requests) == 4  # the three trials and the call after closing; no refused call was sent

    rows = rows_by_request(fresh_engine)
    assert len(rows) == len(log)  # refused calls are logged too, one row each
    with Session(fresh_engine) as s:
        logged = [(r.status, r.error_type) for r in s.scalars(select(LlmCall).order_by(LlmCall.id))]
    assert logged == [("ok" if o == "ok" else "error", None if o == "ok" else o) for _, o in log]
    assert sleeps == []  # MAX_RETRIES=0: the breaker, not backoff, did the work
    print(
        f"\nDRILL breaker: threshold 3, cool-down {cooldown:g} s: opened after 3 consecutive failures "
        f"(500, time-out, 503), refused {sum(o == 'circuit_open' for _, o in log)} calls fast without "
        f"sending them, half-opened after the cool-down, re-opened on a failed trial, stayed half-open after "
        f"a trial refused with a 401, closed on a successful one; {len(log)} calls, {len(rows)} rows"
    )
