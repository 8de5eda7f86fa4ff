"""Traces of the order services, through OpenTelemetry's SDK.

Where spans go: to a collector over OTLP/HTTP when the standard ``OTEL_EXPORTER_OTLP_*``
variables name one (the SDK's own exporter reads them); otherwise into the durable layer's
state directory (``ECHOBASE_TRACES_DIR``) as OTLP JSON lines, the encoding a collector's file
exporter writes, so a collector can ingest them later. Without either, trace ids still exist
(answers' X-Correlation-ID, log lines) but no span is kept.

Written by hand here, because no kept package does it: the JSON-lines file exporter with its
size bound (the SDK has only a console exporter, in its own format), and the OTLP JSON
encoding it writes (see otlp_json for why not the OTLP exporter's protobuf encoder).
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind
from opentelemetry.util.types import Attributes

from echobase.app.core.config import ServiceSettings

# Stable attribute names (http.request.method, db.system.name, ...) rather than the old ones
# the instrumentations still emit by default; read once, before the first instrumentation.
os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http,database")

TRACER_NAME = "echobase"
# FastAPI's own telemetry (0.165+) would add spans for every dependency, endpoint and
# serialisation step, and metrics of its own: the server span (core/http_tracing) and our
# spans are what a reader of a trace needs, at a fraction of the cost.
FASTAPI_TELEMETRY_OFF = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
}


# One tracer for the process: get_tracer builds a new scope (and a warnings filter) on every
# call, ~17 us, once per span otherwise. Until configure_tracing sets the provider this is
# the API's proxy, which then hands every span to the provider's own tracer.
_TRACER = trace.get_tracer(TRACER_NAME)


def tracer() -> trace.Tracer:
    return _TRACER


def _exports_to_collector() -> bool:
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def configure_tracing(service: str, settings: ServiceSettings) -> TracerProvider:
    """The process's tracer provider: resource (service, colour, release, environment),
    sampler and exporter. Call once per process (each uvicorn worker is one)."""
    attributes: dict[str, str] = {
        "service.name": service,
        "service.version": settings.release,
        "service.instance.id": f"{service}-{settings.colour}-{os.getpid()}",
        "echobase.release": settings.release,
        "deployment.environment.name": settings.environment,
    }
    if settings.colour != "none":
        attributes["echobase.colour"] = settings.colour
    # The standard OTEL_TRACES_SAMPLER(_ARG) win over ours when set, as users expect.
    sampler = (
        None
        if os.environ.get("OTEL_TRACES_SAMPLER")
        else ParentBased(
            RequestRoots(
                settings.trace_sample_ratio, Reservoir(settings.trace_reservoir_per_second)
            )
        )
    )
    provider = TracerProvider(resource=Resource.create(attributes), sampler=sampler)
    exporter: SpanExporter | None = None
    if _exports_to_collector():
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    elif settings.traces_dir is not None:
        exporter = OtlpJsonFiles(
            settings.traces_dir,
            f"{service}-{settings.colour}-{os.getpid()}",
            settings.trace_file_bytes,
            settings.trace_store_bytes,
        )
    if exporter is not None:
        # A second instead of the SDK's five: `echobase trace` right after a request
        # should find it. OTEL_BSP_SCHEDULE_DELAY still wins.
        delay = None if os.environ.get("OTEL_BSP_SCHEDULE_DELAY") else 1000
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=delay))
    trace.set_tracer_provider(provider)
    return provider


class Reservoir:
    """Up to ``per_second`` takes in each second of ``clock``: the first requests of every
    second are always traced, however busy the process."""

    def __init__(self, per_second: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second, self._clock = per_second, clock
        self._second, self._taken = -1, 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        if self.per_second <= 0:
            return False
        second = int(self._clock())
        with self._lock:
            if second != self._second:
                self._second, self._taken = second, 0
            if self._taken >= self.per_second:
                return False
            self._taken += 1
            return True


class RequestRoots(Sampler):
    """A trace begins where work begins: a request served, a message sent or consumed. Of
    those, the first ``reservoir`` of each second are kept, then ``ratio`` of the rest (AWS
    X-Ray's default rule has this shape: a reservoir, then a fixed rate). A database call
    or HTTP call outside any such work (a health probe's ping, the catalogue's refresh)
    would otherwise be a one-span trace of its own, every time."""

    _STARTS = frozenset({SpanKind.SERVER, SpanKind.CONSUMER, SpanKind.PRODUCER})

    def __init__(self, ratio: float, reservoir: Reservoir | None = None) -> None:
        self._ratio = TraceIdRatioBased(ratio)
        self._reservoir = reservoir or Reservoir(0)

    def should_sample(
        self,
        parent_context: otel_context.Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        if kind not in self._STARTS:
            return SamplingResult(Decision.DROP, None, trace_state)
        if self._reservoir.take():
            return SamplingResult(Decision.RECORD_AND_SAMPLE, None, trace_state)
        return self._ratio.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return (
            f"RequestRoots{{{self._reservoir.per_second}/s, then {self._ratio.get_description()}}}"
        )


# --- the local trace store ------------------------------------------------------------------


def otlp_json(spans: Sequence[ReadableSpan]) -> dict[str, Any]:
    """An ExportTraceServiceRequest in OTLP's JSON encoding (hex ids, numeric enums,
    64-bit integers as decimal strings), grouped by resource and instrumentation scope.

    Built straight from the spans: the OTLP exporter's protobuf encoder followed by
    protobuf's JSON mapping cost ~4x as much per span (measured in bench/tracing.py's
    terms: most of the processor's tracing CPU), and the file is this encoding anyway."""
    resources: dict[int, tuple[Any, dict[int, tuple[Any, list[dict[str, Any]]]]]] = {}
    for span in spans:
        resource = resources.setdefault(id(span.resource), (span.resource, {}))[1]
        scope = span.instrumentation_scope
        resource.setdefault(id(scope), (scope, []))[1].append(_span(span))
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": _attributes(resource.attributes)},
                "scopeSpans": [
                    {"scope": _scope(scope), "spans": encoded} for scope, encoded in scopes.values()
                ],
            }
            for resource, scopes in resources.values()
        ]
    }


