"""No stored secret value in logs, process arguments or process environments."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests_support import ORIGIN_HEADERS, register


def test_secrets_stay_out_of_logs_arguments_and_environment(backing):
    queues = backing.new_queues()
    gateway = backing.start_gateway("gw-hygiene", queues, ECHOBASE_LOG_LEVEL="debug")
    backing.start_processor("proc-hygiene", queues, ECHOBASE_LOG_LEVEL="debug")
    try:
        token = register(gateway)
        auth = {**ORIGIN_HEADERS, "Authorization": f"Bearer {token}"}
        assert (
            httpx.post(
                gateway + "/api/v1/orders", headers=auth, json={"productId": 1, "quantity": 1}
            ).status_code
            == 201
        )
        httpx.post(
            gateway + "/api/v1/auth/login",
            headers=ORIGIN_HEADERS,
            json={"username": "nobody_here", "password": "Wrong1234"},
        )
        secrets = [backing.credentials.password, backing.jwt_key]
        pids = [backing.stack.processes[n].pid for n in ("gw-hygiene", "proc-hygiene")]
        for pid in pids:
            for part in ("cmdline", "environ"):
                content = Path(f"/proc/{pid}/{part}").read_bytes().decode(errors="replace")
                for secret in secrets:
                    assert secret not in content, f"secret in /proc/{pid}/{part}"
    finally:
        backing.stack.stop("gw-hygiene")
        backing.stack.stop("proc-hygiene")
    for log in (backing.stack.home / "logs").glob("*.log"):
        text = log.read_text(errors="replace")
        for secret in secrets:
            assert secret not in text, f"secret in {log.name}"
