"""What the emulators keep out of moto: IAM's models until something needs IAM itself, and
botocore's endpoint data of the services they do not emulate.

A child interpreter serves the patched moto on a free port (as the emulator's ``main``
does, in a thread, so the test can look at what the process imported) and is called
with boto3 over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

SERVE = """
import json, sys, threading
import boto3
from werkzeug.serving import make_server
from echobase.platform import aws_emulator
from echobase.platform.runtime.processes import free_port

port = free_port("127.0.0.1")
server = make_server("127.0.0.1", port, make_app(), threaded=True)
threading.Thread(target=server.serve_forever, daemon=True).start()

def client(service, region="us-east-1"):
    return boto3.client(service, region_name=region, endpoint_url=f"http://127.0.0.1:{port}",
                        aws_access_key_id="echobase-local", aws_secret_access_key="echobase-local")

def endpoints_kept():
    from moto.core.base_backend import AccountSpecificBackend
    loader = AccountSpecificBackend.get_session()._session.get_component("data_loader")
    partitions = loader.load_data("endpoints")["partitions"]
    return sorted({service for p in partitions for service in p["services"]})

def iam_loaded():
    return "iam_backends" in vars(sys.modules["moto.iam.models"])

"""

QUEUE_SERVER = (
    """
def make_app():
    aws_emulator.patch_sqs()
    aws_emulator.keep_moto_lean()
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    return DomainDispatcherApplication(create_backend_app)
"""
    + SERVE
    + """
seen = {}
sqs = client("sqs")
url = sqs.create_queue(QueueName="q")["QueueUrl"]
sqs.send_message(QueueUrl=url, MessageBody="one")
received = sqs.receive_message(QueueUrl=url)["Messages"]
secrets = client("secretsmanager")
secrets.create_secret(Name="s", SecretString="v")
seen["secret"] = secrets.get_secret_value(SecretId="s")["SecretString"]
seen["key"] = client("kms").create_key()["KeyMetadata"]["KeyId"] != ""
seen["url"] = url
seen["paris"] = client("sqs", "eu-west-3").create_queue(QueueName="p")["QueueUrl"]
seen["endpoints_kept"] = endpoints_kept()
seen["received"] = [m["Body"] for m in received]
seen["iam_after_aws_calls"] = iam_loaded()
client("iam").create_user(UserName="alice")
seen["users"] = [u["UserName"] for u in client("iam").list_users()["Users"]]
seen["iam_after_iam_call"] = iam_loaded()
seen["sent_after_iam"] = "MessageId" in sqs.send_message(QueueUrl=url, MessageBody="two")
server.shutdown()
print(json.dumps(seen))
"""
)


SECRETS_STORE = (
    """
import tempfile
from pathlib import Path
from echobase.platform.durable import secrets_store

def make_app():
    aws_emulator.keep_moto_lean()  # as secrets_store.main does
    return secrets_store.open_store(Path(tempfile.mkdtemp()))
"""
    + SERVE
    + """
secrets = client("secretsmanager")
secrets.create_secret(Name="s", SecretString="v")
seen = {"secret": secrets.get_secret_value(SecretId="s")["SecretString"]}
seen["key"] = client("kms").create_key()["KeyMetadata"]["KeyId"] != ""
seen["iam_after_aws_calls"] = iam_loaded()
seen["endpoints_kept"] = endpoints_kept()
server.shutdown()
print(json.dumps(seen))
"""
)


def run(probe: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_aws_calls_leave_iam_unloaded_and_iam_calls_load_it() -> None:
    seen = run(QUEUE_SERVER)
    assert seen["url"].endswith("/123456789012/q")  # moto's default account, as before
    assert seen["paris"].endswith("/123456789012/p")  # a region from the kept data
    assert seen["endpoints_kept"] == ["kms", "secretsmanager", "sqs"]
    assert seen["received"] == ["one"] and seen["secret"] == "v" and seen["key"]
    assert seen["iam_after_aws_calls"] is False
    assert seen["users"] == ["alice"] and seen["iam_after_iam_call"] is True
    assert seen["sent_after_iam"] is True


def test_the_secrets_store_leaves_iam_unloaded() -> None:
    assert run(SECRETS_STORE) == {
        "secret": "v",
        "key": True,
        "iam_after_aws_calls": False,
        "endpoints_kept": ["kms", "secretsmanager", "sqs"],
    }


def test_the_two_iam_answers_are_what_moto_gives_without_iam_keys() -> None:
    """The stand-in's answers against the real functions, in a fresh interpreter where
    no IAM access key exists: the same account, and nothing stamped."""
    probe = """
import json, sys
from echobase.platform import aws_emulator
aws_emulator.keep_moto_lean()
stand_in = sys.modules["moto.iam.models"]
answers = [stand_in.get_account_id_from("AKIAEXAMPLE"),
           stand_in.mark_account_as_visited("123456789012", "AKIAEXAMPLE", "sqs", "us-east-1")]
del sys.modules["moto.iam.models"]
import moto.iam.models as real
real_answers = [real.get_account_id_from("AKIAEXAMPLE"),
                real.mark_account_as_visited("123456789012", "AKIAEXAMPLE", "sqs", "us-east-1")]
print(json.dumps([answers, real_answers]))
"""
    stand_in, real = run(probe)
    assert stand_in == real == ["123456789012", None]
