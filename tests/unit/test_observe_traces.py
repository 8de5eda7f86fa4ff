"""Reading stored spans: lookups by trace, correlation and order id, tolerance of writers'
spellings and of half-written lines, the tree, the JSON document and the slowest traces."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from rich.console import Console

from echobase.platform.observability import trace_view, traces
from echobase.platform.observability.traces import (
    Span,
    lookup,
    slowest,
    spans_of_line,
    trace_files,
)
from observe_support import (
    MS,
    T0,
    SpanSpec,
    new_trace_id,
    protobuf_style,
    request_line,
    write_lines,
)


def _order_trace(trace_id: str, correlation: str, order_id: str) -> dict[str, list[SpanSpec]]:
    """A POST through the gateway, its publish, and the processor's consume and insert."""
    server = SpanSpec(
        trace_id,
        "POST /api/v1/orders",
        0,
        12,
        attributes={
            "http.request.method": "POST",
            "http.route": "/api/v1/orders",
            "http.response.status_code": 201,
            "echobase.correlation_id": correlation,
        },
    )
    publish = SpanSpec(
        trace_id,
        "order-processing-queue publish",
        5,
        4,
        parent=server.span_id,
        kind=4,
        attributes={
            "messaging.system": "aws_sqs",
            "messaging.operation.type": "send",
            "messaging.destination.name": "order-processing-queue",
            "echobase.order_id": order_id,
        },
    )
    consume = SpanSpec(
        trace_id,
        "order-processing-queue process",
        30,
        20,
        parent=publish.span_id,
        kind=5,
        attributes={"echobase.order_id": order_id, "echobase.receive_count": 1},
    )
    insert = SpanSpec(
        trace_id,
        "INSERT orders",
        35,
        6,
        parent=consume.span_id,
        kind=3,
        attributes={"db.system.name": "mariadb", "db.operation.name": "INSERT"},
    )
    return {"api-gateway": [server, publish], "order-processor": [consume, insert]}


def _store(directory: Path, spans: dict[str, list[SpanSpec]], name: str = "") -> None:
    for service, specs in spans.items():
        write_lines(directory / f"{name or service}.jsonl", [request_line(service, specs)])


def test_a_trace_is_found_by_its_id_across_services_and_files(tmp_path: Path) -> None:
    wanted, other = new_trace_id(), new_trace_id()
    _store(tmp_path, _order_trace(wanted, "corr-1", "order-1"))
    _store(tmp_path, _order_trace(other, "corr-2", "order-2"))
    found = lookup(tmp_path, wanted.upper())  # as a person may paste it
    assert found.matched_by == "trace id"
    assert list(found.traces) == [wanted]
    spans = found.traces[wanted]
    assert [s.name for s in spans] == [
        "POST /api/v1/orders",
        "order-processing-queue publish",
        "order-processing-queue process",
        "INSERT orders",
    ]
    assert {s.service for s in spans} == {"api-gateway", "order-processor"}
    assert spans[0].colour == "blue" and spans[0].release == "0.1.0-abc"
    assert spans[0].kind == "server" and spans[2].kind == "consumer"
    assert spans[0].attributes["http.response.status_code"] == 201  # intValue as a number


def test_correlation_and_order_ids_find_their_traces(tmp_path: Path) -> None:
    first, second, unrelated = new_trace_id(), new_trace_id(), new_trace_id()
    _store(tmp_path, _order_trace(first, "client-abc", "order-7"))
    # The same client correlation id on a retry: a second trace.
    retry = _order_trace(second, "client-abc", "order-8")
    for specs in retry.values():
        for spec in specs:
            spec.start_ms += 1000
    _store(tmp_path, retry)
    _store(tmp_path, _order_trace(unrelated, "client-xyz", "order-9"))

    by_correlation = lookup(tmp_path, "client-abc")
    assert by_correlation.matched_by == "correlation or order id"
    assert list(by_correlation.traces) == [first, second]  # earliest first
    assert len(by_correlation.traces[first]) == 4  # whole traces, not only matching spans

    by_order = lookup(tmp_path, "order-8")
    assert list(by_order.traces) == [second]
    assert lookup(tmp_path, "order-1000").traces == {}


