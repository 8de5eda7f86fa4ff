"""Deploy, switch, rollback and down for one durable environment.

The live colour is whatever nginx serves at ``/.active-env``; nothing else decides it. A
deploy goes to the other colour, proves it on its direct port, switches nginx, proves it
again through the production URL and switches back by itself if that fails."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from echobase.app.core.secrets import DatabaseCredentials
from echobase.platform import contract
from echobase.platform.bluegreen import event_metrics, history, smoke
from echobase.platform.bluegreen.lock import deploy_lock
from echobase.platform.durable import credentials, nginx
from echobase.platform.durable.layer import DurableLayer
from echobase.platform.ephemeral.colour import ColourRuntime, DrainReport
from echobase.platform.ephemeral.plan import ColourPlan, other_colour
from echobase.platform.release import Release, load_release
from echobase.platform.runtime.services import LIVE_STATES, ServiceFailed
from echobase.platform.stack import COLOURS, Stack, check_colour

Progress = Callable[[str], None]
CONFIRM_SECONDS = 5.0


class DeployError(RuntimeError):
    """A step failed or was refused; the message says which and what to do."""


def target_colour(live: str, asked: str | None = None) -> str:
    """The idle colour: the other one than live; green when nothing is live yet."""
    if asked:
        return check_colour(asked)
    return "green" if live == "none" else other_colour(live)


def _quiet(_: str) -> None:
    return None


@dataclass
class Outcome:
    action: str
    source: str  # live colour before
    target: str
    release: str | None
    result: str = "ok"
    steps: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "from": self.source,
            "to": self.target,
            "release": self.release,
            "result": self.result,
            "seconds": round(self.seconds, 2),
            "steps": self.steps,
            "detail": self.detail,
        }


class BlueGreen:
    def __init__(self, stack: Stack, env: str, progress: Progress = _quiet) -> None:
        self.stack = stack
        self.env = env
        self.progress = progress
        self.durable = DurableLayer(stack, env)

    # --- what is where -------------------------------------------------------------------

    def live(self) -> str | None:
        """ "blue", "green" or "none" as nginx serves it; None when nginx does not answer."""
        return self.durable.active()

    def live_or_fail(self) -> str:
        live = self.live()
        if live is None:
            raise DeployError(
                f"the load balancer of {self.env} does not answer /.active-env, so the live "
                f"colour is unknown; start it with `echobase durable setup {self.env}`"
            )
        return live

    def colour(self, colour: str) -> ColourRuntime:
        return ColourRuntime(self.stack, colour, self.progress)

    def plan(self, colour: str, release: Release) -> ColourPlan:
        return ColourPlan(self.stack, colour, self.env, release.python, release.id, release.bundle)

    def running_plan(self, colour: str) -> ColourPlan | None:
        """The plan a colour runs now, from what its last deploy recorded."""
        runtime = self.colour(colour)
        release_id = runtime.release_id()
        if release_id is None or runtime.attached_env() not in (None, self.env):
            return None
        try:
            return self.plan(colour, load_release(self.stack.home, release_id))
        except Exception:
            return None

    def unhealthy(self, colour: str) -> list[str]:
        """Why the colour may not take traffic, one entry per failing service; empty when
        it may."""
        plan = self.running_plan(colour)
        if plan is None:
            return [f"no release of {colour} is recorded against {self.env}"]
        return [
            f"{service.name} ({service.state.lower()}, {service.detail or 'not answering healthy'})"
            if service.state in (*LIVE_STATES, "PUBLISHED")
            else f"{service.name} ({service.state.lower()})"
            for service in self.colour(colour).health(plan)
            if not service.healthy
        ]

    def healthy(self, colour: str) -> bool:
        return not self.unhealthy(colour)

    def database(self) -> DatabaseCredentials:
        client = credentials.aws_client("secretsmanager", self.durable.plan.secrets_url)
        raw = credentials.read_secret(client, credentials.DATABASE)
        if raw is None:
            raise DeployError(f"no database credentials in {self.env}'s store: run setup first")
        return DatabaseCredentials.from_secret(raw)

    # --- switch -------------------------------------------------------------------------

    def _point_nginx(self, colour: str | None) -> float:
        """Write the routing state nginx reads per request, and wait until it answers so.
        No reload: every worker routes the next request by the new state. Returns seconds."""
        started = time.monotonic()
        spec = self.durable.plan.load_balancer(colour)
        try:
            nginx.set_live(spec, colour)
        except OSError as exc:
            raise DeployError(f"routing state not written: {exc}") from None
        wanted = colour or "none"
        deadline = time.monotonic() + CONFIRM_SECONDS
        while self.live() != wanted:
            if time.monotonic() > deadline:
                raise DeployError(f"nginx did not report {wanted} within {CONFIRM_SECONDS:.0f}s")
            time.sleep(0.02)
        return time.monotonic() - started

    def switch(self, target: str, lock_wait: float = 0, action: str = "switch") -> Outcome:
        check_colour(target)
        with deploy_lock(self.durable.plan.home, lock_wait):
            return self._switch(target, action)

    def _switch(self, target: str, action: str) -> Outcome:
        """A switch, under the deploy lock the caller holds."""
        started = time.monotonic()
        live = self.live_or_fail()
        plan = self.running_plan(target)
        outcome = Outcome(action, live, target, plan.release_id if plan else None)
        if target == live:
            outcome.detail = f"{target} is already live"
        else:
            refused = self.unhealthy(target)
            if refused:
                raise DeployError(
                    f"{target} is not running healthy against {self.env}: "
                    f"{'; '.join(refused)}; refusing to send traffic to it "
                    "(see `echobase status`)"
                )
            self.progress(f"switching {live} -> {target}")
            outcome.steps.append({"step": "switch", "seconds": self._point_nginx(target)})
        outcome.seconds = time.monotonic() - started
        self._record(outcome)
        return outcome

    def rollback(self, lock_wait: float = 0) -> Outcome:
        live = self.live_or_fail()
        if live == "none":
            raise DeployError("nothing is live, so there is nothing to roll back from")
        previous = other_colour(live)
        refused = self.unhealthy(previous)
        if refused:
            raise DeployError(
                f"cannot roll back to {previous}: it is not running healthy: "
                f"{'; '.join(refused)}. Wait for it to recover (see `echobase status`), or "
                "deploy a release to it if it was stopped"
            )
        return self.switch(previous, lock_wait, action="rollback")

    # --- deploy -------------------------------------------------------------------------

    def deploy(
        self,
        release: Release,
        colour: str | None = None,
        switch: bool = True,
        allow_contract: bool = False,
        lock_wait: float = 0,
        smoke_hook: str | None = None,
        health_timeout: float = 60,
    ) -> Outcome:
        started = time.monotonic()
        live = self.live_or_fail()
        target = (
            check_colour(colour) if colour else ("green" if live == "none" else other_colour(live))
        )
        outcome = Outcome("deploy", live, target, release.id)
        if target == live:
            raise DeployError(f"{target} is live: deploy to the idle colour, or switch first")
        with deploy_lock(self.durable.plan.home, lock_wait):
            try:
                self._deploy_steps(
                    outcome, release, switch, allow_contract, smoke_hook, health_timeout
                )
            except (DeployError, ServiceFailed, smoke.SmokeFailed) as exc:
                outcome.result = outcome.result if outcome.result != "ok" else "failed"
                outcome.detail = str(exc)
                outcome.seconds = time.monotonic() - started
                self._record(outcome)
                raise DeployError(str(exc)) from None
            outcome.seconds = time.monotonic() - started
            self._record(outcome)
        return outcome

    def _step(self, outcome: Outcome, name: str, work: Callable[[], Any]) -> Any:
        self.progress(name)
        begun = time.monotonic()
        result = work()
        outcome.steps.append({"step": name, "seconds": round(time.monotonic() - begun, 3)})
        return result

    def _deploy_steps(
        self,
        outcome: Outcome,
        release: Release,
        switch: bool,
        allow_contract: bool,
        smoke_hook: str | None,
        health_timeout: float,
    ) -> None:
        live, target = outcome.source, outcome.target
        database = self.database()
        self._step(outcome, "migrations", lambda: self._migrate(release, live, allow_contract))
        target_plan = self.plan(target, release)
        previous = self.running_plan(target)
        live_plan = self.running_plan(live) if live in COLOURS else None
        if previous is not None or self.colour(target).is_running():
            self._step(
                outcome,
                f"stopping {target}'s previous run",
                lambda: self._drain(target, previous, live_plan),
            )
        runtime = self.colour(target)
        try:
            self._step(
                outcome,
                f"starting {target} with {release.id} (health gate)",
                lambda: runtime.start(target_plan, timeout=health_timeout),
            )
        except ServiceFailed as exc:
            self._drain(target, target_plan, live_plan)
            raise DeployError(f"health gate failed, {target} not switched: {exc}") from None
        user = smoke.new_smoke_user(target)
        try:
            self._step(
                outcome,
                f"smoke test on {target}'s direct port",
                lambda: self._smoke_before(target_plan, user, database, smoke_hook),
            )
            if not switch:
                outcome.detail = f"{target} is ready on {target_plan.direct_url}; not switched"
                return
            self._step(outcome, f"switch {live} -> {target}", lambda: self._point_nginx(target))
            try:
                self._step(
                    outcome,
                    "smoke test through the load balancer",
                    lambda: self._smoke_after(target_plan, user, smoke_hook),
                )
            except smoke.SmokeFailed as exc:
                back = live if live in COLOURS else None
                self.progress(f"post-promotion smoke failed: switching back to {live}")
                self._point_nginx(back)
                outcome.result = "rolled back"
                raise DeployError(
                    f"post-promotion smoke test failed, switched back to {live}: {exc}"
                ) from None
        finally:
            smoke.remove_user(database, user.username)

    def _smoke_before(
        self,
        plan: ColourPlan,
        user: smoke.SmokeUser,
        database: DatabaseCredentials,
        hook: str | None,
    ) -> None:
        smoke.before_promotion(
            plan.direct_url, plan.direct_url, plan.colour, user, database, plan.bundle
        )
        if hook:
            smoke.run_hook(hook, "pre", plan.direct_url, plan.colour)

    def _smoke_after(self, plan: ColourPlan, user: smoke.SmokeUser, hook: str | None) -> None:
        url, colour = self.durable.plan.lb_url, plan.colour
        smoke.after_promotion(url, colour, user, self.durable.tls_context(), plan.bundle)
        if hook:
            smoke.run_hook(hook, "post", url, colour)

    def _drain(
        self,
        colour: str,
        plan: ColourPlan | None,
        live: ColourPlan | None,
        timeout: float = 30,
    ) -> DrainReport | None:
        runtime = self.colour(colour)
        if plan is None:  # unknown release: stop without a drain (nothing known to drain)
            for name in reversed(runtime.names):
                runtime._stop(name)
            return None
        return runtime.drain_and_stop(plan, live, timeout)

    # --- migrations ---------------------------------------------------------------------

    def _migrate(self, release: Release, live: str, allow_contract: bool) -> dict[str, Any]:
        server = self.durable.plan.database
        dbname = self.database().dbname
        connection = [
            "--socket",
            str(server.socket),
            "--user",
            server.os_user,
            "--database",
            dbname,
        ]
        pending = _run_json(release.python, "pending", *connection)
        if pending["revisions"] and live in COLOURS and not allow_contract:
            live_plan = self.running_plan(live)
            if live_plan is not None:
                schema = _run_json(live_plan.python, "schema")["tables"]
                problems = []
                for revision in pending["revisions"]:
                    changes = contract.destructive_statements(revision["sql"])
                    problems += contract.contract_violations(
                        [(revision["revision"], change) for change in changes], schema
                    )
                if problems:
                    raise DeployError(
                        "refusing a contracting migration while the live release still uses "
                        "what it removes: " + "; ".join(problems) + ". Deploy an expand-only "
                        "release first, or pass --allow-contract"
                    )
        if not pending["revisions"]:
            return pending
        return _run_json(release.python, "upgrade", *connection)

    # --- down -----------------------------------------------------------------------------

    def down(self, colour: str, drain_timeout: float = 30, lock_wait: float = 0) -> DrainReport:
        check_colour(colour)
        with deploy_lock(self.durable.plan.home, lock_wait):
            live = self.live()
            if live is None:
                raise DeployError(
                    f"the load balancer of {self.env} does not answer, so the live colour is "
                    f"unknown; refusing to stop {colour} (it may be serving production)"
                )
            if live == colour:
                raise DeployError(
                    f"{colour} is live; switch to the other colour first (`echobase switch "
                    f"{other_colour(colour)}`)"
                )
            plan = self.running_plan(colour)
            live_plan = self.running_plan(live) if live in COLOURS else None
            started = time.monotonic()
            report = self._drain(colour, plan, live_plan, drain_timeout) or DrainReport(0, 0, 0)
            self._record(
                Outcome(
                    "down",
                    live,
                    colour,
                    plan.release_id if plan else None,
                    seconds=time.monotonic() - started,
                    detail=f"drained {report.drained}, moved {report.moved}",
                )
            )
            return report

    def down_all(self, drain_timeout: float = 30) -> None:
        """Both colours (the idle one first, into the live one's queue) and the durable
        layer; data and the live-colour record in nginx's config are kept for `up`."""
        with deploy_lock(self.durable.plan.home):
            live = self.live()
            live_plan = self.running_plan(live) if live in COLOURS else None
            for colour in sorted(COLOURS, key=lambda c: c == live):
                plan = self.running_plan(colour)
                if plan is not None or self.colour(colour).is_running():
                    overflow = live_plan if colour != live else None
                    self._drain(colour, plan, overflow, drain_timeout)
        self.durable.teardown()

    def up(self, release: Release) -> Outcome:
        """Deploy unless the live colour already runs this release healthily."""
        live = self.live_or_fail()
        plan = self.running_plan(live) if live in COLOURS else None
        if plan is not None and plan.release_id == release.id and self.healthy(live):
            return Outcome("up", live, live, release.id, detail="already up to date")
        return self.deploy(release)

    def _record(self, outcome: Outcome) -> None:
        history.record(
            self.durable.plan.home,
            outcome.action,
            outcome.source,
            outcome.target,
            outcome.release,
            outcome.result,
            outcome.seconds,
            outcome.detail,
        )
        lb = self.durable.plan.load_balancer(None)
        try:
            event_metrics.publish(self.durable.plan.home, lb.platform_events_file)
        except OSError as exc:  # the event happened; only its counter is late
            self.progress(f"deploy counters not updated ({exc}); the next event rewrites them")


def _run_json(python: Any, *args: str) -> dict[str, Any]:
    """A release's own migration tool; no secret in the arguments (admin over the socket)."""
    result = subprocess.run(
        [str(python), "-I", "-m", "echobase.app.db.migrate", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        raise DeployError(f"migration tool `{args[0]}` failed: {result.stderr.strip()[-1500:]}")
    try:
        return dict(json.loads(result.stdout))
    except ValueError:
        raise DeployError(f"migration tool `{args[0]}` printed no JSON") from None
