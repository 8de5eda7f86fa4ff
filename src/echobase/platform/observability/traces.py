"""Spans as the services store them: OTLP JSON, one ExportTraceServiceRequest per line, in
files under ``DurablePlan.traces_dir``. Read by streaming, never whole: the store holds up to a
few hundred MiB.

Writers differ in small ways, all accepted: camelCase or proto snake_case field names, ids in
hex (the OTLP/JSON rule) or base64 (protobuf's generic JSON mapping), enums as numbers or as
names (``SPAN_KIND_SERVER``). A line that does not parse (the last one, still being written)
is skipped."""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

TRACE_ID = re.compile(r"[0-9a-fA-F]{32}")
_HEX = re.compile(r"[0-9a-fA-F]+")
# The attributes that name what a trace was about, besides its own id.
KEY_ATTRIBUTES = ("echobase.correlation_id", "echobase.order_id")
KINDS = ("unspecified", "internal", "server", "client", "producer", "consumer")
STATUSES = ("unset", "ok", "error")


@dataclass(frozen=True)
class SpanEvent:
    name: str
    time_ns: int
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Span:
    trace_id: str
    span_id: str
    parent_span_id: str  # "" for a root
    name: str
    kind: str  # one of KINDS
    start_ns: int
    end_ns: int
    status: str  # one of STATUSES
    status_message: str
    resource: dict[str, Any]
    # As stored: read on first use (ranking the slowest traces never needs them).
    raw_attributes: Any = field(default=None, repr=False, compare=False)
    raw_events: Any = field(default=None, repr=False, compare=False)

    @cached_property
    def attributes(self) -> dict[str, Any]:
        return attributes(self.raw_attributes)

    @cached_property
    def events(self) -> tuple[SpanEvent, ...]:
        return tuple(
            SpanEvent(
                str(event.get("name", "")),
                _nanos(_get(event, "timeUnixNano")),
                attributes(event.get("attributes")),
            )
            for event in self.raw_events or []
            if isinstance(event, dict)
        )

    @property
    def service(self) -> str:
        return str(self.resource.get("service.name", "unknown"))

    @property
    def colour(self) -> str:
        return str(self.resource.get("echobase.colour", ""))

    @property
    def release(self) -> str:
        return str(
            self.resource.get("echobase.release") or self.resource.get("service.version", "")
        )

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_ns - self.start_ns)


# --- one line -----------------------------------------------------------------------------


@functools.cache
def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


def _get(obj: dict[str, Any], name: str, default: Any = None) -> Any:
    """A field by its camelCase name, or by its proto snake_case name."""
    if name in obj:
        return obj[name]
    return obj.get(_snake(name), default)


def normalise_id(raw: Any, size: int) -> str:
    """An id of ``size`` bytes as lowercase hex, from hex or base64; "" when absent or bad."""
    if not isinstance(raw, str) or not raw:
        return ""
    if len(raw) == size * 2 and _HEX.fullmatch(raw):
        return raw.lower()
    try:
        decoded = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return ""
    return decoded.hex() if len(decoded) == size else ""


def base64_id(hex_id: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_id)).decode()


def _enum(raw: Any, names: tuple[str, ...], prefix: str) -> str:
    if isinstance(raw, int) and 0 <= raw < len(names):
        return names[raw]
    if isinstance(raw, str):
        word = raw.removeprefix(prefix).lower()
        if word in names:
            return word
        if raw.isdigit() and int(raw) < len(names):
            return names[int(raw)]
    return names[0]


def _nanos(raw: Any) -> int:
    try:
        return int(raw)
    except (TypeError, ValueError):
        return 0


_SCALARS: dict[str, Callable[[Any], Any]] = {
    "stringValue": str,
    "boolValue": bool,
    "intValue": int,
    "doubleValue": float,
    "bytesValue": str,
}
_SCALARS |= {_snake(key): convert for key, convert in _SCALARS.items()}


def attribute_value(value: Any) -> Any:
    """An OTLP AnyValue as the Python value it stands for."""
    if not isinstance(value, dict):
        return value
    for key, raw in value.items():
        convert = _SCALARS.get(key)
        if convert is not None:
            try:
                return convert(raw)
            except (TypeError, ValueError):
                return raw
        if key in ("arrayValue", "array_value") and isinstance(raw, dict):
            return [attribute_value(v) for v in raw.get("values", [])]
        if key in ("kvlistValue", "kvlist_value") and isinstance(raw, dict):
            return attributes(raw.get("values", []))
    return None


