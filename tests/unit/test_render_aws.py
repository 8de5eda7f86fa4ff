"""The CloudFormation template of ``echobase render aws``: cfn-lint (its Python API, every
rule including the informational ones) finds nothing, each IAM policy grants exactly what
its reader calls, no secret value is in it, and the same input renders the same bytes."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path
from typing import Any

import pytest
import typer
from cfnlint.api import ManualArgs, lint
from typer.testing import CliRunner

from echobase.app.core.secrets import DatabaseCredentials
from echobase.app.queues import MAX_RECEIVE_COUNT, order_queue_attributes
from echobase.cli import render
from echobase.platform.durable import credentials
from echobase.platform.render import aws
from echobase.platform.render.names import kms_alias, queue_names, secret_names
from echobase.platform.stack import COLOURS, ENVIRONMENTS

# Regions the template is linted for: resource types and IAM actions must exist in each.
REGIONS = ["us-east-1", "eu-west-1", "eu-central-1"]


def lint_matches(text: str) -> list[str]:
    matches = lint(text, config=ManualArgs(regions=REGIONS, include_checks=["I"]))
    return [f"{m.rule.id} {m.message} (line {m.linenumber})" for m in matches]


def resources_of(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


@pytest.mark.parametrize("env", ENVIRONMENTS)
@pytest.mark.parametrize("colours", [COLOURS, ("green",)])
def test_cfn_lint_finds_nothing(env: str, colours: tuple[str, ...]) -> None:
    # No rule is ignored: errors, warnings and informational findings all count.
    assert lint_matches(aws.template_json(aws.render_template(env, colours))) == []


def test_cfn_lint_is_really_checking() -> None:
    text = aws.template_json(aws.render_template("ci")).replace(
        '"sqs:ReceiveMessage"', '"sqs:ReceiveMessages"'
    )
    assert any(match.startswith("W3037") for match in lint_matches(text))


def test_same_input_same_bytes() -> None:
    first = aws.template_json(aws.render_template("ci"))
    assert first == aws.template_json(aws.render_template("ci"))
    assert json.loads(first) == aws.render_template("ci")
    assert first.endswith("}\n")


def test_unknown_environment_or_colour_is_refused() -> None:
    with pytest.raises(ValueError, match="prod"):
        aws.render_template("prod")
    with pytest.raises(ValueError, match="purple"):
        aws.render_template("ci", ("purple",))
    with pytest.raises(ValueError):
        aws.render_template("ci", ("blue", "blue"))


# --- queues -------------------------------------------------------------------------------


@pytest.mark.parametrize("colour", COLOURS)
def test_each_colour_has_its_queue_and_dlq_like_the_local_ones(colour: str) -> None:
    template = aws.render_template("ci")
    queue_id, dlq_id = aws.queue_ids(colour)
    queue = template["Resources"][queue_id]["Properties"]
    dlq = template["Resources"][dlq_id]["Properties"]
    assert (queue["QueueName"], dlq["QueueName"]) == queue_names("ci", colour)
    assert queue["QueueName"] == f"echobase-ci-{colour}-orders"
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]},
        "maxReceiveCount": MAX_RECEIVE_COUNT,
    }
    # The attributes the local queue server's queues get (app/queues.py), as numbers.
    local = order_queue_attributes("arn:dlq", visibility_timeout=30)
    for name in ("VisibilityTimeout", "ReceiveMessageWaitTimeSeconds", "MessageRetentionPeriod"):
        assert str(queue[name]) == local[name]
    assert dlq["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert queue["SqsManagedSseEnabled"] is dlq["SqsManagedSseEnabled"] is True


def test_one_colour_renders_only_its_own_resources() -> None:
    template = aws.render_template("devlocal", ("blue",))
    text = json.dumps(template)
    assert "green" not in text.lower()
    assert set(resources_of(template, "AWS::SQS::Queue")) == set(aws.queue_ids("blue"))


# --- key and secrets ------------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_key_rotates_and_has_the_local_alias(env: str) -> None:
    template = aws.render_template(env)
    (key,) = resources_of(template, "AWS::KMS::Key").values()
    assert key["Properties"]["EnableKeyRotation"] is True
    (alias,) = resources_of(template, "AWS::KMS::Alias").values()
    assert alias["Properties"]["AliasName"] == kms_alias(env) == credentials.kms_alias(env)
    assert alias["Properties"]["TargetKeyId"] == {"Ref": aws.KEY}


def test_every_secret_is_generated_under_the_key_and_none_has_a_value() -> None:
    template = aws.render_template("ci")
    secrets = resources_of(template, "AWS::SecretsManager::Secret")
    assert {s["Properties"]["Name"] for s in secrets.values()} == set(secret_names("ci"))
    for secret in secrets.values():
        properties = secret["Properties"]
        assert "SecretString" not in properties
        assert properties["KmsKeyId"] == {"Ref": aws.KEY}
        generate = properties["GenerateSecretString"]
        assert generate["PasswordLength"] >= 32  # the services refuse keys under 256 bits
    keys, strings = walk(template)
    assert not keys & {"SecretString", "SecretBinary", "password", "Password"}
    # Nor anything that looks generated: mixed-case letters with digits, 20 or more long.
    assert [v for v in strings if LOOKS_GENERATED.match(v)] == []


LOOKS_GENERATED = re.compile(r"^(?=.*\d)(?=.*[a-z])(?=.*[A-Z])[A-Za-z0-9+/=_-]{20,}$")


def walk(node: object) -> tuple[set[str], list[str]]:
    """Every mapping key and every string value in a template."""
    keys: set[str] = set()
    strings: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            keys.add(key)
            more_keys, more_strings = walk(value)
            keys |= more_keys
            strings += more_strings
    elif isinstance(node, list):
        for value in node:
            more_keys, more_strings = walk(value)
            keys |= more_keys
            strings += more_strings
    elif isinstance(node, str):
        strings.append(node)
    return keys, strings


def test_the_secret_check_would_see_a_value() -> None:
    assert LOOKS_GENERATED.match("Zq3xV8pLm2Rt7WcY9bKd4Hs6")
    assert "password" in walk({"a": [{"password": "x"}]})[0]


@pytest.mark.parametrize("role", ["database", "mcp_database", "migrations"])
def test_database_secrets_have_the_shape_the_services_read(role: str) -> None:
    """What CloudFormation stores, filled in as it would be, is read by DatabaseCredentials."""
    template = aws.render_template("ci")
    properties = template["Resources"][aws.SECRET_IDS[role]]["Properties"]
    generate = properties["GenerateSecretString"]
    assert generate["GenerateStringKey"] == "password"
    user_parameter, default_user = aws.DB_USER_PARAMETERS[role]
    values = {
        "DatabaseHost": "db.example.internal",
        "DatabasePort": "3306",
        "DatabaseName": template["Parameters"]["DatabaseName"]["Default"],
        user_parameter: default_user,
    }
    document = re.sub(
        r"\$\{(\w+)\}", lambda m: values[m.group(1)], generate["SecretStringTemplate"]["Fn::Sub"]
    )
    stored = json.loads(document) | {"password": "x" * generate["PasswordLength"]}
    read = DatabaseCredentials.from_secret(json.dumps(stored))
    assert (read.username, read.host, read.port, read.dbname) == (
        default_user,
        "db.example.internal",
        3306,
        "orders_db",
    )


def test_parameters_cannot_break_the_secrets_json() -> None:
    parameters = aws.render_template("ci")["Parameters"]
    for name in ("DatabaseHost", "DatabaseName", *(p for p, _ in aws.DB_USER_PARAMETERS.values())):
        pattern = re.compile(parameters[name]["AllowedPattern"])
        assert not pattern.match('db"host'), name
        assert not pattern.match("db\\host"), name
    assert parameters["DatabasePort"]["Type"] == "Number"


# --- least privilege ------------------------------------------------------------------------


def policy_grants(template: dict[str, Any], logical_id: str) -> dict[str, set[str]]:
    """Action -> the resources (as template expressions) it is allowed on."""
    document = template["Resources"][logical_id]["Properties"]["PolicyDocument"]
    grants: dict[str, set[str]] = {}
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow"
        actions = statement["Action"]
        resources = statement["Resource"]
        for action in [actions] if isinstance(actions, str) else actions:
            for resource in resources if isinstance(resources, list) else [resources]:
                grants.setdefault(action, set()).add(json.dumps(resource, sort_keys=True))
    return grants


def arn_of(logical_id: str) -> str:
    return json.dumps({"Fn::GetAtt": [logical_id, "Arn"]})


def ref(logical_id: str) -> str:
    return json.dumps({"Ref": logical_id})


def secrets_of(*roles: str) -> set[str]:
    return {ref(aws.SECRET_IDS[role]) for role in roles}


@pytest.mark.parametrize("colour", COLOURS)
def test_gateway_may_queue_orders_and_read_its_secrets_only(colour: str) -> None:
    template = aws.render_template("ci")
    queue_id, _ = aws.queue_ids(colour)
    assert policy_grants(template, aws.policy_id("gateway", colour)) == {
        "sqs:SendMessage": {arn_of(queue_id)},
        "sqs:GetQueueAttributes": {arn_of(queue_id)},
        "secretsmanager:GetSecretValue": secrets_of("database", "jwt", "mcp_key"),
        "kms:Decrypt": {arn_of(aws.KEY)},
    }


@pytest.mark.parametrize("colour", COLOURS)
def test_processor_may_consume_its_queue_and_dead_letter_only(colour: str) -> None:
    template = aws.render_template("ci")
    queue_id, dlq_id = aws.queue_ids(colour)
    assert policy_grants(template, aws.policy_id("processor", colour)) == {
        "sqs:ReceiveMessage": {arn_of(queue_id)},
        "sqs:DeleteMessage": {arn_of(queue_id)},
        "sqs:ChangeMessageVisibility": {arn_of(queue_id)},
        "sqs:GetQueueAttributes": {arn_of(queue_id)},
        "sqs:SendMessage": {arn_of(dlq_id)},
        "secretsmanager:GetSecretValue": secrets_of("database"),
        "kms:Decrypt": {arn_of(aws.KEY)},
    }


def test_mcp_and_migrations_read_their_own_secrets_only() -> None:
    template = aws.render_template("ci")
    assert policy_grants(template, aws.policy_id("mcp")) == {
        "secretsmanager:GetSecretValue": secrets_of("mcp_database", "mcp_key"),
        "kms:Decrypt": {arn_of(aws.KEY)},
    }
    assert policy_grants(template, aws.policy_id("migrations")) == {
        "secretsmanager:GetSecretValue": secrets_of("migrations"),
        "kms:Decrypt": {arn_of(aws.KEY)},
    }


def test_key_use_only_through_secrets_manager_and_no_wildcard_in_any_policy() -> None:
    template = aws.render_template("ci")
    policies = resources_of(template, "AWS::IAM::ManagedPolicy")
    assert len(policies) == 2 * len(COLOURS) + 2
    for policy in policies.values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert "*" not in json.dumps(statements)  # no wildcard action nor resource
        (decrypt,) = [s for s in statements if s["Action"] == "kms:Decrypt"]
        assert decrypt["Condition"] == {
            "StringEquals": {
                "kms:ViaService": {"Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"}
            }
        }
    # The one "*": the key policy's Resource, which in a key policy means "this key" and is
    # the only value AWS accepts there.
    text = aws.template_json(template)
    assert text.count('"*"') == 1
    (key,) = resources_of(template, "AWS::KMS::Key").values()
    (statement,) = key["Properties"]["KeyPolicy"]["Statement"]
    assert statement["Resource"] == "*"


def test_outputs_name_every_queue_secret_key_and_policy() -> None:
    template = aws.render_template("ci")
    values = [json.dumps(o["Value"], sort_keys=True) for o in template["Outputs"].values()]
    expected = {ref(q) for colour in COLOURS for q in aws.queue_ids(colour)}
    expected |= {ref(s) for s in aws.SECRET_IDS.values()} | {arn_of(aws.KEY)}
    expected |= {ref(p) for p in resources_of(template, "AWS::IAM::ManagedPolicy")}
    assert sorted(values) == sorted(expected)


# --- the command ----------------------------------------------------------------------------

# The render group as `echobase render` mounts it, without loading every other command.
cli = typer.Typer()
cli.add_typer(render.app, name="render")


def test_cli_writes_the_template_readable_by_all(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["render", "aws", "--env", "ci", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    path = tmp_path / "echobase-ci.cfn.json"
    assert result.output.strip() == f"wrote {path}"
    assert path.read_text() == aws.template_json(aws.render_template("ci"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    listed = CliRunner().invoke(
        cli, ["render", "aws", "--env", "ci", "--json", "-o", str(tmp_path / "t.json")]
    )
    assert json.loads(listed.output) == {"written": [str(tmp_path / "t.json")]}
    bad = CliRunner().invoke(cli, ["render", "aws", "--env", "prod", "-o", str(tmp_path)])
    assert bad.exit_code == 2