def _scope(scope: Any) -> dict[str, Any]:
    if scope is None:
        return {}
    encoded = {"name": scope.name}
    if scope.version:
        encoded["version"] = scope.version
    return encoded


def _span(span: ReadableSpan) -> dict[str, Any]:
    context = span.get_span_context()
    assert context is not None
    encoded: dict[str, Any] = {
        "traceId": f"{context.trace_id:032x}",
        "spanId": f"{context.span_id:016x}",
        "name": span.name,
        "kind": span.kind.value + 1,  # OTLP counts from SPAN_KIND_UNSPECIFIED = 0
        "startTimeUnixNano": str(span.start_time),
        "endTimeUnixNano": str(span.end_time),
    }
    if span.parent is not None:
        encoded["parentSpanId"] = f"{span.parent.span_id:016x}"
    if span.attributes:
        encoded["attributes"] = _attributes(span.attributes)
    if span.events:
        encoded["events"] = [
            {
                "timeUnixNano": str(event.timestamp),
                "name": event.name,
                **({"attributes": _attributes(event.attributes)} if event.attributes else {}),
            }
            for event in span.events
        ]
    if span.links:
        encoded["links"] = [
            {
                "traceId": f"{link.context.trace_id:032x}",
                "spanId": f"{link.context.span_id:016x}",
                **({"attributes": _attributes(link.attributes)} if link.attributes else {}),
            }
            for link in span.links
        ]
    code = span.status.status_code.value  # UNSET 0, OK 1, ERROR 2: as OTLP's
    if code:
        encoded["status"] = {"code": code}
        if span.status.description:
            encoded["status"]["message"] = span.status.description
    return encoded


def _attributes(attributes: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    return [{"key": key, "value": _value(value)} for key, value in (attributes or {}).items()]


def _value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):  # before int: a bool is an int
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, bytes):
        return {"bytesValue": base64.b64encode(value).decode()}
    if isinstance(value, Sequence):
        return {"arrayValue": {"values": [_value(item) for item in value]}}
    return {"stringValue": str(value)}


class OtlpJsonFiles(SpanExporter):
    """One process's spans, appended as OTLP JSON lines to ``{prefix}-{n}.jsonl`` in
    ``directory``. A file past ``file_bytes`` is closed and the next one begun; the oldest
    files of the directory (every process's) are removed while all of them together exceed
    ``store_bytes``, so the store stays bounded however many processes come and go."""

    def __init__(self, directory: Path, prefix: str, file_bytes: int, store_bytes: int) -> None:
        self.directory, self.prefix = Path(directory), prefix
        self.file_bytes, self.store_bytes = file_bytes, store_bytes
        self._lock = threading.Lock()
        self._sequence = 0
        self._fd: int | None = None
        self._size = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        line = (json.dumps(otlp_json(spans), separators=(",", ":")) + "\n").encode()
        try:
            with self._lock:
                if self._fd is None or self._size + len(line) > self.file_bytes:
                    self._next_file()
                assert self._fd is not None
                # One write of a whole line on an O_APPEND descriptor: a reader sees whole
                # lines, or a last one still arriving, never two interleaved.
                os.write(self._fd, line)
                self._size += len(line)
        except OSError:
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def _next_file(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._sequence += 1
        path = self.directory / f"{self.prefix}-{self._sequence}.jsonl"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._size = os.fstat(self._fd).st_size
        prune(self.directory, self.store_bytes, keep=path)

    def shutdown(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def prune(directory: Path, store_bytes: int, keep: Path) -> None:
    """Remove the least recently written trace files until the rest fit ``store_bytes``."""
    files = []
    for path in directory.glob("*.jsonl"):
        try:
            stat = path.stat()
        except FileNotFoundError:  # another process pruned it
            continue
        files.append((stat.st_mtime, stat.st_size, path))
    total = sum(size for _, size, _ in files)
    for _, size, path in sorted(files):
        if total <= store_bytes:
            break
        if path != keep:
            path.unlink(missing_ok=True)
            total -= size


# --- context in SQS message attributes ------------------------------------------------------


class _AttributeSetter(Setter[MutableMapping[str, Any]]):
    def set(self, carrier: MutableMapping[str, Any], key: str, value: str) -> None:
        carrier[key] = {"DataType": "String", "StringValue": value}


class _AttributeGetter(Getter[Mapping[str, Any]]):
    def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
        value = carrier.get(key)
        if isinstance(value, Mapping) and isinstance(value.get("StringValue"), str):
            return [value["StringValue"]]
        return None

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        return list(carrier)


def inject_into_attributes(attributes: MutableMapping[str, Any]) -> None:
    """The current span's W3C trace context (traceparent, tracestate when any) as SQS
    message attributes, so the consumer's work joins the publisher's trace."""
    propagate.inject(attributes, setter=_AttributeSetter())


def context_from_attributes(attributes: Mapping[str, Any] | None) -> otel_context.Context:
    return propagate.extract(attributes or {}, getter=_AttributeGetter())


def span_ids(span: trace.Span | None = None) -> dict[str, str]:
    """A span's ids (by default the current span's) as hex log fields; empty when there is
    no span."""
    span = span or trace.get_current_span()
    context = span.get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}
