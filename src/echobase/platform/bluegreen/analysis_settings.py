"""``[analysis]`` in ``echobase.toml``: the canary's steps and what a new colour may do
before it is rolled back. Plain values, validated once; part of the stack's description,
so renderers may read them. ``analysis.py`` asks Prometheus and judges."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields

from echobase.platform.monitoring.settings import refuse_unknown

# An [analysis] table that watches nothing: switches and canaries return at once.
UNWATCHED: Mapping[str, object] = {"after_switch_seconds": 0, "step_seconds": 0}


class AnalysisSettingsError(ValueError):
    """A bad ``[analysis]`` key or value; the message names it."""


@dataclass(frozen=True)
class AnalysisSettings:
    """How long each step is watched and what the new colour may do before it is rolled back.
    Defaults suit a running system; tests shorten the windows."""

    # How long each canary step is watched before the next one.
    step_seconds: float = 60
    # The window watched after a full switch; 0: not watched. A new process is a new
    # target: Prometheus finds it within 5 s (file_sd) and needs two scrapes (15 s apart
    # by default) before increase() says anything, so 30 s was often inconclusive.
    after_switch_seconds: float = 60
    # How often Prometheus is asked during a window.
    interval_seconds: float = 5
    # Below this many requests to the new colour in the window, ratios and latency say
    # nothing: the verdict is inconclusive rather than a pass on two lucky answers.
    min_requests: int = 20
    # The new colour's 5xx share minus the old colour's (0.02 = 2 points).
    max_error_ratio_increase: float = 0.02
    # The new colour's p99 latency over the old colour's.
    max_p99_ratio: float = 2.0
    # A new p99 below this never fails: a fast service may double without anyone noticing.
    min_p99_seconds: float = 0.25
    # Messages that reached the new colour's dead-letter queue during the window.
    max_dead_letters: int = 0
    # Canary percentages when promoting step by step; the last one is the full switch.
    steps: tuple[int, ...] = (10, 50, 100)

    def __post_init__(self) -> None:
        for item in fields(self):
            if item.name == "steps":
                continue
            value = getattr(self, item.name)
            integer = item.name in ("min_requests", "max_dead_letters")
            kinds: tuple[type, ...] = (int,) if integer else (int, float)
            if isinstance(value, bool) or not isinstance(value, kinds):
                kind = "an integer" if integer else "a number"
                raise AnalysisSettingsError(f"analysis.{item.name} must be {kind}")
            if not math.isfinite(value) or value < 0:
                raise AnalysisSettingsError(f"analysis.{item.name} must be at least 0")
        if self.interval_seconds == 0:
            # Asking Prometheus in a tight loop would only load it.
            raise AnalysisSettingsError("analysis.interval_seconds must be above 0")
        if self.max_error_ratio_increase > 1:
            raise AnalysisSettingsError("analysis.max_error_ratio_increase is a share: 0-1")
        if self.max_p99_ratio < 1:
            # Below 1 the new colour would fail for being exactly as fast as the old one.
            raise AnalysisSettingsError("analysis.max_p99_ratio must be at least 1")
        self._check_steps()

    def _check_steps(self) -> None:
        steps = self.steps
        if not isinstance(steps, tuple) or not steps:
            raise AnalysisSettingsError("analysis.steps must be a list of percentages")
        for step in steps:
            if isinstance(step, bool) or not isinstance(step, int) or not 1 <= step <= 100:
                raise AnalysisSettingsError(
                    f"analysis.steps holds {step!r}: each step is a whole percentage 1-100"
                )
        if any(later <= earlier for earlier, later in itertools.pairwise(steps)):
            raise AnalysisSettingsError(f"analysis.steps {list(steps)} must increase")
        if steps[-1] != 100:
            # A promotion that stops short leaves the old colour live with no step to finish.
            raise AnalysisSettingsError(f"analysis.steps {list(steps)} must end at 100")

    @classmethod
    def from_table(cls, table: Mapping[str, object]) -> AnalysisSettings:
        refuse_unknown(cls, table, "analysis", AnalysisSettingsError)
        values = dict(table)
        if isinstance(values.get("steps"), list):
            values["steps"] = tuple(values["steps"])  # type: ignore[arg-type]
        return cls(**values)  # type: ignore[arg-type]
