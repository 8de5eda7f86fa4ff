"""The durable secrets store (echobase.platform.durable.secrets_store) as a real process.

State must survive a SIGTERM and a start on the same directory; a request the journal could
not hold must not be applied; nothing secret may sit in the directory in plaintext; a
damaged journal must stop the store from starting rather than serve partial state.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from echobase.platform.runtime.processes import free_port, spawn, terminate, wait_http

SRC = Path(__file__).resolve().parents[2] / "src"
HOST = "127.0.0.1"
MODULE = "echobase.platform.durable.secrets_store"


@dataclass
class Store:
    process: subprocess.Popen[bytes]
    endpoint: str
    log: Path

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            region_name="us-east-1",
            endpoint_url=self.endpoint,
            aws_access_key_id="echobase-local",
            aws_secret_access_key="echobase-local",
            config=Config(retries={"total_max_attempts": 1}),  # a 500 must not be retried
        )

    def stop(self) -> None:
        terminate(self.process)
        assert self.process.returncode == 0, self.log.read_text(errors="replace")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH")) if p)
    return env


def _argv(state_dir: Path, port: int) -> list[str]:
    where = ["--host", HOST, "--port", str(port), "--state-dir", str(state_dir)]
    return [sys.executable, "-m", MODULE, *where]


@pytest.fixture
def start_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[Path], Store]]:
    started: list[subprocess.Popen[bytes]] = []

    def finalize() -> None:
        for process in started:
            terminate(process)

    request.addfinalizer(finalize)  # registered before anything can fail

    def start(state_dir: Path) -> Store:
        port = free_port(HOST)
        log = tmp_path / f"store-{len(started)}.log"  # outside state_dir: not under test
        process = spawn(_argv(state_dir, port), log, env=_env())
        started.append(process)
        try:
            wait_http(f"http://{HOST}:{port}/moto-api/", timeout=30, process=process)
        except (RuntimeError, TimeoutError) as exc:
            pytest.fail(f"{exc}\n--- {log} ---\n{log.read_text(errors='replace')[-4000:]}")
        return Store(process, f"http://{HOST}:{port}", log)

    yield start


def _value() -> str:
    return f"plain-{secrets.token_hex(12)}"


def test_state_survives_restart(start_store: Callable[[Path], Store], tmp_path: Path) -> None:
    state = tmp_path / "state"
    store = start_store(state)
    kms, sm = store.client("kms"), store.client("secretsmanager")
    key_id = kms.create_key(Description="echobase test")["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName="alias/echobase-test", TargetKeyId=key_id)
    values = {"db": _value(), "jwt": _value(), "gone": _value()}
    arns = {
        name: sm.create_secret(Name=name, SecretString=value, KmsKeyId="alias/echobase-test")["ARN"]
        for name, value in values.items()
    }
    values["db"] = _value()
    version = sm.put_secret_value(SecretId="db", SecretString=values["db"])["VersionId"]
    sm.delete_secret(SecretId="gone", ForceDeleteWithoutRecovery=True)
    blob = kms.encrypt(KeyId="alias/echobase-test", Plaintext=b"kept across restarts")
    # moto makes the AWS-managed key on first mention of its alias, even by an Encrypt.
    managed = kms.encrypt(KeyId="alias/aws/secretsmanager", Plaintext=b"managed key")
    store.stop()

    store = start_store(state)
    kms, sm = store.client("kms"), store.client("secretsmanager")
    for name in ("db", "jwt"):
        assert sm.get_secret_value(SecretId=name)["SecretString"] == values[name]
        described = sm.describe_secret(SecretId=name)
        assert described["ARN"] == arns[name]
        assert described["KmsKeyId"] == "alias/echobase-test"
    assert sm.get_secret_value(SecretId="db")["VersionId"] == version
    with pytest.raises(ClientError) as gone:
        sm.get_secret_value(SecretId="gone")
    assert gone.value.response["Error"]["Code"] == "ResourceNotFoundException"
    aliases = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases()["Aliases"]}
    assert aliases["alias/echobase-test"] == key_id
    plain = kms.decrypt(CiphertextBlob=blob["CiphertextBlob"])
    assert plain["Plaintext"] == b"kept across restarts"
    assert plain["KeyId"].endswith(key_id)
    assert kms.decrypt(CiphertextBlob=managed["CiphertextBlob"])["Plaintext"] == b"managed key"
    store.stop()


def test_unwritable_journal_refuses_the_request(
    start_store: Callable[[Path], Store], tmp_path: Path
) -> None:
    state = tmp_path / "state"
    store = start_store(state)
    sm = store.client("secretsmanager")
    sm.create_secret(Name="before", SecretString="kept")
    (state / "journal").unlink()
    (state / "journal").mkdir()  # as root, a chmod would not stop the writes

    with pytest.raises(ClientError) as refused:
        sm.create_secret(Name="after", SecretString=_value())
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert refused.value.response["Error"]["Code"] == "InternalFailure"
    with pytest.raises(ClientError) as missing:
        sm.get_secret_value(SecretId="after")
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert sm.get_secret_value(SecretId="before")["SecretString"] == "kept"  # reads still work


def test_files_are_private_and_encrypted(
    start_store: Callable[[Path], Store], tmp_path: Path
) -> None:
    state = tmp_path / "state"
    store = start_store(state)
    value = _value()
    store.client("secretsmanager").create_secret(Name="private", SecretString=value)
    store.stop()

    assert (state.stat().st_mode & 0o777) == 0o700
    assert (state / "store.key").stat().st_mode & 0o777 == 0o600
    assert (state / "journal").stat().st_mode & 0o777 == 0o600
    files = [p for p in state.rglob("*") if p.is_file()]
    assert {p.name for p in files} == {"store.key", "journal"}
    for path in files:
        assert value.encode() not in path.read_bytes(), path


def test_corrupt_journal_line_stops_startup(
    start_store: Callable[[Path], Store], tmp_path: Path
) -> None:
    state = tmp_path / "state"
    store = start_store(state)
    value = _value()
    sm = store.client("secretsmanager")
    sm.create_secret(Name="first", SecretString=_value())
    sm.create_secret(Name="second", SecretString=value)
    store.stop()
    lines = (state / "journal").read_bytes().split(b"\n")
    assert len(lines) == 3 and lines[2] == b""
    lines[1] = lines[1][:20] + (b"A" if lines[1][20:21] != b"A" else b"B") + lines[1][21:]
    (state / "journal").write_bytes(b"\n".join(lines))

    result = subprocess.run(
        _argv(state, free_port(HOST)), env=_env(), capture_output=True, timeout=30, check=False
    )
    output = (result.stdout + result.stderr).decode(errors="replace")
    assert result.returncode != 0, output
    assert "line 2" in output and str(state / "journal") in output, output
    assert value not in output


def test_truncated_last_line_is_dropped(
    start_store: Callable[[Path], Store], tmp_path: Path
) -> None:
    state = tmp_path / "state"
    store = start_store(state)
    store.client("secretsmanager").create_secret(Name="whole", SecretString="kept")
    store.stop()
    with (state / "journal").open("ab") as journal:
        journal.write(b"cut-off-mid-wr")  # a crash before the newline

    store = start_store(state)
    sm = store.client("secretsmanager")
    assert sm.get_secret_value(SecretId="whole")["SecretString"] == "kept"
    assert "truncated last line 2" in store.log.read_text()
    sm.create_secret(Name="next", SecretString="appended after the cut")
    store.stop()
    store = start_store(state)  # the new entry was not glued onto the dropped fragment
    assert store.client("secretsmanager").get_secret_value(SecretId="next")["SecretString"]


def _http(url: str, method: str = "GET") -> int:
    data = b"" if method == "POST" else None
    req = urllib.request.Request(url, method=method, data=data)  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(req, timeout=5) as response:  # noqa: S310 - loopback
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_moto_admin_api_is_refused(start_store: Callable[[Path], Store], tmp_path: Path) -> None:
    store = start_store(tmp_path / "state")
    sm = store.client("secretsmanager")
    sm.create_secret(Name="survivor", SecretString="still here")

    assert _http(f"{store.endpoint}/moto-api/reset", "POST") == 403
    assert _http(f"{store.endpoint}/moto-api/data.json") == 403  # would list every secret
    assert _http(f"{store.endpoint}/moto-api/seed?a=1", "POST") == 403
    assert _http(f"{store.endpoint}/moto-api/") == 200
    assert sm.get_secret_value(SecretId="survivor")["SecretString"] == "still here"
    # Services outside Secrets Manager and KMS would be accepted by moto and never journaled.
    with pytest.raises(ClientError):
        store.client("sqs").create_queue(QueueName="not-here")
