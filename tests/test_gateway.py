"""The gateway against a real OpenAI-compatible HTTP server on 127.0.0.1: rows, retries, breaker, errors."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from fake_openai import ContextTooLong, Drop, Hang, Malformed, Reply, Status, Truncated
from sqlalchemy import select
from sqlalchemy.orm import Session

from lib.core.settings import load_settings
from lib.core.tables import LlmCall
from lib.gateway.client import CallContext, Gateway
from lib.gateway.errors import (
    AuthenticationFailed,
    BadRequest,
    CircuitOpen,
    ProviderUnavailable,
    RateLimited,
    TimedOut,
)
from lib.gateway.errors import ContextTooLong as ContextTooLongError

SECRET = "sk-test-DO-NOT-LEAK-0123456789abcdef"
QUESTION = [("system", "Be brief."), ("user", "What is two plus two?")]


class Clock:
    """A hand-driven monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_gateway(engine, server, sleeps=None, clock=None, **env) -> Gateway:
    providers = {
        # "openai" on the fake server, so list prices apply to these models
        "openai": {
            "kind": "openai",
            "base_url": server.base_url,
            "api_key": SECRET,
            "models": ["gpt-4o-mini"],
            "timeout_s": env.pop("timeout_s", 5),
        },
        "acme": {"base_url": server.base_url, "api_key": SECRET, "models": ["mystery"], "timeout_s": 5},
    }
    settings = load_settings(
        env={"WORKBENCH_PROVIDERS": json.dumps(providers), "WORKBENCH_BACKOFF_BASE_S": "0.25", **env}
    )
    record = sleeps if sleeps is not None else []
    return Gateway(settings, engine, sleep=record.append, rng=lambda: 0.5, clock=clock or Clock())


def rows(engine) -> list[LlmCall]:
    with Session(engine) as s:
        return list(s.scalars(select(LlmCall).order_by(LlmCall.id)))


def test_an_invoke_writes_one_row_with_provider_usage_cost_and_context(any_engine, fake):
    fake.enqueue(Reply("Four.", prompt_tokens=1000, completion_tokens=500, cached_tokens=400))
    gw = make_gateway(any_engine, fake)
    ctx = CallContext(feature="chat", user="ada", session_id="s1", template_name="chat.system", template_version=2)
    result = gw.invoke(QUESTION, "openai/gpt-4o-mini", ctx)
    assert result.text == "Four."
    [row] = rows(any_engine)
    assert (row.feature, row.user, row.session_id, row.model, row.provider, row.status) == (
        "chat",
        "ada",
        "s1",
        "openai/gpt-4o-mini",
        "openai",
        "ok",
    )
    assert (row.template_name, row.template_version) == ("chat.system", 2)
    assert (row.prompt_tokens, row.completion_tokens, row.cached_tokens, row.attempts) == (1000, 500, 400, 1)
    # 600 uncached at $0.15/M, 400 cached at $0.075/M, 500 out at $0.60/M
    assert row.cost_usd == pytest.approx((600 * 0.15 + 400 * 0.075 + 500 * 0.60) / 1e6)
    assert row.request_id == result.request_id and row.latency_ms >= 0
    assert "What is two plus two?" in row.prompt and row.response == "Four."


def test_a_nul_character_in_the_prompt_answer_or_context_still_gets_the_call_its_row(any_engine, fake):
    fake.enqueue(Reply("an\x00swer"))
    gw = make_gateway(any_engine, fake, WORKBENCH_LOG_CONTENT="full")
    ctx = CallContext(feature="chat", user="ada", metadata={"case": "x\x00y"})
    assert gw.invoke([("user", "hello\x00world")], "openai/gpt-4o-mini", ctx).text == "an\x00swer"
    [row] = rows(any_engine)  # PostgreSQL refuses NUL in text and JSON: before, the row was lost
    assert ("helloworld" in row.prompt, row.response, row.meta["case"]) == (True, "answer", "xy")


