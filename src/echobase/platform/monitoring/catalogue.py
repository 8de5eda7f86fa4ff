"""The one description of what echobase watches: recording rules, alerts and dashboard
panels. The rules file Prometheus loads, the console dashboard it serves, and the Grafana
dashboard and rules YAML shipped in the package are all rendered from these lists.

Expressions carry placeholders each renderer fills in its own way:
``<window>`` the rate window (``5m``-ish for Prometheus, ``$__rate_interval`` for Grafana),
``<sel>`` the label matchers of one environment (and, in the console's table, one colour),
``<threshold>`` an alert's threshold from the settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from echobase.app.queues import DEAD_LETTER_QUEUE, ORDER_QUEUE
from echobase.platform.monitoring.settings import MonitoringSettings, duration

WINDOW = "<window>"
SELECTOR = "<sel>"
THRESHOLD = "<threshold>"

# --- recording rules ------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordingRule:
    record: str
    expr: str


REQUESTS_RATE = "colour:echobase_http_requests:rate"
ERRORS_RATE = "colour:echobase_http_errors:rate"
ERRORS_RATIO = "colour:echobase_http_errors:ratio"
LATENCY_P99 = "colour:echobase_http_request_duration_seconds:p99"
STORED_RATE = "colour:echobase_orders_stored:rate"

# Per environment and colour: the colour is a target label of every ephemeral service.
RECORDING_RULES: tuple[RecordingRule, ...] = (
    RecordingRule(
        REQUESTS_RATE, "sum by (env, colour) (rate(echobase_http_requests_total[<window>]))"
    ),
    RecordingRule(
        ERRORS_RATE,
        'sum by (env, colour) (rate(echobase_http_requests_total{status=~"5.."}[<window>]))',
    ),
    # No requests: 0/0 is NaN, and NaN is above no threshold.
    RecordingRule(ERRORS_RATIO, f"{ERRORS_RATE} / {REQUESTS_RATE}"),
    RecordingRule(
        LATENCY_P99,
        "histogram_quantile(0.99, sum by (env, colour, le) "
        "(rate(echobase_http_request_duration_seconds_bucket[<window>])))",
    ),
    RecordingRule(
        STORED_RATE, "sum by (env, colour) (rate(echobase_orders_stored_total[<window>]))"
    ),
)

# --- alerts -------------------------------------------------------------------------------

Severity = Literal["critical", "warning"]


@dataclass(frozen=True)
class AlertRule:
    name: str
    severity: Severity
    expr: str  # may hold <threshold>
    threshold: str | None  # the MonitoringSettings field <threshold> reads
    for_setting: str  # the MonitoringSettings field of its `for:`
    summary: str  # Prometheus alert templates: $labels, $value
    description: str

    def expression(self, settings: MonitoringSettings) -> str:
        if self.threshold is None:
            return self.expr
        return self.expr.replace(THRESHOLD, f"{getattr(settings, self.threshold):g}")

    def for_duration(self, settings: MonitoringSettings) -> str:
        return duration(getattr(settings, self.for_setting))


# Which program an alert is about, for people: "api-gateway (green)", "prometheus (durable)".
_WHERE = (
    "{{ $labels.service }} ({{ with $labels.colour }}{{ . }}{{ else }}{{ $labels.layer }}{{ end }})"
)

ALERTS: tuple[AlertRule, ...] = (
    AlertRule(
        name="EchobaseLiveColourErrors",
        severity="critical",
        # echobase_live_colour comes from the platform's own target: joined on the colour.
        expr=(f"({ERRORS_RATIO} > <threshold>) and on (env, colour) (echobase_live_colour == 1)"),
        threshold="live_error_ratio",
        for_setting="live_errors_for_seconds",
        summary="live colour {{ $labels.colour }} answers {{ $value | humanizePercentage }} 5xx",
        description=(
            "{{ $value | humanizePercentage }} of the answers of {{ $labels.colour }}, the "
            "live colour of {{ $labels.env }}, are server errors: users see them. Compare "
            "with the idle colour and roll back (`echobase rollback`) if it is the release."
        ),
    ),
    AlertRule(
        name="EchobaseQueueBacklog",
        severity="warning",
        expr=(
            "max by (env, colour, queue) "
            f'(echobase_queue_oldest_message_age_seconds{{queue="{ORDER_QUEUE}"}}) > <threshold>'
        ),
        threshold="queue_age_seconds",
        for_setting="queue_age_for_seconds",
        summary=(
            "orders wait in {{ $labels.colour }}'s queue: the oldest is "
            "{{ $value | humanizeDuration }} old"
        ),
        description=(
            "The oldest order in {{ $labels.queue }} of colour {{ $labels.colour }} "
            "({{ $labels.env }}) has waited {{ $value | humanizeDuration }}: its order "
            "processor is stopped, failing or too slow."
        ),
    ),
    AlertRule(
        name="EchobaseDeadLetters",
        severity="warning",
        expr=(
            "sum by (env, colour, queue) "
            f'(echobase_queue_messages{{queue="{DEAD_LETTER_QUEUE}"}}) > 0'
        ),
        threshold=None,
        for_setting="dead_letters_for_seconds",
        summary="{{ $value }} order(s) in {{ $labels.colour }}'s dead-letter queue",
        description=(
            "{{ $value }} order(s) failed every attempt in colour {{ $labels.colour }} "
            "({{ $labels.env }}) and wait in {{ $labels.queue }}; the colour's order-processor "
            "log says why."
        ),
    ),
    AlertRule(
        name="EchobaseTargetDown",
        severity="critical",
        expr="up == 0",
        threshold=None,
        for_setting="target_down_for_seconds",
        summary=f"{_WHERE} does not answer Prometheus",
        description=(
            f"Prometheus of {{{{ $labels.env }}}} cannot scrape {_WHERE} at "
            "{{ $labels.instance }}: the program is stopped or hung (see `echobase status`)."
        ),
    ),
)

# --- dashboard panels -----------------------------------------------------------------------

Unit = Literal["per_second", "ratio", "seconds", "count", "live"]
PanelKind = Literal["graph", "stat", "table"]


@dataclass(frozen=True)
class Panel:
    title: str
    expr: str  # <sel> and <window>; one series per colour unless a table
    unit: Unit
    kind: PanelKind = "graph"
    legend: tuple[str, ...] = ("colour",)


FIRING_ALERTS = Panel(
    "Firing alerts",
    'ALERTS{<sel>,alertstate="firing"}',
    "count",
    kind="table",
    legend=("alertname", "severity", "colour", "service"),
)

PANELS: tuple[Panel, ...] = (
    Panel("Live colour", "max by (colour) (echobase_live_colour{<sel>})", "live", kind="stat"),
    Panel(
        "Requests per second",
        "sum by (colour) (rate(echobase_http_requests_total{<sel>}[<window>]))",
        "per_second",
    ),
    Panel(
        "Error rate (5xx share)",
        'sum by (colour) (rate(echobase_http_requests_total{<sel>,status=~"5.."}[<window>]))'
        " / sum by (colour) (rate(echobase_http_requests_total{<sel>}[<window>]))",
        "ratio",
    ),
    Panel(
        "Latency p99",
        "histogram_quantile(0.99, sum by (colour, le) "
        "(rate(echobase_http_request_duration_seconds_bucket{<sel>}[<window>])))",
        "seconds",
    ),
    Panel(
        "Queue depth",
        f'sum by (colour) (echobase_queue_messages{{<sel>,queue="{ORDER_QUEUE}"}})',
        "count",
    ),
    Panel(
        "Oldest queued order",
        "max by (colour) "
        f'(echobase_queue_oldest_message_age_seconds{{<sel>,queue="{ORDER_QUEUE}"}})',
        "seconds",
    ),
    Panel(
        "Dead-lettered orders",
        f'sum by (colour) (echobase_queue_messages{{<sel>,queue="{DEAD_LETTER_QUEUE}"}})',
        "count",
    ),
    Panel(
        "Orders stored per second",
        "sum by (colour) (rate(echobase_orders_stored_total{<sel>}[<window>]))",
        "per_second",
    ),
    # Markers: non-zero in the windows where traffic moved to that colour.
    Panel(
        "Switches",
        "sum by (colour) (increase(echobase_switches_total{<sel>}[<window>]))",
        "count",
    ),
    FIRING_ALERTS,
)
SWITCHES = next(panel for panel in PANELS if panel.title == "Switches")


def fill(expr: str, selector: str, window: str) -> str:
    return expr.replace(SELECTOR, selector).replace(WINDOW, window)
