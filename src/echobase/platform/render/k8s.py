"""The stack as Kubernetes manifests: a kustomize layout for one environment in one namespace.

``render(stack, target)`` returns ``{relative path: manifest or list of manifests}``; the CLI
writes each as YAML (a list as one multi-document file). Pure: nothing is read or written.

Layout, and why it is cut this way::

    kustomization.yaml          base + secrets + both colours: the first install
    base/                       what both colours share and a deploy never changes
      namespace.yaml            pod security "restricted" enforced for every pod in it
      service-accounts.yaml     one per workload and colour, each with its IAM role
      settings.yaml             ConfigMap echobase-settings: region, secret NAMES, [services]
      history.yaml              ConfigMap echobase-history: deploys append to it
      production-service.yaml   Service echobase: its selector names the live colour
    colours/blue/, colours/green/
      queues.yaml               ConfigMap: the colour's queue URLs (fill in if rendered
                                without --aws-account-id)
      api-gateway.yaml          Deployment (probes, resources, security), no replica count:
      order-processor.yaml        the autoscaler owns the gateway's, the processor runs one
      service.yaml              Service echobase-{colour}: the colour on its own, for smoke tests
      pdb.yaml, hpa.yaml        the gateway's PodDisruptionBudget and autoscaler
    migrations/                 a Job: this release's migrations (not in the top level: a
                                Job's template cannot be changed in place, and migrations
                                must finish before a colour serves; `echobase deploy
                                --target k8s` runs them behind the contract gate)
    secrets/                    the pods' AWS identity where the cluster gives them none

Blue/green is the one the Argo Rollouts blue-green strategy uses: both colours run, each
behind its own Service, and the production Service's selector ``echobase.io/colour`` is the
switch (``kubectl patch`` of one field; no pod restarts, and switching back is the same
patch). Apply the top level once; after that ``echobase deploy --target k8s`` moves only the
idle colour and the selector (re-applying the top level would put the rendered live colour
and image back everywhere: render with ``--live`` as the cluster has it first).

Credentials. The services read their secrets (database, JWT key, MCP key) from AWS Secrets
Manager themselves, by the names in ``echobase-settings`` (the app's rule: never from the
environment or files), so no secret value is ever in a manifest or a pod's environment. What
a pod needs for that is an AWS identity:

- on EKS, IAM roles for service accounts: each ServiceAccount carries
  ``eks.amazonaws.com/role-arn`` naming a role to which the team attaches the managed policy
  that ``echobase render aws`` creates for that workload (the role names mirror its policy
  names; a unit test holds them together);
- elsewhere, ``secrets/`` gives each workload a key pair as ``AWS_ACCESS_KEY_ID`` and
  ``AWS_SECRET_ACCESS_KEY`` in a Secret the pods read as optional environment:
  ``--secrets external`` (default) renders External Secrets Operator ``ExternalSecret``s
  (external-secrets.io/v1beta1) that copy it from Secrets Manager
  (``echobase/{env}/kubernetes/{role}``, JSON ``access_key_id``/``secret_access_key``)
  through the ClusterSecretStore ``aws-secrets-manager`` the cluster's ESO installation
  provides; ``--secrets plain`` renders the Secrets themselves with empty values, for a dev
  cluster, to be filled in there and never committed. Empty values make the SDK fall
  through to the next provider, so IRSA still works with either.

SQS, Secrets Manager and KMS are the real AWS services: no ``*_ENDPOINT_URL`` is set. Queue
names come from ``render.names.queue_names``, as the CloudFormation template creates them.
The recommendations (MCP) service is not rendered: without ``ECHOBASE_MCP_URL`` logins
answer no recommendations, as the gateway already degrades.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from echobase.platform.render.names import queue_names, secret_names
from echobase.platform.stack import COLOURS, Stack, StackConfigError, check_colour, check_env

Manifest = dict[str, Any]
Rendering = dict[str, Manifest | list[Manifest]]

# The Kubernetes version the manifests are written and validated for (1.30 is the oldest
# that takes them: the preStop sleep action).
KUBERNETES_VERSION = "1.31"
SECRETS_MODES = ("external", "plain")
PRODUCTION_SERVICE = "echobase"
SETTINGS_CONFIGMAP = "echobase-settings"
HISTORY_CONFIGMAP = "echobase-history"
LOCK_LEASE = "echobase-deploy"
COLOUR_LABEL = "echobase.io/colour"
PART_OF = "app.kubernetes.io/part-of"
COMPONENT = "app.kubernetes.io/component"
ROLE_ARN_ANNOTATION = "eks.amazonaws.com/role-arn"
# A name ESO installations commonly give their AWS store; the cluster's admin owns it.
CLUSTER_SECRET_STORE = "aws-secrets-manager"  # noqa: S105 - a name
ACCOUNT_PLACEHOLDER = "AWS_ACCOUNT_ID"
# The image's non-root user (the Dockerfile's): runAsNonRoot can only verify a numeric one.
IMAGE_UID = 10001
HTTP_PORT = 80
ROLES = ("api-gateway", "order-processor")
MODULES: Mapping[str, str] = {
    "api-gateway": "echobase.app.gateway",
    "order-processor": "echobase.app.processor",
}
# What each reader is called in the CloudFormation template's managed policies.
POLICY_READERS: Mapping[str, str] = {"api-gateway": "gateway", "order-processor": "processor"}
MIGRATIONS = "migrations"
# One uvicorn worker is 150-160 MiB after load (docs/benchmarks.md); the processor and a
# migration run are smaller. Memory limits leave room for a burst; CPU is requested, and
# capped so that one runaway pod cannot starve its node.
RESOURCES: Mapping[str, Manifest] = {
    "api-gateway": {
        "requests": {"cpu": "250m", "memory": "192Mi"},
        "limits": {"cpu": "1", "memory": "384Mi"},
    },
    "order-processor": {
        "requests": {"cpu": "100m", "memory": "160Mi"},
        "limits": {"cpu": "500m", "memory": "320Mi"},
    },
    MIGRATIONS: {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"cpu": "500m", "memory": "384Mi"},
    },
    "smoke": {
        "requests": {"cpu": "50m", "memory": "32Mi"},
        "limits": {"cpu": "200m", "memory": "64Mi"},
    },
}
GATEWAY_REPLICAS = (2, 6)  # the autoscaler's range: two, so a drain never empties a colour
CPU_TARGET_PERCENT = 70
# uvicorn drains in-flight requests, the processor finishes its batch (as stopwaitsecs=40
# locally); the preStop pause lets endpoints drop the pod before it stops listening.
GRACE_SECONDS = 45
PRE_STOP_SECONDS = 5

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_ACCOUNT = re.compile(r"^\d{12}$")
# The reference grammar of distribution/reference, less its rarely used corners: a
# lower-case path of components (with an optional registry host[:port] first), then a tag,
# a digest or both. No implicit ":latest": a rendering names exactly one build.
_IMAGE = re.compile(
    r"^(?P<repository>(?:[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?(?::\d+)?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)


class K8sRenderError(StackConfigError):
    """A bad input to the Kubernetes rendering; the message says which and how to fix it."""


@dataclass(frozen=True)
class Image:
    repository: str
    tag: str | None
    digest: str | None

    @property
    def reference(self) -> str:
        return (
            self.repository
            + (f":{self.tag}" if self.tag else "")
            + (f"@{self.digest}" if self.digest else "")
        )

    @property
    def release(self) -> str:
        """What the services report as ECHOBASE_RELEASE: the tag, else the digest's start."""
        return self.tag or str(self.digest)[:19]


