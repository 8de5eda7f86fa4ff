"""Automatic canary and switch analysis: while part (or all) of the traffic goes to the new
colour, Prometheus is asked how the new colour answers next to the old one, and a verdict
says whether to go on (pass), to roll back (fail) or that too little traffic came to tell
(inconclusive). The limits are the ``[analysis]`` table of ``echobase.toml``.

``judge`` and ``queries`` are pure so every threshold is unit-tested without Prometheus;
``sample`` is the thin HTTP part, and ``watch`` takes its clock and sleep from the caller so
a test runs a minute-long window in no time.
"""

from __future__ import annotations

import json
import math
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from echobase.app.core.names import HEALTH_PATH, METRICS_PATH
from echobase.app.queues import DEAD_LETTER_QUEUE
from echobase.platform.bluegreen.analysis_settings import (
    AnalysisSettings,
)

Result = Literal["pass", "fail", "inconclusive"]

# Label values go into PromQL between quotes: only plain tokens, so nothing can escape them.
_TOKEN = re.compile(r"[a-z0-9-]+")


class AnalysisError(RuntimeError):
    """Prometheus could not be asked, or answered an error: no verdict can be given."""


@dataclass(frozen=True)
class ColourSample:
    """What Prometheus says of one colour over the window."""

    requests: float  # answers in the window (increase() extrapolates: may be fractional)
    errors: float  # 5xx answers in the window
    p99_seconds: float | None  # None: no latency observed in the window
    dead_letters: float | None  # the colour's dead-letter queue now; None: not scraped

    @property
    def error_ratio(self) -> float | None:
        """The 5xx share; None when nothing was asked, as 0 of 0 is no evidence."""
        return self.errors / self.requests if self.requests > 0 else None


@dataclass(frozen=True)
class Verdict:
    """A judgement of the new colour against the old, with the reasons a person reads."""

    result: Result
    reasons: tuple[str, ...]
    new: ColourSample
    old: ColourSample | None
    # Beyond the brief's four fields: the names and limits that summary() prints.
    new_colour: str = "new"
    old_colour: str = "old"
    settings: AnalysisSettings = field(default_factory=AnalysisSettings)

    def summary(self) -> str:
        """One line: the 5xx shares side by side with the limit, then the p99s if known."""
        limit = f"limit +{_points(self.settings.max_error_ratio_increase)} points"
        line = f"{self.new_colour}: {_share(self.new, 'requests')}"
        if self.old is not None:
            line += f" vs {self.old_colour} {_share(self.old, '')}"
        line += f" ({limit})"
        if self.new.p99_seconds is not None:
            line += f"; p99 {_seconds(self.new.p99_seconds)}"
            if self.old is not None and self.old.p99_seconds is not None:
                line += f" vs {_seconds(self.old.p99_seconds)}"
        return line