def test_a_stream_yields_the_text_in_pieces_and_logs_usage_and_time_to_first_token(fresh_engine, fake):
    fake.enqueue(Reply("Two plus two is four.", completion_tokens=6))
    gw = make_gateway(fresh_engine, fake)
    stream = gw.stream(QUESTION, "openai/gpt-4o-mini")
    pieces = list(stream)
    assert len(pieces) > 1 and "".join(pieces) == "Two plus two is four."
    [row] = rows(fresh_engine)
    assert row.status == "ok" and row.completion_tokens == 6 and row.prompt_tokens > 0
    assert row.ttft_ms is not None and row.meta is None  # real usage: nothing estimated
    assert fake.requests[-1]["json"]["stream_options"] == {"include_usage": True}


def test_an_unpriced_model_is_logged_with_no_cost_rather_than_zero(fresh_engine, fake):
    gw = make_gateway(fresh_engine, fake)
    result = gw.invoke(QUESTION, "acme/mystery")
    assert result.unpriced
    assert rows(fresh_engine)[0].cost_usd is None


def test_a_429_is_retried_after_the_time_the_server_asks_for(fresh_engine, fake):
    fake.enqueue(Status(429, retry_after=3), Reply("Four."))
    sleeps: list[float] = []
    result = make_gateway(fresh_engine, fake, sleeps).invoke(QUESTION, "openai/gpt-4o-mini")
    assert result.text == "Four." and result.attempts == 2
    assert sleeps == [3.0]
    assert rows(fresh_engine)[0].attempts == 2


def test_server_errors_back_off_exponentially_then_fail_with_one_error_row(fresh_engine, fake):
    fake.enqueue(*[Status(500)] * 4)
    sleeps: list[float] = []
    gw = make_gateway(fresh_engine, fake, sleeps, WORKBENCH_MAX_RETRIES="3")
    with pytest.raises(ProviderUnavailable, match="server error") as err:
        gw.invoke(QUESTION, "openai/gpt-4o-mini", CallContext(feature="chat"))
    assert sleeps == [0.1875, 0.375, 0.75]  # base 0.25 doubling, jitter factor 0.75
    [row] = rows(fresh_engine)
    assert (row.status, row.error_type, row.attempts, row.cost_usd) == ("error", "provider_unavailable", 4, 0.0)
    assert err.value.request_id == row.request_id
    assert len(fake.requests) == 4


@pytest.mark.parametrize(
    "behaviour, error, words",
    [
        (Status(400), BadRequest, "refused the request"),
        (Status(401), AuthenticationFailed, "rejected the API key"),
        (ContextTooLong(), ContextTooLongError, "too long for this model"),
    ],
)
def test_client_errors_are_not_retried_and_map_to_an_actionable_message(fresh_engine, fake, behaviour, error, words):
    fake.enqueue(behaviour)
    sleeps: list[float] = []
    with pytest.raises(error, match=words) as err:
        make_gateway(fresh_engine, fake, sleeps).invoke(QUESTION, "openai/gpt-4o-mini")
    assert sleeps == [] and len(fake.requests) == 1
    assert SECRET not in str(err.value)
    [row] = rows(fresh_engine)
    assert row.error_type == error.error_type and SECRET not in (row.error_message + (row.prompt or ""))


def test_a_slow_provider_times_out_with_a_message_naming_the_timeout(fresh_engine, fake):
    fake.enqueue(Hang(3))
    gw = make_gateway(fresh_engine, fake, timeout_s=0.5, WORKBENCH_MAX_RETRIES="0")
    with pytest.raises(TimedOut, match=r"within 0\.5 s"):
        gw.invoke(QUESTION, "openai/gpt-4o-mini")
    assert rows(fresh_engine)[0].error_type == "timed_out"


def test_a_connection_dropped_before_any_text_is_retried(fresh_engine, fake):
    fake.enqueue(Drop(after_chunks=0), Reply("Four."))
    stream = make_gateway(fresh_engine, fake).stream(QUESTION, "openai/gpt-4o-mini")
    assert "".join(stream) == "Four."
    assert rows(fresh_engine)[0].attempts == 2


def test_a_connection_dropped_mid_stream_is_an_error_row_with_the_tokens_seen(fresh_engine, fake):
    fake.enqueue(Drop(after_chunks=3))
    stream = make_gateway(fresh_engine, fake).stream(QUESTION, "openai/gpt-4o-mini")
    seen: list[str] = []
    with pytest.raises(ProviderUnavailable):
        for piece in stream:
            seen.append(piece)
    assert seen  # the user saw part of the answer: it is not retried behind their back
    [row] = rows(fresh_engine)
    assert (row.status, row.attempts) == ("error", 1)
    assert row.completion_tokens > 0 and row.meta == {"tokens_estimated": True}
    assert row.response == "".join(seen)


