"""``echobase trace`` and ``echobase logs`` as a user runs them: the installed command, a
state directory of synthetic files (in the services' formats), its output and exit codes."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from echobase.platform.render.durable import DurablePlan
from echobase.platform.stack import Stack
from observe_support import (
    START,
    SpanSpec,
    new_trace_id,
    request_line,
    service_log_line,
    write_lines,
)

ECHOBASE = str(Path(sys.executable).parent / "echobase")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECHOBASE_")}
    env["COLUMNS"] = "200"
    return env


def _run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ECHOBASE, *args, "--home", str(home)],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=home,
        timeout=60,
    )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path


def _traces_dir(home: Path, env: str = "devlocal") -> Path:
    return DurablePlan(Stack.load(home, offset=0, cwd=home), env).traces_dir


def _store_order(home: Path, trace_id: str, start_ms: float, slow_ms: float) -> None:
    server = SpanSpec(
        trace_id,
        "POST /api/v1/orders",
        start_ms,
        10,
        attributes={"echobase.correlation_id": f"corr-{trace_id[:6]}"},
    )
    consume = SpanSpec(
        trace_id,
        "order-processing-queue process",
        start_ms + 20,
        slow_ms,
        parent=server.span_id,
        kind=5,
        attributes={"echobase.order_id": f"order-{trace_id[:6]}"},
    )
    directory = _traces_dir(home)
    write_lines(directory / "api-gateway-blue.jsonl", [request_line("api-gateway", [server])])
    write_lines(
        directory / "order-processor-blue.jsonl", [request_line("order-processor", [consume])]
    )


def test_trace_by_id_and_by_correlation_id_through_the_cli(home: Path) -> None:
    wanted, other = new_trace_id(), new_trace_id()
    _store_order(home, wanted, 0, 30)
    _store_order(home, other, 100, 5)

    shown = _run(home, "trace", wanted)
    assert shown.returncode == 0, shown.stderr
    assert f"trace {wanted}" in shown.stdout
    assert "50.0ms, 2 span(s), services: api-gateway, order-processor" in shown.stdout
    assert "order-processor[blue] order-processing-queue process (consumer)" in shown.stdout

    as_json = _run(home, "trace", f"corr-{wanted[:6]}", "--json")
    assert as_json.returncode == 0, as_json.stderr
    document = json.loads(as_json.stdout)
    assert document["traceId"] == wanted and document["durationMs"] == 50.0
    assert [s["service"] for s in document["spans"]] == ["api-gateway", "order-processor"]

    by_order = json.loads(_run(home, "trace", f"order-{other[:6]}", "--json").stdout)
    assert by_order["traceId"] == other


def test_trace_not_found_says_where_it_looked(home: Path) -> None:
    _store_order(home, new_trace_id(), 0, 5)
    missing = new_trace_id()
    result = _run(home, "trace", missing)
    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert missing in message and "sampled" in message
    assert str(_traces_dir(home)) in message
    in_ci = _run(home, "trace", missing, "--env", "ci", "--json")
    assert in_ci.returncode == 1
    assert json.loads(in_ci.stdout)["tracesDir"] == str(_traces_dir(home, "ci"))


def test_trace_slowest_and_usage_errors(home: Path) -> None:
    fast, slow = new_trace_id(), new_trace_id()
    _store_order(home, fast, 0, 5)
    _store_order(home, slow, 100, 700)
    result = _run(home, "trace", "--slowest", "1", "--since", "2026-12-05T09:00:00Z", "--json")
    assert result.returncode == 0, result.stderr
    ranked = json.loads(result.stdout)["traces"]
    assert [t["traceId"] for t in ranked] == [slow]
    assert ranked[0]["root"] == "POST /api/v1/orders" and ranked[0]["rootService"] == "api-gateway"
    assert ranked[0]["durationMs"] == 720.0 and ranked[0]["spans"] == 2
    table = _run(home, "trace", "--slowest", "5")
    assert table.returncode == 0 and slow in table.stdout and fast in table.stdout
    assert table.stdout.index(slow) < table.stdout.index(fast)
    assert _run(home, "trace").returncode == 2
    assert _run(home, "trace", slow, "--slowest", "1").returncode == 2
    assert _run(home, "trace", "--slowest", "1", "--since", "soon").returncode == 2


def _logs_dir(home: Path) -> Path:
    return Stack.load(home, offset=0, cwd=home).logs_dir


def test_logs_merge_filter_and_refuse_unknown_services(home: Path) -> None:
    logs = _logs_dir(home)
    trace = new_trace_id()
    write_lines(
        logs / "echobase-blue-api-gateway.log",
        [
            "INFO:     Started server process [10]",
            service_log_line(START, "order accepted", trace_id=trace, order_id="o-1"),
            service_log_line(START + timedelta(seconds=2), "slow", level="warning"),
        ],
    )
    write_lines(
        logs / "echobase-blue-order-processor.log",
        [
            service_log_line(
                START + timedelta(seconds=1),
                "order stored",
                service="order-processor",
                trace_id=trace,
            )
        ],
    )
    human = _run(home, "logs")
    assert human.returncode == 0, human.stderr
    assert human.stdout.splitlines() == [
        "10:00:00.000 api-gateway[blue]      INFO     Started server process [10]",
        f"10:00:00.000 api-gateway[blue]      INFO     order accepted trace_id={trace} "
        "order_id=o-1",
        f"10:00:01.000 order-processor[blue]  INFO     order stored trace_id={trace}",
        "10:00:02.000 api-gateway[blue]      WARNING  slow",
    ]
    assert "\x1b[" not in human.stdout  # not a terminal: plain

    traced = _run(home, "logs", "--trace", trace, "--json")
    assert traced.returncode == 0, traced.stderr
    documents = [json.loads(line) for line in traced.stdout.splitlines()]
    assert [(d["event"], d["program"]) for d in documents] == [
        ("order accepted", "echobase-blue-api-gateway"),
        ("order stored", "echobase-blue-order-processor"),
    ]
    assert documents[1]["time"] == "2026-12-05T10:00:01.000000Z"

    only = _run(home, "logs", "api-gateway", "--level", "warning", "--json")
    assert [json.loads(line)["event"] for line in only.stdout.splitlines()] == ["slow"]
    assert _run(home, "logs", "--colour", "green").stdout == ""

    unknown = _run(home, "logs", "gateway")
    assert unknown.returncode == 2
    assert "unknown service 'gateway'" in unknown.stderr and "api-gateway" in unknown.stderr
    assert _run(home, "logs", "--level", "loud").returncode == 2
    assert _run(home, "logs", "--colour", "red").returncode == 2


def _lines_of(process: subprocess.Popen[str]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_logs_follow_prints_appended_lines_and_stops_on_a_signal(
    home: Path, stop: signal.Signals
) -> None:
    log = write_lines(
        _logs_dir(home) / "echobase-green-api-gateway.log",
        [service_log_line(START, "backlog", colour="green")],
    )
    process = subprocess.Popen(
        [ECHOBASE, "logs", "--follow", "--json", "--home", str(home)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        cwd=home,
    )
    try:
        lines = _lines_of(process)
        assert json.loads(lines.get(timeout=30))["event"] == "backlog"
        write_lines(log, [service_log_line(START, "appended", colour="green")])
        # A program that starts after the follower did.
        write_lines(
            _logs_dir(home) / "echobase-devlocal-durable-mariadb.log",
            ["2026-12-05 10:00:05 0 [ERROR] late starter"],
        )
        got = {json.loads(lines.get(timeout=30)).get("event") or "mariadb" for _ in range(2)}
        assert got == {"appended", "mariadb"}
        process.send_signal(stop)
        assert process.wait(timeout=30) == 0
        assert process.stderr is not None
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()  # by its pid
            process.wait()
