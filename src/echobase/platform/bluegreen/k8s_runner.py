"""Carries out a k8s deploy plan (``render/k8s_deploy.py``) with kubectl, step by step.

Each step is one kubectl process; a step fails on a non-zero exit, on output other than it
expects, or on a judgement of what it printed (the migration contract, ``contract.py``).
Then the undo of every step that succeeded runs, newest first; the history entry and the
cleanups (Jobs deleted, the lock released last) run in every case."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from echobase.platform import contract
from echobase.platform.render import k8s, k8s_deploy
from echobase.platform.render.k8s_deploy import DeployInputs, DeployPlan, Step

KUBECTL_INSTALL = (
    "install kubectl (https://kubernetes.io/docs/tasks/tools/; Debian: apt-get install "
    "kubernetes-client) and put it on PATH"
)
LOCK_RETRY_SECONDS = 2.0

Progress = Callable[[str], None]


class K8sDeployError(RuntimeError):
    """A deploy step failed or was refused; ``outcome`` says what was done about it."""

    def __init__(self, message: str, outcome: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.outcome = outcome


def find_kubectl(which: Callable[[str], str | None] = shutil.which) -> str:
    path = which("kubectl")
    if path is None:
        raise K8sDeployError(f"kubectl is not on PATH: {KUBECTL_INSTALL}")
    return path


@dataclass
class StepFailed(Exception):
    step: str
    reason: str


@dataclass
class Run:
    """What happened, in the local pipeline's Outcome shape (``as_dict``)."""

    plan: DeployPlan
    result: str = "ok"
    detail: str = ""
    steps: list[dict[str, Any]] = field(default_factory=list)
    captured: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": "deploy",
            "target": "k8s",
            "from": self.plan.live,
            "to": self.plan.colour,
            "release": self.plan.release,
            "result": self.result,
            "seconds": round(self.seconds, 2),
            "steps": self.steps,
            "detail": self.detail,
        }


def last_json_document(text: str) -> Any:
    """The JSON document a command printed last: a Job's log holds its stderr too, and
    ``migrate`` prints its result after everything else, indented from a line ``{``."""
    lines = text.splitlines()
    for start in range(len(lines) - 1, -1, -1):
        if lines[start].strip() in ("{", "[") or lines[start].lstrip().startswith(("{", "[")):
            try:
                return json.loads("\n".join(lines[start:]))
            except ValueError:
                continue
    raise ValueError("no JSON document in the output")


