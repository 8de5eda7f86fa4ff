"""How a trace is shown: a tree across services for people, one JSON document for machines,
a table of the slowest traces. Pure: renderables and dicts, printed by the CLI."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from echobase.platform.observability.filters import from_unix_nanos, iso_utc
from echobase.platform.observability.traces import Span, SpanEvent, TraceSummary

# Shown under a span when present, in this order: what a reader asks first.
KEY_ATTRIBUTES = (
    "http.request.method",
    "http.route",
    "url.path",
    "http.response.status_code",
    "db.system.name",
    "db.system",
    "db.operation.name",
    "db.collection.name",
    "messaging.system",
    "messaging.operation.type",
    "messaging.destination.name",
    "messaging.message.id",
    "echobase.order_id",
    "echobase.correlation_id",
    "echobase.receive_count",
    "error.type",
)


def milliseconds(nanos: int) -> float:
    return round(nanos / 1_000_000, 3)


def trace_bounds(spans: list[Span]) -> tuple[int, int]:
    return min(s.start_ns for s in spans), max(s.end_ns for s in spans)


# --- machines -----------------------------------------------------------------------------


def _event_dict(event: SpanEvent) -> dict[str, Any]:
    return {
        "name": event.name,
        "time": iso_utc(from_unix_nanos(event.time_ns)),
        "attributes": event.attributes,
    }


def span_dict(span: Span) -> dict[str, Any]:
    return {
        "traceId": span.trace_id,
        "spanId": span.span_id,
        "parentSpanId": span.parent_span_id,
        "service": span.service,
        "colour": span.colour,
        "release": span.release,
        "name": span.name,
        "kind": span.kind,
        "start": iso_utc(from_unix_nanos(span.start_ns)),
        "durationMs": milliseconds(span.duration_ns),
        "status": span.status,
        "statusMessage": span.status_message,
        "attributes": span.attributes,
        "events": [_event_dict(event) for event in span.events],
    }


def trace_document(trace_id: str, spans: list[Span]) -> dict[str, Any]:
    start, end = trace_bounds(spans)
    return {
        "traceId": trace_id,
        "durationMs": milliseconds(end - start),
        "spans": [span_dict(span) for span in sorted(spans, key=lambda s: s.start_ns)],
    }


def summary_dict(summary: TraceSummary) -> dict[str, Any]:
    return {
        "traceId": summary.trace_id,
        "start": iso_utc(from_unix_nanos(summary.start_ns)),
        "durationMs": milliseconds(summary.duration_ns),
        "root": summary.root_name,
        "rootService": summary.root_service,
        "spans": summary.span_count,
        "services": sorted(summary.services),
        "error": summary.error,
    }


# --- people -------------------------------------------------------------------------------


def _where(span: Span) -> str:
    return f"{span.service}[{span.colour}]" if span.colour else span.service


def _value(value: Any) -> str:
    return str(value) if not isinstance(value, str) or " " not in value else repr(value)


def _event_line(event: SpanEvent, trace_start: int) -> Text:
    offset = milliseconds(event.time_ns - trace_start)
    line = Text(f"+{offset:.1f}ms event {event.name}", style="dim")
    if event.name == "exception":
        kind = event.attributes.get("exception.type", "")
        message = event.attributes.get("exception.message", "")
        line = Text(f"+{offset:.1f}ms exception {kind}: {message}".rstrip(": "), style="red")
    return line


def span_label(span: Span, trace_start: int, orphan: bool = False) -> Group:
    offset = milliseconds(span.start_ns - trace_start)
    head = Text()
    head.append(f"+{offset:.1f}ms ", style="dim")
    head.append(_where(span), style="cyan")
    head.append(f" {span.name}", style="bold")
    head.append(f" ({span.kind})", style="dim")
    head.append(f" {milliseconds(span.duration_ns):.1f}ms")
    if span.status == "error":
        head.append(" error", style="bold red")
        if span.status_message:
            head.append(f": {span.status_message}", style="red")
    elif span.status == "ok":
        head.append(" ok", style="green")
    if orphan:
        head.append(" (parent not stored)", style="yellow")
    lines: list[Text] = [head]
    shown = [
        f"{key}={_value(span.attributes[key])}" for key in KEY_ATTRIBUTES if key in span.attributes
    ]
    if shown:
        lines.append(Text("  " + " ".join(shown), style="dim"))
    lines += [Text("  ") + _event_line(event, trace_start) for event in span.events]
    return Group(*lines)


def trace_tree(trace_id: str, spans: list[Span]) -> Tree:
    start, end = trace_bounds(spans)
    services = sorted({span.service for span in spans})
    header = Text()
    header.append(f"trace {trace_id}", style="bold")
    header.append(
        f"  {milliseconds(end - start):.1f}ms, {len(spans)} span(s), "
        f"services: {', '.join(services)}, started {iso_utc(from_unix_nanos(start))}"
    )
    tree = Tree(header)
    ids = {span.span_id for span in spans}
    children: dict[str, list[Span]] = {}
    for span in sorted(spans, key=lambda s: (s.start_ns, s.span_id)):
        if span.parent_span_id in ids and span.parent_span_id != span.span_id:
            children.setdefault(span.parent_span_id, []).append(span)
    placed: set[str] = set()

    def grow(node: Tree, span: Span, orphan: bool) -> None:
        placed.add(span.span_id)
        branch = node.add(span_label(span, start, orphan))
        for child in children.get(span.span_id, []):
            if child.span_id not in placed:
                grow(branch, child, False)

    for span in sorted(spans, key=lambda s: (s.start_ns, s.span_id)):
        parent_stored = span.parent_span_id in ids and span.parent_span_id != span.span_id
        if not parent_stored:
            grow(tree, span, bool(span.parent_span_id))
    for span in sorted(spans, key=lambda s: (s.start_ns, s.span_id)):
        if span.span_id not in placed:  # only in a cycle of parents: shown all the same
            grow(tree, span, True)
    return tree


def slowest_table(summaries: list[TraceSummary], title: str) -> Table:
    table = Table(title=title)
    for column in ("trace id", "start (UTC)", "duration", "root", "spans", "services", "error"):
        table.add_column(column, justify="right" if column in ("duration", "spans") else "left")
    for summary in summaries:
        row = summary_dict(summary)
        table.add_row(
            row["traceId"],
            row["start"],
            f"{row['durationMs']:.1f}ms",
            escape(f"{row['root']} ({row['rootService']})"),
            str(row["spans"]),
            ", ".join(row["services"]),
            "[red]yes[/red]" if row["error"] else "no",
        )
    return table
