"""Reading the programs' logs: each format's time and level, continuation lines, the merge
across programs and rotated files, the filters, and following files as they grow and rotate."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from echobase.platform.observability import logs as observability_logs
from echobase.platform.observability.filters import iso_utc, parse_since
from echobase.platform.observability.log_lines import parse_line
from echobase.platform.observability.log_view import human_line, json_line
from echobase.platform.observability.logs import (
    Assembler,
    LogFilter,
    LogRecord,
    MergedLogs,
    UnknownService,
    log_sources,
    select_sources,
)
from echobase.platform.stack import Stack, resolve_ports
from observe_support import START, service_log_line, write_lines


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _local(text: str) -> datetime:
    """A naive time as the machine's local time (what MariaDB and Python's logging print)."""
    return datetime.fromisoformat(text).astimezone().astimezone(UTC)


@pytest.mark.parametrize(
    ("line", "time", "level", "message"),
    [
        (
            '{"time": "2026-12-05T10:00:00.123456Z", "level": "warning", "event": "slow"}',
            _utc("2026-12-05T10:00:00.123456+00:00"),
            "warning",
            "slow",
        ),
        (  # older service lines
            '{"event": "gateway started", "level": "info", '
            '"timestamp": "2026-12-05T10:21:41.906053Z"}',
            _utc("2026-12-05T10:21:41.906053+00:00"),
            "info",
            "gateway started",
        ),
        (
            "2026-12-05 10:20:33 0 [Warning] Could not increase number of max_open_files",
            _local("2026-12-05T10:20:33"),
            "warning",
            "Could not increase number of max_open_files",
        ),
        (
            "2026-12-05 10:20:33 0 [Note] InnoDB: Buffer pool(s) load completed",
            _local("2026-12-05T10:20:33"),
            "info",
            "InnoDB: Buffer pool(s) load completed",
        ),
        (
            'ts=2026-12-05T10:20:35.914Z caller=main.go:551 level=info msg="Starting Prometheus"',
            _utc("2026-12-05T10:20:35.914+00:00"),
            "info",
            'caller=main.go:551 msg="Starting Prometheus"',
        ),
        (
            "time=2026-12-05T10:00:00.000Z level=WARN source=x msg=late",
            _utc("2026-12-05T10:00:00+00:00"),
            "warning",
            "source=x msg=late",
        ),
        (
            "2026-12-05 10:20:31,162 werkzeug \x1b[33mPress CTRL+C to quit\x1b[0m",
            _local("2026-12-05T10:20:31.162"),
            None,
            "werkzeug Press CTRL+C to quit",
        ),
        (
            "2026-12-05 10:20:31,162 werkzeug \x1b[31m\x1b[1mWARNING: This is a development "
            "server.\x1b[0m",
            _local("2026-12-05T10:20:31.162"),
            "warning",
            "werkzeug WARNING: This is a development server.",
        ),
        (
            '127.0.0.1 - - [05/Dec/2026 10:00:00] "POST / HTTP/1.1" 200 -',
            _local("2026-12-05T10:00:00"),
            None,
            '127.0.0.1 - - [05/Dec/2026 10:00:00] "POST / HTTP/1.1" 200 -',
        ),
        (
            "2026/12/05 10:00:00 [emerg] 1234#1234: bind() to 127.0.0.1:443 failed",
            _local("2026-12-05T10:00:00"),
            "critical",
            "1234#1234: bind() to 127.0.0.1:443 failed",
        ),
        (
            "2026-12-05 10:20:30,788 CRIT Supervisor is running as root.",
            _local("2026-12-05T10:20:30.788"),
            "critical",
            "Supervisor is running as root.",
        ),
        ("INFO:     Started server process [8514]", None, "info", "Started server process [8514]"),
        ("nginx: [emerg] unknown directive", None, "critical", "unknown directive"),
    ],
)
def test_each_format_gives_its_time_level_and_message(
    line: str, time: datetime | None, level: str | None, message: str
) -> None:
    parsed = parse_line(line + "\n")
    assert parsed.time == time
    assert parsed.level == level
    assert parsed.message == message
    assert not parsed.continues


@pytest.mark.parametrize(
    "line",
    [
        "Traceback (most recent call last):",
        '  File "/app/main.py", line 3, in <module>',
        "ValueError: boom",
        " * Running on http://127.0.0.1:4566",
        "",
    ],
)
def test_lines_without_time_or_level_continue_the_line_before(line: str) -> None:
    assert parse_line(line).continues


def _stack(home: Path) -> Stack:
    return Stack(home.resolve(), resolve_ports())


def _source(home: Path, program: str):  # type: ignore[no-untyped-def]
    return next(s for s in log_sources(_stack(home), "devlocal") if s.program == program)


def test_continuation_lines_inherit_time_level_and_ids(tmp_path: Path) -> None:
    assembler = Assembler(_source(tmp_path, "echobase-blue-api-gateway"))
    trace = "5b8efff798038103d269b633813fc60c"
    lines = [
        "INFO:     Started server process [1]",  # before any time: waits for one
        service_log_line(START, "unhandled error", level="error", trace_id=trace),
        "Traceback (most recent call last):",
        "ValueError: boom",
        "INFO:     Shutting down",  # its own record: its own level, no ids
    ]
    records = [record for line in lines for record in assembler.feed(line)]
    assert [r.level for r in records] == ["info", "error", "error", "error", "info"]
    assert all(r.time == START for r in records)
    assert [r.time_inferred for r in records] == [True, False, True, True, True]
    assert [r.continued for r in records] == [False, False, True, True, False]
    assert [r.trace_id for r in records] == [None, trace, trace, trace, None]
    assert records[0].service == "api-gateway" and records[0].colour == "blue"


def _log(home: Path, program: str, lines: list[str], suffix: str = "") -> Path:
    return write_lines(home / "logs" / f"{program}.log{suffix}", lines)


def _merged(home: Path, *names: str, colour: str | None = None, **keep: object) -> MergedLogs:
    sources = select_sources(log_sources(_stack(home), "devlocal"), names, colour)
    return MergedLogs(sources, LogFilter(**keep))  # type: ignore[arg-type]


def _at(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


def test_programs_and_rotated_files_merge_in_time_order(tmp_path: Path) -> None:
    _log(
        tmp_path,
        "echobase-blue-api-gateway",
        [service_log_line(_at(1), "oldest", time_key="timestamp")],
        ".2",
    )
    _log(tmp_path, "echobase-blue-api-gateway", [service_log_line(_at(4), "rotated")], ".1")
    _log(
        tmp_path,
        "echobase-blue-api-gateway",
        [service_log_line(_at(6), "current"), service_log_line(_at(9), "last")],
    )
    _log(
        tmp_path,
        "echobase-green-order-processor",
        [
            service_log_line(_at(2), "consumed", service="order-processor", colour="green"),
            service_log_line(_at(7), "stored", service="order-processor", colour="green"),
        ],
    )
    mariadb_time = _at(5).astimezone().strftime("%Y-%m-%d %H:%M:%S")  # local, as MariaDB
    _log(tmp_path, "echobase-devlocal-durable-mariadb", [f"{mariadb_time} 0 [Note] ready"])
    _log(tmp_path, "echobase-ci-durable-mariadb", [f"{mariadb_time} 0 [Note] other env"])
    records = list(_merged(tmp_path).backlog())
    assert [r.message for r in records] == [
        "oldest",
        "consumed",
        "rotated",
        "ready",
        "current",
        "stored",
        "last",
    ]
    assert [r.program for r in records][3] == "echobase-devlocal-durable-mariadb"
    assert records[3].service == "mariadb" and records[3].colour == "devlocal"


def test_selection_by_role_program_and_colour(tmp_path: Path) -> None:
    sources = log_sources(_stack(tmp_path), "devlocal")
    assert len(sources) == 11  # 5 durable programs and 3 per colour
    gateways = select_sources(sources, ["api-gateway"])
    assert [s.program for s in gateways] == [
        "echobase-blue-api-gateway",
        "echobase-green-api-gateway",
    ]
    chosen = select_sources(sources, ["nginx", "echobase-green-sqs"])
    assert [s.program for s in chosen] == [
        "echobase-devlocal-durable-nginx",
        "echobase-green-sqs",
    ]
    assert {s.program for s in select_sources(sources, [], "green")} == {
        "echobase-green-sqs",
        "echobase-green-order-processor",
        "echobase-green-api-gateway",
    }
    with pytest.raises(UnknownService) as refused:
        select_sources(sources, ["api-gateway", "gatway"])
    assert "'gatway'" in str(refused.value) and "order-processor" in str(refused.value)
    with pytest.raises(UnknownService):
        select_sources(sources, ["echobase-ci-durable-nginx"])  # another environment's


def test_filters_by_level_trace_and_since(tmp_path: Path) -> None:
    trace = "5b8efff798038103d269b633813fc60c"
    _log(
        tmp_path,
        "echobase-blue-api-gateway",
        [
            service_log_line(_at(1), "debugging", level="debug"),
            service_log_line(_at(2), "accepted", trace_id=trace, correlation_id="c-1"),
            service_log_line(_at(4), "refused", level="warning", correlation_id="c-2"),
            service_log_line(_at(5), "failed", level="error", trace_id=trace),
            "Traceback (most recent call last):",
            service_log_line(_at(6), "unrelated", level="error", trace_id="0" * 32),
            "Traceback (most recent call last):",
            "INFO:     Shutting down",
        ],
    )
    _log(
        tmp_path,
        "echobase-blue-sqs",
        [_at(3).astimezone().strftime('127.0.0.1 - - [%d/%b/%Y %H:%M:%S] "POST /" 200 -')],
    )

    def events(**keep: object) -> list[str]:
        return [r.message.split(" ")[0] for r in _merged(tmp_path, **keep).backlog()]

    assert events(min_level="warning") == [
        "refused",
        "failed",
        "Traceback",
        "unrelated",
        "Traceback",
    ]
    # Lines naming no level (the queue server's access line) count as info.
    assert events(min_level="info") == [
        "accepted",
        "127.0.0.1",
        "refused",
        "failed",
        "Traceback",
        "unrelated",
        "Traceback",
        "Shutting",
    ]
    assert events(trace=trace) == ["accepted", "failed", "Traceback"]
    assert events(trace="c-2") == ["refused"]
    assert events(since=_at(5)) == ["failed", "Traceback", "unrelated", "Traceback", "Shutting"]


def test_since_skips_rotated_files_written_before_it(tmp_path: Path) -> None:
    old = _log(tmp_path, "echobase-blue-api-gateway", [service_log_line(_at(1), "old")], ".1")
    _log(tmp_path, "echobase-blue-api-gateway", [service_log_line(_at(100), "new")])
    stamp = _at(2).timestamp()
    os.utime(old, (stamp, stamp))
    merged = _merged(tmp_path, since=_at(50))
    assert [r.message for r in merged.backlog()] == ["new"]


def test_since_enters_a_long_file_near_its_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = []
    for n in range(6000):
        lines.append(service_log_line(_at(n), f"event {n}", level="error" if n % 7 else "info"))
        if n % 7:
            lines += ["Traceback (most recent call last):", f"ValueError: {n}"]
    _log(tmp_path, "echobase-blue-api-gateway", lines)
    everything = list(_merged(tmp_path).backlog())
    assert len(everything) == len(lines)

    parsed: list[str] = []

    def counting(raw: str):  # type: ignore[no-untyped-def]
        parsed.append(raw)
        return parse_line(raw)

    monkeypatch.setattr(observability_logs, "parse_line", counting)
    since = _at(4500)
    windowed = list(_merged(tmp_path, since=since).backlog())
    assert windowed == [r for r in everything if r.time >= since]
    assert windowed[0].message == "event 4500" and windowed[1].continued
    assert len(parsed) < len(lines) / 3  # most of the file was never read


def test_the_human_line_and_the_json_object(tmp_path: Path) -> None:
    line = service_log_line(
        datetime(2026, 12, 5, 10, 0, 0, 123456, tzinfo=UTC),
        "order accepted",
        level="warning",
        order_id="o-1",
        note="two words",
        span_id="eee19b7ec3c1b174",
        exception="Traceback (most recent call last):\nValueError: boom",
    )
    record = Assembler(_source(tmp_path, "echobase-blue-api-gateway")).feed(line)[0]
    text = human_line(record).plain
    first, *rest = text.splitlines()
    assert first.startswith("10:00:00.123 api-gateway[blue]")
    assert first.split()[2:5] == ["WARNING", "order", "accepted"]
    assert 'order_id=o-1 note="two words"' in first
    assert "span_id" not in first and "release" not in first
    assert rest == ["Traceback (most recent call last):", "ValueError: boom"]
    document = json_line(record)
    assert document == {
        **json.loads(line),
        "time": "2026-12-05T10:00:00.123456Z",
        "program": "echobase-blue-api-gateway",
    }

    plain = Assembler(_source(tmp_path, "echobase-devlocal-durable-mariadb")).feed(
        "2026-12-05 10:20:33 0 [ERROR] Aborted"
    )[0]
    assert json_line(plain) == {
        "service": "mariadb",
        "colour": "devlocal",
        "message": "2026-12-05 10:20:33 0 [ERROR] Aborted",
        "level": "error",
        "time": iso_utc(_local("2026-12-05T10:20:33")),
        "program": "echobase-devlocal-durable-mariadb",
    }


def _messages(records: list[LogRecord]) -> list[str]:
    return [r.message for r in records]


def test_following_reads_appends_partial_lines_rotation_and_truncation(tmp_path: Path) -> None:
    path = _log(tmp_path, "echobase-blue-api-gateway", [service_log_line(_at(1), "before")])
    merged = _merged(tmp_path, "echobase-blue-api-gateway", "echobase-green-api-gateway")
    # The last line is still being written when the backlog is read: it waits for its end.
    with path.open("a") as stream:
        stream.write(service_log_line(_at(2), "split")[:20])
    assert _messages(list(merged.backlog(follow=True))) == ["before"]
    assert merged.poll() == []
    with path.open("a") as stream:
        stream.write(service_log_line(_at(2), "split")[20:] + "\n")
    assert _messages(merged.poll()) == ["split"]

    # supervisor's rotation: a last line lands in the file just before it is renamed.
    write_lines(path, [service_log_line(_at(3), "just before rotation")])
    path.rename(path.with_name(path.name + ".1"))
    write_lines(path, [service_log_line(_at(4), "after rotation")])
    assert _messages(merged.poll()) == ["just before rotation", "after rotation"]

    # Truncated in place: read again from its start.
    path.write_text("")
    assert merged.poll() == []
    write_lines(path, [service_log_line(_at(5), "after truncation")])
    assert _messages(merged.poll()) == ["after truncation"]

    # A program whose log did not exist yet is picked up when it appears.
    green = _log(tmp_path, "echobase-green-api-gateway", [service_log_line(_at(6), "green up")])
    assert _messages(merged.poll()) == ["green up"]
    assert green.exists()
    merged.close()


def test_follow_stops_when_told_and_closes_its_files(tmp_path: Path) -> None:
    _log(tmp_path, "echobase-blue-api-gateway", [service_log_line(_at(1), "backlog")])
    merged = _merged(tmp_path, "api-gateway")
    seen: list[str] = []
    polls = iter([False, False, True])

    def stopped(interval: float) -> bool:
        if interval == 0:
            return False
        if len(seen) == 1:
            write_lines(
                tmp_path / "logs" / "echobase-green-api-gateway.log",
                [service_log_line(_at(2), "appended", colour="green")],
            )
        return next(polls)

    merged.follow(lambda record: seen.append(record.message), stopped)
    assert seen == ["backlog", "appended"]
    assert all(log.handle is None for log in merged.logs)


def test_since_takes_durations_and_iso_times() -> None:
    now = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    assert parse_since("30s", now) == now - timedelta(seconds=30)
    assert parse_since("10m", now) == now - timedelta(minutes=10)
    assert parse_since("2h", now) == now - timedelta(hours=2)
    assert parse_since("1d", now) == now - timedelta(days=1)
    assert parse_since("1h30m", now) == now - timedelta(minutes=90)
    assert parse_since("2026-12-05T10:00:00Z", now) == datetime(2026, 12, 5, 10, tzinfo=UTC)
    assert parse_since("2026-12-05T11:00:00+01:00", now) == datetime(2026, 12, 5, 10, tzinfo=UTC)
    assert parse_since("2026-12-05T10:00:00", now) == _local("2026-12-05T10:00:00")
    for bad in ("", "10x", "yesterday", "m10"):
        with pytest.raises(ValueError, match="--since"):
            parse_since(bad, now)
