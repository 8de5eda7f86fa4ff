"""One line of a program's log, whatever wrote it: when, how severe, and what it says.

Formats met in the programs' logs (stdout and stderr together):
- our Python services: one JSON object per line (``time`` or ``timestamp``, ``level``,
  ``event``, then fields); uvicorn's own lines (``INFO:     Started server process``) carry
  a level but no time;
- MariaDB ``2026-12-05 10:00:00 0 [Note] ...``; Python's logging and supervisor
  ``2026-12-05 10:00:00,162 name ...``; nginx ``2026/12/05 10:00:00 [warn] 12#12: ...``;
- Prometheus logfmt ``ts=2026-12-05T10:00:00.000Z ... level=info msg="..."`` (or ``time=``);
- werkzeug (moto) ``127.0.0.1 - - [05/Dec/2026 10:00:00] "POST / HTTP/1.1" 200 -``.
A line with neither time nor level (a traceback's, say) continues the line before it.
Times without a zone are the machine's local time, as the programs print them."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from echobase.platform.observability.filters import as_utc, normalise_level

_EXTRA_DIGITS = re.compile(r"(\.\d{6})\d+")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_LEADING_TIME = re.compile(
    r"^(\d{4})[-/](\d{2})[-/](\d{2})[T ](\d{2}):(\d{2}):(\d{2})"
    r"(?:[.,](\d{1,9}))?(Z|[+-]\d{2}:?\d{2})?"
)
# After a leading time: an optional thread id (MariaDB), then a level word, bracketed or not.
_LEVEL_AFTER_TIME = re.compile(r"^\s*(?:\d+\s+)?\[?([A-Za-z]+)\]?(?=[\s:#]|$)")
# Python's "%(asctime)s %(name)s %(message)s" with a message that starts "WARNING: ...".
_LEVEL_AFTER_NAME = re.compile(r"^\s*[\w.]+\s+([A-Z]+):\s")
_LOGFMT_TIME = re.compile(r'(?:^|\s)(?:time|ts)=("?)([0-9][^"\s]*)\1(?=\s|$)')
_LOGFMT_LEVEL = re.compile(r'(?:^|\s)level=("?)(\w+)\1(?=\s|$)')
_CLF_TIME = re.compile(r"\[(\d{2})/([A-Z][a-z]{2})/(\d{4})[ :](\d{2}):(\d{2}):(\d{2})")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# No time but a level: uvicorn's "INFO:     ...", nginx's "nginx: [emerg] ...".
_UNTIMED_LEVEL = re.compile(r"^(?:nginx: \[(\w+)\]\s*|([A-Za-z]+):\s+)")
TIME_KEYS = ("time", "timestamp", "ts", "@timestamp")
LEVEL_KEYS = ("level", "levelname", "severity")
MESSAGE_KEYS = ("event", "msg", "message")


@dataclass(frozen=True)
class ParsedLine:
    text: str  # the line, without its newline or terminal colour codes
    time: datetime | None  # aware, UTC
    level: str | None  # one of filters.LEVELS
    message: str  # what it says, once the time and level are taken off
    fields: dict[str, Any] | None  # a JSON line's own fields

    @property
    def continues(self) -> bool:
        """Part of the line before it (a traceback line): it has nothing of its own."""
        return self.time is None and self.level is None and self.fields is None


def parse_time_value(value: Any) -> datetime | None:
    """A JSON time field: ISO 8601 text or seconds (or milliseconds) since 1970."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = value / 1000 if value > 1e11 else value
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        return _iso(value)
    return None


def _iso(text: str) -> datetime | None:
    text = text.strip()
    if len(text) > 27:  # fromisoformat takes at most microseconds; Go may print nanoseconds
        text = _EXTRA_DIGITS.sub(r"\1", text)
    try:
        return as_utc(datetime.fromisoformat(text))
    except ValueError:
        return None


def _leading_time(match: re.Match[str]) -> datetime | None:
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        naive = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micro
        )
    except ValueError:
        return None
    if zone is None:
        return as_utc(naive)
    return _iso(naive.isoformat() + ("+00:00" if zone == "Z" else zone))


def _clf_time(match: re.Match[str]) -> datetime | None:
    day, month, year, hour, minute, second = match.groups()
    if month not in _MONTHS:
        return None
    try:
        naive = datetime(
            int(year), _MONTHS.index(month) + 1, int(day), int(hour), int(minute), int(second)
        )
    except ValueError:
        return None
    return as_utc(naive)


def _first(fields: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return next((fields[key] for key in keys if key in fields), None)


def _json_line(text: str) -> ParsedLine | None:
    try:
        fields = json.loads(text)
    except ValueError:
        return None
    if not isinstance(fields, dict):
        return None
    level = _first(fields, LEVEL_KEYS)
    message = _first(fields, MESSAGE_KEYS)
    return ParsedLine(
        text=text,
        time=parse_time_value(_first(fields, TIME_KEYS)),
        level=normalise_level(level) if isinstance(level, str) else None,
        message="" if message is None else str(message),
        fields=fields,
    )


def parse_line(raw: str) -> ParsedLine:
    text = raw.rstrip("\r\n")
    if "\x1b" in text:
        text = _ANSI.sub("", text)
    if text.startswith("{"):
        parsed = _json_line(text)
        if parsed is not None:
            return parsed
    leading = _LEADING_TIME.match(text)
    if leading:
        rest = text[leading.end() :]
        level_match = _LEVEL_AFTER_TIME.match(rest)
        level = normalise_level(level_match.group(1)) if level_match else None
        if level is not None and level_match is not None:
            rest = rest[level_match.end() :]
        elif named := _LEVEL_AFTER_NAME.match(rest):
            level = normalise_level(named.group(1))
        return ParsedLine(text, _leading_time(leading), level, rest.strip(), None)
    logfmt_time = _LOGFMT_TIME.search(text)
    if logfmt_time:
        logfmt_level = _LOGFMT_LEVEL.search(text)
        message = _LOGFMT_TIME.sub("", text)
        if logfmt_level:
            message = _LOGFMT_LEVEL.sub("", message)
        return ParsedLine(
            text,
            _iso(logfmt_time.group(2)),
            normalise_level(logfmt_level.group(2)) if logfmt_level else None,
            message.strip(),
            None,
        )
    clf = _CLF_TIME.search(text, 0, 120)
    if clf:
        return ParsedLine(text, _clf_time(clf), None, text, None)
    untimed = _UNTIMED_LEVEL.match(text)
    if untimed:
        level = normalise_level(untimed.group(1) or untimed.group(2))
        if level is not None:
            return ParsedLine(text, None, level, text[untimed.end() :].strip(), None)
    return ParsedLine(text, None, None, text, None)
