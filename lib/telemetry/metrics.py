"""Prometheus metrics on a side port: the gateway's call counters plus gauges read at scrape time.

Streamlit cannot add routes, so each process (an app process, each `lib.cli worker`) serves its own registry with
prometheus_client's `start_http_server` on WORKBENCH_METRICS_PORT: one port per process, each a Prometheus target,
summed in PromQL. Not the client's multi-process mode: workers run on other machines than the app in server mode
(a shared directory of metric files cannot span them), and the processes are started independently, with no
parent to wipe that directory at start or to mark dead workers' files. The gauges read from the database
(budgets, job items, review backlog) are the same in every process; query them with `max by (...)`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import DateTime, Engine, String, and_, column, func, inspect, select, table
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from lib.core.settings import ConfigError
from lib.core.tables import Budget, BudgetCounter, JobItem, utcnow
from lib.gateway.cost_control import budget_used, period_of

if TYPE_CHECKING:
    from lib.gateway.client import Gateway

log = logging.getLogger(__name__)
BREAKER_STATES = ("closed", "half-open", "open")
MAX_BUDGETS = 200  # budgets exported per scrape (the most used first); each is a handful of series
MAX_PIPELINES = 50  # pipelines named in the review backlog; the rest are summed as "other"
# The review queue's count: (engine) -> {pipeline name: (rows waiting for a reviewer, seconds the oldest has waited)}.
ReviewBacklog = Callable[[Engine], Mapping[str, tuple[int, float]]]
REVIEWS = table(
    "pipeline_reviews",
    column("pipeline_name", String),
    column("status", String),
    column("created_at", DateTime(timezone=True)),
)


class MetricsPortInUse(ConfigError):
    """The metrics port is taken (another process, or another workbench process on this machine)."""


@dataclass
class Sources:
    """What the gauges read at scrape time; swapped when the app rebuilds its services for new settings."""

    engine: Engine
    gateway: Gateway | None = None
    review_backlog: ReviewBacklog | None = None  # None: the pipelines' review table (waiting_reviews)


class WorkbenchCollector(Collector):
    """Breaker state per provider, budgets, job items and the review backlog, read when Prometheus scrapes."""

    def __init__(self, sources: Sources):
        self.sources = sources

    def collect(self) -> Iterable[Metric]:
        """The gauges, from a few small queries; a source that fails reports workbench_metrics_source_up 0."""
        src = self.sources
        up = GaugeMetricFamily(
            "workbench_metrics_source_up", "1 when the gauges of this source could be read.", labels=["source"]
        )
        if src.gateway is not None:
            yield breaker_gauge(src.gateway)
        readers: list[tuple[str, Callable[[Engine], list[Metric]]]] = [
            ("budgets", budget_gauges),
            ("jobs", job_gauges),
            ("review", lambda engine: review_gauges(engine, src.review_backlog or waiting_reviews)),
        ]
        for name, read in readers:
            try:
                metrics = read(src.engine)
            except SQLAlchemyError:
                log.warning("metrics: could not read %s", name, exc_info=True)
                up.add_metric([name], 0)
                continue
            up.add_metric([name], 1)
            yield from metrics
        yield up


def breaker_gauge(gateway: Gateway) -> Metric:
    """workbench_circuit_breaker_state{provider, state}: 1 for each configured provider's current state."""
    g = GaugeMetricFamily(
        "workbench_circuit_breaker_state",
        "The circuit breaker of each provider in this process: 1 for its current state (closed, half-open, open).",
        labels=["provider", "state"],
    )
    for p in gateway.settings.providers:
        now = gateway.breaker.state(p.name)
        for state in BREAKER_STATES:
            g.add_metric([p.name, state], 1.0 if state == now else 0.0)
    return g


def budget_label(scope: str, subject: str, budget_id: int) -> str:
    """A budget's label value: never a user's id (a user budget is named by its number)."""
    if scope == "global":
        return "global"
    if scope == "feature":
        return f"feature:{subject[:60]}"
    return f"{scope}#{budget_id}"


