"""Synthetic telemetry in the formats the services write, for the readers' tests: OTLP JSON
lines (an ExportTraceServiceRequest per line, as the Collector's file exporter writes them)
and structlog JSON log lines."""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

START = datetime(2026, 12, 5, 10, 0, 0, tzinfo=UTC)
T0 = int(START.timestamp()) * 1_000_000_000
MS = 1_000_000


def new_trace_id() -> str:
    return secrets.token_hex(16)


def new_span_id() -> str:
    return secrets.token_hex(8)


def otlp_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, list):
        return {"arrayValue": {"values": [otlp_value(v) for v in value]}}
    if isinstance(value, dict):
        return {"kvlistValue": {"values": otlp_attributes(value)}}
    return {"stringValue": str(value)}


def otlp_attributes(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": key, "value": otlp_value(value)} for key, value in values.items()]


@dataclass
class SpanSpec:
    """One span as a test describes it: times in ms after T0."""

    trace_id: str
    name: str
    start_ms: float
    duration_ms: float
    parent: str = ""
    span_id: str = field(default_factory=new_span_id)
    kind: int = 2
    status: int = 0
    status_message: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    def otlp(self) -> dict[str, Any]:
        start = T0 + int(self.start_ms * MS)
        span: dict[str, Any] = {
            "traceId": self.trace_id,
            "spanId": self.span_id,
            "name": self.name,
            "kind": self.kind,
            "startTimeUnixNano": str(start),
            "endTimeUnixNano": str(start + int(self.duration_ms * MS)),
            "attributes": otlp_attributes(self.attributes),
            "status": {"code": self.status, "message": self.status_message} if self.status else {},
            "events": self.events,
        }
        if self.parent:
            span["parentSpanId"] = self.parent
        return span


def resource(service: str, colour: str = "blue", release: str = "0.1.0-abc") -> dict[str, Any]:
    return {
        "attributes": otlp_attributes(
            {
                "service.name": service,
                "service.version": release,
                "echobase.colour": colour,
                "echobase.release": release,
                "deployment.environment.name": "devlocal",
            }
        )
    }


def request_line(service: str, spans: list[SpanSpec], colour: str = "blue") -> str:
    """One ExportTraceServiceRequest, as one line of a trace file."""
    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": resource(service, colour),
                    "scopeSpans": [
                        {"scope": {"name": "echobase"}, "spans": [s.otlp() for s in spans]}
                    ],
                }
            ]
        }
    )


def protobuf_style(line: str) -> str:
    """The same request as protobuf's generic JSON mapping with proto field names writes
    it: snake_case, base64 ids, enums by name."""
    request = json.loads(line)

    def b64(hex_id: str) -> str:
        return base64.b64encode(bytes.fromhex(hex_id)).decode()

    kinds = ["UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"]
    out: dict[str, Any] = {"resource_spans": []}
    for rs in request["resourceSpans"]:
        scope_spans = []
        for ss in rs["scopeSpans"]:
            spans = []
            for s in ss["spans"]:
                span = {
                    "trace_id": b64(s["traceId"]),
                    "span_id": b64(s["spanId"]),
                    "name": s["name"],
                    "kind": f"SPAN_KIND_{kinds[s['kind']]}",
                    "start_time_unix_nano": s["startTimeUnixNano"],
                    "end_time_unix_nano": s["endTimeUnixNano"],
                    "attributes": [
                        {"key": a["key"], "value": {"string_value": str(*a["value"].values())}}
                        for a in s["attributes"]
                    ],
                }
                if s.get("parentSpanId"):
                    span["parent_span_id"] = b64(s["parentSpanId"])
                if s["status"]:
                    codes = ["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"]
                    span["status"] = {
                        "code": codes[s["status"]["code"]],
                        "message": s["status"]["message"],
                    }
                spans.append(span)
            scope_spans.append({"scope": ss["scope"], "spans": spans})
        out["resource_spans"].append({"resource": rs["resource"], "scope_spans": scope_spans})
    return json.dumps(out)


def write_lines(path: Path, lines: list[str], end: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as stream:
        stream.write("".join(line + end for line in lines))
    return path


def service_log_line(
    when: datetime,
    event: str,
    service: str = "api-gateway",
    colour: str = "blue",
    level: str = "info",
    time_key: str = "time",
    **fields: Any,
) -> str:
    """A structlog line as the services write it."""
    stamp = when.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    return json.dumps(
        {
            time_key: stamp,
            "level": level,
            "event": event,
            "service": service,
            "colour": colour,
            "release": "0.1.0-abc",
            **fields,
        }
    )
