"""Span helpers for every layer: one tracer, the attribute names, and a `span(name, **attrs)` context manager.

They use the OpenTelemetry API only. Until lib.telemetry.tracing installs an SDK provider (when an OTLP endpoint
is configured) every span is the API's non-recording no-op, so code can open spans unconditionally.
No prompt, answer or document text goes into an attribute from here: the gateway alone adds text, redacted,
when WORKBENCH_TRACE_CONTENT allows it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = [
    "NO_SPAN",
    "Span",
    "SpanKind",
    "activate",
    "current_trace_id",
    "iterate_in",
    "mark_error",
    "span",
    "start_span",
    "trace_id_of",
    "traceparent",
]

Item = TypeVar("Item")
TRACER_NAME = "workbench"

# OpenTelemetry GenAI semantic conventions (gen_ai.*) and the standard error attribute
GEN_AI_OPERATION = "gen_ai.operation.name"
GEN_AI_SYSTEM = "gen_ai.system"  # older name of gen_ai.provider.name; both are set, for older back ends
GEN_AI_PROVIDER = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_CACHED_TOKENS = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TEMPERATURE = "gen_ai.request.temperature"
GEN_AI_CONVERSATION = "gen_ai.conversation.id"
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"  # only with WORKBENCH_TRACE_CONTENT=redacted, and redacted
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"
GEN_AI_TOOL_NAME = "gen_ai.tool.name"
GEN_AI_TOOL_CALL_ID = "gen_ai.tool.call.id"
ERROR_TYPE = "error.type"
# the workbench's own
COST = "workbench.cost_usd"
SAVED = "workbench.saved_usd"
FEATURE = "workbench.feature"
TEMPLATE_NAME = "workbench.template.name"
TEMPLATE_VERSION = "workbench.template.version"
EXPERIMENT = "workbench.experiment.id"
VARIANT = "workbench.variant"
STATUS = "workbench.status"
REQUEST_ID = "workbench.request_id"
ATTEMPT = "workbench.attempt"
RETRY_DELAY = "workbench.retry.delay_s"
FALLBACK = "workbench.fallback"
RUN_ID = "workbench.run_id"
STEP = "workbench.step"

_PROPAGATOR = TraceContextTextMapPropagator()
_INVALID = trace.INVALID_SPAN
NO_SPAN: Span = _INVALID  # a placeholder span that records nothing


_tracer: trace.Tracer | None = None


def tracer() -> trace.Tracer:
    """The workbench's tracer, made once: a proxy that follows the provider installed later (or stays a no-op)."""
    global _tracer
    if _tracer is None:  # a race makes two equal proxies, harmlessly
        _tracer = trace.get_tracer(TRACER_NAME)
    return _tracer


_enabled = False  # set by lib.telemetry.tracing once it has installed a tracer provider


def enable_spans(on: bool = True) -> None:
    """Spans from now on go to the installed tracer provider (called by whoever installs one); `on=False` turns
    them back into no-ops (bench/gateway.py compares both in one process; a provider can be installed only once)."""
    global _enabled
    _enabled = on


def enabled() -> bool:
    """True once spans go to an installed tracer provider."""
    return _enabled


def tracing_off() -> bool:
    """True until a tracer provider is installed: every helper here then returns at once, so a process without an
    OTLP endpoint pays next to nothing (bench/gateway.py --tracing measures it)."""
    return not _enabled


def _attributes(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes without None values; bare keyword names get the `workbench.` prefix."""
    return {(k if "." in k else f"workbench.{k}"): v for k, v in attrs.items() if v is not None}


@contextmanager
def span(name: str, attributes: Mapping[str, Any] | None = None, **attrs: Any) -> Iterator[Span]:
    """A current span around a block: `with span("pipeline.row", run_id=..., step=...)` (keywords become
    `workbench.<name>`; dotted names go in `attributes`). An exception leaving the block marks the span as an
    error with its type. Not for generators: a span made current must not stay current across a `yield`."""
    if tracing_off():
        yield _INVALID
        return
    merged = _attributes({**(attributes or {}), **attrs})
    with tracer().start_as_current_span(
        name, attributes=merged, record_exception=False, set_status_on_exception=False
    ) as current:
        try:
            yield current
        except BaseException as exc:
            mark_error(current, type(exc).__name__)
            raise


def start_span(
    name: str,
    parent: Span | None = None,
    attributes: Mapping[str, Any] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
) -> Span:
    """A span that is not made current (end it yourself): for work that yields, e.g. a streamed call.

    `parent` None means the current span (if any) is the parent."""
    if tracing_off():
        return _INVALID
    ctx = trace.set_span_in_context(parent) if parent is not None else None
    return tracer().start_span(name, context=ctx, kind=kind, attributes=_attributes(attributes or {}))


def activate(target: Span) -> AbstractContextManager[Span]:
    """Make `target` the current span around a block that does not yield; it is not ended when the block ends."""
    if target is _INVALID:
        return nullcontext(target)
    return trace.use_span(target, end_on_exit=False, record_exception=False, set_status_on_exception=False)


def iterate_in(target: Span, items: Iterable[Item]) -> Iterator[Item]:
    """Iterate `items` with `target` current while each item is made, not while the caller holds it: how a
    generator (an agent's event stream) runs its work under a span without leaving it current across a `yield`."""
    it = iter(items)
    while True:
        with activate(target):
            try:
                item = next(it)
            except StopIteration:
                return
        yield item


def mark_error(target: Span, error_type: str, description: str | None = None) -> None:
    """Set `error.type` and the error status (the description must hold no user text)."""
    if target.is_recording():
        target.set_attribute(ERROR_TYPE, error_type)
        target.set_status(Status(StatusCode.ERROR, description))


def trace_id_of(target: Span) -> str | None:
    """The 32-hex-digit trace id of a span, or None for a no-op span (tracing off) or one sampled out (its trace is
    never exported, so a call-log row naming it would link to nothing)."""
    sc = target.get_span_context()
    return format(sc.trace_id, "032x") if sc.is_valid and sc.trace_flags.sampled else None


def current_span() -> Span:
    """The current span (the no-op one when there is none)."""
    return trace.get_current_span()


def current_trace_id() -> str | None:
    """The trace id of the current span, or None when there is none (tracing off)."""
    return trace_id_of(trace.get_current_span())


def traceparent(target: Span) -> dict[str, str]:
    """W3C trace-context headers (`traceparent`, `tracestate`) naming `target` as the parent; {} when tracing is off."""
    if not target.get_span_context().is_valid:
        return {}
    headers: dict[str, str] = {}
    _PROPAGATOR.inject(headers, context=trace.set_span_in_context(target, otel_context.Context()))
    return headers


def current_context() -> otel_context.Context:
    """The current context, to hand to work that runs later (a stream that starts when first iterated)."""
    return otel_context.get_current()


def parent_in(ctx: otel_context.Context) -> Span | None:
    """The span current in `ctx`, or None when there is none."""
    found = trace.get_current_span(ctx)
    return found if found is not _INVALID else None