def parse_image(reference: str) -> Image:
    match = _IMAGE.match(reference)
    if match is None:
        raise K8sRenderError(
            f"bad image reference {reference!r}: expected REPOSITORY:TAG or "
            "REPOSITORY@sha256:DIGEST, e.g. registry.example.com/echobase:0.1.0"
        )
    if not match["tag"] and not match["digest"]:
        raise K8sRenderError(
            f"image {reference!r} has no tag or digest: name the build exactly "
            "(REPOSITORY:TAG), never an implicit :latest"
        )
    return Image(match["repository"], match["tag"], match["digest"])


@dataclass(frozen=True)
class K8sTarget:
    """The explicit inputs of a rendering, checked as they are made."""

    env: str
    image: str
    live: str = "blue"
    secrets: str = "external"
    namespace: str = ""  # default echobase-{env}
    region: str = "us-east-1"
    account_id: str = ACCOUNT_PLACEHOLDER
    parsed: Image = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_env(self.env)
        check_colour(self.live)
        object.__setattr__(self, "parsed", parse_image(self.image))
        if self.secrets not in SECRETS_MODES:
            raise K8sRenderError(f"unknown secrets mode {self.secrets!r}: {SECRETS_MODES}")
        if not self.namespace:
            object.__setattr__(self, "namespace", f"echobase-{self.env}")
        if not _NAME.match(self.namespace):
            raise K8sRenderError(
                f"bad namespace {self.namespace!r}: lower-case letters, digits and '-', at most 63"
            )
        if not _REGION.match(self.region):
            raise K8sRenderError(f"bad AWS region {self.region!r} (e.g. eu-west-1)")
        if self.account_id != ACCOUNT_PLACEHOLDER and not _ACCOUNT.match(self.account_id):
            raise K8sRenderError(f"bad AWS account id {self.account_id!r}: 12 digits")


