"""How a log record is shown: one line for people, one JSON object for machines."""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text

from echobase.platform.observability.filters import iso_utc
from echobase.platform.observability.logs import LogRecord

# Said by the line's prefix already, or the same on every line of a process.
_SHOWN_ELSEWHERE = frozenset(
    {"time", "timestamp", "level", "event", "service", "colour", "release", "span_id"}
)
_WHERE_WIDTH = len("order-processor[green]")
_LEVEL_STYLES = {
    "debug": "dim",
    "info": "green",
    "warning": "yellow",
    "error": "red",
    "critical": "bold red",
}


def _value(value: Any) -> str:
    if isinstance(value, str):
        return value if value and not any(c in value for c in ' ="\n') else json.dumps(value)
    return json.dumps(value, default=str)


def human_parts(record: LogRecord) -> list[tuple[str, str]]:
    """``HH:MM:SS.mmm service[colour] LEVEL message key=value ...`` (UTC times) as (text,
    style) pieces; a JSON line's multi-line ``exception`` follows on its own lines."""
    level_style = _LEVEL_STYLES.get(record.level or "", "")
    parts = [
        (record.time.strftime("%H:%M:%S.") + f"{record.time.microsecond // 1000:03d} ", ""),
        (f"{record.service}[{record.colour}]".ljust(_WHERE_WIDTH), "cyan"),
        (f" {(record.level or '').upper():<8} ", level_style),
    ]
    if record.continued:
        parts.append((record.text, level_style))
        return parts
    parts.append((record.message, "bold" if record.fields is not None else ""))
    trailer = ""
    for key, value in (record.fields or {}).items():
        if key in _SHOWN_ELSEWHERE or (key in ("msg", "message") and value == record.message):
            continue
        if key in ("exception", "stack") and isinstance(value, str) and "\n" in value:
            trailer += "\n" + value.rstrip("\n")
            continue
        parts += [(f" {key}=", "dim"), (_value(value), "")]
    if trailer:
        parts.append((trailer, "red"))
    return parts


def human_line(record: LogRecord) -> Text:
    return Text.assemble(*human_parts(record))


def plain_line(record: LogRecord) -> str:
    """The same line without styles: for output that is not a terminal, and fast."""
    return "".join(text for text, _ in human_parts(record))


def json_line(record: LogRecord) -> dict[str, Any]:
    """A JSON line's own fields (else the line as ``message``), with ``program`` and
    ``time`` as ISO 8601 UTC."""
    if record.fields is not None:
        document = dict(record.fields)
    else:
        document = {"service": record.service, "colour": record.colour, "message": record.text}
        if record.level:
            document["level"] = record.level
    document["time"] = iso_utc(record.time)
    document["program"] = record.program
    if record.continued:
        document["continued"] = True
        for key in ("trace_id", "correlation_id"):
            if getattr(record, key):
                document[key] = getattr(record, key)
    if record.time_inferred:
        document["time_inferred"] = True
    return document
