"""What it costs nginx to read the live colour per request (issue 20): echobase's own njs
routing script against a colour fixed in the config, in one nginx, on loopback.

    .venv/bin/python bench/lb_routing.py [--runs 3] [--seconds 10] [--switches 20]
                                         [--canary PERCENT]

One nginx (2 workers, plain HTTP, access log off) holds two trivial upstreams (blue and
green answer ``return 200``) and two front servers proxying to them with upstream
keep-alive, as the LB does:

- ``fixed``: ``set $echobase_live blue;``, what the config carried before (a switch was a
  reload);
- ``njs``: the LB's own lines from ``routing.config_lines`` and ``routing.render_script``,
  reading a routing state written by ``routing.write_state``; with ``--canary``, a state
  sending that percent of users to green, and the bucket cookie sent as the LB sends it
  (wrk keeps no cookies: every request is a new user, bucketed and given a cookie).

Prints, per mode, wrk's requests/s and p99 (``--runs`` runs of ``--seconds``, alternating)
and the CPU of nginx's processes per request, the medians, and the difference; then
``--switches`` switches of the njs server (``routing.write_state``, alternating colours)
with a kept-alive client asking every ~1 ms: the time from the state's write returning to
the first answer from the new colour. Needs wrk and Debian's libnginx-mod-http-js.
"""

from __future__ import annotations

import argparse
import http.client
import os
import pwd
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from echobase.platform.durable import nginx
from echobase.platform.durable.routing import write_state
from echobase.platform.render import routing
from echobase.platform.render.nginx import NJS_MODULE, TEMP_KINDS
from echobase.platform.runtime.processes import free_port
from support import stop_pid, tree_cpu, wrk, wrk_request_script

MODES = ("fixed", "njs")


def config(root: Path, ports: dict[str, int], canary: bool = False) -> str:
    main_lines, http_lines = routing.config_lines(routing.RoutingFiles(root), NJS_MODULE)
    temp = "".join(f"    {kind}_temp_path {root}/{kind};\n" for kind in TEMP_KINDS)
    upstreams = "".join(
        f"    upstream echobase_{colour} {{ server 127.0.0.1:{ports[colour]}; keepalive 16; }}\n"
        f"    server {{ listen 127.0.0.1:{ports[colour]};"
        f' location / {{ return 200 "{colour}\\n"; }} }}\n'
        for colour in routing.COLOURS
    )

    def front(port: int, variable: str, fixed: bool) -> str:
        chosen = f"    set ${variable} blue;\n" if fixed else ""
        return (
            f"    server {{\n        listen 127.0.0.1:{port};\n    {chosen}"
            f"        location / {{\n"
            f"            proxy_pass http://echobase_${variable};\n"
            "            proxy_http_version 1.1;\n"
            '            proxy_set_header Connection "";\n'
            f'            add_header X-Served-By "${variable}" always;\n'
            + (
                f"            add_header Set-Cookie ${routing.COOKIE_VARIABLE} always;\n"
                if canary and not fixed
                else ""
            )
            + "        }\n    }\n"
        )

    return (
        "\n".join(main_lines)
        # The workers read the 0600 routing state: they run as its owner, as the LB's do.
        + (f"\nuser {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else "")
        + f"\nworker_processes 2;\ndaemon off;\npid {root}/nginx.pid;\n"
        + f"error_log {root}/error.log warn;\nevents {{ worker_connections 4096; }}\n"
        + "http {\n"
        + temp
        + "    access_log off;\n    keepalive_requests 1000000;\n"
        + "\n".join(http_lines)
        + "\n"
        + upstreams
        + front(ports["fixed"], "fixed_colour", fixed=True)
        + front(ports["njs"], routing.VARIABLE, fixed=False)
        + "}\n"
    )


def served_by(connection: http.client.HTTPConnection) -> str | None:
    connection.request("GET", "/")
    response = connection.getresponse()
    response.read()
    return response.getheader("X-Served-By")


def switch_latencies(files: routing.RoutingFiles, port: int, switches: int) -> list[float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    latencies = []
    live = "blue"
    try:
        for _ in range(switches):
            live = "green" if live == "blue" else "blue"
            write_state(files, live)
            written = time.perf_counter()
            while served_by(connection) != live:
                time.sleep(0.001)
            latencies.append(time.perf_counter() - written)
            time.sleep(0.05)
    finally:
        connection.close()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--switches", type=int, default=20)
    parser.add_argument("--canary", type=int, metavar="PERCENT", help="route a canary's share")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="eb-routing-", dir="/tmp"))
    ports = {name: free_port() for name in (*routing.COLOURS, *MODES)}
    files = routing.RoutingFiles(root)
    files.script.write_text(routing.render_script(files))
    canary = routing.Canary("green", args.canary, seed=0) if args.canary else None
    write_state(files, routing.RoutingState("blue", canary))
    (root / "nginx.conf").write_text(config(root, ports, canary is not None))
    process = subprocess.Popen(
        [nginx.nginx_binary(), "-p", f"{root}/", "-c", str(root / "nginx.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        if process.poll() is not None:
            raise SystemExit(f"nginx did not start: {(root / 'error.log').read_text()[-2000:]}")
        script = wrk_request_script("GET", "/")
        rates: dict[str, list[float]] = {mode: [] for mode in MODES}
        p99s: dict[str, list[float]] = {mode: [] for mode in MODES}
        cpu: dict[str, list[float]] = {mode: [] for mode in MODES}
        for run in range(args.runs):
            for mode in MODES if run % 2 == 0 else MODES[::-1]:
                before = tree_cpu(process.pid)
                result = wrk(
                    f"http://127.0.0.1:{ports[mode]}", script, args.connections, args.seconds, 1
                )
                used = tree_cpu(process.pid) - before
                if result.errors or result.bad_status:
                    raise SystemExit(f"{mode}: {result.errors} errors, {result.bad_status} non-2xx")
                rates[mode].append(result.rate)
                p99s[mode].append(result.p99_ms)
                cpu[mode].append(used / max(result.requests, 1) * 1e6)
                print(
                    f"  run {run + 1} {mode:<6} {result.rate:9.0f} req/s  p99 {result.p99_ms:6.2f}"
                    f" ms  nginx CPU {cpu[mode][-1]:6.1f} us/request"
                )
        medians = {mode: statistics.median(cpu[mode]) for mode in MODES}
        for mode in MODES:
            print(
                f"median {mode:<6} {statistics.median(rates[mode]):9.0f} req/s"
                f"  p99 {statistics.median(p99s[mode]):6.2f} ms"
                f"  nginx CPU {medians[mode]:6.1f} us/request"
            )
        extra = medians["njs"] - medians["fixed"]
        print(f"njs routing adds {extra:+.1f} us of nginx CPU a request")
        latencies = switch_latencies(files, ports["njs"], args.switches)
        print(
            f"{args.switches} switches (routing.write_state): first answer from the new colour"
            f" after median {statistics.median(latencies) * 1000:.2f} ms,"
            f" max {max(latencies) * 1000:.2f} ms"
        )
    finally:
        stop_pid(process.pid)
        process.wait()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
