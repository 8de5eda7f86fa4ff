"""The services' tracing pieces without a running system: the OTLP JSON encoding of the
local trace store, its size bound, the sampler's idea of where a trace begins, and the trace
context carried in SQS message attributes."""

from __future__ import annotations

import json
import os
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased
from opentelemetry.trace import SpanKind

from echobase.app.core.telemetry import (
    OtlpJsonFiles,
    RequestRoots,
    Reservoir,
    context_from_attributes,
    inject_into_attributes,
    otlp_json,
)


def provider(sampler=None) -> tuple[TracerProvider, InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    tracing = TracerProvider(
        resource=Resource.create({"service.name": "api-gateway"}), sampler=sampler
    )
    tracing.add_span_processor(SimpleSpanProcessor(memory))
    return tracing, memory


def test_otlp_json_has_hex_ids_numeric_enums_and_the_resource() -> None:
    tracing, memory = provider()
    tracer = tracing.get_tracer("t")
    with tracer.start_as_current_span("POST /api/v1/orders", kind=SpanKind.SERVER) as server:
        with tracer.start_as_current_span("send q", kind=SpanKind.PRODUCER) as send:
            send.set_attribute("messaging.batch.message_count", 3)
    document = otlp_json(memory.get_finished_spans())
    (resource,) = document["resourceSpans"]
    assert {"key": "service.name", "value": {"stringValue": "api-gateway"}} in resource["resource"][
        "attributes"
    ]
    spans = {s["name"]: s for scope in resource["scopeSpans"] for s in scope["spans"]}
    context = server.get_span_context()
    assert spans["POST /api/v1/orders"]["traceId"] == f"{context.trace_id:032x}"
    assert spans["POST /api/v1/orders"]["spanId"] == f"{context.span_id:016x}"
    assert spans["send q"]["parentSpanId"] == f"{context.span_id:016x}"
    assert spans["POST /api/v1/orders"]["kind"] == 2 and spans["send q"]["kind"] == 4
    count = spans["send q"]["attributes"][0]
    assert count == {"key": "messaging.batch.message_count", "value": {"intValue": "3"}}
    assert int(spans["send q"]["endTimeUnixNano"]) >= int(spans["send q"]["startTimeUnixNano"])


def test_the_store_rotates_files_and_stays_within_its_bound(tmp_path: Path) -> None:
    tracing, memory = provider()
    with tracing.get_tracer("t").start_as_current_span("x" * 200, kind=SpanKind.SERVER):
        pass
    (span,) = memory.get_finished_spans()
    line = len(json.dumps(otlp_json([span]), separators=(",", ":"))) + 1
    # An older process's file, which the bound may remove; it is the oldest.
    old = tmp_path / "api-gateway-blue-1-1.jsonl"
    old.write_bytes(b"{}\n" * 1000)
    os.utime(old, (1, 1))
    store = OtlpJsonFiles(
        tmp_path, "api-gateway-green-7", file_bytes=3 * line, store_bytes=8 * line
    )
    for _ in range(10):
        store.export([span])
    store.shutdown()
    files = sorted(p.name for p in tmp_path.glob("*.jsonl"))
    # 10 lines, 3 to a file; at each new file the oldest go while the store is over 8 lines:
    # the other process's file first, then this one's first.
    assert files == [f"api-gateway-green-7-{n}.jsonl" for n in (2, 3, 4)]
    assert all((tmp_path / f).stat().st_size <= 3 * line for f in files)
    assert sum((tmp_path / f).stat().st_size for f in files) <= 8 * line
    last = (tmp_path / files[-1]).read_text().splitlines()[-1]
    assert json.loads(last)["resourceSpans"]  # whole lines, each a document
    assert (tmp_path / files[-1]).stat().st_mode & 0o777 == 0o600


def test_a_trace_begins_at_a_request_or_a_message_not_at_a_lone_query() -> None:
    tracing, memory = provider(ParentBased(RequestRoots(1.0)))
    tracer = tracing.get_tracer("t")
    with tracer.start_as_current_span("SELECT products", kind=SpanKind.CLIENT) as lone:
        assert not lone.is_recording()
    with tracer.start_as_current_span("GET /api/v1/orders", kind=SpanKind.SERVER):
        with tracer.start_as_current_span("SELECT orders", kind=SpanKind.CLIENT) as child:
            assert child.is_recording()  # inside a request, a query is part of its trace
    assert [s.name for s in memory.get_finished_spans()] == ["SELECT orders", "GET /api/v1/orders"]
    never = ParentBased(RequestRoots(0.0))
    tracing, memory = provider(never)
    with tracing.get_tracer("t").start_as_current_span("GET /", kind=SpanKind.SERVER) as root:
        assert not root.is_recording() and root.get_span_context().is_valid  # an id, no span


def test_the_first_requests_of_each_second_are_kept_then_a_share_of_the_rest() -> None:
    now = [100.0]
    roots = ParentBased(RequestRoots(0.0, Reservoir(3, clock=lambda: now[0])))
    tracing, memory = provider(roots)
    tracer = tracing.get_tracer("t")

    def requests(count: int) -> list[bool]:
        kept = []
        for _ in range(count):
            with tracer.start_as_current_span("GET /", kind=SpanKind.SERVER) as root:
                with tracer.start_as_current_span("SELECT", kind=SpanKind.CLIENT) as child:
                    assert child.is_recording() == root.is_recording()  # whole traces
                kept.append(root.is_recording())
        return kept

    assert requests(5) == [True, True, True, False, False]
    now[0] = 100.9  # the same second
    assert requests(1) == [False]
    now[0] = 101.0  # a new one: the reservoir is full again
    assert requests(4) == [True, True, True, False]
    assert len(memory.get_finished_spans()) == 6 * 2
    # A caller's decision wins over the reservoir, both ways.
    caller = trace.NonRecordingSpan(
        trace.SpanContext(1, 2, is_remote=True, trace_flags=trace.TraceFlags(0x01))
    )
    with tracer.start_as_current_span(
        "GET /", context=trace.set_span_in_context(caller), kind=SpanKind.SERVER
    ) as followed:
        assert followed.is_recording()
    # Beyond the reservoir, the ratio: all of the rest at 1.0.
    tracing, _ = provider(ParentBased(RequestRoots(1.0, Reservoir(1, clock=lambda: 5.0))))
    spans = [tracing.get_tracer("t").start_span("GET /", kind=SpanKind.SERVER) for _ in range(4)]
    assert all(span.is_recording() for span in spans)


def test_trace_context_travels_in_message_attributes() -> None:
    tracing, _ = provider()
    attributes = {"CorrelationId": {"DataType": "String", "StringValue": "c-1"}}
    with tracing.get_tracer("t").start_as_current_span("send", kind=SpanKind.PRODUCER) as send:
        inject_into_attributes(attributes)
    traceparent = attributes["traceparent"]
    assert traceparent["DataType"] == "String"
    assert f"{send.get_span_context().trace_id:032x}" in traceparent["StringValue"]
    parent = trace.get_current_span(context_from_attributes(attributes)).get_span_context()
    assert parent.trace_id == send.get_span_context().trace_id
    assert parent.span_id == send.get_span_context().span_id and parent.is_remote
    # No context, or a mangled one: the message starts a trace of its own.
    for broken in (None, {}, {"traceparent": {"DataType": "String", "StringValue": "x"}}):
        assert (
            not trace.get_current_span(context_from_attributes(broken)).get_span_context().is_valid
        )


def test_the_encoding_is_the_otlp_exporters_own_in_json() -> None:
    """The OTLP exporter's protobuf encoder, through protobuf's JSON mapping (ids turned to
    hex as OTLP/JSON wants), is the oracle for the hand-written encoding."""
    import base64

    from google.protobuf import json_format
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.trace import Link, Status, StatusCode

    tracing, memory = provider()
    tracer = tracing.get_tracer("t", "1.2")
    with tracer.start_as_current_span("root", kind=SpanKind.CONSUMER) as root:
        root.set_attributes(
            {"s": "x", "i": 7, "f": 0.5, "b": True, "list": ["a", "b"], "ints": [1, 2]}
        )
        root.add_event("handed back", {"why": "stopping"})
        root.set_status(Status(StatusCode.ERROR, "not stored: IntegrityError"))
    other = tracing.get_tracer("u").start_span("linked", links=[Link(root.get_span_context())])
    other.set_status(Status(StatusCode.OK))
    other.end()
    spans = memory.get_finished_spans()
    expected = json_format.MessageToDict(encode_spans(spans), use_integers_for_enums=True)
    for resource in expected["resourceSpans"]:
        for scope in resource["scopeSpans"]:
            for span in scope["spans"]:
                for item in (span, *span.get("links", ())):
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if item.get(key):
                            item[key] = base64.b64decode(item[key]).hex()
                span.pop("flags", None)  # W3C flags bits: not kept in the store
                for link in span.get("links", ()):
                    link.pop("flags", None)
    assert otlp_json(spans) == expected
