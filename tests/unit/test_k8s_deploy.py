"""`echobase deploy --target k8s`: the kubectl plan (pure) and its executor.

No cluster runs here, and none is mocked: the plan is tested as data (order, the
kubeconfig and namespace on every command, what undoes what, manifests valid against the
Kubernetes schemas), and the executor runs a fake `kubectl` executable put first on PATH, a
real process that records each argv and its stdin, keeps the deploy Lease in a file (so a
held lock is refused as a cluster would refuse it) and fails where a test tells it to."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from typer.testing import CliRunner

from echobase.cli.main import app
from echobase.platform.bluegreen.k8s_runner import K8sDeployError, Runner, last_json_document
from echobase.platform.render import k8s
from echobase.platform.render.k8s_deploy import (
    DeployInputs,
    DeployPlan,
    deploy_plan,
    history_event,
    history_step,
    plan_text,
)
from echobase.platform.render.names import secret_names
from echobase.platform.stack import COLOURS, Stack, StackConfigError

IMAGE = "registry.example.com/echobase:2.0.0"
HOME = Path("/nonexistent-echobase-home")
KUBECONFIG = "/etc/echobase/kubeconfig"
MAIN_STEPS = [
    "lock",
    "live-colour",
    "migrate-pending",
    "migrate-pending-done",
    "migrate-pending-result",
    "live-schema",
    "migrate-upgrade",
    "migrate-upgrade-done",
    "migrate-upgrade-result",
    "deploy-api-gateway",
    "deploy-order-processor",
    "rollout-api-gateway",
    "rollout-order-processor",
    "smoke",
    "switch",
    "verify",
]


def inputs(**changes: Any) -> DeployInputs:
    values: dict[str, Any] = {
        "kubeconfig": KUBECONFIG,
        "env": "ci",
        "image": IMAGE,
        "run_id": "r1",
        "holder": "ops@deployhost",
    }
    return DeployInputs(**{**values, **changes})


def plan_for(live: str, **changes: Any) -> DeployPlan:
    return deploy_plan(Stack.load(HOME), inputs(**changes), live)


def every_step(plan: DeployPlan) -> list[Any]:
    found = []
    for step in plan.steps:
        found += [step, *step.undo, *step.cleanup]
    return [*found, history_step(plan.inputs, history_event(plan, "t", "me", "ok", 1, ""))]


# --- the plan --------------------------------------------------------------------------------


@pytest.mark.parametrize("live", COLOURS)
def test_the_plan_follows_the_local_pipeline_for_either_live_colour(live: str) -> None:
    plan = plan_for(live)
    idle = "green" if live == "blue" else "blue"
    assert (plan.live, plan.colour) == (live, idle)
    assert [step.name for step in plan.steps] == MAIN_STEPS
    by_name = {step.name: step for step in plan.steps}
    assert by_name["live-colour"].expect == live
    assert f"deployment/echobase-{live}-api-gateway" in by_name["live-schema"].argv
    assert by_name["live-schema"].judge == "contract"
    for name in ("deploy-api-gateway", "deploy-order-processor"):
        assert any(f"echobase-{idle}-" in arg for arg in by_name[name].argv)
        assert by_name[name].undo[0].argv[-3:] == (
            "rollout",
            "undo",
            f"deployment/echobase-{idle}-{name.removeprefix('deploy-')}",
        )
    assert f"http://echobase-{idle}.echobase-ci.svc:80/health" in by_name["smoke"].argv[-1]
    assert "http://echobase.echobase-ci.svc:80/health" in by_name["verify"].argv[-1]
    assert plan_text(plan).count("$ kubectl") == sum(1 for _ in every_step(plan))


@pytest.mark.parametrize("live", COLOURS)
def test_every_command_names_the_kubeconfig_and_namespace(live: str) -> None:
    for step in every_step(plan_for(live, namespace="shop")):
        assert step.argv[:5] == ("kubectl", "--kubeconfig", KUBECONFIG, "--namespace", "shop")


@pytest.mark.parametrize("live", COLOURS)
def test_the_switch_names_the_idle_colour_and_its_undo_the_live_one(live: str) -> None:
    plan = plan_for(live)
    (switch,) = [step for step in plan.steps if step.name == "switch"]
    patch = json.loads(switch.argv[switch.argv.index("--patch") + 1])
    assert patch == {"spec": {"selector": {k8s.COLOUR_LABEL: plan.colour}}}
    (back,) = switch.undo
    assert json.loads(back.argv[back.argv.index("--patch") + 1]) == {
        "spec": {"selector": {k8s.COLOUR_LABEL: live}}
    }
    # Everything after the switch can undo it; nothing before it touches the selector.
    before = plan.steps[: plan.steps.index(switch)]
    assert not any("service" in step.argv and "patch" in step.argv for step in before)


def test_the_lock_is_taken_first_and_released_by_its_cleanup() -> None:
    plan = plan_for("blue")
    lock = plan.steps[0]
    assert lock.argv[5:] == ("create", "--filename", "-")
    lease = json.loads(str(lock.stdin))
    assert (lease["kind"], lease["metadata"]["name"]) == ("Lease", k8s.LOCK_LEASE)
    assert "ops@deployhost" in lease["spec"]["holderIdentity"]
    (release,) = lock.cleanup
    assert release.argv[5:] == ("delete", "lease", k8s.LOCK_LEASE, "--ignore-not-found")


def test_no_switch_stops_after_the_smoke_test_and_allow_contract_judges_nothing() -> None:
    plan = plan_for("green", switch=False, allow_contract=True)
    assert [step.name for step in plan.steps] == MAIN_STEPS[:-2]
    assert all(step.judge is None for step in plan.steps)


def test_manifests_on_stdin_and_the_smoke_pod_are_valid_kubernetes() -> None:
    plan = plan_for("blue")
    manifests = [json.loads(step.stdin) for step in plan.steps if step.stdin]
    assert [m["kind"] for m in manifests] == ["Lease", "Job", "Job"]
    for step in plan.steps:
        if "run" in step.argv:
            pod = json.loads(step.argv[step.argv.index("--overrides") + 1])
            pod["metadata"]["name"] = step.argv[6]
            manifests.append(pod)
    assert len(manifests) == 5
    for manifest in manifests:
        assert kubernetes_validate.validate(manifest, k8s.KUBERNETES_VERSION, strict=True)
    for job in manifests[1:3]:
        (container,) = job["spec"]["template"]["spec"]["containers"]
        assert container["image"] == IMAGE
        assert container["args"][2:] == ["--secret", secret_names("ci").migrations]


def test_bad_plans_are_refused() -> None:
    with pytest.raises(StackConfigError, match="is live"):
        deploy_plan(Stack.load(HOME), inputs(), "blue", "blue")
    with pytest.raises(StackConfigError, match="bad image reference"):
        inputs(image="no good")
    with pytest.raises(StackConfigError, match="unknown environment"):
        inputs(env="prod")


def test_the_json_a_job_log_ends_with_is_found_after_its_stderr() -> None:
    log = 'INFO  [alembic.runtime.migration] Context impl MariaDBImpl.\n{\n  "a": [1]\n}\n'
    assert last_json_document(log) == {"a": [1]}
    with pytest.raises(ValueError):
        last_json_document("Traceback: no JSON here\n")


# --- the executor, with a fake kubectl on PATH -----------------------------------------------

FAKE_KUBECTL = r"""#!{python}
import json, os, sys
from pathlib import Path

