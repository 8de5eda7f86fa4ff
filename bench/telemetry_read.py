"""How long ``echobase trace`` and ``echobase logs`` take on a full store.

Writes, in a temporary directory, a trace store of ``--trace-mib`` of OTLP JSON lines (each
line one export request of ``--spans-per-line`` spans from several traces, the way a batch
span processor exports them; 5 spans per trace across two services) and programs' logs of
``--log-mib`` in all (11 programs, each a current file and three rotated ones, JSON lines
and MariaDB/werkzeug lines mixed). Then times, median of ``--rounds``:

- a lookup by trace id (the trace is in the last file), by correlation id, and a miss;
- ``--slowest 10`` over every stored trace;
- the merged log backlog, formatted as the CLI prints it, and with ``--trace`` filtering.

    .venv/bin/python bench/telemetry_read.py [--trace-mib 256] [--log-mib 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
if str(SRC) not in sys.path:  # run from a checkout without the package installed
    sys.path.insert(0, str(SRC))

from echobase.platform.observability.log_view import plain_line  # noqa: E402
from echobase.platform.observability.logs import (  # noqa: E402
    LogFilter,
    MergedLogs,
    log_sources,
)
from echobase.platform.observability.traces import lookup, slowest  # noqa: E402
from echobase.platform.stack import Stack, resolve_ports  # noqa: E402

START = datetime(2026, 12, 5, 10, tzinfo=UTC)
T0 = int(START.timestamp()) * 1_000_000_000
MS = 1_000_000


def _attrs(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "key": k,
            "value": {"intValue": str(v)} if isinstance(v, int) else {"stringValue": str(v)},
        }
        for k, v in values.items()
    ]


def _resource(service: str) -> dict[str, Any]:
    return {
        "attributes": _attrs(
            {
                "service.name": service,
                "service.version": "0.1.0-abc",
                "echobase.colour": "blue",
                "echobase.release": "0.1.0-abc",
                "deployment.environment.name": "devlocal",
            }
        )
    }


def _trace_spans(trace_id: str, start_ms: float) -> dict[str, list[dict[str, Any]]]:
    ids = [secrets.token_hex(8) for _ in range(5)]
    order_id = f"order-{trace_id[:12]}"

    def span(i: int, name: str, offset: float, length: float, kind: int, **attributes: Any):  # type: ignore[no-untyped-def]
        begin = T0 + int((start_ms + offset) * MS)
        return {
            "traceId": trace_id,
            "spanId": ids[i],
            "parentSpanId": ids[i - 1] if i else "",
            "name": name,
            "kind": kind,
            "startTimeUnixNano": str(begin),
            "endTimeUnixNano": str(begin + int(length * MS)),
            "attributes": _attrs(attributes),
            "status": {},
        }

    return {
        "api-gateway": [
            span(
                0,
                "POST /api/v1/orders",
                0,
                12,
                2,
                **{
                    "http.request.method": "POST",
                    "http.route": "/api/v1/orders",
                    "http.response.status_code": 201,
                    "echobase.correlation_id": f"corr-{trace_id[:12]}",
                },
            ),
            span(
                1,
                "SELECT products",
                1,
                2,
                3,
                **{"db.system.name": "mariadb", "db.operation.name": "SELECT"},
            ),
            span(
                2,
                "order-processing-queue publish",
                5,
                4,
                4,
                **{"messaging.system": "aws_sqs", "echobase.order_id": order_id},
            ),
        ],
        "order-processor": [
            span(3, "order-processing-queue process", 30, 20, 5, **{"echobase.order_id": order_id}),
            span(
                4,
                "INSERT orders",
                35,
                6,
                3,
                **{"db.system.name": "mariadb", "db.operation.name": "INSERT"},
            ),
        ],
    }


def write_trace_store(directory: Path, mib: int, spans_per_line: int) -> tuple[str, int]:
    """Files of about 16 MiB each; returns a trace id from the last file and the trace count."""
    directory.mkdir(parents=True)
    limit, written, traces, file_number = mib * 2**20, 0, 0, 0
    last_trace = ""
    while written < limit:
        path = directory / f"spans-{file_number:03d}.jsonl"
        with path.open("w") as stream:
            while stream.tell() < 16 * 2**20 and written + stream.tell() < limit:
                by_service: dict[str, list[dict[str, Any]]] = {}
                while sum(len(s) for s in by_service.values()) < spans_per_line:
                    last_trace = secrets.token_hex(16)
                    traces += 1
                    for service, spans in _trace_spans(last_trace, traces * 3.7).items():
                        by_service.setdefault(service, []).extend(spans)
                request = {
                    "resourceSpans": [
                        {
                            "resource": _resource(service),
                            "scopeSpans": [{"scope": {"name": "bench"}, "spans": spans}],
                        }
                        for service, spans in by_service.items()
                    ]
                }
                stream.write(json.dumps(request, separators=(",", ":")) + "\n")
            written += stream.tell()
        # As if written live: a file was last touched when its last span ended.
        last_end = (T0 + int((traces * 3.7 + 60) * MS)) / 1e9
        os.utime(path, (last_end, last_end))
        file_number += 1
    return last_trace, traces


def write_logs(home: Path, mib: int) -> tuple[str, datetime]:
    """Every program's log, a current and three rotated files each; returns a trace id
    that about one line in a thousand carries, and the time of the last line."""
    stack = Stack(home, resolve_ports())
    sources = log_sources(stack, "devlocal")
    per_file = mib * 2**20 // (len(sources) * 4)
    home.joinpath("logs").mkdir(parents=True)
    wanted = secrets.token_hex(16)
    ends = []
    for s_index, source in enumerate(sources):
        moment = START
        for suffix in (".3", ".2", ".1", ""):
            path = source.path.with_name(source.path.name + suffix)
            with path.open("w") as stream:
                n = 0
                while stream.tell() < per_file:
                    n += 1
                    moment += timedelta(milliseconds=7 + s_index)
                    if source.role in ("api-gateway", "order-processor", "mcp"):
                        trace = wanted if n % 1000 == 0 else secrets.token_hex(16)
                        line = json.dumps(
                            {
                                "time": moment.isoformat().replace("+00:00", "Z"),
                                "level": "info",
                                "event": "order accepted",
                                "service": source.role,
                                "colour": source.colour or "none",
                                "trace_id": trace,
                                "span_id": trace[:16],
                                "correlation_id": f"corr-{n}",
                                "order_id": f"o-{n}",
                            }
                        )
                    elif source.role == "mariadb":
                        line = f"{moment:%Y-%m-%d %H:%M:%S} 0 [Note] InnoDB: something {n}"
                    else:
                        line = (
                            f"{moment:%Y-%m-%d %H:%M:%S},{moment.microsecond // 1000:03d} "
                            f'werkzeug 127.0.0.1 - - [{moment:%d/%b/%Y %H:%M:%S}] "POST / '
                            'HTTP/1.1" 200 -'
                        )
                    stream.write(line + "\n")
            os.utime(path, (moment.timestamp(), moment.timestamp()))
        ends.append(moment)
    return wanted, max(ends)


def timed(rounds: int, action: Callable[[], Any]) -> tuple[float, Any]:
    seconds, result = [], None
    for _ in range(rounds):
        started = time.perf_counter()
        result = action()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trace-mib", type=int, default=256)
    parser.add_argument("--spans-per-line", type=int, default=50)
    parser.add_argument("--log-mib", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=("traces", "logs"), help="Measure only one reader.")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="eb-telemetry-"))
    try:
        if args.only != "logs":
            measure_traces(root / "traces", args)
        if args.only != "traces":
            measure_logs(root / "home", args)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def measure_traces(traces_dir: Path, args: argparse.Namespace) -> None:
    wanted, count = write_trace_store(traces_dir, args.trace_mib, args.spans_per_line)
    size = sum(p.stat().st_size for p in traces_dir.iterdir()) / 2**20
    print(f"trace store: {size:.0f} MiB, {count:,} traces, {count * 5:,} spans")
    for label, ident in (
        ("trace id", wanted),
        ("correlation id", f"corr-{wanted[:12]}"),
        ("order id", f"order-{wanted[:12]}"),
        ("miss", secrets.token_hex(16)),
    ):
        seconds, found = timed(args.rounds, lambda ident=ident: lookup(traces_dir, ident))
        spans = sum(len(s) for s in found.traces.values())
        print(f"  lookup by {label:<15} {seconds:6.2f} s  ({spans} spans found)")
    seconds, ranked = timed(args.rounds, lambda: slowest(traces_dir, 10))
    print(f"  slowest 10 of all        {seconds:6.2f} s  ({len(ranked)} shown)")
    # The last tenth of the traces, as --since would ask: older files are not read.
    window = T0 + int(count * 0.9 * 3.7 * MS)
    seconds, ranked = timed(args.rounds, lambda: slowest(traces_dir, 10, window))
    print(f"  slowest 10, last tenth   {seconds:6.2f} s  ({len(ranked)} shown)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak RSS of this process {peak:6.0f} MiB")


def measure_logs(home: Path, args: argparse.Namespace) -> None:
    trace, end = write_logs(home, args.log_mib)
    size = sum(p.stat().st_size for p in (home / "logs").iterdir()) / 2**20
    sources = log_sources(Stack(home, resolve_ports()), "devlocal")

    def backlog(keep: LogFilter) -> int:
        lines = 0
        for record in MergedLogs(sources, keep).backlog():
            plain_line(record)  # formatting is part of the cost
            lines += 1
        return lines

    print(f"logs: {size:.0f} MiB in {len(sources) * 4} files")
    seconds, lines = timed(args.rounds, lambda: backlog(LogFilter()))
    print(
        f"  merged backlog, formatted {seconds:6.2f} s  "
        f"({lines:,} lines, {lines / seconds:,.0f} lines/s)"
    )
    seconds, lines = timed(args.rounds, lambda: backlog(LogFilter(trace=trace)))
    print(f"  --trace ID                {seconds:6.2f} s  ({lines} lines)")
    since = end - (end - START) / 100
    seconds, lines = timed(args.rounds, lambda: backlog(LogFilter(since=since)))
    print(f"  --since (last 1%)         {seconds:6.2f} s  ({lines:,} lines)")


if __name__ == "__main__":
    main()
