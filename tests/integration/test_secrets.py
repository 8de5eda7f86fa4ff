"""Reading credentials from the real Secrets Manager API of the emulator."""

from __future__ import annotations

import sys
import threading
import time
import uuid

import pytest

from echobase.app.core.secrets import SecretUnavailableError, fetch_secret
from echobase.platform.runtime.processes import free_port, spawn


def test_waits_for_a_secret_that_appears_later(backing):
    client = backing.stack.client("secretsmanager")
    name = f"test/{uuid.uuid4()}"
    timer = threading.Timer(1.0, lambda: client.create_secret(Name=name, SecretString="late"))
    timer.start()
    started = time.monotonic()
    assert fetch_secret(client, name, wait_seconds=20) == "late"
    assert time.monotonic() - started >= 0.9
    timer.join()


def test_gives_up_after_the_bounded_wait_without_printing_values(backing):
    client = backing.stack.client("secretsmanager")
    with pytest.raises(SecretUnavailableError, match="does not exist") as info:
        fetch_secret(client, f"test/{uuid.uuid4()}", wait_seconds=1)
    assert "gave up after 1s" in str(info.value)


def test_fails_fast_on_errors_that_waiting_cannot_fix(backing):
    client = backing.stack.client("secretsmanager")
    name = f"test/{uuid.uuid4()}"
    client.create_secret(Name=name, SecretString="s3cr3t-value")
    client.delete_secret(SecretId=name, RecoveryWindowInDays=7)  # scheduled for deletion
    started = time.monotonic()
    with pytest.raises(SecretUnavailableError) as info:
        fetch_secret(client, name, wait_seconds=30)
    assert time.monotonic() - started < 5
    assert "s3cr3t-value" not in str(info.value)


def test_gateway_without_its_secret_exits_with_a_clear_error(backing):
    queues = backing.new_queues()
    port = free_port()
    env = backing.gateway_env(
        queues, port, ECHOBASE_DB_SECRET_NAME="missing/db", ECHOBASE_SECRET_WAIT_SECONDS="1"
    )
    log = backing.stack.home / "logs" / "gw-nosecret.log"
    process = spawn([sys.executable, "-m", "echobase.app.gateway"], log, env)
    try:
        assert process.wait(timeout=60) != 0
    finally:
        if process.poll() is None:
            process.kill()
    text = log.read_text()
    assert "secret 'missing/db' does not exist" in text
    assert backing.credentials.password not in text