def test_a_malformed_chunk_fails_cleanly_and_is_logged(fresh_engine, fake):
    fake.enqueue(Malformed(after_chunks=1), Malformed(after_chunks=1))
    gw = make_gateway(fresh_engine, fake, WORKBENCH_MAX_RETRIES="1")
    with pytest.raises(ProviderUnavailable):
        "".join(gw.stream(QUESTION, "openai/gpt-4o-mini"))
    assert [r.status for r in rows(fresh_engine)] == ["error"]


def test_a_stream_the_user_abandons_is_logged_as_aborted_with_the_tokens_seen(fresh_engine, fake):
    fake.enqueue(Reply("one two three four five six seven eight nine ten", chunk_delay=0.01))
    stream = make_gateway(fresh_engine, fake).stream(QUESTION, "openai/gpt-4o-mini")
    it = iter(stream)
    first = [next(it), next(it), next(it)]
    stream.close()
    [row] = rows(fresh_engine)
    assert row.status == "aborted"
    assert row.response == "".join(first)
    assert row.completion_tokens > 0 and row.cost_usd > 0 and row.meta == {"tokens_estimated": True}
    stream.close()  # closing twice writes nothing more
    assert len(rows(fresh_engine)) == 1


def test_the_breaker_opens_after_repeated_failures_fails_fast_then_recovers(fresh_engine, fake):
    clock = Clock()
    gw = make_gateway(
        fresh_engine,
        fake,
        clock=clock,
        WORKBENCH_MAX_RETRIES="0",
        WORKBENCH_BREAKER_THRESHOLD="2",
        WORKBENCH_BREAKER_COOLDOWN_S="30",
    )
    fake.enqueue(Status(503), Status(503))
    for _ in range(2):
        with pytest.raises(ProviderUnavailable):
            gw.invoke(QUESTION, "openai/gpt-4o-mini")
    with pytest.raises(CircuitOpen, match="paused"):
        gw.invoke(QUESTION, "openai/gpt-4o-mini")
    assert len(fake.requests) == 2  # failing fast sent nothing
    assert gw.breaker.state("openai") == "open"
    assert gw.breaker.state("acme") == "closed"  # breakers are per provider
    clock.now += 31
    assert gw.breaker.state("openai") == "half-open"
    assert gw.invoke(QUESTION, "openai/gpt-4o-mini").status == "ok"
    assert gw.breaker.state("openai") == "closed"
    assert [r.status for r in rows(fresh_engine)] == ["error", "error", "error", "ok"]
    assert rows(fresh_engine)[2].error_type == "circuit_open"


def test_a_failed_half_open_trial_reopens_the_breaker(fresh_engine, fake):
    clock = Clock()
    gw = make_gateway(
        fresh_engine,
        fake,
        clock=clock,
        WORKBENCH_MAX_RETRIES="0",
        WORKBENCH_BREAKER_THRESHOLD="1",
        WORKBENCH_BREAKER_COOLDOWN_S="10",
    )
    fake.enqueue(Status(500), Status(500))
    with pytest.raises(ProviderUnavailable):
        gw.invoke(QUESTION, "openai/gpt-4o-mini")
    clock.now += 11
    with pytest.raises(ProviderUnavailable):
        gw.invoke(QUESTION, "openai/gpt-4o-mini")
    assert gw.breaker.state("openai") == "open"


def test_a_feature_falls_back_to_its_fallback_model_when_the_primary_fails(fresh_engine, fake):
    fake.enqueue(Status(500), Reply("From the fallback."))
    gw = make_gateway(
        fresh_engine, fake, WORKBENCH_MAX_RETRIES="0", WORKBENCH_FALLBACKS=json.dumps({"chat": "acme/mystery"})
    )
    result = gw.invoke(QUESTION, "openai/gpt-4o-mini", CallContext(feature="chat"))
    assert result.text == "From the fallback." and result.model == "acme/mystery"
    [row] = rows(fresh_engine)
    assert (row.model, row.status, row.attempts) == ("acme/mystery", "ok", 2)
    assert row.meta == {"fallback_from": "openai/gpt-4o-mini", "primary_error": "provider_unavailable"}
    assert fake.requests[-1]["json"]["model"] == "mystery"


