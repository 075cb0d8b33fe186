"""The OTLP/HTTP span exporter, with the spans' protobuf written more cheaply.

The SDK's exporter builds a message object per span, per attribute and per value through
the protobuf runtime, and hashes the resource (a json.dumps) for every span: measured in
one process, about 40 µs of CPU a span, in the worker that serves the requests. Here the
same `ExportTraceServiceRequest` is written directly in the protobuf wire format, each
field in field-number order as the protobuf runtime writes it: the bytes are the SDK's
own, which tests/test_otlp_encoding.py checks against `encode_spans` on spans of every
shape. What repeats from span to span is written once and kept: the resource and scope
messages, and each attribute's key and value (a statement's text, "GET", a route).

Everything else (endpoint, headers, timeout, compression, retries, the size limit, the
SDK's exporter metrics) stays the SDK's `OTLPSpanExporter`.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.exporter.otlp.proto.http._common import (
    RequestPayloadTooLargeError,
    _is_request_too_large,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.semconv.attributes.http_attributes import HTTP_RESPONSE_STATUS_CODE
from opentelemetry.trace import SpanKind, StatusCode

log = logging.getLogger("cruddur.telemetry")

_INT64 = range(-(2**63), 2**63)
_CACHED_PAIRS = 4096  # attribute key-value pairs kept encoded (a statement's text is one)
_CACHED_BLOCKS = 1024  # spans' whole sets of attributes kept encoded
# Bytes each cache may hold (encoded; the values its keys hold are about as many again).
# Counted in entries alone, caches of values a client chooses (a 30 kB URL, a user
# agent) held ~300 MB in each worker after 4,000 requests.
_CACHED_BYTES = 1 << 20
_HAS_IS_REMOTE, _IS_REMOTE = 0x100, 0x200  # SpanFlags


def _varint(value: int) -> bytes:
    if 0 <= value < 0x4000:  # up to 16 kB: a span's or a batch part's length, mostly
        return _SMALL[value] if value < 0x80 else bytes(((value & 0x7F) | 0x80, value >> 7))
    value &= 0xFFFFFFFFFFFFFFFF  # int64: a negative value is ten bytes, as protobuf's
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL = [bytes((n,)) for n in range(128)]
_fixed64 = struct.Struct("<Q").pack
_fixed32 = struct.Struct("<I").pack
# By the enum member's id: an enum's hash is a Python call.
_KIND = {id(kind): b"\x30" + _SMALL[kind.value + 1] for kind in SpanKind}  # proto's = SDK's + 1
_STATUS_CODE = {
    id(code): (b"\x18" + _SMALL[code.value] if code.value else b"") for code in StatusCode
}
_EMPTY_STATUS = {code: b"\x7a" + _SMALL[len(code)] + code for code in _STATUS_CODE.values()}
_FLAGS = b"\x85\x01" + _fixed32(_HAS_IS_REMOTE)  # Span.flags, field 16 (fixed32)
_FLAGS_REMOTE = b"\x85\x01" + _fixed32(_HAS_IS_REMOTE | _IS_REMOTE)


def _length(tag: bytes, body: bytes) -> bytes:
    """A length-delimited field: tag, length, body."""
    size = len(body)
    return tag + (_SMALL[size] if size < 128 else _varint(size)) + body


def _any_value(value: Any) -> bytes:
    """AnyValue's fields, as opentelemetry's `_encode_value` fills them."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _length(b"\x0a", value.encode())
    if isinstance(value, int):
        if value not in _INT64:
            raise ValueError(f"Value out of range: {value}")
        return b"\x18" + _varint(value)
    if isinstance(value, float):
        return b"\x21" + struct.pack("<d", value)
    if isinstance(value, bytes):
        return _length(b"\x3a", value)
    if isinstance(value, Sequence):
        return _length(b"\x2a", b"".join(_length(b"\x0a", _any_value(v)) for v in value))
    if isinstance(value, Mapping):
        pairs = b"".join(_length(b"\x0a", _key_value(str(k), v)) for k, v in value.items())
        return _length(b"\x32", pairs)
    raise Exception(f"Invalid type {type(value)} of value {value}")  # the SDK's words


def _key_value(key: str, value: Any) -> bytes:
    return (_length(b"\x0a", key.encode()) if key else b"") + _length(b"\x12", _any_value(value))