def judge(
    new_colour: str,
    new: ColourSample,
    old_colour: str,
    old: ColourSample | None,
    dead_letters_at_start: float | None,
    settings: AnalysisSettings,
) -> Verdict:
    """Pass, fail or inconclusive, from the numbers alone.

    Ratios and latency are judged only once ``min_requests`` reached the new colour; dead
    letters always, since one lost order is enough whatever the traffic."""
    reasons: list[str] = []
    enough = new.requests >= settings.min_requests
    new_ratio = new.error_ratio
    if enough and new_ratio is not None:
        old_ratio = old.error_ratio if old is not None else None
        increase = new_ratio - (old_ratio or 0.0)
        if _over(increase, settings.max_error_ratio_increase):
            against = (
                f"{old_colour}'s {_percent(old_ratio)}"
                if old_ratio is not None
                else f"0% ({old_colour} had no requests)"
            )
            reasons.append(
                f"{new_colour} answered {_percent(new_ratio)} 5xx "
                f"({_count(new.errors)} of {_count(new.requests)} requests) against {against}: "
                f"+{_points(increase)} points, over the limit of "
                f"+{_points(settings.max_error_ratio_increase)}"
            )
    if enough and new.p99_seconds is not None:
        old_p99 = old.p99_seconds if old is not None else None
        if old_p99 is not None:
            limit = max(settings.min_p99_seconds, old_p99 * settings.max_p99_ratio)
            why = (
                f"{settings.max_p99_ratio:g} x {old_colour}'s {_seconds(old_p99)}, "
                f"at least {_seconds(settings.min_p99_seconds)}"
            )
        else:
            limit = settings.min_p99_seconds
            why = f"{old_colour}'s p99 unknown"
        if _over(new.p99_seconds, limit):
            reasons.append(
                f"{new_colour}'s p99 latency {_seconds(new.p99_seconds)} is over "
                f"{_seconds(limit)} ({why})"
            )
    if new.dead_letters is not None and dead_letters_at_start is not None:
        arrived = new.dead_letters - dead_letters_at_start
        if arrived > settings.max_dead_letters:
            reasons.append(
                f"{_count(arrived)} message(s) reached {new_colour}'s dead-letter queue "
                f"during the window (allowed {settings.max_dead_letters})"
            )
    result: Result = "fail" if reasons else "pass"
    if not reasons and not enough:
        result = "inconclusive"
        reasons.append(
            f"only {_count(new.requests)} requests reached {new_colour} "
            f"(needs {settings.min_requests})"
        )
    return Verdict(result, tuple(reasons), new, old, new_colour, old_colour, settings)


def too_quiet(
    old_colour: str, before: ColourSample, window_seconds: float, settings: AnalysisSettings
) -> Verdict | None:
    """An inconclusive verdict, at once, when the old colour served fewer than
    ``min_requests`` users' requests in the window before the watch: with nobody using the
    system (a developer's machine) the window could only end inconclusive, so it is not
    waited for."""
    if before.requests >= settings.min_requests:
        return None
    why = (
        f"{old_colour} served {_count(before.requests)} users' requests in the "
        f"{window_seconds:.0f}s before (needs {settings.min_requests}): too quiet to compare"
    )
    quiet = ColourSample(0, 0, None, None)
    return Verdict("inconclusive", (why,), quiet, before, "new", old_colour, settings)


# The gateway's routes no user calls (its health check, its metrics).
NOT_USERS_ROUTES = (HEALTH_PATH, METRICS_PATH)


def queries(env: str, colour: str, window_seconds: float) -> dict[str, str]:
    """The PromQL of one colour over the last ``window_seconds`` (rounded up, at least 1s)."""
    for name, value in (("environment", env), ("colour", colour)):
        if not isinstance(value, str) or not _TOKEN.fullmatch(value):
            raise ValueError(f"{name} {value!r} must be lower-case letters, digits and '-'")
    if isinstance(window_seconds, bool) or not math.isfinite(window_seconds):
        raise ValueError(f"window {window_seconds!r} must be a finite number of seconds")
    window = f"{max(1, math.ceil(window_seconds))}s"
    where = f'env="{env}",colour="{colour}"'
    # Users' requests only: health checks and Prometheus's own scrapes would dilute them.
    served = f'{where},route!~"{"|".join(NOT_USERS_ROUTES)}"'
    errors = f'{served},status=~"5.."'
    return {
        "requests": f"sum(increase(echobase_http_requests_total{{{served}}}[{window}]))",
        "errors": f"sum(increase(echobase_http_requests_total{{{errors}}}[{window}]))",
        "p99": (
            "histogram_quantile(0.99, sum by (le) "
            f"(rate(echobase_http_request_duration_seconds_bucket{{{served}}}[{window}])))"
        ),
        "dead_letters": f'sum(echobase_queue_messages{{{where},queue="{DEAD_LETTER_QUEUE}"}})',
    }