state = Path(os.environ["FAKE_KUBECTL_DIR"])
argv = sys.argv[1:]
stdin = sys.stdin.read() if "-" in argv else None
with open(state / "calls.jsonl", "a") as log:
    log.write(json.dumps({{"argv": argv, "stdin": stdin}}) + "\n")
words = argv[4:]  # after --kubeconfig FILE --namespace NS
line = " ".join(words)
fail = os.environ.get("FAKE_KUBECTL_FAIL")
if fail and fail in line:
    sys.exit(f"error: told to fail at {{fail!r}}")
lease = state / "lease"
if words[:1] == ["create"] and json.loads(stdin)["kind"] == "Lease":
    if lease.exists():
        sys.exit('Error from server (AlreadyExists): leases "echobase-deploy" already exists')
    lease.write_text(json.loads(stdin)["spec"]["holderIdentity"])
elif words[:2] == ["delete", "lease"]:
    lease.unlink(missing_ok=True)
elif words[:2] == ["get", "lease"]:
    print(lease.read_text() + " since 2026-01-01T00:00:00Z", end="")
elif words[:2] == ["get", "service"]:
    print(os.environ.get("FAKE_LIVE", "blue"), end="")
elif words[:1] == ["logs"] and "pending" in line:
    print("INFO  [alembic] Context impl MariaDBImpl.")
    print(json.dumps(json.loads(os.environ["FAKE_PENDING"]), indent=2))
elif words[:1] == ["logs"]:
    print(json.dumps({{"from": ["0001"], "to": ["0002"]}}, indent=2))
