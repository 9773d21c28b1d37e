"""Traces: spans of real chat turns exported over OTLP/HTTP to a receiver on 127.0.0.1 (tests/otlp_receiver.py).

One tracer provider per process (OpenTelemetry's rule): it is installed once for the session, exporting to the
receiver, and each test reads back the spans of its own trace. The loopback OpenAI-compatible server answers the
calls, with scripted failures for the retry and the fallback.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from assistant_script import MODEL as ASSISTANT_MODEL
from assistant_script import loopback_services
from fake_openai import Reply, Status, ToolCall, by_step
from langchain_core.embeddings import DeterministicFakeEmbedding
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from otlp_receiver import GrpcOtlpReceiver, OtlpReceiver, ReceivedSpan
from sqlalchemy import select
from sqlalchemy.orm import Session
from waiting import wait_for

from lib.assistant.turn import Assistant
from lib.assistant.turn import start_turn as start_assistant_turn
from lib.chat.turn import ChatSetup, start_turn
from lib.core.settings import ConfigError, load_settings
from lib.core.spans import trace_id_of, traceparent
from lib.core.tables import LlmCall
from lib.documents.indexing import get_collection
from lib.gateway.client import CallContext, Gateway
from lib.gateway.cost_control import set_budget
from lib.gateway.errors import BudgetExceeded, ProviderUnavailable
from lib.pipelines import runs
from lib.pipelines.definition import Pipeline, PromptStep
from lib.prompts.language import Template
from lib.prompts.store import TemplateStore, ensure_builtin_templates
from lib.services import Services
from lib.telemetry import tracing
from lib.ui.usage_view import trace_line
from lib.usage.demo import write_demo_calls

ROOT = Path(__file__).resolve().parent.parent
EMAIL = "ada.lovelace@example.com"
PHONE = "+44 20 7946 0958"
KEY = "sk" + "-proj-" + "Zq8Xw7Vu6Ts5Rq4Po3Nm2Lk1"  # built here: no key-shaped literal in the repository
PROVIDER_KEY = "sk" + "-" + "provider-secret-0123456789abcdef"
QUESTION = f"Write to {EMAIL} or call {PHONE}; my key is {KEY}. How many days of holiday do I get?"
ANSWER = "Twenty-eight days a year."


@pytest.fixture(scope="session")
def receiver():
    """The session's OTLP receiver, with this process's tracer provider exporting to it."""
    with OtlpReceiver() as r:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": r.base_url,
            "OTEL_SERVICE_NAME": "workbench-test",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test",
        }
        settings = load_settings(env=env)
        provider = tracing.install_tracing(settings)
        assert provider is not None and tracing._installed is not None and tracing._installed[0] == settings.tracing
        yield r
        provider.shutdown()  # flushes, before the receiver goes


def traced_setup(engine, server, **env) -> ChatSetup:
    """A chat setup whose gateway calls the loopback server: openai/gpt-4o-mini (external), acme/mystery."""
    providers = {
        "openai": {
            "kind": "openai",
            "base_url": server.base_url,
            "api_key": PROVIDER_KEY,
            "models": ["gpt-4o-mini"],
            "timeout_s": 5,
        },
        "acme": {"base_url": server.base_url, "api_key": PROVIDER_KEY, "models": ["mystery"], "timeout_s": 5},
    }
    base = {
        "WORKBENCH_PROVIDERS": json.dumps(providers),
        "WORKBENCH_BACKOFF_BASE_S": "0.25",
        "WORKBENCH_MAX_RETRIES": "1",
        "WORKBENCH_FALLBACKS": json.dumps({"chat": "acme/mystery"}),
    }
    settings = load_settings(env={**base, **env})
    ensure_builtin_templates(engine)
    gateway = Gateway(settings, engine, sleep=lambda s: None, rng=lambda: 0.5)
    return ChatSetup(engine, gateway, budget=3000, store=TemplateStore(engine))


def trace_of(receiver: OtlpReceiver, trace_id: str, names: set[str]) -> dict[str, list[ReceivedSpan]]:
    """The trace's spans by name, once every name in `names` has arrived."""
    tracing.flush_traces()
    assert wait_for(lambda: names <= {s.name for s in receiver.spans_of(trace_id)}, 10), [
        s.name for s in receiver.spans_of(trace_id)
    ]
    out: dict[str, list[ReceivedSpan]] = {}
    for s in receiver.spans_of(trace_id):
        out.setdefault(s.name, []).append(s)
    return out


