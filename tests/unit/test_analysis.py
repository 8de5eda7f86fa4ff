"""Canary and switch analysis: the ``[analysis]`` settings, the pure verdict and queries, the
watch loop on a fake clock, and ``sample`` against a small local stand-in for Prometheus."""

from __future__ import annotations

import json
import re
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from echobase.app.queues import DEAD_LETTER_QUEUE
from echobase.platform.bluegreen.analysis import (
    AnalysisError,
    ColourSample,
    Verdict,
    judge,
    queries,
    sample,
    too_quiet,
    watch,
)
from echobase.platform.bluegreen.analysis_settings import AnalysisSettings, AnalysisSettingsError

SETTINGS = AnalysisSettings()
QUIET = ColourSample(requests=1050, errors=0, p99_seconds=0.1, dead_letters=0)


def healthy(**changes: object) -> ColourSample:
    return replace(ColourSample(120, 0, 0.1, 0), **changes)  # type: ignore[arg-type]


# --- settings -----------------------------------------------------------------------------


def test_settings_defaults_and_a_table():
    assert SETTINGS.steps == (10, 50, 100)
    assert (SETTINGS.min_requests, SETTINGS.max_dead_letters) == (20, 0)
    settings = AnalysisSettings.from_table(
        {"step_seconds": 2, "interval_seconds": 0.5, "steps": [25, 100], "max_p99_ratio": 1}
    )
    assert settings.steps == (25, 100)
    assert (settings.step_seconds, settings.interval_seconds) == (2, 0.5)
    assert settings.after_switch_seconds == 60
    assert AnalysisSettings.from_table({"after_switch_seconds": 0}).after_switch_seconds == 0