elif words[:1] == ["exec"]:
    print(json.dumps({{"tables": {{"orders": ["id", "status", "total"]}}}}, indent=2))
"""
NOTHING_PENDING = {"current": ["0002"], "head": ["0002"], "revisions": []}
EXPAND = {
    "current": ["0002"],
    "head": ["0003"],
    "revisions": [
        {"revision": "0003", "description": "notes", "sql": "ALTER TABLE orders ADD note TEXT;"}
    ],
}
CONTRACT = {
    "current": ["0002"],
    "head": ["0003"],
    "revisions": [
        {"revision": "0003", "description": "x", "sql": "ALTER TABLE orders DROP COLUMN total;"}
    ],
}


@pytest.fixture
def fake_kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "kubectl"
    script.write_text(FAKE_KUBECTL.format(python=sys.executable))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_KUBECTL_DIR", str(tmp_path))
    monkeypatch.setenv("FAKE_PENDING", json.dumps(NOTHING_PENDING))
    return tmp_path


def calls(state: Path, kubeconfig: str = KUBECONFIG) -> list[list[str]]:
    """Each kubectl run's words after --kubeconfig F --namespace NS (checked here)."""
    out = []
    for line in (state / "calls.jsonl").read_text().splitlines():
        argv = json.loads(line)["argv"]
        assert argv[:4] == ["--kubeconfig", kubeconfig, "--namespace", "echobase-ci"]
        out.append(argv[4:])
    return out


def ran(state: Path, *words: str) -> bool:
    return any(call[: len(words)] == list(words) for call in calls(state))


def history(state: Path) -> dict[str, Any]:
    (patch,) = [c for c in calls(state) if c[:2] == ["patch", "configmap"]]
    (event,) = json.loads(patch[patch.index("--patch") + 1])["data"].values()
    return dict(json.loads(event))


def test_a_deploy_runs_every_step_then_history_then_releases_the_lock(fake_kubectl: Path) -> None:
    run = Runner().run(plan_for("blue"), "ops")
    done = [call[:2] for call in calls(fake_kubectl)]
    assert done[0] == ["create", "--filename"] and done[-1] == ["delete", "lease"]
    assert done[-3:] == [["patch", "configmap"], ["delete", "job"], ["delete", "lease"]]
    assert not ran(fake_kubectl, "exec")  # nothing pending: no schema, no upgrade Job
    assert sum(1 for c in calls(fake_kubectl) if c[:1] == ["create"]) == 2  # Lease, pending
    skipped = {s["step"] for s in run.steps if s["result"] == "skipped"}
    assert skipped == {
        "live-schema",
        "migrate-upgrade",
        "migrate-upgrade-done",
        "migrate-upgrade-result",
    }
    assert history(fake_kubectl)["result"] == "ok"
    assert not (fake_kubectl / "lease").exists()