# --- names --------------------------------------------------------------------------------


def deployment_name(stack: Stack, colour: str, role: str) -> str:
    return stack.colour_service(colour, role).name  # echobase-{colour}-{role}, as locally


def colour_service_name(colour: str) -> str:
    return f"echobase-{check_colour(colour)}"


def service_account_name(workload: str, colour: str | None = None) -> str:
    return f"echobase-{colour}-{workload}" if colour else f"echobase-{workload}"


def iam_role_name(env: str, workload: str, colour: str | None = None) -> str:
    """The role a workload's ServiceAccount assumes: named as the CloudFormation template's
    managed policy that it is meant to carry (``echobase-{env}-{colour}-gateway``, ...)."""
    if workload == MIGRATIONS:
        return f"echobase-{env}-{MIGRATIONS}"
    return f"echobase-{env}-{colour}-{POLICY_READERS[workload]}"


def aws_credentials_secret(workload: str, colour: str | None = None) -> str:
    return f"{service_account_name(workload, colour)}-aws"


def aws_credentials_key(env: str, workload: str, colour: str | None = None) -> str:
    """Where a cluster without IRSA keeps the workload's key pair in Secrets Manager."""
    return f"echobase/{env}/kubernetes/{service_account_name(workload, colour)}"


def identities() -> list[tuple[str, str | None]]:
    """Every workload with an AWS identity of its own: (workload, colour or None)."""
    return [(role, colour) for colour in COLOURS for role in ROLES] + [(MIGRATIONS, None)]


def colour_queues_configmap(colour: str) -> str:
    return f"echobase-{check_colour(colour)}-queues"


# --- building blocks -----------------------------------------------------------------------


def _meta(target: K8sTarget, name: str, labels: Mapping[str, str], **extra: Any) -> Manifest:
    return {"name": name, "namespace": target.namespace, "labels": dict(labels), **extra}


def _labels(component: str, colour: str | None = None) -> dict[str, str]:
    labels = {
        "app.kubernetes.io/name": "echobase",
        PART_OF: "echobase",
        COMPONENT: component,
        "app.kubernetes.io/managed-by": "echobase",
    }
    if colour:
        labels[COLOUR_LABEL] = colour
    return labels


def _selector(component: str, colour: str) -> dict[str, str]:
    return {PART_OF: "echobase", COMPONENT: component, COLOUR_LABEL: colour}