def attributes(items: Any) -> dict[str, Any]:
    if not isinstance(items, list):
        return {}
    return {
        str(item["key"]): attribute_value(item.get("value"))
        for item in items
        if isinstance(item, dict) and "key" in item
    }


def _span(raw: dict[str, Any], resource: dict[str, Any]) -> Span | None:
    trace_id = normalise_id(_get(raw, "traceId"), 16)
    span_id = normalise_id(_get(raw, "spanId"), 8)
    if not trace_id or not span_id:
        return None
    status = _get(raw, "status") or {}
    return Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=normalise_id(_get(raw, "parentSpanId"), 8),
        name=str(raw.get("name", "")),
        kind=_enum(raw.get("kind"), KINDS, "SPAN_KIND_"),
        start_ns=_nanos(_get(raw, "startTimeUnixNano")),
        end_ns=_nanos(_get(raw, "endTimeUnixNano")),
        status=_enum(status.get("code"), STATUSES, "STATUS_CODE_"),
        status_message=str(status.get("message") or ""),
        resource=resource,
        raw_attributes=raw.get("attributes"),
        raw_events=raw.get("events"),
    )


def _raw_spans(request: Any) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(span as stored, its resource's attributes) for every span of one request."""
    for resource_spans in _get(request, "resourceSpans") or []:
        resource = attributes((resource_spans.get("resource") or {}).get("attributes"))
        for scope_spans in _get(resource_spans, "scopeSpans") or []:
            for raw in scope_spans.get("spans") or []:
                if isinstance(raw, dict):
                    yield raw, resource


def _request(line: bytes | str) -> dict[str, Any] | None:
    try:
        request = json.loads(line)
    except ValueError:
        return None
    return request if isinstance(request, dict) else None


def spans_of_line(line: bytes | str) -> list[Span]:
    """Every span of one stored line; none for a line that is not a whole request."""
    request = _request(line)
    spans: list[Span] = []
    if request is None:
        return spans
    try:
        for raw, resource in _raw_spans(request):
            span = _span(raw, resource)
            if span is not None:
                spans.append(span)
    except (AttributeError, TypeError):
        return spans  # a malformed request: what was whole before the fault
    return spans


# --- the store ----------------------------------------------------------------------------


def trace_files(directory: Path, modified_since_ns: int = 0) -> list[Path]:
    """Every stored file, rotated ones included; a file last written before
    ``modified_since_ns`` cannot hold a span that started after it, and is left out."""
    if not directory.is_dir():
        return []
    found = []
    for path in sorted(directory.iterdir()):
        try:
            stat = path.stat()
        except OSError:
            continue
        if ".jsonl" in path.name and path.is_file() and stat.st_mtime_ns >= modified_since_ns:
            found.append(path)
    return found


def _lines(paths: Iterable[Path]) -> Iterator[bytes]:
    for path in paths:
        try:
            with path.open("rb") as stream:
                yield from stream
        except OSError:
            continue  # rotated away or removed while we read


def scan(paths: Iterable[Path], needles: Iterable[str] = ()) -> Iterator[Span]:
    """Spans of the lines that contain one of ``needles`` (all lines when none): a substring
    test on raw bytes is far cheaper than parsing every line."""
    raw_needles = [needle.encode() for needle in needles]
    for line in _lines(paths):
        if raw_needles and not any(needle in line for needle in raw_needles):
            continue
        yield from spans_of_line(line)


def is_trace_id(text: str) -> bool:
    return TRACE_ID.fullmatch(text) is not None


def spans_of_traces(paths: list[Path], trace_ids: Iterable[str]) -> dict[str, list[Span]]:
    """Each trace's spans, a span stored twice counted once."""
    wanted = {trace_id.lower() for trace_id in trace_ids}
    if not wanted:
        return {}  # no needle would mean every line
    needles = [
        form for trace_id in wanted for form in (trace_id, trace_id.upper(), base64_id(trace_id))
    ]
    traces: dict[str, dict[str, Span]] = {trace_id: {} for trace_id in wanted}
    for span in scan(paths, needles):
        if span.trace_id in traces:
            traces[span.trace_id].setdefault(span.span_id, span)
    return {
        trace_id: sorted(spans.values(), key=lambda s: s.start_ns)
        for trace_id, spans in traces.items()
        if spans
    }


def traces_carrying(paths: list[Path], key: str) -> set[str]:
    """Ids of the traces with a span whose correlation id or order id is ``key``."""
    needle = json.dumps(key)[1:-1]  # as it appears inside a JSON string
    return {
        span.trace_id
        for span in scan(paths, [needle])
        if any(span.attributes.get(name) == key for name in KEY_ATTRIBUTES)
    }


@dataclass(frozen=True)
class Lookup:
    traces: dict[str, list[Span]]  # by trace id, the earliest trace first
    matched_by: str  # "trace id" or "correlation or order id"


def lookup(directory: Path, ident: str) -> Lookup:
    """A trace by its id, else the traces a correlation id or order id belongs to (a
    client's correlation id may itself look like a trace id)."""
    paths = trace_files(directory)
    ident = ident.strip()
    if is_trace_id(ident):
        found = spans_of_traces(paths, [ident])
        if found:
            return Lookup(found, "trace id")
    found = spans_of_traces(paths, traces_carrying(paths, ident))
    ordered = dict(sorted(found.items(), key=lambda item: item[1][0].start_ns))
    return Lookup(ordered, "correlation or order id")


# --- summaries ----------------------------------------------------------------------------


@dataclass(slots=True)
class TraceSummary:
    """What ranking needs of a trace, kept small: a full store holds ~10^5 traces."""

    trace_id: str
    start_ns: int
    end_ns: int
    span_count: int = 0
    services: set[str] = field(default_factory=set)
    error: bool = False
    # The span without a parent, else the earliest one.
    root_name: str = ""
    root_service: str = ""
    _root_rank: tuple[bool, int] | None = field(default=None, repr=False)
    _seen: set[str] = field(default_factory=set, repr=False)

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_ns - self.start_ns)

    def add(
        self,
        span_id: str,
        has_parent: bool,
        start_ns: int,
        end_ns: int,
        error: bool,
        name: str,
        service: str,
    ) -> None:
        if span_id in self._seen:
            return  # stored twice
        self._seen.add(span_id)
        self.span_count += 1
        self.start_ns = min(self.start_ns, start_ns)
        self.end_ns = max(self.end_ns, end_ns)
        self.services.add(service)
        self.error = self.error or error
        rank = (has_parent, start_ns)
        if self._root_rank is None or rank < self._root_rank:
            self._root_rank, self.root_name, self.root_service = rank, name, service


