"""Prometheus instruments for model calls, recorded once per call where its call-log row is written.

Labels are provider, model, feature and status only (never a user, session, prompt or template text), and each
label's values are capped: configured models and providers always count as themselves, anything else gets one of
a few spare slots and then "other", so a stream of odd model names cannot grow the series without end.
lib.telemetry serves the registry on the metrics port; this module only counts.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, disable_created_metrics

if TYPE_CHECKING:
    from lib.gateway.client import CallContext, CallResult

OTHER = "other"
STATUSES = frozenset({"ok", "error", "aborted", "cached", "blocked", "invalid"})  # the call log's statuses
LABELS = ("provider", "model", "feature", "status")
LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0)
TTFT_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)


class BoundedLabel:
    """Label values as given while they are known or few; past `spare` unknown values, every new one is "other"."""

    def __init__(self, spare: int, known: Iterable[str] = (), max_chars: int = 120):
        self.spare, self.max_chars = spare, max_chars
        self._known: set[str] = set(known)
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def allow(self, values: Iterable[str]) -> None:
        """Always keep these values as themselves (the configured ones)."""
        with self._lock:
            self._known.update(values)

    def __call__(self, value: str | None) -> str:
        value = (value or "")[: self.max_chars] or "none"
        if value in self._known or value in self._seen:
            return value
        with self._lock:
            if len(self._seen) < self.spare:
                self._seen.add(value)
                return value
        return OTHER


class GatewayMetrics:
    """Counters and histograms of model calls in `registry` (the process-wide one unless a test gives its own)."""

    def __init__(self, registry: CollectorRegistry | None = None, spare_values: int = 20):
        reg = REGISTRY if registry is None else registry
        disable_created_metrics()  # a `_created` series per label set would double the series for nothing we use
        self.registry = reg
        self.provider, self.model = BoundedLabel(spare_values), BoundedLabel(spare_values)
        self.feature = BoundedLabel(spare_values * 2)
        self.requests = Counter("workbench_llm_requests", "Model calls, one per call-log row.", LABELS, registry=reg)
        self.tokens = Counter(
            "workbench_llm_tokens",
            "Tokens of model calls as logged; type is input, output or cached (cached input tokens).",
            (*LABELS, "type"),
            registry=reg,
        )
        self.cost = Counter(
            "workbench_llm_cost_usd", "Cost of model calls in US dollars (priced calls only).", LABELS, registry=reg
        )
        self.unpriced = Counter(
            "workbench_llm_unpriced_requests",
            "Calls whose model has no price: their cost is unknown, not zero.",
            LABELS,
            registry=reg,
        )
        self.latency = Histogram(
            "workbench_llm_request_duration_seconds",
            "Wall time of a model call, retries and fallback included.",
            LABELS,
            buckets=LATENCY_BUCKETS_S,
            registry=reg,
        )
        self.ttft = Histogram(
            "workbench_llm_time_to_first_token_seconds",
            "Time from the call's start to its first streamed text.",
            LABELS,
            buckets=TTFT_BUCKETS_S,
            registry=reg,
        )
        self.cache_hits = Counter(
            "workbench_llm_cache_hits", "Calls answered from the response cache.", LABELS[:3], registry=reg
        )
        self.cache_saved = Counter(
            "workbench_llm_cache_saved_usd",
            "What cached answers would have cost had they been called again, in US dollars.",
            LABELS[:3],
            registry=reg,
        )

    def allow_models(self, model_names: Iterable[str]) -> GatewayMetrics:
        """Configured `provider/model` names (and their providers) always keep their own label values; returns self."""
        names = list(model_names)
        self.model.allow(names)
        self.provider.allow(n.split("/", 1)[0] for n in names)
        return self

    def record(self, result: CallResult, ctx: CallContext) -> None:
        """Count one finished call, as its call-log row says."""
        status = result.status if result.status in STATUSES else OTHER
        labels = (self.provider(result.provider), self.model(result.model), self.feature(ctx.feature), status)
        self.requests.labels(*labels).inc()
        for kind, n in (
            ("input", result.prompt_tokens),
            ("output", result.completion_tokens),
            ("cached", result.cached_tokens),
        ):
            if n:
                self.tokens.labels(*labels, kind).inc(n)
        if result.cost_usd is not None:
            self.cost.labels(*labels).inc(max(result.cost_usd, 0.0))
        elif result.unpriced:
            self.unpriced.labels(*labels).inc()
        if result.latency_ms is not None:
            self.latency.labels(*labels).observe(result.latency_ms / 1000)
        if result.ttft_ms is not None:
            self.ttft.labels(*labels).observe(result.ttft_ms / 1000)
        if status == "cached":
            self.cache_hits.labels(*labels[:3]).inc()
            if result.saved_usd:
                self.cache_saved.labels(*labels[:3]).inc(result.saved_usd)


_process_metrics: GatewayMetrics | None = None
_process_lock = threading.Lock()


def process_metrics() -> GatewayMetrics:
    """The process's one GatewayMetrics on the default registry (every Gateway of the process shares it)."""
    global _process_metrics
    with _process_lock:
        if _process_metrics is None:
            _process_metrics = GatewayMetrics()
        return _process_metrics
