"""The dashboard as a Prometheus console template (served at ``/consoles/echobase.html``).

It uses Debian's console library (``prom.lib``: ``prom_query_drilldown``, the time control)
and the graph JavaScript Prometheus serves (``PromConsole.Graph``). The page head is our
own (``echobase.lib``): Debian's ``prom_console_head`` asks for ``/classic/static/popper.js``
(a directory in Debian's package, so the browser gets a listing where it wanted a script)
and ``vendor/rickshaw/vendor/d3.layout.min.js`` (not shipped; d3 3.x has the layouts
built in). Everything it names is served by the installed Prometheus itself: no network."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence

from echobase.platform.monitoring.catalogue import FIRING_ALERTS, PANELS, Panel, fill
from echobase.platform.monitoring.settings import MonitoringSettings

TEMPLATE_NAME = "echobase.html"
LIBRARY_NAME = "echobase.lib"
DEBIAN_LIBRARY = "prom.lib"

# (prom.lib's value template, suffix) per unit, for the server-side table.
_VALUE_TEMPLATES = {
    "per_second": ("humanizeNoSmallPrefix", "/s"),
    "ratio": ("humanizePercentage", ""),
    "seconds": ("humanizeDuration", ""),
    "count": ("humanizeNoSmallPrefix", ""),
    "live": ("echobase_live", ""),
}
# (PromConsole.NumberFormatter, y units) per unit, for the graphs.
_GRAPH_FORMATS = {
    "per_second": ("humanizeNoSmallPrefix", "/s"),
    "ratio": ("humanizeNoSmallPrefix", "share"),
    "seconds": ("humanize", "s"),
    "count": ("humanizeNoSmallPrefix", ""),
    "live": ("humanizeNoSmallPrefix", "1 = live"),
}

# What the page loads, below Prometheus's /classic/static/ (Debian's package serves these).
STYLESHEETS = (
    "rickshaw/rickshaw.min.css",
    "bootstrap4/css/bootstrap.min.css",
    "css/prom_console.css",
    "vendor/bootstrap4-glyphicons/css/bootstrap-glyphicons.css",
)
SCRIPTS = (
    "d3/d3.min.js",
    "rickshaw/rickshaw.min.js",
    "jquery/jquery.min.js",
    "popper.js/umd/popper.min.js",
    "bootstrap4/js/bootstrap.min.js",
)
GRAPH_SCRIPT = "js/prom_console.js"  # PromConsole.Graph and TimeControl; needs PATH_PREFIX
_STATIC = "{{ pathPrefix }}/classic/static/"


def render_library() -> str:
    """``echobase_head`` (the page head) and ``echobase_live`` (1 -> live, else idle)."""
    return (
        "\n".join(
            [
                "{{/* echobase's additions to Debian's prom.lib, rendered by echobase. */}}",
                '{{ define "echobase_head" }}',
                *(
                    f'<link type="text/css" rel="stylesheet" href="{_STATIC}{css}">'
                    for css in STYLESHEETS
                ),
                *(f'<script src="{_STATIC}{js}"></script>' for js in SCRIPTS),
                '<script>var PATH_PREFIX = "{{ pathPrefix }}";</script>',
                f'<script src="{_STATIC}{GRAPH_SCRIPT}"></script>',
                "{{ end }}",
                '{{ define "echobase_live" }}{{ if eq . 1.0 }}live{{ else }}idle{{ end }}{{ end }}',
            ]
        )
        + "\n"
    )


def _raw(expr: str) -> str:
    """A Go template raw string: PromQL never needs a backtick, and ``{{``/``}}`` would be
    read as template actions in the page's scripts."""
    if "`" in expr or "{{" in expr or "}}" in expr:
        raise ValueError(f"cannot embed {expr!r} in a console template")
    return f"`{expr}`"


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def _value_cell(panel: Panel, selector: str, window: str) -> str:
    template, suffix = _VALUE_TEMPLATES[panel.unit]
    expr = fill(panel.expr, selector, window)
    return (
        f'<td class="text-right">{{{{ template "prom_query_drilldown" '
        f'(args {_raw(expr)} "{suffix}" "{template}") }}}}</td>'
    )


