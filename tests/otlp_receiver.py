"""An OTLP/HTTP trace receiver on 127.0.0.1 for tests and benches: decodes what exporters POST to /v1/traces.

Usage::

    with OtlpReceiver() as receiver:
        # point OTEL_EXPORTER_OTLP_ENDPOINT at receiver.base_url, export some spans, then
        spans = receiver.spans_of(trace_id)

The body is an `ExportTraceServiceRequest` (protobuf, optionally gzip-compressed), decoded with the
`opentelemetry-proto` messages; each span is kept as a `ReceivedSpan` with hex ids and plain attribute values.
"""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


@dataclass
class ReceivedSpan:
    """One exported span as the receiver decoded it."""

    name: str
    trace_id: str
    span_id: str
    parent_id: str | None
    kind: int
    status_code: int  # 0 unset, 1 ok, 2 error
    status_message: str
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    resource: dict[str, Any] = field(default_factory=dict)
    start_ns: int = 0
    end_ns: int = 0


def plain(value: AnyValue) -> Any:
    """An OTLP AnyValue as a Python value (arrays as tuples, key-value lists as dicts)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return tuple(plain(v) for v in value.array_value.values)
    if kind == "kvlist_value":
        return {kv.key: plain(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


def decode(body: bytes) -> list[ReceivedSpan]:
    """The spans of one serialized ExportTraceServiceRequest."""
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    return spans_in(request)


def spans_in(request: ExportTraceServiceRequest) -> list[ReceivedSpan]:
    """The spans of one ExportTraceServiceRequest."""
    out: list[ReceivedSpan] = []
    for resource_spans in request.resource_spans:
        resource = {kv.key: plain(kv.value) for kv in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for s in scope_spans.spans:
                out.append(
                    ReceivedSpan(
                        name=s.name,
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        parent_id=s.parent_span_id.hex() or None,
                        kind=s.kind,
                        status_code=s.status.code,
                        status_message=s.status.message,
                        attributes={kv.key: plain(kv.value) for kv in s.attributes},
                        events=[(e.name, {kv.key: plain(kv.value) for kv in e.attributes}) for e in s.events],
                        resource=resource,
                        start_ns=s.start_time_unix_nano,
                        end_ns=s.end_time_unix_nano,
                    )
                )
    return out


class OtlpReceiver:
    """A threaded HTTP server collecting exported spans; `requests` counts the export requests it answered."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self.headers: list[dict[str, str]] = []  # of each export request (lower-case names)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.base_url = ""

    def __enter__(self) -> OtlpReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                try:
                    received = decode(body)
                except Exception:  # a body that is not an ExportTraceServiceRequest
                    self.send_error(400)
                    return
                with receiver._lock:
                    receiver.spans.extend(received)
                    receiver.requests += 1
                    receiver.headers.append({k.lower(): v for k, v in self.headers.items()})
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True, name="otlp-receiver").start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def spans_of(self, trace_id: str) -> list[ReceivedSpan]:
        """The spans received so far of one trace, in the order they arrived."""
        with self._lock:
            return [s for s in self.spans if s.trace_id == trace_id]

    def clear(self) -> None:
        """Forget the spans received so far."""
        with self._lock:
            self.spans.clear()


class GrpcOtlpReceiver:
    """The same over OTLP/gRPC (the collector's TraceService on 127.0.0.1); `base_url` is http://127.0.0.1:<port>."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.base_url = ""
        self._lock = threading.Lock()
        self._server: Any = None

    def __enter__(self) -> GrpcOtlpReceiver:
        from concurrent import futures

        import grpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

        receiver = self

        class Service(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: ExportTraceServiceRequest, context: Any) -> ExportTraceServiceResponse:
                with receiver._lock:
                    receiver.spans.extend(spans_in(request))
                return ExportTraceServiceResponse()

        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), self._server)
        port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.stop(grace=None)
