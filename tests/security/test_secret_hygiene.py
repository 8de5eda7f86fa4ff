"""No stored secret value anywhere it should not be, on a whole deployed system: not in any
log or readable file under the state directory, not in the arguments or the environment of
any of the system's processes (supervisord and everything under it, found by pid)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from durable_support import children
from echobase.platform.durable.credentials import MCP_API_KEY, TLS
from security.live_support import register
from tests_support import MCP_ACCEPT, MCP_TOOL_CALL, wait_until

pytestmark = pytest.mark.timeout(600)
MIN_NEEDLE = 16  # shorter values (a port, the user name "echobase") are not secrets


def _needles(values: dict[str, str]) -> dict[str, bytes]:
    """Each stored secret, and each secret field inside the JSON ones (a password is written
    to a config on its own, never as the JSON it is stored in); the TLS key by one line of its
    base64, so that a copy with escaped newlines is found too."""
    found: dict[str, str] = {}
    for name, value in values.items():
        try:
            fields = json.loads(value)
        except ValueError:
            fields = None
        if not isinstance(fields, dict):
            found[name] = value
            continue
        for key, field in fields.items():
            if key == "private_key":
                found[f"{name}:{key}"] = field.splitlines()[2]
            elif key == "password":
                found[f"{name}:{key}"] = field
    assert all(len(v) >= MIN_NEEDLE for v in found.values()), "a secret shorter than expected"
    return {label: value.encode() for label, value in found.items()}


def _descendants(root: int) -> list[int]:
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo += [child for child in children(pid) if child not in pids]
    return pids


def _exercise(live) -> tuple[str, str]:
    """Every path that could log or trace something sensitive: register, good and bad
    logins, an order, the history, a forged token. Returns a user's password and the
    order's trace id."""
    with live.lb() as lb:
        body = register(lb, live.origin, "hyg")
        login = {"username": body["username"], "password": body["password"]}
        r = lb.post("/api/v1/auth/login", json=login, headers=live.origin)
        assert r.status_code == 200, r.text
        auth = {**live.origin, "Authorization": f"Bearer {r.cookies['echobase_token']}"}
        r = lb.post("/api/v1/orders", json={"productId": 1, "quantity": 1}, headers=auth)
        assert r.status_code == 201, r.text
        trace_id = r.headers["x-correlation-id"]
        assert lb.get("/api/v1/orders", headers=auth).status_code == 200
        wrong = {"username": body["username"], "password": "Wrong1Password"}
        assert lb.post("/api/v1/auth/login", json=wrong, headers=live.origin).status_code == 401
        lb.cookies.clear()  # the session cookie would win over the forged bearer token
        forged = {"Authorization": "Bearer eyJhbGciOiJub25lIn0.e30."}
        assert lb.get("/api/v1/orders", headers=forged).status_code == 401
        # An MCP client through the LB, with the API key and with a near miss of it: the
        # key travels in a header that neither nginx nor the service may write down.
        key = live.system.secret("devlocal", MCP_API_KEY)
        r = lb.post("/mcp", json=MCP_TOOL_CALL, headers={**MCP_ACCEPT, "X-API-Key": key})
        assert r.status_code == 200 and "result" in r.json(), r.text
        wrong = {**MCP_ACCEPT, "Authorization": f"Bearer {key}x"}
        r = lb.post("/mcp", json=MCP_TOOL_CALL, headers=wrong)
        assert r.status_code == 401, r.text
    traces = live.plan.traces_dir

    def stored() -> bool:  # the processor's spans of the order are the last to arrive
        lines = (line for f in traces.glob("order-processor-*") for line in f.open("rb"))
        return any(trace_id.encode() in line for line in lines)

    wait_until(stored, 15, "the order's spans in the trace store")
    return body["password"], trace_id


def test_no_secret_in_logs_files_arguments_or_environment(live):
    needles = _needles(live.system.secret_values("devlocal"))
    password, _ = _exercise(live)
    needles["a user's password"] = password.encode()
    root = live.system.supervisord_pid()
    assert root is not None
    pids = _descendants(root)
    assert len(pids) >= 8, pids  # supervisord, the durable layer and a colour's services
    for pid in pids:
        for part in ("cmdline", "environ"):
            try:
                data = Path(f"/proc/{pid}/{part}").read_bytes()
            except OSError:
                continue  # exited meanwhile
            for label, needle in needles.items():
                assert needle not in data, f"{label} in /proc/{pid}/{part}"

    logs, spans, holders = 0, 0, []
    for path in live.system.home.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        data = path.read_bytes()
        # Spans and their attributes are held to the same rule as log lines.
        is_trace = path.parent == live.plan.traces_dir
        is_log = path.suffix in (".log", ".err", ".out") or "logs" in path.parts or is_trace
        logs += is_log
        spans += is_trace
        for label, needle in needles.items():
            if needle in data:
                assert not is_log, f"{label} in the log {path}"
                holders.append((path, label))
    assert logs >= 5, "no logs were scanned"
    assert spans >= 2, "no trace files were scanned"  # the gateway's and the processor's
    # The scan finds a secret where one must be: the LB's private key, for nginx to read.
    key_file = live.plan.load_balancer.key_file
    assert (key_file, f"{TLS}:private_key") in holders, holders
    for path, label in holders:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} holds {label} with mode {mode:o}"
    assert live.system.home.stat().st_mode & 0o077 == 0