class Runner:
    def __init__(
        self,
        progress: Progress = lambda _: None,
        run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.progress, self._run, self.clock, self.sleep, self.now = (
            progress,
            run,
            clock,
            sleep,
            now,
        )

    # --- one process ----------------------------------------------------------------------

    def execute(self, step: Step) -> str:
        """Run one step; its stdout, or StepFailed saying why (never a manifest's content)."""
        try:
            done = self._run(
                list(step.argv),
                input=step.stdin,
                capture_output=True,
                text=True,
                timeout=step.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise StepFailed(step.name, f"no answer within {step.timeout:.0f}s") from None
        except OSError as exc:
            raise StepFailed(
                step.name, f"kubectl could not start ({exc}): {KUBECTL_INSTALL}"
            ) from None
        if done.returncode != 0:
            # kubectl repeats its client-side retries on stderr; its verdict is the last line.
            lines = (done.stderr or done.stdout or "").strip().splitlines() or [""]
            raise StepFailed(step.name, f"kubectl exited {done.returncode}: {lines[-1][-800:]}")
        if step.expect is not None and done.stdout.strip() != step.expect:
            raise StepFailed(
                step.name, f"expected {step.expect!r}, the cluster says {done.stdout.strip()!r}"
            )
        return str(done.stdout)

    def read_live(self, inputs: DeployInputs) -> str:
        """The colour the production Service selects, before a plan is made for it."""
        try:
            live = self.execute(k8s_deploy.live_step(inputs)).strip()
        except StepFailed as exc:
            hint = (
                "Apply the rendered layout first (`echobase render k8s`, then `kubectl apply -k`)"
                if "NotFound" in exc.reason
                else f"Is the cluster in {inputs.kubeconfig} reachable (`kubectl cluster-info`)?"
            )
            raise K8sDeployError(f"cannot read the live colour: {exc.reason}. {hint}") from None
        if live not in ("blue", "green"):
            raise K8sDeployError(
                f"the production Service selects colour {live!r}, not blue or green: "
                "apply the rendered base (`kubectl apply -k DIR/base`)"
            )
        return live

    # --- the plan -------------------------------------------------------------------------

    def _holds(self, condition: str, run: Run) -> bool:
        if condition == "pending-revisions":
            return bool(run.captured.get("pending", {}).get("revisions"))
        raise ValueError(f"unknown condition {condition!r}")

    def _judge(self, step: Step, run: Run) -> None:
        if step.judge != "contract":
            raise ValueError(f"unknown judgement {step.judge!r}")
        problems = contract.pending_violations(
            run.captured["pending"]["revisions"], run.captured["schema"]["tables"]
        )
        if problems:
            raise StepFailed(
                step.name,
                "refusing a contracting migration while the live release still uses what it "
                "removes: " + "; ".join(problems) + ". Deploy an expand-only release first, "
                "or pass --allow-contract",
            )

    def _lock(self, plan: DeployPlan, step: Step, lock_wait: float) -> None:
        deadline = self.clock() + lock_wait
        while True:
            try:
                self.execute(step)
                return
            except StepFailed as failed:
                if "AlreadyExists" not in failed.reason and "already exists" not in failed.reason:
                    raise
                if self.clock() >= deadline:
                    try:
                        holder = self.execute(k8s_deploy.lock_holder_step(plan.inputs)).strip()
                    except StepFailed:
                        holder = "another deploy"
                    raise StepFailed(
                        step.name,
                        f"the deploy lock of {plan.inputs.namespace} is held by {holder}; wait "
                        "for it (--lock-wait SECONDS), or, if that deploy died, delete it: "
                        f"kubectl --namespace {plan.inputs.namespace} delete lease "
                        f"{k8s.LOCK_LEASE}",
                    ) from None
                self.sleep(LOCK_RETRY_SECONDS)

    def _record(self, run: Run, step: Step, began: float, result: str, **extra: Any) -> None:
        run.steps.append(
            {
                "step": step.name,
                "seconds": round(self.clock() - began, 3),
                "result": result,
                **extra,
            }
        )

    def run(self, plan: DeployPlan, who: str, lock_wait: float = 0) -> Run:
        """Every step in order; on a failure, the undos; always, history and cleanups.
        Raises K8sDeployError (carrying the outcome) unless every step passed."""
        run = Run(plan)
        started = self.clock()
        at = self.now().isoformat(timespec="seconds")
        undos: list[Step] = []
        cleanups: list[Step] = []
        locked = False
        began = started
        try:
            for step in plan.steps:
                if step.when is not None and not self._holds(step.when, run):
                    self._record(run, step, self.clock(), "skipped")
                    continue
                self.progress(f"{step.name}: {step.checks}")
                began = self.clock()
                if step.name == "lock":
                    self._lock(plan, step, lock_wait)
                    locked = True
                    output = ""
                else:
                    output = self.execute(step)
                if step.capture is not None:
                    try:
                        run.captured[step.capture] = last_json_document(output)
                    except ValueError:
                        raise StepFailed(step.name, "printed no JSON result") from None
                if step.judge is not None:
                    self._judge(step, run)
                self._record(run, step, began, "ok")
                undos += step.undo
                cleanups += step.cleanup
        except StepFailed as failed:
            run.result = "failed"
            run.detail = f"{failed.step}: {failed.reason}"
            failing = next(s for s in plan.steps if s.name == failed.step)
            self._record(run, failing, began, "failed", detail=failed.reason)
            for undo in reversed(undos):
                self.progress(f"{undo.name}: {undo.checks}")
                began = self.clock()
                try:
                    self.execute(undo)
                    self._record(run, undo, began, "ok")
                    if undo.name == "switch-back":
                        run.result = "rolled back"
                except StepFailed as also:
                    self._record(run, undo, began, "failed", detail=also.reason)
                    run.detail += f"; {undo.name} failed too: {also.reason}"
        finally:
            run.seconds = self.clock() - started
            if locked:  # history is written under the lock, which only this run holds
                event = k8s_deploy.history_event(plan, at, who, run.result, run.seconds, run.detail)
                self._best_effort(run, k8s_deploy.history_step(plan.inputs, event))
            for cleanup in reversed(cleanups):
                self._best_effort(run, cleanup)
        if run.result != "ok":
            raise K8sDeployError(run.detail, run.as_dict())
        return run

    def _best_effort(self, run: Run, step: Step) -> None:
        self.progress(f"{step.name}: {step.checks}")
        began = self.clock()
        try:
            self.execute(step)
            self._record(run, step, began, "ok")
        except StepFailed as failed:
            self._record(run, step, began, "failed", detail=failed.reason)
