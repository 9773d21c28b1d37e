"""OpenTelemetry trace export: an SDK tracer provider with an OTLP exporter (HTTP or gRPC), once per process.

Configured by the standard OTEL_* variables (read and checked in lib.core.settings: endpoint, protocol, headers,
service name, resource attributes, sampler). With no endpoint set, nothing is installed: the spans the code opens
through lib.core.spans stay the OpenTelemetry API's no-ops, and nothing is exported (bench/gateway.py measures
both). Spans are exported in batches from a background thread, so a call never waits on the collector.
"""

from __future__ import annotations

import logging
import threading

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    ParentBasedTraceIdRatio,
    Sampler,
    TraceIdRatioBased,
)

from lib.core import spans
from lib.core.settings import Settings, TraceConfig

log = logging.getLogger(__name__)
_lock = threading.Lock()
_installed: tuple[TraceConfig, TracerProvider] | None = None


def make_sampler(config: TraceConfig) -> Sampler:
    """The sampler OTEL_TRACES_SAMPLER (and its ratio) names."""
    ratio = 1.0 if config.sampler_arg is None else config.sampler_arg
    return {
        "always_on": lambda: ALWAYS_ON,
        "always_off": lambda: ALWAYS_OFF,
        "traceidratio": lambda: TraceIdRatioBased(ratio),
        "parentbased_always_on": lambda: ParentBased(ALWAYS_ON),
        "parentbased_always_off": lambda: ParentBased(ALWAYS_OFF),
        "parentbased_traceidratio": lambda: ParentBasedTraceIdRatio(ratio),
    }[config.sampler]()


def make_exporter(config: TraceConfig) -> SpanExporter:
    """An OTLP span exporter over HTTP (protobuf) or gRPC, to the configured endpoint with its headers."""
    if config.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter(endpoint=config.endpoint, headers=dict(config.headers) or None)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    return HttpExporter(endpoint=config.endpoint, headers=dict(config.headers) or None)


def make_provider(config: TraceConfig, exporter: SpanExporter | None = None) -> TracerProvider:
    """A tracer provider for `config` (not installed), batching into `exporter` (default: the configured OTLP one)."""
    resource = Resource.create({**config.resource_attributes, "service.name": config.service_name})
    provider = TracerProvider(resource=resource, sampler=make_sampler(config))  # shut down (flushed) at exit
    provider.add_span_processor(BatchSpanProcessor(exporter or make_exporter(config)))
    return provider


def install_tracing(settings: Settings) -> TracerProvider | None:
    """Install the OTLP tracer provider `settings.tracing` asks for, once per process; None when tracing is off.

    Called again it returns the provider already installed (OpenTelemetry allows one global provider per process);
    a different configuration then takes effect at the next start, which a warning says.
    """
    global _installed
    config = settings.tracing
    if config is None:
        return None
    with _lock:
        if _installed is not None:
            if _installed[0] != config:
                log.warning("The OTEL_* trace settings changed; they take effect when the process restarts.")
            return _installed[1]
        provider = make_provider(config)
        trace.set_tracer_provider(provider)
        spans.enable_spans()
        _installed = (config, provider)
        return provider


def flush_traces(timeout_s: float = 5.0) -> bool:
    """Export every finished span now (tests, CLI commands that end at once); True when nothing is pending."""
    with _lock:
        installed = _installed
    return installed[1].force_flush(int(timeout_s * 1000)) if installed else True
