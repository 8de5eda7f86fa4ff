"""`echobase render k8s`: the kustomize layout, rendered through the CLI into a directory and
checked offline. Every Kubernetes object is validated (strictly: unknown fields fail) against
the schemas of KUBERNETES_VERSION by kubernetes-validate; the External Secrets Operator's
ExternalSecret is a CRD those schemas lack, so it is validated against a JSON schema written
here from the operator's v1beta1 CRD (the fields used, closed to others). Nothing starts."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from echobase.cli.main import app
from echobase.platform.render import aws, k8s
from echobase.platform.render.names import queue_names, secret_names
from echobase.platform.stack import COLOURS, Stack

IMAGE = "registry.example.com/team/echobase:1.4.2"
HOME = Path("/nonexistent-echobase-home")  # no echobase.toml: the default table
DNS_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# external-secrets.io/v1beta1 ExternalSecret, from the CRD's openAPIV3Schema (v0.10+), cut
# to what the renderer writes and closed (additionalProperties: false) so a misspelt field
# fails as the API server's structural pruning would silently drop it.
EXTERNAL_SECRET_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "external-secrets.io/v1beta1"},
        "kind": {"const": "ExternalSecret"},
        "metadata": {
            "type": "object",
            "required": ["name", "namespace"],
            "properties": {
                "name": {"type": "string", "pattern": DNS_NAME, "maxLength": 253},
                "namespace": {"type": "string", "pattern": DNS_NAME, "maxLength": 63},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "spec": {
            "type": "object",
            "required": ["secretStoreRef", "target", "data"],
            "additionalProperties": False,
            "properties": {
                "refreshInterval": {"type": "string", "pattern": r"^(\d+(ns|us|µs|ms|s|m|h))+$"},
                "secretStoreRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        "kind": {"enum": ["SecretStore", "ClusterSecretStore"]},
                        "name": {"type": "string", "pattern": DNS_NAME, "maxLength": 253},
                    },
                },
                "target": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string", "pattern": DNS_NAME, "maxLength": 253},
                        "creationPolicy": {"enum": ["Owner", "Orphan", "Merge", "None"]},
                    },
                },
                "data": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["secretKey", "remoteRef"],
                        "additionalProperties": False,
                        "properties": {
                            "secretKey": {
                                "type": "string",
                                "pattern": r"^[-._a-zA-Z0-9]+$",
                                "minLength": 1,
                                "maxLength": 253,
                            },
                            "remoteRef": {
                                "type": "object",
                                "required": ["key"],
                                "additionalProperties": False,
                                "properties": {
                                    "key": {"type": "string", "minLength": 1},
                                    "property": {"type": "string"},
                                    "version": {"type": "string"},
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


def render_cli(out: Path, *extra: str, env: str = "devlocal") -> Any:
    return CliRunner().invoke(
        app,
        [
            "render",
            "k8s",
            "--env",
            env,
            "-o",
            str(out),
            "--image",
            IMAGE,
            "--home",
            str(HOME),
            *extra,
        ],
    )


def rendered(out: Path, *extra: str, env: str = "devlocal") -> dict[str, list[dict[str, Any]]]:
    result = render_cli(out, *extra, env=env)
    assert result.exit_code == 0, result.output
    return {
        str(path.relative_to(out)): [d for d in yaml.safe_load_all(path.read_text()) if d]
        for path in sorted(out.rglob("*.yaml"))
    }


def objects(files: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [doc for docs in files.values() for doc in docs if doc["kind"] != "Kustomization"]


def find(files: dict[str, list[dict[str, Any]]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in objects(files) if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def stack() -> Stack:
    return Stack.load(HOME)  # as the command loads it


@pytest.mark.parametrize("secrets", k8s.SECRETS_MODES)
def test_every_manifest_validates_offline(tmp_path: Path, secrets: str) -> None:
    files = rendered(tmp_path, "--secrets", secrets)
    kinds: dict[str, int] = {}
    for doc in objects(files):
        kinds[doc["kind"]] = kinds.get(doc["kind"], 0) + 1
        if doc["kind"] == "ExternalSecret":
            jsonschema.validate(doc, EXTERNAL_SECRET_SCHEMA)
        else:
            assert kubernetes_validate.validate(doc, k8s.KUBERNETES_VERSION, strict=True)
    expected = {
        "Namespace": 1,
        "ServiceAccount": 5,
        "ConfigMap": 4,
        "Service": 3,
        "Deployment": 4,
        "PodDisruptionBudget": 2,
        "HorizontalPodAutoscaler": 2,
        "Job": 1,
        ("ExternalSecret" if secrets == "external" else "Secret"): 5,
    }
    assert kinds == expected


def test_the_validators_refuse_what_a_cluster_would(tmp_path: Path) -> None:
    """A check that cannot fail proves nothing: a misspelt field and a wrong type fail."""
    files = rendered(tmp_path)
    deployment = find(files, "Deployment", "echobase-blue-api-gateway")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, k8s.KUBERNETES_VERSION, strict=True)
    hpa = find(files, "HorizontalPodAutoscaler", "echobase-blue-api-gateway")
    hpa["spec"]["minReplicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(hpa, k8s.KUBERNETES_VERSION, strict=True)
    external = find(files, "ExternalSecret", "echobase-migrations-aws")
    external["spec"]["data"][0]["remoteRef"]["keys"] = "x"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(external, EXTERNAL_SECRET_SCHEMA)


def test_kustomizations_name_files_that_exist(tmp_path: Path) -> None:
    files = rendered(tmp_path)
    for path, (doc,) in ((p, d) for p, d in files.items() if p.endswith("kustomization.yaml")):
        assert doc["namespace"] == "echobase-devlocal"
        for resource in doc["resources"]:
            assert (tmp_path / Path(path).parent / resource).exists(), (path, resource)
    top = files["kustomization.yaml"][0]["resources"]
    assert "migrations" not in top  # run by the deploy, behind the contract gate
    assert top == ["base", "secrets", "colours/blue", "colours/green"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (its kustomize) absent")
def test_kubectl_kustomize_builds_the_layout(tmp_path: Path) -> None:
    files = rendered(tmp_path)
    built = subprocess.run(
        ["kubectl", "kustomize", str(tmp_path)], capture_output=True, text=True, check=True
    ).stdout
    docs = [d for d in yaml.safe_load_all(built) if d]
    expected = [d for d in objects(files) if d["kind"] != "Job"]  # the Job is run apart
    key = lambda d: (d["kind"], d["metadata"]["name"])  # noqa: E731
    assert sorted(map(key, docs)) == sorted(map(key, expected))
    assert len(docs) == 26
    assert {d["metadata"].get("namespace", "echobase-devlocal") for d in docs} == {
        "echobase-devlocal"
    }


@pytest.mark.parametrize("live", COLOURS)
def test_probes_and_ports_are_the_stacks(tmp_path: Path, live: str) -> None:
    files = rendered(tmp_path, "--live", live)
    for colour in COLOURS:
        for role in k8s.ROLES:
            service = stack().colour_service(colour, role)
            deployment = find(files, "Deployment", service.name)
            (container,) = deployment["spec"]["template"]["spec"]["containers"]
            assert container["ports"] == [
                {"name": "http", "containerPort": service.port, "protocol": "TCP"}
            ]
            for probe in ("startupProbe", "readinessProbe"):
                assert container[probe]["httpGet"] == {
                    "path": service.health_path,
                    "port": service.port,
                }
            # Not the dependency check: an outage of MariaDB must not restart every pod.
            assert container["livenessProbe"]["tcpSocket"] == {"port": service.port}
            assert "httpGet" not in container["livenessProbe"]
            env = {e["name"]: e["value"] for e in container["env"]}
            assert env["ECHOBASE_PORT"] == str(service.port)
            assert env["ECHOBASE_COLOUR"] == colour
            assert env["ECHOBASE_RELEASE"] == "1.4.2"
            assert container["image"] == IMAGE
            assert container["args"] == [k8s.MODULES[role]]
            assert container["resources"]["limits"]["memory"]
            assert container["securityContext"] == {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "runAsNonRoot": True,
                "capabilities": {"drop": ["ALL"]},
            }
            pod = deployment["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert pod["serviceAccountName"] == f"echobase-{colour}-{role}"


@pytest.mark.parametrize("live", COLOURS)
def test_the_production_selector_is_the_live_colour(tmp_path: Path, live: str) -> None:
    files = rendered(tmp_path, "--live", live)
    production = find(files, "Service", "echobase")
    assert production["spec"]["selector"] == {
        k8s.PART_OF: "echobase",
        k8s.COMPONENT: "api-gateway",
        k8s.COLOUR_LABEL: live,
    }
    for colour in COLOURS:
        own = find(files, "Service", f"echobase-{colour}")
        assert own["spec"]["selector"][k8s.COLOUR_LABEL] == colour
        # Each Service reaches exactly the pods of one colour's gateway Deployment.
        gateway = find(files, "Deployment", f"echobase-{colour}-api-gateway")
        labels = gateway["spec"]["template"]["metadata"]["labels"]
        assert own["spec"]["selector"].items() <= labels.items()
        processor = find(files, "Deployment", f"echobase-{colour}-order-processor")
        assert (
            not own["spec"]["selector"].items()
            <= processor["spec"]["template"]["metadata"]["labels"].items()
        )
        pdb = find(files, "PodDisruptionBudget", f"echobase-{colour}-api-gateway")
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
        hpa = find(files, "HorizontalPodAutoscaler", f"echobase-{colour}-api-gateway")
        assert hpa["spec"]["scaleTargetRef"]["name"] == gateway["metadata"]["name"]
        assert "replicas" not in gateway["spec"]  # the autoscaler's to set


@pytest.mark.parametrize("secrets", k8s.SECRETS_MODES)
def test_no_secret_value_and_no_emulator_anywhere(tmp_path: Path, secrets: str) -> None:
    files = rendered(tmp_path, "--secrets", secrets)
    text = "\n".join(path.read_text() for path in tmp_path.rglob("*.yaml"))
    assert "ENDPOINT_URL" not in text  # the real AWS services, no emulator
    assert "localhost" not in text and "127.0.0.1" not in text
    for doc in objects(files):
        if doc["kind"] == "Secret":
            assert "data" not in doc
            assert set(doc["stringData"].values()) == {""}
        for container in _containers(doc):
            for entry in container.get("env", []):
                assert not re.search(r"PASSWORD|SECRET_ACCESS|TOKEN|_KEY$", entry["name"])
    settings = find(files, "ConfigMap", "echobase-settings")["data"]
    names = secret_names("devlocal")
    assert settings["ECHOBASE_DB_SECRET_NAME"] == names.database
    assert settings["ECHOBASE_JWT_SECRET_NAME"] == names.jwt
    assert settings["ECHOBASE_HOST"] == "0.0.0.0"  # noqa: S104 - what a pod listens on
    for key, value in settings.items():
        assert not re.search(r"PASSWORD|SECRET_ACCESS|TOKEN", key), key
        if key.endswith("_SECRET_NAME"):
            assert value.startswith("echobase/devlocal/")


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    template = doc.get("spec", {}).get("template", {})
    return list(template.get("spec", {}).get("containers", []))


def test_queues_migrations_and_roles_match_the_other_renderings(tmp_path: Path) -> None:
    files = rendered(tmp_path, "--aws-account-id", "210987654321", "--region", "eu-west-1")
    for colour in COLOURS:
        urls = find(files, "ConfigMap", f"echobase-{colour}-queues")["data"]
        names = queue_names("devlocal", colour)
        base = "https://sqs.eu-west-1.amazonaws.com/210987654321"
        assert urls == {
            "ECHOBASE_SQS_QUEUE_URL": f"{base}/{names.queue}",
            "ECHOBASE_SQS_DLQ_URL": f"{base}/{names.dlq}",
        }
    job = find(files, "Job", "echobase-migrate-1-4-2")
    (container,) = _containers(job)
    assert container["args"] == [
        "echobase.app.db.migrate",
        "upgrade",
        "--secret",
        secret_names("devlocal").migrations,
    ]
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == "echobase-migrations"
    # Each ServiceAccount's role is named as the CloudFormation policy meant for it.
    template = aws.render_template("devlocal")
    policies = {
        resource["Properties"]["ManagedPolicyName"]
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::IAM::ManagedPolicy"
    }
    roles = {
        doc["metadata"]["annotations"][k8s.ROLE_ARN_ANNOTATION]
        for doc in objects(files)
        if doc["kind"] == "ServiceAccount"
    }
    assert {arn.removeprefix("arn:aws:iam::210987654321:role/") for arn in roles} <= policies
    assert len(roles) == 5


def test_rendering_is_deterministic(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    rendered(first, "--live", "green")
    rendered(second, "--live", "green")
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for relative in files:
        assert (first / relative).read_bytes() == (second / relative).read_bytes()
        assert (first / relative).stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--env", "staging"], "unknown environment 'staging'"),
        (["--image", "Not An Image"], "bad image reference"),
        (["--image", "registry.example.com/echobase"], "has no tag or digest"),
        (["--secrets", "vault"], "unknown secrets mode 'vault'"),
        (["--live", "red"], "unknown colour 'red'"),
        (["--aws-account-id", "12345"], "bad AWS account id"),
        (["--namespace", "Echo_Base"], "bad namespace"),
    ],
)
def test_bad_input_is_a_usage_error(tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(
        app,
        [
            "render",
            "k8s",
            "--env",
            "devlocal",
            "-o",
            str(tmp_path / "out"),
            "--image",
            IMAGE,
            *args,
        ],
    )
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "out").exists()


def test_image_references() -> None:
    digest = "sha256:" + "ab" * 32
    assert k8s.parse_image(f"echobase@{digest}").release == digest[:19]
    assert k8s.parse_image("localhost:5000/echobase:v1").release == "v1"
    assert k8s.parse_image(f"ghcr.io/a/b:1.0@{digest}").reference == f"ghcr.io/a/b:1.0@{digest}"
    assert k8s.migration_job_name("0.1.0+Local_Build") == "echobase-migrate-0-1-0-local-build"
