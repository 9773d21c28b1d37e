"""Prometheus metrics: a real Prometheus scrapes the metrics port and reads back the call log's figures."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fake_openai import Reply, Status
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_server import PrometheusServer
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lib.core.db import make_engine
from lib.core.settings import ConfigError, load_settings
from lib.core.tables import LlmCall
from lib.gateway.client import CallContext, Gateway
from lib.gateway.cost_control import budget_table, set_budget
from lib.gateway.errors import GatewayError
from lib.gateway.metrics import OTHER, GatewayMetrics
from lib.jobs.items import add_items
from lib.services import open_engine
from lib.telemetry.metrics import (
    MAX_PIPELINES,
    MetricsPortInUse,
    Sources,
    WorkbenchCollector,
    serve_metrics,
    stop_metrics,
)

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def providers(server) -> str:
    return json.dumps(
        {
            "openai": {"kind": "openai", "base_url": server.base_url, "api_key": "x", "models": ["gpt-4o-mini"]},
            "acme": {"base_url": server.base_url, "models": ["mystery"], "timeout_s": 5},
        }
    )


def make_gateway(engine, server, registry: CollectorRegistry) -> Gateway:
    settings = load_settings(
        env={
            "WORKBENCH_PROVIDERS": providers(server),
            "WORKBENCH_MAX_RETRIES": "0",
            "WORKBENCH_BREAKER_THRESHOLD": "2",
        }
    )
    return Gateway(settings, engine, metrics=GatewayMetrics(registry), sleep=lambda s: None)


def call_log_figures(engine) -> dict[str, dict[tuple[str, ...], float]]:
    """The call log's requests, tokens and cost by feature, model and status."""
    keys = (LlmCall.feature, LlmCall.model, LlmCall.status)
    with Session(engine) as s:
        rows = s.execute(
            select(
                *keys,
                func.count(),
                func.sum(LlmCall.prompt_tokens),
                func.sum(LlmCall.completion_tokens),
                func.sum(LlmCall.cached_tokens),
                func.sum(LlmCall.cost_usd),
                func.sum(LlmCall.saved_usd),
            ).group_by(*keys)
        ).all()
    out: dict[str, dict[tuple[str, ...], float]] = {"requests": {}, "tokens": {}, "cost": {}, "saved": {}}
    for feature, model, status, n, prompt, completion, cached, cost, saved in rows:
        key = (feature, model, status)
        out["requests"][key] = n
        for kind, value in (("input", prompt), ("output", completion), ("cached", cached)):
            if value:
                out["tokens"][(*key, kind)] = value
        if cost is not None:  # priced (errors and cache hits cost 0); unpriced calls are counted apart
            out["cost"][key] = cost
        if saved:
            out["saved"][key[:2]] = saved
    return out


@pytest.fixture
def registry_endpoint(tmp_path):
    """A file database, a registry of its own and its metrics port on 127.0.0.1; stopped afterwards."""
    engine = open_engine(f"sqlite:///{tmp_path / 'wb.db'}")
    registry, port = CollectorRegistry(), free_port()
    yield engine, registry, port
    stop_metrics(port)
    engine.dispose()


def test_prometheus_reads_back_the_call_logs_requests_tokens_and_cost(registry_endpoint, fake, prometheus_server):
    engine, registry, port = registry_endpoint
    gw = make_gateway(engine, fake, registry)
    backlog = {"triage": (2, 60.0)}  # the review table's reader has its own test below
    endpoint = serve_metrics(port, Sources(engine, gw, lambda engine: backlog), "127.0.0.1", registry)
    prometheus_server.scrape(port)
    set_budget(engine, "feature", "chat", limit_usd=1.0)
    set_budget(engine, "user", "broke@example.com", limit_usd=0.0)
    add_items(engine, "index", 1, [(0, "a.pdf", {}), (1, "b.pdf", {})])
    question = [("user", "What is two plus two?")]

    fake.enqueue(
        Reply("Four.", prompt_tokens=1000, completion_tokens=500, cached_tokens=400),
        Reply("Five.", prompt_tokens=200, completion_tokens=20),
        Reply("Streamed answer here.", prompt_tokens=30, completion_tokens=4, chunk_delay=0.01),
        Reply("A mystery.", prompt_tokens=10, completion_tokens=3),
        Status(500),
        Status(500),
    )
    gw.invoke(question, "openai/gpt-4o-mini", CallContext(feature="chat", user="ada@example.com"))
    gw.invoke([("user", "And three?")], "openai/gpt-4o-mini", CallContext(feature="chat", user="bob@example.com"))
    list(gw.stream([("user", "Stream it")], "openai/gpt-4o-mini", CallContext(feature="compare", user="ada")))
    gw.invoke(question, "acme/mystery", CallContext(feature="compare", user="ada@example.com"))
    for _ in range(2):  # two failures in a row open acme's breaker
        with pytest.raises(GatewayError):
            gw.invoke(question, "acme/mystery", CallContext(feature="judge"))
    hit = gw.invoke(question, "openai/gpt-4o-mini", CallContext(feature="chat", user="ada@example.com"))
    assert hit.status == "cached"
    with pytest.raises(GatewayError):
        gw.invoke(question, "openai/gpt-4o-mini", CallContext(feature="chat", user="broke@example.com"))

    prometheus_server.wait_for_scrape(port)
    log = call_log_figures(engine)
    assert {k[2] for k in log["requests"]} == {"ok", "cached", "error", "blocked"}
    labels = ("feature", "model", "status")
    by = "sum by (feature, model, status)"
    assert prometheus_server.figures(f"{by} (workbench_llm_requests_total)", *labels) == log["requests"]
    tokens = prometheus_server.figures(f"{by[:-1]}, type) (workbench_llm_tokens_total)", *labels, "type")
    assert tokens == log["tokens"]
    cost = prometheus_server.figures(f"{by} (workbench_llm_cost_usd_total)", *labels)
    assert cost.keys() == log["cost"].keys()
    assert cost == pytest.approx(log["cost"], rel=1e-9)
    latency = prometheus_server.figures(f"{by} (workbench_llm_request_duration_seconds_count)", *labels)
    assert latency == log["requests"]
    assert prometheus_server.figures(f"{by} (workbench_llm_time_to_first_token_seconds_count)", *labels) == {
        ("compare", "openai/gpt-4o-mini", "ok"): 1.0
    }
    saved = prometheus_server.figures("sum by (feature, model) (workbench_llm_cache_saved_usd_total)", *labels[:2])
    assert saved == pytest.approx(log["saved"], rel=1e-9) and saved
    assert prometheus_server.figures("workbench_llm_cache_hits_total", *labels[:2]) == {
        ("chat", "openai/gpt-4o-mini"): 1.0
    }
    assert prometheus_server.figures("workbench_llm_unpriced_requests_total", *labels) == {
        ("compare", "acme/mystery", "ok"): 1.0
    }

    breaker = prometheus_server.figures("workbench_circuit_breaker_state == 1", "provider", "state")
    assert breaker == {("acme", "open"): 1.0, ("openai", "closed"): 1.0, ("offline", "closed"): 1.0}
    used = prometheus_server.figures("workbench_budget_used_ratio", "budget", "scope")
    table = {row["subject"]: row["used"] for row in budget_table(engine)}
    assert used[("feature:chat", "feature")] == pytest.approx(table["chat"], rel=1e-6) and table["chat"] > 0
    [user_budget] = [k for k in used if k[1] == "user"]
    assert user_budget[0].startswith("user#") and used[user_budget] == 1.0  # named by number, never the user
    assert prometheus_server.figures("workbench_queue_depth", "kind") == {("index",): 2.0}
    assert prometheus_server.figures("workbench_job_items", "kind", "state") == {("index", "queued"): 2.0}
    assert prometheus_server.figures("workbench_review_backlog", "pipeline") == {("triage",): 2.0}
    assert endpoint.port == port
    check_deploy_queries(prometheus_server)


DEPLOY = ROOT / "deploy"
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "1h", "$feature": ".*", "$model": ".*"}


def deploy_queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every Grafana panel target and every alert rule in deploy/."""
    import yaml

    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    out = [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p["targets"]]
    rules = yaml.safe_load((DEPLOY / "alerts.yml").read_text())
    out += [(r["alert"], r["expr"]) for g in rules["groups"] for r in g["rules"]]
    return out


def check_deploy_queries(prometheus: PrometheusServer) -> None:
    """Each dashboard panel's and alert's query runs on Prometheus and names only metrics the app has served."""
    with urllib.request.urlopen(f"{prometheus.url}/api/v1/label/__name__/values", timeout=10) as r:
        served = set(json.load(r)["data"])
    queries = deploy_queries()
    assert len(queries) >= 20
    for where, expr in queries:
        for name in set(re.findall(r"\b(workbench_[a-z_]+|up)\b", expr)):
            assert name in served, f"{where}: {name} is not a metric the app serves"
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        prometheus.query(expr)  # raises on a query Prometheus cannot parse or run


def test_label_values_stay_bounded_whatever_users_sessions_prompts_and_models_arrive(fresh_engine, fake):
    registry = CollectorRegistry()
    gw = make_gateway(fresh_engine, fake, registry)
    fake.default_reply = Reply("Fine.", prompt_tokens=5, completion_tokens=2)
    for i in range(60):  # distinct users, sessions and prompts: none may become a label or a series of its own
        ctx = CallContext(feature="chat", user=f"user{i}@example.com", session_id=f"sess-{i}", deferred_log=True)
        gw.invoke([("user", f"Private question {i} about salary")], "openai/gpt-4o-mini", ctx)
    for i in range(80):  # unknown providers, models and features (a caller's typo, a hostile form): capped
        with pytest.raises(GatewayError):
            gw.invoke([("user", "x")], f"prov{i}/model-{i}", CallContext(feature=f"feature-{i}"))
    gw.flush_log()
    exposition = generate_latest(registry).decode()
    for secret in ("user1@example.com", "sess-1", "Private question", "salary"):
        assert secret not in exposition
    values: dict[str, set[str]] = {"provider": set(), "model": set(), "feature": set()}
    series = 0
    for metric in registry.collect():
        for sample in metric.samples:
            series += 1
            for name, seen in values.items():
                seen.add(sample.labels.get(name, OTHER))
    configured = {"openai/gpt-4o-mini", "acme/mystery", "offline/extractive"}
    assert OTHER in values["model"] and OTHER in values["provider"] and OTHER in values["feature"]
    assert len(values["model"] - configured) <= 20 + 1  # spare values plus "other"
    assert len(values["provider"] - {"openai", "acme", "offline"}) <= 20 + 1
    assert len(values["feature"]) <= 40 + 1
    with Session(fresh_engine) as s:
        calls = s.scalar(select(func.count()).select_from(LlmCall))
    assert calls == 140
    assert series <= 1000, series  # 140 calls, 80 of them with new names: the series stop growing at the caps


def test_a_setting_that_is_not_a_port_stops_the_app():
    with pytest.raises(ConfigError, match="WORKBENCH_METRICS_PORT"):
        load_settings(env={"WORKBENCH_METRICS_PORT": "metrics"})
    with pytest.raises(ConfigError, match="1 to 65535"):
        load_settings(env={"WORKBENCH_METRICS_PORT": "70000"})
    assert load_settings(env={}).metrics_port is None
    assert load_settings(env={"WORKBENCH_METRICS_PORT": "9464"}).metrics_port == 9464


def test_a_port_another_process_holds_is_refused_with_what_to_do(fresh_engine):
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(MetricsPortInUse, match="its own port"):
            serve_metrics(port, Sources(fresh_engine), "127.0.0.1", CollectorRegistry())


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_each_process_serves_its_own_port_and_prometheus_sums_them(tmp_path, server, prometheus_server):
    server.reset()
    server.default_reply = Reply("Fine.", prompt_tokens=7, completion_tokens=3)
    open_engine(f"sqlite:///{tmp_path / 'workbench.db'}").dispose()  # migrated once, before the processes share it
    base = {
        **os.environ,
        "WORKBENCH_DATA_DIR": str(tmp_path),
        "WORKBENCH_PROVIDERS": providers(server),
        "WORKBENCH_METRICS_ADDR": "127.0.0.1",
        "WORKBENCH_PRELOAD_EMBEDDINGS": "0",
    }
    ports = [free_port(), free_port(), free_port()]
    procs = [
        _start(
            ["tests/metrics_process.py", "5", "chat", "openai/gpt-4o-mini"],
            {**base, "WORKBENCH_METRICS_PORT": str(ports[0])},
        ),
        _start(
            ["tests/metrics_process.py", "3", "compare", "acme/mystery"],
            {**base, "WORKBENCH_METRICS_PORT": str(ports[1])},
        ),
        _start(["-m", "lib.cli", "worker", "--threads", "1", "--metrics-port", str(ports[2])], base),
    ]
    try:
        for proc in procs[:2]:
            assert proc.stdout.readline().strip() == "done"
        clash = _start(
            ["tests/metrics_process.py", "1", "chat", "openai/gpt-4o-mini"],
            {**base, "WORKBENCH_METRICS_PORT": str(ports[0])},
        )
        out, _ = clash.communicate(timeout=120)
        assert clash.returncode == 2 and "its own port" in out
        prometheus_server.scrape(*ports)
        prometheus_server.wait_for_scrape(*ports, timeout=120)
        with urllib.request.urlopen(f"http://127.0.0.1:{ports[2]}/metrics", timeout=10) as r:
            assert "workbench_circuit_breaker_state" in r.read().decode()  # the worker's own port
        engine = make_engine(f"sqlite:///{tmp_path / 'workbench.db'}")
        log = call_log_figures(engine)
        engine.dispose()
        assert log["requests"] == {("chat", "openai/gpt-4o-mini", "ok"): 5, ("compare", "acme/mystery", "ok"): 3}
        by = "sum by (feature, model, status)"
        assert (
            prometheus_server.figures(f"{by} (workbench_llm_requests_total)", "feature", "model", "status")
            == log["requests"]
        )
        per_process = prometheus_server.figures("sum by (instance) (workbench_llm_requests_total)", "instance")
        assert per_process == {(f"127.0.0.1:{ports[0]}",): 5.0, (f"127.0.0.1:{ports[1]}",): 3.0}
        targets = "|".join(f"127.0.0.1:{p}" for p in ports)  # earlier tests' targets may linger as down
        up = prometheus_server.figures(f'up{{job="workbench", instance=~"{targets}"}}', "instance")
        assert up == {(f"127.0.0.1:{p}",): 1.0 for p in ports}
    finally:
        prometheus_server.scrape()
        for proc in procs:
            if proc.stdin:
                proc.stdin.close()
            proc.terminate()
            proc.wait(timeout=60)
            proc.stdout.close()


def test_the_review_backlog_counts_rows_waiting_at_a_gate_per_pipeline(tmp_path):
    from sqlalchemy import MetaData, Table, insert, inspect

    engine = open_engine(f"sqlite:///{tmp_path / 'wb.db'}")
    if not inspect(engine).has_table("pipeline_reviews"):
        pytest.skip("the pipelines' review table is not migrated in this tree yet")
    meta = MetaData()
    runs, reviews = (Table(name, meta, autoload_with=engine) for name in ("pipeline_runs", "pipeline_reviews"))
    now = datetime.now(UTC)
    with engine.begin() as conn:
        run_id = conn.execute(
            insert(runs).values(
                pipeline_name="triage",
                pipeline_version=1,
                definition={},
                status="waiting_review",
                total_rows=3,
                spent_usd=0.0,
                reserved_usd=0.0,
                source="rows.csv",
                created_at=now,
            )
        ).inserted_primary_key[0]
        for position, status, waited in ((0, "waiting", 120), (1, "waiting", 30), (2, "approved", 500)):
            conn.execute(
                insert(reviews).values(
                    run_id=run_id,
                    position=position,
                    step="check",
                    pipeline_name="triage",
                    status=status,
                    created_at=now - timedelta(seconds=waited),
                )
            )
    registry = CollectorRegistry()
    registry.register(WorkbenchCollector(Sources(engine)))
    assert registry.get_sample_value("workbench_review_backlog", {"pipeline": "triage"}) == 2
    assert 120 <= registry.get_sample_value("workbench_review_oldest_seconds", {"pipeline": "triage"}) < 400
    assert registry.get_sample_value("workbench_metrics_source_up", {"source": "review"}) == 1
    engine.dispose()


def test_a_review_backlog_of_many_pipelines_names_the_largest_and_sums_the_rest(fresh_engine):
    backlog = {f"pipeline-{i}": (i + 1, float(i)) for i in range(MAX_PIPELINES + 10)}
    registry = CollectorRegistry()
    registry.register(WorkbenchCollector(Sources(fresh_engine, review_backlog=lambda engine: backlog)))
    named = [s for m in registry.collect() if m.name == "workbench_review_backlog" for s in m.samples]
    assert len(named) == MAX_PIPELINES + 1
    assert registry.get_sample_value("workbench_review_backlog", {"pipeline": "other"}) == sum(range(1, 11))
    assert registry.get_sample_value("workbench_review_backlog", {"pipeline": f"pipeline-{MAX_PIPELINES + 9}"}) == 60


def test_the_deploy_examples_pass_promtool(tmp_path):
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    if not os.path.exists(promtool):
        reason = "promtool is not installed (make test installs Debian's prometheus package)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    for args in (
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ):
        done = subprocess.run([promtool, *args], cwd=DEPLOY, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"promtool {' '.join(args)}: {done.stdout}{done.stderr}"
    names = {name for name, _ in deploy_queries()}
    assert {"WorkbenchHighErrorRate", "WorkbenchSlowModelCalls", "WorkbenchBudgetAt80Percent"} <= names


def test_the_app_serves_its_metrics_port_from_its_first_run(monkeypatch):
    from streamlit.testing.v1 import AppTest

    port = free_port()
    monkeypatch.setenv("WORKBENCH_METRICS_PORT", str(port))
    monkeypatch.setenv("WORKBENCH_METRICS_ADDR", "127.0.0.1")
    try:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
        assert not at.exception and not at.error
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            body = r.read().decode()
        assert 'workbench_metrics_source_up{source="jobs"} 1.0' in body
        assert 'workbench_metrics_source_up{source="budgets"} 1.0' in body
    finally:
        stop_metrics(port)


def test_a_taken_metrics_port_stops_the_app_with_what_to_do(monkeypatch):
    import socket

    from streamlit.testing.v1 import AppTest

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        monkeypatch.setenv("WORKBENCH_METRICS_PORT", str(held.getsockname()[1]))
        monkeypatch.setenv("WORKBENCH_METRICS_ADDR", "127.0.0.1")
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert at.error and "misconfigured" in at.error[0].value and "its own port" in at.error[0].value
    assert not at.exception