def test_log_content_none_keeps_prompts_and_answers_out_of_the_log(fresh_engine, fake):
    gw = make_gateway(fresh_engine, fake, WORKBENCH_LOG_CONTENT="none")
    gw.invoke(QUESTION, "openai/gpt-4o-mini")
    [row] = rows(fresh_engine)
    assert row.prompt is None and row.response is None and row.prompt_tokens > 0


def test_log_content_redacted_masks_emails_and_keys(fresh_engine, fake):
    gw = make_gateway(fresh_engine, fake, WORKBENCH_LOG_CONTENT="redacted")
    key = "sk-" + "abcdefghijklmnopqrstuv"  # built here so no key-shaped string sits in the repo
    gw.invoke([("user", f"Mail ada@example.com my key {key}")], "openai/gpt-4o-mini")
    [row] = rows(fresh_engine)
    assert "ada@example.com" not in row.prompt and "[EMAIL_1]" in row.prompt and "[SECRET_1]" in row.prompt


def test_an_unknown_model_is_a_clear_error_and_still_a_row(fresh_engine, fake):
    gw = make_gateway(fresh_engine, fake)
    with pytest.raises(Exception, match="No provider named 'nowhere'"):
        gw.invoke(QUESTION, "nowhere/model")
    assert [r.status for r in rows(fresh_engine)] == ["error"]


def test_embeddings_through_the_gateway_are_logged_and_priced(fresh_engine, fake):
    from lib.gateway.client import GatewayEmbeddings
    from lib.gateway.pricing import set_price_override

    set_price_override(fresh_engine, "acme/embed-1", input_per_mtok=0.02, output_per_mtok=0)
    emb = GatewayEmbeddings(make_gateway(fresh_engine, fake), "acme/embed-1", batch_size=2)
    vectors = emb.embed_documents(["one two", "three", "four five six"])
    assert len(vectors) == 3 and len(vectors[0]) == 8
    calls = rows(fresh_engine)
    assert [(r.feature, r.status, r.prompt_tokens) for r in calls] == [("embed", "ok", 3), ("embed", "ok", 3)]
    assert calls[0].cost_usd == pytest.approx(3 * 0.02 / 1e6)


def test_a_failing_embedding_call_is_retried_then_reported_with_its_row(fresh_engine, fake):
    from lib.gateway.client import GatewayEmbeddings

    fake.enqueue(Status(503), Status(503))
    gw = make_gateway(fresh_engine, fake, WORKBENCH_MAX_RETRIES="1")
    with pytest.raises(ProviderUnavailable):
        GatewayEmbeddings(gw, "acme/embed-1").embed_query("hello")
    [row] = rows(fresh_engine)
    assert (row.status, row.attempts, row.feature) == ("error", 2, "embed")


def test_concurrent_calls_each_get_exactly_one_committed_row_when_their_call_returns(any_engine, fake):
    gw = make_gateway(any_engine, fake)
    seen: list[bool] = []

    def call(i: int) -> str:
        result = gw.invoke([("user", f"question {i}")], "acme/mystery", CallContext(feature="drill", user=f"u{i}"))
        with Session(any_engine) as s:  # already committed, from another connection
            seen.append(s.scalar(select(LlmCall.id).where(LlmCall.request_id == result.request_id)) is not None)
        return result.request_id

    with ThreadPoolExecutor(max_workers=12) as pool:
        ids = list(pool.map(call, range(60)))
    logged = rows(any_engine)
    assert len(seen) == 60 and all(seen)
    assert sorted(r.request_id for r in logged) == sorted(ids) and len(set(ids)) == 60
    assert sorted(r.user for r in logged) == sorted(f"u{i}" for i in range(60))
    assert {(r.status, r.feature) for r in logged} == {("ok", "drill")}