def test_a_correlation_id_that_looks_like_a_trace_id_still_finds_its_trace(
    tmp_path: Path,
) -> None:
    trace_id, correlation = new_trace_id(), new_trace_id()
    _store(tmp_path, _order_trace(trace_id, correlation, "order-1"))
    found = lookup(tmp_path, correlation)
    assert list(found.traces) == [trace_id]
    assert found.matched_by == "correlation or order id"


def test_a_miss_parses_no_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _store(tmp_path, _order_trace(new_trace_id(), "corr", "order-1"))
    parsed: list[bytes | str] = []

    def counting(line: bytes | str) -> list[Span]:
        parsed.append(line)
        return spans_of_line(line)

    monkeypatch.setattr(traces, "spans_of_line", counting)
    assert lookup(tmp_path, new_trace_id()).traces == {}
    assert lookup(tmp_path, "no-such-order").traces == {}
    assert parsed == []  # the substring test on raw lines ruled every line out
    assert lookup(tmp_path, "corr").traces and parsed


def test_protobuf_json_spelling_is_read_like_otlp_json(tmp_path: Path) -> None:
    trace_id = new_trace_id()
    spans = _order_trace(trace_id, "corr", "order-1")
    for service, specs in spans.items():
        write_lines(tmp_path / f"{service}.jsonl", [protobuf_style(request_line(service, specs))])
    found = lookup(tmp_path, trace_id).traces[trace_id]
    expected = [s for specs in spans.values() for s in specs]
    assert {s.span_id for s in found} == {s.span_id for s in expected}
    root = next(s for s in found if s.name == "POST /api/v1/orders")
    assert root.kind == "server" and root.parent_span_id == ""
    child = next(s for s in found if s.name == "INSERT orders")
    assert child.parent_span_id in {s.span_id for s in found}
    assert lookup(tmp_path, "corr").traces.keys() == {trace_id}


def test_partial_and_foreign_lines_are_skipped_and_rotated_files_read(tmp_path: Path) -> None:
    trace_id = new_trace_id()
    spans = _order_trace(trace_id, "corr", "order-1")
    whole = request_line("api-gateway", spans["api-gateway"])
    write_lines(tmp_path / "gateway.jsonl.1", [whole])
    processor = request_line("order-processor", spans["order-processor"])
    # Foreign lines, then a whole request, then one the writer is still in the middle of.
    (tmp_path / "processor.jsonl").write_text(
        'not json\n[1, 2]\n{"resourceSpans": 3}\n' + processor + "\n" + processor[:200]
    )
    write_lines(tmp_path / "notes.txt", [whole.replace("api-gateway", "imposter")])
    assert {p.name for p in trace_files(tmp_path)} == {"gateway.jsonl.1", "processor.jsonl"}
    found = lookup(tmp_path, trace_id).traces[trace_id]
    assert len(found) == 4
    assert "imposter" not in {s.service for s in found}
    assert spans_of_line(processor[:-1]) == []


def test_a_span_stored_twice_counts_once(tmp_path: Path) -> None:
    trace_id = new_trace_id()
    spans = _order_trace(trace_id, "corr", "order-1")
    _store(tmp_path, spans)
    _store(tmp_path, {"api-gateway": spans["api-gateway"]}, name="again")
    assert len(lookup(tmp_path, trace_id).traces[trace_id]) == 4


def _render(renderable: object) -> str:
    with open(os.devnull, "w") as devnull:
        console = Console(width=200, record=True, file=devnull)
        console.print(renderable)
    return console.export_text()


