"""``echobase deploy --target k8s`` as data: the local pipeline (bluegreen/pipeline.py) spelt
as kubectl commands against the layout ``render/k8s.py`` writes. Pure: ``deploy_plan``
returns the steps; ``bluegreen/k8s_runner.py`` runs them and is the only part that acts.

The steps, for live colour L and the idle colour T:

1. lock: ``kubectl create`` of a ``coordination.k8s.io/v1`` Lease (creation fails while
   another deploy's exists; it names its holder). Released (deleted) at the end, whatever
   happened; a crashed deployer leaves it for a person to delete, as the message says.
2. live: the production Service's selector, read under the lock, must still be L (the plan
   was made for it).
3. migrations, pending: a Job of the NEW image runs ``migrate pending --secret`` and its log
   is read (the JSON document is the last thing it prints). When revisions are pending, the
   LIVE release's tables come from ``migrate schema`` run by ``kubectl exec`` in a live
   gateway pod (the code that serves now), and ``contract.pending_violations`` refuses what
   would break it unless ``--allow-contract``; then a Job runs ``migrate upgrade``.
4. deploy T: one strategic-merge patch per Deployment sets the image and ECHOBASE_RELEASE
   (one rollout each; probes, resources and settings stay as applied). Undone by
   ``kubectl rollout undo``, so the idle colour goes back to a release that worked.
5. ``kubectl rollout status --timeout``: every new pod passed its readiness probe.
6. smoke: a throwaway pod of the new image (``kubectl run --rm --attach``) asks T's own
   Service for ``/health`` and checks the colour that answers. A pod in the cluster, rather
   than a port-forward: it goes through the Service and cluster DNS as production traffic
   does, needs no local port or background process, and its exit code is the verdict.
   (The local pipeline's register-order-database check is not run: it needs database
   access from the deployer's machine.)
7. switch: ``kubectl patch service`` sets the production selector to T. Undone by the same
   patch back to L.
8. verify: the same smoke pod through the production Service must now be answered by T.
9. history: a merge patch adds one key (time and run id) to ConfigMap echobase-history,
   with the event as the local history.jsonl writes it.

Every argv starts ``kubectl --kubeconfig FILE --namespace NS``. A failure runs the undo of
every step that succeeded, newest first (so a failed verify switches back, then rolls T
back), then the history entry, then each step's cleanup (Jobs deleted, the lock last).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from echobase.platform.render import k8s
from echobase.platform.stack import COLOURS, Stack, StackConfigError, check_colour

ROLLOUT_TIMEOUT_SECONDS = 300
JOB_TIMEOUT_SECONDS = 600
SMOKE_TIMEOUT_SECONDS = 120
# The smoke pod's check: the URL's /health answers 200 with the expected colour; retried for
# a while, since a Service's endpoints and a changed selector take seconds to reach every
# node. Standard library only, in the release's own image.
SMOKE_SCRIPT = """\
import json, sys, time, urllib.request
url, colour = sys.argv[1], sys.argv[2]
deadline, seen = time.monotonic() + 60, "no answer"
while True:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            served = json.load(answer).get("colour")
        if served == colour:
            print(f"{url}: healthy, answered by {colour}")
            sys.exit(0)
        seen = f"answered by {served!r}"
    except Exception as exc:
        seen = f"{type(exc).__name__}: {exc}"
    if time.monotonic() > deadline:
        sys.exit(f"{url}: {seen}, not healthy {colour}")
    time.sleep(2)
"""
_RUN_ID = re.compile(r"^[a-z0-9]{1,12}$")


@dataclass(frozen=True)
class Step:
    """One kubectl command: what it proves when it succeeds, and what puts it right."""

    name: str
    argv: tuple[str, ...]
    checks: str
    stdin: str | None = None  # manifests (JSON) for `-f -`
    expect: str | None = None  # its stdout, stripped, must be this
    capture: str | None = None  # keep its JSON output under this name
    judge: str | None = None  # a named check of what was captured ("contract")
    when: str | None = None  # run only if this holds ("pending-revisions")
    timeout: float = 60
    undo: tuple[Step, ...] = ()  # if a later step fails, newest first
    cleanup: tuple[Step, ...] = ()  # at the end whatever happened, once this succeeded

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "argv": list(self.argv), "checks": self.checks}
        for key in ("stdin", "expect", "capture", "judge", "when"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        out["timeout"] = self.timeout
        out["undo"] = [step.as_dict() for step in self.undo]
        out["cleanup"] = [step.as_dict() for step in self.cleanup]
        return out

    def command_line(self) -> str:
        return shlex.join(self.argv) + (" < manifests" if self.stdin is not None else "")


@dataclass(frozen=True)
class DeployInputs:
    """What a k8s deploy is run with, explicit so that the plan is a pure function."""

    kubeconfig: str
    env: str
    image: str
    run_id: str  # lower-case letters and digits: names this run's Jobs and pods
    holder: str  # who takes the lock (user@host), shown to whoever is refused
    namespace: str = ""
    switch: bool = True
    allow_contract: bool = False
    target: k8s.K8sTarget = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _RUN_ID.match(self.run_id):
            raise StackConfigError(f"bad run id {self.run_id!r}: 1-12 of a-z and 0-9")
        target = k8s.K8sTarget(self.env, self.image, namespace=self.namespace)
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "namespace", target.namespace)


@dataclass(frozen=True)
class DeployPlan:
    inputs: DeployInputs
    live: str
    colour: str  # the idle colour, deployed to
    steps: tuple[Step, ...]

    @property
    def release(self) -> str:
        return self.inputs.target.parsed.release

    def as_dict(self) -> dict[str, Any]:
        return {
            "env": self.inputs.env,
            "namespace": self.inputs.namespace,
            "kubeconfig": self.inputs.kubeconfig,
            "image": self.inputs.target.parsed.reference,
            "release": self.release,
            "from": self.live,
            "to": self.colour,
            "steps": [step.as_dict() for step in self.steps],
            "finally": [
                history_step(self.inputs, example_event(self)).as_dict(),
            ],
        }


def kubectl(inputs: DeployInputs, *args: str) -> tuple[str, ...]:
    return ("kubectl", "--kubeconfig", inputs.kubeconfig, "--namespace", inputs.namespace, *args)


def _select(
    inputs: DeployInputs, name: str, colour: str, undo: tuple[Step, ...] = (), check: str = ""
) -> Step:
    """Point the production Service's selector at ``colour``: the switch, and its undo."""
    return Step(
        name,
        kubectl(
            inputs,
            "patch",
            "service",
            k8s.PRODUCTION_SERVICE,
            "--type",
            "merge",
            "--patch",
            _selector_patch(colour),
        ),
        f"the production Service selects {check or colour}",
        timeout=30,
        undo=undo,
    )


def _selector_patch(colour: str) -> str:
    return json.dumps({"spec": {"selector": {k8s.COLOUR_LABEL: colour}}}, sort_keys=True)


def live_step(inputs: DeployInputs, expect: str | None = None) -> Step:
    """The production Service's colour; with ``expect``, that it is still that one."""
    return Step(
        "live-colour",
        kubectl(
            inputs,
            "get",
            "service",
            k8s.PRODUCTION_SERVICE,
            "--output",
            "jsonpath={.spec.selector.echobase\\.io/colour}",
        ),
        f"the production Service selects {expect}" if expect else "which colour is live",
        expect=expect,
        timeout=30,
    )


def lease(inputs: DeployInputs) -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": k8s.LOCK_LEASE,
            "namespace": inputs.namespace,
            "labels": {k8s.PART_OF: "echobase", k8s.COMPONENT: "deploy-lock"},
        },
        "spec": {"holderIdentity": f"{inputs.holder} (run {inputs.run_id})"},
    }


def lock_step(inputs: DeployInputs) -> Step:
    release = Step(
        "release-lock",
        kubectl(inputs, "delete", "lease", k8s.LOCK_LEASE, "--ignore-not-found"),
        "the deploy lock is released",
        timeout=30,
    )
    return Step(
        "lock",
        kubectl(inputs, "create", "--filename", "-"),
        "no other deploy holds the lock (creating the Lease fails while one exists)",
        stdin=k8s.manifest_json(lease(inputs)),
        timeout=30,
        cleanup=(release,),
    )


def lock_holder_step(inputs: DeployInputs) -> Step:
    return Step(
        "lock-holder",
        kubectl(
            inputs,
            "get",
            "lease",
            k8s.LOCK_LEASE,
            "--output",
            "jsonpath={.spec.holderIdentity} since {.metadata.creationTimestamp}",
        ),
        "who holds the deploy lock",
        timeout=30,
    )


def _job_steps(inputs: DeployInputs, command: str, when: str | None) -> list[Step]:
    name = f"echobase-migrate-{command}-{inputs.run_id}"
    job = k8s.migration_job(inputs.target, name, command)
    delete = Step(
        f"delete-{command}-job",
        kubectl(inputs, "delete", "job", name, "--ignore-not-found", "--wait=false"),
        f"the {command} Job is gone",
        timeout=30,
    )
    return [
        Step(
            f"migrate-{command}",
            kubectl(inputs, "create", "--filename", "-"),
            f"a Job of the new image runs `migrate {command} --secret`",
            stdin=k8s.manifest_json(job),
            when=when,
            timeout=30,
            cleanup=(delete,),
        ),
        Step(
            f"migrate-{command}-done",
            kubectl(
                inputs,
                "wait",
                "--for=condition=complete",
                f"--timeout={JOB_TIMEOUT_SECONDS}s",
                f"job/{name}",
            ),
            f"`migrate {command}` finished successfully",
            when=when,
            timeout=JOB_TIMEOUT_SECONDS + 30,
        ),
        Step(
            f"migrate-{command}-result",
            kubectl(inputs, "logs", f"job/{name}", "--container", "migrate"),
            f"`migrate {command}` printed its JSON result",
            capture=command,
            when=when,
            timeout=60,
        ),
    ]


def _patch_release(inputs: DeployInputs, stack: Stack, colour: str, role: str) -> Step:
    name = k8s.deployment_name(stack, colour, role)
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": role,
                            "image": inputs.target.parsed.reference,
                            "env": [
                                {"name": "ECHOBASE_RELEASE", "value": inputs.target.parsed.release}
                            ],
                        }
                    ]
                }
            }
        }
    }
    return Step(
        f"deploy-{role}",
        kubectl(
            inputs,
            "patch",
            "deployment",
            name,
            "--type",
            "strategic",
            "--patch",
            json.dumps(patch, sort_keys=True),
        ),
        f"{name} runs {inputs.target.parsed.reference}",
        timeout=30,
        undo=(
            Step(
                f"undo-{role}",
                kubectl(inputs, "rollout", "undo", f"deployment/{name}"),
                f"{name} is back on its previous release",
                timeout=60,
            ),
        ),
    )


def _rollout(inputs: DeployInputs, stack: Stack, colour: str, role: str) -> Step:
    name = k8s.deployment_name(stack, colour, role)
    return Step(
        f"rollout-{role}",
        kubectl(
            inputs,
            "rollout",
            "status",
            f"deployment/{name}",
            f"--timeout={ROLLOUT_TIMEOUT_SECONDS}s",
        ),
        f"every pod of {name} runs the new release and passes its readiness probe",
        timeout=ROLLOUT_TIMEOUT_SECONDS + 30,
    )


def smoke_pod(inputs: DeployInputs, name: str, url: str, colour: str) -> dict[str, Any]:
    """The pod ``kubectl run`` makes, whole (an override replaces its container): the
    namespace enforces the restricted pod security standard, which it meets."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"labels": {k8s.PART_OF: "echobase", k8s.COMPONENT: "smoke"}},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": k8s.pod_security(),
            "containers": [
                {
                    "name": name,
                    "image": inputs.target.parsed.reference,
                    "command": ["python", "-I", "-c", SMOKE_SCRIPT, url, colour],
                    "resources": k8s.RESOURCES["smoke"],
                    "securityContext": k8s.container_security(),
                }
            ],
        },
    }


def _smoke(inputs: DeployInputs, step: str, service: str, colour: str, what: str) -> Step:
    name = f"echobase-{step}-{inputs.run_id}"
    url = f"http://{service}.{inputs.namespace}.svc:{k8s.HTTP_PORT}/health"
    return Step(
        step,
        kubectl(
            inputs,
            "run",
            name,
            "--rm",
            "--attach",
            "--quiet",
            "--restart=Never",
            f"--image={inputs.target.parsed.reference}",
            f"--pod-running-timeout={SMOKE_TIMEOUT_SECONDS}s",
            "--overrides",
            json.dumps(smoke_pod(inputs, name, url, colour), sort_keys=True),
        ),
        what,
        timeout=SMOKE_TIMEOUT_SECONDS + 90,
    )


def deploy_plan(
    stack: Stack, inputs: DeployInputs, live: str, colour: str | None = None
) -> DeployPlan:
    """The whole deploy for a cluster whose production Service selects ``live``."""
    check_colour(live)
    target = check_colour(colour) if colour else next(c for c in COLOURS if c != live)
    if target == live:
        raise StackConfigError(f"{target} is live: deploy to the idle colour, or switch first")
    roles = k8s.ROLES
    steps: list[Step] = [lock_step(inputs), live_step(inputs, live)]
    steps += _job_steps(inputs, "pending", None)
    steps.append(
        Step(
            "live-schema",
            kubectl(
                inputs,
                "exec",
                f"deployment/{k8s.deployment_name(stack, live, 'api-gateway')}",
                "--container",
                "api-gateway",
                "--",
                "python",
                "-I",
                "-m",
                "echobase.app.db.migrate",
                "schema",
            ),
            f"the tables and columns {live}'s release uses; no pending revision drops or "
            "changes them (the expand/contract gate)",
            capture="schema",
            judge=None if inputs.allow_contract else "contract",
            when="pending-revisions",
            timeout=60,
        )
    )
    steps += _job_steps(inputs, "upgrade", "pending-revisions")
    steps += [_patch_release(inputs, stack, target, role) for role in roles]
    steps += [_rollout(inputs, stack, target, role) for role in roles]
    steps.append(
        _smoke(
            inputs,
            "smoke",
            k8s.colour_service_name(target),
            target,
            f"{target}'s own Service answers /health, healthy, from {target}",
        )
    )
    if inputs.switch:
        steps.append(
            _select(
                inputs,
                "switch",
                target,
                undo=(_select(inputs, "switch-back", live, check=f"{live} again"),),
            )
        )
        steps.append(
            _smoke(
                inputs,
                "verify",
                k8s.PRODUCTION_SERVICE,
                target,
                f"the production Service answers /health, healthy, from {target}",
            )
        )
    return DeployPlan(inputs, live, target, tuple(steps))


def history_event(
    plan: DeployPlan, at: str, who: str, result: str, seconds: float, detail: str
) -> dict[str, Any]:
    """The event as ``bluegreen.history`` records one locally."""
    return {
        "at": at,
        "who": who,
        "action": "deploy",
        "source": plan.live,
        "target": plan.colour,
        "release": plan.release,
        "result": result,
        "seconds": round(seconds, 2),
        "detail": detail,
        "weights": None,
    }


def example_event(plan: DeployPlan) -> dict[str, Any]:
    """What a successful run records (times and the user are the run's own)."""
    return history_event(plan, "AT", plan.inputs.holder, "ok", 0.0, "")


def history_key(at: str, run_id: str) -> str:
    """A ConfigMap key (letters, digits, '-', '_', '.') that sorts by time."""
    return re.sub(r"[^0-9A-Za-z]", "", at) + f"-{run_id}"


def history_step(inputs: DeployInputs, event: Mapping[str, Any]) -> Step:
    patch = {"data": {history_key(str(event["at"]), inputs.run_id): json.dumps(dict(event))}}
    return Step(
        "history",
        kubectl(
            inputs,
            "patch",
            "configmap",
            k8s.HISTORY_CONFIGMAP,
            "--type",
            "merge",
            "--patch",
            json.dumps(patch, sort_keys=True),
        ),
        "the deploy is in the environment's history",
        timeout=30,
    )


def plan_text(plan: DeployPlan) -> str:
    """The plan as a person reads it: each command, what it proves, what undoes it."""
    lines = [
        f"deploy {plan.release} to {plan.colour} ({plan.live} is live) in namespace "
        f"{plan.inputs.namespace}; nothing has been run",
    ]
    for number, step in enumerate(plan.steps, 1):
        condition = f" [only if {step.when}]" if step.when else ""
        lines.append(f"{number:2}. {step.name}{condition}: {step.checks}")
        lines.append(f"      $ {step.command_line()}")
        lines += [f"      undo: $ {undo.command_line()}" for undo in step.undo]
        lines += [f"      finally: $ {done.command_line()}" for done in step.cleanup]
        if step.judge:
            lines.append(f"      judged: {step.judge} (refuses a destructive revision)")
    history = history_step(plan.inputs, example_event(plan))
    lines.append(f"then: {history.name}: {history.checks}")
    lines.append(f"      $ {history.command_line()}")
    return "\n".join(lines)