def calls(engine) -> list[LlmCall]:
    with Session(engine) as s:
        return list(s.scalars(select(LlmCall).order_by(LlmCall.id)))


def everything_said(spans: list[ReceivedSpan]) -> str:
    """Every name, attribute, event and resource value of the spans, as one text to search."""
    return json.dumps(
        [[s.name, s.attributes, s.events, s.resource, s.status_message] for s in spans], default=str, ensure_ascii=False
    )


def test_a_chat_turn_with_a_retry_and_a_fallback_is_one_trace_with_each_attempt_under_its_call(
    receiver, fresh_engine, fake
):
    fake.enqueue(Status(500), Status(500), Reply(ANSWER, prompt_tokens=40, completion_tokens=6, model="mystery-0613"))
    setup = traced_setup(fresh_engine, fake)
    turn = start_turn(setup, QUESTION, "openai/gpt-4o-mini", user="ada@example.com")
    assert "".join(turn) == ANSWER and turn.error is None
    [row] = calls(fresh_engine)
    assert row.trace_id and len(row.trace_id) == 32
    spans = trace_of(
        receiver, row.trace_id, {"chat.turn", "chat.prompt", "chat gpt-4o-mini", "gateway.attempt", "call_log.write"}
    )

    [root] = spans["chat.turn"]
    [prompt] = spans["chat.prompt"]
    [call] = spans["chat gpt-4o-mini"]
    attempts = sorted(spans["gateway.attempt"], key=lambda s: s.attributes["workbench.attempt"])
    assert root.parent_id is None and root.resource["service.name"] == "workbench-test"
    assert root.resource["deployment.environment"] == "test"
    assert prompt.parent_id == root.span_id and call.parent_id == root.span_id
    assert [a.parent_id for a in attempts] == [call.span_id] * 3
    [log_write] = [s for s in spans["call_log.write"] if s.parent_id == call.span_id]

    # the tries: two on the primary (the second after its back-off), then the fallback, which answered
    first, retry, fallback = attempts
    assert [a.attributes["workbench.attempt"] for a in attempts] == [1, 2, 3]
    assert "workbench.retry.delay_s" not in first.attributes
    assert retry.attributes["workbench.retry.delay_s"] == pytest.approx(0.25 * 0.75, abs=1e-3)
    for failed in (first, retry):
        assert failed.attributes["error.type"] == "provider_unavailable" and failed.status_code == 2
        assert failed.attributes["gen_ai.provider.name"] == "openai"
        assert failed.attributes["workbench.fallback"] is False
    assert fallback.attributes["workbench.fallback"] is True and fallback.status_code != 2
    assert (fallback.attributes["gen_ai.provider.name"], fallback.attributes["gen_ai.request.model"]) == (
        "acme",
        "mystery",
    )
    assert fallback.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert "gen_ai.usage.input_tokens" not in fallback.attributes  # tokens on the call only: never counted twice

    # the call: GenAI conventions and the workbench's own, as in its call-log row
    a = call.attributes
    assert (a["gen_ai.operation.name"], a["gen_ai.provider.name"], a["gen_ai.system"]) == ("chat", "openai", "openai")
    assert (a["gen_ai.request.model"], a["gen_ai.response.model"]) == ("gpt-4o-mini", "mystery-0613")
    assert (
        (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"])
        == (40, 6)
        == (
            row.prompt_tokens,
            row.completion_tokens,
        )
    )
    assert a["gen_ai.usage.cache_read.input_tokens"] == 0
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert (a["workbench.status"], a["workbench.feature"], a["workbench.attempts"]) == ("ok", "chat", 3)
    assert (a["workbench.template.name"], a["workbench.template.version"]) == ("chat.system", 1)
    assert a["workbench.model"] == "acme/mystery" and a["workbench.request_id"] == row.request_id
    assert "workbench.cost_usd" not in a and row.cost_usd is None  # acme/mystery has no price: unknown, not $0
    assert call.start_ns <= attempts[0].start_ns and attempts[-1].end_ns <= log_write.end_ns <= call.end_ns

    # the W3C traceparent of each request names its try's span in this trace
    sent = [r["headers"].get("traceparent") or "" for r in fake.requests]
    assert [h[:-3] for h in sent] == [f"00-{row.trace_id}-{t.span_id}" for t in attempts]
    assert all(int(h[-2:], 16) & 1 for h in sent)  # flags: sampled (the random-trace-id bit may be set too)

    # no personal data, no key, no text: the question went only to the model
    said = everything_said(receiver.spans_of(row.trace_id))
    for secret in (EMAIL, PHONE, KEY, PROVIDER_KEY, "ada@example.com", "holiday", ANSWER):
        assert secret not in said
    assert "gen_ai.input.messages" not in a and "gen_ai.output.messages" not in a


def test_with_trace_content_on_the_prompt_and_answer_reach_the_span_masked(receiver, fresh_engine, fake):
    fake.enqueue(Reply(f"I will write to {EMAIL}. {ANSWER}"))
    setup = traced_setup(fresh_engine, fake, WORKBENCH_TRACE_CONTENT="redacted")
    turn = start_turn(setup, QUESTION, "openai/gpt-4o-mini", user="ada")
    assert EMAIL in "".join(turn)  # the user's answer has it back
    [row] = calls(fresh_engine)
    [call] = trace_of(receiver, row.trace_id, {"chat gpt-4o-mini"})["chat gpt-4o-mini"]
    sent = json.loads(call.attributes["gen_ai.input.messages"])
    answered = json.loads(call.attributes["gen_ai.output.messages"])
    question = sent[-1]["parts"][0]["content"]
    assert sent[-1]["role"] == "human" and "How many days of holiday do I get?" in question
    assert "[EMAIL_1]" in question and "[PHONE_1]" in question and "[SECRET_1]" in question
    assert answered[0]["parts"][0]["content"] == f"I will write to [EMAIL_1]. {ANSWER}"
    said = everything_said(receiver.spans_of(row.trace_id))
    for secret in (EMAIL, PHONE, KEY, PROVIDER_KEY):
        assert secret not in said


def test_a_cached_answer_is_a_cache_hit_span_and_no_attempt(receiver, fresh_engine, fake):
    setup = traced_setup(fresh_engine, fake)
    fake.enqueue(Reply(ANSWER))
    gw = setup.gateway
    first = gw.invoke([("user", "Days of holiday?")], "openai/gpt-4o-mini", CallContext(feature="chat", user="ada"))
    second = gw.invoke([("user", "Days of holiday?")], "openai/gpt-4o-mini", CallContext(feature="chat", user="ada"))
    assert (first.status, second.status) == ("ok", "cached")
    [_, row] = calls(fresh_engine)
    spans = trace_of(receiver, row.trace_id, {"chat gpt-4o-mini", "gateway.cache_hit"})
    [call] = spans["chat gpt-4o-mini"]
    [hit] = spans["gateway.cache_hit"]
    assert call.parent_id is None and hit.parent_id == call.span_id and "gateway.attempt" not in spans
    assert call.attributes["workbench.status"] == "cached" and call.attributes["workbench.cost_usd"] == 0.0
    assert hit.attributes["workbench.saved_usd"] == pytest.approx(first.cost_usd)


def test_an_open_breaker_is_a_refusal_span_and_the_error_is_on_the_call(receiver, fresh_engine, fake):
    setup = traced_setup(
        fresh_engine, fake, WORKBENCH_MAX_RETRIES="0", WORKBENCH_BREAKER_THRESHOLD="1", WORKBENCH_FALLBACKS="{}"
    )
    fake.enqueue(Status(500))
    gw = setup.gateway
    for _ in range(2):  # the first opens the breaker, the second is refused by it
        with pytest.raises(ProviderUnavailable):  # CircuitOpen is one
            gw.invoke([("user", "Hello?")], "openai/gpt-4o-mini", CallContext(feature="chat"))
    [_, row] = calls(fresh_engine)
    assert row.error_type == "circuit_open"
    spans = trace_of(receiver, row.trace_id, {"chat gpt-4o-mini", "gateway.refused"})
    [call], [refused] = spans["chat gpt-4o-mini"], spans["gateway.refused"]
    assert refused.parent_id == call.span_id and refused.attributes["workbench.refusal"] == "breaker"
    assert call.attributes["error.type"] == "circuit_open" and call.status_code == 2
    assert len(fake.requests) == 1  # the refused call never reached the server


def test_a_used_up_budget_is_a_refusal_span_and_no_attempt(receiver, fresh_engine, fake):
    set_budget(fresh_engine, "user", "ada", limit_usd=0.0)
    gw = traced_setup(fresh_engine, fake).gateway
    with pytest.raises(BudgetExceeded):
        gw.invoke([("user", "Hello?")], "openai/gpt-4o-mini", CallContext(feature="chat", user="ada"))
    [row] = calls(fresh_engine)
    spans = trace_of(receiver, row.trace_id, {"chat gpt-4o-mini", "gateway.refused"})
    [call], [refused] = spans["chat gpt-4o-mini"], spans["gateway.refused"]
    assert refused.parent_id == call.span_id and refused.attributes["workbench.refusal"] == "budget_exceeded"
    assert (call.attributes["workbench.status"], call.attributes["error.type"]) == ("blocked", "budget_exceeded")
    assert "gateway.attempt" not in spans and fake.requests == []


def test_no_otlp_endpoint_installs_no_tracer_and_calls_carry_no_traceparent(tmp_path):
    script = """
import json, sys
sys.path.insert(0, "tests")
from fake_openai import FakeOpenAI
from opentelemetry import trace
from lib.core.settings import load_settings
from lib.gateway.client import CallContext
from lib.services import Services
with FakeOpenAI() as server:
    providers = {"acme": {"base_url": server.base_url, "api_key": "k", "models": ["fake-small"]}}
    settings = load_settings(env={"WORKBENCH_DATA_DIR": sys.argv[1], "WORKBENCH_PROVIDERS": json.dumps(providers)})
    services = Services(settings)
    services.gateway.invoke([("user", "hi")], "acme/fake-small", CallContext(feature="chat"))
    row = services.engine.connect().exec_driver_sql("SELECT trace_id FROM llm_calls").one()
    print(json.dumps({"provider": type(trace.get_tracer_provider()).__name__, "traced": settings.tracing is not None,
                      "traceparent": server.requests[0]["headers"].get("traceparent"), "trace_id": row[0]}))
"""
    env = {"PATH": "/usr/bin:/bin", "WORKBENCH_PRELOAD_EMBEDDINGS": "0"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"provider": "ProxyTracerProvider", "traced": False, "traceparent": None, "trace_id": None}


def test_spans_go_over_grpc_when_the_protocol_says_so(tmp_path):
    script = """
import sys
from lib.core import spans
from lib.core.settings import load_settings
from lib.telemetry.tracing import flush_traces, install_tracing
env = {"OTEL_EXPORTER_OTLP_ENDPOINT": sys.argv[1], "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_SERVICE_NAME": "wb"}
assert install_tracing(load_settings(env=env)) is not None
with spans.span("pipeline.row", run_id="7") as row:
    print(spans.trace_id_of(row))
assert flush_traces()
"""
    with GrpcOtlpReceiver() as grpc_receiver:
        env = {"PATH": "/usr/bin:/bin"}
        done = subprocess.run(
            [sys.executable, "-c", script, grpc_receiver.base_url],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        trace_id = done.stdout.strip().splitlines()[-1]
        assert wait_for(lambda: grpc_receiver.spans, 10)
    [row] = grpc_receiver.spans
    assert (row.name, row.trace_id, row.attributes, row.resource["service.name"]) == (
        "pipeline.row",
        trace_id,
        {"workbench.run_id": "7"},
        "wb",
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "PROTOCOL"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, "http:// or https://"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_SAMPLER": "sometimes"}, "SAMPLER"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_SAMPLER_ARG": "2"}, "SAMPLER_ARG"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_HEADERS": "Authorization"}, "HEADERS"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_RESOURCE_ATTRIBUTES": "=x"}, "RESOURCE"),
        ({"WORKBENCH_TRACE_URL": "http://jaeger:16686/trace/"}, "{trace_id}"),
        ({"WORKBENCH_TRACE_URL": "javascript:alert(1)//{trace_id}"}, "http://"),
        ({"WORKBENCH_TRACE_URL": "http://j/{trace_id}/{other}"}, "braces"),
        ({"WORKBENCH_TRACE_CONTENT": "full"}, "WORKBENCH_TRACE_CONTENT"),
    ],
)
def test_trace_settings_that_cannot_be_read_stop_the_app(env, message):
    with pytest.raises(ConfigError, match=message.replace("{", r"\{").replace("}", r"\}")):
        load_settings(env=env)