def test_the_tree_nests_children_under_parents_and_marks_orphans(tmp_path: Path) -> None:
    trace_id = new_trace_id()
    spans = _order_trace(trace_id, "corr", "order-1")
    spans["order-processor"][1].status = 2
    spans["order-processor"][1].status_message = "Deadlock found"
    spans["order-processor"][1].events = [
        {
            "name": "exception",
            "timeUnixNano": str(T0 + 40 * MS),
            "attributes": [
                {"key": "exception.type", "value": {"stringValue": "OperationalError"}},
                {"key": "exception.message", "value": {"stringValue": "Deadlock found"}},
            ],
        }
    ]
    # The processor's half only: its consumer's parent (the publish) was not stored.
    _store(tmp_path, {"order-processor": spans["order-processor"]})
    found = lookup(tmp_path, trace_id).traces[trace_id]
    text = _render(trace_view.trace_tree(trace_id, found))
    lines = text.splitlines()
    assert f"trace {trace_id}" in lines[0]
    assert "2 span(s)" in lines[0] and "services: order-processor" in lines[0]
    assert "20.0ms" in lines[0]  # from the consume span's start to its end
    consume = next(i for i, line in enumerate(lines) if "process (consumer)" in line)
    insert = next(i for i, line in enumerate(lines) if "INSERT orders" in line)
    assert "(parent not stored)" in lines[consume]
    assert "(parent not stored)" not in lines[insert]
    assert insert > consume
    assert lines[insert].index("order-processor[blue]") > lines[consume].index(
        "order-processor[blue]"
    )  # indented: a child
    assert "error: Deadlock found" in lines[insert]
    assert "+5.0ms" in lines[insert]  # started 5 ms after the trace's first span
    assert any("exception OperationalError: Deadlock found" in line for line in lines)
    assert any("db.system.name=mariadb" in line for line in lines)
    assert any("echobase.receive_count=1" in line for line in lines)


def test_the_json_document_describes_every_span(tmp_path: Path) -> None:
    trace_id = new_trace_id()
    _store(tmp_path, _order_trace(trace_id, "corr", "order-1"))
    found = lookup(tmp_path, trace_id).traces[trace_id]
    document = json.loads(json.dumps(trace_view.trace_document(trace_id, found)))
    assert document["traceId"] == trace_id
    assert document["durationMs"] == 50.0  # the consume span ends last, at 30 + 20 ms
    first = document["spans"][0]
    assert first["start"] == "2026-12-05T10:00:00.000000Z"
    assert first["kind"] == "server" and first["service"] == "api-gateway"
    assert first["colour"] == "blue" and first["release"] == "0.1.0-abc"
    assert first["parentSpanId"] == "" and first["durationMs"] == 12.0
    assert first["attributes"]["http.response.status_code"] == 201
    assert [s["parentSpanId"] for s in document["spans"][1:]] == [
        s["spanId"] for s in document["spans"][:-1]
    ]


def test_slowest_ranks_recent_traces_by_their_whole_duration(tmp_path: Path) -> None:
    fast, slow, failed, old = (new_trace_id() for _ in range(4))
    lines = []
    for trace_id, offset_ms, length_ms, status in (
        (fast, 60_000, 5, 0),
        (slow, 61_000, 900, 0),
        (failed, 62_000, 300, 2),
        (old, 0, 5_000, 0),  # the slowest of all, but before the window
    ):
        root = SpanSpec(trace_id, f"GET /{trace_id[:4]}", offset_ms, length_ms / 2)
        # A child that ends after its parent: the trace lasts until the last span ends.
        child = SpanSpec(
            trace_id, "work", offset_ms + 1, length_ms - 1, parent=root.span_id, status=status
        )
        lines.append(request_line("api-gateway", [root]))
        lines.append(request_line("order-processor", [child]))
    write_lines(tmp_path / "all.jsonl", lines)
    window_start = T0 + 30_000 * MS
    ranked = slowest(tmp_path, 2, since_ns=window_start)
    assert [s.trace_id for s in ranked] == [slow, failed]
    assert ranked[0].duration_ns == 900 * MS
    assert ranked[0].span_count == 2
    assert ranked[0].services == {"api-gateway", "order-processor"}
    assert ranked[0].root_name == f"GET /{slow[:4]}" and ranked[0].root_service == "api-gateway"
    assert not ranked[0].error and ranked[1].error
    assert slowest(tmp_path, 10)[0].trace_id == old  # no window: all

    # A file last written before the window cannot hold a trace started in it: not read.
    write_lines(
        tmp_path / "stale.jsonl.1",
        [request_line("api-gateway", [SpanSpec(new_trace_id(), "GET /stale", 100_000, 10_000)])],
    )
    before = (window_start - 1_000 * MS) // 1_000_000_000
    os.utime(tmp_path / "stale.jsonl.1", (before, before))
    assert [p.name for p in trace_files(tmp_path, window_start)] == ["all.jsonl"]
    assert [s.trace_id for s in slowest(tmp_path, 1, since_ns=window_start)] == [slow]
    table = _render(trace_view.slowest_table(ranked, "slowest"))
    assert slow in table and "900.0ms" in table and "yes" in table