@pytest.mark.parametrize(
    ("table", "complaint"),
    [
        ({"step": 1}, "[analysis] has no setting ['step']"),
        ({"step_seconds": "1m"}, "analysis.step_seconds must be a number"),
        ({"step_seconds": True}, "analysis.step_seconds must be a number"),
        ({"step_seconds": -1}, "analysis.step_seconds must be at least 0"),
        ({"after_switch_seconds": float("inf")}, "analysis.after_switch_seconds"),
        ({"interval_seconds": 0}, "analysis.interval_seconds must be above 0"),
        ({"min_requests": 2.5}, "analysis.min_requests must be an integer"),
        ({"max_dead_letters": -1}, "analysis.max_dead_letters must be at least 0"),
        ({"max_error_ratio_increase": 2}, "analysis.max_error_ratio_increase is a share"),
        ({"max_p99_ratio": 0.5}, "analysis.max_p99_ratio must be at least 1"),
        ({"min_p99_seconds": -0.1}, "analysis.min_p99_seconds must be at least 0"),
        ({"steps": []}, "analysis.steps must be a list"),
        ({"steps": "10,100"}, "analysis.steps must be a list"),
        ({"steps": [10, 10, 100]}, "analysis.steps [10, 10, 100] must increase"),
        ({"steps": [50, 10, 100]}, "must increase"),
        ({"steps": [10, 50]}, "analysis.steps [10, 50] must end at 100"),
        ({"steps": [0, 100]}, "analysis.steps holds 0"),
        ({"steps": [10, 100.0]}, "analysis.steps holds 100.0"),
        ({"steps": [True, 100]}, "analysis.steps holds True"),
        ({"steps": [10, 150]}, "1-100"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(table, complaint):
    with pytest.raises(AnalysisSettingsError, match=re.escape(complaint)):
        AnalysisSettings.from_table(table)


# --- judge --------------------------------------------------------------------------------


def test_a_healthy_new_colour_passes():
    verdict = judge("green", healthy(errors=1), "blue", QUIET, 0, SETTINGS)
    assert (verdict.result, verdict.reasons) == ("pass", ())
    assert (verdict.new_colour, verdict.old_colour, verdict.settings) == (
        "green",
        "blue",
        SETTINGS,
    )


def test_too_many_5xx_fails_with_the_numbers():
    new = healthy(errors=37.2)  # 31.0 % of 120
    verdict = judge("green", new, "blue", QUIET, 0, SETTINGS)
    assert verdict.result == "fail"
    (reason,) = verdict.reasons
    assert "green answered 31.0% 5xx (37 of 120 requests) against blue's 0.0%" in reason
    assert "+31.0 points, over the limit of +2.0" in reason
    assert verdict.summary() == (
        "green: 31.0% 5xx of 120 requests vs blue 0.0% of 1,050 (limit +2.0 points); "
        "p99 0.100s vs 0.100s"
    )


def test_the_5xx_limit_is_on_the_increase_over_the_old_colour():
    old = replace(QUIET, errors=105)  # blue already answers 10 % 5xx
    assert judge("green", healthy(errors=14.4), "blue", old, 0, SETTINGS).result == "pass"
    assert judge("green", healthy(errors=15), "blue", old, 0, SETTINGS).result == "fail"


@pytest.mark.parametrize("old", [None, ColourSample(0, 0, None, None)])
def test_without_old_traffic_the_old_ratio_counts_as_zero(old):
    assert judge("green", healthy(errors=2), "blue", old, 0, SETTINGS).result == "pass"
    verdict = judge("green", healthy(errors=3), "blue", old, 0, SETTINGS)
    assert verdict.result == "fail"
    assert "against 0% (blue had no requests)" in verdict.reasons[0]


def test_a_slow_new_colour_fails_against_the_old_p99():
    verdict = judge("green", healthy(p99_seconds=0.5), "blue", QUIET, 0, SETTINGS)
    assert verdict.result == "fail"
    assert verdict.reasons == (
        "green's p99 latency 0.500s is over 0.250s (2 x blue's 0.100s, at least 0.250s)",
    )
    old = replace(QUIET, p99_seconds=0.4)
    assert judge("green", healthy(p99_seconds=0.8), "blue", old, 0, SETTINGS).result == "pass"
    verdict = judge("green", healthy(p99_seconds=0.81), "blue", old, 0, SETTINGS)
    assert "over 0.800s" in verdict.reasons[0]


def test_a_fast_new_p99_never_fails():
    old = replace(QUIET, p99_seconds=0.01)
    assert judge("green", healthy(p99_seconds=0.2), "blue", old, 0, SETTINGS).result == "pass"


def test_without_an_old_p99_only_the_floor_counts():
    old = replace(QUIET, p99_seconds=None)
    assert judge("green", healthy(p99_seconds=0.25), "blue", old, 0, SETTINGS).result == "pass"
    verdict = judge("green", healthy(p99_seconds=0.3), "blue", None, 0, SETTINGS)
    assert verdict.reasons == ("green's p99 latency 0.300s is over 0.250s (blue's p99 unknown)",)


def test_new_dead_letters_fail_whatever_the_traffic():
    verdict = judge("green", healthy(requests=2, dead_letters=5), "blue", QUIET, 3, SETTINGS)
    assert verdict.result == "fail"
    assert verdict.reasons == (
        "2 message(s) reached green's dead-letter queue during the window (allowed 0)",
    )
    lenient = replace(SETTINGS, max_dead_letters=2)
    assert judge("green", healthy(dead_letters=5), "blue", QUIET, 3, lenient).result == "pass"
    # Unknown depth, now or at the start: not judged.
    assert judge("green", healthy(dead_letters=5), "blue", QUIET, None, SETTINGS).result == "pass"
    assert judge("green", healthy(dead_letters=None), "blue", QUIET, 0, SETTINGS).result == "pass"


def test_too_few_requests_is_inconclusive_even_when_they_all_failed():
    new = ColourSample(requests=3, errors=3, p99_seconds=9.0, dead_letters=0)
    verdict = judge("green", new, "blue", QUIET, 0, SETTINGS)
    assert verdict.result == "inconclusive"
    assert verdict.reasons == ("only 3 requests reached green (needs 20)",)
    nothing = judge("green", ColourSample(0, 0, None, None), "blue", None, None, SETTINGS)
    assert nothing.result == "inconclusive"
    assert nothing.summary() == "green: no requests (limit +2.0 points)"


def test_every_breach_is_a_reason():
    new = ColourSample(requests=100, errors=50, p99_seconds=3.0, dead_letters=1)
    verdict = judge("blue", new, "green", QUIET, 0, SETTINGS)
    assert verdict.result == "fail"
    assert [reason.split(" ")[0] for reason in verdict.reasons] == ["blue", "blue's", "1"]


def test_error_ratio_is_unknown_without_requests():
    assert ColourSample(0, 0, None, None).error_ratio is None
    assert ColourSample(200, 5, None, None).error_ratio == 0.025


# --- queries ------------------------------------------------------------------------------


def test_queries_of_one_colour_over_whole_seconds():
    users = 'env="ci",colour="green",route!~"/health|/metrics"'
    assert queries("ci", "green", 29.2) == {
        "requests": f"sum(increase(echobase_http_requests_total{{{users}}}[30s]))",
        "errors": (f'sum(increase(echobase_http_requests_total{{{users},status=~"5.."}}[30s]))'),
        "p99": (
            "histogram_quantile(0.99, sum by (le) (rate("
            f"echobase_http_request_duration_seconds_bucket{{{users}}}[30s])))"
        ),
        "dead_letters": (
            f'sum(echobase_queue_messages{{env="ci",colour="green",queue="{DEAD_LETTER_QUEUE}"}})'
        ),
    }
    assert "[1s]" in queries("devlocal", "blue", 0)["requests"]
    assert "[60s]" in queries("devlocal", "blue", 60)["requests"]


@pytest.mark.parametrize(
    ("env", "colour"), [('ci"}', "green"), ("ci", "Green"), ("", "blue"), ("ci", "blue,x")]
)
def test_queries_refuse_labels_that_could_escape_their_quotes(env, colour):
    with pytest.raises(ValueError, match="letters, digits"):
        queries(env, colour, 10)


# --- watch --------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def run_watch(samples, window: float, settings: AnalysisSettings = SETTINGS):
    """``samples``: elapsed -> (new, old). Returns the verdict, the windows asked, the ticks."""
    clock = FakeClock()
    asked: list[float] = []
    ticks: list[tuple[str, float]] = []

    def sample_pair(window_seconds: float) -> tuple[ColourSample, ColourSample | None]:
        asked.append(window_seconds)
        clock.now += 0.25  # Prometheus takes a moment to answer
        return samples(window_seconds)

    verdict = watch(
        sample_pair,
        "green",
        "blue",
        settings,
        window,
        0,
        on_tick=lambda v, elapsed: ticks.append((v.result, elapsed)),
        clock=clock,
        sleep=clock.sleep,
    )
    return verdict, asked, ticks, clock


def test_watch_passes_at_the_end_of_the_window():
    verdict, asked, ticks, clock = run_watch(lambda _: (healthy(), QUIET), window=20)
    assert verdict.result == "pass"
    # On a fixed schedule: the time Prometheus took is not added to each interval.
    assert asked == [5, 10, 15, 20]
    assert ticks == [("pass", 5), ("pass", 10), ("pass", 15), ("pass", 20)]
    assert clock.slept == [5, 4.75, 4.75, 4.75]


def test_watch_fails_at_once_on_a_breach():
    def samples(window: float):
        return (healthy(errors=60) if window >= 10 else healthy()), QUIET

    verdict, asked, ticks, _ = run_watch(samples, window=60)
    assert verdict.result == "fail"
    assert asked == [5, 10]
    assert [result for result, _ in ticks] == ["pass", "fail"]


def test_watch_is_inconclusive_with_too_few_requests():
    verdict, asked, _, _ = run_watch(lambda _: (healthy(requests=3), QUIET), window=12)
    assert verdict.result == "inconclusive"
    assert verdict.reasons == ("only 3 requests reached green (needs 20)",)
    assert asked == [5, 10, 12]  # the last tick lands on the end of the window


def test_watch_of_an_empty_window_looks_once_over_one_interval():
    verdict, asked, _, clock = run_watch(lambda _: (healthy(), QUIET), window=0)
    assert verdict.result == "pass"
    assert asked == [5]
    assert clock.slept == []


# --- sample against a stand-in Prometheus ---------------------------------------------------


def vector(*values: str) -> dict[str, object]:
    result = [{"metric": {}, "value": [1700000000.0, value]} for value in values]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


class FakePrometheus:
    """Answers /prefix/api/v1/query by the metric named in the query."""

    def __init__(self, answers: dict[str, tuple[int, dict[str, object]]]) -> None:
        self.answers = answers
        self.asked: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(url.query).get("query", [""])[0]
                owner.asked.append(query)
                status, body = 404, {"status": "error", "error": f"no route {url.path}"}
                if url.path == "/prometheus/api/v1/query":
                    status, body = owner.answer(query)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/prometheus/"

    def answer(self, query: str) -> tuple[int, dict[str, object]]:
        for key, answer in self.answers.items():
            if key in query:
                return answer
        return 200, vector()


@pytest.fixture
def prometheus() -> Iterator[FakePrometheus]:
    fake = FakePrometheus({})
    thread = threading.Thread(target=fake.server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()
    thread.join(5)


def test_sample_reads_each_query(prometheus):
    prometheus.answers = {
        'status=~"5.."': (200, vector("7.5")),
        "requests_total": (200, vector("120")),
        "histogram_quantile": (200, vector("0.182")),
        "queue_messages": (200, vector("2")),
    }
    got = sample(prometheus.url, "ci", "green", 29.5)
    assert got == ColourSample(requests=120, errors=7.5, p99_seconds=0.182, dead_letters=2)
    assert sorted(prometheus.asked) == sorted(queries("ci", "green", 29.5).values())


def test_sample_of_a_quiet_colour(prometheus):
    # No series at all, and a p99 of NaN (a histogram with no observations in the window).
    prometheus.answers = {"histogram_quantile": (200, vector("NaN"))}
    assert sample(prometheus.url, "ci", "blue", 10) == ColourSample(0, 0, None, None)


def test_an_error_answer_raises(prometheus):
    prometheus.answers = {
        "histogram_quantile": (
            400,
            {"status": "error", "errorType": "bad_data", "error": "parse error at char 3"},
        )
    }
    with pytest.raises(AnalysisError, match="HTTP 400 bad_data: parse error at char 3"):
        sample(prometheus.url, "ci", "blue", 10)
    prometheus.answers = {"queue_messages": (200, {"status": "error", "error": "too slow"})}
    with pytest.raises(AnalysisError, match=r"refused .*too slow"):
        sample(prometheus.url, "ci", "blue", 10)
    prometheus.answers = {"queue_messages": (200, {"status": "success"})}
    with pytest.raises(AnalysisError, match="unreadable answer"):
        sample(prometheus.url, "ci", "blue", 10)


def test_a_wrong_route_prefix_raises(prometheus):
    with pytest.raises(AnalysisError, match="HTTP 404"):
        sample(prometheus.url.replace("/prometheus/", "/"), "ci", "blue", 10)


def test_a_refused_connection_raises():
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(AnalysisError, match=f"does not answer at http://127.0.0.1:{port}"):
        sample(f"http://127.0.0.1:{port}", "ci", "blue", 10, timeout=1)


def test_only_http_urls_are_asked():
    with pytest.raises(AnalysisError, match="must be http"):
        sample("file:///etc/passwd", "ci", "blue", 10)


def test_a_verdict_summary_without_an_old_colour():
    verdict = Verdict("pass", (), healthy(errors=1.2, p99_seconds=None), None, "green")
    assert verdict.summary() == "green: 1.0% 5xx of 120 requests (limit +2.0 points)"


def test_a_quiet_old_colour_gives_an_inconclusive_verdict_at_once():
    settings = AnalysisSettings(min_requests=20)
    quiet = too_quiet("green", ColourSample(3, 0, None, None), 60, settings)
    assert quiet is not None and quiet.result == "inconclusive"
    assert quiet.reasons == (
        "green served 3 users' requests in the 60s before (needs 20): too quiet to compare",
    )
    assert too_quiet("green", ColourSample(20, 5, 0.1, 0), 60, settings) is None