def test_a_call_log_row_that_cannot_be_written_does_not_cost_the_rows_written_with_it(fresh_engine, caplog):
    from lib.gateway.client import CallResult

    settings = load_settings(env={})
    gw = Gateway(settings, fresh_engine)
    writer = gw._log
    with writer._cond:  # hold the writer as if a transaction were in progress, so the rows below queue up
        writer._writing = True
    results = [CallResult(f"req-{i}", "offline/extractive", "offline") for i in range(4)] + [
        CallResult("req-1", "offline/extractive", "offline")
    ]  # a duplicate request id: refused by the table
    threads = [threading.Thread(target=gw.write_row, args=(r, CallContext(feature="t"), "p", {})) for r in results]
    for t in threads:
        t.start()
    with writer._cond:
        assert writer._cond.wait_for(lambda: len(writer._queue) == 5, timeout=10)
        writer._writing = False  # the "transaction" ends: one waiting caller writes all five
        writer._cond.notify_all()
    for t in threads:
        t.join(timeout=10)
    assert not any(t.is_alive() for t in threads)
    assert sorted(r.request_id for r in rows(fresh_engine)) == ["req-0", "req-1", "req-2", "req-3"]
    assert [r.getMessage() for r in caplog.records] == ["could not write call-log row req-1"]


def test_a_deferred_call_log_row_does_not_hold_up_the_call_and_flush_log_waits_for_it(fresh_engine, fake):
    gw = make_gateway(fresh_engine, fake)
    writer = gw._log
    with writer._cond:  # the database is busy with another transaction
        writer._writing = True
    result = gw.invoke(QUESTION, "acme/mystery", CallContext(feature="compare.run", deferred_log=True))
    assert result.status == "ok" and rows(fresh_engine) == []  # answered without waiting for the log
    assert gw.flush_log(timeout=0.2) is False
    with writer._cond:
        writer._writing = False
        writer._cond.notify_all()
    assert gw.flush_log(timeout=10) is True
    [row] = rows(fresh_engine)
    assert (row.request_id, row.feature, row.status) == (result.request_id, "compare.run", "ok")
    assert gw.flush_log(timeout=0) is True  # nothing left to wait for


def test_an_embedding_429_is_retried_after_the_time_the_server_asks_for(fresh_engine, fake):
    from lib.gateway.client import GatewayEmbeddings

    fake.enqueue(Status(429, retry_after=2))
    sleeps: list[float] = []
    vector = GatewayEmbeddings(make_gateway(fresh_engine, fake, sleeps), "acme/embed-1").embed_query("hello")
    assert len(vector) == 8 and sleeps == [2.0]  # the same backoff and Retry-After rule as chat calls
    [row] = rows(fresh_engine)
    assert (row.status, row.attempts) == ("ok", 2)


def test_failing_embedding_calls_open_the_breaker_that_chat_calls_share(fresh_engine, fake):
    from lib.gateway.client import GatewayEmbeddings

    gw = make_gateway(fresh_engine, fake, WORKBENCH_MAX_RETRIES="0", WORKBENCH_BREAKER_THRESHOLD="2")
    fake.enqueue(Status(503), Status(503))
    for _ in range(2):
        with pytest.raises(ProviderUnavailable):
            GatewayEmbeddings(gw, "openai/text-embedding-3-small").embed_query("hello")
    with pytest.raises(CircuitOpen):
        gw.invoke(QUESTION, "openai/gpt-4o-mini")
    assert len(fake.requests) == 2


def test_one_chat_client_per_model_serves_calls_with_different_parameters(fresh_engine, fake):
    from lib.gateway.client import default_model_factory

    built: list[tuple[str, dict]] = []
    factory = default_model_factory()

    def counting_factory(provider, model, params):
        built.append((model, params))
        return factory(provider, model, params)

    gw = make_gateway(fresh_engine, fake)
    gw.model_factory = counting_factory
    gw.invoke(QUESTION, "openai/gpt-4o-mini", temperature=0.2)
    "".join(gw.stream(QUESTION, "openai/gpt-4o-mini", temperature=0.7, max_tokens=50))
    gw.invoke(QUESTION, "openai/gpt-4o-mini")
    assert built == [("gpt-4o-mini", {})]  # before: one client per parameter set, kept for the process's life
    first, second, third = (r["json"] for r in fake.requests)
    assert first["temperature"] == 0.2 and "max_tokens" not in first and "max_completion_tokens" not in first
    assert second["temperature"] == 0.7 and second["stream_options"] == {"include_usage": True}
    assert second.get("max_completion_tokens", second.get("max_tokens")) == 50
    assert "temperature" not in third  # parameters of one call do not stick to the next
    assert rows(fresh_engine)[1].completion_tokens > 0  # streamed usage still arrives