def budget_gauges(engine: Engine) -> list[Metric]:
    """This month's spend against each budget, from the budget counters (one query; what enforcement reads)."""
    period = period_of(utcnow())
    q = (
        select(Budget, BudgetCounter)
        .outerjoin(
            BudgetCounter,
            and_(
                BudgetCounter.scope == Budget.scope,
                BudgetCounter.subject == Budget.subject,
                BudgetCounter.period == period,
            ),
        )
        .order_by(Budget.id)
    )
    with Session(engine) as s:
        rows: list[tuple[Budget, BudgetCounter | None]] = [(r[0], r[1]) for r in s.execute(q)]
    labels = ["budget", "scope"]
    used = GaugeMetricFamily(
        "workbench_budget_used_ratio",
        "Share of a monthly budget spent, by its tighter limit (1 refuses calls).",
        labels=labels,
    )
    spent = GaugeMetricFamily("workbench_budget_spent_usd", "Dollars spent this month against a budget.", labels=labels)
    limit = GaugeMetricFamily("workbench_budget_limit_usd", "A budget's monthly dollar limit.", labels=labels)
    tokens = GaugeMetricFamily(
        "workbench_budget_spent_tokens", "Tokens used this month against a budget.", labels=labels
    )
    soft = GaugeMetricFamily("workbench_budget_soft_ratio", "Share at which a budget warns or degrades.", labels=labels)
    figures = []
    for b, c in rows:
        usd, n = (c.spent_usd, c.spent_tokens) if c is not None else (0.0, 0)
        figures.append((budget_used(usd, n, b.limit_usd, b.limit_tokens), b, usd, n))
    figures.sort(key=lambda f: -f[0])
    for share, b, usd, n in figures[:MAX_BUDGETS]:
        key = [budget_label(b.scope, b.subject, b.id), b.scope]
        used.add_metric(key, share)
        spent.add_metric(key, usd)
        tokens.add_metric(key, n)
        soft.add_metric(key, b.soft_ratio)
        if b.limit_usd is not None:
            limit.add_metric(key, b.limit_usd)
    return [used, spent, limit, tokens, soft]


def job_gauges(engine: Engine) -> list[Metric]:
    """Job items by kind and state, the queue's depth and the age of its oldest queued item (two queries)."""
    with engine.connect() as conn:
        counts = conn.execute(
            select(JobItem.kind, JobItem.status, func.count()).group_by(JobItem.kind, JobItem.status)
        ).all()
        oldest = conn.execute(
            select(JobItem.kind, func.min(JobItem.enqueued_at)).where(JobItem.status == "queued").group_by(JobItem.kind)
        ).all()
    items = GaugeMetricFamily(
        "workbench_job_items", "Job items (indexed files, batch-run cases) by kind and state.", labels=["kind", "state"]
    )
    depth = GaugeMetricFamily("workbench_queue_depth", "Job items waiting for a worker.", labels=["kind"])
    age = GaugeMetricFamily(
        "workbench_queue_oldest_seconds", "How long the oldest waiting job item has waited.", labels=["kind"]
    )
    queued: dict[str, int] = {}
    for kind, status, n in counts:
        items.add_metric([str(kind)[:32], str(status)[:16]], n)
        if status == "queued":
            queued[str(kind)[:32]] = int(n)
    for kind, n in queued.items():
        depth.add_metric([kind], n)
    now = utcnow()
    for kind, at in oldest:
        if at is not None:
            age.add_metric([str(kind)[:32]], _age_s(now, at))
    return [items, depth, age]