def pod_security() -> Manifest:
    return {
        "runAsNonRoot": True,
        "runAsUser": IMAGE_UID,
        "runAsGroup": IMAGE_UID,
        "fsGroup": IMAGE_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security() -> Manifest:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _tmp() -> tuple[list[Manifest], list[Manifest]]:
    """A writable /tmp on a read-only root (uvicorn, the SDK and Python's tempfile use it)."""
    return (
        [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 - the pod's own emptyDir
        [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
    )


def _identity_env(workload: str, colour: str | None) -> list[Manifest]:
    return [
        {"configMapRef": {"name": SETTINGS_CONFIGMAP}},
        *([{"configMapRef": {"name": colour_queues_configmap(colour)}}] if colour else []),
        {"secretRef": {"name": aws_credentials_secret(workload, colour), "optional": True}},
    ]


def _probe(path: str | None, port: int, period: int, failures: int, timeout: int) -> Manifest:
    action: Manifest = (
        {"httpGet": {"path": path, "port": port}} if path else {"tcpSocket": {"port": port}}
    )
    return {
        **action,
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": timeout,
    }


# --- base ----------------------------------------------------------------------------------


def namespace(target: K8sTarget) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": target.namespace,
            "labels": {
                **_labels("namespace"),
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": f"v{KUBERNETES_VERSION}",
            },
        },
    }


def service_accounts(target: K8sTarget) -> list[Manifest]:
    accounts = []
    for workload, colour in identities():
        role = iam_role_name(target.env, workload, colour)
        accounts.append(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": _meta(
                    target,
                    service_account_name(workload, colour),
                    _labels(workload, colour),
                    annotations={
                        ROLE_ARN_ANNOTATION: f"arn:aws:iam::{target.account_id}:role/{role}"
                    },
                ),
                # The services never call the Kubernetes API; IRSA mounts its own token.
                "automountServiceAccountToken": False,
            }
        )
    return accounts


def settings(stack: Stack, target: K8sTarget) -> Manifest:
    """What every pod of the environment reads: plain settings and secret NAMES only."""
    names = secret_names(target.env)
    data = {
        **{key: stack.service_settings[key] for key in sorted(stack.service_settings)},
        "ECHOBASE_ENVIRONMENT": target.env,
        "ECHOBASE_HOST": "0.0.0.0",  # noqa: S104 - a pod's own network namespace
        "ECHOBASE_AWS_REGION": target.region,
        "AWS_DEFAULT_REGION": target.region,  # the SDK's STS call for a web identity
        "ECHOBASE_DB_SECRET_NAME": names.database,
        "ECHOBASE_JWT_SECRET_NAME": names.jwt,
        "ECHOBASE_MCP_KEY_SECRET_NAME": names.mcp_key,
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(target, SETTINGS_CONFIGMAP, _labels("settings")),
        "data": data,
    }


def history(target: K8sTarget) -> Manifest:
    """Empty: each deploy adds one key (merge patch), so applying this never erases any."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(target, HISTORY_CONFIGMAP, _labels("history")),
    }


def _gateway_service(target: K8sTarget, name: str, colour: str, component: str) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(target, name, _labels(component)),
        "spec": {
            "type": "ClusterIP",
            "selector": _selector("api-gateway", colour),
            "ports": [{"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def production_service(target: K8sTarget) -> Manifest:
    """The one Service users reach (through the team's Ingress or load balancer): the live
    colour's gateways."""
    return _gateway_service(target, PRODUCTION_SERVICE, target.live, "production")


# --- a colour ------------------------------------------------------------------------------


def queues(target: K8sTarget, colour: str) -> Manifest:
    names = queue_names(target.env, colour)
    base = f"https://sqs.{target.region}.amazonaws.com/{target.account_id}"
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(target, colour_queues_configmap(colour), _labels("queues", colour)),
        "data": {
            "ECHOBASE_SQS_QUEUE_URL": f"{base}/{names.queue}",
            "ECHOBASE_SQS_DLQ_URL": f"{base}/{names.dlq}",
        },
    }


def container_env(stack: Stack, colour: str, role: str, release: str) -> list[Manifest]:
    """What differs per colour and role, set on the container itself (so a new release's
    value rolls the pods): the colour, the release, the port from the stack's table."""
    env = [
        {"name": "ECHOBASE_COLOUR", "value": colour},
        {"name": "ECHOBASE_RELEASE", "value": release},
        {"name": "ECHOBASE_PORT", "value": str(stack.colour_service(colour, role).port)},
    ]
    if role == "api-gateway":
        # One worker a pod: a colour scales by pods (the autoscaler), not by processes.
        env.append({"name": "ECHOBASE_WORKERS", "value": "1"})
    return env


def deployment(stack: Stack, target: K8sTarget, colour: str, role: str) -> Manifest:
    service = stack.colour_service(colour, role)
    mounts, volumes = _tmp()
    labels = _labels(role, colour)
    container = {
        "name": role,
        "image": target.parsed.reference,
        "imagePullPolicy": "IfNotPresent",
        # The image's ENTRYPOINT is `python -I -m`: the arguments name the module.
        "args": [MODULES[role]],
        "ports": [{"name": "http", "containerPort": service.port, "protocol": "TCP"}],
        "env": container_env(stack, colour, role, target.parsed.release),
        "envFrom": _identity_env(role, colour),
        # Startup: up to 90 s (a secret the store is still writing is waited for, 30 s).
        # Readiness: out of the Service within 10 s of failing. Liveness: only after two
        # minutes of failures, so that a short database outage (which /health reports)
        # takes pods out of rotation without restarting all of them.
        "startupProbe": _probe(service.health_path, service.port, 2, 45, 3),
        "readinessProbe": _probe(service.health_path, service.port, 5, 2, 3),
        # The health check answers 503 while MariaDB or SQS is away, which is what readiness
        # is for; a restart cures neither, and restarting every pod during an outage would
        # add cold starts to it. Liveness asks only whether the process still answers.
        "livenessProbe": _probe(None, service.port, 20, 6, 5),
        "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SECONDS}}},
        "resources": RESOURCES[role],
        "securityContext": container_security(),
        "volumeMounts": mounts,
    }
    spec: Manifest = {
        "revisionHistoryLimit": 5,  # what `kubectl rollout undo` goes back to
        "selector": {"matchLabels": _selector(role, colour)},
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
        },
        "template": {
            "metadata": {
                "labels": labels,
                "annotations": {
                    "prometheus.io/scrape": "true",
                    "prometheus.io/port": str(service.port),
                    "prometheus.io/path": "/metrics",
                },
            },
            "spec": {
                "serviceAccountName": service_account_name(role, colour),
                "automountServiceAccountToken": False,
                "terminationGracePeriodSeconds": GRACE_SECONDS,
                "securityContext": pod_security(),
                "containers": [container],
                "volumes": volumes,
            },
        },
    }
    if role == "order-processor":
        # One consumer as locally; the queue holds orders through a restart. The gateway's
        # count is left to its autoscaler (a count here would reset it on every apply).
        spec = {"replicas": 1, **spec}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(target, deployment_name(stack, colour, role), labels),
        "spec": spec,
    }


def colour_service(target: K8sTarget, colour: str) -> Manifest:
    return _gateway_service(target, colour_service_name(colour), colour, "colour")


def disruption_budget(stack: Stack, target: K8sTarget, colour: str) -> Manifest:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(
            target, deployment_name(stack, colour, "api-gateway"), _labels("api-gateway", colour)
        ),
        "spec": {"minAvailable": 1, "selector": {"matchLabels": _selector("api-gateway", colour)}},
    }


def autoscaler(stack: Stack, target: K8sTarget, colour: str) -> Manifest:
    name = deployment_name(stack, colour, "api-gateway")
    low, high = GATEWAY_REPLICAS
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(target, name, _labels("api-gateway", colour)),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": low,
            "maxReplicas": high,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": CPU_TARGET_PERCENT,
                        },
                    },
                }
            ],
        },
    }


# --- migrations and secrets ------------------------------------------------------------------


def migration_job(target: K8sTarget, name: str, command: str = "upgrade") -> Manifest:
    """This image's ``migrate COMMAND --secret`` (upgrade or pending) as a Job: the schema
    owner's credentials come from Secrets Manager over TCP, with its own identity."""
    mounts, volumes = _tmp()
    labels = _labels(MIGRATIONS)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(target, name, labels),
        "spec": {
            "backoffLimit": 0,  # a failed migration is looked at, never retried blindly
            "activeDeadlineSeconds": 900,
            "ttlSecondsAfterFinished": 86400,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": service_account_name(MIGRATIONS),
                    "automountServiceAccountToken": False,
                    "securityContext": pod_security(),
                    "containers": [
                        {
                            "name": "migrate",
                            "image": target.parsed.reference,
                            "imagePullPolicy": "IfNotPresent",
                            "args": [
                                "echobase.app.db.migrate",
                                command,
                                "--secret",
                                secret_names(target.env).migrations,
                            ],
                            "envFrom": _identity_env(MIGRATIONS, None),
                            "resources": RESOURCES[MIGRATIONS],
                            "securityContext": container_security(),
                            "volumeMounts": mounts,
                        }
                    ],
                    "volumes": volumes,
                },
            },
        },
    }


def aws_credentials(target: K8sTarget) -> list[Manifest]:
    """Per workload: an ExternalSecret (``external``) or an empty Secret (``plain``)."""
    out = []
    for workload, colour in identities():
        name = aws_credentials_secret(workload, colour)
        labels = _labels(workload, colour)
        if target.secrets == "plain":
            out.append(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": _meta(target, name, labels),
                    "type": "Opaque",
                    # Placeholders: filled in on the dev cluster, never in a file.
                    "stringData": {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""},
                }
            )
            continue
        key = aws_credentials_key(target.env, workload, colour)
        out.append(
            {
                "apiVersion": "external-secrets.io/v1beta1",
                "kind": "ExternalSecret",
                "metadata": _meta(target, name, labels),
                "spec": {
                    "refreshInterval": "1h",
                    "secretStoreRef": {"kind": "ClusterSecretStore", "name": CLUSTER_SECRET_STORE},
                    "target": {"name": name, "creationPolicy": "Owner"},
                    "data": [
                        {
                            "secretKey": "AWS_ACCESS_KEY_ID",
                            "remoteRef": {"key": key, "property": "access_key_id"},
                        },
                        {
                            "secretKey": "AWS_SECRET_ACCESS_KEY",
                            "remoteRef": {"key": key, "property": "secret_access_key"},
                        },
                    ],
                },
            }
        )
    return out


# --- the layout --------------------------------------------------------------------------------


def _kustomization(target: K8sTarget, resources: list[str]) -> Manifest:
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": target.namespace,
        "resources": resources,
    }


def migration_job_name(release: str) -> str:
    """A DNS label from the release (a Job per release: a finished one is kept a day)."""
    slug = re.sub(r"[^a-z0-9-]+", "-", release.lower()).strip("-")[:40].strip("-")
    return f"echobase-migrate-{slug or 'release'}"


def render(stack: Stack, target: K8sTarget) -> Rendering:
    files: Rendering = {
        "kustomization.yaml": _kustomization(
            target, ["base", "secrets", *(f"colours/{colour}" for colour in COLOURS)]
        ),
        "base/kustomization.yaml": _kustomization(
            target,
            [
                "namespace.yaml",
                "service-accounts.yaml",
                "settings.yaml",
                "history.yaml",
                "production-service.yaml",
            ],
        ),
        "base/namespace.yaml": namespace(target),
        "base/service-accounts.yaml": service_accounts(target),
        "base/settings.yaml": settings(stack, target),
        "base/history.yaml": history(target),
        "base/production-service.yaml": production_service(target),
    }
    for colour in COLOURS:
        where = f"colours/{colour}"
        files[f"{where}/kustomization.yaml"] = _kustomization(
            target,
            [
                "queues.yaml",
                "api-gateway.yaml",
                "order-processor.yaml",
                "service.yaml",
                "pdb.yaml",
                "hpa.yaml",
            ],
        )
        files[f"{where}/queues.yaml"] = queues(target, colour)
        for role in ROLES:
            files[f"{where}/{role}.yaml"] = deployment(stack, target, colour, role)
        files[f"{where}/service.yaml"] = colour_service(target, colour)
        files[f"{where}/pdb.yaml"] = disruption_budget(stack, target, colour)
        files[f"{where}/hpa.yaml"] = autoscaler(stack, target, colour)
    files["migrations/kustomization.yaml"] = _kustomization(target, ["job.yaml"])
    files["migrations/job.yaml"] = migration_job(target, migration_job_name(target.parsed.release))
    files["secrets/kustomization.yaml"] = _kustomization(target, ["aws-credentials.yaml"])
    files["secrets/aws-credentials.yaml"] = aws_credentials(target)
    return files


def manifest_json(manifest: Manifest | list[Manifest]) -> str:
    """Manifests as kubectl reads them on stdin (JSON is YAML; a list becomes a v1 List)."""
    if isinstance(manifest, list):
        manifest = {"apiVersion": "v1", "kind": "List", "items": manifest}
    return json.dumps(manifest, sort_keys=True)