def test_a_gpt5_reasoning_model_gets_no_temperature_it_would_refuse(fresh_engine, fake):
    gw = make_gateway(fresh_engine, fake)
    gw.invoke(QUESTION, "openai/gpt-5-mini", temperature=0)
    gw.invoke(QUESTION, "openai/gpt-5-chat-latest", temperature=0)
    assert "temperature" not in fake.requests[0]["json"]  # OpenAI answers 400 to any but the default
    assert fake.requests[1]["json"]["temperature"] == 0


def test_a_prompt_over_the_size_limit_is_refused_and_logged_before_anything_reads_it(fresh_engine, fake):
    from lib.gateway.cost_control import set_budget
    from lib.gateway.errors import PromptTooLarge

    set_budget(fresh_engine, "global", "*", limit_usd=0.0)  # used up too: the size is what the user must fix first
    gw = make_gateway(fresh_engine, fake, WORKBENCH_MAX_PROMPT_CHARS="1000")
    hostile = [("system", "Be brief."), ("user", "1.2.3.4." * 200)]  # 1,609 characters
    with pytest.raises(PromptTooLarge, match=r"1,609 characters long; one request may send at most 1,000\b") as err:
        "".join(gw.stream(hostile, "openai/gpt-4o-mini", CallContext(feature="chat")))
    assert fake.requests == []
    [row] = rows(fresh_engine)
    assert (row.status, row.error_type, row.request_id) == ("blocked", "prompt_too_large", err.value.request_id)
    assert len(row.prompt) < 1200 and "characters in all; the rest is not logged" in row.prompt


def test_a_prompt_at_the_size_limit_is_sent(fresh_engine, fake):
    gw = make_gateway(fresh_engine, fake, WORKBENCH_MAX_PROMPT_CHARS="1000")
    result = gw.invoke([("system", "Be brief."), ("user", "x" * 991)], "openai/gpt-4o-mini", CallContext())
    assert result.status == "ok" and len(fake.requests) == 1


# ---- the breaker's half-open trial is released by any outcome ---------------------------------------------------


def opened_then_cooled(engine, fake, clock: Clock, **env) -> Gateway:
    """A gateway whose breaker for `openai` opened on one 500 and whose cool-down has just ended."""
    gw = make_gateway(
        engine,
        fake,
        clock=clock,
        WORKBENCH_MAX_RETRIES="0",
        WORKBENCH_BREAKER_THRESHOLD="1",
        WORKBENCH_BREAKER_COOLDOWN_S="10",
        **env,
    )
    fake.enqueue(Status(500))
    with pytest.raises(ProviderUnavailable):
        gw.invoke(QUESTION, "openai/gpt-4o-mini")
    clock.now += 11
    assert gw.breaker.state("openai") == "half-open"
    return gw


@pytest.mark.parametrize("status, error", [(401, AuthenticationFailed), (403, AuthenticationFailed), (400, BadRequest)])
def test_a_half_open_trial_refused_as_a_client_error_leaves_the_provider_usable(fresh_engine, fake, status, error):
    clock = Clock()
    gw = opened_then_cooled(fresh_engine, fake, clock)
    fake.enqueue(Status(status))
    with pytest.raises(error):
        gw.invoke(QUESTION, "openai/gpt-4o-mini")
    assert gw.breaker.state("openai") == "half-open"  # a refused key says nothing about the provider's health
    assert gw.invoke(QUESTION, "openai/gpt-4o-mini").status == "ok"  # before: "paused for 0 more seconds", forever
    assert gw.breaker.state("openai") == "closed"


def test_an_abandoned_half_open_trial_stream_leaves_the_provider_usable(fresh_engine, fake):
    clock = Clock()
    gw = opened_then_cooled(fresh_engine, fake, clock)
    fake.enqueue(Reply("one two three four five six seven eight", chunk_delay=0.01))
    stream = gw.stream(QUESTION, "openai/gpt-4o-mini")
    it = iter(stream)
    next(it)
    stream.close()  # the user pressed Stop during the trial
    assert stream.result is not None and stream.result.status == "aborted"
    assert gw.invoke(QUESTION, "openai/gpt-4o-mini").status == "ok"
    assert [r.status for r in rows(fresh_engine)] == ["error", "aborted", "ok"]


