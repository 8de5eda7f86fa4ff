"""Deploys, switches and rollbacks as Prometheus counters, for nginx to serve.

No process of ours runs between deploys, so the counts are a file: rendered from the whole
deploy history (append-only, so no count ever goes backwards, and a lost file is rebuilt
whole) and replaced atomically after each event. nginx serves it beside the live-colour
gauge, which it renders from the record of the live colour it routes by (see ``durable.routing``).

What counts, by the colour traffic went TO and the release that colour ran:
- ``echobase_deploys_total``: deploys that finished ``ok`` (promoted, or left ready when not
  switched);
- ``echobase_switches_total``: ``echobase switch`` and ``promote`` commands that moved
  traffic (a switch to the live colour moves nothing);
- ``echobase_rollbacks_total``: ``echobase rollback`` commands, and deploys and switches
  that switched traffic back by themselves (``rolled back``: a smoke test or the analysis);
- ``echobase_canary_aborts_total``: canaries ended without promotion, by hand (``abort``) or
  by their analysis (``aborted``), by the canary's colour and release.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from echobase.platform.bluegreen import history
from echobase.platform.runtime.files import replace_private

UNKNOWN = "unknown"
NO_COLOUR = "none"
COUNTERS = {
    "deploy": ("echobase_deploys_total", "Deploys that finished ok, by colour and release"),
    "switch": ("echobase_switches_total", "Switches of live traffic, by colour switched to"),
    "rollback": (
        "echobase_rollbacks_total",
        "Rollbacks (commanded, or a deploy's own switch back), by colour rolled back to",
    ),
    "abort": (
        "echobase_canary_aborts_total",
        "Canaries ended without promotion (by hand or by their analysis), by canary colour",
    ),
}

Key = tuple[str, str, str]  # (kind, colour, release)


def event_counts(events: Iterable[history.Event]) -> Counter[Key]:
    counts: Counter[Key] = Counter()
    # What each colour runs, as far as the history tells: the release a rollback lands on.
    running: dict[str, str] = {}
    for event in events:
        release = event.release or UNKNOWN
        if event.action == "deploy":
            before = running.get(event.source, UNKNOWN if event.source != NO_COLOUR else NO_COLOUR)
            if event.release:
                running[event.target] = event.release
            if event.result == "ok":
                counts["deploy", event.target, release] += 1
            elif event.result == "rolled back":
                counts["rollback", event.source, before] += 1
            elif event.result == "aborted":
                counts["abort", event.target, release] += 1
        elif event.action in ("switch", "rollback", "promote"):
            kind = "rollback" if event.action == "rollback" else "switch"
            if event.release:
                running[event.target] = event.release
            if event.result == "ok" and event.source != event.target:
                counts[kind, event.target, release] += 1
            elif event.result == "rolled back":
                back = running.get(event.source, UNKNOWN)
                counts["rollback", event.source, back] += 1
        elif event.action == "canary" and event.result == "aborted":
            counts["abort", event.target, release] += 1
        elif event.action == "abort" and event.result == "ok":
            counts["abort", event.source, running.get(event.source, UNKNOWN)] += 1
    return counts


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(events: Iterable[history.Event]) -> str:
    """The counters in Prometheus's text format (HELP and TYPE even before any event)."""
    counts = event_counts(events)
    lines: list[str] = []
    for kind, (name, help_text) in COUNTERS.items():
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
        for (counted, colour, release), value in sorted(counts.items()):
            if counted == kind:
                labels = f'colour="{_label(colour)}",release="{_label(release)}"'
                lines.append(f"{name}{{{labels}}} {value}")
    return "\n".join(lines) + "\n"


def publish(history_dir: Path, path: Path) -> None:
    """Rewrite the counters file from the history, atomically (nginx never reads half)."""
    text = render(history.read(history_dir, limit=None))
    replace_private(path, text)