def waiting_reviews(engine: Engine) -> dict[str, tuple[int, float]]:
    """Pipeline rows waiting at a review gate, by pipeline: how many and how long the oldest has waited.

    Read through a bare table clause (lib.pipelines sits beside lib.telemetry, not below it); nothing before the
    pipelines' migration has created the table.
    """
    q = (
        select(REVIEWS.c.pipeline_name, func.count(), func.min(REVIEWS.c.created_at))
        .where(REVIEWS.c.status == "waiting")
        .group_by(REVIEWS.c.pipeline_name)
    )
    try:
        with engine.connect() as conn:
            rows = conn.execute(q).all()
    except SQLAlchemyError:
        if not inspect(engine).has_table("pipeline_reviews"):
            return {}
        raise
    now = utcnow()
    out = {}
    for name, n, oldest in rows:
        out[str(name)] = (int(n), _age_s(now, oldest))
    return out


def _age_s(now: datetime, at: datetime | None) -> float:
    if at is None:
        return 0.0
    at = at if at.tzinfo else at.replace(tzinfo=now.tzinfo)  # SQLite hands back naive UTC
    return max((now - at).total_seconds(), 0.0)


def review_gauges(engine: Engine, backlog: ReviewBacklog) -> list[Metric]:
    """workbench_review_backlog{pipeline} and the oldest wait; past MAX_PIPELINES pipelines, the rest are "other"."""
    waiting = GaugeMetricFamily(
        "workbench_review_backlog", "Pipeline rows waiting for a reviewer at a gate.", labels=["pipeline"]
    )
    oldest = GaugeMetricFamily(
        "workbench_review_oldest_seconds",
        "How long the oldest row waiting for a reviewer has waited.",
        labels=["pipeline"],
    )
    by_size = sorted(backlog(engine).items(), key=lambda kv: -kv[1][0])
    named, rest = by_size[:MAX_PIPELINES], by_size[MAX_PIPELINES:]
    if rest:
        named.append(("other", (sum(n for _, (n, _) in rest), max(age for _, (_, age) in rest))))
    for name, (n, age) in named:
        waiting.add_metric([name[:80]], n)
        oldest.add_metric([name[:80]], age)
    return [waiting, oldest]


@dataclass
class MetricsEndpoint:
    """A running metrics server: its port, and the collector whose sources can be swapped."""

    port: int
    collector: WorkbenchCollector
    registry: CollectorRegistry
    server: Any
    thread: threading.Thread

    def stop(self) -> None:
        """Close the server and drop the gauges from the registry (a process's server otherwise lives as long as
        the process)."""
        self.server.shutdown()
        self.server.server_close()
        self.registry.unregister(self.collector)


_endpoints: dict[int, MetricsEndpoint] = {}
_endpoints_lock = threading.Lock()


def serve_metrics(
    port: int,
    sources: Sources,
    addr: str = "0.0.0.0",
    registry: CollectorRegistry | None = None,
) -> MetricsEndpoint:
    """Serve `registry` (the process's by default) with the workbench's gauges on `port`; once per port per process.

    A second call for the same port (new settings in the app) only points the gauges at the new sources.
    MetricsPortInUse when another process holds the port.
    """
    with _endpoints_lock:
        running = _endpoints.get(port)
        if running is not None:
            running.collector.sources = sources
            return running
        reg = REGISTRY if registry is None else registry
        collector = WorkbenchCollector(sources)
        try:
            server, thread = start_http_server(port, addr=addr, registry=reg)
        except OSError as exc:
            raise MetricsPortInUse(
                f"WORKBENCH_METRICS_PORT={port}: cannot listen on {addr}:{port} ({exc.strerror or exc}). Each "
                "process needs its own port: give each app and worker process on this machine a different "
                "WORKBENCH_METRICS_PORT (or `python -m lib.cli worker --metrics-port N`)."
            ) from exc
        reg.register(collector)
        endpoint = _endpoints[port] = MetricsEndpoint(port, collector, reg, server, thread)
        log.info("metrics on %s:%s/metrics", addr, port)
        return endpoint


def stop_metrics(port: int) -> None:
    """Stop this process's metrics server on `port` and drop its gauges from its registry (tests)."""
    with _endpoints_lock:
        endpoint = _endpoints.pop(port, None)
    if endpoint is not None:
        endpoint.stop()
