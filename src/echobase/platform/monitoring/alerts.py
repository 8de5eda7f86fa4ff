"""Firing alerts as ``echobase status`` shows them, read from Prometheus's
``/api/v1/alerts`` answer (the fetching is the caller's)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class FiringAlert:
    name: str
    severity: str
    colour: str | None
    service: str | None
    since: str  # when it became active (RFC 3339, as Prometheus says it)
    summary: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    @property
    def about(self) -> str:
        """The colour and the service, whichever the alert names."""
        return " / ".join(part for part in (self.colour, self.service) if part) or "-"


def firing_alerts(answer: Mapping[str, Any]) -> list[FiringAlert]:
    """Firing ones only (pending alerts have not lasted their `for:` yet), oldest first."""
    if answer.get("status") != "success":
        raise ValueError(f"Prometheus answered {answer.get('status')!r}: {answer.get('error')}")
    found = []
    for alert in answer["data"]["alerts"]:
        if alert.get("state") != "firing":
            continue
        labels = alert.get("labels", {})
        found.append(
            FiringAlert(
                name=labels.get("alertname", "?"),
                severity=labels.get("severity", "none"),
                colour=labels.get("colour"),
                service=labels.get("service"),
                since=alert.get("activeAt", ""),
                summary=alert.get("annotations", {}).get("summary", ""),
            )
        )
    return sorted(found, key=lambda alert: (alert.since, alert.name))


def since_text(since: str, now: dt.datetime) -> str:
    """``2026-01-31 10:21:03 UTC (3m05s ago)`` from Prometheus's RFC 3339 ``activeAt``."""
    try:
        moment = dt.datetime.fromisoformat(since).astimezone(dt.UTC)
    except ValueError:
        return since or "?"
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC ({age(since, now)} ago)"


def age(since: str, now: dt.datetime) -> str:
    """``3m05s`` from an RFC 3339 time to ``now``; ``?`` when it cannot be read."""
    try:
        moment = dt.datetime.fromisoformat(since)
    except ValueError:
        return "?"
    seconds = max(0, int((now - moment).total_seconds()))
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"