def test_a_half_open_trial_that_raises_anything_else_leaves_the_provider_usable(fresh_engine, fake):
    clock = Clock()
    gw = opened_then_cooled(fresh_engine, fake, clock)
    fake.enqueue(Reply("one two three", chunk_delay=0.01))
    stream = gw.stream(QUESTION, "openai/gpt-4o-mini")
    it = iter(stream)
    next(it)
    with pytest.raises(KeyboardInterrupt):
        it.throw(KeyboardInterrupt())  # what Ctrl-C in a CLI run does to a stream mid-answer
    assert stream.result is not None and stream.result.status == "aborted"  # before: "ok", and cached
    assert gw.invoke(QUESTION, "openai/gpt-4o-mini").status == "ok"


def test_an_embedding_half_open_trial_refused_with_a_401_leaves_the_provider_usable(fresh_engine, fake):
    from lib.gateway.client import GatewayEmbeddings

    clock = Clock()
    gw = opened_then_cooled(fresh_engine, fake, clock)
    emb = GatewayEmbeddings(gw, "openai/text-embedding-3-small")
    fake.enqueue(Status(401))
    with pytest.raises(AuthenticationFailed):
        emb.embed_query("hello")
    assert len(emb.embed_query("hello")) == 8
    assert gw.breaker.state("openai") == "closed"


# ---- Retry-After on every retryable status, in every form -------------------------------------------------------


def http_date(seconds_from_now: float) -> str:
    from email.utils import formatdate

    return formatdate(time.time() + seconds_from_now, usegmt=True)


@pytest.mark.parametrize(
    "behaviour, wait",
    [
        (Status(503, retry_after=1), 1.0),
        (Status(500, retry_after=2), 2.0),
        (Status(502, headers=(("retry-after-ms", "1500"),)), 1.5),
        (Status(429, headers=(("retry-after-ms", "250"), ("retry-after", "9"))), 0.25),  # the precise one wins
        (Status(503, retry_after=60), 5.0),  # capped by WORKBENCH_BACKOFF_MAX_S
    ],
)
def test_a_retryable_status_is_retried_after_the_time_the_server_asks_for(fresh_engine, fake, behaviour, wait):
    fake.enqueue(behaviour, Reply("Four."))
    sleeps: list[float] = []
    gw = make_gateway(fresh_engine, fake, sleeps, WORKBENCH_BACKOFF_MAX_S="5")
    assert gw.invoke(QUESTION, "openai/gpt-4o-mini").text == "Four."
    assert sleeps == [wait]  # before: a 5xx was retried after ~0.19 s whatever it asked for


def test_a_retry_after_http_date_is_honoured(fresh_engine, fake):
    fake.enqueue(Status(503, headers=(("Retry-After", http_date(3)),)), Reply("Four."))
    sleeps: list[float] = []
    make_gateway(fresh_engine, fake, sleeps).invoke(QUESTION, "openai/gpt-4o-mini")
    [slept] = sleeps
    assert 1.5 < slept <= 3.0  # the date has whole seconds, and a little time passed before it was read


def test_the_error_after_retries_names_the_real_wait_not_a_minute(fresh_engine, fake):
    fake.enqueue(Status(503, retry_after=1), Status(503, retry_after=1))
    gw = make_gateway(fresh_engine, fake, WORKBENCH_MAX_RETRIES="1")
    with pytest.raises(ProviderUnavailable) as err:
        gw.invoke(QUESTION, "openai/gpt-4o-mini")
    message = str(err.value)
    assert "HTTP 503" in message and "retried after 1 s" in message and "minute" not in message
    fake.enqueue(Status(429, retry_after=2), Status(429, retry_after=2))
    with pytest.raises(RateLimited) as err:
        gw.invoke([("user", "Another question")], "openai/gpt-4o-mini")
    assert "wait 2 s" in str(err.value) and "retried after 2 s" in str(err.value) and "minute" not in str(err.value)
    assert rows(fresh_engine)[-1].error_message == str(err.value)


# ---- the breaker opening during a call's retries ------------------------------------------------------------------