class SpanEncoder:
    """`ExportTraceServiceRequest` bytes for a batch of SDK spans."""

    def __init__(self) -> None:
        self._pairs: dict[tuple[str, type, Any], bytes] = {}  # scalar pairs, as fields
        self._names: dict[str, bytes] = {}  # span names, as fields
        self._blocks: dict[tuple[bytes, tuple, tuple], bytes] = {}  # spans' attributes
        # Each cache's bytes: emptied, as at its count's limit, when past _CACHED_BYTES.
        self._sizes = {"pairs": 0, "names": 0, "blocks": 0}
        self._resources: dict[int, tuple[Any, bytes]] = {}  # id: (resource, message)
        self._scopes: dict[int, tuple[Any, bytes]] = {}  # id: (scope, message)

    def attributes(self, tag: bytes, attributes: Mapping[str, Any]) -> list[bytes]:
        """Each attribute as a repeated KeyValue field `tag`; one that cannot be encoded
        is logged and left out, as the SDK's encoder does."""
        return self._fields(tag, attributes)[0]

    def _fields(self, tag: bytes, attributes: Mapping[str, Any]) -> tuple[list[bytes], bool]:
        """attributes(), and whether every attribute was encoded."""
        pairs = self._pairs
        fields = []
        whole = True
        for key, value in attributes.items():
            kind = value.__class__
            # A float is not kept: 0.0 and -0.0 are equal keys with different bytes.
            if kind is str or kind is bool or kind is int:
                cached = pairs.get((key, kind, value))
                if cached is None:
                    try:
                        cached = _length(tag, _key_value(key, value))
                    except Exception as error:
                        log.exception("Failed to encode key %s: %s", key, error)
                        whole = False
                        continue
                    if self._full("pairs", pairs, _CACHED_PAIRS, cached):
                        pairs.clear()
                    pairs[key, kind, value] = cached
                fields.append(cached)
                continue
            try:
                fields.append(_length(tag, _key_value(key, value)))
            except Exception as error:
                log.exception("Failed to encode key %s: %s", key, error)
                whole = False
        return fields, whole

    def _block(self, tag: bytes, attributes: dict[str, Any]) -> bytes:
        """A span's attributes, all their fields as one piece: kept by the attributes'
        keys, values and the values' types (True and 1 are equal keys, not the same
        bytes), so a span whose attributes repeat another's (a statement's, a route's)
        costs one lookup. Floats, sequences (their items' types count too: (1.0, 2.0) is
        a key equal to (1, 2)) and unhashable values are encoded each time."""
        try:
            types = tuple(map(type, attributes.values()))
            if float in types or tuple in types:
                raise TypeError
            key = (tag, tuple(attributes.items()), types)
            cached = self._blocks.get(key)
        except TypeError:  # a float, or a value that cannot be hashed (a mapping)
            return b"".join(self._fields(tag, attributes)[0])
        if cached is None:
            fields, whole = self._fields(tag, attributes)
            cached = b"".join(fields)
            if whole:  # a value that failed is logged again on each span, as the SDK does
                if self._full("blocks", self._blocks, _CACHED_BLOCKS, cached):
                    self._blocks.clear()
                self._blocks[key] = cached
        return cached

    def _full(self, which: str, cache: dict, entries: int, adding: bytes) -> bool:
        """Whether `cache` must be emptied before `adding` goes in (its count or its
        bytes past their limits); counts `adding` in either way."""
        size = self._sizes[which] + 2 * len(adding)
        full = len(cache) >= entries or size > _CACHED_BYTES
        self._sizes[which] = 2 * len(adding) if full else size
        return full

    def _resource(self, resource: Any) -> bytes:
        kept = self._resources.get(id(resource))
        if kept is None or kept[0] is not resource:
            message = b"".join(self.attributes(b"\x0a", resource.attributes))
            kept = self._resources[id(resource)] = (resource, message)
        return kept[1]

    def _scope(self, scope: Any) -> bytes:
        if scope is None:
            return b""
        kept = self._scopes.get(id(scope))
        if kept is None or kept[0] is not scope:
            fields = []
            if scope.name:
                fields.append(_length(b"\x0a", scope.name.encode()))
            if scope.version:
                fields.append(_length(b"\x12", scope.version.encode()))
            fields += self.attributes(b"\x1a", scope.attributes or {})
            kept = self._scopes[id(scope)] = (scope, b"".join(fields))
        return kept[1]

    def span(self, span: Any) -> bytes:
        context = span.get_span_context()
        fields = [
            b"\x0a\x10",
            context.trace_id.to_bytes(16, "big"),
            b"\x12\x08",
            context.span_id.to_bytes(8, "big"),
        ]
        trace_state = context.trace_state
        if trace_state:
            text = ",".join([f"{key}={value}" for key, value in trace_state.items()])
            fields.append(_length(b"\x1a", text.encode()))
        parent = span.parent
        flags = _FLAGS
        if parent is not None:
            fields += (b"\x22\x08", parent.span_id.to_bytes(8, "big"))
            if parent.is_remote:
                flags = _FLAGS_REMOTE
        name = span.name
        if name:
            encoded = self._names.get(name)
            if encoded is None:
                encoded = _length(b"\x2a", name.encode())
                if self._full("names", self._names, _CACHED_PAIRS, encoded):
                    self._names.clear()
                self._names[name] = encoded
            fields.append(encoded)
        fields.append(_KIND[id(span.kind)])
        start, end = span.start_time, span.end_time
        if start:
            fields += (b"\x39", _fixed64(start))
        if end:
            fields += (b"\x41", _fixed64(end))
        # The span's own attributes, as a plain dict (BoundedAttributes.copy): read
        # through the read-only view, every item would be two Python calls.
        attributes = getattr(span, "_attributes", None)
        if attributes.__class__ is BoundedAttributes:
            dropped = attributes.dropped
            attributes = attributes.copy()
        else:
            dropped = span.dropped_attributes
            attributes = span.attributes
        if attributes:
            fields.append(self._block(b"\x4a", attributes))
        if dropped:
            fields += (b"\x50", _varint(dropped))
        for event in span.events:
            fields.append(_length(b"\x5a", self._event(event)))
        dropped = span.dropped_events
        if dropped:
            fields += (b"\x60", _varint(dropped))
        for link in span.links:
            fields.append(_length(b"\x6a", self._link(link)))
        dropped = span.dropped_links
        if dropped:
            fields += (b"\x70", _varint(dropped))
        status = span.status
        if status is not None:
            description = status.description
            code = _STATUS_CODE[id(status.status_code)]
            if description:
                fields.append(_length(b"\x7a", _length(b"\x12", description.encode()) + code))
            else:
                fields.append(_EMPTY_STATUS[code])
        fields.append(flags)
        return b"".join(fields)

    def _event(self, event: Any) -> bytes:
        fields = [b"\x09", _fixed64(event.timestamp)] if event.timestamp else []
        if event.name:
            fields.append(_length(b"\x12", event.name.encode()))
        fields += self.attributes(b"\x1a", event.attributes or {})
        if event.dropped_attributes:
            fields += (b"\x20", _varint(event.dropped_attributes))
        return b"".join(fields)

    def _link(self, link: Any) -> bytes:
        context = link.context
        fields = [
            b"\x0a\x10",
            context.trace_id.to_bytes(16, "big"),
            b"\x12\x08",
            context.span_id.to_bytes(8, "big"),
        ]
        fields += self.attributes(b"\x22", link.attributes or {})
        if link.dropped_attributes:
            fields += (b"\x28", _varint(link.dropped_attributes))
        flags = _HAS_IS_REMOTE | (_IS_REMOTE if context.is_remote else 0)
        fields += (b"\x35", _fixed32(flags))
        return b"".join(fields)

    def encode(self, spans: Sequence[Any]) -> bytes:
        """The request: spans grouped by resource, then by instrumentation scope, each
        group in the order of its first span, as the SDK groups them (by equality)."""
        groups: dict[int, dict[int, list[bytes]]] = {}  # id(resource): id(scope): spans
        resources: dict[int, Any] = {}
        scopes: dict[int, Any] = {}
        for span in spans:
            resource, scope = span.resource, span.instrumentation_scope or None
            rid, sid = id(resource), id(scope)
            by_scope = groups.get(rid)
            if by_scope is None:
                rid = _same(resources, resource)
                by_scope = groups.setdefault(rid, {})
            encoded = by_scope.get(sid)
            if encoded is None:
                sid = _same(scopes, scope)
                encoded = by_scope.setdefault(sid, [])
            encoded.append(_length(b"\x12", self.span(span)))
        out = []
        for rid, by_scope in groups.items():
            resource = resources[rid]
            fields = [_length(b"\x0a", self._resource(resource))]
            for sid, encoded in by_scope.items():
                scope = scopes[sid]
                scope_fields = [_length(b"\x0a", self._scope(scope)), *encoded]
                if scope is not None and scope.schema_url:
                    scope_fields.append(_length(b"\x1a", scope.schema_url.encode()))
                fields.append(_length(b"\x12", b"".join(scope_fields)))
            if resource.schema_url:
                fields.append(_length(b"\x1a", resource.schema_url.encode()))
            out.append(_length(b"\x0a", b"".join(fields)))
        return b"".join(out)


