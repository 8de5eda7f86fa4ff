"""``echobase render aws``'s template deployed into moto's CloudFormation (a real moto server
process), and the real services run against what the stack created: the migrations through
``python -m echobase.app.db.migrate upgrade --secret``, a gateway and a processor reading the
generated secrets and sharing the created queue, and an order stored in the suite's MariaDB.

What moto does not do, and so this test cannot show: it has no CloudFormation model for
Secrets Manager secrets (tests/moto_cfn_server.py adds one that generates them as
CloudFormation does), it encrypts no secret with the KMS key it records, and it enforces no
IAM policy. The policies' least privilege is asserted on the template in
tests/unit/test_render_aws.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import ALLOWED_ORIGIN, Backing, GatewayClient
from echobase.app.core.secrets import DatabaseCredentials
from echobase.app.db import migrate
from echobase.app.queues import QueueUrls
from echobase.platform.durable import mariadb
from echobase.platform.durable.credentials import EMULATOR_AWS_ENV, aws_client
from echobase.platform.render import aws
from echobase.platform.render.names import secret_names
from echobase.platform.runtime.processes import free_port, spawn, terminate, wait_http
from tests_support import SHIPPED_HEAD, wait_until

ENV = "ci"
COLOUR = "blue"
MOTO_SERVER = Path(__file__).resolve().parents[1] / "moto_cfn_server.py"
# A database and users of this test's own on the suite's MariaDB, so the stack's generated
# passwords are the only ones that open it.
DATABASE = f"eb_cfn_{uuid.uuid4().hex[:8]}"
APP_USER = f"cfnapp_{uuid.uuid4().hex[:6]}"
MIGRATOR = f"cfnmig_{uuid.uuid4().hex[:6]}"


@dataclass
class Deployed:
    url: str  # the moto server's endpoint
    outputs: dict[str, str]
    app: DatabaseCredentials
    migrator: DatabaseCredentials

    def client(self, service: str) -> Any:
        return aws_client(service, self.url)

    @property
    def queues(self) -> QueueUrls:
        prefix = COLOUR.capitalize()
        return QueueUrls(self.outputs[f"{prefix}QueueUrl"], self.outputs[f"{prefix}DlqUrl"])

    def env(self, port: int | None = None, **extra: str) -> dict[str, str]:
        """A service's environment: plain settings and secret names, never a value."""
        names = secret_names(ENV)
        env = {
            **os.environ,
            **EMULATOR_AWS_ENV,
            "ECHOBASE_SECRETS_ENDPOINT_URL": self.url,
            "ECHOBASE_SQS_ENDPOINT_URL": self.url,
            "ECHOBASE_SQS_QUEUE_URL": self.queues.queue_url,
            "ECHOBASE_SQS_DLQ_URL": self.queues.dlq_url,
            "ECHOBASE_DB_SECRET_NAME": names.database,
            "ECHOBASE_JWT_SECRET_NAME": names.jwt,
            "ECHOBASE_MCP_KEY_SECRET_NAME": names.mcp_key,
            "ECHOBASE_ENVIRONMENT": ENV,
            "ECHOBASE_COLOUR": COLOUR,
            **extra,
        }
        if port is not None:
            env["ECHOBASE_PORT"] = str(port)
        return env


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("moto-cfn") / "moto.log"
    process = spawn(
        [sys.executable, str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
        log,
        env={**os.environ, **EMULATOR_AWS_ENV},
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/moto-api/", 60, process, ok=0)
        yield url
    finally:
        terminate(process)


def wait_for_stack(cloudformation: Any, name: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        stack = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
        if not stack["StackStatus"].endswith("_IN_PROGRESS") or time.monotonic() > deadline:
            return dict(stack)
        time.sleep(0.2)


@pytest.fixture(scope="module")
def deployed(backing: Backing, moto_url: str) -> Iterator[Deployed]:
    template = aws.template_json(aws.render_template(ENV))
    db = backing.credentials
    parameters = {
        "DatabaseHost": db.host,
        "DatabasePort": str(db.port),
        "DatabaseName": DATABASE,
        "AppDatabaseUser": APP_USER,
        "MigrationsDatabaseUser": MIGRATOR,
    }
    session = Deployed(moto_url, {}, db, db)
    cloudformation = session.client("cloudformation")
    cloudformation.create_stack(
        StackName=f"echobase-{ENV}",
        TemplateBody=template,
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    stack = wait_for_stack(cloudformation, f"echobase-{ENV}")
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    session.outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    store = session.client("secretsmanager")
    names = secret_names(ENV)
    session.app = DatabaseCredentials.from_secret(
        store.get_secret_value(SecretId=names.database)["SecretString"]
    )
    session.migrator = DatabaseCredentials.from_secret(
        store.get_secret_value(SecretId=names.migrations)["SecretString"]
    )
    # What the team's administrator does once on the managed database: the users, with the
    # passwords the stack generated (read from the store, passed as SQL parameters).
    server = backing.stack.database
    statements = mariadb.bootstrap_statements(session.app)
    statements += mariadb.bootstrap_statements(session.migrator)
    statements += [
        (f"GRANT ALL PRIVILEGES ON {DATABASE}.* TO %s@'{host}'", (MIGRATOR,))
        for host in mariadb.APP_HOSTS
    ]
    mariadb.run_admin(server, statements)
    try:
        yield session
    finally:
        mariadb.run_admin(
            server,
            [(f"DROP DATABASE IF EXISTS {DATABASE}", ())]
            + [
                (f"DROP USER IF EXISTS %s@'{host}'", (user,))
                for user in (APP_USER, MIGRATOR)
                for host in mariadb.APP_HOSTS
            ],
        )


def test_stack_created_what_the_template_names(deployed: Deployed) -> None:
    template = aws.render_template(ENV)
    assert set(deployed.outputs) == set(template["Outputs"])
    sqs = deployed.client("sqs")
    attributes = sqs.get_queue_attributes(
        QueueUrl=deployed.queues.queue_url, AttributeNames=["All"]
    )["Attributes"]
    dlq_arn = sqs.get_queue_attributes(
        QueueUrl=deployed.queues.dlq_url, AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    assert json.loads(attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": 3,
    }
    assert attributes["VisibilityTimeout"] == "30"
    key_arn = deployed.outputs["SecretsKeyArn"]
    kms = deployed.client("kms")
    assert kms.get_key_rotation_status(KeyId=key_arn)["KeyRotationEnabled"] is True
    aliases = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases()["Aliases"]}
    assert aliases[f"alias/echobase-{ENV}"] == key_arn.rsplit("/", 1)[-1]
    store = deployed.client("secretsmanager")
    for name in secret_names(ENV):
        described = store.describe_secret(SecretId=name)
        assert described["KmsKeyId"] == key_arn.rsplit("/", 1)[-1]
    iam = deployed.client("iam")
    document = iam.get_policy_version(
        PolicyArn=deployed.outputs["BlueProcessorPolicyArn"], VersionId="v1"
    )["PolicyVersion"]["Document"]
    if isinstance(document, str):
        document = json.loads(document)
    resources = {json.dumps(s["Resource"], sort_keys=True) for s in document["Statement"]}
    assert json.dumps([deployed.outputs["DatabaseSecretArn"]]) in resources
    assert json.dumps(key_arn) in resources
    # The generated credentials: the Parameters as given, a fresh password of its own each.
    assert (deployed.app.username, deployed.app.dbname) == (APP_USER, DATABASE)
    assert len(deployed.app.password) == aws.DB_PASSWORD_LENGTH
    assert deployed.app.password != deployed.migrator.password
    assert len(store.get_secret_value(SecretId=secret_names(ENV).jwt)["SecretString"]) == 64


def run_migrate(
    deployed: Deployed, *args: str, **settings: str
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "echobase.app.db.migrate", *args]
    env = deployed.env(**settings)
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, check=False)
    for password in (deployed.app.password, deployed.migrator.password):
        assert password not in " ".join(argv) + result.stdout + result.stderr
    return result


def test_migrations_over_tcp_with_the_generated_secret(deployed: Deployed) -> None:
    secret = secret_names(ENV).migrations
    pending = run_migrate(deployed, "pending", "--secret", secret)
    assert pending.returncode == 0, pending.stderr
    assert json.loads(pending.stdout)["current"] == []
    upgraded = run_migrate(deployed, "upgrade", "--secret", secret)
    assert upgraded.returncode == 0, upgraded.stderr
    assert json.loads(upgraded.stdout) == {"from": [], "to": [SHIPPED_HEAD]}
    again = run_migrate(deployed, "pending", "--secret", secret)
    assert json.loads(again.stdout) == {
        "current": [SHIPPED_HEAD],
        "head": [SHIPPED_HEAD],
        "revisions": [],
    }


def test_missing_secret_fails_naming_it_only(deployed: Deployed) -> None:
    # The bounded wait for a secret is the services' setting: a short one here.
    result = run_migrate(
        deployed,
        "pending",
        "--secret",
        "echobase/ci/no-such-secret",
        ECHOBASE_SECRET_WAIT_SECONDS="1",
    )
    assert result.returncode == 1
    assert "echobase/ci/no-such-secret" in result.stderr
    assert result.stdout == ""


def test_secret_and_socket_are_exclusive() -> None:
    with pytest.raises(SystemExit) as exit_info:
        migrate.main(["upgrade", "--secret", "x", "--socket", "/nonexistent"])
    assert exit_info.value.code == 2


def test_an_order_goes_through_the_created_queue_into_mariadb_once(
    backing: Backing, deployed: Deployed
) -> None:
    # The migrations test above brought the schema; this test also works on its own.
    upgraded = run_migrate(deployed, "upgrade", "--secret", secret_names(ENV).migrations)
    assert upgraded.returncode == 0, upgraded.stderr
    suffix = uuid.uuid4().hex[:8]
    processor, gateway = f"cfn-proc-{suffix}", f"cfn-gw-{suffix}"
    processor_port, gateway_port = free_port(), free_port()
    processor_url = f"http://127.0.0.1:{processor_port}"
    try:
        backing.stack.start_service(
            processor,
            "echobase.app.processor",
            deployed.env(processor_port, ECHOBASE_WAIT_TIME_SECONDS="1"),
            processor_url + "/health",
        )
        backing.stack.start_service(
            gateway,
            "echobase.app.gateway",
            deployed.env(
                gateway_port,
                ECHOBASE_BCRYPT_ROUNDS="4",
                ECHOBASE_ALLOWED_ORIGINS=ALLOWED_ORIGIN,
                ECHOBASE_RATE_LIMIT_MAX="1000000",
            ),
            f"http://127.0.0.1:{gateway_port}/health",
        )
        client = GatewayClient(gateway, f"http://127.0.0.1:{gateway_port}", deployed.queues)
        try:
            health = client.get("/health")
            assert health.status_code == 200, health.text
            user = client.new_user()
            login = client.post(
                "/api/v1/auth/login", {"username": user.username, "password": user.password}
            )
            assert login.status_code == 200, login.text
            token = client.token_of(login)
            assert token
            placed = client.post("/api/v1/orders", {"productId": 1, "quantity": 2}, token)
            assert placed.status_code == 201, placed.text
            order_uid = placed.json()["order"]["orderId"]
        finally:
            client.close()

        def rows() -> list[tuple[Any, ...]]:
            conn = mariadb.app_connection(deployed.app)
            try:
                with conn.cursor() as cur:
                    cur.execute(
                        "SELECT order_status, quantity, total_price, user_id FROM orders"
                        " WHERE order_uid = %s",
                        (order_uid,),
                    )
                    return list(cur.fetchall())
            finally:
                conn.close()

        wait_until(rows, 30, "the order in MariaDB")
        sqs = deployed.client("sqs")

        def queue_drained() -> bool:
            attributes = sqs.get_queue_attributes(
                QueueUrl=deployed.queues.queue_url, AttributeNames=["All"]
            )["Attributes"]
            return (
                attributes["ApproximateNumberOfMessages"],
                attributes["ApproximateNumberOfMessagesNotVisible"],
            ) == ("0", "0")

        wait_until(queue_drained, 15, "the order's message to be deleted")
        ((status, quantity, total, user_id),) = rows()
        assert (status, quantity, str(total), user_id) == ("completed", 2, "499.98", user.id)
        processed = httpx.get(processor_url + "/health", timeout=5).json()["processedCount"]
        assert processed == 1
        dlq = sqs.get_queue_attributes(
            QueueUrl=deployed.queues.dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        assert dlq["ApproximateNumberOfMessages"] == "0"
        # The suite's own database (the local stack's) never saw this order.
        assert backing.query("SELECT COUNT(*) FROM orders WHERE order_uid = %s", order_uid) == [
            (0,)
        ]
    finally:
        backing.stack.stop(gateway)
        backing.stack.stop(processor)