def test_a_breaker_that_opens_during_retries_reports_the_real_error_and_the_pause_as_its_consequence(
    fresh_engine, fake
):
    fake.enqueue(Status(503), Status(503), Reply("never sent"))
    sleeps: list[float] = []
    gw = make_gateway(fresh_engine, fake, sleeps, WORKBENCH_MAX_RETRIES="3", WORKBENCH_BREAKER_THRESHOLD="2")
    with pytest.raises(ProviderUnavailable) as err:
        gw.invoke(QUESTION, "openai/gpt-4o-mini")
    assert type(err.value) is ProviderUnavailable  # before: CircuitOpen, "paused", hiding the 503
    message = str(err.value)
    assert message.index("HTTP 503") < message.index("paused")
    assert len(fake.requests) == 2 and sleeps == [0.1875]  # no wait for a retry the breaker would refuse
    [row] = rows(fresh_engine)
    assert (row.error_type, row.attempts) == ("provider_unavailable", 2)
    with pytest.raises(CircuitOpen):  # the next call is refused fast, as before
        gw.invoke(QUESTION, "openai/gpt-4o-mini")


# ---- a stream that finished its answer but dropped before [DONE] ------------------------------------------------


def test_a_stream_dropped_after_its_finish_reason_is_a_complete_answer_with_estimated_usage(fresh_engine, fake):
    fake.default_reply = Reply("Two plus two is four.")
    fake.enqueue(Truncated())
    stream = make_gateway(fresh_engine, fake).stream(QUESTION, "openai/gpt-4o-mini")
    assert "".join(stream) == "Two plus two is four."  # before: ProviderUnavailable after the whole answer
    assert stream.result is not None and stream.result.status == "ok" and stream.result.tokens_estimated
    [row] = rows(fresh_engine)
    assert (row.status, row.attempts, row.response) == ("ok", 1, "Two plus two is four.")
    assert row.prompt_tokens > 0 and row.completion_tokens > 0 and row.meta == {"tokens_estimated": True}


def test_a_stream_dropped_after_its_usage_chunk_keeps_the_providers_token_counts(fresh_engine, fake):
    fake.default_reply = Reply("Two plus two is four.", prompt_tokens=40, completion_tokens=7)
    fake.enqueue(Truncated(usage=True))
    stream = make_gateway(fresh_engine, fake).stream(QUESTION, "openai/gpt-4o-mini")
    assert "".join(stream) == "Two plus two is four."
    [row] = rows(fresh_engine)
    assert (row.status, row.prompt_tokens, row.completion_tokens, row.meta) == ("ok", 40, 7, None)


@pytest.mark.parametrize(("regions", "masked"), [("GB", True), ("US", False)])
def test_the_pii_regions_setting_decides_which_national_phone_formats_are_masked_in_the_log(
    fresh_engine, fake, regions, masked
):
    gw = make_gateway(fresh_engine, fake, WORKBENCH_LOG_CONTENT="redacted", WORKBENCH_PII_REGIONS=regions)
    gw.invoke([("user", "Call me on 020 7946 0958 tomorrow")], "openai/gpt-4o-mini")
    [row] = rows(fresh_engine)
    assert ("020 7946 0958" not in row.prompt) is masked


def test_tool_definitions_and_earlier_tool_call_arguments_count_towards_the_size_limit(fresh_engine, fake):
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

    from lib.gateway.errors import PromptTooLarge

    gw = make_gateway(fresh_engine, fake, WORKBENCH_MAX_PROMPT_CHARS="1000")
    tool = {"type": "function", "function": {"name": "lookup", "description": "d" * 1200, "parameters": {}}}
    with pytest.raises(PromptTooLarge, match="one request may send at most 1,000"):
        gw.invoke([("user", "hi")], "openai/gpt-4o-mini", CallContext(feature="assistant"), tools=[tool])
    call = {"name": "lookup", "args": {"text": "a" * 1200}, "id": "c1", "type": "tool_call"}
    earlier = [HumanMessage("hi"), AIMessage("", tool_calls=[call]), ToolMessage("ok", tool_call_id="c1")]
    with pytest.raises(PromptTooLarge, match="one request may send at most 1,000"):
        gw.invoke(earlier, "openai/gpt-4o-mini", CallContext(feature="assistant"))
    assert fake.requests == []
    small = {"type": "function", "function": {"name": "lookup", "description": "d", "parameters": {}}}
    assert (
        gw.invoke([("user", "hi")], "openai/gpt-4o-mini", CallContext(feature="assistant"), tools=[small]).status
        == "ok"
    )
