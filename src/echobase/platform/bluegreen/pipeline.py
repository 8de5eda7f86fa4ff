"""Deploy, switch, canary, rollback and down for one durable environment.

The live colour is whatever nginx serves at ``/.active-env``; nothing else decides it. A
deploy goes to the other colour, proves it on its direct port, switches nginx (all traffic,
or a canary's share of users), proves it again through the production URL, watches it
against the old colour in Prometheus for a while (see analysis.py), and switches back by
itself if any of that fails."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from echobase.app.core.secrets import DatabaseCredentials
from echobase.platform import contract
from echobase.platform.bluegreen import analysis, event_metrics, history, smoke
from echobase.platform.bluegreen.analysis import Verdict
from echobase.platform.bluegreen.analysis_settings import AnalysisSettings
from echobase.platform.bluegreen.lock import deploy_lock
from echobase.platform.durable import credentials, nginx
from echobase.platform.durable.layer import DurableLayer
from echobase.platform.ephemeral.colour import ColourRuntime, DrainReport
from echobase.platform.release import load_release
from echobase.platform.render import routing
from echobase.platform.render.ephemeral import ColourPlan, other_colour
from echobase.platform.render.nginx import ROUTING_PATH
from echobase.platform.render.release import Release, migrate_connection
from echobase.platform.render.routing import Canary, RoutingState
from echobase.platform.runtime.machine import this_machine
from echobase.platform.runtime.migrations import MigrationToolError, run_tool
from echobase.platform.runtime.services import LIVE_STATES, ServiceFailed
from echobase.platform.stack import COLOURS, Stack, check_colour

Progress = Callable[[str], None]
CONFIRM_SECONDS = 5.0


class DeployError(RuntimeError):
    """A step failed or was refused; the message says which and what to do. ``outcome``:
    what was done before it failed, as recorded in the history (None: nothing was)."""

    def __init__(self, message: str, outcome: Outcome | None = None) -> None:
        super().__init__(message)
        self.outcome = outcome


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
    weights: dict[str, int] | None = None  # percent of users per colour afterwards

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
            "weights": self.weights,
        }


class BlueGreen:
    def __init__(self, stack: Stack, env: str, progress: Progress = _quiet) -> None:
        self.stack = stack
        self.env = env
        self.progress = progress
        self.tick: Progress = _quiet  # how a long step is going (the analysis)
        self.durable = DurableLayer(stack, env)

    # --- what is where -------------------------------------------------------------------

    def live(self) -> str | None:
        """ "blue", "green" or "none" as nginx serves it; None when nginx does not answer."""
        return self.durable.active()

    def routing(self) -> RoutingState | None:
        """Where traffic goes as nginx answers ``/.routing`` (the canary's seed left out);
        None when nginx does not answer."""
        body = self.durable.get(ROUTING_PATH)
        if body is None:
            return None
        try:
            return routing.parse_weights_answer(body)
        except ValueError:
            return None

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
        return ColourPlan(
            self.stack,
            colour,
            self.env,
            release.python,
            release.id,
            release.bundle,
            this_machine(),
        )

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

    def _route(self, state: RoutingState | str | None) -> float:
        """Write the routing state nginx reads per request, and wait until it answers so.
        No reload: every worker routes the next request by the new state. Returns seconds."""
        started = time.monotonic()
        wanted = state if isinstance(state, RoutingState) else RoutingState(state)
        spec = self.durable.plan.load_balancer
        try:
            nginx.set_routing(spec, wanted)
        except OSError as exc:
            raise DeployError(f"routing state not written: {exc}") from None
        deadline = time.monotonic() + CONFIRM_SECONDS
        while True:
            answered = self.routing()
            if answered is not None and (answered.live, answered.weights()) == (
                wanted.live,
                wanted.weights(),
            ):
                return time.monotonic() - started
            if time.monotonic() > deadline:
                raise DeployError(
                    f"nginx did not route by {routing.state_text(wanted).strip()} within "
                    f"{CONFIRM_SECONDS:.0f}s"
                )
            time.sleep(0.02)

    def _stored_routing(self) -> RoutingState:
        """The state as written, seed included (what a canary's next step keeps)."""
        return nginx.current_routing(self.durable.plan.load_balancer)

    def switch(
        self,
        target: str,
        lock_wait: float = 0,
        action: str = "switch",
        watch: AnalysisSettings | None = None,
    ) -> Outcome:
        check_colour(target)
        with deploy_lock(self.durable.plan.home, lock_wait):
            return self._switch(target, action, watch)

    def _switch(self, target: str, action: str, watch: AnalysisSettings | None = None) -> Outcome:
        """A switch, under the deploy lock the caller holds. A canary, if any, ends: its
        users move with everyone else. ``watch``: compare ``target`` against the colour it
        replaced for the analysis window after, and switch back on a breach."""
        started = time.monotonic()
        live = self.live_or_fail()
        current = self._stored_routing()
        plan = self.running_plan(target)
        outcome = Outcome(action, live, target, plan.release_id if plan else None)
        if target == current.live and current.canary is None:
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
            outcome.steps.append({"step": "switch", "seconds": self._route(target)})
        with self._recorded(outcome, started):
            if watch is not None and current.live in COLOURS and current.live != target:
                self._watch_after_switch(outcome, target, current.live, watch)
        return outcome

    # --- canary -------------------------------------------------------------------------

    def canary(
        self,
        colour: str,
        percent: int,
        lock_wait: float = 0,
        watch: AnalysisSettings | None = None,
        promote: bool = False,
    ) -> Outcome:
        """Send ``percent`` of users to ``colour`` (the idle one), watch it against the live
        colour for a step, and, with ``promote``, step on (the settings' steps) to 100 %.
        A breach sends everyone back to the live colour and raises DeployError."""
        check_colour(colour)
        _check_percent(percent)
        with deploy_lock(self.durable.plan.home, lock_wait):
            started = time.monotonic()
            current = self._stored_routing()
            plan = self.running_plan(colour)
            outcome = Outcome("canary", _colour_name(current.live), colour, _release(plan))
            with self._recorded(outcome, started):
                if current.live is None:
                    raise DeployError(
                        "nothing is live, so there is nothing to compare a canary with: "
                        f"switch to {colour} instead"
                    )
                if colour == current.live:
                    raise DeployError(f"{colour} is live; a canary sends users to the other colour")
                refused = self.unhealthy(colour)
                if refused:
                    raise DeployError(
                        f"{colour} is not running healthy against {self.env}: "
                        f"{'; '.join(refused)}; refusing to send users to it"
                    )
                self._canary_steps(
                    outcome, colour, current.live, _steps(percent, promote, watch), watch
                )
            return outcome

    def promote(self, lock_wait: float = 0, watch: AnalysisSettings | None = None) -> Outcome:
        """Everyone to the canary's colour (a full switch, watched like one). The canary is
        read under the lock: an abort that ran first leaves nothing to promote."""
        with deploy_lock(self.durable.plan.home, lock_wait):
            current = self._stored_routing()
            if current.canary is None:
                raise DeployError("no canary runs: nothing to promote (see `echobase status`)")
            return self._switch(current.canary.colour, "promote", watch)

    def abort(self, lock_wait: float = 0, reason: str = "aborted by hand") -> Outcome:
        """Everyone back to the live colour; the canary's colour keeps running, idle."""
        with deploy_lock(self.durable.plan.home, lock_wait):
            started = time.monotonic()
            current = self._stored_routing()
            if current.canary is None:
                raise DeployError("no canary runs: nothing to abort (see `echobase status`)")
            # From the canary's colour (who had the users) to the live one.
            outcome = Outcome(
                "abort",
                current.canary.colour,
                _colour_name(current.live),
                _release(self.running_plan(current.canary.colour)),
            )
            with self._recorded(outcome, started):
                outcome.steps.append({"step": "route", "seconds": self._route(current.live)})
                outcome.detail = f"{current.canary.colour} had {current.canary.percent} %: {reason}"
            return outcome

    def _canary_steps(
        self,
        outcome: Outcome,
        colour: str,
        live: str,
        percents: list[int],
        watch: AnalysisSettings | None,
    ) -> int:
        """Route each share in turn, watching each below 100 %; returns the share reached.
        A breach routes everyone back to ``live`` and raises DeployError; an inconclusive
        step stops there (the canary stays, for a person to promote or abort)."""
        running = self._stored_routing().canary
        keep = (
            running.seed
            if running is not None and running.colour == colour
            else secrets.randbelow(100)
        )
        reached = 0
        for percent in percents:
            if percent >= 100:
                self._step(outcome, f"switch {live} -> {colour}", lambda: self._route(colour))
                return 100
            state = RoutingState(live, Canary(colour, percent, keep))
            self._step(
                outcome,
                f"canary: {colour} takes {percent} % of users",
                lambda state=state: self._route(state),
            )  # type: ignore[misc]
            reached = percent
            if watch is None or watch.step_seconds <= 0:
                continue
            verdict = self._analyse(outcome, colour, live, watch, watch.step_seconds)
            if verdict is None or verdict.result == "inconclusive":
                why = verdict.reasons[0] if verdict else "Prometheus did not answer"
                outcome.detail = (
                    f"{colour} stays at {percent} % (not promoted: {why}); "
                    "`echobase promote` or `echobase abort`"
                )
                return percent
            if verdict.result == "fail":
                self.progress(f"canary failed its analysis: everyone back to {live}")
                self._route(live)
                outcome.result = "aborted"
                outcome.detail = f"{colour} at {percent} %: " + "; ".join(verdict.reasons)
                raise DeployError(
                    f"canary aborted, everyone is back on {live}: " + "; ".join(verdict.reasons)
                )
        if reached:
            outcome.detail = outcome.detail or (
                f"{colour} takes {reached} % of users; `echobase promote` or `echobase abort`"
            )
        return reached

    def _watch_after_switch(
        self, outcome: Outcome, target: str, old: str, watch: AnalysisSettings
    ) -> None:
        """Watch ``target`` against ``old`` for the window after a full switch; switch back
        to ``old`` on a breach (DeployError)."""
        if watch.after_switch_seconds <= 0:
            return
        verdict = self._analyse(outcome, target, old, watch, watch.after_switch_seconds)
        if verdict is None or verdict.result == "inconclusive":
            why = verdict.reasons[0] if verdict else "Prometheus did not answer"
            outcome.detail = outcome.detail or f"{target} kept, not judged: {why}"
            return
        if verdict.result != "fail":
            return
        self.progress(f"{target} failed its analysis: switching back to {old}")
        self._route(old)
        outcome.result = "rolled back"
        outcome.detail = "analysis after the switch: " + "; ".join(verdict.reasons)
        raise DeployError(f"switched back to {old}: " + "; ".join(verdict.reasons))

    def _analyse(
        self,
        outcome: Outcome,
        new: str,
        old: str,
        watch: AnalysisSettings,
        window: float,
    ) -> Verdict | None:
        """Compare ``new`` with ``old`` in Prometheus for ``window`` seconds, as a step of
        ``outcome``; None (and why, in the step) when Prometheus does not answer."""
        url, env = self.durable.plan.prometheus.local_url, self.env
        self.progress(f"analysis: {new} against {old} for {window:.0f}s")
        begun = time.monotonic()
        step: dict[str, Any] = {"step": f"analysis of {new} against {old}"}
        outcome.steps.append(step)
        try:
            quiet = analysis.too_quiet(old, analysis.sample(url, env, old, window), window, watch)
            if quiet is not None:
                step.update(seconds=0.0, result=quiet.result, detail=quiet.reasons[0])
                return quiet
            at_start = analysis.sample(url, env, new, watch.interval_seconds).dead_letters

            def pair(elapsed: float) -> tuple[analysis.ColourSample, analysis.ColourSample]:
                return (
                    analysis.sample(url, env, new, elapsed),
                    analysis.sample(url, env, old, elapsed),
                )

            def tick(verdict: Verdict, elapsed: float) -> None:
                self.tick(f"analysis {elapsed:.0f}/{window:.0f}s: {verdict.summary()}")

            verdict = analysis.watch(pair, new, old, watch, window, at_start, tick)
        except analysis.AnalysisError as exc:
            step.update(
                seconds=round(time.monotonic() - begun, 3), result="not run", detail=str(exc)
            )
            return None
        step.update(
            seconds=round(time.monotonic() - begun, 3),
            result=verdict.result,
            detail=verdict.summary(),
            reasons=list(verdict.reasons),
        )
        return verdict

    def rollback(self, lock_wait: float = 0) -> Outcome:
        if self._stored_routing().canary is not None:
            return self.abort(lock_wait, reason="rolled back")
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
        canary: int | None = None,
        watch: AnalysisSettings | None = None,
        promote: bool = False,
    ) -> Outcome:
        """``canary``: send that percent of users to the new colour instead of everyone
        (``promote``: then step on to 100 %); ``watch``: the analysis after the switch and
        of each canary step."""
        started = time.monotonic()
        if canary is not None:
            _check_percent(canary)
        live = self.live_or_fail()
        target = (
            check_colour(colour) if colour else ("green" if live == "none" else other_colour(live))
        )
        outcome = Outcome("deploy", live, target, release.id)
        if target == live:
            raise DeployError(f"{target} is live: deploy to the idle colour, or switch first")
        if canary is not None and live not in COLOURS:
            raise DeployError(
                "nothing is live, so there is nothing to compare a canary with: "
                "deploy without --canary first"
            )
        with deploy_lock(self.durable.plan.home, lock_wait):
            if self._stored_routing().canary is not None:
                raise DeployError(
                    "a canary runs: `echobase promote` or `echobase abort` it before deploying"
                )
            with self._recorded(outcome, started):
                self._deploy_steps(
                    outcome,
                    release,
                    switch,
                    allow_contract,
                    smoke_hook,
                    health_timeout,
                    _steps(canary, promote, watch) if canary is not None else None,
                    watch,
                )
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
        canary_steps: list[int] | None = None,
        watch: AnalysisSettings | None = None,
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
            if canary_steps is not None:
                reached = self._canary_steps(outcome, target, live, canary_steps, watch)
                if reached < 100:
                    return
            else:
                self._step(outcome, f"switch {live} -> {target}", lambda: self._route(target))
            try:
                self._step(
                    outcome,
                    "smoke test through the load balancer",
                    lambda: self._smoke_after(target_plan, user, smoke_hook),
                )
            except smoke.SmokeFailed as exc:
                back = live if live in COLOURS else None
                self.progress(f"post-promotion smoke failed: switching back to {live}")
                self._route(back)
                outcome.result = "rolled back"
                raise DeployError(
                    f"post-promotion smoke test failed, switched back to {live}: {exc}"
                ) from None
            if watch is not None and live in COLOURS:
                self._watch_after_switch(outcome, target, live, watch)
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
        connection = migrate_connection(server.socket, server.os_user, self.database().dbname)
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
            share = self._stored_routing().weights()[colour]
            if share:
                raise DeployError(
                    f"{colour} serves {share} % of users (a canary); `echobase abort` or "
                    "`echobase promote` it first"
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
        return self.deploy(release, watch=self.stack.analysis)

    @contextmanager
    def _recorded(self, outcome: Outcome, started: float) -> Iterator[None]:
        """Record ``outcome`` in the history when the block ends, however it ends; a failure
        becomes a DeployError that carries the outcome (``failed`` unless the block said
        what happened, e.g. ``aborted`` or ``rolled back``)."""
        try:
            yield
        except (DeployError, ServiceFailed, smoke.SmokeFailed) as exc:
            if outcome.result == "ok":
                outcome.result = "failed"
            outcome.detail = str(exc)
            outcome.seconds = time.monotonic() - started
            self._record(outcome)
            raise DeployError(str(exc), outcome) from None
        outcome.seconds = time.monotonic() - started
        self._record(outcome)

    def _record(self, outcome: Outcome) -> None:
        outcome.weights = self._stored_routing().weights()
        history.record(
            self.durable.plan.home,
            outcome.action,
            outcome.source,
            outcome.target,
            outcome.release,
            outcome.result,
            outcome.seconds,
            outcome.detail,
            outcome.weights,
        )
        lb = self.durable.plan.load_balancer
        try:
            event_metrics.publish(self.durable.plan.home, lb.platform_events_file)
        except OSError as exc:  # the event happened; only its counter is late
            self.progress(f"deploy counters not updated ({exc}); the next event rewrites them")


def _run_json(python: Any, action: str, *args: str) -> dict[str, Any]:
    """A release's own migration tool; no secret in the arguments (admin over the socket)."""
    try:
        return run_tool(python, action, *args)
    except MigrationToolError as exc:
        raise DeployError(str(exc)) from None


def _check_percent(percent: int) -> None:
    if isinstance(percent, bool) or not isinstance(percent, int) or not 1 <= percent <= 100:
        raise DeployError(f"a canary's share is a whole percent, 1-100, not {percent!r}")


def _steps(percent: int, promote: bool, watch: AnalysisSettings | None) -> list[int]:
    """The shares a canary goes through: the one asked for, then (promoting) the settings'
    larger steps up to 100."""
    if not promote:
        return [percent]
    later = (watch or AnalysisSettings()).steps
    return [percent, *(step for step in later if step > percent)]


def _colour_name(colour: str | None) -> str:
    return colour or "none"


def _release(plan: ColourPlan | None) -> str | None:
    return plan.release_id if plan else None