def _same(seen: dict[int, Any], thing: Any) -> int:
    """The id under which an equal object was seen first (the SDK groups by equality);
    `thing` is recorded under its own id when it is new."""
    if id(thing) in seen:
        return id(thing)
    for key, other in seen.items():
        if other == thing:
            return key
    seen[id(thing)] = thing
    return id(thing)


class CompactSpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP exporter, writing its request with `SpanEncoder`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._encoder = SpanEncoder()

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        # The SDK's export (1.45), with the encoding swapped.
        if self._shutdown:
            log.warning("Exporter already shutdown, ignoring batch")
            return SpanExportResult.FAILURE
        with self._metrics.export_operation(len(spans)) as result:
            try:
                data = self._encoder.encode(spans)
            except Exception as error:
                log.error("Failed to encode span batch: %s", error)
                result.error = error
                return SpanExportResult.FAILURE
            if _is_request_too_large(data, self._max_request_size):
                log.warning(
                    "Dropping span batch: serialized size %d bytes exceeds max_request_size "
                    "%d bytes.",
                    len(data),
                    self._max_request_size,
                )
                result.error = RequestPayloadTooLargeError(
                    f"Serialized span request size {len(data)} bytes exceeds "
                    f"max_request_size {self._max_request_size} bytes."
                )
                return SpanExportResult.FAILURE
            sent = self._client.export(data)
            if not sent.success:
                result.error = sent.error
                if sent.status_code is not None:
                    result.error_attrs = {HTTP_RESPONSE_STATUS_CODE: sent.status_code}
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS
