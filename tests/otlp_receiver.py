"""A real OTLP/HTTP trace receiver for the tests: POST /v1/traces, protobuf decoded with
opentelemetry-proto, spans kept as plain dicts. It can answer slowly or not at all.
bench/feed.py --observability uses it with decode=False: it counts and discards."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


@dataclass
class Span:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    attributes: dict[str, Any]
    service: str
    status_code: int = 0  # OTLP's: 0 unset, 1 ok, 2 error


def _value(any_value: Any) -> Any:
    which = any_value.WhichOneof("value")
    return getattr(any_value, which) if which else None


class OtlpReceiver:
    def __init__(self, delay: float = 0.0, *, decode: bool = True) -> None:
        self.delay = delay  # seconds to wait before answering each export
        self.decode = decode  # False: count the exports and their bytes, keep nothing
        self.spans: list[Span] = []
        self.headers: list[dict[str, str]] = []
        self.bodies: list[bytes] = []  # each export as received: events and status too
        self.exports = 0
        self.bytes = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                time.sleep(receiver.delay)
                receiver._take(self.path, dict(self.headers), body)
                answer = ExportTraceServiceResponse().SerializeToString()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/x-protobuf")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the exporter gave up waiting (the slow receiver's tests)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _take(self, path: str, headers: dict[str, str], body: bytes) -> None:
        assert path == "/v1/traces", path
        if not self.decode:  # a benchmark's sink: what it costs to take them, no more
            with self._lock:
                self.exports += 1
                self.bytes += len(body)
            return
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        spans = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.append(
                        Span(
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            kind=span.kind,
                            attributes={a.key: _value(a.value) for a in span.attributes},
                            service=resource.get("service.name", ""),
                            status_code=span.status.code,
                        )
                    )
        with self._lock:
            self.exports += 1
            self.bytes += len(body)
            self.headers.append({k.lower(): v for k, v in headers.items()})
            self.bodies.append(body)
            self.spans.extend(spans)

    def wait_for(self, predicate, timeout: float = 15.0) -> list[Span]:
        """The spans received, once `predicate(spans)` holds (or the timeout passes)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                spans = list(self.spans)
            if predicate(spans) or time.monotonic() > deadline:
                return spans
            time.sleep(0.1)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> OtlpReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