def test_a_failed_rollout_undoes_the_idle_colour_and_releases_the_lock(
    fake_kubectl: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_PENDING", json.dumps(EXPAND))
    monkeypatch.setenv("FAKE_KUBECTL_FAIL", "rollout status deployment/echobase-green-api-gateway")
    with pytest.raises(K8sDeployError, match="rollout-api-gateway: kubectl exited 1") as caught:
        Runner().run(plan_for("blue"), "ops")
    assert caught.value.outcome is not None and caught.value.outcome["result"] == "failed"
    words = [" ".join(call[:4]) for call in calls(fake_kubectl)]
    failed_at = words.index("rollout status deployment/echobase-green-api-gateway --timeout=300s")
    after = words[failed_at + 1 :]
    assert after[:2] == [
        "rollout undo deployment/echobase-green-order-processor",
        "rollout undo deployment/echobase-green-api-gateway",
    ]
    assert not any(word.startswith("patch service") for word in words)  # never switched
    assert ran(fake_kubectl, "exec")  # the gate ran (an expansion passes it)
    assert after[-1].startswith("delete lease") and not (fake_kubectl / "lease").exists()
    assert history(fake_kubectl)["result"] == "failed"


def test_a_failed_verify_switches_back_then_undoes_the_colour(
    fake_kubectl: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_LIVE", "green")
    monkeypatch.setenv("FAKE_KUBECTL_FAIL", "run echobase-verify")
    with pytest.raises(K8sDeployError) as caught:
        Runner().run(plan_for("green"), "ops")
    assert caught.value.outcome is not None and caught.value.outcome["result"] == "rolled back"
    patches = [c for c in calls(fake_kubectl) if c[:2] == ["patch", "service"]]
    selectors = [json.loads(c[c.index("--patch") + 1])["spec"]["selector"] for c in patches]
    assert selectors == [{k8s.COLOUR_LABEL: "blue"}, {k8s.COLOUR_LABEL: "green"}]
    assert ran(fake_kubectl, "rollout", "undo", "deployment/echobase-blue-api-gateway")
    assert history(fake_kubectl)["result"] == "rolled back"
    assert not (fake_kubectl / "lease").exists()


def test_a_contracting_migration_is_refused_before_anything_changes(
    fake_kubectl: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_PENDING", json.dumps(CONTRACT))
    with pytest.raises(K8sDeployError, match=r"drops column orders\.total"):
        Runner().run(plan_for("blue"), "ops")
    assert sum(1 for c in calls(fake_kubectl) if c[:1] == ["create"]) == 2  # no upgrade Job
    assert not ran(fake_kubectl, "patch", "deployment")
    assert not (fake_kubectl / "lease").exists()
    # --allow-contract: the same revision is applied.
    (fake_kubectl / "calls.jsonl").unlink()
    Runner().run(plan_for("blue", allow_contract=True), "ops")
    assert sum(1 for c in calls(fake_kubectl) if c[:1] == ["create"]) == 3


def test_a_held_lock_is_refused_and_left_to_its_holder(fake_kubectl: Path) -> None:
    (fake_kubectl / "lease").write_text("someone@elsewhere (run abc)")
    with pytest.raises(K8sDeployError, match=r"held by someone@elsewhere \(run abc\) since"):
        Runner(sleep=lambda _: None).run(plan_for("blue"), "ops", lock_wait=0)
    assert (fake_kubectl / "lease").read_text() == "someone@elsewhere (run abc)"
    assert [c[:2] for c in calls(fake_kubectl)] == [["create", "--filename"], ["get", "lease"]]


# --- the command line ------------------------------------------------------------------------


def deploy_cli(*args: str) -> Any:
    return CliRunner().invoke(
        app, ["deploy", "--target", "k8s", "--env", "ci", "--home", str(HOME), *args]
    )


def test_the_command_runs_the_plan_through_kubectl(
    fake_kubectl: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    monkeypatch.setenv("FAKE_KUBECTL_FAIL", "rollout status deployment/echobase-green-order")
    result = deploy_cli("--kubeconfig", str(kubeconfig), "--image", IMAGE, "--json")
    assert result.exit_code == 1, result.output
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["result"] == "failed" and outcome["to"] == "green"
    assert not (fake_kubectl / "lease").exists()
    made = calls(fake_kubectl, str(kubeconfig.resolve()))
    assert ["rollout", "undo", "deployment/echobase-green-order-processor"] in made


def test_plan_prints_and_runs_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no kubectl: --plan needs none
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("")
    result = deploy_cli("--kubeconfig", str(kubeconfig), "--image", IMAGE, "--plan", "--json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert (plan["from"], plan["to"]) == ("blue", "green")
    assert [step["name"] for step in plan["steps"]] == MAIN_STEPS
    assert all(step["argv"][2] == str(kubeconfig) for step in plan["steps"])
    text = deploy_cli(
        "--kubeconfig", str(kubeconfig), "--image", IMAGE, "--plan", "--colour", "blue"
    )
    assert text.exit_code == 0 and "deploy 2.0.0 to blue (green is live)" in text.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--image", IMAGE], 2, "--target k8s needs --kubeconfig FILE"),
        (["--image", IMAGE, "--kubeconfig", "/nonexistent/kubeconfig"], 2, "no such file"),
        (["--kubeconfig", "KUBECONFIG"], 2, "needs --image"),
        (["--kubeconfig", "KUBECONFIG", "--image", "bad ref"], 2, "bad image reference"),
        (["--kubeconfig", "KUBECONFIG", "--image", IMAGE, "--canary", "10"], 2, "--canary"),
        (["--kubeconfig", "KUBECONFIG", "--image", IMAGE], 1, "install kubectl"),
    ],
)
def test_usage_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], code: int, message: str
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # and no kubectl anywhere on it
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("")
    result = deploy_cli(*[str(kubeconfig) if a == "KUBECONFIG" else a for a in args])
    assert result.exit_code == code, result.output
    assert message in result.output


def test_target_is_local_or_k8s_and_k8s_options_need_it() -> None:
    result = CliRunner().invoke(app, ["deploy", "--target", "ecs"])
    assert result.exit_code == 2 and "--target is local or k8s" in result.output
    result = CliRunner().invoke(app, ["deploy", "--image", IMAGE])
    assert result.exit_code == 2 and "need --target k8s" in result.output