def summarise(lines: Iterable[bytes | str]) -> dict[str, TraceSummary]:
    """Summaries of every trace in the lines, without building a Span per span."""
    summaries: dict[str, TraceSummary] = {}
    for line in lines:
        request = _request(line)
        if request is None:
            continue
        try:
            for raw, resource in _raw_spans(request):
                trace_id = normalise_id(_get(raw, "traceId"), 16)
                span_id = normalise_id(_get(raw, "spanId"), 8)
                if not trace_id or not span_id:
                    continue
                start, end = (
                    _nanos(_get(raw, "startTimeUnixNano")),
                    _nanos(_get(raw, "endTimeUnixNano")),
                )
                summary = summaries.get(trace_id)
                if summary is None:
                    summary = summaries[trace_id] = TraceSummary(trace_id, start, end)
                status = _get(raw, "status") or {}
                summary.add(
                    span_id,
                    bool(_get(raw, "parentSpanId")),
                    start,
                    end,
                    _enum(status.get("code"), STATUSES, "STATUS_CODE_") == "error",
                    str(raw.get("name", "")),
                    str(resource.get("service.name", "unknown")),
                )
        except (AttributeError, TypeError):
            continue
    return summaries


def slowest(directory: Path, count: int, since_ns: int = 0) -> list[TraceSummary]:
    """The ``count`` longest traces that started at or after ``since_ns``: duration is the
    last end minus the first start over the trace's spans."""
    summaries = summarise(_lines(trace_files(directory, modified_since_ns=since_ns)))
    recent = [s for s in summaries.values() if s.start_ns >= since_ns]
    recent.sort(key=lambda s: (-s.duration_ns, s.start_ns))
    return recent[:count]
