"""How often Prometheus looks, over what window rates are taken, and when an alert fires:
the ``[monitoring]`` table of ``echobase.toml``. Defaults suit a running system; tests
shorten every interval so an alert fires within seconds."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields


class MonitoringSettingsError(ValueError):
    """A bad ``[monitoring]`` key or value; the message names it."""


@dataclass(frozen=True)
class MonitoringSettings:
    scrape_interval_seconds: float = 15
    evaluation_interval_seconds: float = 15
    # The window of every rate(): the alerts' recording rules and the dashboard's graphs.
    rate_window_seconds: float = 300
    # More than this share of the live colour's answers are 5xx (0.05 = 5 %).
    live_error_ratio: float = 0.05
    live_errors_for_seconds: float = 300
    # The oldest order waiting in a colour's queue is older than this.
    queue_age_seconds: float = 300
    queue_age_for_seconds: float = 60
    # Anything in a dead-letter queue: an order that failed every attempt.
    dead_letters_for_seconds: float = 0
    # A scraped program does not answer Prometheus.
    target_down_for_seconds: float = 120

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise MonitoringSettingsError(f"monitoring.{field.name} must be a number")
            positive = field.name.endswith("interval_seconds") or field.name in (
                "rate_window_seconds",
                "live_error_ratio",
            )
            if value < 0 or (positive and value == 0):
                raise MonitoringSettingsError(
                    f"monitoring.{field.name} must be {'above' if positive else 'at least'} 0"
                )
        if self.live_error_ratio > 1:
            raise MonitoringSettingsError("monitoring.live_error_ratio is a share: 0-1")
        if self.rate_window_seconds < 2 * self.scrape_interval_seconds:
            # rate() needs two samples in its window, or every graph and ratio stays empty.
            raise MonitoringSettingsError(
                "monitoring.rate_window_seconds must be at least twice scrape_interval_seconds"
            )

    @classmethod
    def from_table(cls, table: Mapping[str, object]) -> MonitoringSettings:
        refuse_unknown(cls, table, "monitoring", MonitoringSettingsError)
        return cls(**table)  # type: ignore[arg-type]

    @property
    def rate_window(self) -> str:
        return duration(self.rate_window_seconds)


def refuse_unknown(
    settings: type, table: Mapping[str, object], section: str, error: type[ValueError]
) -> None:
    """A table of ``echobase.toml`` may hold only the fields of the dataclass it fills."""
    known = {field.name for field in fields(settings)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise error(f"[{section}] has no setting {unknown}: known are {sorted(known)}")


def duration(seconds: float) -> str:
    """A Prometheus duration in the largest unit that says it exactly: 5m, 90s, 1500ms."""
    milliseconds = round(seconds * 1000)
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if milliseconds and milliseconds % size == 0:
            return f"{milliseconds // size}{unit}"
    return f"{milliseconds}ms" if milliseconds else "0s"
