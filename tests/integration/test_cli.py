"""The `echobase` command as a user runs it: a real process against the real emulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

from echobase.platform.devstack import EMULATOR_AWS_ENV


def echobase(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "echobase.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **EMULATOR_AWS_ENV, **env},
        check=False,
    )


def test_queues_create_is_idempotent_with_redrive_policy(backing):
    name = f"cli-{uuid.uuid4().hex[:8]}"
    args = [
        "queues",
        "create",
        "--endpoint-url",
        backing.stack.aws_url,
        "--json",
        "--queue-name",
        name,
        "--dlq-name",
        name + "-dlq",
    ]
    first, second = echobase(*args), echobase(*args)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert json.loads(first.stdout) == json.loads(second.stdout)
    urls = json.loads(first.stdout)
    sqs = backing.stack.client("sqs")
    attrs = sqs.get_queue_attributes(QueueUrl=urls["queueUrl"], AttributeNames=["All"])
    policy = json.loads(attrs["Attributes"]["RedrivePolicy"])
    dlq_arn = sqs.get_queue_attributes(QueueUrl=urls["dlqUrl"], AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    assert policy == {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 3} or policy == {
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": "3",
    }
    listed = sqs.list_queues(QueueNamePrefix=name)["QueueUrls"]
    assert sorted(listed) == sorted([urls["queueUrl"], urls["dlqUrl"]])


def test_db_upgrade_without_a_live_release_says_how_migrations_run(tmp_path):
    # Migrations run only with a release's own tool: with no release live there is none to
    # choose, and the command says what migrates instead (test_bluegreen runs it live).
    result = echobase("db", "upgrade", "--home", str(tmp_path), "--env", "devlocal")
    assert result.returncode == 1
    assert "no release is live" in result.stderr and "Traceback" not in result.stderr