def sample(
    prometheus_url: str, env: str, colour: str, window_seconds: float, timeout: float = 3
) -> ColourSample:
    """Ask Prometheus (``{prometheus_url}/api/v1/query``, the base including any route
    prefix) for one colour over the window. No series: 0 requests and errors, unknown p99
    and dead letters. Raises AnalysisError when Prometheus does not answer or refuses."""
    base = prometheus_url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise AnalysisError(f"Prometheus URL {prometheus_url!r} must be http(s)")
    values = {
        key: _query(base, expr, timeout)
        for key, expr in queries(env, colour, window_seconds).items()
    }
    return ColourSample(
        requests=values["requests"] or 0.0,
        errors=values["errors"] or 0.0,
        p99_seconds=values["p99"],
        dead_letters=values["dead_letters"],
    )


def _query(base: str, expr: str, timeout: float) -> float | None:
    """One instant query: its single value, None for no series or NaN."""
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback
            answer = json.load(response)
    except urllib.error.HTTPError as exc:
        # Prometheus says what is wrong in a JSON body even with a 4xx/5xx status.
        raise AnalysisError(
            f"Prometheus at {base} refused {expr!r}: HTTP {exc.code} {_error_of(exc)}"
        ) from None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise AnalysisError(f"Prometheus does not answer at {base}: {reason}") from None
    try:
        if answer["status"] != "success":
            raise AnalysisError(
                f"Prometheus at {base} refused {expr!r}: "
                f"{answer.get('errorType', 'error')}: {answer.get('error', '')}"
            )
        data = answer["data"]
        if data["resultType"] == "scalar":
            raw = [data["result"][1]]
        else:
            raw = [series["value"][1] for series in data["result"]]
        numbers = [float(value) for value in raw]
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        raise AnalysisError(f"Prometheus at {base} sent an unreadable answer to {expr!r}") from None
    numbers = [value for value in numbers if not math.isnan(value)]
    if not numbers:
        return None
    # The queries aggregate to one series; should there be more, the worst one counts.
    return max(numbers)


def _error_of(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read())
        return f"{body.get('errorType', 'error')}: {body.get('error', '')}"
    except (OSError, ValueError, AttributeError):
        return str(exc.reason)


def watch(
    sample_pair: Callable[[float], tuple[ColourSample, ColourSample | None]],
    new_colour: str,
    old_colour: str,
    settings: AnalysisSettings,
    window_seconds: float,
    dead_letters_at_start: float | None,
    on_tick: Callable[[Verdict, float], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Verdict:
    """Judge every ``interval_seconds`` over the time since the watch began; a fail returns
    at once (rolling back sooner loses fewer orders), otherwise the verdict at the end of
    the window counts. At least one tick, even for a window of 0."""
    if isinstance(window_seconds, bool) or not 0 <= window_seconds < math.inf:
        raise ValueError(f"window {window_seconds!r} must be a finite number of seconds >= 0")
    interval = settings.interval_seconds
    start = clock()
    tick = 0
    while True:
        tick += 1
        # Ticks on a fixed schedule from the start, so slow answers do not drift it; the
        # last one lands on the end of the window.
        due = min(tick * interval, window_seconds)
        wait = start + due - clock()
        if wait > 0:
            sleep(wait)
        elapsed = clock() - start
        new, old = sample_pair(max(elapsed, interval))
        verdict = judge(new_colour, new, old_colour, old, dead_letters_at_start, settings)
        if on_tick is not None:
            on_tick(verdict, elapsed)
        if verdict.result == "fail" or due >= window_seconds:
            return verdict


def _over(value: float, limit: float) -> bool:
    """Above the limit by more than float noise: 14.4 of 120 against 10 % is +2 points."""
    return value > limit and not math.isclose(value, limit, rel_tol=1e-9, abs_tol=1e-12)


def _percent(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio * 100:.1f}%"


def _points(ratio: float) -> str:
    return f"{ratio * 100:.1f}"


def _count(value: float) -> str:
    return f"{round(value):,}"


def _seconds(value: float) -> str:
    return f"{value:.3f}s"


def _share(sample: ColourSample, noun: str) -> str:
    """``31.0% 5xx of 120 requests``, or ``no requests``."""
    if sample.requests <= 0:
        return "no requests"
    of = f"{_count(sample.requests)} {noun}".rstrip()
    return f"{_percent(sample.error_ratio)}{' 5xx' if noun else ''} of {of}"
