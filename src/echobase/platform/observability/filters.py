"""What ``echobase trace`` and ``echobase logs`` share: the ``--since`` window, the order of
log levels, and how instants are written for machines."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

# Lowest first. Other spellings (MariaDB's "Note", nginx's "emerg", Go's "WARN") map onto these.
LEVELS = ("debug", "info", "warning", "error", "critical")
_LEVEL_ALIASES = {
    "trace": "debug",
    "debug": "debug",
    "info": "info",
    "information": "info",
    "note": "info",
    "notice": "info",
    "warn": "warning",
    "warning": "warning",
    "err": "error",
    "error": "error",
    "crit": "critical",
    "critical": "critical",
    "fatal": "critical",
    "alert": "critical",
    "emerg": "critical",
    "emergency": "critical",
    "panic": "critical",
}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def normalise_level(word: str | None) -> str | None:
    """One of LEVELS, or None for a word that is no level."""
    if not word:
        return None
    return _LEVEL_ALIASES.get(word.strip().lower())


def level_rank(level: str) -> int:
    return LEVELS.index(level)


def parse_level(text: str) -> str:
    """A ``--level`` value; ValueError names the accepted ones."""
    level = normalise_level(text)
    if level is None:
        raise ValueError(f"unknown level {text!r}: choose one of {', '.join(LEVELS)}")
    return level


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """A ``--since`` value as an aware UTC instant: a duration back from now (``30s``, ``10m``,
    ``2h``, ``1d``, or several such as ``1h30m``) or an ISO 8601 time (local time when it
    names no zone, as ``date`` would print it)."""
    now = now or datetime.now(UTC)
    spec = text.strip()
    if spec and _DURATION.sub("", spec) == "":
        seconds = sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION.findall(spec))
        return now - timedelta(seconds=seconds)
    try:
        instant = datetime.fromisoformat(spec)
    except ValueError:
        raise ValueError(
            f"cannot read --since {text!r}: give a duration such as 30s, 10m, 2h, 1d "
            "or an ISO 8601 time such as 2026-12-05T10:00:00Z"
        ) from None
    return as_utc(instant)


def as_utc(instant: datetime) -> datetime:
    """Naive instants are the machine's local time (what MariaDB and Python's logging print)."""
    if instant.tzinfo is UTC:
        return instant
    if instant.tzinfo is None:
        instant = instant.astimezone()
    return instant.astimezone(UTC)


def iso_utc(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def from_unix_nanos(nanos: int) -> datetime:
    """Exact to the microsecond (a float of nanoseconds since 1970 is not)."""
    seconds, rest = divmod(nanos, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=rest // 1000)


def to_unix_nanos(instant: datetime) -> int:
    delta = as_utc(instant) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