def test_the_otel_variables_configure_endpoint_protocol_headers_and_sampler():
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/",
        "OTEL_EXPORTER_OTLP_HEADERS": "Authorization=Basic%20abc,x-tenant=t1",
        "OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attrs,deployment.environment=prod",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.25",
    }
    cfg = load_settings(env=env).tracing
    assert cfg is not None and cfg.endpoint == "http://collector:4318/v1/traces" and cfg.protocol == "http/protobuf"
    assert dict(cfg.headers) == {"Authorization": "Basic abc", "x-tenant": "t1"}
    assert cfg.service_name == "from-attrs" and cfg.sampler_arg == 0.25
    assert "Basic abc" not in repr(cfg)  # headers carry credentials: never printed
    assert "0.25" in tracing.make_sampler(cfg).get_description()
    grpc = load_settings(
        env={"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://tempo:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    ).tracing
    assert grpc is not None and (grpc.endpoint, grpc.protocol) == ("http://tempo:4317", "grpc")
    assert type(tracing.make_exporter(grpc)).__module__.startswith("opentelemetry.exporter.otlp.proto.grpc")
    off = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}
    assert load_settings(env={**off, "OTEL_SDK_DISABLED": "true"}).tracing is None
    assert load_settings(env={**off, "OTEL_TRACES_EXPORTER": "none"}).tracing is None
    assert load_settings(env={}).tracing is None


def test_the_usage_call_detail_names_the_trace_and_links_it_only_by_a_well_formed_id():
    tid = "4bf92f3577b34da6a3ce929d0e0e4736"
    assert trace_line({"trace_id": tid}, None) == (f"Trace {tid}", None)
    assert trace_line({"trace_id": tid}, "https://grafana/explore?q={trace_id}") == (
        f"Trace {tid}",
        f"https://grafana/explore?q={tid}",
    )
    for stored in (None, "", "0" * 32, "not-a-trace-id", tid.upper(), tid + ")](javascript:x)", "a" * 31):
        assert trace_line({"trace_id": stored}, "http://jaeger/trace/{trace_id}") is None


def test_an_indexed_file_is_a_trace_and_a_grounded_turn_shows_its_retrieval(receiver, tmp_path, fake):
    providers = {"acme": {"base_url": fake.base_url, "api_key": PROVIDER_KEY, "models": ["fake-small"]}}
    settings = load_settings(env={"WORKBENCH_DATA_DIR": str(tmp_path), "WORKBENCH_PROVIDERS": json.dumps(providers)})
    services = Services(settings, local_embeddings=DeterministicFakeEmbedding(size=16))
    col = get_collection(services.engine, "handbook", create=True)
    tracing.flush_traces()
    receiver.clear()
    body = b"Holidays. Every employee gets 28 days of paid holiday per year.\n\nParking is free on site.\n"
    assert services.indexer.index_file(col, "payroll-plans.txt", body).status == "indexed"
    tracing.flush_traces()
    [indexed] = [s for s in receiver.spans if s.name == "documents.index_file"]
    assert indexed.parent_id is None and indexed.attributes["workbench.status"] == "indexed"
    assert indexed.attributes["workbench.chunks"] >= 1 and indexed.attributes["workbench.bytes"] == len(body)
    assert "payroll" not in everything_said(receiver.spans_of(indexed.trace_id))  # a file name is the user's text

    fake.enqueue(Reply("28 days [1]."))
    setup = ChatSetup(
        services.engine,
        services.gateway,
        budget=3000,
        store=services.templates,
        retrieval=services.retrieval(),
        retriever=lambda: services.retriever,
    )
    turn = start_turn(setup, "How many days of holiday?", "acme/fake-small", user="ada", collection="handbook")
    assert "".join(turn) == "28 days [1]."
    [row] = calls(services.engine)
    names = {"chat.turn", "chat.prompt", "retrieval.search", "retrieval.vector", "retrieval.bm25", "retrieval.fusion"}
    spans = trace_of(receiver, row.trace_id, names | {"chat fake-small"})
    [root], [prompt], [search] = spans["chat.turn"], spans["chat.prompt"], spans["retrieval.search"]
    assert prompt.parent_id == root.span_id and search.parent_id == prompt.span_id
    assert all(
        spans[n][0].parent_id == search.span_id for n in ("retrieval.vector", "retrieval.bm25", "retrieval.fusion")
    )
    assert search.attributes["workbench.mode"] == "hybrid" and search.attributes["workbench.results"] >= 1
    assert spans["chat fake-small"][0].parent_id == root.span_id and root.attributes["workbench.grounded"] is True
    assert "holiday" not in everything_said(receiver.spans_of(row.trace_id))  # neither the question nor a passage


def test_a_sampled_out_trace_is_not_named_in_the_call_log():
    ids = {"trace_id": 0x4BF92F3577B34DA6A3CE929D0E0E4736, "span_id": 0x00F067AA0BA902B7, "is_remote": False}
    sampled = NonRecordingSpan(SpanContext(**ids, trace_flags=TraceFlags(TraceFlags.SAMPLED)))
    dropped = NonRecordingSpan(SpanContext(**ids, trace_flags=TraceFlags(TraceFlags.DEFAULT)))
    assert trace_id_of(sampled) == "4bf92f3577b34da6a3ce929d0e0e4736" and trace_id_of(dropped) is None
    assert traceparent(dropped) == {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"}


def test_a_pipeline_row_is_one_trace_with_each_step_and_its_call(receiver, fake, monkeypatch):
    providers = {"acme": {"base_url": fake.base_url, "api_key": PROVIDER_KEY, "models": ["m1"]}}
    monkeypatch.setenv("WORKBENCH_PROVIDERS", json.dumps(providers))
    monkeypatch.setenv("WORKBENCH_APP_WORKERS", "2")
    svc = Services(load_settings(), local_embeddings=DeterministicFakeEmbedding(size=16))
    svc.templates.create(
        Template(name="t.sum", user="Sum up: {{ ticket }}", model="acme/m1"), "ada", labels=("production",)
    )
    svc.templates.create(
        Template(name="t.reply", user="Reply to {{ ticket }}", model="acme/m1"), "ada", labels=("production",)
    )
    svc.pipelines.save(Pipeline("Traced", (PromptStep("sum", "t.sum"), PromptStep("reply", "t.reply"))), "ada")
    fake.default_reply = Reply("Noted.")
    svc.start_workers()
    rows = [{"ticket": f"Row {i}: {QUESTION}"} for i in range(2)]
    run_id = runs.start_run(svc.pipeline_deps, svc.pipelines.get("Traced"), rows, "ada")
    assert wait_for(lambda: runs.run_status(svc.engine, run_id).state == "completed", 60)
    with Session(svc.engine) as s:
        logged = list(s.scalars(select(LlmCall).where(LlmCall.run_id == str(run_id))))
    assert len(logged) == 4 and len({c.trace_id for c in logged}) == 2  # one trace per row, both steps in it
    for trace_id in {c.trace_id for c in logged}:
        spans = trace_of(receiver, trace_id, {"pipeline.row", "pipeline.step", "chat m1"})
        [row] = spans["pipeline.row"]
        assert row.parent_id is None and row.attributes["workbench.run_id"] == str(run_id)
        assert row.attributes["workbench.status"] == "ok"
        steps = {s.attributes["workbench.step"]: s for s in spans["pipeline.step"]}
        assert set(steps) == {"sum", "reply"} and all(s.parent_id == row.span_id for s in steps.values())
        for call in spans["chat m1"]:
            step = call.attributes["workbench.step"]
            assert call.parent_id == steps[step].span_id
            assert (call.attributes["workbench.pipeline.name"], call.attributes["workbench.feature"]) == (
                "Traced",
                "pipeline",
            )
        said = everything_said(receiver.spans_of(trace_id))
        for secret in (EMAIL, PHONE, KEY, PROVIDER_KEY):
            assert secret not in said


def test_an_assistant_turn_with_two_tools_is_one_trace(receiver, fake, fresh_engine, tmp_path):
    services = loopback_services(
        fresh_engine.url.render_as_string(hide_password=False), fake, data_dir=tmp_path / "data"
    )
    write_demo_calls(services.engine, 50, 3)
    fake.responder = by_step(
        Reply("", tool_calls=(ToolCall("calculator", {"expression": "6*7"}, id="call_a"),)),
        Reply("", tool_calls=(ToolCall("calculator", {"expression": "40+2"}, id="call_b"),)),
        Reply("Both are 42."),
    )
    turn = start_assistant_turn(Assistant(), services, "ada", ["manager"], QUESTION, model=ASSISTANT_MODEL)
    events = list(turn)
    assert events[-1]["type"] == "done" and turn.answer == "Both are 42."
    with Session(services.engine) as s:
        logged = list(s.scalars(select(LlmCall).where(LlmCall.run_id == turn.id).order_by(LlmCall.id)))
    assert len(logged) == 3 and len({c.trace_id for c in logged}) == 1 and logged[0].trace_id
    trace_id = logged[0].trace_id
    spans = trace_of(receiver, trace_id, {"assistant.turn", "execute_tool calculator", "chat gpt-4o-mini"})
    [root] = spans["assistant.turn"]
    assert root.parent_id is None and root.attributes["workbench.status"] == "done"
    assert root.attributes["workbench.run_id"] == turn.id
    tools = spans["execute_tool calculator"]
    assert sorted(t.attributes["gen_ai.tool.call.id"] for t in tools) == ["call_a", "call_b"]
    assert all(
        t.attributes["workbench.status"] == "ok" and t.attributes["gen_ai.tool.name"] == "calculator" for t in tools
    )
    calls_ = spans["chat gpt-4o-mini"]
    assert len(calls_) == 3 and {c.attributes["workbench.request_id"] for c in calls_} == {c.request_id for c in logged}
    by_id = {s.span_id: s for s in receiver.spans_of(trace_id)}

    def under_root(s: ReceivedSpan) -> bool:
        while s.parent_id is not None:
            s = by_id[s.parent_id]
        return s.span_id == root.span_id

    assert all(under_root(s) for s in [*tools, *calls_])
    said = everything_said(receiver.spans_of(trace_id))
    for secret in (EMAIL, PHONE, KEY, "6*7", "40+2", "Both are 42."):
        assert secret not in said