def _graph(panel: Panel, selector: str, window: str) -> list[str]:
    formatter, units = _GRAPH_FORMATS[panel.unit]
    node = f"graph-{_slug(panel.title)}"
    expr = fill(panel.expr, selector, window)
    _raw(expr)  # the same checks: the expression is written into a script
    options = ",\n  ".join(
        [
            f'node: document.querySelector("#{node}")',
            f"expr: {json.dumps(expr)}",
            f"name: {json.dumps(''.join(f'[[{label}]]' for label in panel.legend))}",
            "min: 0",
            f"yUnits: {json.dumps(units)}",
            f"yAxisFormatter: PromConsole.NumberFormatter.{formatter}",
            f"yHoverFormatter: PromConsole.NumberFormatter.{formatter}",
        ]
    )
    return [
        '<div class="col-lg-6">',
        f'<h3 class="echobase-panel">{html.escape(panel.title)}</h3>',
        f'<div id="{node}"></div>',
        "<script>",
        f"new PromConsole.Graph({{\n  {options}\n}});",
        "</script>",
        "</div>",
    ]


def _alerts_table(selector: str) -> list[str]:
    labels = FIRING_ALERTS.legend
    query = _raw(fill(FIRING_ALERTS.expr, selector, ""))
    cells = "".join(f"<td>{{{{ .Labels.{label} }}}}</td>" for label in labels)
    return [
        f'<h2 class="echobase-panel">{html.escape(FIRING_ALERTS.title)}</h2>',
        '<table class="table table-sm table-bordered w-auto" id="firing-alerts">',
        "<tr>" + "".join(f"<th>{label}</th>" for label in labels) + "</tr>",
        f'{{{{ range query {query} | sortByLabel "alertname" }}}}',
        f"<tr>{cells}</tr>",
        "{{ else }}",
        f'<tr><td colspan="{len(labels)}">none</td></tr>',
        "{{ end }}",
        "</table>",
    ]


def render_console(env: str, colours: Sequence[str], settings: MonitoringSettings) -> str:
    window = settings.rate_window
    env_selector = f'env="{env}"'
    live_query = _raw(f"max by (colour) (echobase_live_colour{{{env_selector}}}) == 1")
    shown = [panel for panel in PANELS if panel.kind != "table"]
    header = "<tr><th></th>" + "".join(f"<th>{colour}</th>" for colour in colours) + "</tr>"
    rows = [
        "<tr><td>"
        + html.escape(panel.title)
        + "</td>"
        + "".join(
            _value_cell(panel, f'{env_selector},colour="{colour}"', window) for colour in colours
        )
        + "</tr>"
        for panel in shown
    ]
    graphs = [line for panel in shown for line in _graph(panel, env_selector, window)]
    lines = [
        "<!doctype html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>echobase {env}</title>",
        '{{ template "echobase_head" }}',
        "</head>",
        "<body>",
        '{{ template "prom_content_head" . }}',
        f"<h1>echobase: {env}</h1>",
        '<p>Live colour: <strong id="live-colour">'
        f"{{{{ range query {live_query} }}}}{{{{ .Labels.colour }}}}"
        "{{ else }}unknown{{ end }}</strong>"
        f" &middot; rates over {window}</p>",
        *_alerts_table(env_selector),
        "<h2>Now</h2>",
        '<table class="table table-sm table-bordered w-auto" id="now">',
        header,
        *rows,
        "</table>",
        '<div class="row">',
        *graphs,
        "</div>",
        '{{ template "prom_content_tail" . }}',
        "</body>",
        "</html>",
    ]
    return "\n".join(lines) + "\n"
